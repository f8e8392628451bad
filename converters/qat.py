"""Quantization-aware fine-tuning (tfmot) that keeps the sparsity of a pruned model.

    result = qat(QatConfig(model="runs/prune/model.keras", epochs=1, out="runs/qat"))

Schemes: ``default`` is tfmot's 8-bit scheme; ``prune-preserve`` is
``Default8BitPrunePreserveQuantizeScheme``, whose weight quantisers multiply each
kernel by the zero mask it had when QAT began, so pruned weights stay exactly zero.
``auto`` picks ``prune-preserve`` when the input's kernels are at least 1 % zeros.
Two tfmot traps are fixed here: see :class:`_KernelQuantizingLayout` and :func:`calibrate_ranges`.

Artifacts (OUT): ``model.keras`` (Keras 3, the fine-tuned float weights with the masks
applied), ``model.qat.weights.h5`` (the tf_keras QAT model's weights, quantiser ranges
included) and ``model.qat.json`` (how to rebuild it), which ``toolkit convert`` finds
beside ``model.keras`` to convert the QAT model with the ranges learnt here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from converters import bridge, finetune, stage
from converters.configs import QatConfig
from converters.sparsity import model_sparsity
from toolkit import atomic
from toolkit.errors import ToolkitError, first_line
from training.tensorflow_stack import tf_keras, tfmot

SPARSE_INPUT_THRESHOLD = 0.01  # kernels at least this sparse count as pruned
QAT_WEIGHTS_SUFFIX = ".qat.weights.h5"
QAT_INFO_SUFFIX = ".qat.json"
WEIGHTED_LAYERS = (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D, tf_keras.layers.Dense)


class _KernelOnlyQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """The scheme's kernel quantiser of a layer, without activation or output fake-quant."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get_weights_and_quantizers(self, layer):
        return self.inner.get_weights_and_quantizers(layer)

    def set_quantize_weights(self, layer, quantize_weights):
        self.inner.set_quantize_weights(layer, quantize_weights)

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class _KernelQuantizingLayout(tfmot.quantization.keras.QuantizeLayoutTransform):
    """tfmot's default 8-bit layout transform, then kernel quantisers back on conv/dense layers it left bare.

    tfmot's ``LayerReLUQuantize`` gives a Conv2D (or Dense) that feeds a separate ``ReLU`` layer a no-op
    quantize config, meant to avoid a fake-quant between the two, which also drops the kernel quantiser
    and the sparsity mask: in All-CNN-C, where every ReLU is its own layer, eight of nine kernels would
    train unquantised and pruned weights would grow back. :class:`_KernelOnlyQuantizeConfig` restores
    the kernel quantiser and still places no fake-quant between conv and ReLU (the converter fuses them).
    """

    def __init__(self, registry: Any) -> None:
        self.base = tfmot.quantization.keras.default_8bit.Default8BitQuantizeLayoutTransform()
        self.registry = registry

    def apply(self, model, layer_quantize_map):
        transformed, quantize_map = self.base.apply(model, layer_quantize_map)
        for layer in transformed.layers:
            entry = quantize_map.get(layer.name) or {}
            if type(entry.get("quantize_config")).__name__ == "NoOpQuantizeConfig" and isinstance(layer, WEIGHTED_LAYERS):
                kernel_only = _KernelOnlyQuantizeConfig(self.registry.get_quantize_config(layer))
                quantize_map[layer.name] = {**entry, "quantize_config": kernel_only}
        return transformed, quantize_map


class _Scheme(tfmot.quantization.keras.QuantizeScheme):
    """A tfmot 8-bit scheme (default or prune-preserving) with the kernel-quantising layout."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def get_layout_transformer(self):
        return _KernelQuantizingLayout(self.base.get_quantize_registry())

    def get_quantize_registry(self):
        return self.base.get_quantize_registry()


def quantize_scheme(name: str) -> Any:
    """The tfmot scheme for ``default`` or ``prune-preserve``."""
    if name == "prune-preserve":
        return _Scheme(tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    if name == "default":
        return _Scheme(tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme())
    raise ToolkitError(f"unknown quantisation scheme {name!r}; choose default or prune-preserve")


def check_quantizable(model: Any) -> None:
    """A one-line error naming the first layer tfmot's 8-bit scheme cannot quantise."""
    registry = tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry()
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.InputLayer):
            continue
        if isinstance(layer, tf_keras.layers.BatchNormalization) and _follows_weighted_layer(layer):
            continue  # quantised together with its conv by the layout transforms, not by the registry
        if not registry.supports(layer):
            raise ToolkitError(
                f"layer {layer.name!r} ({type(layer).__name__}) cannot be quantised by tfmot's 8-bit scheme: "
                "replace it with a supported layer (Conv2D, Dense, BatchNormalization, ReLU, pooling, Softmax)"
            )


def _follows_weighted_layer(layer: Any) -> bool:
    """Whether a conv or dense layer feeds ``layer`` in a functional model."""
    nodes = layer._inbound_nodes  # noqa: SLF001 - tf_keras has no public accessor
    return any(isinstance(parent, WEIGHTED_LAYERS) for node in nodes for parent, *_ in node.iterate_inbound())


def quantize_model(model: Any, scheme_name: str) -> Any:
    """Wrap a plain tf_keras model for QAT with the named scheme."""
    check_quantizable(model)
    annotated = tfmot.quantization.keras.quantize_annotate_model(model)
    try:
        return tfmot.quantization.keras.quantize_apply(annotated, quantize_scheme(scheme_name))
    except (RuntimeError, ValueError) as error:
        raise ToolkitError(f"tfmot cannot quantise this model: {first_line(error)}") from None


_RANGE_VARIABLES = (("output_min", "output_max"), ("post_activation_min", "post_activation_max"))


def calibrate_ranges(qat_model: Any, float_model: Any, batches: list[np.ndarray]) -> dict[str, list[float]]:
    """Set the QAT model's input, activation and kernel ranges from real data; returns the activation ranges set.

    tfmot starts every activation range at [-6, 6] and moves it by an EMA with decay 0.999, so after a
    short QAT the ranges would still be mostly that guess; this sets them first, in inference mode.
    Every range variable of a ``QuantizeWrapper`` (``output_min/max`` of a ReLU or
    pooling layer, ``post_activation_min/max`` of the classifier conv) quantises the
    output of the wrapped layer, which the float model computes under the same name.
    Each range becomes the mean over batches of the batch minimum and maximum: the
    value tfmot's EMA converges to. The input range (tfmot keeps the running min and
    max of all values seen) becomes the extremes over all batches, and the per-channel
    kernel ranges are read off the kernels, as tfmot's first training step would set them.
    """
    if not batches:
        return {}
    input_low = min(0.0, min(float(batch.min()) for batch in batches))
    input_high = max(0.0, max(float(batch.max()) for batch in batches))
    targets: dict[str, list[Any]] = {}
    for layer in qat_model.layers:
        variables = {bridge.short_name(variable): variable for variable in layer.weights}
        if type(layer).__name__ == "QuantizeLayer":  # tfmot does not export the class
            for name, variable in variables.items():
                if name.endswith(("_min", "_max")):
                    variable.assign(np.float32(input_low if name.endswith("_min") else input_high))
        inner = getattr(layer, "layer", None)
        for low, high in _RANGE_VARIABLES:
            if inner is not None and low in variables and high in variables:
                targets[inner.name] = [variables[low], variables[high]]
        if "kernel_min" in variables and "kernel" in variables:
            kernel = variables["kernel"].numpy() * _wrapper_masks(layer).get("kernel", 1)
            # tfmot's 8-bit kernels: per output channel, symmetric, narrow range (min = -max).
            largest = np.abs(kernel).reshape(-1, kernel.shape[-1]).max(axis=0)
            variables["kernel_min"].assign((-largest).astype(np.float32).reshape(variables["kernel_min"].shape))
            variables["kernel_max"].assign(largest.astype(np.float32).reshape(variables["kernel_max"].shape))
    names = sorted(targets)
    probe = tf_keras.Model(float_model.input, [float_model.get_layer(name).output for name in names])
    extremes: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for batch in batches:
        outputs = probe(batch, training=False)
        for name, output in zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs]):
            values = np.asarray(output)
            # TFLite needs 0 inside every range (tfmot's EMA update clamps the same way).
            extremes[name].append((min(float(values.min()), 0.0), max(float(values.max()), 0.0)))
    ranges = {}
    for name in names:
        lows, highs = zip(*extremes[name])
        low, high = float(np.mean(lows)), float(np.mean(highs))
        targets[name][0].assign(np.float32(low))
        targets[name][1].assign(np.float32(high))
        ranges[name] = [round(low, 6), round(high, 6)]
    return ranges


def _wrapper_masks(wrapper: Any) -> dict[str, np.ndarray]:
    """Sparsity masks of a QuantizeWrapper's weights (prune-preserve scheme), by variable short name."""
    masks = {}
    for variable, _, quantizer_variables in getattr(wrapper, "_weight_vars", []):
        mask = quantizer_variables.get("sparsity_mask") if isinstance(quantizer_variables, dict) else None
        if mask is not None:
            masks[bridge.short_name(variable)] = np.asarray(mask)
    return masks


def apply_masks_and_extract(qat_model: Any) -> dict[str, dict[str, np.ndarray]]:
    """Zero the masked weights inside the QAT model and return its float weights per original layer.

    Masked weights get no gradient (the forward pass multiplies them by 0) but L2 decay
    and float rounding could still leave them non-zero in the variable; assigning
    ``w * mask`` makes the stored kernels exactly as sparse as the model computes.
    """
    weights: dict[str, dict[str, np.ndarray]] = {}
    for layer in qat_model.layers:
        if not isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
            continue
        inner = layer.layer
        masks = _wrapper_masks(layer)
        values: dict[str, np.ndarray] = {}
        for variable in layer.weights:
            if not variable.name.startswith(inner.name + "/"):
                continue  # quantiser state (ranges, step counter) of the wrapper
            short = bridge.short_name(variable)
            value = variable.numpy()
            if short in masks:
                value = value * masks[short]
                variable.assign(value)
            values[short] = value
        if values:
            weights[inner.name] = values
    return weights


def qat_companions(model_path: str | Path) -> tuple[Path, Path]:
    """(weights file, info file) that sit beside a QAT run's ``model.keras``."""
    model_path = Path(model_path)
    return model_path.with_suffix(QAT_WEIGHTS_SUFFIX), model_path.with_suffix(QAT_INFO_SUFFIX)


def load_qat_model(source: bridge.SourceModel) -> tuple[Any, dict[str, Any]]:
    """Rebuild the tf_keras QAT model saved beside ``source`` (see module docstring)."""
    weights_path, info_path = qat_companions(source.path)
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ToolkitError(f"{info_path} is not readable QAT metadata: {error}") from None
    if info.get("model_sha256") and info["model_sha256"] != source.sha256:
        raise ToolkitError(f"{info_path} belongs to another version of {source.path.name} (hash differs): rerun toolkit qat")
    # The prune-preserve masks are taken from the kernels at build time: the float
    # model's masked kernels give the same masks QAT trained with.
    qat_model = quantize_model(source.twin(), info["scheme"])
    try:
        qat_model.load_weights(weights_path)
    except Exception as error:  # noqa: BLE001 - h5py and keras raise many types
        raise ToolkitError(f"{weights_path} could not be loaded into the QAT model: {first_line(error)}") from None
    return qat_model, info


def qat(config: QatConfig) -> stage.StageResult:
    """Quantization-aware fine-tuning of ``config.model``; writes the run folder described above."""
    begun = stage.start_stage(config)
    source, data = begun.source, begun.data
    twin = source.twin()
    sparsity_before = model_sparsity(twin)
    scheme = config.scheme
    if scheme == "auto":
        scheme = "prune-preserve" if sparsity_before.overall >= SPARSE_INPUT_THRESHOLD else "default"
    qat_model = quantize_model(twin, scheme)
    calibration_source = data.train_source(seed_offset=1)
    calibration = [calibration_source[index][0] for index in range(min(config.calibration_batches, len(calibration_source)))]
    ranges = calibrate_ranges(qat_model, twin, calibration)
    accuracy_quantized_start = finetune.accuracy(qat_model, source.card, data.validation)

    rows = finetune.fit(qat_model, data, config, "QAT")
    model = bridge.keras3_from_weights(source.model_config, apply_masks_and_extract(qat_model))
    sparsity_after = model_sparsity(model)
    accuracy_float = finetune.accuracy(model, source.card, data.validation)
    accuracy_quantized = finetune.accuracy(qat_model, source.card, data.validation)
    sparsity_change = {
        name: round((sparsity_after.per_layer[name] - before) * 100, 4) for name, before in sparsity_before.per_layer.items()
    }
    weights_path, info_path = qat_companions(begun.out / stage.MODEL_NAME)
    notes = (
        f"toolkit qat: tfmot {scheme} 8-bit scheme (kernel quantisers on conv+ReLU restored), "
        f"{config.epochs} epoch(s); float weights here, QAT weights in {weights_path.name}"
    )
    accuracies = {"validation_accuracy": accuracy_float, "qat_validation_accuracy": accuracy_quantized}
    card = begun.card(sparsity_after.overall, f"qat:{scheme}", notes, accuracies)

    def save_qat_weights(model_path: Path) -> None:
        # The temporary name must keep ".weights.h5": tf_keras picks the file format from it.
        with atomic.atomic_path(weights_path, suffix=".weights.h5") as temporary:
            qat_model.save_weights(str(temporary))
        info = {"scheme": scheme, "weights": weights_path.name, "model_sha256": atomic.file_digest(model_path),
                "tfmot_version": getattr(tfmot, "__version__", "unknown")}  # fmt: skip
        atomic.write_json(info_path, info)

    details = {
        "qat_weights": str(weights_path),
        "scheme": scheme,
        "calibration": {"batches": len(calibration), "activation_ranges_before_qat": ranges},
        "sparsity_before": sparsity_before.to_dict(),
        "sparsity": sparsity_after.to_dict(),
        "sparsity_change_points": sparsity_change,
        "validation_accuracy": {
            "source_float": begun.accuracy_before,
            "fake_quant_before_qat": accuracy_quantized_start,
            "fake_quant_after_qat": accuracy_quantized,
            "float_after_qat": accuracy_float,
        },
    }
    return stage.finish_stage(begun, "qat", config, model, card, rows, details, save_qat_weights)
