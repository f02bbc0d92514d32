"""parse_sweep: substitution, YAML typing, code detection, config_hash, the seed's file."""

from __future__ import annotations

import pytest

from shared.sweepfile import SpecError, config_hash, is_code, parse_sweep
from tests.shared.sweepfile_support import BASE

SEED_SLUG = "patch:7_layer:8_head:16_hidden:256_mlp:512_drop:0.0_cs:784"


def with_matrix(matrix: str, body: str = BASE) -> str:
    return "matrix:\n" + matrix + body


# --- the seed ------------------------------------------------------------------------------


def test_seed_file_is_one_run_with_the_format_slug(seed_yaml: str) -> None:
    sweep = parse_sweep(seed_yaml)
    assert sweep.matrix_keys == ["patch", "layer", "head", "hidden", "mlp", "drop", "cs"]
    assert sweep.combinations == 1
    assert len(sweep.runs) == 1
    run = sweep.runs[0]
    assert run.matrix_id == "1"
    assert run.slug == SEED_SLUG
    assert run.experiment_name == f"aug/fmnist_vit_trivaug_{SEED_SLUG}"
    assert run.params == {
        "patch": 7,
        "layer": 8,
        "head": 16,
        "hidden": 256,
        "mlp": 512,
        "drop": 0.0,
        "cs": 784,
    }
    config = run.config
    assert config["max_inputs"] == 2_000_000
    assert config["learnrate"] == 0.0003
    assert config["globals"] == {"SHAPE": "(3, 28, 28)", "CODE_SIZE": 784, "CLASSES": 10}
    assert "patch_size=7," in config["model"]
    assert "dropout=0.0," in config["model"]
    assert config["trainer"] == "experiments.reptrainer.RepresentationClassTrainer"
    assert len(run.config_hash) == 64
    assert sweep.yaml_text == seed_yaml


def test_seed_file_as_bytes_gives_the_same_run(seed_yaml: str) -> None:
    assert parse_sweep(seed_yaml.encode()).runs == parse_sweep(seed_yaml).runs


# --- substitution --------------------------------------------------------------------------


def test_values_are_substituted_as_source_text() -> None:
    text = with_matrix(
        "  shape: [[32, 48]]\n  drop: [0.]\n  act: [relu]\n  n: [4]\n",
        BASE.replace(
            "  nn.Linear(4, 2)\n",
            "  x = ${shape}\n  d = ${drop}\n  a = '${act}'\n  nn.Linear(${n}, 2)\n",
        ),
    )
    run = parse_sweep(text).runs[0]
    assert run.config["model"] == "x = [32, 48]\nd = 0.0\na = 'relu'\nnn.Linear(4, 2)\n"
    assert run.slug == "shape:32,48_drop:0.0_act:relu_n:4"


def test_substituted_globals_are_retyped_by_yaml() -> None:
    text = with_matrix("  cs: [784]\n", BASE + "globals:\n  CODE_SIZE: ${cs}\n  S: (3, 28)\n")
    assert parse_sweep(text).runs[0].config["globals"] == {"CODE_SIZE": 784, "S": "(3, 28)"}


def test_matrix_slug_and_id_substitute_everywhere() -> None:
    text = with_matrix(
        "  a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n",
        BASE.replace("exp_${matrix_slug}", "e/${matrix_id}/${matrix_slug}")
        + "description: run ${matrix_id} of ${a}\n",
    )
    runs = parse_sweep(text).runs
    assert [r.experiment_name for r in runs[:2]] == ["e/01/a:1", "e/02/a:2"]
    assert runs[10].experiment_name == "e/11/a:11"
    assert runs[0].config["description"] == "run 01 of 1"


def test_substitution_covers_comments_and_the_matrix_block() -> None:
    # a known name in a comment is fine; an unknown one is an error even in a comment
    ok = with_matrix("  a: [1]  # a is ${a}\n", "# ${matrix_slug}\n" + BASE)
    assert len(parse_sweep(ok).runs) == 1
    bad = with_matrix("  a: [1]\n", BASE + "# TODO: try ${b} later\n")
    with pytest.raises(SpecError) as err:
        parse_sweep(bad)
    assert "${b}" in err.value.message
    assert "'b' is not a matrix key" in err.value.message
    assert err.value.value == "b"
    assert err.value.line == 12
    assert err.value.column == 13  # the $ of ${b}


def test_unknown_substitution_in_code_names_line_and_column() -> None:
    text = with_matrix("  a: [1]\n", BASE.replace("nn.Linear(4, 2)", "nn.Linear(${hidden}, 2)"))
    with pytest.raises(SpecError) as err:
        parse_sweep(text)
    assert "${hidden}" in err.value.message
    assert "known: a, matrix_slug, matrix_id" in err.value.message
    assert (err.value.line, err.value.column) == (5, 13)


@pytest.mark.parametrize("matrix", ["", "matrix:\n", "matrix: {}\n", "matrix: null\n"])
def test_no_matrix_means_one_run_and_no_substitution(matrix: str) -> None:
    text = matrix + BASE + "# ${anything} stays as it is\n"
    sweep = parse_sweep(text)
    assert len(sweep.runs) == 1
    run = sweep.runs[0]
    assert (run.matrix_id, run.slug, run.params) == ("1", "", {})
    assert run.experiment_name == "exp_${matrix_slug}"
    assert sweep.matrix_keys == []
    assert sweep.combinations == 1


def test_empty_value_list_gives_zero_runs() -> None:
    sweep = parse_sweep(with_matrix("  a: [1, 2]\n  b: []\n"))
    assert sweep.runs == []
    assert sweep.combinations == 0
    assert sweep.matrix_keys == ["a", "b"]


def test_filter_in_a_file_gives_gapped_ids() -> None:
    text = with_matrix(
        "  hidden: [64, 100, 128]\n  head: [4, 3, 8, 16]\n"
        "  $filter: |\n    ${hidden} / ${head} == ${hidden} // ${head}\n    and ${head} < 16\n"
    )
    sweep = parse_sweep(text)
    assert sweep.combinations == 12
    assert [(r.matrix_id, r.params["hidden"], r.params["head"]) for r in sweep.runs] == [
        ("01", 64, 4),
        ("03", 64, 8),
        ("05", 100, 4),
        ("09", 128, 4),
        ("11", 128, 8),
    ]


def test_runs_keep_the_matrix_in_their_config() -> None:
    text = with_matrix("  a: [1, 2]  # comment\n")
    for run in parse_sweep(text).runs:
        assert run.config["matrix"] == {"a": [1, 2]}


def test_matrix_with_anchors_still_parses() -> None:
    text = "matrix:\n  a: &vals [1, 2]\n  b: *vals\n" + BASE + "globals:\n  V: *vals\n"
    sweep = parse_sweep(text)
    assert len(sweep.runs) == 4
    assert sweep.runs[0].config["globals"] == {"V": [1, 2]}


# --- YAML 1.1 typing -----------------------------------------------------------------------


def test_underscored_int_and_exponent_string_learnrate() -> None:
    text = BASE.replace("max_inputs: 100", "max_inputs: 2_000_000").replace(
        "learnrate: 0.001", "learnrate: 3e-4"
    )
    config = parse_sweep(text).runs[0].config
    assert config["max_inputs"] == 2_000_000
    # PyYAML 1.1 reads 3e-4 as a string; accepted for learnrate through float()
    assert config["learnrate"] == pytest.approx(3e-4)
    assert isinstance(config["learnrate"], float)


@pytest.mark.parametrize("value", ["abc", ".nan", ".inf", "-0.1", "true", "[0.1]"])
def test_bad_learnrate_is_named(value: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_sweep(BASE.replace("learnrate: 0.001", f"learnrate: {value}"))
    assert err.value.key == "learnrate"
    assert "'learnrate' must be a non-negative number" in err.value.message
    assert err.value.line == 7


# --- what is code --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("model", "nn.Linear(1, 1)", True),
        ("model", 5, True),
        ("train_set", "ds", True),
        ("train_set_small", "ds", True),
        ("validation_set", "ds", True),
        ("validation_set2", "ds", True),
        ("loss_function", "l2", False),
        ("loss_function", "lambda a, b: (a - b).abs().mean()\n", True),
        ("optimizer", "AdamW", False),
        ("train_input_transforms", "[\n  VT.RandomCrop(28),\n]\n", True),
        ("train_input_transforms", "[VT.RandomCrop(28)]", False),
        ("experiment_name", "exp", False),
        ("description", "two\nlines\n", False),
        ("batch_size", 64, False),
    ],
)
def test_is_code(key: str, value: object, expected: bool) -> None:
    assert is_code(key, value) is expected


def test_extra_dataset_keys_are_known_and_compiled() -> None:
    text = BASE + "validation_set_heldout: |\n  import os\n"
    with pytest.raises(SpecError) as err:
        parse_sweep(text)
    assert err.value.key == "validation_set_heldout"
    assert "last statement must be an expression" in err.value.message
    assert err.value.line == 11


def test_one_line_strings_stay_strings_and_are_not_compiled() -> None:
    text = BASE + "loss_function: l2\ndescription: |\n  not: python (at all\n"
    run = parse_sweep(text).runs[0]
    assert run.config["loss_function"] == "l2"


def test_multiline_value_of_any_key_is_compiled() -> None:
    text = BASE + "loss_function: |\n  def f(a, b):\n      return (a - b\n  f\n"
    with pytest.raises(SpecError) as err:
        parse_sweep(text)
    assert err.value.key == "loss_function"
    assert "syntax error" in err.value.message
    assert err.value.line == 12  # `return (a - b` in the YAML


def test_code_is_compiled_not_run(tmp_path) -> None:
    target = tmp_path / "written"
    text = BASE.replace(
        "  nn.Linear(4, 2)\n", f"  open({str(target)!r}, 'w').write('x')\n  nn.Linear(4, 2)\n"
    )
    assert len(parse_sweep(text).runs) == 1
    assert not target.exists()


# --- config_hash ---------------------------------------------------------------------------

REFORMATTED = """\
# the same configuration, written differently
optimizer: 'Adam'
max_inputs: 1_00
learnrate: 1.0e-3
batch_size:    8
train_set: |-
    fmnist_dataset(train=True)
model: "nn.Linear(4, 2)\\n"
experiment_name: "exp_${matrix_slug}"   # trailing comment
"""


def test_config_hash_ignores_order_formatting_and_comments() -> None:
    first = parse_sweep(BASE).runs[0]
    second = parse_sweep(REFORMATTED).runs[0]
    assert first.config_hash == second.config_hash


def test_config_hash_ignores_the_matrix_and_description() -> None:
    single = parse_sweep(with_matrix("  a: [1]\n", BASE + "description: one\n")).runs[0]
    double = parse_sweep(with_matrix("  a: [1, 2]  # more\n", BASE)).runs[0]
    assert single.slug == double.slug == "a:1"
    assert single.config_hash == double.config_hash


def test_config_hash_of_flow_and_block_maps_agree() -> None:
    flow = parse_sweep(BASE + "globals: {A: 1, B: [1, 2]}\n").runs[0]
    block = parse_sweep(BASE + "globals:\n  B:\n    - 1\n    - 2\n  A: 1\n").runs[0]
    assert flow.config_hash == block.config_hash


@pytest.mark.parametrize(
    "change",
    [
        ("learnrate: 0.001", "learnrate: 0.002"),
        ("batch_size: 8", "batch_size: 16"),
        ("max_inputs: 100", "max_inputs: 101"),
        ("optimizer: Adam", "optimizer: AdamW"),
        ("nn.Linear(4, 2)", "nn.Linear(4, 3)"),
        ("exp_${matrix_slug}", "other_${matrix_slug}"),
    ],
)
def test_config_hash_changes_with_any_value(change: tuple[str, str]) -> None:
    before = parse_sweep(BASE).runs[0].config_hash
    after = parse_sweep(BASE.replace(*change)).runs[0].config_hash
    assert before != after


def test_config_hash_tells_types_apart() -> None:
    one = parse_sweep(BASE + "globals:\n  A: 1\n").runs[0].config_hash
    text = parse_sweep(BASE + "globals:\n  A: '1'\n").runs[0].config_hash
    real = parse_sweep(BASE + "globals:\n  A: 1.0\n").runs[0].config_hash
    assert len({one, text, real}) == 3


def test_config_hash_differs_per_run_of_a_matrix() -> None:
    runs = parse_sweep(with_matrix("  a: [1, 2, 3]\n")).runs
    assert len({r.config_hash for r in runs}) == 3


def test_config_hash_handles_every_yaml_value() -> None:
    # non-string keys, sets, dates and binary: stable and never a TypeError
    extra = "globals:\n  A: {1: x, b: y}\n  B: !!set {a, b}\n  C: 2024-01-02\n  D: !!binary aGk=\n"
    first = parse_sweep(BASE + extra).runs[0]
    assert first.config_hash == config_hash(first.config)
    assert first.config["globals"]["A"] == {1: "x", "b": "y"}


# --- caps ----------------------------------------------------------------------------------


def test_run_cap_names_the_count_and_the_limit() -> None:
    values = ",".join(map(str, range(101)))
    text = with_matrix(f"  a: [{values}]\n  b: [1, 2]\n")
    with pytest.raises(SpecError) as err:
        parse_sweep(text, max_runs=200)
    assert "202 runs" in err.value.message
    assert "limit is 200" in err.value.message
    assert (err.value.key, err.value.line) == ("matrix", 1)


def test_default_run_cap_is_ten_thousand() -> None:
    values = ",".join(map(str, range(101)))
    text = with_matrix(f"  a: [{values}]\n  b: [{values}]\n")  # 10,201 runs
    with pytest.raises(SpecError) as err:
        parse_sweep(text)
    assert "10,201 runs; the limit is 10,000" in err.value.message


def test_filter_can_bring_a_sweep_under_the_run_cap() -> None:
    values = ",".join(map(str, range(150)))
    text = with_matrix(f"  a: [{values}]\n  b: [{values}]\n  $filter: ${{a}} == ${{b}}\n")
    sweep = parse_sweep(text, max_runs=200)
    assert len(sweep.runs) == 150
    assert sweep.combinations == 22_500
    assert sweep.runs[-1].matrix_id == "22500"


def test_combination_cap_applies_before_filtering() -> None:
    values = ",".join(map(str, range(1000)))
    text = with_matrix(f"  a: [{values}]\n  b: [{values}]\n  $filter: 'False'\n")
    with pytest.raises(SpecError) as err:
        parse_sweep(text)
    assert "1,000,000 combinations before $filter" in err.value.message
    assert "limit is 100,000" in err.value.message


def test_astronomic_matrix_is_refused_without_expanding() -> None:
    values = ",".join(map(str, range(100)))
    text = with_matrix("".join(f"  k{i}: [{values}]\n" for i in range(30)))
    with pytest.raises(SpecError) as err:
        parse_sweep(text)
    assert "combinations before $filter" in err.value.message


def test_size_times_runs_cap() -> None:
    padding = "# " + "x" * 998 + "\n"
    values = ",".join(map(str, range(2000)))
    text = with_matrix(f"  a: [{values}]\n", BASE + padding * 100)
    with pytest.raises(SpecError) as err:
        parse_sweep(text)
    assert "2,000 runs" in err.value.message
    assert "split the sweep" in err.value.message
