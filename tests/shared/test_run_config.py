"""One typed run configuration: the parser makes it, the engine rebuilds the same from the
stored configuration, and both refuse with the same rules and messages."""

from __future__ import annotations

import json

import pytest

from shared.sweepfile import RunSettings, SpecError, parse_sweep

BASE = """\
experiment_name: t
model: |
  nn.Linear(4, 2)
train_set: |
  torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 2))
batch_size: 4
learnrate: 3e-4
optimizer: SGD
"""


def test_the_parser_and_the_stored_config_give_the_same_settings() -> None:
    text = BASE + "matrix:\n  max_inputs: [64, 128]\nmax_inputs: ${max_inputs}\nscheduler: StepLR\n"
    for run in parse_sweep(text).runs:
        stored = json.loads(json.dumps(run.config, default=str))  # as the database keeps it
        assert RunSettings.from_config(stored) == run.settings
        assert run.settings.learnrate == 3e-4  # YAML 1.1 reads 3e-4 as a string
        assert run.settings.scheduler_steps == run.settings.max_inputs // 4


def test_defaults_are_filled_in_once() -> None:
    (run,) = parse_sweep(BASE + "max_epoch: 2\n").runs
    s = run.settings
    assert (s.trainer, s.precision, s.compile, s.num_workers) == ("Trainer", "fp32", False, 0)
    assert (s.num_epochs_between_validations, s.freeze_validation_set) == (1, False)
    assert (s.max_inputs, s.max_epoch, s.seed, s.scheduler) == (None, 2, None, None)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "set 'max_inputs' or 'max_epoch'"),
        ("max_epoch: 1\nscheduler: StepLR\n", "'scheduler' needs 'max_inputs'"),
        ("max_epoch: 1\nprecision: fp16\n", "'precision' 'fp16' is not supported"),
        ("max_epoch: 1\nnum_workers: -1\n", "'num_workers' must be an integer >= 0"),
        ("max_epoch: 1\ncompile: 1\n", "'compile' must be true or false"),
    ],
)
def test_engine_and_parser_refuse_alike(extra: str, message: str) -> None:
    with pytest.raises(SpecError) as parsed:
        parse_sweep(BASE + extra)
    assert message in parsed.value.message
    config = {"batch_size": 4, "learnrate": 0.1, "optimizer": "SGD"}
    for line in extra.splitlines():
        key, _, value = line.partition(": ")
        config[key] = json.loads(value) if value[:1].isdigit() or value[:1] == "-" else value
    with pytest.raises(SpecError) as built:
        RunSettings.from_config(config)
    assert built.value.message == parsed.value.message
