"""Helpers for the edge app tests: runs without TensorFlow, and small inputs for them.

Fixtures may be built with TensorFlow (tests/tiny_models.py); the app under test then runs in a
subprocess where importing tensorflow or keras fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

# Python run before the CLI in a subprocess: importing any of these raises ModuleNotFoundError,
# as on a Raspberry Pi that has only numpy, OpenCV and ai-edge-litert.
BLOCKED_MODULES = ("tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "jax", "training", "converters")
# What `pip install .[edge]` lacks: the whole package is there, but none of the train extra's
# modules (ai-edge-litert brings tqdm).
EDGE_INSTALL_MISSING = ("tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "jax", "matplotlib", "yaml")


def blocker(modules: tuple[str, ...]) -> str:
    """Python that makes importing any of ``modules`` (or their submodules) raise ModuleNotFoundError."""
    return f"""
import sys, importlib.abc
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {modules!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: edge device)", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def _environment(display: str | None) -> dict[str, str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    environment.pop("DISPLAY", None)
    environment.pop("WAYLAND_DISPLAY", None)
    if display:
        environment["DISPLAY"] = display
    return environment


def _blocked_command(arguments: list[str], blocked: tuple[str, ...], script: Path | None) -> list[str]:
    """``python -c ...`` running ``toolkit <arguments>`` (or ``script <arguments>``) with ``blocked`` unimportable."""
    if script is None:
        return [sys.executable, "-c", blocker(blocked) + "from toolkit.cli import main\nsys.exit(main(sys.argv[1:]))\n", *arguments]
    code = blocker(blocked) + "import runpy\nsys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"
    return [sys.executable, "-c", code, str(script), *arguments]


def run_without_tensorflow(
    arguments: list[str], timeout: float = 120, blocked: tuple[str, ...] = BLOCKED_MODULES, script: Path | None = None,
    **kwargs,
) -> subprocess.CompletedProcess:
    """``toolkit <arguments>`` (or ``python script <arguments>``) in a subprocess where ``blocked`` (tensorflow, keras and
    the training side) cannot be imported."""
    environment = _environment(kwargs.pop("env_display", os.environ.get("DISPLAY")))
    return subprocess.run(
        _blocked_command(arguments, blocked, script),
        capture_output=True, text=True, timeout=timeout, env=environment, cwd=kwargs.pop("cwd", REPO_ROOT), **kwargs,
    )


def popen_without_tensorflow(arguments: list[str], **kwargs) -> subprocess.Popen:
    """Like :func:`run_without_tensorflow` but returns the running process (for --serve)."""
    return subprocess.Popen(
        _blocked_command(arguments, BLOCKED_MODULES, None),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment(os.environ.get("DISPLAY")), cwd=REPO_ROOT,
        **kwargs,
    )


def json_lines(text: str) -> tuple[list[dict], dict]:
    """Per-frame records and the summary from ``--headless`` stdout."""
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not records or "summary" not in records[-1]:
        raise AssertionError(f"no summary line in output: {text[-500:]!r}")
    return records[:-1], records[-1]["summary"]


def write_lossless_video(path: Path, frames_bgr: list[np.ndarray], fps: float = 30.0) -> Path:
    """Write BGR frames losslessly (FFV1 in .mkv/.avi) so decoded frames equal the written ones."""
    import cv2

    height, width = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError("this OpenCV cannot write FFV1 video")
    for frame in frames_bgr:
        writer.write(frame)
    writer.release()
    return path
