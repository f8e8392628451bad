"""Compare the x86-64 and the emulated aarch64 runs of ``scripts/check_aarch64.sh``; write the record.

Reads the work folder the script filled and writes ``aarch64.json`` and ``aarch64.md``. Per frame it compares
the top-k classes in order and the whole JSON line less its timings. Exit status 1 unless every profile predicts
the same classes as x86-64 on every frame and the reference-kernel runs are bit-identical.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolkit import atomic  # noqa: E402
from toolkit.model_card import card_path  # noqa: E402

TIMING_KEYS = ("time", "inference_ms")
SCORE_STEP = 1 / 256  # one step of an int8 softmax output (scale 1/256)


def read_run(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The frame records (timing removed) and the summary of one headless run."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    frames = [{key: value for key, value in record.items() if key not in TIMING_KEYS}
              for record in records if "summary" not in record]
    return frames, next((record["summary"] for record in reversed(records) if "summary" in record), {})


def _classes(frame: dict[str, Any] | None) -> list[int] | None:
    return None if frame is None else [prediction["index"] for prediction in frame["top_k"]]


def compare(reference: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """How far ``other`` agrees with ``reference``, frame by frame."""
    pairs = list(itertools.zip_longest(reference, other))
    same_classes = [_classes(left) == _classes(right) for left, right in pairs]  # zip_longest pads one side only
    identical = [left == right for left, right in pairs]
    largest = max((abs(a["score"] - b["score"]) for (left, right), same in zip(pairs, same_classes) if same
                   for a, b in zip(left["top_k"], right["top_k"])), default=0.0)
    return {
        "frames_x86_64": len(reference),
        "frames_aarch64": len(other),
        "same_top_k_classes": sum(same_classes),
        "same_top1": sum(left is not None and right is not None and _classes(left)[0] == _classes(right)[0] for left, right in pairs),
        "identical_lines": sum(identical),
        "max_score_difference": round(largest, 5),
        "max_score_difference_int8_steps": round(largest / SCORE_STEP),
        "differing_lines": [
            {"x86_64": left, "aarch64": right} for (left, right), same in zip(pairs, identical) if not same
        ][:5],
        "predictions_equal": len(reference) > 0 and all(same_classes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="the work folder check_aarch64.sh filled")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    work = args.work

    context = json.loads((work / "context.json").read_text())
    x86_frames, x86_summary = read_run(work / "x86_64.jsonl")
    runs: dict[str, Any] = {}
    summaries = {"x86_64": x86_summary}
    for path in sorted(work.glob("aarch64-*.jsonl")):
        profile = path.stem.removeprefix("aarch64-")
        frames, summaries[path.stem] = read_run(path)
        runs[profile] = {"setup": context["profiles"].get(profile, ""), **compare(x86_frames, frames)}
    reference = compare(read_run(work / "x86_64.reference.jsonl")[0], read_run(work / "aarch64.reference.jsonl")[0])
    reference["bit_identical"] = reference["identical_lines"] == reference["frames_x86_64"] > 0
    passed = bool(runs) and all(run["predictions_equal"] for run in runs.values()) and reference["bit_identical"]
    record = {
        "passed": passed,
        "criterion": (
            "every frame: the same top-k classes in the same order as x86-64 (toolkit classify --headless, "
            "default XNNPACK kernels), and bit-identical top-k scores with LiteRT's reference kernels"
        ),
        "classify_runs": runs,
        "reference_kernels": reference,
        "context": context,
        "model": _model_summary(Path(context["model"])),
        "aarch64_packages": sorted(
            line for line in (work / "aarch64-freeze.txt").read_text().splitlines() if "==" in line or " @ " in line
        ),
        "timing": {
            "note": "aarch64 figures are EMULATED (qemu-user on an x86-64 CPU); they are NOT Raspberry Pi figures",
            **{name: _timing(summary, context["wall_seconds"].get(name)) for name, summary in summaries.items()},
        },
    }
    atomic.write_json(args.out / "aarch64.json", record)
    atomic.write_text(args.out / "aarch64.md", markdown(record))
    for profile, run in runs.items():
        print(
            f"{profile}: top-k classes equal on {run['same_top_k_classes']}/{run['frames_x86_64']} frames, "
            f"identical lines {run['identical_lines']}, max score difference {run['max_score_difference']}"
        )
    print(f"reference kernels: identical on {reference['identical_lines']}/{reference['frames_x86_64']} frames")
    print(f"{'PASSED' if passed else 'FAILED'}; wrote {args.out / 'aarch64.json'} and aarch64.md")
    return 0 if passed else 1


def _model_summary(model: Path) -> dict[str, Any]:
    """What the model is, from its card: format, stages, architecture, size."""
    card = atomic.read_json_object(card_path(model))
    if not card:
        return {"path": str(model)}
    architecture = card.get("architecture", {})
    parity = atomic.read_json_object(model.with_name("parity.json"))  # toolkit convert's report beside the model, if any
    int8 = parity.get("formats", {}).get("int8", {})
    return {
        "held_out_top1": int8.get("top1"),
        "held_out_images": parity.get("images"),
        "path": str(model),
        "format": card.get("format"),
        "history": card.get("history", []),
        "architecture": {key: architecture.get(key) for key in ("name", "width", "batch_norm") if key in architecture},
        "bytes": model.stat().st_size if model.exists() else None,
        "dataset": card.get("dataset"),
    }


def _timing(summary: dict[str, Any], wall_seconds: float | None) -> dict[str, Any]:
    keys = ("frames", "seconds", "mean_fps", "inference_ms_p50", "inference_ms_p95", "inference_ms_mean", "runtime")
    return {"command_wall_seconds": wall_seconds, **{key: summary[key] for key in keys if key in summary}}


def markdown(record: dict[str, Any]) -> str:
    """The record as a short Markdown page."""
    context = record["context"]
    reference = record["reference_kernels"]
    lines = [
        "# aarch64 (Raspberry Pi 4/5 CPU) check: same predictions as x86-64",
        "",
        f"**Result: {'PASSED' if record['passed'] else 'FAILED'}.** Criterion: {record['criterion']}.",
        "",
        "| aarch64 run (emulated) | Frames | Same top-k classes | Same top-1 | Identical JSON lines | Max score difference |",
        "|---|---|---|---|---|---|",
    ]
    runs = [(f"`toolkit classify` as {profile}: {run['setup']}", run, f" ({run['max_score_difference_int8_steps']} int8 step(s))")
            for profile, run in record["classify_runs"].items()]  # fmt: skip
    for label, run, steps in [*runs, ("reference kernels (BUILTIN_REF) as pi4", reference, "")]:
        frames = run["frames_x86_64"]
        lines.append(
            f"| {label} | {run['frames_aarch64']} | {run['same_top_k_classes']}/{frames} | {run['same_top1']}/{frames} "
            f"| {run['identical_lines']}/{frames} | {run['max_score_difference']}{steps} |"
        )
    lines += [
        "",
        "Scores are compared as printed (5 decimals). The optimised int8 kernels (XNNPACK: NEON on aarch64, "
        "AVX on x86-64) may round an intermediate value differently, which can move a score by one int8 "
        "output step (1/256); LiteRT's reference kernels, which have no SIMD, must give bit-identical outputs, "
        "which shows the model and the shared preprocessing are the same on both architectures.",
        "",
        "## Setup",
        "",
        f"- aarch64: {context['aarch64_os']} arm64 root built by debootstrap, Python {context['aarch64_python']} "
        f"(as Raspberry Pi OS 64-bit), `uname -m` = {context['aarch64_machine']}, run through {context['emulation']}. "
        "The project is installed with `pip install .[edge]` from the package index: no TensorFlow.",
        "- aarch64 packages: " + ", ".join(f"`{package}`" for package in record["aarch64_packages"]) + ".",
        f"- x86-64: {context['host_processor']}, {context['host_os']}, Python {context['host_python']}; "
        "same numpy, OpenCV and ai-edge-litert versions.",
        f"- Model `{Path(context['model']).name}`: {record['model'].get('format')}, "
        f"stages {' -> '.join(record['model'].get('history', []))}, {record['model'].get('architecture')}, "
        f"{record['model'].get('bytes')} bytes, trained on {record['model'].get('dataset')}"
        + (
            f" (top-1 {record['model']['held_out_top1']:.1%} on {record['model']['held_out_images']} held-out images, "
            "from toolkit convert's parity.json)"
            if record["model"].get("held_out_top1") is not None
            else ""
        )
        + f"; video `{Path(context['video']).name}` (lossless FFV1, so both "
        f"sides classify the same pixels); {context['threads']} interpreter thread(s); commit "
        f"`{context['git_commit'][:10]}`" + (" plus uncommitted changes" if context.get("git_dirty") else "") + ".",
        "",
        "## Timing: the aarch64 rows are EMULATED by qemu on an x86-64 CPU, NOT Raspberry Pi figures",
        "",
        "| Run | Frames | Inference p50 ms | Inference p95 ms | Mean FPS | Command wall s |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in record["timing"].items():
        if name == "note":
            continue
        label = "x86-64, native" if name == "x86_64" else f"{name}, EMULATED (qemu-user)"
        lines.append(
            f"| {label} | {values.get('frames', '-')} | {values.get('inference_ms_p50', '-')} "
            f"| {values.get('inference_ms_p95', '-')} | {values.get('mean_fps', '-')} | {values.get('command_wall_seconds', '-')} |"
        )
    lines += ["", "Reproduce (as root): `scripts/check_aarch64.sh --model path/to/model_int8.tflite`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
