"""Compression benchmark: a short real CIFAR-10 run, then 50 % pruning, QAT and full-integer int8.

    python benchmarks/int8_compression.py                             # train briefly, then compress
    python benchmarks/int8_compression.py --model runs/x/best.keras   # start from a trained model

Runs ``toolkit pipeline`` into ``--work`` (git-ignored, resumable), then measures on held-out images the int8 model
against its float reference (the conversion's cost) and against the dense float model training produced (the whole
compression's cost), and the int8 file's sizes, against TARGETS. Results go to ``--results``; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.sitting import DEFAULT_DATA, generated_line, sitting, write_results  # noqa: E402 - training sets TF_USE_LEGACY_KERAS before TensorFlow loads

TARGETS = {
    "gap_points_max": 0.5,  # int8 top-1 at most this many points below float
    "agreement_min": 0.985,  # float and int8 pick the same class on at least this share of images
    "int8_bytes_max": 1_450_000,  # 1.45 MB
    "sparse_gzip_bytes_max": 900_000,  # gzip of the 50 % sparse int8 model, 0.9 MB
}
CALIBRATION_IMAGES = 500


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--model", default=None, help="start from this trained .keras instead of training")
    parser.add_argument("--limit", type=int, default=20000, help="class-balanced subset for training and fine-tuning")
    parser.add_argument("--width", type=float, default=1.0, help="All-CNN-C width (1.0: the paper's 1.37 M parameters)")
    parser.add_argument("--batch-norm", action="store_true", help="batch normalisation after every conv but the classifier")
    parser.add_argument("--train-epochs", type=int, default=4)
    parser.add_argument("--prune-epochs", type=int, default=2)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--calibration-batches", type=int, default=16, help="QAT starts its ranges from this many batches (0: tfmot's [-6, 6])")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench_compression"), help="pipeline folder (resumable)")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "compression"))
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args()


def kernel_entropy(int8_path: Path) -> dict:
    """How compressible the int8 kernels are: zeros, entropy of the non-zero codes, and the entropy floor in bytes.

    A symbol-by-symbol coder cannot beat ``H(zero or not) + share(non-zero) * H(non-zero code)``
    bits per weight; gzip adds its own overhead on top.
    """
    from converters.sparsity import entropy_bits, nonzero_entropy_bits
    from converters.tflite_inspect import read_tflite

    kernels = [kernel.ravel() for _, kernel in read_tflite(int8_path).kernels()]
    weights = np.concatenate(kernels)
    zero_share = float(np.mean(weights == 0))
    nonzero_bits = nonzero_entropy_bits(weights)
    floor_bits = entropy_bits(weights == 0) + (1 - zero_share) * nonzero_bits
    return {
        "kernel_weights": int(weights.size),
        "zero_share": round(zero_share, 4),
        "nonzero_code_entropy_bits": round(nonzero_bits, 3),
        "mean_abs_nonzero_code": round(float(np.abs(weights[weights != 0].astype(np.int32)).mean()), 1),
        "entropy_floor_bytes": int(weights.size * floor_bits / 8),
    }


def pipeline_config(args: argparse.Namespace):
    """The toolkit pipeline this benchmark runs (it records, never stops on a parity drop)."""
    from toolkit.pipeline import PipelineConfig

    return PipelineConfig(
        out=args.work,
        data=args.data,
        limit=args.limit,
        model=args.model,
        train={"epochs": args.train_epochs, "width": args.width, "batch_norm": args.batch_norm, "batch_size": 128, "warmup_epochs": 0.4},
        prune={"sparsity": args.sparsity, "epochs": args.prune_epochs, "learning_rate": 0.01},
        qat={"epochs": args.qat_epochs, "learning_rate": 0.001, "calibration_batches": args.calibration_batches},
        convert={"calib_samples": CALIBRATION_IMAGES, "parity_samples": 1000, "max_drop": 100.0},
        eval={"formats": ["int8"]},
        progress=not args.no_progress,
    )


def post_training_int8(work: Path, stages: dict, progress: bool) -> dict:
    """For comparison: post-training int8 of the pruned float model (calibration, no QAT)."""
    from converters.convert import ConvertConfig, convert

    config = ConvertConfig(model=str(work / stages["prune"]["model"]), out=str(work / "convert_ptq"), formats=("int8",),
                           max_drop=100.0, progress=progress, overwrite=True)  # fmt: skip
    parity = convert(config).parity["formats"]["int8"]
    return {key: parity[key] for key in ("reference_top1", "top1", "gap_points", "agreement")}


def measurements(work: Path, manifest: dict, dense: Any, qat_source: Any, settings: Any, progress: bool) -> dict:
    """The measured figures of a finished pipeline in ``work``, end to end too (dense float model against the final int8 one)."""
    from converters.convert import parity_of
    from toolkit import atomic
    from toolkit.model_card import load_card
    from training.evaluate import KerasPredictor
    from training.splits import held_out_images

    stages = manifest["stages"]
    parity = atomic.read_json_object(work / stages["convert"]["parity"])
    int8_path = work / stages["convert"]["models"]["int8"]
    int8_card = load_card(int8_path)
    held_out, origin = held_out_images(settings, 1000, fit_to=qat_source.card)
    whole = parity_of(int8_path, held_out, KerasPredictor(dense.model, dense.card).predict(held_out.images), progress)
    sizes = int8_card.sizes
    return {
        "float_reference_top1": parity["reference_top1"],
        **{key: parity[key] for key in ("int8_top1", "gap_points", "agreement", "mean_probability_difference", "max_probability_difference")},
        "dense_float_top1": whole["reference_top1"],
        "end_to_end_gap_points": whole["gap_points"],
        "end_to_end_agreement": whole["agreement"],
        "int8_bytes": sizes["raw"],
        "int8_gzip_bytes": sizes["gzip"],
        "int8_gzip_huffman_only_bytes": sizes.get("gzip_huffman_only"),
        "int8_kernel_sparsity": int8_card.sparsity,
        "int8_kernel_entropy": kernel_entropy(int8_path),
        "held_out_images": parity["images"],
        "held_out_origin": origin,
        "post_training_int8_of_pruned_model": post_training_int8(work, stages, progress),
        "validation_top1_int8": next((row["accuracy"] for row in manifest["summary"] if row["stage"] == "convert int8"), None),
    }


def targets_met(measured: dict) -> dict[str, bool]:
    """Each target of TARGETS: met or not."""
    return {
        "gap_points": measured["gap_points"] <= TARGETS["gap_points_max"],
        "agreement": measured["agreement"] >= TARGETS["agreement_min"],
        "int8_bytes": measured["int8_bytes"] <= TARGETS["int8_bytes_max"],
        "sparse_gzip_bytes": measured["int8_gzip_bytes"] <= TARGETS["sparse_gzip_bytes_max"],
        "sparse_gzip_huffman_only_bytes": (measured["int8_gzip_huffman_only_bytes"] or 1e18) <= TARGETS["sparse_gzip_bytes_max"],
    }


def main() -> int:
    args = parse_arguments()
    from converters import bridge, finetune
    from toolkit import atomic
    from toolkit.pipeline import STAMP_NAME, run_pipeline, trained_model

    facts = sitting("int8_compression.py", sys.argv[1:])  # the load average before hours of training
    started = time.perf_counter()
    result = run_pipeline(pipeline_config(args))
    print(result.table)
    work = Path(args.work)
    stages = result.manifest["stages"]
    qat_source = bridge.load_source(work / stages["qat"]["model"])
    dense = bridge.load_source(trained_model(work, result.manifest))
    settings = finetune.resolve_data_settings(qat_source, {})
    measured = measurements(work, result.manifest, dense, qat_source, settings, not args.no_progress)
    payload = {
        "recipe": {
            "data": settings.data,
            "limit": settings.limit,
            "width": qat_source.model_config.width,
            "batch_norm": qat_source.model_config.batch_norm,
            "parameters": int(dense.model.count_params()),
            "dense_float_validation_accuracy": dense.card.metrics.get("validation_accuracy"),
            "train_epochs": args.train_epochs if not args.model else None,
            "start_model": args.model,
            "prune": {"sparsity": args.sparsity, "epochs": args.prune_epochs},
            "qat_epochs": args.qat_epochs,
            "qat_calibration_batches": args.calibration_batches,
            "calibration_images": CALIBRATION_IMAGES,
        },
        "targets": TARGETS,
        "measured": measured,
        "met": targets_met(measured),
        "stage_seconds": {stage: atomic.read_json_object(work / stage / STAMP_NAME).get("seconds")
                          for stage in ("train", "prune", "qat", "convert") if (work / stage / STAMP_NAME).exists()},  # fmt: skip
        "summary": result.manifest["summary"],
        "sitting": facts,
        "seconds_this_session": round(time.perf_counter() - started, 1),
    }
    results = Path(args.results)
    report = markdown(payload, result.table)
    write_results(payload, report + "\n", results / "results")
    shutil.copy(work / stages["convert"]["parity"], results / "parity.json")
    shutil.copy(work / stages["convert"]["cards"]["int8"], results / "model_int8.card.json")
    print(report)
    return 0


def markdown(payload: dict, table: str) -> str:
    measured, met, targets = payload["measured"], payload["met"], payload["targets"]
    ptq = measured["post_training_int8_of_pruned_model"]
    mark = {True: "met", False: "**not met**"}
    recipe = payload["recipe"]
    subset = f"class-balanced subset of {recipe['limit']} images" if recipe["limit"] else "all images"
    lines = [
        "# Compression benchmark: 50 % pruning, QAT, full-integer int8",
        "",
        generated_line(payload["sitting"]),
        "",
        f"Data: {recipe['data']} ({subset}), "
        f"All-CNN-C width {recipe['width']}{' with batch norm' if recipe['batch_norm'] else ''} ({recipe['parameters']:,} parameters), "
        + (f"trained {recipe['train_epochs']} epoch(s) here" if recipe["train_epochs"] else f"from {recipe['start_model']}")
        + f"; prune to {recipe['prune']['sparsity']:.0%} in {recipe['prune']['epochs']} epoch(s); QAT {recipe['qat_epochs']} epoch(s) "
        f"(activation ranges calibrated on {recipe.get('qat_calibration_batches', 0)} batches first).",
        f"Held-out images: {measured['held_out_images']} ({measured['held_out_origin']['validation_split']} from the validation split, "
        f"{measured['held_out_origin']['outside_training_subset']} from outside the training subset).",
        "",
        "| measure | value | target | |",
        "|---|---|---|---|",
        f"| float reference top-1 (QAT float weights) | {measured['float_reference_top1']:.2%} | | |",
        f"| int8 top-1 | {measured['int8_top1']:.2%} | | |",
        f"| gap (points) | {measured['gap_points']:+.2f} | <= {targets['gap_points_max']} | {mark[met['gap_points']]} |",
        f"| top-1 agreement | {measured['agreement']:.2%} | >= {targets['agreement_min']:.1%} | {mark[met['agreement']]} |",
        f"| int8 file | {measured['int8_bytes'] / 1e6:.3f} MB | <= {targets['int8_bytes_max'] / 1e6} MB | {mark[met['int8_bytes']]} |",
        f"| gzip -9 of the {measured['int8_kernel_sparsity']:.0%} sparse int8 file | {measured['int8_gzip_bytes'] / 1e6:.3f} MB | <= {targets['sparse_gzip_bytes_max'] / 1e6} MB | {mark[met['sparse_gzip_bytes']]} |",
        f"| gzip, Huffman-only deflate (valid .gz) | {(measured['int8_gzip_huffman_only_bytes'] or 0) / 1e6:.3f} MB | <= {targets['sparse_gzip_bytes_max'] / 1e6} MB | {mark[met['sparse_gzip_huffman_only_bytes']]} |",
        f"| order-0 entropy of the int8 kernels (the floor for a coder that codes each weight on its own) | {measured['int8_kernel_entropy']['entropy_floor_bytes'] / 1e6:.3f} MB: "
        f"{measured['int8_kernel_entropy']['zero_share']:.1%} zeros, {measured['int8_kernel_entropy']['nonzero_code_entropy_bits']:.2f} bits per non-zero code "
        f"(mean \\|code\\| {measured['int8_kernel_entropy']['mean_abs_nonzero_code']:.0f} of 127) | | |",
        f"| dense float top-1 (before pruning) | {measured['dense_float_top1']:.2%} | | |",
        f"| end to end: dense float -> int8 gap (points) | {measured['end_to_end_gap_points']:+.2f} | | |",
        f"| end to end agreement | {measured['end_to_end_agreement']:.2%} | | |",
        f"| for comparison: post-training int8 of the pruned float model (no QAT): gap | {ptq['gap_points']:+.2f} "
        f"({ptq['reference_top1']:.2%} -> {ptq['top1']:.2%}) | | |",
        f"| for comparison: post-training int8 agreement | {ptq['agreement']:.2%} | | |",
        "",
        "Stage seconds: " + ", ".join(f"{stage} {seconds:.0f}" for stage, seconds in payload["stage_seconds"].items() if seconds is not None),
        "",
        "```",
        table,
        "```",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
