"""The architecture's import rules, read from the source (no import runs).

- Keras 3 is imported by ``training/backend.py`` only; TensorFlow, tf_keras and tfmot by
  ``training/tensorflow_stack.py`` only (everything else gets them from there).
- ``edge_app`` needs only the standard library, numpy, OpenCV, Picamera2 and the toolkit's
  numpy core: never training or conversion code, Keras or TensorFlow.
- Every module of ``toolkit`` is either the shared core, which needs only the standard library
  and numpy, or orchestration (the CLI, its commands, the pipeline and the benchmark), which
  may import every package. ``training``, ``converters`` and ``edge_app`` use only the core.
- ``training`` never imports ``converters``: conversion builds on training, not the reverse.
- No modules of the project import one another round a cycle, counting the imports inside
  functions too: such an import defers loading (TensorFlow stays off the device and out of
  start-up) but the two modules still need each other, so it must not hide a cycle.

The subprocess tests in test_edge_runtime.py and test_edge_app.py check the edge rule at run time.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("toolkit", "training", "converters", "edge_app", "benchmarks", "scripts")
PACKAGES = ("toolkit", "training", "converters", "edge_app")
KERAS_3 = {"keras"}
KERAS_2_STACK = {"tensorflow", "tf_keras", "tensorflow_model_optimization"}
# toolkit/<name>.py: the shared core. __init__ runs on every import of the core, so it is core too.
NUMPY_CORE = {"__init__", "atomic", "errors", "flags", "keras_file", "model_card", "native_logs", "preprocessing", "pretrained"}
# toolkit/<name>.py or toolkit/<name>/: the CLI and the stages it runs across packages.
ORCHESTRATION = {"__main__", "cli", "commands", "pipeline", "benchmark"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module name) of every import statement in ``path``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            base = node.module
            found += [(node.lineno, base)]
            if base == "toolkit":  # "from toolkit import preprocessing" imports toolkit.preprocessing
                found += [(node.lineno, f"toolkit.{alias.name}") for alias in node.names]
    return found


def code_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def module_name(path: Path, root: Path = ROOT) -> str:
    """``toolkit/benchmark/run.py`` -> ``toolkit.benchmark.run``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(packages: tuple[str, ...] = PACKAGES, root: Path = ROOT) -> dict[str, set[str]]:
    """Each module of ``packages`` -> the modules of ``packages`` it imports, imports inside functions included.

    ``from package import name`` counts as importing ``package.name`` where that is a module, else ``package``.
    """
    files = {module_name(path, root): path for package in packages for path in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                candidates = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in files:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import one another round a cycle (Tarjan's strongly connected components)."""
    order: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        order[module] = lowest[module] = len(order)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in order:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in stack:
                lowest[module] = min(lowest[module], order[target])
        if lowest[module] == order[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return sorted(cycles)


def offending(
    files: list[Path], allowed: set[str] | None = None, forbidden: set[str] = frozenset(), exempt: tuple[str, ...] = (), root: Path = ROOT
) -> list[str]:
    """``path:line imports module`` for each import outside ``allowed`` (plus the standard library) or inside ``forbidden``."""
    problems = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        if relative in exempt:
            continue
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            bad = top in forbidden or (allowed is not None and top not in allowed and top not in sys.stdlib_module_names)
            if module.startswith("toolkit.") and allowed is not None and "toolkit" in allowed:
                bad = bad or module.split(".")[1] not in NUMPY_CORE
            if bad:
                problems.append(f"{relative}:{line} imports {module}")
    return problems


def test_keras_3_is_imported_by_training_backend_only() -> None:
    assert offending(code_files(*CODE_FOLDERS), forbidden=KERAS_3, exempt=("training/backend.py",)) == []


def test_tensorflow_tf_keras_and_tfmot_are_imported_by_training_tensorflow_stack_only() -> None:
    assert offending(code_files(*CODE_FOLDERS), forbidden=KERAS_2_STACK, exempt=("training/tensorflow_stack.py",)) == []


def test_training_never_imports_converters() -> None:
    assert offending(code_files("training"), forbidden={"converters"}) == []


def test_edge_app_needs_only_numpy_opencv_and_the_numpy_core() -> None:
    allowed = {"numpy", "cv2", "picamera2", "edge_app", "toolkit"}
    assert offending(code_files("edge_app"), allowed=allowed) == []


def test_collect_command_needs_only_the_edge_side() -> None:
    allowed = {"numpy", "cv2", "edge_app", "toolkit"}
    assert offending([ROOT / "toolkit" / "commands" / "collect.py"], allowed=allowed) == []


def test_every_toolkit_module_is_core_or_orchestration() -> None:
    assert not NUMPY_CORE & ORCHESTRATION
    kinds = {path.relative_to(ROOT / "toolkit").parts[0].removesuffix(".py") for path in code_files("toolkit")}
    assert kinds == NUMPY_CORE | ORCHESTRATION, "a new toolkit module belongs in NUMPY_CORE or ORCHESTRATION"
    assert all((ROOT / "toolkit" / f"{name}.py").is_file() for name in NUMPY_CORE)  # the core is flat: no subpackage


@pytest.mark.parametrize("name", sorted(NUMPY_CORE))
def test_shared_core_needs_only_numpy(name: str) -> None:
    allowed = {"numpy", "toolkit"}
    assert offending([ROOT / "toolkit" / f"{name}.py"], allowed=allowed) == []


def test_training_and_converters_use_only_the_toolkit_core() -> None:
    used = {
        f"{path.relative_to(ROOT).as_posix()}:{line} imports {module}"
        for path in code_files("training", "converters")
        for line, module in imported_modules(path)
        if module.startswith("toolkit.") and module.split(".")[1] not in NUMPY_CORE
    }
    assert used == set()


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert {"toolkit.pipeline", "toolkit.benchmark.run", "training.data", "converters.bridge"} <= set(graph)
    assert import_cycles(graph) == []


def test_the_rules_can_fail(tmp_path: Path) -> None:
    stray = tmp_path / "stray.py"
    stray.write_text("import os\n\ndef f():\n    from tensorflow import lite\n    import cv2, keras.ops\n    from toolkit import cli\n")
    modules = [module for _, module in imported_modules(stray)]
    assert modules == ["os", "tensorflow", "cv2", "keras.ops", "toolkit", "toolkit.cli"]
    assert offending([stray], forbidden=KERAS_3, root=tmp_path) == ["stray.py:5 imports keras.ops"]
    assert offending([stray], allowed={"numpy", "toolkit"}, root=tmp_path) == [
        "stray.py:4 imports tensorflow", "stray.py:5 imports cv2", "stray.py:5 imports keras.ops", "stray.py:6 imports toolkit.cli",
    ]  # fmt: skip


def test_the_cycle_rule_can_fail(tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "first.py").write_text("from package import second\n")
    (package / "second.py").write_text("def late():\n    import package.first\n")
    (package / "third.py").write_text("import package.first\nfrom package.second import late\n")
    graph = import_graph(("package",), root=tmp_path)
    assert graph == {"package": set(), "package.first": {"package.second"}, "package.second": {"package.first"},
                     "package.third": {"package.first", "package.second"}}  # fmt: skip
    assert import_cycles(graph) == [["package.first", "package.second"]]
