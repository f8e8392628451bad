"""`toolkit classify`: the edge app on a camera, video, image, folder or stream.

Imports only the edge side (numpy, OpenCV, a LiteRT runtime), never TensorFlow.
"""

from __future__ import annotations

import argparse

from toolkit.flags import Flag, add_dataclass_arguments, config_from_arguments

GROUPS = {
    "runtime": ("threads", "edgetpu", "xnnpack"),
    "output": ("top_k", "threshold", "smoothing", "headless", "show", "save", "serve", "collect_to"),
    "capture": ("loop", "capture_size", "max_frames", "queue_size", "decode_threads", "reconnect_timeout"),
}
FLAGS = {
    "model": Flag(
        default=None,
        show_default=False,
        help="int8 .tflite with its .card.json beside it (default: the shipped pretrained/model_int8.tflite)",
    ),
    "source": Flag(default="0"),
    "xnnpack": Flag(help="plain kernels instead of the XNNPACK delegate"),
    "save": Flag(metavar="OUT.mp4"),
    "serve": Flag(metavar="HOST:PORT"),
    "collect_to": Flag(metavar="ROOT"),
    "capture_size": Flag(metavar="WxH"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit classify``: one per ClassifyConfig field."""
    from edge_app.app import ClassifyConfig

    add_dataclass_arguments(parser, ClassifyConfig, FLAGS, fields=("model", "source"))
    for title, names in GROUPS.items():
        add_dataclass_arguments(parser.add_argument_group(title), ClassifyConfig, FLAGS, fields=names)


def run(args: argparse.Namespace) -> int:
    """Run the edge app; the summary goes to stderr (and stdout with --headless)."""
    from edge_app.app import ClassifyConfig, run_classify
    from toolkit.pretrained import model_or_default

    run_classify(config_from_arguments(ClassifyConfig, args, model=model_or_default(args.model)))
    return 0
