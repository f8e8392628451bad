"""The architecture's import rules, read from the source (no import runs).

- Keras 3 is imported by ``training/backend.py`` only; TensorFlow, tf_keras and tfmot by
  ``converters/legacy.py`` only (everything else gets them from there).
- ``edge_app`` needs only the standard library, numpy, OpenCV, Picamera2 and the toolkit's
  numpy core: never training or conversion code, Keras or TensorFlow.
- The toolkit's shared core (``toolkit/*.py`` but the CLI) needs only the standard library and numpy.

The subprocess tests in test_edge_runtime.py and test_edge_app.py check the edge rule at run time.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("toolkit", "training", "converters", "edge_app", "benchmarks", "scripts")
KERAS_3 = {"keras"}
KERAS_2_STACK = {"tensorflow", "tf_keras", "tensorflow_model_optimization"}
NUMPY_CORE = {"preprocessing", "errors", "model_card", "atomic", "native_logs"}


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


def test_tensorflow_tf_keras_and_tfmot_are_imported_by_converters_legacy_only() -> None:
    assert offending(code_files(*CODE_FOLDERS), forbidden=KERAS_2_STACK, exempt=("converters/legacy.py",)) == []


def test_edge_app_needs_only_numpy_opencv_and_the_numpy_core() -> None:
    allowed = {"numpy", "cv2", "picamera2", "edge_app", "toolkit"}
    assert offending(code_files("edge_app"), allowed=allowed) == []


def test_collect_command_needs_only_the_edge_side() -> None:
    allowed = {"numpy", "cv2", "edge_app", "toolkit"}
    assert offending([ROOT / "toolkit" / "commands" / "collect.py"], allowed=allowed) == []


@pytest.mark.parametrize("name", sorted(NUMPY_CORE))
def test_shared_core_needs_only_numpy(name: str) -> None:
    allowed = {"numpy", "toolkit"}
    assert offending([ROOT / "toolkit" / f"{name}.py"], allowed=allowed) == []


def test_the_rules_can_fail(tmp_path: Path) -> None:
    stray = tmp_path / "stray.py"
    stray.write_text("import os\n\ndef f():\n    from tensorflow import lite\n    import cv2, keras.ops\n    from toolkit import cli\n")
    modules = [module for _, module in imported_modules(stray)]
    assert modules == ["os", "tensorflow", "cv2", "keras.ops", "toolkit", "toolkit.cli"]
    assert offending([stray], forbidden=KERAS_3, root=tmp_path) == ["stray.py:5 imports keras.ops"]
    assert offending([stray], allowed={"numpy", "toolkit"}, root=tmp_path) == [
        "stray.py:4 imports tensorflow", "stray.py:5 imports cv2", "stray.py:5 imports keras.ops", "stray.py:6 imports toolkit.cli",
    ]  # fmt: skip
