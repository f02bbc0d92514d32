"""The user's own project checkout (SWEEPS_PROJECT_ROOT), read as text, never imported.

A checkout laid out like nn-experiments (`src/train/...`) gives a run's code the names its
experiment loader (`src/train/experiment.py`) imports: the loader's import statements are
read from the file here and executed one by one on the worker (worker/project.py), so a
module that fails to import costs only the names it gives. The API and the CLI use this module
to tell a trainer or scheduler that does not exist from one they cannot check, reading the
project's files with `ast`; nothing of the project runs in them.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

# `${PATH}` in a sweep file stands for the project root (nn-experiments' own placeholder).
PATH_PLACEHOLDER = "${PATH}"
LOADER = Path("src", "train", "experiment.py")
LOADER_PACKAGE = "src.train"
# A file without `trainer`: nn-experiments' loader takes the `Trainer` its imports give.
DEFAULT_TRAINER = "Trainer"
SCHEDULER_MODULE = "src.scheduler"
# What nn-experiments' loader star-imports, for a checkout whose loader file is missing.
DEFAULT_STAR_IMPORTS = (
    "src.util", "src.util.image", "src.functional", "src.train", "src.models.util",
    "src.models.ca", "src.models.cnn", "src.models.decoder", "src.models.encoder",
    "src.models.generative", "src.models.rbm", "src.models.recursive", "src.models.transform",
    "src.models.vae", "src.models.loss", "src.models.img2img", "src.datasets",
    "src.datasets.aug", "src.algo", "experiments.datasets",
)  # fmt: skip


class ProjectError(ValueError):
    """SWEEPS_PROJECT_ROOT cannot be used; the message is one line."""


@dataclass(frozen=True)
class ProjectImport:
    """One import statement of the project's loader: the module it needs and its source."""

    module: str
    statement: str


@dataclass(frozen=True)
class Project:
    root: Path
    # Parsed files and answers, per instance: a new Project (one per request) reads them afresh.
    _trees: dict[str, ast.Module | None] = field(default_factory=dict, compare=False, repr=False)
    _exported: dict[str, set[str]] = field(default_factory=dict, compare=False, repr=False)
    _trainers: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @property
    def nn_experiments(self) -> bool:
        """Laid out like nn-experiments: a `src/train` package."""
        return (self.root / "src" / "train").is_dir()

    @cached_property
    def loader_imports(self) -> tuple[ProjectImport, ...]:
        """The import statements that give a run's code its names, in the loader's order."""
        if not self.nn_experiments:
            return ()
        loader = self.root / LOADER
        if loader.is_file():
            tree = _parse(loader)
            if tree is not None:
                return tuple(_imports_of(tree.body, package=LOADER_PACKAGE))
        return tuple(
            ProjectImport(m, f"from {m} import *")
            for m in DEFAULT_STAR_IMPORTS
            if self.module_file(m) is not None
        )

    def module_file(self, module: str) -> Path | None:
        """The file of a module of the checkout (`a.b`: a/b.py or a/b/__init__.py), or None."""
        base = self.root.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def defined_names(self, module: str) -> set[str] | None:
        """Top-level names a module of the checkout defines or imports; None when that cannot
        be told from its text (a star import, a syntax error, no such file)."""
        tree = self._tree(module)  # parsed once per Project, not once per run of a sweep
        if tree is None:
            return None
        names: set[str] = set()
        for node in _top_level(tree.body):
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                return None
            names |= _bound_by(node)
        return names

    def defines_trainer(self, name: str) -> bool:
        """Whether the checkout defines the class a `trainer` names, found as nn-experiments'
        loader finds it: `a.b.C` is C of module a.b, a plain name is the loader's (the last of
        its imports that binds it). Read from the files: a name that only comes from outside
        the checkout (an import of another package) is not the checkout's."""
        if name not in self._trainers:  # asked once per run of a sweep
            module, _, attribute = name.rpartition(".")
            found = self._origin(module, attribute, frozenset()) if module else None
            for item in () if module else self.loader_imports:
                statement = ast.parse(item.statement).body[0]
                bound = self._binding(statement, LOADER_PACKAGE, name, frozenset())
                found = found if bound is None else bound
            self._trainers[name] = found is True
        return self._trainers[name]

    def _tree(self, module: str) -> ast.Module | None:
        if module not in self._trees:
            path = self.module_file(module)
            self._trees[module] = _parse(path) if path is not None else None
        return self._trees[module]

    def _origin(self, module: str, name: str, seen: frozenset[str]) -> bool | None:
        """`name` at the top of a module of the checkout: defined in the checkout (True),
        taken from elsewhere (False), or not bound there (None)."""
        tree = self._tree(module)
        if tree is None or f"{module}:{name}" in seen:
            return None
        seen = seen | {f"{module}:{name}"}
        package = _package_of(module, self.module_file(module))
        found = None
        for node in _top_level(tree.body):
            bound = self._binding(node, package, name, seen)
            found = found if bound is None else bound
        return found

    def _binding(
        self, node: ast.stmt, package: str, name: str, seen: frozenset[str]
    ) -> bool | None:
        """What one statement binds `name` to, as `_origin` answers; None: it does not."""
        if isinstance(node, ast.ImportFrom):
            source, found = _absolute(node, package), None
            for alias in node.names:
                if alias.name == "*" and name in self._exports(source):
                    found = self._origin(source, name, seen)
                elif alias.name != "*" and (alias.asname or alias.name) == name:
                    found = self._origin(source, alias.name, seen) is True
            return found
        if name not in _bound_by(node):
            return None
        return not isinstance(node, ast.Import)  # a module is not a class

    def _exports(self, module: str) -> set[str]:
        """The names `from module import *` gives, for a module of the checkout (its `__all__`,
        else its public names); nothing for a module from elsewhere."""
        if module in self._exported:
            return self._exported[module]
        self._exported[module] = set()  # a star-import cycle gives nothing more
        tree = self._tree(module)
        if tree is None:
            return set()
        package = _package_of(module, self.module_file(module))
        names: set[str] = set()
        for node in _top_level(tree.body):
            listed = _dunder_all(node)
            if listed is not None:
                self._exported[module] = listed
                return listed
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                names |= self._exports(_absolute(node, package))
            else:
                names |= _bound_by(node)
        self._exported[module] = {n for n in names if not n.startswith("_")}
        return self._exported[module]

    def trainer_problem(self, name: str) -> str | None:
        """Why a dotted trainer name cannot be the project's, when its files say so."""
        module, _, attribute = name.rpartition(".")
        if not module:
            return None  # a loader name: only an import can tell
        if self.module_file(module) is None:
            top = module.split(".")[0]
            if not (self.root / top).is_dir() and not (self.root / f"{top}.py").is_file():
                return None  # not the project's package: the worker's import decides
            where = module.replace(".", "/")
            return (
                f"trainer {name!r} is not built in, and the project {self.root} has no module "
                f"{module!r} ({where}.py or {where}/__init__.py)"
            )
        return _missing(self, module, attribute, f"trainer {name!r}")

    def scheduler_problem(self, name: str) -> str | None:
        """Why `name` is not a scheduler of the project's src/scheduler.py, or None."""
        if self.module_file(SCHEDULER_MODULE) is None:
            return f"the project {self.root} has no src/scheduler.py"
        return _missing(self, SCHEDULER_MODULE, name, f"scheduler {name!r}")


def project_at(root: Path | str | None) -> Project | None:
    """The project a SWEEPS_PROJECT_ROOT names, or None when unset; ProjectError if unusable."""
    if root is None or str(root) == "":
        return None
    path = Path(root).expanduser()
    if not path.is_dir():
        state = "does not exist" if not path.exists() else "is not a folder"
        raise ProjectError(f"SWEEPS_PROJECT_ROOT={root} {state}; name a checkout of your project")
    return Project(path.resolve())


def _missing(project: Project, module: str, attribute: str, what: str) -> str | None:
    names = project.defined_names(module)
    if names is None or attribute in names:
        return None
    relative = project.module_file(module)
    where = relative.relative_to(project.root) if relative is not None else module
    close = difflib.get_close_matches(attribute, sorted(names), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{what}: {where} in the project defines no {attribute!r}{hint}"


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements at module level, including those inside top-level try/if blocks."""
    found: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.Try):
            found += _top_level(node.body)
            for handler in node.handlers:
                found += _top_level(handler.body)
        elif isinstance(node, ast.If):
            found += _top_level(node.body) + _top_level(node.orelse)
        else:
            found.append(node)
    return found


def _imports_of(body: list[ast.stmt], package: str) -> list[ProjectImport]:
    found = []
    for node in _top_level(body):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            names = ", ".join(f"{a.name} as {a.asname}" if a.asname else a.name for a in node.names)
            found.append(ProjectImport(module, f"from {module} import {names}"))
        elif isinstance(node, ast.Import):
            found += [ProjectImport(a.name, ast.unparse(ast.Import(names=[a]))) for a in node.names]
    return found


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a `from ... import` reads, relative imports resolved against `package`."""
    module = node.module or ""
    if not node.level:
        return module
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{module}" if module else base


def _package_of(module: str, path: Path | None) -> str:
    """The package a module's relative imports start from (itself, for an __init__.py)."""
    if path is not None and path.name == "__init__.py":
        return module
    return module.rpartition(".")[0]


def _bound_by(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds (star imports aside)."""
    if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return {node.name}
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {t.id for t in targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
    return set()


def _dunder_all(node: ast.stmt) -> set[str] | None:
    """The names of `__all__ = [...]` when `node` is that assignment, written out; else None."""
    if not (
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        and isinstance(node.value, ast.List | ast.Tuple)
    ):
        return None
    items = node.value.elts
    if not all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in items):
        return None
    return {str(e.value) for e in items if isinstance(e, ast.Constant)}
