"""Edge app overhead: end-to-end FPS of `toolkit classify` on a video against the raw invoke() rate (issue 4).

    python benchmarks/edge_fps.py                       # builds the model, writes benchmarks/results/edge_fps.{json,md}
    python benchmarks/edge_fps.py --model M.tflite      # any int8 model with its card; no TensorFlow needed

The default model has RANDOM weights (speed does not depend on them); it is built in a child
process so that the measuring process, like a device, never imports TensorFlow.

For each thread count and each video size, in the same run and interleaved
(raw, app, raw, app, ...) so that load from other processes hits both alike:

    raw  frames per second of ``interpreter.invoke()`` alone on one prepared input
    app  ``run_classify(--headless)`` on an mp4 video: decode (one FFmpeg thread), crop,
         resize, BGR->RGB, normalise, quantise (capture thread); invoke (inference thread);
         dequantise, top-k, one JSON line per frame to /dev/null (output thread)

ratio = median(app) / median(raw) over the repeats (the best runs are reported too); the
target is >= 0.9 (the app adds at most 10 %).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

SAMPLE_DIR = REPO_ROOT / "tests" / "data" / "cifar10-sample"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
TARGET_RATIO = 0.9


def build_model(path: Path) -> None:
    """Write a full-width All-CNN-C, random weights, int8 with int8 I/O, calibrated on the committed sample, to ``path``; with card."""
    from converters.convert import convert_model, tensor_quantization
    from toolkit.model_card import ModelCard, save_card
    from toolkit.preprocessing import prepare_images
    from training.allcnn import ModelConfig, create_model
    from training.data import channel_statistics, load_image_folder
    from training.tensorflow_stack import tf_keras

    dataset = load_image_folder(SAMPLE_DIR)
    mean, std = channel_statistics(dataset.images)
    tf_keras.utils.set_random_seed(0)
    config = ModelConfig()
    model = create_model(config, tf_keras)
    card = ModelCard(
        labels=dataset.class_names, input_size=list(config.input_shape), mean=mean, std=std,
        architecture=config.to_dict(), dataset=str(SAMPLE_DIR), format="tflite-int8",
        notes="RANDOM weights, for speed measurements only; converted with converters.convert.convert_model",
    )  # fmt: skip
    data, parsed = convert_model(model, "int8", prepare_images(dataset.images[::2], card), io="int8")
    path.write_bytes(data)
    save_card(card.replace(input_quantization=tensor_quantization(parsed.inputs[0]), output_quantization=tensor_quantization(parsed.outputs[0])), path)


def make_video(path: Path, width: int, height: int, frames: int) -> Path:
    """An mp4v video of real sample images scaled to width x height, each held for 5 frames."""
    import cv2

    images = [cv2.imread(str(p)) for p in sorted(SAMPLE_DIR.rglob("*.jpg"))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
    for index in range(frames):
        writer.write(cv2.resize(images[(index // 5) % len(images)], (width, height), interpolation=cv2.INTER_CUBIC))
    writer.release()
    return path


def raw_invoke_rate(model: Path, threads: int, frame_bgr: np.ndarray, invocations: int) -> tuple[float, float]:
    """Invocations per second of interpreter.invoke() alone, input set once; and CPU ms of the calling thread each."""
    from edge_app.blas import limit_blas_threads
    from edge_app.runtime import TFLitePredictor

    limit_blas_threads(1)  # as in the app, so both see the same machine
    classifier = TFLitePredictor(model, threads=threads)
    classifier.interpreter.set_tensor(classifier.input_detail["index"], classifier.prepare(frame_bgr[None], "BGR"))
    for _ in range(50):
        classifier.interpreter.invoke()
    started, cpu_started = time.perf_counter(), time.thread_time()
    for _ in range(invocations):
        classifier.interpreter.invoke()
    seconds, cpu_seconds = time.perf_counter() - started, time.thread_time() - cpu_started
    return invocations / seconds, 1000.0 * cpu_seconds / invocations


def app_rate(model: Path, threads: int, video: Path) -> dict:
    """The edge app on ``video`` with --headless output thrown away; returns its summary."""
    from edge_app.app import ClassifyConfig, run_classify

    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        return run_classify(ClassifyConfig(model=str(model), source=str(video), threads=threads, headless=True), stdout=null)


def stage_cpu_ms(model: Path, video: Path, frames: int = 300) -> dict:
    """CPU milliseconds per frame of each stage, from thread CPU time (hardly affected by other processes)."""
    from edge_app.blas import limit_blas_threads
    from edge_app.runtime import TFLitePredictor
    from edge_app.sources import open_source

    limit_blas_threads(1)
    classifier = TFLitePredictor(model, threads=1)  # one thread: XNNPACK runs in the calling thread
    source = open_source(str(video), decode_threads=1)  # as the app decodes: on the calling thread alone
    decode = prepare = invoke = 0.0
    measured = 0
    for _ in range(frames):
        started = time.thread_time()
        ok, image = source.capture.read()
        decoded = time.thread_time()
        if not ok:
            break
        measured += 1
        tensor = classifier.prepare(image[None], "BGR")
        prepared = time.thread_time()
        classifier.run(tensor)  # what the app's inference thread does (dequantise is on the output thread)
        decode, prepare, invoke = decode + decoded - started, prepare + prepared - decoded, invoke + time.thread_time() - prepared
    source.close()
    return {name: round(1000.0 * value / max(measured, 1), 3) for name, value in
            (("decode", decode), ("prepare", prepare), ("invoke_1_thread", invoke))}


def machine() -> dict:
    """The processor, the cores the app may use and the software the figures were measured with."""
    import cv2

    from edge_app.app import available_cores
    from edge_app.runtime import runtime_module
    from toolkit.benchmark.run import machine_description

    described = machine_description()
    return {
        "cpu": described["processor"], "cores": available_cores(), "platform": platform.platform(), "python": described["python"],
        "numpy": np.__version__, "opencv": cv2.__version__, "runtime": runtime_module()[0],
        "ai_edge_litert": described["packages"].get("ai-edge-litert", ""),
    }


def measure(model: Path, sizes: list[tuple[int, int]], threads_list: list[int], frames: int, repeats: int, work: Path) -> dict:
    """One row per video size and interpreter thread count, raw and app runs interleaved."""
    import cv2

    from toolkit.benchmark.run import load_average

    frame = cv2.imread(str(next(SAMPLE_DIR.rglob("*.jpg"))))
    rows = []
    for width, height in sizes:
        video = make_video(work / f"video_{width}x{height}.mp4", width, height, frames)
        costs = stage_cpu_ms(model, video)
        print(f"{width}x{height} CPU ms per frame: {costs}", flush=True)
        for threads in threads_list:
            load_before = load_average()
            runs = []
            for _ in range(repeats):
                rate, cpu_ms = raw_invoke_rate(model, threads, cv2.resize(frame, (width, height)), frames)
                summary = app_rate(model, threads, video)
                if summary["frames"] != frames:
                    raise RuntimeError(f"the app classified {summary['frames']} of {frames} frames")
                runs.append((rate, cpu_ms, summary["mean_fps"], summary["inference_ms_mean"],
                             summary["capture_cpu_ms_per_frame"], summary["inference_cpu_ms_per_frame"]))  # fmt: skip
            raw_rates, raw_cpu, app_rates, invoke_ms, capture_cpu, inference_cpu = zip(*runs)
            raw, app = max(raw_rates), max(app_rates)
            raw_median, app_median = statistics.median(raw_rates), statistics.median(app_rates)
            raw_cpu_median, capture_median, inference_median = map(statistics.median, (raw_cpu, capture_cpu, inference_cpu))
            row = {
                "video": f"{width}x{height}", "threads": threads, "frames": frames, "repeats": repeats,
                "raw_invoke_fps_median": round(raw_median, 1), "app_fps_median": round(app_median, 1),
                "ratio": round(app_median / raw_median, 3), "meets_target": app_median / raw_median >= TARGET_RATIO,
                "raw_invoke_fps_best": round(raw, 1), "app_fps_best": round(app, 1),
                "ratio_of_best": round(app / raw, 3),
                "raw_invoke_fps_runs": [round(value, 1) for value in raw_rates],
                "app_fps_runs": [round(value, 1) for value in app_rates],
                "app_invoke_ms_mean_runs": invoke_ms,
                "load_average_1min": [load_before, load_average()],
                "cpu_ms_per_frame": costs,
                # Thread CPU time, hardly touched by other processes. With 1 interpreter thread XNNPACK runs in
                # the calling thread, so on an idle machine with a core per stage the app's rate would be bounded
                # by its busier thread: raw CPU / max(capture, inference) estimates the ratio there.
                "raw_invoke_cpu_ms_median": round(raw_cpu_median, 3),
                "app_capture_cpu_ms_median": round(capture_median, 3),
                "app_inference_cpu_ms_median": round(inference_median, 3),
                "idle_ratio_estimate": round(raw_cpu_median / max(capture_median, inference_median), 3) if threads == 1 else None,
            }
            rows.append(row)
            print(f"{row['video']:>8} threads={threads}: median raw {raw_median:7.1f}/s  app {app_median:7.1f}/s  "
                  f"ratio {row['ratio']:.3f}  (best {raw:.1f}, {app:.1f}: {row['ratio_of_best']:.3f}; "
                  f"load {load_before:.1f})", flush=True)
    return {"rows": rows}


def write_results(report: dict, out: Path) -> None:
    from toolkit import atomic

    atomic.write_json(out / "edge_fps.json", report)
    machine_info, rows = report["machine"], report["rows"]
    lines = [
        "# Edge app overhead: end-to-end FPS vs raw invoke()",
        "",
        f"Measured {report['date']} by `python benchmarks/edge_fps.py` on {machine_info['cpu']} "
        f"({machine_info['cores']} cores, shared with other jobs: see the load average), "
        f"{machine_info['runtime']} {machine_info['ai_edge_litert']}, XNNPACK on.",
        "",
        f"Model: {report['model']['description']}. Video: mp4v, real CIFAR-10 sample images scaled up. The app "
        "decodes, converts BGR->RGB, centre-crops, resizes, normalises and quantises every frame "
        "(toolkit.preprocessing), invokes, takes the top-3 and writes one JSON line per frame "
        "(`--headless`, to /dev/null).",
        "",
        "| video | threads | raw invoke() FPS | app FPS | ratio | target >= 0.9 "
        "| best runs: raw, app, ratio | load avg (before, after) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['video']} | {row['threads']} | {row['raw_invoke_fps_median']:.1f} | {row['app_fps_median']:.1f} | "
            f"{row['ratio']:.3f} | {'met' if row['meets_target'] else 'NOT met'} | "
            f"{row['raw_invoke_fps_best']:.1f}, {row['app_fps_best']:.1f}, {row['ratio_of_best']:.3f} | "
            f"{row['load_average_1min'][0]:.1f}, {row['load_average_1min'][1]:.1f} |"
        )
    lines += [
        "",
        f"Each row: {rows[0]['repeats']} interleaved raw/app pairs of {rows[0]['frames']} frames; FPS columns are "
        "medians, `ratio` = median app / median raw. The best run of each is beside it. Every run is in "
        "edge_fps.json.",
        "",
        "CPU time per frame (thread CPU time, which other processes hardly change). Decode and prepare are measured "
        "alone; the other columns in the runs above (medians):",
        "",
        "| video | threads | decode | prepare | raw invoke(): calling thread | app capture thread "
        "| app inference thread |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        costs = row["cpu_ms_per_frame"]
        lines.append(
            f"| {row['video']} | {row['threads']} | {costs['decode']:.2f} ms | {costs['prepare']:.2f} ms | "
            f"{row['raw_invoke_cpu_ms_median']:.2f} ms | {row['app_capture_cpu_ms_median']:.2f} ms | "
            f"{row['app_inference_cpu_ms_median']:.2f} ms |"
        )
    cores = machine_info["cores"]
    lines += [
        "",
        "The capture thread (decode + prepare), the inference thread (invoke() alone) and the output thread "
        "(dequantise, top-k, JSON line) run side by side. The app keeps the model's rate as long as the capture "
        "and output work finds a core the interpreter does not use: with 1 interpreter thread on this "
        f"{cores}-core machine it does. With {cores} interpreter threads on {cores} cores it does not: XNNPACK's "
        "calling thread spin-waits for its worker whenever the capture thread takes that worker's core, so the "
        "inference thread burns more CPU per frame than in the raw loop (compare the columns) and capture and "
        "invoke() effectively take turns. A Raspberry Pi 4 or 5 has 4 cores, so at 1 and 2 threads a core stays "
        "free for capture there.",
        "",
    ]
    capture_bound = [row for row in rows if row["threads"] == 1 and row["app_capture_cpu_ms_median"] > row["raw_invoke_cpu_ms_median"]]
    if capture_bound:
        examples = "; ".join(
            f"{row['video']}: {row['app_capture_cpu_ms_median']:.2f} ms capture against {row['raw_invoke_cpu_ms_median']:.2f} ms "
            f"invoke(), so at most {row['raw_invoke_cpu_ms_median'] / row['app_capture_cpu_ms_median']:.2f} of the raw rate"
            for row in capture_bound
        )
        lines += [
            "Where decoding and preparing one frame costs more CPU than one invoke(), the capture thread sets the pace "
            f"whatever the interpreter threads ({examples}). Such frames carry far more pixels than a "
            "32x32 model uses: ask a camera for less (`--capture-size 640x480`).",
            "",
        ]
    if report.get("notes"):
        lines += [f"- {note}" for note in report["notes"]] + [""]
    atomic.write_text(out / "edge_fps.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="int8 .tflite with card (default: build a random-weight full-width one)")
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480", "1280x720"], help="video sizes WxH")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--frames", type=int, default=1000, help="frames per video (and invocations per raw run)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved raw/app pairs per row")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--note", action="append", default=[], help="a line for the report's notes (repeatable)")
    parser.add_argument("--render", type=Path, help="only rewrite the .md (and notes) from an existing edge_fps.json")
    parser.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_only:
        build_model(args.build_only)
        return 0
    if args.render:
        report = json.loads(args.render.read_text())
        report["notes"] = args.note or report.get("notes", [])
        write_results(report, args.out)
        return 0
    with tempfile.TemporaryDirectory(prefix="edge_fps_") as temporary:
        work = Path(temporary)
        description = f"{args.model} (given)"
        model = args.model
        if model is None:
            environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
            model = work / "model_int8.tflite"  # a literal: the measuring process imports nothing of converters/, like a device
            subprocess.run([sys.executable, __file__, "--build-only", str(model)], check=True, env=environment, stdout=subprocess.DEVNULL)
            description = (f"full-width All-CNN-C (ModelConfig()), RANDOM weights, full-integer int8 with int8 I/O, "
                           f"{model.stat().st_size / 1024:.0f} KiB")
        sizes = [tuple(int(value) for value in size.lower().split("x")) for size in args.sizes]
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "model": {"description": description},
            "target_ratio": TARGET_RATIO,
            "notes": args.note,
            **measure(model, sizes, args.threads, args.frames, args.repeats, work),
        }
    assert "tensorflow" not in sys.modules, "the measuring process must not import TensorFlow"
    write_results(report, args.out)
    print(f"wrote {args.out / 'edge_fps.json'} and {args.out / 'edge_fps.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
