"""Every validation error class: one SpecError with a human message and where it happened."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.sweepfile import SpecError, parse_sweep
from tests.shared.sweepfile_support import BASE


def error_of(text: str | bytes, **kwargs: int) -> SpecError:
    with pytest.raises(SpecError) as err:
        parse_sweep(text, **kwargs)
    return err.value


def test_base_is_valid() -> None:
    assert len(parse_sweep(BASE).runs) == 1


# --- YAML ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words", "line", "column"),
    [
        ("a: [1, 2\nb: 3\n", "did not find expected ',' or ']'", 2, 2),
        (BASE + "globals:\n  A: 1\n B: 2\n", "did not find expected key", 12, 2),
        (BASE + "\tx: 1\n", "tab character", 10, 1),
        (BASE + "model: 'unclosed\n", "found unexpected end of stream", 11, 1),
        (BASE + "x: {a: 1\n", "did not find expected ',' or '}'", 11, 1),
        ("a: 1\n---\nb: 2\n", "expected a single document", 2, 1),
        (BASE + 'description: "a\x00b"\n', "control characters are not allowed", 10, 16),
        (
            BASE + "globals: !!python/object:os.system {}\n",
            "could not determine a constructor",
            10,
            10,
        ),
        (BASE + "? [a, b]\n: 1\n", "found unhashable key", 10, 3),
        (BASE + "x: *nowhere\n", "found undefined alias", 10, 4),
    ],
)
def test_yaml_errors_have_line_and_column(text: str, words: str, line: int, column: int) -> None:
    err = error_of(text)
    assert err.message.startswith("invalid YAML")
    assert words in err.message
    assert (err.line, err.column) == (line, column)
    assert err.location.startswith(f"line {line}, column {column}")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- a\n- b\n", "must be a YAML map of keys, not a list"),
        ("just text\n", "must be a YAML map of keys, not a str"),
        ("42\n", "must be a YAML map of keys, not a int"),
    ],
)
def test_not_a_map(text: str, words: str) -> None:
    assert words in error_of(text).message


def test_non_utf8_bytes_name_the_byte_and_line() -> None:
    err = error_of((BASE + "# caf\xe9\n").encode("latin-1"))
    assert "not UTF-8" in err.message
    assert "0xe9" in err.message
    assert err.line == 10


def test_lone_surrogate_in_text_is_refused() -> None:
    err = error_of(BASE + "# \udc80\n")
    assert "not valid Unicode" in err.message
    assert err.line == 10


def test_utf8_bom_is_accepted() -> None:
    assert len(parse_sweep(b"\xef\xbb\xbf" + BASE.encode()).runs) == 1


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 100_000 + "]" * 100_000,  # crashed libyaml's composer before the check
        "a:\n  " + "- " * 100_000 + "x\n",
        "? " * 100_000 + "x\n",
        "a: " + "{a: " * 50_000 + "}" * 50_000,
    ],
    ids=["brackets", "dashes", "keys", "maps"],
)
def test_deep_nesting_is_refused_with_its_line(text: str) -> None:
    # How fast: bench/hostile_files.py (a timing here would fail on a busy machine, not on a bug).
    err = error_of(text)
    assert "nested more than 100 levels deep" in err.message
    assert err.line is not None


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    err = error_of(BASE + "\n".join(lines) + "\n")
    assert "expands to more than 100,000 values" in err.message
    assert (err.line, err.key) == (BASE.count("\n") + 5, "a4")


def test_alias_bomb_smuggled_through_a_matrix_string_is_refused() -> None:
    bomb = "[&a [x,x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], " + ", ".join(
        f"&c{i} [{', '.join(['*b' if i == 0 else f'*c{i - 1}'] * 10)}]" for i in range(6)
    )
    text = f'matrix:\n  v: ["{bomb}]"]\n' + BASE + "globals:\n  V: ${v}\n"
    err = error_of(text)
    assert "expands to more than" in err.message
    assert err.run == "1 (v:" + err.run.split("(v:")[1]


def test_alias_expansion_is_budgeted_over_every_run_of_a_sweep() -> None:
    # ~11,000 values added by aliases per reading: allowed in one file, not 300 times over
    aliases = "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    aliases += "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in (1, 2, 3))
    one_run = BASE + "globals:\n" + aliases
    assert len(parse_sweep(one_run).runs) == 1
    matrix = "matrix:\n  seed: [" + ", ".join(map(str, range(300))) + "]\n"
    err = error_of(matrix + one_run.replace("experiment_name: ", "experiment_name: ${seed}_"))
    assert "expand to more than 1,000,000 values over the sweep's" in err.message
    assert err.key is not None and err.key.startswith("globals.a") and err.run is not None


def test_self_referencing_alias_is_refused() -> None:
    err = error_of(BASE + "globals:\n  A: &loop [1, *loop]\n")
    assert "an alias refers to the value that contains it" in err.message


def test_depth_through_aliases_is_refused() -> None:
    # each anchor is 60 deep (allowed); nesting one in another makes 120 once expanded
    inner = "[" * 60 + "1" + "]" * 60
    outer = "[" * 60 + "*a" + "]" * 60
    err = error_of(BASE + f"globals:\n  A: &a {inner}\n  B: {outer}\n")
    assert "nested more than 100 levels deep once aliases are expanded" in err.message


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["experiment_name", "model", "train_set", "batch_size", "learnrate", "optimizer"]
)
def test_missing_required_key_is_named(key: str) -> None:
    text = re.sub(rf"^{key}:.*\n(  .*\n)*", "", BASE, flags=re.MULTILINE)  # with its block
    assert key + ":" not in text
    err = error_of(text)
    assert err.key == key
    assert f"required key '{key}' is missing or empty" in err.message


@pytest.mark.parametrize("value", ["''", "0", "null", "[]"])
def test_empty_required_key_is_named(value: str) -> None:
    err = error_of(BASE.replace("batch_size: 8", f"batch_size: {value}"))
    assert err.key == "batch_size"
    assert "missing or empty" in err.message
    assert err.line == 6


def test_a_run_needs_an_end() -> None:
    err = error_of(BASE.replace("max_inputs: 100\n", ""))
    assert "'max_inputs' or 'max_epoch'" in err.message
    assert len(parse_sweep(BASE.replace("max_inputs: 100", "max_epoch: 1")).runs) == 1


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("learnrat", "did you mean 'learnrate'?"),
        ("optimiser", "did you mean 'optimizer'?"),
        ("batchsize", "did you mean 'batch_size'?"),
        ("models", "did you mean 'model'?"),
        ("validaton_set", "did you mean 'validation_set'?"),
        ("zzz", ""),
    ],
)
def test_unknown_key_is_named_with_a_suggestion(key: str, hint: str) -> None:
    err = error_of(BASE + f"{key}: 1\n")
    assert err.key == key
    assert f"unknown key '{key}'" in err.message
    assert hint in err.message
    assert err.line == 10


def test_non_string_top_level_key() -> None:
    err = error_of(BASE + "1: x\n")
    assert "top-level key 1 must be a name" in err.message


# --- types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "words", "key", "line_no"),
    [
        ("batch_size: big", "'batch_size' must be an integer >= 1, got 'big'", "batch_size", 6),
        ("batch_size: 8.5", "'batch_size' must be an integer", "batch_size", 6),
        ("batch_size: -8", "'batch_size' must be an integer >= 1", "batch_size", 6),
        ("batch_size: true", "'batch_size' must be an integer", "batch_size", 6),
        ("max_inputs: 1e6", "'max_inputs' must be an integer", "max_inputs", 9),
        ("experiment_name: [a, b]", "'experiment_name' must be a string, not list", None, 1),
        ("optimizer: [Adam]", "'optimizer' ['Adam'] is not supported", "optimizer", 8),
    ],
)
def test_wrong_types_are_named(line: str, words: str, key: str | None, line_no: int) -> None:
    name = line.split(":")[0]
    text = "".join(
        (line if existing.startswith(name + ":") else existing) + "\n"
        for existing in BASE.splitlines()
    )
    err = error_of(text)
    assert words in err.message
    assert err.key == (key or name)
    assert err.line == line_no


@pytest.mark.parametrize(
    ("extra", "words", "key", "line"),
    [
        ("seed: -1\n", "'seed' must be an integer >= 0", "seed", 10),
        ("num_workers: many\n", "'num_workers' must be an integer >= 0", "num_workers", 10),
        ("validation_batch_size: 0\n", "'validation_batch_size' must be an integer >= 1", None, 10),
        ("max_epoch: 1.5\n", "'max_epoch' must be an integer", "max_epoch", 10),
        ("freeze_validation_set: maybe\n", "must be true or false", None, 10),
        ("compile: 1\n", "'compile' must be true or false", "compile", 10),
        ("globals: [1, 2]\n", "'globals' must be a map of NAME: value, not list", None, 10),
        ("globals:\n  1x: 3\n", "globals name '1x' is not a Python identifier", "globals", 10),
        ("description: [1]\n", "'description' must be text", None, 10),
        (
            "validation_set: 5\n",
            "'validation_set' must be Python code (a string), not int",
            None,
            10,
        ),
        ("model_x: 1\n", "unknown key 'model_x'", None, 10),
    ],
)
def test_optional_keys_are_typed(extra: str, words: str, key: str | None, line: int) -> None:
    err = error_of(BASE + extra)
    assert words in err.message
    assert err.key == (key or extra.split(":")[0])
    assert err.line == line


def test_model_must_be_a_string() -> None:
    text = BASE.replace("model: |\n  nn.Linear(4, 2)\n", "model: 5\n")
    err = error_of(text)
    assert "'model' must be Python code (a string), not int" in err.message
    assert (err.key, err.line) == ("model", 2)


# --- names the engine must know ------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        (
            "scheduler: OneCycleLR\n",
            "scheduler",
            ["'OneCycleLR' is not supported", "CosineAnnealingLR"],
        ),
        ("scheduler: CosineAnealingLR\n", "scheduler", ["did you mean 'CosineAnnealingLR'?"]),
        ("loss_function: l3\n", "loss_function", ["'l3' is not a known loss", "aliases: l1"]),
        ("loss_function: MSELos\n", "loss_function", ["did you mean 'MSELoss'?"]),
        ("trainer: experiments.Foo\n", "trainer", ["'experiments.Foo' is not supported"]),
        ("precision: fp8\n", "precision", ["'fp8' is not supported", "fp32, bf16"]),
    ],
)
def test_unsupported_names_are_listed(extra: str, key: str, words: list[str]) -> None:
    err = error_of(BASE + extra)
    assert err.key == key
    assert err.line == 10
    assert err.value == extra.split(": ")[1].strip()
    for word in words:
        assert word in err.message


def test_unsupported_optimizer_suggests() -> None:
    err = error_of(BASE.replace("optimizer: Adam", "optimizer: adamw"))
    assert "'adamw' is not supported; did you mean 'AdamW'?" in err.message
    assert (err.key, err.line) == ("optimizer", 8)


@pytest.mark.parametrize(
    "extra",
    [
        "scheduler: CosineAnnealingLR\n",
        "loss_function: cross_entropy\n",
        "loss_function: CrossEntropyLoss\n",
        "loss_function: smooth_l1_loss\n",
        "trainer: Trainer\n",
        "trainer: experiments.reptrainer.RepresentationClassTrainer\n",
        "precision: bf16\n",
    ],
)
def test_supported_names_pass(extra: str) -> None:
    assert len(parse_sweep(BASE + extra).runs) == 1


def test_scheduler_needs_max_inputs() -> None:
    text = BASE.replace("max_inputs: 100", "max_epoch: 2") + "scheduler: StepLR\n"
    err = error_of(text)
    assert "'scheduler' needs 'max_inputs'" in err.message
    assert (err.key, err.line) == ("scheduler", 10)


# --- code ----------------------------------------------------------------------------------


def test_code_syntax_error_points_at_the_yaml_line_and_column() -> None:
    text = BASE.replace("  nn.Linear(4, 2)\n", "  a = 1\n  b = 2 +* 3\n  nn.Linear(4, 2)\n")
    err = error_of(text)
    assert err.key == "model"
    assert "Python syntax error: invalid syntax (line 2 of the code)" in err.message
    assert (err.line, err.column) == (4, 10)  # the `*` of `2 +* 3`, as the YAML shows it


def test_unclosed_bracket_in_train_set() -> None:
    text = BASE.replace("  fmnist_dataset(train=True)\n", "  fmnist_dataset(\n      train=True,\n")
    err = error_of(text)
    assert err.key == "train_set"
    assert "'(' was never closed" in err.message
    assert (err.line, err.column) == (5, 17)


def test_code_errors_found_by_compile_not_just_parse() -> None:
    text = BASE.replace("  nn.Linear(4, 2)\n", "  return 5\n  nn.Linear(4, 2)\n")
    err = error_of(text)
    assert "'return' outside function" in err.message
    assert (err.key, err.line) == ("model", 3)


def test_last_statement_must_give_a_value() -> None:
    text = BASE.replace("  nn.Linear(4, 2)\n", "  m = nn.Linear(4, 2)\n  import torch\n")
    err = error_of(text)
    assert "the last statement must be an expression giving the value" in err.message
    assert (err.key, err.line) == ("model", 4)


def test_last_statement_may_be_an_assignment() -> None:
    # nn-experiments takes the assigned value: `ds = ...` ends a dataset block
    text = BASE.replace("  nn.Linear(4, 2)\n", "  import torch\n  m = nn.Linear(4, 2)\n")
    (run,) = parse_sweep(text).runs
    assert run.config["model"] == "import torch\nm = nn.Linear(4, 2)\n"


def test_empty_code_block_is_refused() -> None:
    err = error_of(BASE.replace("  nn.Linear(4, 2)\n", "  # nothing here\n"))
    assert "last statement must be an expression" in err.message
    assert err.key == "model"


def test_globals_code_errors_name_the_global() -> None:
    err = error_of(BASE + "globals:\n  OK: (1, 2)\n  SHAPE: (3, 28\n")
    assert err.key == "globals.SHAPE"
    assert "'(' was never closed" in err.message
    assert (err.line, err.column) == (12, 10)


def test_global_without_a_value_is_refused() -> None:
    err = error_of(BASE + "globals:\n  X: import os\n")
    assert err.key == "globals.X"
    assert "last statement must be an expression" in err.message


def test_transform_code_is_checked() -> None:
    err = error_of(BASE + "train_input_transforms: |\n  [\n      lambda x: x +,\n  ]\n")
    assert err.key == "train_input_transforms"
    assert err.line == 12


def test_null_byte_in_code() -> None:
    err = error_of(BASE + 'validation_set: "ds\\0"\n')  # YAML's \0 escape: a NUL in the code
    assert err.key == "validation_set"
    assert "null bytes" in err.message
    assert err.line == 10


def test_deeply_nested_code_is_refused_not_crashed() -> None:
    code = "1" + " + 1" * 200_000
    err = error_of(BASE + f"validation_set: {code}\n")
    assert err.key == "validation_set"


def test_error_in_one_run_names_the_run() -> None:
    text = "matrix:\n  n: [4, 'x)']\n" + BASE.replace("nn.Linear(4, 2)", "nn.Linear(${n}, 2)")
    err = error_of(text)
    assert err.run == "2 (n:x)"
    assert err.key == "model"
    assert "syntax error" in err.message
    assert err.line == 5
    assert "run 2 (n:x)" in err.location


def test_substitution_breaking_yaml_names_the_run() -> None:
    text = "matrix:\n  v: ['a: b: c']\n" + BASE + "description: ${v}\n"
    err = error_of(text)
    assert err.message.startswith("invalid YAML")
    assert err.run == "1 (v:a:b:c)"
    assert err.line == 12


# --- matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["matrix_slug", "matrix_id"])
def test_reserved_matrix_name_points_at_its_line(name: str) -> None:
    err = error_of(f"matrix:\n  a: [1]\n  {name}: [1, 2]\n" + BASE)
    assert f"'{name}' is reserved" in err.message
    assert (err.key, err.line) == (name, 3)


@pytest.mark.parametrize(
    ("matrix", "words", "line"),
    [
        ("matrix: [1, 2]\n", "'matrix' must be a map", 1),
        ("matrix: text\n", "'matrix' must be a map", 1),
        ("matrix:\n  a: 5\n", "matrix value for 'a' must be a list, e.g. a: [5]", 2),
        ("matrix:\n  a: {x: 1}\n", "matrix value for 'a' must be a list", 2),
        ("matrix:\n  a: [1]\n  $filter: [1]\n", "'$filter' must be a string expression", 3),
        ("matrix:\n  a: [1]\n  $filter: '[${a}].real'\n", "attribute access", 3),
        ("matrix:\n  a: [1]\n  $filter: __import__('os')\n", "call to '__import__'", 3),
        ("matrix:\n  a: [1]\n  $filter: '(lambda: 1)()'\n", "call to 'lambda: 1'", 3),
        ("matrix:\n  a: [1]\n  $filter: ${b} > 1\n", "${b}", 3),
        ("matrix:\n  a: [1]\n  $filter: open('/tmp/x', 'w')\n", "call to 'open'", 3),
    ],
)
def test_matrix_errors_point_into_the_matrix(matrix: str, words: str, line: int) -> None:
    err = error_of(matrix + BASE)
    assert words in err.message
    assert err.line == line


def test_filter_error_names_the_run() -> None:
    err = error_of("matrix:\n  a: [1, 2]\n  $filter: 1 / (${a} - 2)\n" + BASE)
    assert "ZeroDivisionError" in err.message
    assert "1 / (2 - 2)" in err.message
    assert (err.key, err.line, err.run) == ("$filter", 3, "2 (a:2)")


# --- to_dict -------------------------------------------------------------------------------


def test_to_dict_is_json_ready() -> None:
    err = error_of(BASE.replace("batch_size: 8", "batch_size: [1, 2]"))
    data = err.to_dict()
    assert data == {
        "message": "'batch_size' must be an integer >= 1, got [1, 2]",
        "line": 6,
        "column": None,
        "key": "batch_size",
        "value": "[1, 2]",
        "run": None,
        "file": None,
        "location": "line 6, key 'batch_size'",
    }
    assert str(err) == "line 6, key 'batch_size': 'batch_size' must be an integer >= 1, got [1, 2]"


def test_to_dict_cuts_long_values() -> None:
    err = error_of(BASE.replace("optimizer: Adam", "optimizer: " + "x" * 1000))
    assert len(err.to_dict()["value"]) == 200
    assert len(err.message) < 400


# --- only SpecError, whatever the input ----------------------------------------------------

_FRAGMENTS = [
    "matrix:",
    "\n",
    "  ",
    "- ",
    "a: ",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "${a}",
    "${",
    "}",
    "$filter: ",
    "&x ",
    "*x",
    "!!str ",
    "!!python/name:os.system ",
    "|",
    "? ",
    "#",
    "'",
    '"',
    "model: ",
    "experiment_name: ",
    "batch_size: ",
    "learnrate: ",
    "optimizer: Adam",
    "train_set: ",
    "max_inputs: ",
    "globals: ",
    "1",
    "3e-4",
    "0.",
    "x",
    "nn.Linear(1, 1)",
    "lambda",
    "__import__('os')",
    "matrix_id",
    "\t",
    "\x00",
    "\ufeff",
    "é",
    "---",
    "...",
    "%YAML 1.1",
    ":",
    "1_000",
    "~",
    "<<: ",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map("".join))
def test_random_yamlish_text_only_ever_raises_spec_error(text: str) -> None:
    with contextlib.suppress(SpecError):
        parse_sweep(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_spec_error(data: bytes) -> None:
    with contextlib.suppress(SpecError):
        parse_sweep(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80), st.sampled_from(list(BASE.splitlines())))
def test_random_lines_in_a_valid_file_only_ever_raise_spec_error(noise: str, after: str) -> None:
    text = BASE.replace(after + "\n", after + "\n" + noise + "\n", 1)
    with contextlib.suppress(SpecError):
        parse_sweep(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.integers(),
            st.floats(allow_nan=True),
            st.text(max_size=20),
            st.booleans(),
            st.none(),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_random_matrix_values_only_ever_raise_spec_error(values: list) -> None:
    import yaml

    text = yaml.safe_dump({"matrix": {"v": values}}) + BASE + "description: x ${v} ${matrix_slug}\n"
    try:
        sweep = parse_sweep(text)
    except SpecError:
        return
    assert len(sweep.runs) == len(values)
