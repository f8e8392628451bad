"""`toolkit eval`: score a .keras or .tflite model on a dataset (training.evaluate.evaluate)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from toolkit.flags import Flag, add_dataclass_arguments, config_from_arguments


@dataclasses.dataclass(kw_only=True)
class EvaluateConfig:
    """What ``toolkit eval`` scores, on which images, and where its report goes."""

    model: str | None = None  # a .keras or .tflite model with its .card.json beside it (default: the shipped pretrained/model_int8.tflite)
    data: str  # cifar10[:test], fashion-mnist[:test], a cifar-10-batches-py or IDX folder, or an image folder ROOT/<class>/<image>
    limit: int | None = None  # evaluate a seeded class-balanced subset of N images
    split: str = "all"  # all images of --data, or the validation split training held out (fraction and seed from the model card)
    seed: int = 0  # seed of the --limit subset
    batch_size: int = 256  # images per forward pass
    threads: int | None = None  # CPU threads of the TFLite interpreter
    report: str | None = None  # write the full report (top1, top5, per_class, n, confusion matrix) here
    confusion: str | None = None  # confusion-matrix image; without it, one is written beside --report as REPORT.confusion.png
    progress: bool = True  # progress bars


FLAGS = {
    "model": Flag(metavar="M", show_default=False), "data": Flag(metavar="D"), "limit": Flag(metavar="N"), "report": Flag(metavar="JSON"),
    "confusion": Flag(metavar="PNG"), "split": Flag(choices=("all", "validation")), "progress": Flag(help="no progress bars"),
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit eval``: one per EvaluateConfig field."""
    add_dataclass_arguments(parser, EvaluateConfig, FLAGS)


def _summary(report: dict) -> str:
    per_class = report["per_class"]
    worst = sorted(per_class, key=per_class.get)[:3]
    return "\n".join([
        f"model     {report['model']} ({report['card_format']})",
        f"data      {report['data']}  split {report['split']}, {report['n']} images",
        f"top-1     {report['top1']:.2%}",
        f"top-{report['top5_k']}     {report['top5']:.2%}",
        "per class " + ", ".join(f"{name} {accuracy:.0%}" for name, accuracy in per_class.items()),
        "weakest   " + ", ".join(f"{name} {per_class[name]:.1%}" for name in worst),
        f"speed     {report['images_per_second']:.0f} images/s",
    ])


def run(args: argparse.Namespace) -> int:
    """Evaluate, print a short summary, and write the report and confusion matrix when asked."""
    from toolkit import atomic
    from toolkit.errors import check
    from toolkit.pretrained import model_or_default
    from training.evaluate import evaluate, load_evaluation_data, load_predictor

    config = config_from_arguments(EvaluateConfig, args)
    check(
        (config.limit is None or config.limit >= 1, f"--limit must be at least 1, got {config.limit}"),
        (config.batch_size >= 1, f"--batch-size must be at least 1, got {config.batch_size}"),
    )
    progress = None if config.progress else False  # None: bars on a terminal only
    model = model_or_default(config.model)
    predictor = load_predictor(model, threads=config.threads)  # a bad model or card fails before data loads
    dataset = load_evaluation_data(config.data, predictor.card, config.split, config.limit, config.seed, progress)
    confusion = config.confusion
    if confusion is None and config.report is not None:
        confusion = Path(config.report).with_suffix(".confusion.png")
    report = evaluate(model, dataset, config.batch_size, confusion, progress=progress, predictor=predictor)
    report["split"] = config.split
    print(_summary(report))
    if config.split == "all" and predictor.card.dataset and predictor.card.dataset == dataset.source:
        print("note      this is the model's training data; --split validation scores only held-out images")
    if config.report is not None:
        atomic.write_json(config.report, report)
        print(f"report    {config.report}")
    if report["confusion_png"]:
        print(f"confusion {report['confusion_png']}")
    return 0
