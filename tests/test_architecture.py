"""The layer order of docs/architecture.md, checked on the source: no cycles, no upward imports.

Every module under portal/ is parsed with `ast`; every import counts, the ones inside functions too
(an import deferred into a function is still a dependency, only a later one). The tests fail with the
import chain that breaks the rule, as file:line, so the fix starts from the message.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORTAL = ROOT / "portal"

# Lowest first. A package may import the packages of lower layers only: not a higher one, and not
# another of its own layer. portal/extensions.py counts as the package "extensions", portal/__init__.py
# (the application factory) as "portal". Why this order: docs/architecture.md.
LAYERS: list[set[str]] = [
    {"extensions"},
    {"core"},
    {"accounts"},
    {"notifications"},
    {"catalog"},
    {"qualifications"},
    {"booking"},
    {"usage"},
    {"admission"},
    {"vouchers", "waitlist"},
    {"finance", "credit"},
    {"dashboard", "reporting"},  # the read layers
    {"api", "admin", "operations", "demo"},
    {"portal"},
]

# Where importing inside a function is the rule, not a workaround: the app factory and each area's
# init_app load the area's pages, tasks and commands only when an app is built, because a package's
# __init__ runs whenever any of its modules is imported (a model, from any area).
REGISTRATION_FUNCTIONS = {"create_app", "init_app"}


@dataclass(frozen=True)
class Import:
    importer: str  # module names, e.g. portal.notifications.services
    imported: str
    path: Path
    line: int
    function: str | None  # the function the import is written in (the outermost), if any

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def __str__(self) -> str:
        inside = f" (inside {self.function}())" if self.function else ""
        return f"{self.where()}: {self.importer} imports {self.imported}{inside}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    """portal.booking.services → booking; portal.extensions → extensions; portal → portal."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "portal"


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PORTAL.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The portal module `name` refers to (a name inside a module means the module), or None."""
    if name != "portal" and not name.startswith("portal."):
        return None
    while name not in known:
        name = name.rpartition(".")[0]
    return name


BLOCKS = (ast.stmt, ast.excepthandler, ast.match_case)


def _imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    # (node, the outermost function it is in); a stack rather than recursion: modules are long.
    stack: list[tuple[ast.AST, str | None]] = [(tree, None)]
    while stack:
        node, function = stack.pop()
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                source = ".".join(anchor + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from portal.core import clock` imports the module portal.core.clock.
            names = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        for name in names:
            target = _resolve(name, known)
            if target is not None and target != module:
                found.append(Import(module, target, path, node.lineno, function))
        if function is None and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        # Imports are statements: expressions need not be entered.
        stack.extend((child, function) for child in ast.iter_child_nodes(node) if isinstance(child, BLOCKS))
    return sorted(found, key=lambda imp: imp.line)


@cache
def every_import() -> tuple[Import, ...]:
    known = modules()
    return tuple(imp for module, path in known.items() for imp in _imports_of(module, path, known))


def layer_of(package: str) -> int:
    for n, layer in enumerate(LAYERS):
        if package in layer:
            return n
    raise KeyError(package)


def _shortest_cycle(start: str, edges: dict[str, dict[str, Import]]) -> list[tuple[str, Import]]:
    """The shortest chain of (node, import to the next node) from `start` back to itself, breadth first."""
    came_from: dict[str, tuple[str, Import]] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target, imp in sorted(edges.get(node, {}).items()):
            if target == start:
                chain = [(node, imp)]
                while chain[0][0] != start:
                    chain.insert(0, came_from[chain[0][0]])
                return chain
            if target not in came_from:
                came_from[target] = (node, imp)
                queue.append(target)
    return []


def _cycles(edges: dict[str, dict[str, Import]]) -> list[str]:
    """One shortest cycle through each node that is on one (a cycle found twice is shown once)."""
    seen: set[frozenset[str]] = set()
    shown = []
    for node in sorted(edges):
        chain = _shortest_cycle(node, edges)
        members = frozenset(name for name, _imp in chain)
        if chain and members not in seen:
            seen.add(members)
            names = " → ".join([name for name, _imp in chain] + [node])
            shown.append(names + "\n" + "\n".join(f"    {imp}" for _name, imp in chain))
    return shown


def module_edges() -> dict[str, dict[str, Import]]:
    edges: dict[str, dict[str, Import]] = {}
    for imp in every_import():
        edges.setdefault(imp.importer, {}).setdefault(imp.imported, imp)
    return edges


def package_edges() -> dict[str, dict[str, Import]]:
    """package → package, each with the first import (by file and line) that makes the dependency."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in sorted(every_import(), key=lambda i: (str(i.path), i.line)):
        source, target = package_of(imp.importer), package_of(imp.imported)
        if source != target:
            edges.setdefault(source, {}).setdefault(target, imp)
    return edges


# --- the checks -----------------------------------------------------------------------------------


def test_every_package_has_a_layer():
    packages = {package_of(module) for module in modules()}
    unplaced = sorted(packages - set().union(*LAYERS))
    assert not unplaced, f"put these packages into LAYERS and docs/architecture.md: {unplaced}"


def test_no_cycle_between_packages():
    cycles = _cycles(package_edges())
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


def test_no_cycle_between_modules():
    cycles = _cycles(module_edges())
    assert not cycles, "import cycles between modules:\n" + "\n".join(cycles)


def test_no_upward_import():
    upward = [
        f"{imp}: {package_of(imp.importer)} (layer {layer_of(package_of(imp.importer))}) may not import "
        f"{package_of(imp.imported)} (layer {layer_of(package_of(imp.imported))})"
        for imp in every_import()
        if package_of(imp.importer) != package_of(imp.imported)
        and layer_of(package_of(imp.importer)) <= layer_of(package_of(imp.imported))
    ]
    assert not upward, (
        "imports of a higher (or the same) layer; send a signal or a task by name:\n" + "\n".join(upward)
    )


def test_tasks_are_reached_by_name():
    """Only the package itself (its init_app registers them) and the app factory import a tasks module."""
    wrong = [
        str(imp)
        for imp in every_import()
        if imp.imported.endswith(".tasks") and imp.importer not in (imp.imported.rpartition(".")[0], "portal")
    ]
    assert not wrong, (
        "send the task by name (current_app.extensions['celery'].tasks[name], core.outbox):\n"
        + ("\n".join(wrong))
    )


def test_imports_inside_functions_only_where_an_app_is_built():
    deferred = [
        str(imp) for imp in every_import() if imp.function and imp.function not in REGISTRATION_FUNCTIONS
    ]
    assert not deferred, (
        "move these imports to the top of the module (a cycle? see docs/architecture.md):\n"
        + ("\n".join(deferred))
    )


# --- size and thin views (issue 15) ---------------------------------------------------------------

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 620
# The demo data is long lists of made-up records, read as data rather than as code.
SIZE_EXEMPT = PORTAL / "demo"


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text("utf-8"), filename=str(path))


def _sized_modules() -> list[Path]:
    return [path for path in modules().values() if not path.is_relative_to(SIZE_EXEMPT)]


def test_no_function_over_60_lines():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}() has {node.end_lineno - node.lineno + 1} lines"
        for path in _sized_modules()
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"split these into named steps (at most {MAX_FUNCTION_LINES} lines each):\n" + "\n".join(
        long
    )


def test_no_module_over_620_lines():
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in _sized_modules()
        if (n := len(path.read_text("utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"split these modules by subject (at most {MAX_MODULE_LINES} lines):\n" + "\n".join(long)


# Where a views module may still touch the session, (module, outermost function) → why. None of them
# reads the database: they end a failed transaction or save a choice already made on the loaded user.
SESSION_IN_VIEWS_ALLOWED = {
    ("portal/core/web.py", "after_response"): "rolls back the deferred work's failed transaction",
    ("portal/core/web.py", "_database_unavailable"): "rolls back after the database went away",
    ("portal/core/web.py", "_internal_error"): "rolls back the request's failed transaction",
    ("portal/core/web.py", "set_language"): "saves the language on the loaded user (no query)",
}


def _is_views_module(path: Path) -> bool:
    """views.py, *_views.py, the API, and any other module that routes requests (admin/users.py)."""
    if path.name == "views.py" or path.stem.endswith("_views") or path.parent == PORTAL / "api":
        return True
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "route"
        for node in ast.walk(_tree(path))
    )


def _database_use(node: ast.AST) -> str | None:
    """What in `node` works on the database directly: db.session, select(...), Model.query."""
    if isinstance(node, ast.Attribute):
        if node.attr == "session" and isinstance(node.value, ast.Name) and node.value.id == "db":
            return "db.session"
        if node.attr == "query":
            return ".query"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "select":
        return "select()"
    return None


def _database_uses(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, what, the outermost function it is in) for every direct database use in the module."""
    found = []
    stack: list[tuple[ast.AST, str | None]] = [(_tree(path), None)]
    while stack:
        node, function = stack.pop()
        use = _database_use(node)
        if use:
            found.append((node.lineno, use, function))
        if function is None and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        stack.extend((child, function) for child in ast.iter_child_nodes(node))
    return sorted(found)


def test_views_do_not_query():
    views = [path for path in modules().values() if _is_views_module(path)]
    assert PORTAL / "admin" / "users.py" in views and PORTAL / "vouchers" / "review_views.py" in views
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {use}" + (f" in {function}()" if function else "")
        for path in views
        for line, use, function in _database_uses(path)
        if (str(path.relative_to(ROOT)), function) not in SESSION_IN_VIEWS_ALLOWED
    ]
    assert not wrong, (
        "views do not query: move these into a named function of the area's services (with its "
        "permission check):\n" + "\n".join(wrong)
    )


def test_the_clock_is_read_through_its_module():
    """`from portal.core.clock import utcnow` copies the function at import: the tests' fake clock and
    the demo's simulated year replace `clock.utcnow`, and such a module would go on reading the real
    time (a week after the tests' Monday, the colleagues page showed every invitation as expired)."""
    bound = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in modules().values()
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.ImportFrom)
        and node.module == "portal.core.clock"
        and any(alias.name == "utcnow" for alias in node.names)
    ]
    assert not bound, "read the clock as `clock.utcnow()` (from portal.core import clock):\n" + "\n".join(
        bound
    )
