"""Commands that need no server: preview, the data check `sweeps run` makes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import datacheck
from shared.settings import get_settings
from tests.cli.conftest import TINY_SWEEP, cli_env, sweeps


def test_preview_lists_runs_without_a_server(tmp_path: Path) -> None:
    result = sweeps("preview", str(TINY_SWEEP), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [r["matrix_id"] for r in runs] == ["1", "2"]
    assert [r["slug"] for r in runs] == ["hidden:4", "hidden:8"]
    assert runs[0]["params"] == {"hidden": 4}
    assert runs[1]["experiment_name"] == "tiny/mlp_hidden:8"
    assert len(runs[0]["config_hash"]) == 64 and runs[0]["config_hash"] != runs[1]["config_hash"]
    # Offline means offline: nothing was created here.
    assert not (tmp_path / ".sweeps").exists()

    table = sweeps("preview", str(TINY_SWEEP), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "hidden:4" in table.stdout and runs[0]["config_hash"][:12] in table.stdout


def test_preview_names_the_problem_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_SWEEP.read_text().replace("batch_size: 32", "batch_sise: 32"))
    result = sweeps("preview", str(bad), cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "batch_sise" in lines[0] and "did you mean 'batch_size'" in lines[0]
    assert "line" in lines[0]

    missing = sweeps("preview", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode != 0
    assert missing.stderr.strip() == f"error: no such file: {tmp_path / 'nope.yaml'}"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("yaml_merge_key_bomb.yaml", "line 26, column 18, key 'globals.b14.<<'"),
        ("huge_integer_5000_digits.yaml", "line 12, column 13, key 'max_inputs'"),
        ("nonfinite_learnrate_nan.yaml", "line 10, key 'learnrate'"),
    ],
)
def test_preview_refuses_hostile_files_with_line_and_key(
    tmp_path: Path, name: str, words: str
) -> None:
    corpus = Path(__file__).resolve().parent.parent / "corpus"
    result = sweeps("preview", str(corpus / name), cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_missing_fashion_mnist_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SWEEPS_DATA_DIR", str(empty))
    monkeypatch.setattr(datacheck, "SYSTEM_ROOT", tmp_path / "no-system-datasets")
    # Port 9 on localhost (discard) is closed here: the download cannot work.
    monkeypatch.setattr(datacheck, "DOWNLOAD_HOST", ("127.0.0.1", 9))
    get_settings.cache_clear()
    try:
        uses_it = "train_set: |\n  fmnist_dataset(train=True)\n"
        message = datacheck.missing_data_message(uses_it)
        assert message is not None
        assert "apt-get install dataset-fashion-mnist" in message
        assert "SWEEPS_DATA_DIR" in message and "torchvision" in message
        assert str(empty) in message
        # A file that uses no dataset helper needs nothing.
        assert datacheck.missing_data_message(TINY_SWEEP.read_text()) is None
        # The same files in SWEEPS_DATA_DIR/fashion-mnist are found.
        folder = empty / "fashion-mnist"
        folder.mkdir()
        for name in datacheck.FILES:
            (folder / name).write_bytes(b"")
        assert datacheck.missing_data_message(uses_it) is None
    finally:
        get_settings.cache_clear()


def test_inspect_counts_each_runs_parameters(tmp_path: Path) -> None:
    result = sweeps("inspect", str(TINY_SWEEP), "--json", cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    # Linear(16, h) + Linear(h, 2): 16h + h + 2h + 2.
    assert [(r["slug"], r["params"]) for r in rows] == [("hidden:4", 78), ("hidden:8", 154)]
    assert "Linear(in_features=16, out_features=8" in rows[1]["summary"]


def test_migrate_then_tokens_on_a_fresh_database(tmp_path: Path) -> None:
    before = sweeps("token", "list", cwd=tmp_path)
    assert before.returncode != 0 and "Traceback" not in before.stderr
    assert before.stderr.strip().endswith("run `sweeps migrate`"), before.stderr

    migrated = sweeps("migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / ".sweeps" / "sweeps.db").is_file()

    created = sweeps("token", "create", "laptop", cwd=tmp_path)
    assert created.returncode == 0 and created.stdout.startswith("swp_"), created.stderr
    listed = sweeps("token", "list", cwd=tmp_path)
    assert listed.returncode == 0
    assert [line.split("\t")[1] for line in listed.stdout.splitlines()] == ["laptop"]
    assert created.stdout.strip() not in listed.stdout  # only hashes are stored


def test_preview_of_a_file_for_the_users_checkout(tmp_path: Path) -> None:
    checkout = Path(__file__).resolve().parents[1] / "support" / "nnexp_project"
    sweep = tmp_path / "denoise.yml"
    sweep.write_text(
        "experiment_name: denoise/x\ntrainer: experiments.denoise.trainer.TrainDenoising\n"
        "train_set: |\n  ds = blob_images(64)\nmodel: |\n  EncoderConv2d(1, 1)\n"
        "batch_size: 8\nlearnrate: 0.01\noptimizer: AdamW\nscheduler: CosineAnnealingWarmupLR\n"
        "max_inputs: 64\nnoise_amount: 0.1\n"
    )
    env = {**cli_env(), "SWEEPS_PROJECT_ROOT": str(checkout)}
    result = sweeps("preview", str(sweep), "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert [r["experiment_name"] for r in json.loads(result.stdout)] == ["denoise/x"]

    env["SWEEPS_PROJECT_ROOT"] = str(tmp_path / "elsewhere")
    result = sweeps("preview", str(sweep), cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        f"error: SWEEPS_PROJECT_ROOT={tmp_path / 'elsewhere'} does not exist; "
        "name a checkout of your project"
    )
