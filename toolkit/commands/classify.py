"""`toolkit classify`: the edge app on a camera, video, image, folder or stream.

Imports only the edge side (numpy, OpenCV, a LiteRT runtime), never TensorFlow.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit classify``."""
    parser.add_argument(
        "--model",
        default=None,
        # "%(default).0s" prints nothing; without it ArgumentDefaultsHelpFormatter appends "(default: None)".
        help="int8 .tflite with its .card.json beside it (default: the shipped pretrained/model_int8.tflite)%(default).0s",
    )
    parser.add_argument(
        "--source",
        default="0",
        help="camera index or /dev/videoN, video file, image, folder of images, rtsp:// or http:// URL, or picamera2",
    )
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--threads", type=int, default=None, help="CPU threads of the interpreter")
    runtime.add_argument(
        "--edgetpu", action="store_true", help="run on a Coral Edge TPU (the model must be *_edgetpu.tflite)"
    )
    runtime.add_argument(
        "--no-xnnpack", dest="xnnpack", action="store_false", help="plain kernels instead of the XNNPACK delegate"
    )
    output = parser.add_argument_group("output")
    output.add_argument("--top-k", type=int, default=3, help="classes reported per frame")
    output.add_argument("--threshold", type=float, default=0.0, help="leave out classes scoring below this (0..1)")
    output.add_argument("--smoothing", type=float, default=0.0, help="EMA weight of past frames in [0, 1); 0 = off")
    output.add_argument("--headless", action="store_true", help="one JSON line per frame on stdout, then a summary")
    output.add_argument(
        "--show", action="store_true", help="OpenCV window with the overlay (needs a display and opencv-python)"
    )
    output.add_argument("--save", metavar="OUT.mp4", help="write the annotated video (.mp4, .avi or .mkv)")
    output.add_argument(
        "--serve",
        metavar="HOST:PORT",
        help="MJPEG stream + live top-k page, e.g. 127.0.0.1:8080 (loopback unless a host is given)",
    )
    output.add_argument(
        "--collect-to", metavar="ROOT",
        help="with --serve: a capture control on the page that saves the current frame into ROOT/<label>/",
    )  # fmt: skip
    capture = parser.add_argument_group("capture")
    capture.add_argument("--loop", action="store_true", help="replay a video, image or folder until stopped")
    capture.add_argument("--capture-size", metavar="WxH", help="resolution asked of a camera, e.g. 640x480")
    capture.add_argument("--max-frames", type=int, default=None, help="stop after this many classified frames")
    capture.add_argument("--queue-size", type=int, default=2, help="frames waiting between capture and inference")
    capture.add_argument(
        "--decode-threads", type=int, default=1,
        help="FFmpeg decoder threads for videos and streams (0: one per core, competing with the interpreter)",
    )  # fmt: skip
    capture.add_argument(
        "--reconnect-timeout",
        type=float,
        default=60.0,
        help="seconds a lost camera or stream may stay away (0 = retry forever)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the edge app; the summary goes to stderr (and stdout with --headless)."""
    from edge_app.app import ClassifyConfig, run_classify
    from toolkit.pretrained import model_or_default

    config = ClassifyConfig(
        model=model_or_default(args.model),
        source=args.source,
        threads=args.threads,
        edgetpu=args.edgetpu,
        xnnpack=args.xnnpack,
        top_k=args.top_k,
        threshold=args.threshold,
        smoothing=args.smoothing,
        headless=args.headless,
        show=args.show,
        save=args.save,
        serve=args.serve,
        collect_to=args.collect_to,
        loop=args.loop,
        capture_size=args.capture_size,
        max_frames=args.max_frames,
        queue_size=args.queue_size,
        decode_threads=args.decode_threads,
        reconnect_timeout=args.reconnect_timeout,
    )
    run_classify(config)
    return 0
