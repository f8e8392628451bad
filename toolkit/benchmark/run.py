"""The benchmark stage: every format of one model side by side (size, accuracy, latency, memory).

    report = run_benchmark(Path("runs/pipeline"), Path("runs/pipeline/benchmark"), BenchmarkConfig())

The source is a pipeline, convert or run folder, or one model file; the cheap formats it lacks are converted
first, and each model is measured by ``toolkit.benchmark.worker`` in a fresh process per thread count (docs/benchmark.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.runtime import delegate_namespace, edgetpu_build, is_edgetpu_build, load_edgetpu_delegate, runtime_module
from toolkit.benchmark.report import write_reports
from toolkit.benchmark.worker import TimingConfig, file_sizes
from toolkit.errors import ToolkitError
from toolkit.model_card import ModelCard, card_path, check_card_matches, load_card
from toolkit.pipeline import MANIFEST_NAME

# Format key -> human name, in the order of the table.
FORMATS: dict[str, str] = {
    "keras-float": "Keras float32 (.keras)",
    "tflite-float32": "TFLite float32",
    "tflite-float16": "TFLite float16",
    "tflite-dynamic": "TFLite dynamic range",
    "tflite-int8-ptq": "TFLite int8 post-training",
    "tflite-int8-qat": "TFLite int8 QAT",
    "tflite-int8-pruned-qat": "TFLite int8 pruned + QAT",
}

# The benchmark measures accuracy itself; the converter's own parity check needs only a few images.
PRODUCED_PARITY_SAMPLES = 100
HELD_OUT_SEED = 0  # seed of the class-balanced --limit subset of --data (a recorded split uses its own, as parity does)

# Formats made from the float Keras model when the source lacks them -> the converter's name of each.
CONVERTER_FLAGS = {
    "tflite-float32": "float32",
    "tflite-float16": "float16",
    "tflite-dynamic": "dynamic",
    "tflite-int8-ptq": "int8",
}


@dataclasses.dataclass
class BenchmarkConfig:
    """What to measure and how hard."""

    threads: tuple[int, ...] = (1, 2, 4)  # CPU thread counts to time every model at, comma-separated
    limit: int | None = None  # at most this many held-out images for accuracy (seeded, class-balanced)
    produce_missing: bool = True  # convert float32/float16/dynamic/int8-PTQ from the float model when absent
    calibration_samples: int = 500  # calibration images for an int8 model the benchmark converts
    timing: TimingConfig = dataclasses.field(default_factory=TimingConfig)  # warm-up and timed runs


@dataclasses.dataclass
class HeldOut:
    """The images accuracy is measured on, and where they came from."""

    images: np.ndarray  # uint8 RGB, N x H x W x C
    labels: np.ndarray  # the model's class ids
    description: str  # e.g. "validation split (10 %, seed 0) of ../train"
    data: str  # the images they were drawn from: the card's training data, else --data


def row_format(model_path: Path, card: ModelCard | None) -> tuple[str | None, str]:
    """The format key of one model file whose card is ``card`` (its name where the card is silent),
    or None and why it is no row."""
    if is_edgetpu_build(model_path):  # before the card: a build reads its source model's card, it has none of its own
        return None, "it is an Edge TPU build: its int8 row's Edge TPU column measures it"
    if card is None:
        return None, f"it has no model card ({card_path(model_path).name}) beside it"
    name = model_path.name.lower()
    history = [str(stage).lower() for stage in card.history]
    declared = card.format.lower()
    was_qat = any(stage.startswith("qat") for stage in history) or "qat" in name
    was_pruned = any(stage.startswith("prune") for stage in history) or "prune" in name
    derived = "it is a float export of a pruned or QAT model: the float rows are the dense float model's (give its pipeline folder)"
    if model_path.suffix == ".keras":
        if was_qat or was_pruned:
            return None, "it is a pruned or QAT Keras model: the Keras row is the dense float model (give its pipeline or run folder)"
        return "keras-float", ""
    if model_path.suffix != ".tflite":
        return None, "it is not a .keras or .tflite model"
    for kind in ("float32", "float16", "dynamic"):
        if declared == f"tflite-{kind}" or (not declared and kind in name):
            return (None, derived) if was_qat or was_pruned else (f"tflite-{kind}", "")
    if "int8" in declared or "int8" in name or "uint8" in declared:
        if was_qat:
            return "tflite-int8-pruned-qat" if was_pruned else "tflite-int8-qat", ""
        if was_pruned:
            return None, "it is an int8 model of a pruned model without QAT, not one of the table's rows"
        return "tflite-int8-ptq", ""
    return None, f"its card's format {card.format!r} is none of the table's"


def _paths_in(payload: Any) -> list[str]:
    """Every string in a JSON document that names a .keras or .tflite file."""
    if isinstance(payload, dict):
        payload = list(payload.values())
    if isinstance(payload, list):
        return [path for value in payload for path in _paths_in(value)]
    if isinstance(payload, str) and payload.endswith((".keras", ".tflite")):
        return [payload]
    return []


def discover_models(source: Path) -> dict[str, Path]:
    """Format key -> model file, for a pipeline folder, convert folder, run folder or single model."""
    if not source.exists():
        raise ToolkitError(f"--model {source} does not exist (give a pipeline, convert or run folder, or a model file)")
    found: dict[str, Path] = {}
    passed_over: list[tuple[Path, ModelCard | None, str]] = []
    for path in [source] if source.is_file() else _candidates(source):
        card = load_card(path) if path.is_file() and card_path(path).exists() else None
        key, reason = row_format(path, card)
        if key is None:
            passed_over.append((path, card, reason))
        elif key not in found:
            check_card_matches(path, card)
            found[key] = path
    if found:
        return found
    if source.is_file():
        raise ToolkitError(f"{source} is not a row of the benchmark: {passed_over[0][2]}")
    for path, card, reason in passed_over:
        if card is not None:
            raise ToolkitError(f"{source} holds no model that is a row of the benchmark: {path.name}: {reason}")
    raise ToolkitError(f"{source} holds no .keras or .tflite model with a model card beside it")


def _candidates(folder: Path) -> list[Path]:
    """The models ``folder``'s pipeline.json names, then every .tflite and .keras up to two levels down."""
    candidates: list[Path] = []
    manifest = folder / MANIFEST_NAME
    if manifest.is_file():
        try:
            payload = json.loads(manifest.read_text())
        except json.JSONDecodeError as error:
            raise ToolkitError(f"{manifest} is not valid JSON: {error}") from None
        candidates += [folder / entry for entry in _paths_in(payload)]  # an absolute entry stays as it is
    # Convert and run folders (and anything pipeline.json leaves out).
    candidates += sorted(folder.glob("*.tflite")) + sorted(folder.glob("*/*.tflite"))
    # A run folder keeps best.keras and last.keras; the best one is the model of record.
    keras = sorted(folder.glob("*.keras")) + sorted(folder.glob("*/*.keras"))
    return candidates + sorted(keras, key=lambda path: (path.name != "best.keras", path.name == "last.keras", str(path)))


def _recorded_data(card: ModelCard) -> str | None:
    """The training data a card's validation split was carved from, when it is reachable here."""
    recorded = {**card.architecture, **card.metrics}
    if not card.dataset or not ("validation_images" in recorded or "validation_fraction" in recorded):
        return None
    from training.data import named_dataset

    named = named_dataset(card.dataset.split(":")[0]) is not None  # the card's source may add " (folder)"
    return card.dataset if named or Path(card.dataset).exists() else None


def held_out_data(models: dict[str, Path], data: str | None, limit: int | None) -> HeldOut:
    """The validation split a model card records (topped up to ``limit`` as parity's is), else ``data``, labelled in the model's ids."""
    from training.data import load_dataset
    from training.evaluate import label_mapping
    from training.splits import SplitSettings, held_out_images

    cards = [load_card(path) for path in models.values()]
    recorded = next(((card, spec) for card in cards if (spec := _recorded_data(card)) is not None), None)
    if recorded is not None:
        settings = SplitSettings.from_card(*recorded)
        dataset, origin = held_out_images(settings, limit, progress=False)
        description = (
            f"validation split ({settings.validation_fraction:.0%}, seed {settings.seed}) of {settings.data} as recorded in the model card"
        )
        if origin["outside_training_subset"]:
            description += f", topped up with {origin['outside_training_subset']} images outside the {settings.limit}-image training subset"
    elif data is None:
        raise ToolkitError("the model cards record no validation split reachable here: pass --data with held-out images")
    else:
        dataset = load_dataset(data, limit=limit, seed=HELD_OUT_SEED)
        description = f"{data}" + (f" (class-balanced subset of {limit})" if limit is not None else "")
    mapping = label_mapping(dataset.class_names, cards[0].labels)
    return HeldOut(dataset.images, mapping[dataset.labels], description, recorded[1] if recorded else data)


def produce_missing_formats(models: dict[str, Path], out_dir: Path, calibration_data: str, config: BenchmarkConfig) -> dict[str, Path]:
    """The cheap formats the source lacks, converted from its float Keras model (calibrated on its run's data, else ``calibration_data``)."""
    missing = [key for key in CONVERTER_FLAGS if key not in models]
    if not config.produce_missing or "keras-float" not in models or not missing:
        return {}
    from converters.convert import ConvertConfig, convert  # workstation only: imports TensorFlow

    convert_config = ConvertConfig(
        model=str(models["keras-float"]),
        out=str(out_dir / "converted"),
        formats=tuple(CONVERTER_FLAGS[key] for key in missing),
        calib_samples=config.calibration_samples,
        parity_samples=PRODUCED_PARITY_SAMPLES,
        progress=False,
        overwrite=True,  # the benchmark's own folder, remade on every run
    )
    try:
        converted = convert(convert_config).models
    except ToolkitError:
        converted = convert(dataclasses.replace(convert_config, calib=calibration_data, data=calibration_data)).models
    return {key: Path(converted[flag]) for key, flag in CONVERTER_FLAGS.items() if flag in converted}


def edgetpu_delegate_status() -> tuple[bool, str]:
    """Whether the Edge TPU delegate loads here, and if not, why (one line).

    Tried in a child process: a failed ``load_delegate`` leaves a half-built delegate
    whose destructor complains on stderr, and a loaded one holds the device.
    """
    completed, last_line = _run_child(["-c", "import json, toolkit.benchmark.run as b; print(json.dumps(b._try_edgetpu_delegate()))"], 1)
    try:
        loads, reason = json.loads(completed.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return False, f"the Edge TPU check failed: {last_line}"
    return bool(loads), str(reason)


def _try_edgetpu_delegate() -> tuple[bool, str]:
    try:
        load_edgetpu_delegate(delegate_namespace(*runtime_module()))
        return True, "Edge TPU delegate loaded"
    except ToolkitError as error:
        return False, str(error)


def _run_child(arguments: list[str], threads: int) -> tuple[subprocess.CompletedProcess, str]:
    """Run this Python on ``arguments`` as a measuring process; returns it and the last line of its stderr."""
    environment = dict(os.environ)
    # TensorFlow reads these at start-up; LiteRT takes the thread count as an argument.
    environment.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS=str(threads))
    # A worker may load TensorFlow (edge_app.runtime's last resort) without importing `training`
    # or `converters`, the packages that set these two on import.
    environment.setdefault("TF_USE_LEGACY_KERAS", "1")
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    repository_root = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [repository_root, environment.get("PYTHONPATH")]))
    completed = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=environment)
    return completed, (completed.stderr.strip().splitlines() or ["no output"])[-1]


def _run_worker(
    model: Path, images_file: Path, threads: int, timing: TimingConfig, labels_file: Path | None = None, edgetpu: bool = False
) -> dict[str, Any]:
    """Measure one model at one thread count in a fresh Python process (and its accuracy, given ``labels_file``); returns the worker's JSON."""
    with tempfile.TemporaryDirectory(prefix="benchmark-") as scratch:
        result_file = Path(scratch) / "result.json"
        command = [
            "-m", "toolkit.benchmark.worker",
            "--model", str(model), "--images", str(images_file), "--threads", str(threads),
            "--result", str(result_file),
        ]  # fmt: skip
        if labels_file is not None:
            command += ["--labels", str(labels_file)]
        if edgetpu:
            command.append("--edgetpu")
        for name, value in dataclasses.asdict(timing).items():
            command += [f"--{name.replace('_', '-')}", str(value)]
        completed, last_line = _run_child(command, threads)
        if result_file.exists():
            return json.loads(result_file.read_text())
        return {"model": str(model), "error": f"worker exited with {completed.returncode}: {last_line}"}


def load_average() -> float | None:
    """The 1-minute load average, to two decimals (None where the system has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine_description() -> dict[str, Any]:
    """The machine and software the figures were measured on."""
    names = []
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.lower().startswith("model name")]
    processor = next(iter(names), platform.processor() or platform.machine())
    versions = {}
    for package in ("ai-edge-litert", "tflite-runtime", "tensorflow", "keras", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "architecture": platform.machine(),
        "processor": processor,
        "cpu_count": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "load_average_1min": load_average(),
    }


def run_benchmark(
    source: Path | list[Path],
    out_dir: Path,
    config: BenchmarkConfig,
    data: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark every format in (or cheaply made from) the folders or files ``source``, the first holding a format winning."""
    sources = [Path(path) for path in source] if isinstance(source, (list, tuple)) else [Path(source)]
    found: dict[str, Path] = {}
    for path in sources:
        found = discover_models(path) | found  # the first source holding a format wins
    models = {key: found[key] for key in FORMATS if key in found}
    held_out = held_out_data(models, data, config.limit)
    produced = produce_missing_formats(models, out_dir, data or held_out.data, config)
    models = {key: (models.get(key) or produced[key]) for key in FORMATS if key in models or key in produced}
    delegate_loads, delegate_reason = edgetpu_delegate_status()
    load_at_start = load_average()

    rows: list[dict[str, Any]] = []
    bar = _progress(len(models) * len(config.threads), progress)
    with tempfile.TemporaryDirectory(prefix="benchmark-data-") as scratch:
        images_file, labels_file = Path(scratch) / "images.npy", Path(scratch) / "labels.npy"
        np.save(images_file, held_out.images)
        np.save(labels_file, held_out.labels)
        reference: np.ndarray | None = None  # the float model's predictions, once measured
        for key, path in models.items():
            row, predictions = _measure_format(key, path, key in produced, (images_file, labels_file), config, bar)
            if reference is None and key in ("keras-float", "tflite-float32"):
                reference = predictions
            if reference is not None and predictions is not None:
                row["accuracy"]["agreement_with_float"] = float(np.mean(predictions == reference))
            row["edgetpu"] = _edgetpu_cell(key, path, delegate_loads, delegate_reason, images_file, config)
            rows.append(row)
    bar.close()

    report = {
        "source": ", ".join(str(path) for path in sources),
        "held_out": held_out.description,
        "held_out_images": int(held_out.labels.size),
        "threads": list(config.threads),
        "timing": dataclasses.asdict(config.timing),
        "edgetpu_delegate": {"loads": delegate_loads, "detail": delegate_reason},
        "machine": {**machine_description(), "load_average_1min_at_start": load_at_start},
        "formats": rows,
        "missing_formats": [FORMATS[key] for key in FORMATS if key not in models],
    }
    write_reports(report, out_dir)
    return report


def _measure_format(key: str, path: Path, produced_here: bool, data_files: tuple[Path, Path], config: BenchmarkConfig,
                    bar: Any) -> tuple[dict[str, Any], np.ndarray | None]:  # fmt: skip
    """One row (size; latency per thread count, accuracy at the first) and each held-out image's predicted class, if measured."""
    row: dict[str, Any] = {"format": key, "name": FORMATS[key], "model": str(path), "produced_here": produced_here,
                           "size": file_sizes(path), "latency": {}}  # fmt: skip
    peaks: list[float] = []
    predictions = None
    for index, threads in enumerate(config.threads):
        bar.set_description(f"{key} @ {threads} thread(s)")
        result = _run_worker(path, data_files[0], threads, config.timing, labels_file=data_files[1] if index == 0 else None)
        bar.update(1)
        if "error" in result:
            row["error"] = result["error"]
            break
        row["runtime"] = result["runtime"]
        row["tensorflow_imported"] = result["tensorflow_imported"]
        row["latency"][str(threads)] = result["latency"]
        peaks.append(result["memory"]["peak_rss_mb"])
        if "deployable_size" in result:  # a Keras checkpoint: sized without its optimizer state
            row["checkpoint_size"], row["size"] = row["size"], result["deployable_size"]
        if "accuracy" in result:
            predictions = np.asarray(result["accuracy"].pop("predictions"))
            row["accuracy"] = result["accuracy"]
    if peaks:
        row["memory"] = {"peak_rss_mb": max(peaks)}
    return row, predictions


def _edgetpu_cell(
    key: str, path: Path, delegate_loads: bool, delegate_reason: str, images_file: Path, config: BenchmarkConfig
) -> dict[str, Any]:
    """The Edge TPU column of one row: a latency where it runs, else the reason it does not."""
    if "int8" not in key:
        return {"runs": False, "reason": "the Edge TPU runs only full-integer (int8) models"}
    if not delegate_loads:
        return {"runs": False, "reason": delegate_reason}
    compiled = edgetpu_build(path)
    if not compiled.is_file():
        return {"runs": False, "reason": f"no {compiled.name}: compile it with `toolkit convert --int8 --edgetpu`"}
    result = _run_worker(compiled, images_file, 1, config.timing, edgetpu=True)
    if "error" in result:
        return {"runs": False, "reason": result["error"]}
    return {"runs": True, "model": str(compiled), "latency": result["latency"]}


def _progress(total: int, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # an edge install benchmarking its .tflite models: a bar that shows nothing
        return types.SimpleNamespace(set_description=lambda text: None, update=lambda count: None, close=lambda: None)
    return tqdm(total=total, unit="run", file=sys.stderr, leave=False, disable=not enabled)
