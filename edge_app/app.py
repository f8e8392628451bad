"""The edge app's stage function: classify every frame of a source and report a summary.

Three threads hand frames along bounded queues, so a slow camera does not stall
inference nor the reverse:

    capture   source.frames() -> shared preprocessing -> input tensor   (queue: newest wins on a live source)
    inference interpreter.invoke() alone                                 (queue: every raw output)
    main      dequantise, smoothing, top-k; JSON lines, overlay, window,
              video file, HTTP preview                                   (and the signal handlers)

The inference thread does nothing but feed the interpreter, so on a device with a
core to spare for capture and output the app runs at the model's own rate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import numpy as np

from edge_app.blas import limit_blas_threads, restore_blas_threads
from edge_app.collect import writable_folder
from edge_app.frame_queue import CLOSED, FrameQueue
from edge_app.outputs import VideoSaver, Window
from edge_app.overlay import annotate
from edge_app.runtime import TFLitePredictor, runtime_module
from edge_app.server import PreviewServer, parse_address
from edge_app.signals import stop_on_signals
from edge_app.sources import Backoff, Frame, ImageFilesSource, Source, open_source, parse_size
from edge_app.stats import RunStats, format_summary
from toolkit.errors import check
from toolkit.preprocessing import Prediction, top_predictions

_Predict = Callable[[np.ndarray], list[Prediction]]  # a raw output tensor -> its top-k
SWITCH_INTERVAL = 0.001  # seconds between GIL hand-overs: Python's 0.005 delays inference by up to 5 ms per invoke()


@dataclasses.dataclass
class ClassifyConfig:
    """Everything ``toolkit classify`` needs; each field is one CLI flag."""

    model: str  # int8 .tflite with its .card.json beside it
    source: str  # camera index, /dev/videoN, video, image, folder, rtsp:// or http:// URL, or picamera2
    threads: int | None = None  # CPU threads for the interpreter (None: the runtime's default)
    edgetpu: bool = False  # run on a Coral Edge TPU (needs a *_edgetpu.tflite model and libedgetpu)
    xnnpack: bool = True  # XNNPACK CPU delegate (the default); False for the plain kernels
    top_k: int = 3  # classes shown per frame
    threshold: float = 0.0  # leave out classes scoring below this (0..1)
    smoothing: float = 0.0  # EMA weight of past frames' probabilities in [0, 1), 0 = off (video and cameras only)
    headless: bool = False  # one JSON line per frame on stdout, then a summary line
    show: bool = False  # OpenCV window with the overlay (needs a display; a video file then plays at its own frame rate)
    save: str | None = None  # write the annotated video here (.mp4, .avi, .mkv)
    serve: str | None = None  # MJPEG stream + live top-k page on HOST:PORT, e.g. 127.0.0.1:8080 (loopback unless a host is given; paces files too)
    collect_to: str | None = None  # with --serve: a capture control on the page that saves the current frame as ROOT/<label>/NNNN.jpg
    loop: bool = False  # replay a video, image or folder until stopped
    capture_size: str | None = None  # resolution asked of a camera, e.g. 640x480
    max_frames: int | None = None  # stop after this many classified frames
    queue_size: int = 2  # frames waiting between capture and inference
    decode_threads: int = 1  # FFmpeg decoder threads for videos and streams (0: one per core, taking the interpreter's)
    reconnect_timeout: float = 60.0  # seconds a lost camera or stream may stay away (0 = retry forever)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _WorkerThreads:
    """The capture and inference threads, the queues they hand frames along and the errors they leave behind."""

    def __init__(self, source: Source, classifier: TFLitePredictor, config: ClassifyConfig, stats: RunStats,
                 stop: threading.Event, pace_fps: float | None) -> None:
        self.source, self.classifier, self.config, self.stats = source, classifier, config, stats
        self.stop = stop
        self.pace_fps = pace_fps  # play a file at its own speed when someone watches it
        self.errors: list[BaseException] = []
        self.frames = FrameQueue(max(1, config.queue_size), drop_oldest=source.live)
        self.results = FrameQueue(max(4, config.queue_size))
        self.capture = threading.Thread(target=self._capture_loop, name="capture", daemon=True)
        self.inference = threading.Thread(target=self._inference_loop, name="inference", daemon=True)

    @contextlib.contextmanager
    def errors_to_main_thread(self, *queues: FrameQueue, catch: type[BaseException] = BaseException) -> Iterator[None]:
        """Around a loop: keep what it raises (``catch``) for the main thread, stop the run, and close ``queues``."""
        try:
            yield
        except catch as error:  # raised by the main thread after the summary
            self.errors.append(error)
            self.stop.set()
        finally:
            for queue in queues:
                queue.close()

    def _capture_loop(self) -> None:
        started, cpu_started = time.perf_counter(), time.thread_time()
        named: set[str] = set()  # unreadable files warned about so far
        with self.errors_to_main_thread(self.frames):
            for count, frame in enumerate(self.source.frames(self.stop)):
                if self.pace_fps:
                    delay = started + count / self.pace_fps - time.perf_counter()
                    if delay > 0 and self.stop.wait(delay):
                        break
                try:
                    if frame.image is None:
                        raise ValueError("not an image OpenCV can decode")
                    tensor = self.classifier.prepare(frame.image[None], frame.colour_order)
                except ValueError as error:  # unreadable, or an impossible shape: count it, keep going
                    self.stats.unreadable += 1
                    if frame.name and frame.name not in named:  # video frames have no file name: only counted
                        named.add(frame.name)
                        print(f"warning: skipped {frame.name}: {error}", file=sys.stderr, flush=True)
                    continue
                if not self.frames.put((frame, tensor)):
                    break
        self.stats.capture_cpu_seconds = time.thread_time() - cpu_started

    def _inference_loop(self) -> None:
        cpu_started = time.thread_time()
        with self.errors_to_main_thread(self.frames, self.results):
            while (item := self.frames.get()) is not CLOSED:
                frame, tensor = item
                started = time.perf_counter()
                output = self.classifier.run(tensor)
                seconds = time.perf_counter() - started
                self.stats.record_inference(started, seconds)
                if not self.results.put((frame, output, seconds)):
                    break
                if self.config.max_frames and self.stats.frames >= self.config.max_frames:
                    self.stop.set()
                    break
        self.stats.inference_cpu_seconds = time.thread_time() - cpu_started

    def stop_and_join(self) -> None:
        """Stop both threads and wait a while for each; a capture read stuck in a driver may outlive this."""
        self.stop.set()
        self.frames.close()
        self.results.close()
        for thread, patience in ((self.inference, 5.0), (self.capture, 2.0)):  # a healthy read returns within a frame time
            if thread.is_alive():
                thread.join(timeout=patience)


def _top_predictions(classifier: TFLitePredictor, config: ClassifyConfig, source: Source) -> _Predict:
    """Raw output tensors to the top-k, to be called in frame order (smoothing needs the order)."""
    weight = config.smoothing
    if weight and isinstance(source, ImageFilesSource):
        print("warning: --smoothing is ignored for images: they are not consecutive frames", file=sys.stderr)
        weight = 0.0
    smoothed: np.ndarray | None = None  # weight * previous + (1 - weight) * current; 0.8 averages about five frames

    def predict(output: np.ndarray) -> list[Prediction]:
        nonlocal smoothed
        probabilities = classifier.probabilities(output)[0]
        if weight:
            smoothed = probabilities if smoothed is None else weight * smoothed + (1.0 - weight) * probabilities
            probabilities = smoothed
        return top_predictions(probabilities, classifier.labels, config.top_k, config.threshold)

    return predict


def _record(frame: Frame, predictions: list[Prediction], inference_seconds: float) -> dict[str, Any]:
    record: dict[str, Any] = {
        "time": round(frame.captured_at, 3),
        "frame": frame.index,
        "top_k": [prediction.to_dict() for prediction in predictions],
        "inference_ms": round(inference_seconds * 1000.0, 3),
    }
    if frame.name:
        record["source"] = frame.name
    return record


def _text_line(frame: Frame, predictions: list[Prediction], inference_seconds: float) -> str:
    best = ", ".join(f"{p.label} {p.score:.2f}" for p in predictions) or "no class above threshold"
    name = f" {Path(frame.name).name}" if frame.name else ""
    return f"frame {frame.index}{name}: {best} ({inference_seconds * 1000.0:.2f} ms)"


class _Outputs:
    """Everything done with one classified frame: a text or JSON line, then overlay, window, video and web page."""

    def __init__(self, stdout: TextIO, json_lines: bool, window: Window | None, saver: VideoSaver | None,
                 server: PreviewServer | None, stats: RunStats, stop: threading.Event) -> None:
        self.stdout, self.json_lines = stdout, json_lines  # both turn off when the reader of stdout leaves
        self.window, self.saver, self.server = window, saver, server
        self.visual = window is not None or saver is not None or server is not None
        self.text = not json_lines and not self.visual  # plain lines when nothing else was asked for
        self.stats = stats
        self.stop = stop
        self.fps = 0.0  # smoothed frames per second between consecutive outputs, for the overlay
        self.last_output: float | None = None  # perf_counter() when the previous output began

    def start(self) -> None:
        """Start the web page, if there is one, and say on stderr where it is."""
        if self.server is not None:
            self.server.start()
            print(f"serving on {self.server.page_url}", file=sys.stderr, flush=True)
            if self.server.capture_folders is not None:
                print(f"capture saves into {self.server.capture_folders.root}/<label>/", file=sys.stderr, flush=True)

    def _write_line(self, line: str) -> None:
        """One line on stdout, flushed; a reader who left (``| head``) turns stdout off and stops the run."""
        try:
            self.stdout.write(line + "\n")
            self.stdout.flush()
        except BrokenPipeError:
            # Point the closed pipe at /dev/null so later writes and the interpreter's exit flush do not fail.
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stdout.fileno())
                os.close(devnull)
            self.json_lines = self.text = False
            self.stop.set()

    def _tick(self) -> float:
        """The smoothed FPS, counting one more output now."""
        now, previous = time.perf_counter(), self.last_output
        if previous is not None and now > previous:
            instant = 1.0 / (now - previous)
            self.fps = instant if self.fps == 0.0 else 0.9 * self.fps + 0.1 * instant
        self.last_output = now
        return self.fps

    def handle(self, frame: Frame, predictions: list[Prediction], inference_seconds: float) -> None:
        """Output one classified frame."""
        fps = self._tick()
        record = _record(frame, predictions, inference_seconds) if self.json_lines or self.server is not None else {}
        if self.json_lines:
            self._write_line(json.dumps(record, separators=(",", ":")))
        elif self.text:
            self._write_line(_text_line(frame, predictions, inference_seconds))
        if self.visual and frame.image is not None:
            annotated = annotate(frame.image, predictions, fps, inference_seconds * 1e3)
            if self.saver is not None:
                self.saver.write(annotated, frame.captured_at)
            if self.server is not None:
                self.server.publish(annotated, {**record, "fps": fps}, frame.image, frame.colour_order)
            if self.window is not None and not self.window.show(annotated):
                self.stop.set()
        self.stats.last_frame_at = time.perf_counter()  # the summary's time runs until the last output is out

    def write_summary(self, summary: dict[str, Any]) -> None:
        """With JSON lines, the summary as the last one (unless the reader left before it)."""
        if self.json_lines:
            self._write_line(json.dumps({"summary": summary}, separators=(",", ":")))

    def close(self) -> None:
        """Stop the web page, finish the video file, close the window."""
        if self.server is not None:
            self.server.stop()
        if self.saver is not None:
            self.saver.close()
        if self.window is not None:
            self.window.close()


def run_classify(config: ClassifyConfig, source: Source | None = None, stop: threading.Event | None = None,
                 stdout: TextIO | None = None) -> dict[str, Any]:
    """Classify every frame of ``config.source`` (or ``source``) until it ends or the run is stopped; returns the summary.

    The per-frame lines go to ``stdout`` (JSON and a last ``{"summary": ...}`` with ``headless``), the summary to stderr.
    """
    serve_address = _check_flags(config)
    capture_size = parse_size(config.capture_size) if config.capture_size else None
    classifier = TFLitePredictor(config.model, threads=config.threads, edgetpu=config.edgetpu, xnnpack=config.xnnpack)
    _warn_if_threads_take_every_core(config)
    window = Window() if config.show else None
    if source is None:
        source = open_source(config.source, loop=config.loop, capture_size=capture_size, decode_threads=config.decode_threads,
                             backoff=Backoff(give_up_after=config.reconnect_timeout))
    predict = _top_predictions(classifier, config, source)
    saver = VideoSaver(config.save, source.fps, real_time=source.live) if config.save else None
    server = None  # started with the outputs
    if serve_address is not None:
        server = PreviewServer(*serve_address, model=Path(config.model).name, source=source.description,
                               collect_to=config.collect_to, aspect=tuple(classifier.card.input_size[:2]))
    stop = stop or threading.Event()
    stats = RunStats()
    outputs = _Outputs(stdout or sys.stdout, config.headless, window, saver, server, stats, stop)
    pace_fps = source.fps if (window is not None or server is not None) and not source.live else None
    threads = _WorkerThreads(source, classifier, config, stats, stop, pace_fps)
    with _blas_and_switch_interval():
        stopped_early = _run_until_done(threads, outputs, predict)
    stats.dropped, stats.reconnects = threads.frames.dropped, source.reconnects
    summary = stats.summary(model=str(config.model), source=source.description, runtime=runtime_module()[0],
                            threads=config.threads, edgetpu=config.edgetpu)
    print(format_summary(summary), file=sys.stderr, flush=True)
    outputs.write_summary(summary)
    _raise_what_failed(threads, stopped_early)
    return summary


def _check_flags(config: ClassifyConfig) -> tuple[str, int] | None:
    """Refuse impossible flags before a model or camera is opened; returns the ``--serve`` address, if any."""
    check(
        (0.0 <= config.threshold <= 1.0, f"--threshold must be between 0 and 1, got {config.threshold}"),
        (0.0 <= config.smoothing < 1.0, f"--smoothing must be in [0, 1), got {config.smoothing}"),
        (config.top_k >= 1, f"--top-k must be at least 1, got {config.top_k}"),
        (config.decode_threads >= 0, f"--decode-threads must be 0 (FFmpeg's choice) or more, got {config.decode_threads}"),
    )
    serve_address = parse_address(config.serve) if config.serve else None
    if config.collect_to:
        check((serve_address is not None, "--collect-to needs --serve: the capture control is on the --serve page"))
        writable_folder(config.collect_to)  # before a camera is opened: an unwritable root is a one-line error
    return serve_address


def _warn_if_threads_take_every_core(config: ClassifyConfig) -> None:
    """Warn when the interpreter's threads would leave no core for capture and output."""
    cores = available_cores()
    if config.threads and not config.edgetpu and config.threads >= cores > 1:
        print(f"warning: --threads {config.threads} takes all {cores} cores, leaving none for capture and output: "
              f"--threads {cores - 1} is usually faster end to end (docs/edge.md)", file=sys.stderr)


@contextlib.contextmanager
def _blas_and_switch_interval() -> Iterator[None]:
    """numpy's BLAS on one thread (see edge_app.blas) and :data:`SWITCH_INTERVAL` for the run, restored afterwards."""
    previous_blas = limit_blas_threads(1)
    previous_switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        yield
    finally:
        restore_blas_threads(previous_blas)
        sys.setswitchinterval(previous_switch_interval)


def _run_until_done(threads: _WorkerThreads, outputs: _Outputs, predict: _Predict) -> bool:
    """Run capture and inference, output every result in the main thread, then shut everything down in order;
    True when the run was stopped (Ctrl-C, SIGTERM, ``--max-frames`` or a failure), False at the source's end."""
    try:
        with stop_on_signals(threads.stop):
            outputs.start()
            threads.capture.start()
            threads.inference.start()
            with threads.errors_to_main_thread(catch=Exception):  # Ctrl-C twice still interrupts at once
                while (raw := threads.results.get(timeout=0.1)) is not CLOSED:
                    if raw is not None:  # None: a timeout, so signal handlers run
                        frame, output, seconds = raw
                        outputs.handle(frame, predict(output), seconds)
                    if threads.stop.is_set():
                        # A capture read blocked in a driver or on a stalled stream must not hold the run up:
                        # inference finishes what was captured, then closes the results.
                        threads.frames.close()
            return threads.stop.is_set()
    finally:
        threads.stop_and_join()
        if not threads.capture.is_alive():  # never release a device a blocked read() still uses
            threads.source.close()
        outputs.close()


def _raise_what_failed(threads: _WorkerThreads, stopped_early: bool) -> None:
    """Raise the first error a thread left, or say that no frame of the source could be read."""
    if threads.errors:
        raise threads.errors[0]
    stats, source = threads.stats, threads.source
    if stats.frames == 0 and not stopped_early and (stats.unreadable or not source.live):
        raise source.nothing_read(stats.unreadable)
