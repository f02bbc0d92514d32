"""The trainer rules of FORMAT.md, checked on tiny generated data through train_run."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from shared.sweepfile import parse_sweep
from shared.sweepfile.run_config import RunConfig
from tests.worker.engine.support import Recorder, tiny_config
from worker.engine import train_run

ALL_METRICS = {
    "validation_loss", "accuracy_argmax", "accuracy_svc", "accuracy_svc_heldout", "train_loss",
    "learnrate", "model_params", "train_seconds", "throughput",
}  # fmt: skip


def train(config: dict, **kwargs) -> tuple[dict, Recorder]:
    recorder = Recorder()
    summary = train_run(RunConfig.from_config(config), report=recorder, device="cpu", **kwargs)
    return summary, recorder


def test_max_inputs_counts_samples_and_overshoots_by_less_than_a_batch() -> None:
    shapes: list = []
    config = tiny_config(
        max_inputs=1000,
        globals={**tiny_config()["globals"], "SHAPES": shapes},
        train_input_transforms="[\n    lambda x: (SHAPES.append(tuple(x.shape)), x)[1],\n]",
    )
    summary, rec = train(config)
    assert summary["inputs"] == 1024  # 32 batches of 32: the first count >= 1000
    assert len(shapes) == 32
    # Transforms see the whole batch, and only in training (validation has 100 images).
    assert set(shapes) == {(32, 1, 8, 8)}
    assert rec.of("progress")[-1]["inputs"] == 1024


def test_partial_last_batch_counts_its_size() -> None:
    # 80 images at batch 32: 32, 32, 16 per epoch.
    globals_ = {**tiny_config()["globals"], "N_TRAIN": 80}
    summary, rec = train(tiny_config(globals=globals_, max_inputs=None, max_epoch=3))
    assert summary["inputs"] == 240
    assert summary["epoch"] == 3
    assert rec.steps("validation_loss") == [80, 160, 240]


@pytest.mark.parametrize(
    ("scheduler", "expected_final_lr"),
    [("StepLR", 0.0003), ("CosineAnnealingLR", 0.0)],
)
def test_scheduler_length_is_max_inputs_over_batch_size_stepped_per_batch(
    scheduler: str, expected_final_lr: float
) -> None:
    # 200 images, batch 50, 1000 inputs: 20 steps, scheduler length 1000 // 50 = 20.
    globals_ = {**tiny_config()["globals"], "N_TRAIN": 200}
    config = tiny_config(globals=globals_, batch_size=50, scheduler=scheduler, learnrate="3e-3")
    summary, rec = train(config)
    assert summary["inputs"] == 1000
    learnrate = rec.series()["learnrate"]
    assert list(learnrate) == [1000]
    assert learnrate[1000] == pytest.approx(expected_final_lr, abs=1e-9)


def test_validation_every_epoch_and_once_at_the_end() -> None:
    summary, rec = train(tiny_config(max_inputs=900))  # 256 images per epoch, stops at 928
    assert summary["inputs"] == 928
    assert rec.steps("validation_loss") == [256, 512, 768, 928]


@pytest.mark.parametrize("trainer", ["Trainer", "RepresentationClassTrainer"])
def test_without_a_validation_set_the_train_curves_are_reported(trainer: str) -> None:
    summary, rec = train(tiny_config(validation_set=None, trainer=trainer, max_inputs=2000))
    assert summary["inputs"] == 2016
    keys = set(rec.series())
    assert keys == {"train_loss", "learnrate", "model_params", "train_seconds", "throughput"}
    assert rec.steps("train_seconds") == [256 * n for n in range(1, 8)] + [2016]
    assert all(math.isfinite(v) for v in rec.series()["train_loss"].values())


def test_validation_every_n_epochs_and_every_n_inputs() -> None:
    _, rec = train(tiny_config(max_inputs=900, num_epochs_between_validations=2))
    assert rec.steps("validation_loss") == [512, 928]
    _, rec = train(tiny_config(max_inputs=900, num_inputs_between_validations=300))
    assert rec.steps("validation_loss") == [256, 320, 512, 608, 768, 928]


def test_max_epoch_stops_training() -> None:
    summary, rec = train(tiny_config(max_inputs=None, max_epoch=2))
    assert summary["inputs"] == 512
    assert rec.steps("validation_loss") == [256, 512]


def test_train_loss_is_the_mean_over_stretches_of_at_least_1000_inputs() -> None:
    losses: list = []
    loss_code = (
        "def recording_mse(output, target):\n"
        "    value = F.mse_loss(output, target)\n"
        "    if torch.is_grad_enabled():\n"
        "        LOSSES.append(float(value.detach()))\n"
        "    return value\n"
        "recording_mse\n"
    )
    globals_ = {**tiny_config()["globals"], "LOSSES": losses, "N_TRAIN": 200}
    config = tiny_config(globals=globals_, batch_size=48, max_inputs=2500, loss_function=loss_code)
    summary, rec = train(config)
    # Batches per epoch: 48, 48, 48, 48, 8 (200 images); the stretch closes at >= 1000 inputs.
    sizes = ([48] * 4 + [8]) * 20
    ends, total, start, stretches = [], 0, 0, []
    for i, size in enumerate(sizes):
        total += size
        if total - (ends[-1] if ends else 0) >= 1000:
            ends.append(total)
            stretches.append(sum(losses[start : i + 1]) / (i + 1 - start))
            start = i + 1
        if total >= 2500:
            break
    assert summary["inputs"] == total
    train_loss = rec.series()["train_loss"]
    assert list(train_loss) == ends
    assert list(train_loss.values()) == pytest.approx(stretches, rel=1e-5)


def test_validation_runs_in_eval_mode_without_gradients() -> None:
    modes: list = []
    model = (
        "class Recording(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, CODE))\n"
        "        self.linear = nn.Linear(CODE, CLASSES)\n"
        "    def forward(self, x):\n"
        "        MODES.append((self.training, torch.is_grad_enabled(), len(x)))\n"
        "        return self.linear(self.encoder(x))\n"
        "Recording()\n"
    )
    globals_ = {**tiny_config()["globals"], "MODES": modes}
    train(tiny_config(globals=globals_, model=model, max_inputs=256))
    training = [m for m in modes if m[1]]
    evaluating = [m for m in modes if not m[1]]
    assert training and all(m[0] for m in training)
    assert evaluating and not any(m[0] for m in evaluating)
    # Validation and embedding are batched large (1,000) whatever the training batch size.
    assert max(m[2] for m in evaluating) == 256 and max(m[2] for m in training) == 32


def test_same_seed_gives_the_same_run() -> None:
    _, first = train(tiny_config(max_inputs=600))
    _, second = train(tiny_config(max_inputs=600))
    _, other = train(tiny_config(max_inputs=600, seed=8))
    assert first.series()["validation_loss"] == second.series()["validation_loss"]
    assert first.series()["validation_loss"] != other.series()["validation_loss"]


def test_non_tensor_dataset_falls_back_to_a_dataloader() -> None:
    train_set = (
        "class Items(torch.utils.data.Dataset):\n"
        "    def __init__(self, n):\n"
        "        g = torch.Generator().manual_seed(1)\n"
        "        self.x = torch.rand(n, 1, 8, 8, generator=g)\n"
        "    def __len__(self):\n"
        "        return len(self.x)\n"
        "    def __getitem__(self, i):\n"
        "        return self.x[i], int(self.x[i].mean() * 997) % CLASSES\n"
        "ClassLogitsDataset(Items(N_TRAIN), num_classes=CLASSES, tuple_position=1)\n"
    )
    validation_set = "ClassLogitsDataset(Items(N_VAL), num_classes=CLASSES, tuple_position=1)\n"
    config = tiny_config(
        train_set=train_set, validation_set=validation_set, max_inputs=600,
        freeze_validation_set=True,
    )  # fmt: skip
    summary, rec = train(config)
    assert summary["inputs"] == 608
    assert rec.steps("validation_loss") == [256, 512, 608]
    assert {"accuracy_svc", "accuracy_svc_heldout"} <= set(rec.series())


def test_plain_trainer_reports_loss_without_accuracy() -> None:
    summary, rec = train(tiny_config(trainer="Trainer", max_inputs=300))
    series = rec.series()
    assert "validation_loss" in series and "accuracy_argmax" not in series
    assert math.isfinite(summary["validation_loss"])


def test_two_run_matrix_produces_every_metric() -> None:
    document = tiny_config(max_inputs=1100)
    document["matrix"] = {"code": [8, 12]}
    document["globals"]["CODE"] = "${code}"
    document["experiment_name"] = "tiny_${matrix_slug}"
    sweep = parse_sweep(yaml.safe_dump(document, sort_keys=False))
    assert [r.experiment_name for r in sweep.runs] == ["tiny_code:8", "tiny_code:12"]
    params = []
    for spec in sweep.runs:
        summary, rec = train(spec.config)
        series = rec.series()
        assert set(series) == ALL_METRICS
        for key in ("validation_loss", "accuracy_argmax", "accuracy_svc", "accuracy_svc_heldout"):
            assert list(series[key]) == [256, 512, 768, 1024, 1120], key
            assert all(math.isfinite(v) for v in series[key].values())
        assert all(0.0 <= v <= 1.0 for v in series["accuracy_svc_heldout"].values())
        assert all(v > 0 for v in series["throughput"].values())
        provenance = rec.of("provenance")[0]["info"]
        assert (
            provenance["seed"] == 7
            and provenance["config"]["globals"]["CODE"] == spec.config["globals"]["CODE"]
        )
        assert {"device_name", "torch", "cuda", "host", "python"} <= set(provenance)
        params.append(summary["model_params"])
    # 64*8+8 + 8*4+4 and 64*12+12 + 12*4+4 trainable parameters.
    assert params == [556, 832]


def test_errors_from_the_users_code_propagate() -> None:
    with pytest.raises(ZeroDivisionError):
        train(tiny_config(model="1 / 0\n"))
    with pytest.raises(TypeError, match="nn.Module"):
        train(tiny_config(model="42\n"))
    with pytest.raises(TypeError, match="one-line string"):
        train(tiny_config(train_input_transforms="[\n'not callable'\n]"))


def test_learnrate_string_and_loss_names() -> None:
    for loss in ("l1", "mse", "smooth_l1_loss", "HuberLoss"):
        summary, _ = train(tiny_config(max_inputs=64, learnrate="3e-4", loss_function=loss))
        assert math.isfinite(summary["validation_loss"]), loss
    summary, _ = train(
        tiny_config(
            max_inputs=64,
            loss_function="ce",
            trainer="Trainer",
            validation_set="torch.utils.data.TensorDataset(X[:N_VAL], Y[:N_VAL])\n",
            train_set="torch.utils.data.TensorDataset(X, Y)\n",
            globals={
                **tiny_config()["globals"],
                "X": torch.rand(256, 1, 8, 8),
                "Y": torch.randint(0, 4, (256,)),
            },
        )  # fmt: skip
    )
    assert math.isfinite(summary["validation_loss"])


def test_progress_is_reported_by_time_not_only_every_200_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a CPU 200 steps can take minutes; progress must still move (here: every poll)."""
    from worker.engine import trainer

    monkeypatch.setattr(trainer, "FLUSH_EVERY_SECONDS", 0.0)
    recorder = Recorder()
    train_run(
        RunConfig.from_config(tiny_config(max_inputs=1000, batch_size=10)),
        report=recorder,
        device="cpu",
    )
    seen = sorted({payload["inputs"] for payload in recorder.of("progress")})
    # ~100 steps, polled every 10: about ten progress reports, no stretch of 200 steps silent
    assert len(seen) >= 9, seen
    assert max(b - a for a, b in zip([0, *seen], seen, strict=False)) <= 10 * 10, seen
