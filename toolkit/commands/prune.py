"""`toolkit prune`: magnitude pruning with fine-tuning (converters.prune.prune)."""

from __future__ import annotations

import argparse


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Data flags shared by `toolkit prune` and `toolkit qat`; unset ones come from the source run."""
    group = parser.add_argument_group("data (default: what the source model was trained on, from its run folder)")
    group.add_argument("--data", default=None, help="cifar10, fashion-mnist or an image folder ROOT/<class>/<image>")
    group.add_argument("--limit", type=int, default=None, help="seeded class-balanced subset of this many images")
    group.add_argument("--batch-size", type=int, default=None, help="fine-tuning batch size")
    group.add_argument("--augmentation", choices=("none", "paper", "cutout"), default=None, help="augmentation policy")
    group.add_argument("--seed", type=int, default=None, help="split, shuffle and augmentation seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit prune``."""
    parser.add_argument("--model", required=True, metavar="M", help="trained Keras 3 model (.keras with its .card.json)")
    parser.add_argument("--out", default="runs/prune", help="run folder for model.keras, its card, config.json, report.json")
    parser.add_argument("--sparsity", type=float, default=0.5, help="target fraction of zero kernel weights")
    parser.add_argument("--structured", default=None, metavar="M:N", help="M:N structured sparsity instead, e.g. 2:4")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="peak learning rate (cosine decay to 0)")
    parser.add_argument("--ramp-fraction", type=float, default=0.75, help="share of the fine-tuning over which sparsity ramps up")
    add_data_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Prune, fine-tune, write the run folder and print the result."""
    from converters.prune import PruneConfig, prune

    result = prune(
        PruneConfig(
            model=args.model, out=args.out, sparsity=args.sparsity, structured=args.structured, epochs=args.epochs,
            learning_rate=args.learning_rate, ramp_fraction=args.ramp_fraction, data=args.data, limit=args.limit,
            batch_size=args.batch_size, augmentation=args.augmentation, seed=args.seed,
            progress=not args.no_progress, overwrite=args.overwrite,
        )  # fmt: skip
    )
    report = result.report
    accuracy = report["validation_accuracy"]
    print(f"pruned    {result.model_path}")
    print(f"sparsity  {report['sparsity']['overall']:.2%} of kernel weights are zero (target {report['target_sparsity']:.2%})")
    print("per layer " + ", ".join(f"{name} {value:.0%}" for name, value in report["sparsity"]["per_layer"].items()))
    print(f"size      {report['sizes']['raw'] / 1e6:.3f} MB, gzip {report['sizes']['gzip'] / 1e6:.3f} MB")
    print(f"accuracy  {accuracy['before']:.2%} before, {accuracy['after']:.2%} after ({report['data']['validation_images']} validation images)")
    print(f"report    {result.report_path}")
    return 0
