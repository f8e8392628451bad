"""`toolkit benchmark`: size, accuracy, latency and memory of every format of a model, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from toolkit.errors import ToolkitError


def _thread_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads takes comma-separated integers such as 1,2,4, got {text!r}")
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--threads needs thread counts of at least 1, got {text!r}")
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `toolkit benchmark`."""
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        action="append",
        help="a pipeline folder (pipeline.json), a convert folder, a run folder or one .keras/.tflite model; "
        "repeat to combine sources (the first one holding a format wins)",
    )
    parser.add_argument(
        "--data",
        help="held-out images (folder, cifar10 or fashion-mnist) when the model card records no validation split; "
        "also the calibration images for int8 models the benchmark converts",
    )
    parser.add_argument("--limit", type=int, default=1000, help="at most this many held-out images for accuracy")
    parser.add_argument("--threads", type=_thread_counts, default=(1, 2, 4), help="CPU thread counts, comma-separated")
    parser.add_argument("--runs", type=int, default=50, help="at least this many timed runs per thread count")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="and time for at least this long")
    parser.add_argument("--warmup-seconds", type=float, default=0.5, help="untimed warm-up before timing")
    parser.add_argument(
        "--no-convert",
        action="store_true",
        help="do not convert the formats a folder lacks (float32, float16, dynamic, int8 PTQ) from its float model",
    )
    parser.add_argument(
        "--calib-samples", type=int, default=500, help="calibration images for an int8 model the benchmark converts"
    )
    parser.add_argument("--out", type=Path, help="where benchmark.json and benchmark.md go (default: MODEL/benchmark)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Benchmark, print the table and write the reports."""
    from toolkit.benchmark.report import format_notes, format_table
    from toolkit.benchmark.run import BenchmarkConfig, run_benchmark
    from toolkit.benchmark.worker import TimingConfig

    if args.limit is not None and args.limit < 1:
        raise ToolkitError(f"--limit must be at least 1, got {args.limit}")
    if args.runs < 1:
        raise ToolkitError(f"--runs must be at least 1, got {args.runs}")
    sources: list[Path] = args.model
    first = sources[0]
    out_dir = args.out or ((first if first.is_dir() else first.parent) / "benchmark")
    config = BenchmarkConfig(
        threads=args.threads,
        limit=args.limit,
        produce_missing=not args.no_convert,
        calibration_samples=args.calib_samples,
        timing=TimingConfig(runs=args.runs, min_seconds=args.min_seconds, warmup_seconds=args.warmup_seconds),
    )
    report = run_benchmark(sources, out_dir, config, data=args.data, progress=not args.no_progress)
    print(format_table(report))
    print()
    print(format_notes(report))
    print(f"\nwrote {out_dir / 'benchmark.json'} and {out_dir / 'benchmark.md'}")
    return 1 if any("error" in row for row in report["formats"]) else 0
