"""Fashion-MNIST/MNIST as in-memory tensor datasets, and ClassLogitsDataset (FORMAT.md helpers).

A dataset that exposes `.tensors` (equal-length tensors, one item = one row of each) is the
fast path: the trainer moves those tensors to the device once and batches them by index.

The IDX .gz files are decoded once per host: the first run writes each as a .npy next to its
data (under ~/.cache/sweeps/decoded for the system folders, or when the folder is read-only),
atomically, and every
later run maps that file read-only instead of decompressing again; the page cache shares it
between all runs on the host.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

SYSTEM_DIRS = {
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
    "mnist": Path("/usr/share/datasets/mnist"),
}
# Sub-folders of a data dir where the files may sit (ours, then torchvision's download layout).
_SUBDIRS = {
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw", "."),
    "mnist": ("mnist", "MNIST/raw"),
}
_FILES = {
    True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_lock = threading.Lock()
log = logging.getLogger(__name__)
DECODED_SUBDIR = ".sweeps-decoded"
_load_seconds = 0.0  # time this process spent reading and decoding dataset files


def load_seconds() -> float:
    """Seconds spent so far in this process reading datasets (the run's `data` phase)."""
    return _load_seconds


class DatasetNotFound(FileNotFoundError):
    pass


def fmnist_dataset(
    train: bool, shape: tuple[int, ...] = (1, 28, 28), *, data_dir: Path | str | None = None
) -> TensorDataset:
    """Fashion-MNIST: items (image float32 [0,1] of `shape`, label int64); no normalisation."""
    return _image_dataset("fashion-mnist", train, shape, data_dir)


def mnist_dataset(
    train: bool, shape: tuple[int, ...] = (1, 28, 28), *, data_dir: Path | str | None = None
) -> TensorDataset:
    """MNIST, same items as fmnist_dataset."""
    return _image_dataset("mnist", train, shape, data_dir)


def _image_dataset(
    name: str, train: bool, shape: tuple[int, ...], data_dir: Path | str | None
) -> TensorDataset:
    global _load_seconds
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or shape[1:] != (28, 28):
        raise ValueError(f"{name}: shape must be (1, 28, 28) or (3, 28, 28), got {shape}")
    started = time.perf_counter()
    images, labels = _load_arrays(name, bool(train), str(data_dir) if data_dir else None)
    # No copy: the images are the cache file mapped copy-on-write (pages shared by every run on
    # the host until one writes to them), the labels a small copy.
    gray = torch.from_numpy(images).unsqueeze(1)
    # A 3-channel view repeats the gray channel without copying; batches materialise it.
    x = gray.expand(-1, shape[0], -1, -1)
    dataset = TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))
    _load_seconds += time.perf_counter() - started
    return dataset


@lru_cache(maxsize=8)
def _load_arrays(name: str, train: bool, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """float32 images [N, 28, 28] in [0, 1] and int64 labels [N], read once per process."""
    with _lock:
        folder = _find_folder(name, train, Path(data_dir) if data_dir else None)
        images_file, labels_file = _FILES[train]
        images = decoded_idx(folder / images_file, unit_float=True)
        labels = decoded_idx(folder / labels_file).astype(np.int64)
    return images, labels


def _unit_float(array: np.ndarray) -> np.ndarray:
    """uint8 -> float32 / 255, computed by torch as the per-run conversion always was."""
    return torch.from_numpy(array.astype(np.float32)).div_(255.0).numpy()


def decoded_idx(path: Path, *, unit_float: bool = False) -> np.ndarray:
    """An IDX .gz file's array (as float32 / 255 with `unit_float`), from the host's decoded
    cache (written on first use). uint8 arrays are mapped read-only; float ones copy-on-write,
    so a run may change its images in place without touching the file or other runs."""
    stat = path.stat()
    # The key changes whenever the source file does, so a replaced file is decoded afresh.
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    suffix = "-unit-f32" if unit_float else ""
    cache_name = f"{path.name.removesuffix('.gz')}-{key.hexdigest()[:16]}{suffix}.npy"
    folders = _cache_folders(path)
    for folder in folders:
        cached = folder / cache_name
        if cached.is_file():
            try:
                return np.load(cached, mmap_mode="c" if unit_float else "r")
            except (OSError, ValueError):  # truncated by hand, or another numpy: decode again
                log.warning("ignoring unreadable decoded cache %s", cached)
    array = _unit_float(_read_idx(path)) if unit_float else _read_idx(path)
    for folder in folders:
        try:
            _write_atomically(folder / cache_name, array)
            break
        except OSError:  # a read-only data folder (e.g. /usr/share): try the next place
            continue
    return array


def _cache_folders(path: Path) -> list[Path]:
    """Beside the data, then the home cache; never inside a system folder (/usr/share), which
    a root worker could write to but should not."""
    home = Path.home() / ".cache" / "sweeps" / "decoded"
    if path.parent.resolve() in {p.resolve() for p in SYSTEM_DIRS.values()}:
        return [home]
    return [path.parent / DECODED_SUBDIR, home]


def _write_atomically(target: Path, array: np.ndarray) -> None:
    """Readers see the whole file or none: written beside the target, then renamed over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _find_folder(name: str, train: bool, data_dir: Path | None) -> Path:
    candidates = [data_dir / sub for sub in _SUBDIRS[name]] if data_dir else []
    candidates.append(SYSTEM_DIRS[name])
    for folder in candidates:
        if all((folder / f).is_file() for f in _FILES[train]):
            return folder.resolve()
    download_root = data_dir or Path.home() / ".cache" / "sweeps" / "datasets"
    try:
        _download(name, download_root)
    except Exception as exc:  # noqa: BLE001 - any failure ends in the one explanatory error
        tried = ", ".join(str(c) for c in candidates)
        raise DatasetNotFound(
            f"{name} IDX .gz files ({', '.join(_FILES[train])}) not found. Options: "
            f"(1) set SWEEPS_DATA_DIR (the worker's data dir) to a folder holding them; "
            f"(2) install them at {SYSTEM_DIRS[name]} (Debian package dataset-{name}); "
            f"(3) allow the torchvision download into {download_root} "
            f"(it failed: {type(exc).__name__}: {exc}). Looked in: {tried}"
        ) from exc
    sub = "FashionMNIST/raw" if name == "fashion-mnist" else "MNIST/raw"
    return (download_root / sub).resolve()


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = tvd.FashionMNIST if name == "fashion-mnist" else tvd.MNIST
    root.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(str(root), train=train, download=True)


def _read_idx(path: Path) -> np.ndarray:
    """The IDX format: magic (0, 0, dtype 0x08, ndim), big-endian dims, then uint8 data."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(bytearray(data), dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {dims} values, found {body.size}")
    return body.reshape(dims)


class ClassLogitsDataset(Dataset):
    """Adds a one-hot target in front of the label: item -> (*item[:pos], one_hot, label, ...).

    Over a tensor dataset it stays tensor-backed (its `.tensors` are built once), so the trainer's
    fast path still applies.
    """

    def __init__(
        self,
        source: Any,
        num_classes: int | None = None,
        tuple_position: int = 0,
        label_to_index: bool = False,
        off_value: float = 0.0,
        on_value: float = 1.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.source = source
        self.tuple_position = tuple_position
        self.label_to_index = label_to_index
        self.off_value, self.on_value, self.dtype = off_value, on_value, dtype
        self._label_index: dict[Any, int] | None = None
        source_tensors = getattr(source, "tensors", None)
        if source_tensors is not None:
            labels = source_tensors[tuple_position]
            if label_to_index:
                classes, index = torch.unique(labels, sorted=True, return_inverse=True)
                self._label_index = {int(c): i for i, c in enumerate(classes.tolist())}
                labels = index
            self.num_classes = int(num_classes or int(labels.max()) + 1)
            one_hot = self._one_hot_rows(labels.long())
            pos = tuple_position
            self.tensors = (*source_tensors[:pos], one_hot, labels, *source_tensors[pos + 1 :])
        else:
            if num_classes is None:
                raise ValueError("ClassLogitsDataset over a non-tensor dataset needs num_classes")
            self.num_classes = int(num_classes)
            self.tensors = None

    def _sorted_label_index(self) -> dict[Any, int]:
        """Label -> index over the sorted labels of the whole source, as the tensor path numbers
        them: numbering labels as they are first met would give the train and validation sets
        (two datasets, read in different orders) different numberings."""
        targets = getattr(self.source, "targets", None)
        if targets is not None:
            labels = torch.as_tensor(targets).tolist()
        else:
            labels = [self.source[i][self.tuple_position] for i in range(len(self.source))]
            labels = [v.item() if isinstance(v, torch.Tensor) else v for v in labels]
        return {label: i for i, label in enumerate(sorted(set(labels)))}

    def _one_hot_rows(self, labels: torch.Tensor) -> torch.Tensor:
        out = torch.full((len(labels), self.num_classes), self.off_value, dtype=self.dtype)
        out.scatter_(1, labels.view(-1, 1), self.on_value)
        return out

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple:
        if self.tensors is not None:
            return tuple(t[index] for t in self.tensors)
        item = tuple(self.source[index])
        label = item[self.tuple_position]
        if self.label_to_index:
            if self._label_index is None:
                self._label_index = self._sorted_label_index()
            label = self._label_index[label.item() if isinstance(label, torch.Tensor) else label]
        label = int(label)
        one_hot = self._one_hot_rows(torch.tensor([label]))[0]
        pos = self.tuple_position
        return (*item[:pos], one_hot, label, *item[pos + 1 :])


def tensors_of(dataset: Any) -> tuple[torch.Tensor, ...] | None:
    """The dataset's `.tensors` when it is a usable tensor dataset, else None (DataLoader path)."""
    tensors = getattr(dataset, "tensors", None)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        return None
    n = len(tensors[0])
    if any(len(t) != n for t in tensors) or (hasattr(dataset, "__len__") and len(dataset) != n):
        return None
    return tuple(tensors)


def to_device_compact(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a tensor without materialising broadcast (stride-0) dims, e.g. a 3-channel view."""
    expanded = [d for d in range(t.dim()) if t.stride(d) == 0 and t.size(d) > 1]
    if not expanded:
        return t.to(device)
    base = t
    for d in expanded:
        base = base.narrow(d, 0, 1)
    return base.contiguous().to(device).expand(t.shape)


class Collated(Dataset):
    """A dataset whose batches are made by `collate_fn` (`dataloader_collate_fn`): always read
    through a DataLoader, which is given the function."""

    def __init__(self, dataset: Any, collate_fn: Any) -> None:
        self.dataset, self.collate_fn = dataset, collate_fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]
