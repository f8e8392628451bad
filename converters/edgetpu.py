"""Edge TPU readiness: which ops of an int8 model the Coral Edge TPU runs, and the compiler.

The supported-op list is the table "Supported operations" of Coral's "TensorFlow models
on the Edge TPU" (https://coral.ai/docs/edgetpu/models-intro/#supported-operations,
Edge TPU Compiler 16), written with the TFLite schema's operator names. The compiler
maps ops to the Edge TPU in execution order until the first one it cannot map; that op
and everything after it run on the CPU, so the first unsupported op is what to fix.
Only the op type and the tensor types (int8/uint8 quantised) are checked here; the
table's per-op limits (e.g. MEAN over batch) are left to ``edgetpu_compiler``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from converters.tflite_inspect import TfliteModel
from edge_app.runtime import edgetpu_build
from toolkit.errors import ToolkitError

EDGETPU_OPERATORS = frozenset(
    {
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
        "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE",
        "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE",
        "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    }
)  # fmt: skip

# Tensor types the Edge TPU computes with (int32 appears only as biases and shape/axis constants).
_DEVICE_TYPES = ("INT8", "UINT8", "INT32")

INSTALL_HINT = (
    "edgetpu_compiler is not installed: on x86-64 Debian/Ubuntu add Coral's apt repository "
    "(https://coral.ai/docs/edgetpu/compiler/#download) and `sudo apt-get install edgetpu-compiler`, "
    "or use Coral's Colab compiler; then rerun with --edgetpu"
)


def check_operators(model: TfliteModel) -> dict[str, Any]:
    """Report which operators would map to the Edge TPU and the first that would fall back to the CPU."""
    first_cpu = None
    for operator in model.operators:
        odd = [tensor for tensor in operator.inputs + operator.outputs if tensor.type not in _DEVICE_TYPES]
        if operator.name not in EDGETPU_OPERATORS:
            reason = f"{operator.name} is not in the Edge TPU's supported operations"
        elif odd:
            reason = f"{operator.name} has a {odd[0].type} tensor ({odd[0].name}); the Edge TPU needs 8-bit quantised tensors"
        else:
            continue
        first_cpu = {"index": operator.index, "operator": operator.name, "reason": reason}
        break
    mapped = first_cpu["index"] if first_cpu else len(model.operators)
    return {
        "operators": [operator.name for operator in model.operators],
        "edgetpu_operators": mapped,
        "cpu_operators": len(model.operators) - mapped,
        "first_cpu_operator": first_cpu,
        "subgraphs": model.subgraphs,
        "source": "https://coral.ai/docs/edgetpu/models-intro/#supported-operations (Edge TPU Compiler 16)",
    }


def compiler_path() -> str | None:
    """The installed ``edgetpu_compiler``, or None."""
    return shutil.which("edgetpu_compiler")


def compile_for_edgetpu(model_path: str | Path, out_dir: str | Path, timeout: int = 600) -> Path:
    """Run ``edgetpu_compiler`` on ``model_path``; returns ``<stem>_edgetpu.tflite`` in ``out_dir``."""
    compiler = compiler_path()
    if compiler is None:
        raise ToolkitError(INSTALL_HINT)
    model_path, out_dir = Path(model_path), Path(out_dir)
    result = subprocess.run(
        [compiler, "--out_dir", str(out_dir), "--show_operations", str(model_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    compiled = edgetpu_build(out_dir / model_path.name)
    if result.returncode != 0 or not compiled.exists():
        last = (result.stderr.strip() or result.stdout.strip() or f"exit code {result.returncode}").splitlines()[-1]
        raise ToolkitError(f"edgetpu_compiler failed on {model_path.name}: {last}")
    compiled.with_suffix(".log").write_text(result.stdout)
    return compiled
