"""Loading the scripts under benchmarks/ and scripts/ (not packages) in tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str, folder: Path = BENCHMARKS):
    """A script under ``folder`` (benchmarks/ or scripts/), imported by path."""
    spec = importlib.util.spec_from_file_location(f"{folder.name}_script_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
