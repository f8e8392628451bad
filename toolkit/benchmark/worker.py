"""Measure one model in a process of its own: accuracy, latency per image, throughput, peak memory.

``toolkit benchmark`` starts ``python -m toolkit.benchmark.worker`` once per model and thread count
(docs/benchmark.md). Latency follows TFLite's ``benchmark_model``: warm-up excluded, one image at batch 1.
Order matters for the memory figure: the model is loaded and timed on a few images and the peak read
before the held-out images are prepared for accuracy, so the peak is the model's, not the test set's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from toolkit import atomic
from toolkit.errors import first_line
from toolkit.flags import add_dataclass_arguments, config_from_arguments
from toolkit.preprocessing import Predictor


TIMED_IMAGES = 16  # latency cycles over this many images (a few, so that memory is the model's)


@dataclasses.dataclass
class TimingConfig:
    """How long to warm up and how many runs to time (defaults of TFLite's benchmark_model)."""

    runs: int = 50  # at least this many timed runs per thread count
    min_seconds: float = 1.0  # and time for at least this long
    max_seconds: float = 20.0  # but stop after this long (or min_seconds, if longer) even if fewer runs were done
    warmup_runs: int = 1  # at least this many untimed runs first
    warmup_seconds: float = 0.5  # and warm up (untimed) for at least this long


def file_sizes(path: Path) -> dict[str, int]:
    """Raw and gzip (level 9) size in bytes; gzip shows what sparsity saves in a download."""
    return {"bytes": path.stat().st_size, "gzip_bytes": atomic.gzip_size(path)}


def peak_memory_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status. Not ``ru_maxrss``: Linux carries the
    high-water mark of the forked parent across ``execve`` into it, so every worker
    would report at least the (TensorFlow-laden) parent's size.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def time_runs(run_once: Callable[[int], Any], timing: TimingConfig) -> np.ndarray:
    """Per-run latencies in milliseconds of ``run_once(i)``, warm-up excluded."""
    started = time.perf_counter()
    index = 0
    while index < timing.warmup_runs or time.perf_counter() - started < timing.warmup_seconds:
        run_once(index)
        index += 1
    latencies: list[float] = []
    started = time.perf_counter()
    while len(latencies) < timing.runs or time.perf_counter() - started < timing.min_seconds:
        before = time.perf_counter()
        run_once(index)
        latencies.append((time.perf_counter() - before) * 1000.0)
        index += 1
        if time.perf_counter() - started > max(timing.max_seconds, timing.min_seconds) and len(latencies) >= 2:
            break
    return np.asarray(latencies)


def latency_summary(latencies_ms: np.ndarray) -> dict[str, float]:
    """p50, p95, mean latency and the batch-1 throughput they imply."""
    return {
        "runs": int(latencies_ms.size),
        "p50_ms": float(np.percentile(latencies_ms, 50)),
        "p95_ms": float(np.percentile(latencies_ms, 95)),
        "mean_ms": float(latencies_ms.mean()),
        "throughput_ips": float(1000.0 / latencies_ms.mean()),
    }


def predictor_and_runtime(model_path: Path, threads: int, edgetpu: bool) -> tuple[Predictor, str]:
    """The model behind the predictor interface, and the runtime it runs on."""
    if model_path.suffix == ".keras":
        from training.backend import backend_name, keras
        from training.evaluate import load_predictor

        return load_predictor(model_path), f"keras {keras.__version__} ({backend_name()})"
    from edge_app.runtime import TFLitePredictor, runtime_module

    return TFLitePredictor(model_path, threads=threads, edgetpu=edgetpu), runtime_module()[0]


def deployable_sizes(model: Any) -> dict[str, int]:
    """Raw and gzip -9 bytes of a Keras model saved without optimizer state.

    A run's ``best.keras`` also holds the optimizer's momentum, as large as the weights; the model, loaded
    with ``compile=False``, has no optimizer, so saving it again keeps only what inference needs.
    """
    with tempfile.TemporaryDirectory(prefix="benchmark-keras-") as scratch:
        path = Path(scratch) / "model.keras"
        model.save(path)
        return file_sizes(path)


def measure(
    model_path: Path,
    images: np.ndarray,
    labels: np.ndarray | None,
    threads: int,
    timing: TimingConfig,
    edgetpu: bool = False,
) -> dict[str, Any]:
    """Accuracy (when ``labels`` are given), latency and peak memory of one model at ``threads`` threads."""
    baseline = peak_memory_mb()
    load_started = time.perf_counter()
    predictor, runtime = predictor_and_runtime(model_path, threads, edgetpu)
    result: dict[str, Any] = {
        "model": str(model_path),
        "runtime": runtime,
        "threads": threads,
        "edgetpu": edgetpu,
        "load_seconds": time.perf_counter() - load_started,
    }
    timed = predictor.prepare(np.array(images[:TIMED_IMAGES]))
    result["latency"] = latency_summary(time_runs(lambda index: predictor.run(timed[index % len(timed)][None]), timing))
    result["memory"] = {"before_load_mb": baseline, "peak_rss_mb": peak_memory_mb()}  # before the test set is read
    if labels is not None:
        predictions = predictor.predict(np.asarray(images), batch_size=100).argmax(axis=-1)
        result["accuracy"] = {
            "top1": float(np.mean(predictions == labels)),
            "images": int(labels.size),
            "predictions": predictions.astype(int).tolist(),
        }
        if model_path.suffix == ".keras":
            result["deployable_size"] = deployable_sizes(predictor.model)
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line of the worker (used by ``toolkit.benchmark.run``, not by people)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True, help=".npy of uint8 RGB images")
    parser.add_argument("--labels", type=Path, help=".npy of int labels; measures accuracy when given")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--edgetpu", action="store_true")
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON result")
    add_dataclass_arguments(parser, TimingConfig)
    args = parser.parse_args(argv)
    timing = config_from_arguments(TimingConfig, args)
    images = np.load(args.images, mmap_mode="r")  # read as needed: the test set must not count in the peak
    labels = np.load(args.labels) if args.labels else None
    try:
        result = measure(args.model, images, labels, args.threads, timing, args.edgetpu)
    except Exception as error:  # noqa: BLE001 - the parent turns this into the row's reason
        result = {"model": str(args.model), "error": f"{type(error).__name__}: {first_line(error)}"}
    args.result.write_text(json.dumps(result))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
