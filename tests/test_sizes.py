"""House limits on the code's shape: no module over 400 lines, no function over 80.

Tests and bench scripts are left out; a module or function that outgrows its limit is split
(STYLE.md, "Shape of the code").
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "cli", "migrations", "shared", "worker")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(path for name in PACKAGES for path in (REPO / name).rglob("*.py"))


def test_the_limits_see_the_code() -> None:
    names = {path.relative_to(REPO).as_posix() for path in _modules()}
    assert {"shared/domain/runs.py", "worker/engine/trainer.py", "api/main.py"} <= names


def test_no_module_over_400_lines_and_no_function_over_80() -> None:
    over: list[str] = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(REPO).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            over.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    over.append(f"{name}:{node.lineno} {node.name}(): {length} lines")
    assert over == []
