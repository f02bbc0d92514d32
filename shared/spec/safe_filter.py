"""`$filter` evaluation without eval(): an AST whitelist in front of simpleeval."""

from __future__ import annotations

import ast
from typing import Any

from simpleeval import EvalWithCompoundTypes, InvalidExpression

from .errors import SpecError

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


def _safe_isinstance(obj: Any, types: Any) -> bool:
    # simpleeval refuses the real isinstance; this one only takes built-in types.
    candidates = types if isinstance(types, tuple) else (types,)
    if not candidates or any(t not in _BUILTIN_TYPES.values() for t in candidates):
        raise SpecError("isinstance() in $filter accepts only built-in types (int, float, str, ...)")
    return isinstance(obj, candidates)


FUNCTIONS: dict[str, Any] = {
    "len": len,
    "isinstance": _safe_isinstance,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "abs": abs,
    "min": min,
    "max": max,
    "sum": sum,
    "round": round,
    "all": all,
    "any": any,
    "list": list,
    "tuple": tuple,
}
# Names usable as isinstance targets without being callable.
NAMES: dict[str, Any] = {"dict": dict, "set": set}

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
            called = ast.unparse(func)
            raise SpecError(
                f"call to '{called}' is not allowed in $filter "
                f"(allowed: {', '.join(sorted(FUNCTIONS))})"
            )
        if node.keywords:
            raise SpecError(f"keyword arguments in the call to '{func.id}' are not allowed")
    if not isinstance(node, _ALLOWED):
        what = _NAMED.get(type(node), type(node).__name__)
        raise SpecError(f"{what} is not allowed in $filter: '{_snippet(node)}'")


def _snippet(node: ast.AST) -> str:
    try:
        return ast.unparse(node)[:80]
    except Exception:  # an operator node has no source of its own
        return type(node).__name__


def evaluate_filter(expression: str) -> Any:
    """Evaluate one substituted `$filter` expression; raise SpecError on anything unsafe."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"$filter is not a valid Python expression: {exc.msg}") from None
    for node in ast.walk(tree):
        _check_node(node)
    # simpleeval adds its own entries to the dicts it is given: hand it copies.
    evaluator = EvalWithCompoundTypes(functions=dict(FUNCTIONS), names=dict(NAMES))
    try:
        return evaluator.eval(expression.strip())
    except SpecError:
        raise
    except InvalidExpression as exc:
        hint = " (a string value needs quotes in $filter)" if "not defined" in str(exc) else ""
        raise SpecError(f"$filter refused: {exc}{hint}") from None
    except Exception as exc:  # ZeroDivisionError, TypeError, ... from the user's expression
        raise SpecError(f"$filter raised {type(exc).__name__}: {exc}") from None
