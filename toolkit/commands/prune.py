"""`toolkit prune`: magnitude pruning with fine-tuning (converters.prune.prune)."""

from __future__ import annotations

import argparse

from toolkit.flags import Flag, add_dataclass_arguments, config_from_arguments

STAGE_FLAGS = {"model": Flag(metavar="M"), "progress": Flag(help="no progress bars")}


def add_stage_arguments(parser: argparse.ArgumentParser, config_class: type, overrides: dict[str, Flag]) -> None:
    """The flags of `toolkit prune` or `toolkit qat`: the stage's own, then its data group."""
    from converters.configs import DATA_FIELDS
    from training.augment import AUGMENTATIONS

    flags = {**STAGE_FLAGS, "augmentation": Flag(choices=AUGMENTATIONS), **overrides}
    add_dataclass_arguments(parser, config_class, flags, exclude=DATA_FIELDS)
    group = parser.add_argument_group("data (default: what the source model was trained on, from its run folder)")
    add_dataclass_arguments(group, config_class, flags, fields=DATA_FIELDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit prune``."""
    from converters.configs import PruneConfig

    add_stage_arguments(parser, PruneConfig, {"structured": Flag(metavar="M:N")})


def run(args: argparse.Namespace) -> int:
    """Prune, fine-tune, write the run folder and print the result."""
    from converters.configs import PruneConfig
    from converters.prune import prune

    result = prune(config_from_arguments(PruneConfig, args))
    report = result.report
    accuracy = report["validation_accuracy"]
    print(f"pruned    {result.model_path}")
    print(f"sparsity  {report['sparsity']['overall']:.2%} of kernel weights are zero (target {report['target_sparsity']:.2%})")
    print("per layer " + ", ".join(f"{name} {value:.0%}" for name, value in report["sparsity"]["per_layer"].items()))
    print(f"size      {report['sizes']['raw'] / 1e6:.3f} MB, gzip {report['sizes']['gzip'] / 1e6:.3f} MB")
    print(f"accuracy  {accuracy['before']:.2%} before, {accuracy['after']:.2%} after ({report['data']['validation_images']} validation images)")
    print(f"report    {result.report_path}")
    return 0
