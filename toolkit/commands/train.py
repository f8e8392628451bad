"""`toolkit train`: flags -> training.train.TrainConfig -> training.train.train."""

from __future__ import annotations

import argparse
import dataclasses

from toolkit.flags import Flag, add_dataclass_arguments, config_from_arguments, field_comments

GROUPS = {
    "data": ("data", "limit", "validation_fraction", "augmentation", "workers"),
    "model": ("from_model", "freeze_stages", "architecture", "batch_norm", "input_dropout", "stage_dropout", "width"),
    "optimisation": (
        "recipe", "budget", "epochs", "batch_size", "schedule", "learning_rate", "warmup_epochs", "warmup_fraction",
        "momentum", "nesterov", "weight_decay", "label_smoothing", "ema", "precision", "seed",
    ),
    "run": ("out", "resume", "strategy", "progress"),
}  # fmt: skip


def _flags() -> dict[str, Flag]:
    """Where a TrainConfig field's flag differs from what the field says; the recipe's fields show each recipe's value."""
    # TrainConfig lives in a module without Keras, so --help stays fast.
    from training.allcnn import ARCHITECTURES
    from training.augment import AUGMENTATIONS
    from training.train_config import PRECISIONS, RECIPES, SCHEDULES, STRATEGIES, TrainConfig

    flags = {
        "limit": Flag(metavar="N"),
        "augmentation": Flag(choices=AUGMENTATIONS),
        "from_model": Flag(spelling="--from", metavar="MODEL"),
        "freeze_stages": Flag(choices=(0, 1, 2)),
        "architecture": Flag(choices=tuple(ARCHITECTURES)),
        "recipe": Flag(choices=tuple(RECIPES)),
        "budget": Flag(metavar="TIME"),
        "schedule": Flag(choices=SCHEDULES),
        "precision": Flag(choices=PRECISIONS),
        "out": Flag(metavar="RUN"),
        "resume": Flag(metavar="RUN"),
        "strategy": Flag(choices=STRATEGIES),
        "progress": Flag(help="no progress bar (one line per epoch)"),
    }
    comments = field_comments(TrainConfig)
    for name in RECIPES["paper"]:  # unset, these take the recipe's value when the run starts
        values = ", ".join(f"{recipe} {settings[name]}" for recipe, settings in RECIPES.items())
        help_text = f"{comments[name]} (default from --recipe: {values})"
        flags[name] = dataclasses.replace(flags.get(name, Flag()), default=argparse.SUPPRESS, help=help_text)
    return flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every TrainConfig field, in four groups; defaults are shown by --help."""
    from training.train_config import TrainConfig

    flags = _flags()
    for title, names in GROUPS.items():
        add_dataclass_arguments(parser.add_argument_group(title), TrainConfig, flags, fields=names)


def run(args: argparse.Namespace) -> int:
    """Train and print where the run folder is and which epoch best.keras holds."""
    from training.run_folder import RunFolder
    from training.train import TrainConfig, train

    run_root = train(config_from_arguments(TrainConfig, args))
    metrics = RunFolder(run_root).read_metrics()
    print(
        f"run folder: {run_root}  best.keras: epoch {metrics['best_epoch']} of {metrics['epochs_completed']}, "
        f"validation accuracy {metrics['best_validation_accuracy']:.4f}"
    )
    return 0
