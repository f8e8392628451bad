"""`toolkit pipeline`: train -> prune -> qat -> convert -> eval, each stage skipped when up to date."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit pipeline``; each overrides the same setting of --config."""
    parser.add_argument("--config", default=None, metavar="YAML", help="pipeline settings (see pipeline.yaml in the repository)")
    parser.add_argument("--data", default=None, help="training data: cifar10 (default), fashion-mnist or an image folder; with --model, the images every later stage uses (default: the model's own)")
    parser.add_argument("--out", default=None, help="folder for every stage (default from the config, else runs/pipeline)")
    parser.add_argument("--limit", type=int, default=None, help="train on a seeded class-balanced subset of this many images")
    parser.add_argument("--model", default=None, help="start from this trained .keras model instead of training")
    parser.add_argument("--epochs-per-stage", type=int, default=None, help="epochs of train, prune and qat")
    parser.add_argument("--width", type=float, default=None, help="All-CNN-C filter multiplier for training (e.g. 0.25)")
    parser.add_argument("--sparsity", type=float, default=None, help="pruning target")
    parser.add_argument("--no-prune", action="store_true", help="skip pruning")
    parser.add_argument("--calib-samples", type=int, default=None, help="calibration images for the int8 conversion")
    parser.add_argument("--max-drop", type=float, default=None, help="allowed top-1 drop of the converted models, in points")
    parser.add_argument("--force", action="store_true", help="rerun every stage even when up to date")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_config(args: argparse.Namespace):
    """The pipeline config: the YAML file (if any), then the flags on top."""
    from toolkit.pipeline import PipelineConfig

    config = PipelineConfig.from_yaml(args.config) if args.config else PipelineConfig()
    for name in ("data", "out", "limit", "model", "epochs_per_stage"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.width is not None:
        config.train = {**config.train, "width": args.width}
    if args.sparsity is not None:
        config.prune = {**config.prune, "sparsity": args.sparsity}
    if args.no_prune:
        config.prune = {**config.prune, "enabled": False}
    if args.calib_samples is not None:
        config.convert = {**config.convert, "calib_samples": args.calib_samples}
    if args.max_drop is not None:
        config.convert = {**config.convert, "max_drop": args.max_drop}
    config.force = config.force or args.force
    config.progress = config.progress and not args.no_progress
    return config


def run(args: argparse.Namespace) -> int:
    """Run the pipeline, print the summary table; exit 3 when the converted models fail parity."""
    from toolkit.pipeline import run_pipeline
    from toolkit.errors import ToolkitError

    config = build_config(args)
    result = run_pipeline(config)
    print(result.table)
    print(f"\nartifacts {result.manifest_path}")
    if result.manifest.get("parity_passed") is False:
        max_drop = config.convert.get("max_drop", 1.0)
        raise ToolkitError(
            f"a converted model lost more than {max_drop} top-1 points against the float model; see {config.out}/convert/parity.json",
            exit_code=3,
        )
    return 0
