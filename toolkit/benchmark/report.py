"""The benchmark's report: a Markdown table of every format, the notes under it, and the files.

    print(format_table(report))
    write_reports(report, out_dir)   # benchmark.json and benchmark.md

``report`` is the dict :func:`toolkit.benchmark.run.run_benchmark` returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit import atomic


def _kib(count: int) -> str:
    return f"{count / 1024:,.0f}"


def _p50_p95(latency: dict[str, float]) -> str:
    return f"{latency['p50_ms']:.2f} / {latency['p95_ms']:.2f}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table (also readable as plain text)."""
    threads = [str(count) for count in report["threads"]]
    header = ["Format", "Size KiB", "gzip KiB", "Top-1 %", "Agree %"]
    header += [f"{count} thr p50 / p95 ms (img/s)" for count in threads]
    header += ["Peak MiB", "Edge TPU"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in report["formats"]:
        accuracy, latencies, edgetpu = row.get("accuracy", {}), row["latency"], row["edgetpu"]
        cells = [row["name"] + (" *" if row.get("produced_here") else ""), _kib(row["size"]["bytes"]), _kib(row["size"]["gzip_bytes"])]
        cells += [f"{100 * accuracy[key]:.2f}" if key in accuracy else "-" for key in ("top1", "agreement_with_float")]
        for count in threads:
            latency = latencies.get(count)
            cells.append(f"{_p50_p95(latency)} ({latency['throughput_ips']:,.0f})" if latency else "error")
        cells.append(f"{row['memory']['peak_rss_mb']:.0f}" if "memory" in row else "-")
        if edgetpu["runs"]:
            cells.append(f"{_p50_p95(edgetpu['latency'])} ms")
        else:
            cells.append("not int8" if "int8" not in row["format"] else "no: see note")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_notes(report: dict[str, Any]) -> str:
    """What the table measured, and why some cells are empty."""
    machine = report["machine"]
    timing = report["timing"]
    notes = [
        f"Machine: {machine['processor']} ({machine['architecture']}, {machine['cpu_count']} CPUs), "
        f"{machine['system']}, Python {machine['python']}; "
        + ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
        + f". Load average (1 min) {machine.get('load_average_1min_at_start')} at the start and "
        f"{machine.get('load_average_1min')} at the end: latency is only comparable between runs on a quiet machine.",
        f"Accuracy: {report['held_out']} ({report['held_out_images']} images). "
        "Agree % = share of images where the format predicts the same class as the float model.",
        "Latency: one image at batch 1 (TFLite: set input, invoke, read output; Keras: predict_on_batch; "
        "preprocessing not timed), "
        f"after {timing['warmup_runs']}+ warm-up runs / {timing['warmup_seconds']} s excluded, "
        f"then at least {timing['runs']} runs and {timing['min_seconds']} s per thread count "
        f"(fewer runs when they would take more than {max(timing['max_seconds'], timing['min_seconds']):g} s). "
        "img/s = batch-1 throughput = 1000 / mean ms.",
        "Peak MiB: peak resident memory (VmHWM) of a fresh process that loads the runtime and the model "
        "and runs it, one process per format and thread count, read before the held-out images are loaded "
        "for accuracy; the highest is shown.",
    ]
    notes += [
        f"{row['name']}: size of the model saved without optimizer state; the checkpoint {Path(row['model']).name} "
        f"is {_kib(row['checkpoint_size']['bytes'])} KiB with the optimizer's momentum."
        for row in report["formats"] if "checkpoint_size" in row
    ]
    if any(row.get("produced_here") for row in report["formats"]):
        notes.append("* converted from the dense float Keras model by the benchmark: the source held no such export of it (float exports of a pruned or QAT model, as a pipeline's convert/ folder holds, are not these rows).")
    notes += [f"{row['name']}: failed: {row['error']}" for row in report["formats"] if "error" in row]
    int8_rows = [row for row in report["formats"] if "int8" in row["format"] and not row["edgetpu"]["runs"]]
    reasons = {row["edgetpu"]["reason"] for row in int8_rows}
    if len(reasons) == 1 and len(int8_rows) > 1:
        notes.append(f"Edge TPU, every int8 row: {reasons.pop()}")
    else:
        notes += [f"Edge TPU, {row['name']}: {row['edgetpu']['reason']}" for row in int8_rows]
    if report["missing_formats"]:
        notes.append("Not benchmarked (not in the source, and not converted here): " + ", ".join(report["missing_formats"]) + ".")
    return "\n".join(f"- {note}" for note in notes)


def write_reports(report: dict[str, Any], out_dir: Path) -> None:
    """Write benchmark.json and benchmark.md into ``out_dir`` (atomically)."""
    atomic.write_json(out_dir / "benchmark.json", report)
    markdown = f"# Benchmark of {report['source']}\n\n{format_table(report)}\n\n{format_notes(report)}\n"
    atomic.write_text(out_dir / "benchmark.md", markdown)
