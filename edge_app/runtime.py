"""One LiteRT interpreter factory and the ``.tflite`` predictor that speaks the model card (pycoral-style).

The first of :data:`RUNTIME_MODULES` found wins: TensorFlow is imported only when both LiteRT packages are missing.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError, check, first_line
from toolkit.model_card import TensorQuantization, card_path, check_card_matches, load_card
from toolkit.native_logs import quiet_native_logs
from toolkit.preprocessing import Predictor

RUNTIME_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")

EDGETPU_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}

# A TFLite flatbuffer starts with the 4-byte offset of its root table, then this file identifier.
TFLITE_IDENTIFIER = b"TFL3"

EDGETPU_SUFFIX = "_edgetpu.tflite"  # edgetpu_compiler writes the build of m.tflite as m_edgetpu.tflite


def runtime_module() -> tuple[str, Any]:
    """The first importable LiteRT runtime as (module name, module)."""
    for name in RUNTIME_MODULES:
        try:
            return name, importlib.import_module(name)
        except ImportError:
            continue
    raise ToolkitError(
        "no TFLite runtime found: pip install ai-edge-litert (or tflite-runtime on 32-bit Raspberry Pi OS)"
    )


def delegate_namespace(name: str, module: Any) -> Any:
    """Where runtime ``name`` (``module``) keeps ``load_delegate`` and ``OpResolverType``: TensorFlow under ``experimental``."""
    return module.experimental if name == "tensorflow.lite" else module


def is_edgetpu_build(model_path: str | os.PathLike) -> bool:
    """Whether ``model_path`` is named as a model compiled by ``edgetpu_compiler`` (``*_edgetpu.tflite``)."""
    return Path(model_path).name.endswith(EDGETPU_SUFFIX)


def edgetpu_build(model_path: str | os.PathLike) -> Path:
    """Where ``edgetpu_compiler`` puts the build of ``model_path``: ``m_edgetpu.tflite`` beside ``m.tflite``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + EDGETPU_SUFFIX)


def load_edgetpu_delegate(namespace: Any) -> Any:
    """Load the Coral Edge TPU delegate through the runtime's ``delegate_namespace``, or say how to install it."""
    library = EDGETPU_LIBRARIES.get(platform.system(), "libedgetpu.so.1")
    hint = "install libedgetpu1-std from the Coral apt repository and plug in the accelerator"
    try:
        # Probe with ctypes first: a failed load_delegate() leaves a half-built Delegate whose
        # __del__ prints "Exception ignored ..." on stderr.
        ctypes.CDLL(library)
    except OSError:
        raise ToolkitError(f"Edge TPU delegate {library} is not installed: {hint}") from None
    try:
        return namespace.load_delegate(library)
    except (ValueError, OSError, RuntimeError) as error:
        message = first_line(error, "no Edge TPU found")
        raise ToolkitError(f"Edge TPU delegate {library} could not be loaded ({message}): {hint}") from None


def check_tflite_file(model_path: Path) -> None:
    """A one-line error unless ``model_path`` starts like a TFLite flatbuffer (root offset, then ``TFL3``)."""
    size = model_path.stat().st_size
    with open(model_path, "rb") as handle:
        header = handle.read(8)
    if len(header) < 8:
        raise ToolkitError(f"{model_path} is not a TFLite model (only {size} bytes)")
    if header[4:8] != TFLITE_IDENTIFIER:
        raise ToolkitError(f"{model_path} is not a TFLite model (no TFL3 identifier at bytes 4..8, found {header[4:8]!r})")
    root_offset = int.from_bytes(header[:4], "little")
    if root_offset >= size:
        raise ToolkitError(f"{model_path} is not a TFLite model (truncated: its root table at byte {root_offset:,} is past the end)")


def make_interpreter(model_path: str | os.PathLike, threads: int | None = None, edgetpu: bool = False,
                     xnnpack: bool = True) -> Any:
    """Create and allocate an interpreter for ``model_path`` on ``threads`` CPU threads, with XNNPACK (the default CPU
    delegate) unless ``xnnpack`` is off, or on the Edge TPU (a ``*_edgetpu.tflite`` model) with ``edgetpu``."""
    model_path = Path(model_path)
    check(
        (model_path.is_file(), f"model file {model_path} does not exist"),
        (model_path.suffix not in (".keras", ".h5"),
         f"{model_path} is a Keras model; the edge app runs .tflite models: convert it first "
         f"(toolkit convert --int8 --model {model_path})"),
        (threads is None or threads >= 1, f"--threads must be at least 1, got {threads}"),
        (not edgetpu or is_edgetpu_build(model_path),
         f"--edgetpu needs a model compiled by edgetpu_compiler (*_edgetpu.tflite), got {model_path.name}"),
    )
    check_tflite_file(model_path)
    name, module = runtime_module()
    delegate_module = delegate_namespace(name, module)
    delegates = [load_edgetpu_delegate(delegate_module)] if edgetpu else None
    options: dict[str, Any] = {}
    if not xnnpack:  # the op resolver that skips the default XNNPACK delegate, where this runtime has one
        resolver = getattr(getattr(delegate_module, "OpResolverType", None), "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
        if resolver is None:
            raise ToolkitError(f"{name} cannot turn XNNPACK off (it has no OpResolverType)")
        options["experimental_op_resolver_type"] = resolver
    try:
        with quiet_native_logs():  # LiteRT notes on descriptor 2 that it created the XNNPACK delegate
            interpreter = module.Interpreter(
                model_path=str(model_path), num_threads=threads, experimental_delegates=delegates, **options
            )
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        reason = first_line(error)
        # The runtimes verify the whole flatbuffer on load and say only "not a valid Flatbuffer buffer"
        # for a truncated or damaged file; other failures (operators, delegates) are about a valid model.
        if "flatbuffer" in reason.lower():
            raise ToolkitError(f"{model_path} is not a TFLite model (truncated or damaged: {reason})") from None
        raise ToolkitError(f"{model_path} is not a loadable TFLite model: {reason}") from None
    return interpreter


def card_owner(model_path: str | os.PathLike) -> Path:
    """The model whose card serves ``model_path``: itself, or ``m.tflite`` for ``m_edgetpu.tflite`` without a card of its own."""
    model_path = Path(model_path)
    if is_edgetpu_build(model_path) and not card_path(model_path).exists():
        source = model_path.with_name(model_path.name.removesuffix(EDGETPU_SUFFIX) + ".tflite")
        if card_path(source).exists():
            return source
    return model_path


def _tensor_quantization(detail: dict[str, Any]) -> TensorQuantization:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorQuantization(dtype=np.dtype(detail["dtype"]).name, scale=float(scale), zero_point=int(zero_point))


class TFLitePredictor(Predictor):
    """A ``.tflite`` model on the LiteRT interpreter behind :class:`toolkit.preprocessing.Predictor`: preprocessing from
    the model card beside it, input and output quantisation from the interpreter."""

    def __init__(self, model_path: str | os.PathLike, threads: int | None = None, edgetpu: bool = False, xnnpack: bool = True) -> None:
        owner = card_owner(model_path)
        card = load_card(owner)
        self.interpreter = make_interpreter(model_path, threads=threads, edgetpu=edgetpu, xnnpack=xnnpack)
        self.input_detail = self.interpreter.get_input_details()[0]
        self.output_detail = self.interpreter.get_output_details()[0]
        super().__init__(card, _tensor_quantization(self.input_detail), _tensor_quantization(self.output_detail))
        check_card_matches(model_path, card, input_shape=self.input_detail["shape"][1:],
                           num_outputs=int(self.output_detail["shape"][-1]), card_of=owner)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Raw output codes (N x classes), one image per invoke (the model's batch is 1)."""
        outputs = []
        for index in range(len(inputs)):
            self.interpreter.set_tensor(self.input_detail["index"], inputs[index : index + 1])
            self.interpreter.invoke()
            outputs.append(self.interpreter.get_tensor(self.output_detail["index"]))
        return np.concatenate(outputs)
