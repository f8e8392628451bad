"""`toolkit` command line: a thin layer that parses flags and calls one stage function.

Each subcommand is ``toolkit/commands/<name>.py`` with ``add_arguments(parser)`` and ``run(args) -> int``; its
stage's packages are imported only when it runs, so ``toolkit classify`` on a device never touches TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from toolkit import __version__
from toolkit.errors import ToolkitError, ToolkitWarning, first_line

# name -> (module, one-line help). Order is the order of the product's path.
COMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("toolkit.commands.collect", "save camera, video or stream frames as training images of one class"),
    "train": ("toolkit.commands.train", "train All-CNN-C (Keras 3, TensorFlow or JAX backend)"),
    "eval": ("toolkit.commands.evaluate", "evaluate a .keras or .tflite model on a dataset"),
    "prune": ("toolkit.commands.prune", "magnitude-prune a trained model and fine-tune it (tfmot)"),
    "qat": ("toolkit.commands.qat", "quantization-aware fine-tuning, keeping sparsity (tfmot)"),
    "convert": ("toolkit.commands.convert", "export TFLite (int8, float16, dynamic, float32) with a parity report"),
    "pipeline": ("toolkit.commands.pipeline", "train -> prune -> qat -> convert -> eval, resumable"),
    "classify": ("toolkit.commands.classify", "the edge app: classify camera, video, images or streams"),
    "benchmark": ("toolkit.commands.benchmark", "size, latency and accuracy of every format side by side"),
}


# Top-level modules that only an install extra brings -> that extra. `training` and `converters`,
# this package's workstation half, count as the train extra's: an edge-only copy may leave them out.
EXTRA_OF_MODULE: dict[str, str] = {
    **dict.fromkeys(("keras", "tensorflow", "tf_keras", "tensorflow_model_optimization", "matplotlib", "yaml",
                     "training", "converters"), "train"),
    "jax": "jax",
}
EXTRA_WORDS = {"train": "training", "jax": "jax"}  # as the error message names them
DISTRIBUTION = "allcnn-edge-toolkit"


def missing_extra_error(command: str, error: ModuleNotFoundError) -> ToolkitError | None:
    """The one-line error for a command that needs an install extra whose module ``error`` names, or None."""
    extra = EXTRA_OF_MODULE.get((error.name or "").split(".")[0])
    if extra is None:
        return None
    return ToolkitError(
        f"toolkit {command} needs the {EXTRA_WORDS[extra]} extra, which is not installed here ({error}): "
        f"pip install '{DISTRIBUTION}[{extra}]' (or pip install -e '.[{extra}]' in a checkout)"
    )


def _unavailable(command: str, error: ModuleNotFoundError) -> str:
    """Why ``command`` cannot run here, in one line."""
    return str(missing_extra_error(command, error) or f"toolkit {command} is not available here: {error}")


def build_parser() -> argparse.ArgumentParser:
    """The full parser; every subcommand module is imported to add its flags."""
    parser = argparse.ArgumentParser(
        prog="toolkit",
        description="Train All-CNN-C, prune, quantise, convert to int8 TFLite and classify camera frames on edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"toolkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        subparser = subparsers.add_parser(
            name, help=help_text, description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        try:
            module = importlib.import_module(module_name)
            # add_arguments may import its stage's package (training, converters); on an edge
            # device without them the other commands, classify above all, must still work.
            module.add_arguments(subparser)
            subparser.set_defaults(_run=module.run)
        except ModuleNotFoundError as error:
            subparser.set_defaults(_missing=error)
            subparser.epilog = _unavailable(name, error)
    return parser


_default_format_warning = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    # ToolkitWarning is meant for the user: one line, no source location.
    if issubclass(category, ToolkitWarning):
        return f"warning: {message}\n"
    return _default_format_warning(message, category, filename, lineno, line)


def _first_missing_folder(out: object) -> Path | None:
    """The outermost folder of ``--out`` that does not exist yet (the run will create it), or None."""
    if not isinstance(out, (str, Path)) or not str(out):
        return None
    missing = None
    for folder in (Path(out), *Path(out).parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_empty_folders(root: Path) -> None:
    """Remove ``root`` and the folders below it that hold no file (a failed run's leftovers); nothing saved is lost."""
    folders = [path for path in (root, *root.rglob("*")) if path.is_dir()]
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):  # the deepest first
        with contextlib.suppress(OSError):  # not empty
            folder.rmdir()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``toolkit`` console script; returns the process exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args, unrecognized = parser.parse_known_args(argv)
    if getattr(args, "_missing", None) is not None:
        # The command's flags could not be added, so whatever follows it goes unchecked.
        print(f"error: {_unavailable(args.command, args._missing)}", file=sys.stderr)
        return 2
    if unrecognized:
        parser.error(f"unrecognized arguments: {' '.join(unrecognized)}")
    if args.command is None:
        parser.print_help()
        return 2
    created = _first_missing_folder(getattr(args, "out", None))
    exit_code = 1
    try:
        exit_code = _run(args)
    finally:
        if exit_code != 0 and created is not None:
            _remove_empty_folders(created)
    return exit_code


def _run(args: argparse.Namespace) -> int:
    """Run the chosen command; every failure becomes one ``error:`` line and a non-zero code."""
    try:
        try:
            return int(args._run(args) or 0)
        except ModuleNotFoundError as error:  # a module of an install extra that is missing here: name the extra
            raise missing_extra_error(args.command, error) or error
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI promises one line, never a traceback
        if os.environ.get("TOOLKIT_DEBUG"):
            raise
        print(
            f"error: {type(error).__name__}: {first_line(error, '')} (set TOOLKIT_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
