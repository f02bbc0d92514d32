"""The run namespace, the FORMAT.md helpers (datasets, ClassLogitsDataset, EncoderConv2d)."""

from __future__ import annotations

import gc
import gzip
import importlib
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from worker.engine import datasets
from worker.engine.build import build_model
from worker.engine.datasets import ClassLogitsDataset, fmnist_dataset, mnist_dataset
from worker.engine.losses import make_loss
from worker.engine.models import EncoderConv2d, count_trainable
from worker.engine.namespace import build_namespace, evaluate_globals, run_code


def test_code_block_value_is_its_last_expression() -> None:
    ns = build_namespace()
    assert run_code("a = 2\nb = a * 3\nb + 1\n", ns, where="model") == 7
    assert ns["b"] == 6  # names a block defines are visible to later blocks
    # an assignment gives the assigned value, as nn-experiments takes it
    assert run_code("ds = [1, 2]\n", ns, where="train_set") == [1, 2]
    with pytest.raises(ValueError, match="'model': the last statement must be an expression"):
        run_code("import os\n", ns, where="model")
    with pytest.raises(SyntaxError):
        run_code("def (:\n", ns, where="model")


def test_namespace_names() -> None:
    ns = build_namespace()
    names = ("torch", "nn", "F", "VT", "VF", "torchvision", "np", "math", "random",
             "fmnist_dataset", "mnist_dataset", "ClassLogitsDataset", "EncoderConv2d")  # fmt: skip
    for name in names:
        assert name in ns, name
    assert ns["nn"] is torch.nn and ns["F"] is torch.nn.functional


def test_globals_evaluated_in_order_and_visible_inside_methods() -> None:
    config = {
        "globals": {"SHAPE": "(3, 28, 28)", "CHANNELS": "SHAPE[0] * 2", "CODE": 5},
        "model": (
            "class M(nn.Module):\n"
            "    def __init__(self):\n"
            "        super().__init__()\n"
            "        self.linear = nn.Linear(CHANNELS, CODE)\n"
            "    def scale(self):\n"
            "        return SHAPE[-1]\n"  # resolved at call time, from the run's globals
            "M()\n"
        ),
    }
    model, ns = build_model(config)
    assert ns["CHANNELS"] == 6 and ns["CODE"] == 5
    assert model.linear.in_features == 6 and model.scale() == 28


def test_nothing_leaks_from_one_run_to_the_next() -> None:
    first = {"globals": {"LEAK": "1"}, "model": "import os\nHIDDEN = 3\nnn.Linear(2, HIDDEN)\n"}
    build_model(first)
    second = {"model": "nn.Linear(2, HIDDEN)\n"}
    with pytest.raises(NameError, match="HIDDEN"):
        build_model(second)
    ns = build_namespace()
    assert "LEAK" not in ns and "HIDDEN" not in ns
    evaluate_globals({"A": "[1]"}, ns)
    assert "A" not in build_namespace()


def test_a_runs_namespace_is_the_module_its_name_imports() -> None:
    """torch.compile imports a function's globals by their `__name__` (torch 2.11 fails when it is
    not in sys.modules), so a class defined in the YAML must resolve to its own namespace."""
    model, ns = build_model({"model": "class M(nn.Linear):\n    pass\nM(2, 3)\n"})
    assert type(model).__module__ == ns["__name__"]
    assert importlib.import_module(ns["__name__"]).__dict__ is ns
    assert importlib.import_module(ns["__name__"]).M is type(model)


def test_only_the_newest_namespace_stays_in_sys_modules() -> None:
    ns = build_namespace()
    name, module = ns["__name__"], weakref.ref(sys.modules[ns["__name__"]])
    del ns
    newer = build_namespace()
    gc.collect()
    assert name not in sys.modules and module() is None  # the older run's data is freed
    assert sys.modules[newer["__name__"]].__dict__ is newer


def test_fmnist_dataset_items() -> None:
    train = fmnist_dataset(train=True)
    test = fmnist_dataset(train=False, shape=(3, 28, 28))
    assert len(train) == 60_000 and len(test) == 10_000
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and 0 <= int(label) < 10
    assert float(train.tensors[0].min()) == 0.0 and float(train.tensors[0].max()) == 1.0
    image3, _ = test[5]
    assert image3.shape == (3, 28, 28)
    assert torch.equal(image3[0], image3[2])  # the gray channel repeated


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_datasets_read_idx_files_from_the_data_dir(tmp_path: Path) -> None:
    images = np.arange(5 * 28 * 28).reshape(5, 28, 28) % 256
    folder = tmp_path / "mnist"
    folder.mkdir()
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([3, 1, 4, 1, 5]))
    data = mnist_dataset(train=False, data_dir=tmp_path)
    assert len(data) == 5
    assert torch.equal(data.tensors[1], torch.tensor([3, 1, 4, 1, 5]))
    assert torch.allclose(data[2][0][0] * 255, torch.tensor(images[2], dtype=torch.float32))


def test_idx_files_are_decoded_once_per_host_into_a_mapped_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    images = np.arange(4 * 28 * 28).reshape(4, 28, 28) % 251
    source = tmp_path / "data" / "t10k-images-idx3-ubyte.gz"
    source.parent.mkdir()
    _write_idx(source, images)
    first = datasets.decoded_idx(source)
    (cached,) = (source.parent / datasets.DECODED_SUBDIR).glob("*.npy")  # one, uint8
    assert not list(cached.parent.glob("*.tmp"))  # written beside it, then renamed
    again = datasets.decoded_idx(source)
    assert isinstance(again, np.memmap) and not again.flags.writeable  # shared read-only
    assert np.array_equal(first, images) and np.array_equal(again, images)
    # Images as the runs use them: float32 / 255 as torch computes it, mapped copy-on-write.
    expected = torch.from_numpy(images.astype(np.float32)).div_(255.0).numpy()
    assert np.array_equal(datasets.decoded_idx(source, unit_float=True), expected)
    mapped = datasets.decoded_idx(source, unit_float=True)
    assert isinstance(mapped, np.memmap) and mapped.flags.writeable
    mapped[0] = 7.0  # a private page: neither the file nor the next run sees it
    assert np.array_equal(datasets.decoded_idx(source, unit_float=True), expected)
    # A replaced source file is decoded afresh, not served from the old cache.
    _write_idx(source, images[::-1])
    assert np.array_equal(datasets.decoded_idx(source), images[::-1])
    # A cache file cut short is ignored (decoded again), never served.
    for npy in cached.parent.glob("*.npy"):
        npy.write_bytes(npy.read_bytes()[:100])
    assert np.array_equal(datasets.decoded_idx(source), images[::-1])


def test_an_unwritable_data_folder_caches_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    source = tmp_path / "data" / "t10k-labels-idx1-ubyte.gz"
    source.parent.mkdir()
    _write_idx(source, np.array([3, 1, 4]))
    # The cache folder cannot be made there (a file holds its name; the tests run as root, so
    # a read-only mode would not stop them): the cache goes under the home folder instead.
    (source.parent / datasets.DECODED_SUBDIR).write_text("not a folder")
    assert list(datasets.decoded_idx(source)) == [3, 1, 4]
    home_cache = tmp_path / "home" / ".cache" / "sweeps" / "decoded"
    assert len(list(home_cache.glob("*.npy"))) == 1
    assert isinstance(datasets.decoded_idx(source), np.memmap)


def test_dataset_tensors_are_the_runs_own_copies(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", np.full((2, 28, 28), 51))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([0, 1]))
    mnist_dataset(train=False, data_dir=tmp_path)  # writes the cache
    datasets._load_arrays.cache_clear()
    data = mnist_dataset(train=False, data_dir=tmp_path)  # maps it
    data.tensors[0].add_(1)  # user code may change its data in place
    data.tensors[1][0] = 5
    assert float(data.tensors[0][0, 0, 0, 0]) == pytest.approx(1.2)
    datasets._load_arrays.cache_clear()
    fresh = mnist_dataset(train=False, data_dir=tmp_path)
    assert float(fresh.tensors[0][0, 0, 0, 0]) == pytest.approx(0.2)
    assert fresh.tensors[1].tolist() == [0, 1]


def test_missing_dataset_error_names_all_three_options(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "mnist", tmp_path / "nowhere")

    def offline(name: str, root: Path) -> None:  # stands in for the network being unreachable
        raise OSError("no network")

    monkeypatch.setattr(datasets, "_download", offline)
    with pytest.raises(datasets.DatasetNotFound) as info:
        mnist_dataset(train=True, data_dir=tmp_path / "empty")
    message = str(info.value)
    assert "SWEEPS_DATA_DIR" in message
    assert str(tmp_path / "nowhere") in message and "dataset-mnist" in message
    assert "torchvision download" in message and "no network" in message


def test_class_logits_dataset_tensor_and_item_paths_agree() -> None:
    x = torch.rand(6, 1, 4, 4)
    labels = torch.tensor([7, 3, 7, 9, 3, 9])
    source = torch.utils.data.TensorDataset(x, labels)
    fast = ClassLogitsDataset(source, num_classes=3, tuple_position=1, label_to_index=True)
    assert fast.tensors is not None  # stays tensor-backed for the trainer's fast path
    image, one_hot, label = fast[3]
    assert torch.equal(image, x[3])
    assert int(label) == 2 and one_hot.tolist() == [0.0, 0.0, 1.0]

    class Items(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, i: int):
            return x[i], int(labels[i]) - 7 if labels[i] >= 7 else 0

    slow = ClassLogitsDataset(Items(), num_classes=3, tuple_position=1, on_value=2.0)
    assert slow.tensors is None
    image, one_hot, label = slow[3]
    assert label == 2 and one_hot.tolist() == [0.0, 0.0, 2.0]


def test_class_logits_label_to_index_numbers_sorted_labels_on_the_item_path() -> None:
    # Item path (no .tensors): the numbering must not depend on the order items are read, or a
    # train and a validation set read in different orders would disagree on what a class is.
    labels = [7, 3, 9, 3, 7, 9]

    class Items(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, i: int):
            return torch.zeros(1), labels[i]

    for order in ([0, 1, 2], [2, 1, 0]):
        dataset = ClassLogitsDataset(Items(), num_classes=3, tuple_position=1, label_to_index=True)
        assert dataset.tensors is None
        got = {labels[i]: dataset[i][2] for i in order}
        assert got == {3: 0, 7: 1, 9: 2}


def test_encoder_conv2d_matches_the_seed_cnn_row() -> None:
    encoder = EncoderConv2d((1, 28, 28), 128)
    model = nn.Sequential(encoder, nn.Linear(128, 10))
    assert count_trainable(model) == 2_002_698
    assert encoder(torch.rand(2, 1, 28, 28)).shape == (2, 128)
    assert EncoderConv2d((3, 20, 20), 7, channels=(4, 5), kernel_size=5)(
        torch.rand(1, 3, 20, 20)
    ).shape == (1, 7)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("l1", nn.L1Loss), ("mae", nn.L1Loss), ("l2", nn.MSELoss), ("mse", nn.MSELoss),
     ("ce", nn.CrossEntropyLoss), ("cross_entropy", nn.CrossEntropyLoss), ("bce", nn.BCELoss),
     ("binary_cross_entropy", nn.BCELoss), ("kl_div", nn.KLDivLoss), ("HuberLoss", nn.HuberLoss),
     (None, nn.L1Loss)],
)  # fmt: skip
def test_loss_names(name: str | None, expected: type) -> None:
    loss = make_loss(name)
    assert isinstance(loss, expected)
    if name == "kl_div":
        assert loss.reduction == "batchmean"


def test_loss_function_names_and_code() -> None:
    assert make_loss("smooth_l1_loss") is torch.nn.functional.smooth_l1_loss
    custom = run_code("lambda out, target: (out - target).abs().max()\n", build_namespace(),
                      where="loss_function")  # fmt: skip
    assert make_loss(custom) is custom
    with pytest.raises(ValueError, match="'nope' is not an alias"):
        make_loss("nope")
