"""`toolkit benchmark`: size, accuracy, latency and memory of every format of a model, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from toolkit.errors import check
from toolkit.flags import Flag, add_dataclass_arguments, config_from_arguments


def _thread_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads takes comma-separated integers such as 1,2,4, got {text!r}")
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--threads needs thread counts of at least 1, got {text!r}")
    return counts


FLAGS = {
    "limit": Flag(default=1000),
    "threads": Flag(type=_thread_counts),
    "produce_missing": Flag(
        spelling="--no-convert",
        help="do not convert the formats a folder lacks (float32, float16, dynamic, int8 PTQ) from its float model",
    ),
    "calibration_samples": Flag(spelling="--calib-samples", metavar="CALIB_SAMPLES"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `toolkit benchmark`: the sources, then one per BenchmarkConfig and TimingConfig field it sets."""
    from toolkit.benchmark.run import BenchmarkConfig
    from toolkit.benchmark.worker import TimingConfig

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
    add_dataclass_arguments(parser, BenchmarkConfig, FLAGS, fields=("limit", "threads"))
    add_dataclass_arguments(parser, TimingConfig, fields=("runs", "min_seconds", "warmup_seconds"))
    add_dataclass_arguments(parser, BenchmarkConfig, FLAGS, fields=("produce_missing", "calibration_samples"))
    parser.add_argument("--out", type=Path, help="where benchmark.json and benchmark.md go (default: MODEL/benchmark)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Benchmark, print the table and write the reports."""
    from toolkit.benchmark.report import format_notes, format_table
    from toolkit.benchmark.run import BenchmarkConfig, run_benchmark
    from toolkit.benchmark.worker import TimingConfig

    check(
        (args.limit is None or args.limit >= 1, f"--limit must be at least 1, got {args.limit}"),
        (args.runs >= 1, f"--runs must be at least 1, got {args.runs}"),
    )
    first = args.model[0]
    out_dir = args.out or ((first if first.is_dir() else first.parent) / "benchmark")
    config = config_from_arguments(BenchmarkConfig, args, timing=config_from_arguments(TimingConfig, args))
    report = run_benchmark(args.model, out_dir, config, data=args.data, progress=not args.no_progress)
    print(f"{format_table(report)}\n\n{format_notes(report)}")
    print(f"\nwrote {out_dir / 'benchmark.json'} and {out_dir / 'benchmark.md'}")
    return 1 if any("error" in row for row in report["formats"]) else 0
