"""TFLite export (float32, float16, dynamic-range, full-integer int8) with an accuracy-parity report.

    result = convert(ConvertConfig(model="runs/qat/model.keras", out="runs/convert"))

OUT holds model_<format>.tflite with model_<format>.card.json beside each, parity.json (each
converted model against the float reference on held-out images) and report.json. The int8 model of a
``toolkit qat`` model comes from its QAT twin, keeping the ranges learnt there; the other formats come from
the float model. docs/compression.md has the rest.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters import bridge, edgetpu, finetune
from converters.configs import ConvertConfig
from converters.parity import DEFINITIONS, parity_metrics, top1
from converters.sparsity import sparsity_of_arrays
from converters.tflite_inspect import CARD_METADATA, LABELS_METADATA, TensorInfo, TfliteModel, embed_metadata, first_non_integer_operator, read_tflite
from toolkit import atomic
from toolkit.errors import ToolkitError, ToolkitWarning
from toolkit.model_card import TensorQuantization, card_path, load_card, save_card
from toolkit.native_logs import quiet_native_logs
from toolkit.preprocessing import prepare_images
from training.data import Dataset, load_dataset, stratified_subset
from training.evaluate import KerasPredictor, load_predictor, predict_with_progress
from training.splits import SPLIT_KEYS, held_out_images

PARITY_NAME = "parity.json"
REPORT_NAME = "report.json"
DEFAULT_CALIBRATION_SAMPLES = 500  # calibration images without --calib-samples (all of them when fewer)
FLOAT_NOTES = {
    "float32": "toolkit convert: float32",
    "float16": "toolkit convert: float16 weights (dequantised to float32 at load on CPUs)",
    "dynamic": "toolkit convert: dynamic range (int8 weights, float activations)",
}


def tflite_name(format_name: str) -> str:
    """File name of one export, e.g. ``model_int8.tflite``."""
    return f"model_{format_name}.tflite"


def gzip_huffman_size(data: bytes) -> int:
    """Size of ``data`` as a gzip stream of Huffman-only deflate (no LZ77 matches).

    Still a standard .gz any ``gunzip`` reads. On int8 kernels with scattered zeros,
    LZ77's short matches of zero runs cost more than they save, so this is smaller
    than ``gzip -9`` and close to the bytes' entropy.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31, 9, zlib.Z_HUFFMAN_ONLY)  # wbits 31: gzip container
    return len(compressor.compress(data) + compressor.flush())


@dataclasses.dataclass
class ConvertResult:
    """Paths and figures of one conversion."""

    models: dict[str, Path]  # format -> .tflite path
    parity_path: Path | None  # parity.json (None when no held-out images)
    parity: dict[str, Any]  # its contents
    report_path: Path  # report.json
    report: dict[str, Any]  # its contents


def calibration_images(
    config: ConvertConfig, source: bridge.SourceModel, training_data: Callable[[], finetune.FineTuneData] | None, at_most: bool,
) -> tuple[np.ndarray, str]:
    """``calib_samples`` normalised float32 images from real training data, and where they came from.

    Without ``calib_samples``, up to DEFAULT_CALIBRATION_SAMPLES. ``at_most``: fewer images than
    asked for are fine (a QAT model, whose ranges the images do not set). ``training_data`` (None
    when the source's data is unknown) loads the source run's split; ``config.calib`` replaces it.
    """
    if config.calib:
        dataset, origin = load_dataset(config.calib), config.calib
    else:
        data = training_data()
        dataset = data.train
        origin = f"training split of {data.settings.data}" + (f" (limit {data.settings.limit})" if data.settings.limit else "")
    wanted = config.calib_samples or DEFAULT_CALIBRATION_SAMPLES
    fewer_allowed = at_most or config.calib_samples is None
    if not len(dataset) or (len(dataset) < wanted and not fewer_allowed):
        raise ToolkitError(
            f"too few calibration images: {origin} has {len(dataset)}, --calib-samples asks for {wanted}; "
            "point --calib at more real training images or lower --calib-samples"
        )
    chosen = stratified_subset(dataset.labels, min(wanted, len(dataset)), config.seed)
    return prepare_images(dataset.images[chosen], source.card), origin


def convert_model(model: Any, format_name: str, calibration: np.ndarray | None = None, io: str = "int8") -> tuple[bytes, TfliteModel]:
    """One format of a tf_keras model, as bytes and parsed.

    float32; float16 (float16 weights); dynamic (int8 weights, float activations); int8: full-integer,
    every op int8 (``TFLITE_BUILTINS_INT8`` only), I/O of type ``io``, checked; ``calibration`` sets
    the activation ranges of a float model (a QAT model carries its own).
    """
    from training.tensorflow_stack import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if format_name != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if format_name == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if format_name == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.as_dtype(io)
    try:
        with warnings.catch_warnings():
            # "Statistics for quantized inputs were expected": harmless, the input range comes
            # from the representative dataset or the QAT model's QuantizeLayer.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            with quiet_native_logs():
                data = converter.convert()
    except Exception as error:  # noqa: BLE001 - the converter raises ConverterError, ValueError, RuntimeError
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        named = [line for line in lines if "op" in line.lower() and ("not" in line.lower() or "unsupported" in line.lower())]
        message = (named or lines or [type(error).__name__])[0]
        what = {"dynamic": "dynamic-range int8", "int8": "full-integer int8"}.get(format_name, format_name)
        raise ToolkitError(f"TFLite conversion to {what} failed: {message[:300]}") from None
    parsed = read_tflite(data)
    problem = first_non_integer_operator(parsed, io) if format_name == "int8" else None
    if problem:
        raise ToolkitError(f"the int8 model is not fully integer: {problem}")
    return data, parsed


def tensor_quantization(tensor: TensorInfo) -> TensorQuantization:
    """How a parsed .tflite input or output tensor stores real numbers (a model card's ``input_quantization``)."""
    dtype = tensor.type.lower()  # INT8 -> int8, FLOAT32 -> float32, ...
    if tensor.scale and dtype in ("int8", "uint8"):
        return TensorQuantization(dtype=dtype, scale=float(tensor.scale[0]), zero_point=int(tensor.zero_point[0] if tensor.zero_point else 0))
    return TensorQuantization(dtype=dtype)


def convert(config: ConvertConfig) -> ConvertResult:
    """Export every requested format, check the int8 one, measure parity (a failure does not raise: see :func:`check_parity`)."""
    from converters.qat import qat_companions

    config.validate()
    started = time.perf_counter()
    source = bridge.load_source(config.model)
    out = Path(config.out)
    previous = _prepare_out(out, config.overwrite)
    try:
        settings = finetune.resolve_data_settings(source, {"data": config.data, "limit": config.limit})
    except ToolkitError:
        if not config.calib:
            raise
        training_data = None
    else:  # calibration and parity share one load; neither needs training's checks of the split
        training_data = functools.cache(lambda: finetune.load_training_data(source, settings, strict=False))
    is_qat = all(path.is_file() for path in qat_companions(source.path))
    # A QAT model carries its own ranges; TensorFlow's converter still asks for a representative
    # dataset (whose values then change nothing), so fewer images than --calib-samples will do.
    calibration, calibration_origin = calibration_images(config, source, training_data, is_qat) if "int8" in config.formats else (None, None)
    # The previous conversion's reports describe models about to be replaced: gone before the first new
    # model is written, so an interrupted --overwrite never leaves a parity.json about other models.
    for name in (PARITY_NAME, REPORT_NAME) if previous else ():
        (out / name).unlink(missing_ok=True)

    models, written, int8_model = _export(config, source, is_qat, calibration, calibration_origin, out)
    edgetpu_report = _edgetpu_report(int8_model, config.edgetpu, out)
    parity, parity_path = _parity(config, source, training_data, models, out)
    report = {
        "stage": "convert",
        "source": str(source.path),
        "source_sha256": source.sha256,
        "quantization_aware": is_qat,
        "config": config.to_dict(),
        "calibration": (
            {"images": int(len(calibration)), "origin": calibration_origin, "sets_ranges": not is_qat} if calibration is not None else None
        ),
        "formats": written,
        "edgetpu": edgetpu_report,
        "parity": str(parity_path) if parity_path else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report_path = atomic.write_json(out / REPORT_NAME, report)
    _remove_stale(previous, models, parity_path, edgetpu_report)
    return ConvertResult(models, parity_path, parity, report_path, report)


def _prepare_out(out: Path, overwrite: bool) -> list[Path]:
    """Create ``out``; returns the files an earlier conversion left there (models, cards, Edge TPU builds, parity),
    refused unless ``overwrite``."""
    patterns = ("model_*.tflite", "model_*.card.json", "model_*_edgetpu.log", PARITY_NAME)
    previous = sorted({path for pattern in patterns for path in out.glob(pattern)})
    names = [path.name for path in previous if path.suffix == ".tflite"] or [path.name for path in previous]
    bridge.prepare_folder(out, overwrite, f"a conversion ({', '.join(names)})" if previous else None)
    return previous


def _export(config: ConvertConfig, source: bridge.SourceModel, is_qat: bool, calibration: np.ndarray | None,
            calibration_origin: str | None, out: Path) -> tuple[dict[str, Path], dict[str, dict[str, Any]], TfliteModel | None]:  # fmt: skip
    """Write each requested format (labels and card embedded unless ``embed_labels`` is off) with its card;
    returns their paths, their sizes, sparsity and operators, and the parsed int8 model."""
    from converters.qat import load_qat_model

    card = source.card
    float_twin = functools.cache(source.twin)  # built only for a format that needs it (not for int8 from a QAT model)
    models = {format_name: out / tflite_name(format_name) for format_name in config.formats}
    written: dict[str, dict[str, Any]] = {}
    int8_model: TfliteModel | None = None
    for format_name, path in models.items():
        if format_name == "int8" and is_qat:
            model, info = load_qat_model(source)
            notes = f"toolkit convert: full-integer from the QAT model ({info['scheme']} scheme), {config.io} I/O"
        else:
            model = float_twin()
            notes = FLOAT_NOTES.get(format_name) or (
                f"toolkit convert: full-integer post-training quantisation, {len(calibration)} calibration images from {calibration_origin}, {config.io} I/O"
            )
        data, tflite = convert_model(model, format_name, calibration, config.io)
        if format_name == "int8":
            int8_model = tflite
        if config.embed_labels:
            card_payload = card.replace(format=f"tflite-{format_name}", sizes={}, metrics={}).to_dict()
            entries = {LABELS_METADATA: "\n".join(card.labels), CARD_METADATA: json.dumps(card_payload, sort_keys=True)}
            data = embed_metadata(data, {name: text.encode("utf-8") for name, text in entries.items()})
        atomic.write_bytes(path, data)
        sparsity = sparsity_of_arrays(tflite.kernels()).to_dict()
        sizes = {"raw": len(data), "gzip": atomic.gzip_size(data), "gzip_huffman_only": gzip_huffman_size(data)}
        tflite_card = card.replace(
            format=f"tflite-{format_name}",
            input_quantization=tensor_quantization(tflite.inputs[0]),
            output_quantization=tensor_quantization(tflite.outputs[0]),
            source_sha256=source.sha256,
            sparsity=sparsity["overall"],
            sizes=sizes,
            history=[*card.history, f"convert:{format_name}"],
            metrics={key: card.metrics[key] for key in SPLIT_KEYS if key in card.metrics},
            notes=notes,
        )
        save_card(tflite_card, path)
        operators = [operator.name for operator in tflite.operators]
        written[format_name] = {"model": str(path), "sizes": sizes, "sparsity": sparsity, "operators": operators}
        print(f"wrote {path} ({sizes['raw'] / 1e6:.3f} MB, gzip {sizes['gzip'] / 1e6:.3f} MB)", file=sys.stderr)
    return models, written, int8_model


def _edgetpu_report(int8_model: TfliteModel | None, compile_it: bool, out: Path) -> dict[str, Any] | None:
    """The Edge TPU operator check of the int8 model and, when asked and installed, its compiled build."""
    if int8_model is None:
        return None
    report = edgetpu.check_operators(int8_model)
    if compile_it and edgetpu.compiler_path() is None:  # the operator check stands without the compiler
        warnings.warn(edgetpu.INSTALL_HINT, ToolkitWarning, stacklevel=3)
        report["compiled"] = None
    elif compile_it:
        report["compiled"] = str(edgetpu.compile_for_edgetpu(out / tflite_name("int8"), out))
    return report


def _remove_stale(previous: list[Path], models: dict[str, Path], parity_path: Path | None, edgetpu_report: dict[str, Any] | None) -> None:
    """With the new conversion saved, remove the old one's other files: the folder then describes one conversion."""
    kept = {*models.values(), *(card_path(path) for path in models.values()), parity_path}
    compiled = (edgetpu_report or {}).get("compiled")
    if compiled:
        kept |= {Path(compiled), Path(compiled).with_suffix(".log")}
    for stale in set(previous) - kept:
        stale.unlink(missing_ok=True)


def check_parity(result: ConvertResult, max_drop: float) -> None:
    """Raise (exit code 3) when a converted model's top-1 is more than ``max_drop`` points below the float one."""
    parity = result.parity
    formats = parity.get("formats", {})
    worst = max(formats, key=lambda name: formats[name]["gap_points"], default=None)
    if worst is None or formats[worst]["gap_points"] <= max_drop:
        return
    entry = formats[worst]
    raise ToolkitError(
        f"{tflite_name(worst)} top-1 {entry['top1']:.4f} is {entry['gap_points']:.2f} points below the float model's "
        f"{parity['reference_top1']:.4f} on {parity['images']} held-out images (--max-drop {max_drop}); "
        f"the models are kept, see {result.parity_path}",
        exit_code=3,
    )


def _parity(
    config: ConvertConfig, source: bridge.SourceModel, training_data: Callable[[], finetune.FineTuneData] | None,
    models: dict[str, Path], out: Path,
) -> tuple[dict[str, Any], Path | None]:
    """Evaluate the float model and each .tflite on the same held-out images; write parity.json and card metrics."""
    if training_data is None:
        warnings.warn("no held-out images (pass --data): parity was not measured", ToolkitWarning, stacklevel=2)
        return {}, None
    data = training_data()
    held_out, origin = held_out_images(data.settings, config.parity_samples, fit_to=source.card, validation=data.validation)
    reference = KerasPredictor(source.model, source.card).predict(held_out.images)
    reference_top1 = top1(reference, held_out.labels)
    formats: dict[str, Any] = {}
    for format_name, path in models.items():
        metrics = parity_of(path, held_out, reference, config.progress)
        formats[format_name] = {**metrics, "model": str(path), "passed": metrics["gap_points"] <= config.max_drop}
        card = load_card(path)
        figures = {key: metrics[key] for key in ("top1", "reference_top1", "gap_points", "agreement")}
        save_card(card.replace(metrics={**card.metrics, **figures, "held_out_images": metrics["images"]}), path)
    headline = formats.get("int8") or next(iter(formats.values()), {})
    headline_keys = ("gap_points", "agreement", "mean_probability_difference", "max_probability_difference")
    parity = {
        "reference_model": str(source.path),
        "reference_top1": reference_top1,
        "images": int(len(held_out)),
        "held_out": origin,
        "data": data.settings.data,
        "max_drop_points": config.max_drop,
        "definitions": DEFINITIONS,
        "formats": formats,
        # The int8 model's figures (else the first format's) at the top level.
        "float_top1": reference_top1,
        "int8_top1": formats["int8"]["top1"] if "int8" in formats else None,
        **{key: headline.get(key) for key in headline_keys},
        "passed": all(entry["passed"] for entry in formats.values()),
    }
    return parity, atomic.write_json(out / PARITY_NAME, parity)


def parity_of(model_path: Path, held_out: Dataset, reference: np.ndarray, progress: bool | None) -> dict[str, Any]:
    """:func:`converters.parity.parity_metrics` of the model at ``model_path`` against the ``reference`` probabilities,
    on the ``held_out`` images (``progress``: a bar, None: only on a terminal)."""
    probabilities = predict_with_progress(load_predictor(model_path), held_out.images, f"parity {model_path.name}", progress=progress)
    return parity_metrics(held_out.labels, reference, probabilities)


def finished_report(config: ConvertConfig) -> dict[str, Any] | None:
    """The report.json in ``config.out`` when it records this ``config`` (where the model lies and how it reports aside),
    ``config.model`` as that file is now (the same SHA-256) and the models of ``config.formats`` are there; None while
    it is still to convert."""
    out = Path(config.out)
    report = atomic.read_json_object(out / REPORT_NAME)
    same_settings = atomic.settings_digest(report.get("config", {})) == atomic.settings_digest(config.to_dict())
    if not report or not same_settings or not Path(config.model).is_file():
        return None
    same_model = report.get("source_sha256") == atomic.file_digest(config.model)
    return report if same_model and all((out / tflite_name(format_name)).exists() for format_name in config.formats) else None
