"""The `$filter` evaluator: what real files use works, everything else is refused by name."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.sweepfile import SpecError, evaluate_filter, expand_matrix


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # literals and arithmetic
        ("1", 1),
        ("1.5", 1.5),
        ("'a'", "a"),
        ("None", None),
        ("True", True),
        ("[1, 2]", [1, 2]),
        ("(1, 2)", (1, 2)),
        ("{'a': 1}", {"a": 1}),
        ("{1, 2}", {1, 2}),
        ("256 / 16", 16.0),
        ("257 // 16", 16),
        ("257 % 16", 1),
        ("2 ** 10", 1024),
        ("-3 + +2 - 1 * 4", -5),
        # comparisons, boolean logic, membership
        ("1 < 2 <= 2 == 2 != 3 > 0 >= 0", True),
        ("1 is None", False),
        ("1 is not None", True),
        ("1 and 0 or 5", 5),
        ("not 0", True),
        ("3 in [1, 2, 3]", True),
        ("'x' not in 'abc'", True),
        # subscripts and conditional expressions
        ("[7, 8, 9][1]", 8),
        ("[7, 8, 9][-2:]", [8, 9]),
        ("'abc'[::-1]", "cba"),
        ("{'a': 1}['a']", 1),
        ("'big' if 10 > 5 else 'small'", "big"),
        # the allowed calls
        ("len([32, 48])", 2),
        ("isinstance(4, int)", True),
        ("isinstance(4.0, int)", False),
        ("isinstance([1], (list, tuple))", True),
        ("isinstance({'a': 1}, dict)", True),
        ("isinstance({1}, set)", True),
        ("isinstance('s', str) and isinstance(True, bool)", True),
        ("int('12') + int(3.9)", 15),
        ("float('1.5')", 1.5),
        ("str(12)", "12"),
        ("bool(0)", False),
        ("abs(-3)", 3),
        ("min(3, 1, 2) + max([4, 5])", 6),
        ("sum([1, 2, 3])", 6),
        ("sum((1.5, 1.5), 1)", 4.0),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("all([1, True]) and any([0, 1])", True),
        ("list((1, 2))", [1, 2]),
        ("tuple([1, 2])", (1, 2)),
        ("list('ab')", ["a", "b"]),
        # a real file's expression after substitution
        ("256 / 16 == 256 // 16", True),
        ("100 / 16 == 100 // 16", False),
        ("len([3, 28, 28]) == 3 and isinstance(7, int)", True),
    ],
)
def test_allowed_constructs(expression: str, expected: object) -> None:
    assert evaluate_filter(expression) == expected


def test_largest_allowed_power_works() -> None:
    assert evaluate_filter("2 ** 4095") == 2**4095
    assert evaluate_filter("10 ** -3") == pytest.approx(0.001)
    assert evaluate_filter("1 ** 10000000") == 1


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        # attribute access, directly and via dunders
        ("().__class__", ["attribute access"]),
        ("'a'.upper()", ["call to ''a'.upper'"]),
        ("'{}'.format(1)", ["call to"]),
        ("[].__class__.__mro__", ["attribute access"]),
        ("(1).real", ["attribute access"]),
        # lambdas, comprehensions, walrus, f-strings, starred, generators
        ("(lambda: 1)()", ["call to 'lambda: 1'"]),
        ("lambda: 1", ["lambda"]),
        ("[x for x in [1]]", ["comprehension"]),
        ("{x for x in [1]}", ["comprehension"]),
        ("{x: 1 for x in [1]}", ["comprehension"]),
        ("sum(x for x in [1])", ["generator expression"]),
        ("(y := 1)", ["assignment expression"]),
        ("f'{1}'", ["f-string"]),
        ("max(*[1, 2])", ["starred"]),
        ("{**{'a': 1}}", ["dict unpacking"]),
        # calls to anything but the allowed functions
        ("__import__('os')", ["call to '__import__'"]),
        ("open('/tmp/sweeps-filter-test', 'w')", ["call to 'open'"]),
        ("eval('1')", ["call to 'eval'"]),
        ("exec('1')", ["call to 'exec'"]),
        ("getattr(1, 'real')", ["call to 'getattr'"]),
        ("type(1)", ["call to 'type'"]),
        ("globals()", ["call to 'globals'"]),
        ("compile('1', 'x', 'eval')", ["call to 'compile'"]),
        ("dict(a=1)", ["call to 'dict'"]),
        ("set([1])", ["call to 'set'"]),
        ("range(10)", ["call to 'range'"]),
        ("print(1)", ["call to 'print'"]),
        ("len([1])([2])", ["call to 'len([1])'"]),
        ("max([1, 2], key=abs)", ["keyword arguments", "max"]),
        # dunder names
        ("__builtins__", ["dunder name '__builtins__'"]),
        ("__import__", ["dunder name '__import__'"]),
        ("__name__ == 'x'", ["dunder name"]),
        # operators with no place in a filter
        ("1 << 2", ["shift operator"]),
        ("1 >> 2", ["shift operator"]),
        ("1 | 2", ["bitwise operator"]),
        ("1 & 2", ["bitwise operator"]),
        ("1 ^ 2", ["bitwise operator"]),
        ("~1", ["bitwise operator"]),
        # isinstance only with built-in types
        ("isinstance(1, len)", ["isinstance", "built-in types"]),
        ("isinstance(1, (int, abs))", ["isinstance", "built-in types"]),
        ("isinstance(1, ())", ["isinstance", "built-in types"]),
        # huge work
        ("9 ** 9 ** 9", ["huge power"]),
        ("4000000 ** 4000000", ["huge power"]),
        ("2 ** 4096", ["too large", "4096 bits"]),
        ("'a' * 1000000", ["too large"]),
        ("[0] * 10 ** 6", ["too large"]),
        ("str([[1] * 50000] * 50000)", ["too large"]),
        ("[[0] * 99] * 99 + [[0] * 999] * 999", ["too large"]),
        ("'%0999999999d' % 1", ["% operator", "numbers only"]),
        ("sum([[0] * 99] * 99, [])", ["sum()", "numbers only"]),
        ("sum(['a', 'b'], '')", ["sum()", "numbers only"]),
        ("round(10, -1000000000)", ["round()", "100 digits"]),
        # not an expression, not Python, names that do not exist
        ("import os", ["not a valid Python expression"]),
        ("x = 1", ["not a valid Python expression"]),
        ("1 +", ["not a valid Python expression"]),
        ("", ["not a valid Python expression"]),
        ("hidden > 3", ["'hidden' is not defined", "${name}"]),
        ("1 / 0", ["ZeroDivisionError"]),
        ("[1][5]", ["IndexError"]),
        ("int('9' * 5000)", ["ValueError"]),
        ("(" * 300 + ")" * 300, ["not a valid Python expression"]),
        ("x" * 20000, ["20,000 characters", "limit"]),
    ],
)
def test_refused_constructs_are_named(expression: str, words: list[str]) -> None:
    # Refused, not computed: a computed 9**9**9 would run into pytest's timeout.
    with pytest.raises(SpecError) as err:
        evaluate_filter(expression)
    for word in words:
        assert word in err.value.message, err.value.message


def test_nothing_is_written_by_a_filter(tmp_path: Path) -> None:
    target = tmp_path / "written"
    for expression in (
        f"open({str(target)!r}, 'w').write('x')",
        f"__import__('pathlib').Path({str(target)!r}).touch()",
        f"().__class__.__base__.__subclasses__() and open({str(target)!r}, 'w')",
    ):
        with pytest.raises(SpecError):
            evaluate_filter(expression)
    assert not target.exists()


def test_filter_values_injected_through_the_matrix_are_checked_after_substitution() -> None:
    # A string matrix value becomes source text in the filter: it must not smuggle code in.
    matrix = {"x": ["__import__('os').system('true')"], "$filter": "${x}"}
    with pytest.raises(SpecError) as err:
        expand_matrix(matrix)
    assert "attribute access" in err.value.message or "__import__" in err.value.message
    assert err.value.key == "$filter"


_TOKENS = [
    *"0123456789abxyz_ ()[]{}'\",.:+-*/%<>=!&|^~@\\\n",
    *("**", " and ", " or ", " not ", " in ", " if ", " else ", "lambda", "__", "len(", "str("),
    *("isinstance(", "int", "open(", "import", "for", "sum(", "round(", "max(", "9" * 30),
]


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # "1if" and the like, from ast.parse
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join))
def test_random_text_only_ever_raises_spec_error(expression: str) -> None:
    with contextlib.suppress(SpecError):
        evaluate_filter(expression)
