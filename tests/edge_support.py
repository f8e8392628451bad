"""Helpers for the edge app tests: a tiny int8 model built once per session, and runs without TensorFlow.

The model is built here with TensorFlow (tests may use it to BUILD fixtures); the app
under test then runs in a subprocess where importing tensorflow or keras fails.
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


def build_tiny_int8_model(directory: Path, sample_dir: Path, epochs: int = 8) -> Path:
    """A width-0.125 All-CNN-C (no dropout: it learns in seconds) trained on the sample, as int8 + card.

    Beside ``model_int8.tflite`` it also writes ``model_uint8.tflite`` (uint8 I/O) and
    ``model_float32.tflite``, each with its card.
    """
    from converters.convert import convert_model, tensor_quantization
    from toolkit import preprocessing
    from toolkit.model_card import ModelCard, save_card
    from training.allcnn import ModelConfig, create_model
    from training.data import channel_statistics, load_image_folder
    from training.tensorflow_stack import tf_keras

    dataset = load_image_folder(sample_dir)
    mean, std = channel_statistics(dataset.images)
    inputs = preprocessing.prepare_batch(dataset.images, mean, std)
    tf_keras.utils.set_random_seed(0)
    config = ModelConfig(width=0.125, input_dropout=0.0, stage_dropout=0.0)
    model = create_model(config, tf_keras)
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(inputs, dataset.labels, epochs=epochs, batch_size=32, verbose=0)

    # int8 I/O is what `toolkit convert --int8` ships; uint8 I/O and float are there to test the other paths.
    for name, io_type in (("model_int8", "int8"), ("model_uint8", "uint8"), ("model_float32", None)):
        path = Path(directory) / f"{name}.tflite"
        data, parsed = convert_model(model, "int8", inputs[::3], io=io_type) if io_type else convert_model(model, "float32")
        path.write_bytes(data)
        card = ModelCard(
            labels=dataset.class_names,
            input_size=list(config.input_shape),
            mean=mean,
            std=std,
            architecture={"builder": "allcnn", **config.to_dict()},
            dataset=str(sample_dir),
            format="tflite-int8" if io_type is not None else "tflite-float32",
            input_quantization=tensor_quantization(parsed.inputs[0]),  # the interpreter's reading is checked against it
            output_quantization=tensor_quantization(parsed.outputs[0]),
            history=["edge test fixture: a few epochs on the committed sample"],
        )
        save_card(card, path)
    return Path(directory) / "model_int8.tflite"


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
