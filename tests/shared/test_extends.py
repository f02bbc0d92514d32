"""`$extends`: bases merged per top-level key, chains, and errors that name their file."""

from __future__ import annotations

import pytest

from shared.sweepfile import SpecError, parse_sweep, parse_with_extends
from tests.shared.sweepfile_support import BASE

MATRIX_BASE = "matrix:\n  hidden: [4, 8]\n" + BASE.replace(
    "nn.Linear(4, 2)", "nn.Linear(4, ${hidden})"
)


def _parse(files: dict[str, str], name: str = "child.yml"):
    return parse_with_extends(files[name], name, files.get)


def test_extending_file_replaces_top_level_keys_of_its_base() -> None:
    files = {
        "base.yml": MATRIX_BASE,
        "child.yml": "$extends: base.yml\nbatch_size: 32\nexperiment_name: child_${matrix_slug}\n",
    }
    sweep = _parse(files)
    assert [r.experiment_name for r in sweep.runs] == ["child_hidden:4", "child_hidden:8"]
    # The base's ${...} are substituted with the same matrix entry.
    assert sweep.runs[1].config["model"] == "nn.Linear(4, 8)\n"
    assert sweep.runs[0].config["batch_size"] == 32 and sweep.merged_from == (
        "child.yml",
        "base.yml",
    )
    # The merged text stands alone: it parses to the same runs without the base.
    alone = parse_sweep(sweep.yaml_text)
    assert [r.config_hash for r in alone.runs] == [r.config_hash for r in sweep.runs]
    assert "$extends" not in sweep.yaml_text.split("\n", 1)[1]


def test_a_base_may_extend_another_and_paths_are_relative_to_the_extending_file() -> None:
    files = {
        "bases/root.yml": MATRIX_BASE,
        "bases/mid.yml": "$extends: root.yml\noptimizer: SGD\n",
        "exp/child.yml": "$extends: ../bases/mid.yml\nmatrix:\n  hidden: [16]\n",
    }
    sweep = _parse(files, "exp/child.yml")
    (run,) = sweep.runs
    assert run.params == {"hidden": 16} and run.config["optimizer"] == "SGD"
    assert sweep.merged_from == ("exp/child.yml", "bases/mid.yml", "bases/root.yml")


def test_missing_and_circular_bases_are_clear_errors() -> None:
    with pytest.raises(SpecError) as caught:
        _parse({"child.yml": "batch_size: 3\n$extends: nope.yml\n"})
    assert caught.value.file == "child.yml" and caught.value.line == 2
    assert "the base file 'nope.yml' was not found" in caught.value.message
    loop = {"a.yml": "$extends: b.yml\n" + BASE, "b.yml": "$extends: a.yml\nseed: 1\n"}
    with pytest.raises(SpecError, match=r"circular \$extends: a.yml -> b.yml -> a.yml"):
        _parse(loop, "a.yml")
    with pytest.raises(SpecError, match=r"without \$\{"):
        _parse({"child.yml": "$extends: ${x}.yml\n"})


def test_errors_point_at_the_file_and_line_the_key_came_from() -> None:
    files = {"base.yml": BASE.replace("Adam", "Adamm"), "child.yml": "$extends: base.yml\n"}
    with pytest.raises(SpecError) as caught:
        _parse(files)
    assert (caught.value.file, caught.value.key) == ("base.yml", "optimizer")
    assert caught.value.line == BASE.splitlines().index("optimizer: Adam") + 1
    assert str(caught.value).startswith("base.yml, line 8, key 'optimizer'")
    files["child.yml"] += "batch_size: -1\n"
    with pytest.raises(SpecError) as caught:
        _parse(files)
    assert (caught.value.file, caught.value.line) == ("child.yml", 2)


def test_extends_without_its_base_names_what_to_do() -> None:
    with pytest.raises(SpecError, match="needs its base file"):
        parse_sweep("$extends: base.yml\n" + BASE)
