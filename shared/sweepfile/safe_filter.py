"""`$filter` evaluation without eval(): an AST whitelist in front of a budgeted simpleeval."""

from __future__ import annotations

import ast
import operator
from typing import Any

from simpleeval import DEFAULT_OPERATORS, EvalWithCompoundTypes, InvalidExpression

from .errors import SpecError

# A filter compares a few hyper-parameters; anything far beyond that is a mistake or an attack.
MAX_FILTER_CHARS = 10_000
# Units of work one evaluation may build: string characters, container items, 64-bit int words.
MAX_VALUE_WEIGHT = 100_000
MAX_INT_BITS = 4096
MAX_ROUND_DIGITS = 100

_BUILTIN_TYPES: dict[str, type] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": list,
    "tuple": tuple,
    "dict": dict,
    "set": set,
}
_NUMBER = (int, float, bool)


class _TooLarge(Exception):
    pass


def _weight(value: Any, limit: int = MAX_VALUE_WEIGHT) -> int:
    """Size of a value in work units, stopping early once it passes `limit`."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += 1 + len(item)
        elif isinstance(item, int):
            total += 1 + item.bit_length() // 64
        elif isinstance(item, dict):
            total += 1
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 1
            stack.extend(item)
        else:
            total += 1
        if total > limit:
            raise _TooLarge
    return total


def _refuse_large(what: str) -> SpecError:
    return SpecError(f"$filter builds a value too large to evaluate ({what})")


def _checked(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _refuse_large(f"an integer over {MAX_INT_BITS} bits")
    try:
        _weight(value)
    except _TooLarge:
        raise _refuse_large(f"over {MAX_VALUE_WEIGHT:,} items or characters") from None
    return value


def _power(base: Any, exponent: Any) -> Any:
    # (bit_length - 1) * exponent is a lower bound of the result's size: nothing allowed is refused.
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and (base.bit_length() - 1) * exponent > MAX_INT_BITS
    ):
        raise SpecError(f"$filter refused a huge power: {base} ** {exponent}")
    return _checked(operator.pow(base, exponent))


def _multiply(left: Any, right: Any) -> Any:
    for seq, times in ((left, right), (right, left)):
        if isinstance(times, int) and not isinstance(seq, _NUMBER):
            try:
                if times > 0 and _weight(seq) * times > MAX_VALUE_WEIGHT:
                    raise _refuse_large(f"repeating a sequence {times:,} times")
            except _TooLarge:
                raise _refuse_large("repeating a large sequence") from None
    return _checked(operator.mul(left, right))


def _modulo(left: Any, right: Any) -> Any:
    # str % ... is printf formatting: '%0999999999d' % 1 would build a gigabyte.
    if not isinstance(left, _NUMBER):
        raise SpecError("the % operator in $filter works on numbers only (no string formatting)")
    return operator.mod(left, right)


def _checked_op(op: Any) -> Any:
    return lambda left, right: _checked(op(left, right))


OPERATORS: dict[type, Any] = {
    **DEFAULT_OPERATORS,
    ast.Add: _checked_op(operator.add),
    ast.Sub: _checked_op(operator.sub),
    ast.Mult: _multiply,
    ast.Pow: _power,
    ast.Mod: _modulo,
}


def _safe_isinstance(obj: Any, types: Any) -> bool:
    # simpleeval refuses the real isinstance; this one only takes built-in types.
    candidates = types if isinstance(types, tuple) else (types,)
    if not candidates or any(t not in _BUILTIN_TYPES.values() for t in candidates):
        raise SpecError(
            "isinstance() in $filter accepts only built-in types (int, float, str, ...)"
        )
    return isinstance(obj, candidates)


def _safe_sum(values: Any, start: Any = 0) -> Any:
    # sum() of lists or strings is quadratic: numbers only.
    items = list(values)
    if not all(isinstance(v, _NUMBER) for v in [*items, start]):
        raise SpecError("sum() in $filter adds numbers only")
    return _checked(sum(items, start))


def _safe_round(number: Any, ndigits: Any = None) -> Any:
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS):
        raise SpecError(f"round() in $filter takes at most {MAX_ROUND_DIGITS} digits")
    return round(number) if ndigits is None else round(number, ndigits)


def _checked_call(function: Any) -> Any:
    return lambda *args: _checked(function(*args))


FUNCTIONS: dict[str, Any] = {
    "len": len,
    "isinstance": _safe_isinstance,
    "int": _checked_call(int),
    "float": float,
    "str": _checked_call(str),
    "bool": bool,
    "abs": abs,
    "min": min,
    "max": max,
    "sum": _safe_sum,
    "round": _safe_round,
    "all": all,
    "any": any,
    "list": _checked_call(list),
    "tuple": _checked_call(tuple),
}
# Built-in types usable as isinstance targets (int, float, ... resolve to the real types).
TYPE_NAMES: dict[str, Any] = dict(_BUILTIN_TYPES)

_ALLOWED = (
    ast.Expression, ast.Constant, ast.Name, ast.Load,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
    ast.UnaryOp, ast.USub, ast.UAdd, ast.Not,
    ast.BoolOp, ast.And, ast.Or,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
    ast.In, ast.NotIn, ast.Is, ast.IsNot,
    ast.Subscript, ast.Slice, ast.IfExp, ast.Call,
    ast.List, ast.Tuple, ast.Dict, ast.Set,
)  # fmt: skip

_NAMED = {
    ast.Attribute: "attribute access",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "generator expression",
    ast.NamedExpr: "assignment expression (:=)",
    ast.Starred: "starred argument",
    ast.JoinedStr: "f-string",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.BitAnd: "bitwise operator",
    ast.BitOr: "bitwise operator",
    ast.BitXor: "bitwise operator",
    ast.LShift: "shift operator",
    ast.RShift: "shift operator",
    ast.Invert: "bitwise operator",
    ast.MatMult: "matrix multiplication",
}


def _check_node(node: ast.AST) -> None:
    if isinstance(node, ast.Name) and node.id.startswith("__"):
        raise SpecError(f"dunder name '{node.id}' is not allowed in $filter")
    if isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in FUNCTIONS:
            called = _snippet(func)
            raise SpecError(
                f"call to '{called}' is not allowed in $filter "
                f"(allowed: {', '.join(sorted(FUNCTIONS))})"
            )
        if node.keywords:
            raise SpecError(f"keyword arguments in the call to '{func.id}' are not allowed")
    if isinstance(node, ast.Dict) and any(key is None for key in node.keys):
        raise SpecError("dict unpacking (**) is not allowed in $filter")
    if not isinstance(node, _ALLOWED):
        what = _NAMED.get(type(node), type(node).__name__)
        raise SpecError(f"{what} is not allowed in $filter: '{_snippet(node)}'")


def _snippet(node: ast.AST) -> str:
    try:
        return ast.unparse(node)[:80]
    except Exception:  # an operator node has no source of its own
        return type(node).__name__


class _BudgetedEval(EvalWithCompoundTypes):
    """simpleeval with literals charged against the value budget."""

    def _eval_list(self, node: ast.List) -> Any:
        return _checked(super()._eval_list(node))

    def _eval_tuple(self, node: ast.Tuple) -> Any:
        return _checked(super()._eval_tuple(node))

    def _eval_set(self, node: ast.Set) -> Any:
        return _checked(super()._eval_set(node))

    def _eval_dict(self, node: ast.Dict) -> Any:
        return _checked(super()._eval_dict(node))


def parse_filter(expression: str) -> ast.Expression:
    """Parse and whitelist one substituted `$filter`; raise SpecError naming what is refused."""
    text = expression.strip()
    if len(text) > MAX_FILTER_CHARS:
        raise SpecError(
            f"$filter is {len(text):,} characters long; the limit is {MAX_FILTER_CHARS:,}"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"$filter is not a valid Python expression: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise SpecError(f"$filter cannot be parsed: {type(exc).__name__}") from None
    for node in ast.walk(tree):
        _check_node(node)
    return tree


def make_evaluator() -> EvalWithCompoundTypes:
    """A fresh evaluator with only the allowed functions, names and bounded operators."""
    # simpleeval adds its own entries to the dicts it is given: hand it copies.
    return _BudgetedEval(
        operators=dict(OPERATORS), functions=dict(FUNCTIONS), names=dict(TYPE_NAMES)
    )


def evaluate_filter(expression: str, evaluator: EvalWithCompoundTypes | None = None) -> Any:
    """Evaluate one substituted `$filter` expression; raise SpecError on anything unsafe."""
    tree = parse_filter(expression)
    evaluator = evaluator or make_evaluator()
    try:
        return evaluator.eval(expression.strip(), previously_parsed=tree.body)
    except SpecError:
        raise
    except InvalidExpression as exc:
        raise SpecError(f"$filter refused: {exc}{_name_hint(exc)}") from None
    except RecursionError:
        raise SpecError("$filter is nested too deeply") from None
    except Exception as exc:  # ZeroDivisionError, TypeError, ... from the user's expression
        raise SpecError(f"$filter raised {type(exc).__name__}: {_short(exc)}") from None


def _name_hint(exc: Exception) -> str:
    if "not defined" not in str(exc):
        return ""
    return " (write ${name} to use a matrix value; a string value needs quotes around it)"


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
