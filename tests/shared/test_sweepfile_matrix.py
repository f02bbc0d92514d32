"""FORMAT.md's matrix rules: cartesian order, ids, slugs, reserved names, `$filter`."""

from __future__ import annotations

import math
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.sweepfile import MatrixEntry, SpecError, expand_matrix, make_slug

SLUG_CHARS = re.compile(r"^[\w.,\-:]*$")  # \w: alphanumerics and _, as str.isalnum + "_"


def ids(entries: list[MatrixEntry]) -> list[str]:
    return [e.matrix_id for e in entries]


# --- order ---------------------------------------------------------------------------------


def test_first_key_is_the_outermost_loop() -> None:
    entries = expand_matrix({"a": [0, 1], "b": [10, 11]})
    assert [(e.params["a"], e.params["b"]) for e in entries] == [(0, 10), (0, 11), (1, 10), (1, 11)]
    assert ids(entries) == ["1", "2", "3", "4"]


def test_key_order_follows_the_yaml_not_the_alphabet() -> None:
    entries = expand_matrix({"z": [1, 2], "a": ["x", "y"], "m": [True]})
    assert [list(e.params) for e in entries] == [["z", "a", "m"]] * 4
    assert [(e.params["z"], e.params["a"]) for e in entries] == [
        (1, "x"),
        (1, "y"),
        (2, "x"),
        (2, "y"),
    ]
    assert entries[0].slug == "z:1_a:x_m:True"


def test_three_keys_last_varies_fastest() -> None:
    entries = expand_matrix({"a": [1, 2], "b": [3, 4], "c": [5, 6, 7]})
    assert len(entries) == 12
    assert [e.params["c"] for e in entries[:3]] == [5, 6, 7]
    assert [e.params["a"] for e in entries] == [1] * 6 + [2] * 6


# --- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "first", "last"),
    [
        (1, "1", "1"),
        (2, "1", "2"),
        (9, "1", "9"),
        (10, "1", "10"),  # ceil(log10(10)) == 1: FORMAT.md's own example
        (11, "01", "11"),
        (12, "01", "12"),
        (99, "01", "99"),
        # ceil(log10(100)) == 2, so "01".."100" exactly as for N=10; "001" would need N > 100.
        (100, "01", "100"),
        (101, "001", "101"),
        (1000, "001", "1000"),
        (1001, "0001", "1001"),
    ],
)
def test_ids_are_zero_padded_to_ceil_log10_n(count: int, first: str, last: str) -> None:
    entries = expand_matrix({"a": list(range(count))})
    assert ids(entries)[0] == first
    assert ids(entries)[-1] == last
    assert [int(i) for i in ids(entries)] == list(range(1, count + 1))


def test_n_twelve_gives_01_to_12() -> None:
    assert ids(expand_matrix({"a": [1, 2, 3], "b": [1, 2, 3, 4]})) == [
        f"{i:02d}" for i in range(1, 13)
    ]


def test_ids_are_counted_before_filtering_and_keep_their_gaps() -> None:
    entries = expand_matrix({"a": list(range(1, 13)), "$filter": "${a} % 3 == 0"})
    # N = 12 before the filter: two digits even though only 4 entries are kept
    assert ids(entries) == ["03", "06", "09", "12"]
    assert [e.params["a"] for e in entries] == [3, 6, 9, 12]


def test_filter_keeping_one_of_many_keeps_the_wide_id() -> None:
    entries = expand_matrix({"a": list(range(100)), "b": [0, 1], "$filter": "${a} == 0 and ${b}"})
    assert ids(entries) == ["002"]  # N = 200 -> 3 digits


# --- slugs ---------------------------------------------------------------------------------


def test_format_example_slug() -> None:
    entry = expand_matrix(
        {
            "patch": [7],
            "layer": [8],
            "head": [16],
            "hidden": [256],
            "mlp": [512],
            "drop": [0.0],
            "cs": [784],
        }
    )[0]
    assert entry.slug == "patch:7_layer:8_head:16_hidden:256_mlp:512_drop:0.0_cs:784"
    assert entry.matrix_id == "1"


def test_list_value_slug_drops_brackets_and_spaces() -> None:
    assert make_slug({"shape": [32, 48]}) == "shape:32,48"


def test_float_zero_written_as_0_dot() -> None:
    # YAML `0.` is the float 0.0 and str() gives "0.0"
    assert make_slug({"drop": 0.0}) == "drop:0.0"


@pytest.mark.parametrize(
    ("params", "slug"),
    [
        ({"act": "nn.ReLU()"}, "act:nn.ReLU"),
        ({"name": "a b/c!d?e"}, "name:abcde"),
        ({"m": {"k": 1, "j": [2, 3]}}, "m:k:1,j:2,3"),
        ({"neg": -1.5e-3}, "neg:-0.0015"),
        ({"big": 1e20}, "big:1e20"),
        ({"flag": True, "none": None}, "flag:True_none:None"),
        ({"t": "tab\there"}, "t:tabhere"),
        ({"u": "größe_ü"}, "u:größe_ü"),  # str.isalnum keeps non-ASCII letters
        ({"q": "'quoted'\""}, "q:quoted"),
        ({"s": "x=1;y=2"}, "s:x1y2"),
        ({"dollar": "${x}"}, "dollar:x"),
    ],
)
def test_slug_drops_characters_outside_alnum_and_punctuation(params: dict, slug: str) -> None:
    assert make_slug(params) == slug


def test_slug_value_cut_to_40_characters_before_dropping() -> None:
    value = "a" * 200
    assert make_slug({"k": value}) == "k:" + "a" * 40
    # the cut applies to str(value), then dropped characters shrink it further
    spaced = "a " * 100  # str() is 200 chars; first 40 are 20 x "a "
    assert make_slug({"k": spaced}) == "k:" + "a" * 20
    long_list = list(range(100))
    assert make_slug({"k": long_list}) == "k:" + "".join(
        c for c in str(long_list)[:40] if c.isalnum() or c in ".,-_:"
    )


def test_slug_of_a_long_list_is_the_one_nn_experiments_gives() -> None:
    """A real file's `dil` list of 18 ints: the original's experiment name (and so its
    checkpoint folder) ends the value after 40 characters of `str(list)`."""
    dil = [1, 2, 3, 4, 5, 1, 1, 2, 3, 4, 5, 1, 1, 2, 3, 4, 5, 1]
    assert make_slug({"l": 18, "dil": dil}) == "l:18_dil:1,2,3,4,5,1,1,2,3,4,5,1,1,"


def test_slug_joins_keys_with_underscores_in_matrix_order() -> None:
    assert make_slug({"b": 1, "a": 2}) == "b:1_a:2"
    assert make_slug({}) == ""


# --- shape of the matrix -------------------------------------------------------------------


def test_empty_list_gives_zero_runs() -> None:
    assert expand_matrix({"a": [1, 2], "b": []}) == []


@pytest.mark.parametrize("matrix", [None, {}])
def test_missing_or_empty_matrix_is_one_run_without_params(matrix: dict | None) -> None:
    entries = expand_matrix(matrix)
    assert entries == [MatrixEntry(matrix_id="1", slug="", params={})]


@pytest.mark.parametrize("name", ["matrix_slug", "matrix_id"])
def test_reserved_names_cannot_be_matrix_keys(name: str) -> None:
    with pytest.raises(SpecError) as err:
        expand_matrix({"a": [1], name: [1, 2]})
    assert "reserved" in err.value.message
    assert err.value.key == name


@pytest.mark.parametrize(
    ("matrix", "words"),
    [
        ({"a": 5}, ["must be a list", "a: [5]"]),
        ({"a": "x"}, ["must be a list"]),
        ({"a": {"b": 1}}, ["must be a list"]),
        ({"a": None}, ["must be a list"]),
        ([1, 2], ["must be a map"]),
        ("a", ["must be a map"]),
        ({"a": [1], "$filter": 3}, ["$filter", "string"]),
        ({1: [1]}, ["non-empty name"]),
        ({"": [1]}, ["non-empty name"]),
    ],
)
def test_malformed_matrix_is_named(matrix: object, words: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        expand_matrix(matrix)  # type: ignore[arg-type]
    for word in words:
        assert word in err.value.message


def test_values_may_be_lists_and_maps() -> None:
    entries = expand_matrix({"shape": [[1, 28, 28], [3, 32, 32]], "opt": [{"lr": 0.1}]})
    assert [e.params["shape"] for e in entries] == [[1, 28, 28], [3, 32, 32]]
    assert entries[1].slug == "shape:3,32,32_opt:lr:0.1"


def test_variables_include_slug_and_id() -> None:
    entry = expand_matrix({"a": [1, 2]})[1]
    assert entry.variables() == {"a": 2, "matrix_slug": "a:2", "matrix_id": "2"}


# --- $filter inside the matrix -------------------------------------------------------------


def test_filter_with_real_file_expression() -> None:
    matrix = {
        "hidden": [64, 100, 128],
        "head": [4, 3],
        "$filter": "${hidden} / ${head} == ${hidden} // ${head}",
    }
    kept = [(e.params["hidden"], e.params["head"]) for e in expand_matrix(matrix)]
    assert kept == [(64, 4), (100, 4), (128, 4)]


def test_filter_newlines_become_spaces() -> None:
    matrix = {"a": [1, 2, 3, 4], "$filter": "${a} > 1\nand\n${a} < 4\n"}
    assert [e.params["a"] for e in expand_matrix(matrix)] == [2, 3]


def test_filter_sees_lists_as_source_text() -> None:
    matrix = {
        "shape": [[1, 2], [1, 2, 3]],
        "$filter": "len(${shape}) == 3 and isinstance(${shape}[0], int)",
    }
    assert [e.matrix_id for e in expand_matrix(matrix)] == ["2"]


def test_filter_string_values_need_quotes() -> None:
    kept = expand_matrix({"act": ["relu", "gelu"], "$filter": "'${act}' == 'gelu'"})
    assert [e.params["act"] for e in kept] == ["gelu"]
    with pytest.raises(SpecError) as err:
        expand_matrix({"act": ["relu"], "$filter": "${act} == 'gelu'"})
    assert "'relu' is not defined" in err.value.message
    assert "quotes" in err.value.message
    assert err.value.key == "$filter"
    assert err.value.run == "1 (act:relu)"


def test_filter_can_use_matrix_id_and_slug() -> None:
    kept = expand_matrix(
        {"a": [1, 2, 3], "$filter": "'${matrix_id}' != '2' and 'a:' in '${matrix_slug}'"}
    )
    assert ids(kept) == ["1", "3"]


def test_filter_unknown_name_names_it() -> None:
    with pytest.raises(SpecError) as err:
        expand_matrix({"a": [1], "$filter": "${b} > 1"})
    assert "${b}" in err.value.message
    assert err.value.key == "$filter"
    assert err.value.value == "b"


def test_filter_that_removes_everything_gives_zero_runs() -> None:
    assert expand_matrix({"a": [1, 2], "$filter": "False"}) == []


def test_filter_only_matrix_is_one_entry() -> None:
    assert ids(expand_matrix({"$filter": "1 + 1 == 2"})) == ["1"]


def test_filter_error_names_the_run_and_the_expression() -> None:
    with pytest.raises(SpecError) as err:
        expand_matrix({"a": [1, 0], "$filter": "1 / ${a} > 0"})
    assert "ZeroDivisionError" in err.value.message
    assert "1 / 0 > 0" in err.value.message
    assert err.value.run == "2 (a:0)"


# --- properties ----------------------------------------------------------------------------

_scalar = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)
_value = st.one_of(_scalar, st.lists(_scalar, max_size=3))
_name = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8).filter(
    lambda n: n not in ("matrix_slug", "matrix_id")
)
_matrix = st.dictionaries(_name, st.lists(_value, min_size=0, max_size=4), max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_matrix)
def test_random_matrices_follow_the_rules(matrix: dict) -> None:
    entries = expand_matrix(matrix)
    if not matrix:
        assert len(entries) == 1
        return
    count = math.prod(len(v) for v in matrix.values())
    assert len(entries) == count
    width = max(1, math.ceil(math.log10(count))) if count else 1
    numbers = [int(e.matrix_id) for e in entries]
    assert numbers == list(range(1, count + 1))  # unique, ordered, 1-based
    for entry in entries:
        assert len(entry.matrix_id) == max(width, len(str(int(entry.matrix_id))))
        assert list(entry.params) == list(matrix)
        assert SLUG_CHARS.match(entry.slug)
        assert all(ch.isalnum() or ch in ".,-_:" for ch in entry.slug)
        assert entry.slug == make_slug(entry.params)
    # last key fastest
    if count > 1 and len(matrix[list(matrix)[-1]]) > 1:
        last = list(matrix)[-1]
        assert entries[1].params[last] == matrix[last][1]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=60), st.integers(0, 50))
def test_random_filters_keep_exactly_the_matching_entries(values: list[int], cut: int) -> None:
    entries = expand_matrix({"v": values, "$filter": f"${{v}} >= {cut}"})
    width = max(1, math.ceil(math.log10(len(values))))
    expected = [(str(i).zfill(width), v) for i, v in enumerate(values, 1) if v >= cut]
    assert [(e.matrix_id, e.params["v"]) for e in entries] == expected
