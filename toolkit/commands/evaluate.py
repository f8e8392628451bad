"""`toolkit eval`: score a .keras or .tflite model on a dataset (training.evaluate.evaluate)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit eval``; defaults are shown by --help."""
    parser.add_argument(
        "--model",
        default=None,
        metavar="M",
        # "%(default).0s" prints nothing; without it ArgumentDefaultsHelpFormatter appends "(default: None)".
        help="a .keras or .tflite model with its .card.json beside it (default: the shipped pretrained/model_int8.tflite)%(default).0s",
    )
    parser.add_argument(
        "--data",
        required=True,
        metavar="D",
        help="cifar10[:test], fashion-mnist[:test], a cifar-10-batches-py or IDX folder, or an image folder ROOT/<class>/<image>",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate a seeded class-balanced subset of N images")
    parser.add_argument(
        "--split",
        choices=("all", "validation"),
        default="all",
        help="all images of --data, or the validation split training held out (fraction and seed from the model card)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the TFLite interpreter")
    parser.add_argument("--report", default=None, metavar="JSON", help="write the full report (top1, top5, per_class, n, confusion matrix) here")
    parser.add_argument(
        "--confusion", default=None, metavar="PNG", help="confusion-matrix image; without it, one is written beside --report as REPORT.confusion.png"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _summary(report: dict, split: str) -> str:
    per_class = report["per_class"]
    worst = sorted(per_class, key=per_class.get)[:3]
    lines = [
        f"model     {report['model']} ({report['card_format']})",
        f"data      {report['data']}  split {split}, {report['n']} images",
        f"top-1     {report['top1']:.2%}",
        f"top-{report['top5_k']}     {report['top5']:.2%}",
        "per class " + ", ".join(f"{name} {accuracy:.0%}" for name, accuracy in per_class.items()),
        "weakest   " + ", ".join(f"{name} {per_class[name]:.1%}" for name in worst),
        f"speed     {report['images_per_second']:.0f} images/s",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print a short summary, and write the report and confusion matrix when asked."""
    from toolkit import atomic
    from toolkit.errors import ToolkitError
    from toolkit.pretrained import model_or_default
    from training.evaluate import evaluate, load_evaluation_data, load_predictor

    if args.limit is not None and args.limit < 1:
        raise ToolkitError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise ToolkitError(f"--batch-size must be at least 1, got {args.batch_size}")
    progress = False if args.no_progress else None
    model = model_or_default(args.model)
    predictor = load_predictor(model, threads=args.threads)  # a bad model or card fails before data loads
    dataset = load_evaluation_data(args.data, predictor.card, args.split, args.limit, args.seed, progress)
    confusion = args.confusion
    if confusion is None and args.report is not None:
        report_path = Path(args.report)
        confusion = report_path.with_name(report_path.name.rsplit(".", 1)[0] + ".confusion.png")
    report = evaluate(model, dataset, args.batch_size, confusion, progress=progress, predictor=predictor)
    report["split"] = args.split
    print(_summary(report, args.split))
    if args.split == "all" and predictor.card.dataset and predictor.card.dataset == dataset.source:
        print("note      this is the model's training data; --split validation scores only held-out images")
    if args.report is not None:
        atomic.write_json(args.report, report)
        print(f"report    {args.report}")
    if report["confusion_png"]:
        print(f"confusion {report['confusion_png']}")
    return 0
