"""`toolkit collect`: save frames of a camera, video, stream or folder as training images of one class.

Imports only the edge side (numpy, OpenCV), never TensorFlow: it runs on the device.
"""

from __future__ import annotations

import argparse

from toolkit.flags import Flag, add_dataclass_arguments, config_from_arguments

FLAGS = {"out": Flag(metavar="ROOT"), "count": Flag(metavar="N"), "every": Flag(metavar="SECONDS")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit collect``: one per CollectConfig field."""
    from edge_app.collect import CollectConfig

    add_dataclass_arguments(parser, CollectConfig, FLAGS)


def run(args: argparse.Namespace) -> int:
    """Save centre-cropped frames as OUT/LABEL/NNNN.jpg; the count goes to stderr, the summary to stdout."""
    from edge_app.collect import CollectConfig, run_collect

    run_collect(config_from_arguments(CollectConfig, args))
    return 0
