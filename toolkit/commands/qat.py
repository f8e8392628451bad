"""`toolkit qat`: quantization-aware fine-tuning that keeps sparsity (converters.qat.qat)."""

from __future__ import annotations

import argparse

from toolkit.commands.prune import add_data_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit qat``."""
    parser.add_argument("--model", required=True, metavar="M", help="float (possibly pruned) Keras 3 model (.keras with its .card.json)")
    parser.add_argument("--out", default="runs/qat", help="run folder for model.keras, model.qat.weights.h5, card, report")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    parser.add_argument("--learning-rate", type=float, default=0.001, help="peak learning rate (cosine decay to 0)")
    parser.add_argument(
        "--scheme",
        choices=("auto", "default", "prune-preserve"),
        default="auto",
        help="tfmot 8-bit scheme; auto keeps sparsity (prune-preserve) when the kernels are at least 1%% zeros",
    )
    parser.add_argument(
        "--calibration-batches", type=int, default=16,
        help="training batches whose float activations set the quantisation ranges before QAT (0: tfmot's [-6, 6] start)",
    )  # fmt: skip
    add_data_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Fine-tune with fake quantisation, write the run folder and print the result."""
    from converters.qat import QatConfig, qat

    result = qat(
        QatConfig(
            model=args.model, out=args.out, epochs=args.epochs, learning_rate=args.learning_rate, scheme=args.scheme,
            calibration_batches=args.calibration_batches,
            data=args.data, limit=args.limit, batch_size=args.batch_size, augmentation=args.augmentation, seed=args.seed,
            progress=not args.no_progress, overwrite=args.overwrite,
        )  # fmt: skip
    )
    report = result.report
    accuracy = report["validation_accuracy"]
    worst = min(report["sparsity_change_points"].values(), default=0.0)
    print(f"QAT model {result.model_path} (+ {report['qat_weights']})")
    print(f"scheme    {report['scheme']}")
    print(f"sparsity  {report['sparsity_before']['overall']:.2%} -> {report['sparsity']['overall']:.2%} (largest per-layer change {worst:+.2f} points)")
    print(
        f"accuracy  float source {accuracy['source_float']:.2%}; fake-quant {accuracy['fake_quant_before_qat']:.2%} before, "
        f"{accuracy['fake_quant_after_qat']:.2%} after QAT ({report['data']['validation_images']} validation images)"
    )
    print(f"report    {result.report_path}")
    return 0
