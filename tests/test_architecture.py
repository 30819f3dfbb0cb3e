"""docs/ARCHITECTURE.md against the code: the layering rules it states hold, and its Layout is the real map.

Imports are read with ``ast`` (nothing is imported), so a rule broken in any module, however rarely it
runs, fails here with the module and line named.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
QT = frozenset({"PySide6", "PySide2", "PyQt5", "PyQt6", "shiboken6", "pyqtgraph"})
#: The Layering section of docs/ARCHITECTURE.md: the top-level packages each folder may not import.
FORBIDDEN: dict[str, frozenset[str]] = {
    "engine": frozenset({"training", "studio"}) | QT,
    "training": frozenset({"studio"}) | QT,
    "scripts": QT,
    "studio": frozenset({"training"}),
}
#: Modules allowed to break one rule above, each with the reason (docs/ARCHITECTURE.md says the same).
EXCEPTIONS = {
    ("studio/trainer_panel.py", "training"): "the trainer panel checks data folders and reads the trainer's "
                                             "checkpoint state (the training itself runs in a separate process)",
}
#: The studio's one doorway into the engine.
ENGINE_DOOR = "studio/engine_api.py"
#: The folders whose every module the Layout must list (a package's modules are listed indented under it).
MAPPED = ("engine", "engine/portrait", "engine/diffusion", "engine/io", "training", "training/synthetic")
#: engine's packages and what each may never import (docs/ARCHITECTURE.md, Layout): the two renderers stay apart,
#: and io/ serves both without knowing either. "diffusers" is the pixel renderer's library.
SEPARATE: dict[str, tuple[str, ...]] = {
    "engine.portrait": ("engine.diffusion", "diffusers"),
    "engine.diffusion": ("engine.portrait",),
    "engine.io": ("engine.portrait", "engine.diffusion", "diffusers"),
}
#: The tests at the top of tests/: the project as a whole (the rest mirror the source tree).
PROJECT_TESTS = frozenset({"test_architecture.py", "test_packaging.py", "test_wheel.py"})
#: A string in engine/ that names a module of training/ or studio/ (as ``__import__("training.x")`` would).
NAMES_A_MODULE = re.compile(r"^(training|studio)(\.\w+)*(:\w+)?$|\b(training|studio)\.[a-z_]+\b(?!\.py)")


def python_files(folder: str) -> list[Path]:
    return sorted(path for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """(top-level package, line) of every absolute import in a file, wherever it is (functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def strings(path: Path) -> list[tuple[str, int]]:
    """Every string constant of a file but its docstrings (what code can use as a module name)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(node.value, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_each_package_imports_only_what_the_layering_allows():
    broken = [f"{relative(path)}:{line} imports {name} ({folder}/ must not import {name})"
              for folder, forbidden in FORBIDDEN.items() for path in python_files(folder)
              for name, line in imports(path) if name in forbidden and (relative(path), name) not in EXCEPTIONS]
    assert not broken, "docs/ARCHITECTURE.md's layering is broken:\n" + "\n".join(broken)


def test_studio_reaches_the_engine_only_through_engine_api():
    broken = [f"{relative(path)}:{line} imports engine directly (use {ENGINE_DOOR})"
              for path in python_files("studio") if relative(path) != ENGINE_DOOR
              for name, line in imports(path) if name == "engine"]
    assert not broken, "studio/README.md says the studio reaches the engine through engine_api:\n" + "\n".join(broken)


def test_only_studio_imports_qt():
    outside = [path for path in ROOT.glob("*/**/*.py")
               if path.relative_to(ROOT).parts[0] not in ("studio", "tests", ".venv", "build")
               and "__pycache__" not in path.parts]
    broken = [f"{relative(path)}:{line} imports {name}" for path in outside
              for name, line in imports(path) if name in QT]
    assert not broken, "Qt is imported outside studio/:\n" + "\n".join(broken)


def test_engine_names_no_training_or_studio_module_in_its_code():
    """Not even by a string: a module name in a string is a hidden import (``__import__``, entry points)."""
    broken = [f"{relative(path)}:{line} names {text!r}" for path in python_files("engine")
              for text, line in strings(path) if NAMES_A_MODULE.search(text)]
    assert not broken, "engine/ names training / studio modules (use the moee.commands entry points):\n" \
        + "\n".join(broken)


def layout() -> dict[str, set[str]]:
    """The Layout block of docs/ARCHITECTURE.md: folder -> the module stems listed under it
    (``name.py`` a module, ``name/`` a package; a package's own modules are indented under it, as
    ``engine/portrait`` -> its stems)."""
    text = DOC.read_text()
    assert "## Layout" in text, f"{DOC} has no '## Layout' section"
    block = text.split("## Layout", 1)[1].split("```")[1]
    listed: dict[str, set[str]] = {}
    folder = package = None
    for line in block.splitlines():
        top = re.match(r"(\w+)/(\s|$)", line)
        entry = re.match(r"  (\w+)(\.py|/)(\s|$)", line)
        nested = re.match(r"    (\w+)(?:\.py|/)(\s|$)", line)
        if top:
            folder, package = top[1], None
            listed[folder] = set()
        elif entry and folder is not None:
            listed[folder].add(entry[1])
            package = f"{folder}/{entry[1]}" if entry[2] == "/" else None
            if package:
                listed[package] = set()
        elif nested and package is not None:
            listed[package].add(nested[1])
    return listed


def modules(folder: str) -> set[str]:
    """The modules of a folder as stems: ``x.py`` files but ``__init__.py`` / ``__main__.py``, and packages ``x/``."""
    root = ROOT / folder
    files = {path.stem for path in root.glob("*.py") if not path.name.startswith("__")}
    return files | {path.parent.name for path in root.glob("*/__init__.py")}


def test_the_layout_lists_every_module_and_only_real_ones():
    listed = layout()
    problems = []
    for folder in MAPPED:
        assert folder in listed, f"docs/ARCHITECTURE.md's Layout has no {folder}/ section"
        problems += [f"{folder}/{stem} ({stem}.py or {stem}/) is not in docs/ARCHITECTURE.md's Layout; "
                     "add a line for it"
                     for stem in sorted(modules(folder) - listed[folder])]
    for folder, stems in listed.items():
        problems += [f"docs/ARCHITECTURE.md's Layout lists {folder}/{stem}, which does not exist "
                     f"(neither {stem}.py nor {stem}/__init__.py)"
                     for stem in sorted(stems - modules(folder))]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ import cycles
#: Folders whose modules may not import one another in a circle (function-local imports count: a cycle broken only
#: by deferring an import is still two modules that need each other).
ACYCLIC = ("training", "engine")
#: Deferred imports (inside a function) allowed to close a circle, each with the reason. Each must stay
#: function-local and must still exist (a stale entry fails, so the list only shrinks).
CYCLE_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("engine/animator.py", "engine.diffusion.pipeline"): "load_animator, the one function that picks a renderer, builds the "
                                               "pixel renderer, which implements the contract animator.py defines",
    ("engine/animator.py", "engine.portrait.animator"): "load_animator builds the portrait renderer likewise",
    ("engine/batch.py", "engine.cli"): "moee batch's arguments reuse the render flags' checks (number_flag, "
                                       "add_life_arguments); cli.py registers the subcommand",
}


def module_name(path: Path) -> str:
    """``engine/x.py`` -> ``engine.x``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(module of ``known``, line, at module level?) of every import in a file, relative ones resolved; ``from a
    import b`` names ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parents, *([node.module] if node.module else [])])
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.append((name, node.lineno, id(node) in top_level))
                break
    return found


def import_graph(folder: str) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the modules of ``folder`` it imports (minus :data:`CYCLE_EXCEPTIONS`), and the problems with
    those exceptions (module-level, or gone)."""
    paths = {module_name(path): path for path in python_files(folder)}
    known = set(paths)
    graph: dict[str, set[str]] = {}
    used, problems = set(), []
    for name, path in paths.items():
        graph[name] = set()
        for target, line, top in imported_modules(path, known):
            key = (relative(path), target)
            if target == name:
                continue
            if key in CYCLE_EXCEPTIONS:
                used.add(key)
                if top:
                    problems.append(f"{key[0]}:{line} imports {target} at module level; CYCLE_EXCEPTIONS allows it "
                                    "only inside a function")
                continue
            graph[name].add(target)
    problems += [f"CYCLE_EXCEPTIONS lists {path} -> {target}, which is no longer imported: remove the entry"
                 for path, target in CYCLE_EXCEPTIONS if path.startswith(f"{folder}/") and (path, target) not in used]
    return graph, problems


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_finds_a_circle_and_only_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_the_modules_of_a_package():
    problems = []
    for folder in ACYCLIC:
        graph, exceptions = import_graph(folder)
        problems += exceptions
        if cycle := find_cycle(graph):
            problems.append(f"{folder}/ has an import cycle (function-local imports included): {' -> '.join(cycle)}; "
                            "move what both need into a module of its own")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the renderers apart
def runs_at_import(tree: ast.Module) -> set[int]:
    """ids of the import statements of a module that run when it is imported: not inside a function, nor under
    ``if TYPE_CHECKING:``."""
    found: set[int] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.add(id(child))
            visit(child)

    visit(tree)
    return found


def engine_imports(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(name, line, runs at import?) of every import of a file: an engine module of ``known`` (with its parent
    packages, which Python imports first), or any other top-level name."""
    tree = ast.parse(path.read_text(), str(path))
    at_import = runs_at_import(tree)
    found = [(target, line, top) for target, line, top in imported_modules(path, known)]
    found = [(parent, line, top) for target, line, top in found
             for parent in {".".join(target.split(".")[:i]) for i in range(2, target.count(".") + 2)}]
    lines_at_import = {node.lineno for node in ast.walk(tree) if id(node) in at_import}
    found = [(name, line, line in lines_at_import) for name, line, _ in found]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in at_import) for alias in node.names
                      if not alias.name.startswith("engine")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                not node.module.startswith("engine"):
            found.append((node.module, node.lineno, id(node) in at_import))
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def test_engine_packages_keep_apart():
    """portrait/ and diffusion/ never import each other and io/ neither, not even inside a function; and importing
    any of their modules never loads the other's, through a shared module either (the import-time closure)."""
    paths = {module_name(path): path for path in python_files("engine")}
    known = set(paths)
    graph = {name: engine_imports(path, known) for name, path in paths.items()}
    problems = []
    for package, forbidden in SEPARATE.items():
        for name in sorted(n for n in paths if within(n, package)):
            problems += [f"{relative(paths[name])}:{line} imports {target} ({package} must not import {bad})"
                         for target, line, _ in graph[name] for bad in forbidden if within(target, bad)]
            seen, chain = {name: [name]}, [name]
            while chain:
                current = chain.pop()
                for target, _, at_import in graph.get(current, []):
                    if at_import and target in known and target not in seen:
                        seen[target] = [*seen[current], target]
                        chain.append(target)
            for reached, route in sorted(seen.items()):
                bad = [b for b in forbidden if within(reached, b)]
                indirect = [t for t, _, at_import in graph[reached] if at_import and any(within(t, b) for b in
                                                                                        forbidden)]
                if (bad and len(route) > 2) or (indirect and len(route) > 1):
                    problems.append(f"importing {name} loads {' -> '.join(route)}"
                                    + (f" -> {indirect[0]}" if indirect and not bad else ""))
    assert not problems, "docs/ARCHITECTURE.md's engine packages are not kept apart:\n" + "\n".join(problems)


def test_tests_mirror_the_source():
    """tests/a/b/ holds the tests of a/b/ (tests/engine/portrait/ those of engine/portrait/, ...); only the project's
    own checks stay at the top of tests/."""
    folders = sorted(path.parent for path in (ROOT / "tests").rglob("test_*.py"))
    strays = [f"tests/{folder.relative_to(ROOT / 'tests').as_posix()}/ mirrors no source folder"
              for folder in set(folders) if folder != ROOT / "tests"
              and not (ROOT / folder.relative_to(ROOT / "tests") / "__init__.py").is_file()]
    top = sorted(path.name for path in (ROOT / "tests").glob("test_*.py") if path.name not in PROJECT_TESTS)
    strays += [f"tests/{name} belongs in the tests/ folder of the source it tests (tests/engine/..., "
               "tests/training/, tests/studio/)" for name in top]
    assert not strays, "\n".join(sorted(strays))
