"""Read a ``.tflite`` flatbuffer: operators with their tensor types, kernels, metadata.

Parsed with TensorFlow's own schema bindings (``tensorflow.lite.tools.flatbuffer_utils``),
so the check sees the file exactly as a runtime would, without running it: no
interpreter, no delegates (XNNPACK would otherwise replace the op list).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError

# Tensor types inside a full-integer model: activations and weights int8, biases int32
# (uint8 or float32 only at the I/O boundary, where QUANTIZE/DEQUANTIZE convert them).
INTEGER_TYPES = ("INT8", "INT32")
KERNEL_OPERATORS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


@dataclasses.dataclass
class TensorInfo:
    index: int  # tensor index in the subgraph
    name: str  # tensor name (from the converter)
    type: str  # schema type name: INT8, FLOAT32, ...
    scale: list[float]  # quantisation scales (empty when not quantised)
    zero_point: list[int]  # quantisation zero points
    data: np.ndarray | None  # constant data (weights), None for activations


@dataclasses.dataclass
class OperatorInfo:
    index: int  # position in execution order
    name: str  # builtin operator name, e.g. CONV_2D (custom ops: CUSTOM:<code>)
    inputs: list[TensorInfo]  # input tensors (optional inputs omitted)
    outputs: list[TensorInfo]  # output tensors


@dataclasses.dataclass
class TfliteModel:
    operators: list[OperatorInfo]  # subgraph 0, in execution order
    inputs: list[TensorInfo]  # model inputs
    outputs: list[TensorInfo]  # model outputs
    subgraphs: int  # number of subgraphs
    metadata: dict[str, bytes]  # metadata entries by name

    def kernels(self) -> list[tuple[str, np.ndarray]]:
        """(operator label, kernel) of every conv / fully-connected op, TFLite layout (out channels first)."""
        # float16 models store kernels as float16 constants behind a DEQUANTIZE op.
        dequantized = {
            operator.outputs[0].index: operator.inputs[0]
            for operator in self.operators
            if operator.name == "DEQUANTIZE" and operator.inputs and operator.inputs[0].data is not None
        }
        found = []
        for operator in self.operators:
            if operator.name not in KERNEL_OPERATORS or len(operator.inputs) < 2:
                continue
            kernel = operator.inputs[1]
            kernel = kernel if kernel.data is not None else dequantized.get(kernel.index)
            if kernel is not None:
                found.append((f"{operator.index}:{operator.name}", kernel.data))
        return found


def _names(enum_class: Any) -> dict[int, str]:
    return {value: key for key, value in vars(enum_class).items() if not key.startswith("_")}


_NUMPY_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32, "INT16": np.int16, "FLOAT32": np.float32, "FLOAT16": np.float16, "INT64": np.int64}


def read_tflite(path_or_bytes: str | Path | bytes) -> TfliteModel:
    """Parse a .tflite file (or its bytes); a one-line error when it is not a TFLite flatbuffer."""
    from training.tensorflow_stack import tflite_schema as schema

    if isinstance(path_or_bytes, (bytes, bytearray)):
        data, label = bytes(path_or_bytes), "model bytes"
    elif Path(path_or_bytes).is_file():
        data, label = Path(path_or_bytes).read_bytes(), str(Path(path_or_bytes))
    else:
        raise ToolkitError(f"model file {Path(path_or_bytes)} does not exist")
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ToolkitError(f"{label} is not a TFLite model (no TFL3 identifier): is it corrupt or truncated?")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    except Exception as error:  # noqa: BLE001 - flatbuffers raises assorted errors on bad input
        raise ToolkitError(f"{label} could not be parsed as a TFLite model: {error}") from None
    operator_names = _names(schema.BuiltinOperator)
    type_names = _names(schema.TensorType)
    subgraph = model.subgraphs[0]

    def tensor(index: int) -> TensorInfo:
        raw = subgraph.tensors[index]
        type_name = type_names.get(raw.type, str(raw.type))
        buffer = model.buffers[raw.buffer] if raw.buffer < len(model.buffers) else None
        shape = [int(value) for value in (raw.shape if raw.shape is not None else [])]
        constant = None
        if buffer is not None and buffer.data is not None and len(buffer.data) and type_name in _NUMPY_TYPES:
            constant = np.frombuffer(np.asarray(buffer.data, dtype=np.uint8).tobytes(), dtype=_NUMPY_TYPES[type_name])
            if shape and int(np.prod(shape)) == constant.size:
                constant = constant.reshape(shape)
        quantization = raw.quantization
        scale = [float(value) for value in (quantization.scale if quantization is not None and quantization.scale is not None else [])]
        zero_point = [int(value) for value in (quantization.zeroPoint if quantization is not None and quantization.zeroPoint is not None else [])]
        name = raw.name.decode("utf-8", "replace") if isinstance(raw.name, bytes) else str(raw.name)
        return TensorInfo(index, name, type_name, scale, zero_point, constant)

    operators = []
    for position, raw in enumerate(subgraph.operators or []):
        code = model.operatorCodes[raw.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = operator_names.get(builtin, str(builtin))
        if name == "CUSTOM":
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
            name = f"CUSTOM:{custom}"
        inputs = [tensor(int(index)) for index in (raw.inputs if raw.inputs is not None else []) if index >= 0]
        outputs = [tensor(int(index)) for index in (raw.outputs if raw.outputs is not None else []) if index >= 0]
        operators.append(OperatorInfo(position, name, inputs, outputs))
    metadata = {}
    for entry in model.metadata or []:
        key = entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)
        buffer = model.buffers[entry.buffer]
        metadata[key] = np.asarray(buffer.data, dtype=np.uint8).tobytes() if buffer.data is not None else b""
    return TfliteModel(
        operators,
        [tensor(int(index)) for index in subgraph.inputs],
        [tensor(int(index)) for index in subgraph.outputs],
        len(model.subgraphs),
        metadata,
    )


def first_non_integer_operator(model: TfliteModel, io_type: str = "int8") -> str | None:
    """Describe the first operator that is not fully integer, or None when every one is.

    Allowed: int8 activations and weights, int32 biases and indices; with float32 or
    uint8 I/O, the QUANTIZE that takes the input and the DEQUANTIZE/QUANTIZE that
    produce the output.
    """
    input_indices = {tensor.index for tensor in model.inputs}
    output_indices = {tensor.index for tensor in model.outputs}
    for operator in model.operators:
        boundary = (operator.name == "QUANTIZE" and any(tensor.index in input_indices for tensor in operator.inputs)) or (
            operator.name in ("DEQUANTIZE", "QUANTIZE") and any(tensor.index in output_indices for tensor in operator.outputs)
        )
        if boundary and io_type != "int8":
            continue
        bad = [tensor for tensor in operator.inputs + operator.outputs if tensor.type not in INTEGER_TYPES]
        if bad:
            return f"operator {operator.index} {operator.name} has {bad[0].type} tensor {bad[0].name!r}"
    return None


LABELS_METADATA = "labels"
CARD_METADATA = "toolkit_model_card"


def embed_metadata(model_bytes: bytes, entries: dict[str, bytes]) -> bytes:
    """Add named metadata entries (the ``Model.metadata`` table of the TFLite schema) to a model.

    Runtimes ignore entries they do not know; ``read_tflite(...).metadata`` reads them back.
    """
    from training.tensorflow_stack import flatbuffer_utils
    from training.tensorflow_stack import tflite_schema as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    model.metadata = list(model.metadata or [])
    for name, payload in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
