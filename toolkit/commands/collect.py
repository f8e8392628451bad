"""`toolkit collect`: save frames of a camera, video, stream or folder as training images of one class.

Imports only the edge side (numpy, OpenCV), never TensorFlow: it runs on the device.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit collect``."""
    # "%(default).0s" prints nothing; without it ArgumentDefaultsHelpFormatter appends "(default: None)".
    parser.add_argument(
        "--source",
        required=True,
        help="camera index or /dev/videoN, video file, image, folder of images, rtsp:// or http:// URL, "
        "or picamera2%(default).0s",
    )
    parser.add_argument("--label", required=True, help="class name: the images go to OUT/LABEL/%(default).0s")
    parser.add_argument(
        "--out", required=True, metavar="ROOT", help="image folder root, as toolkit train --data reads it%(default).0s"
    )
    parser.add_argument(
        "--count", type=int, default=None, metavar="N",
        help="stop after N images (default: at the end of the source or on Ctrl-C)%(default).0s",
    )  # fmt: skip
    parser.add_argument(
        "--every", type=float, default=0.5, metavar="SECONDS",
        help="minimum time between saved frames (for a video file: time in the video)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Save centre-cropped frames as OUT/LABEL/NNNN.jpg; the count goes to stderr, the summary to stdout."""
    from edge_app.collect import CollectConfig, run_collect

    config = CollectConfig(source=args.source, label=args.label, out=args.out, count=args.count, every=args.every)
    run_collect(config)
    return 0
