"""How compressible a trained float model's kernels will be after 50 % pruning and int8, in seconds.

    python benchmarks/kernel_statistics.py runs/x/train/best.keras [more.keras ...]

Each conv kernel is pruned and quantised as ``toolkit prune`` and the int8 converter do. Reported per layer and in
total: the entropy of the non-zero codes, gzip -9 of the codes and, when the run folder says how it
was seeded, how much of each kernel is still its initialisation.

This predicts the int8 file's gzip size before pruning, QAT and conversion are run
(the file adds ~20 KB of scales, biases and names). It explains the compression
benchmark's gzip figure: codes drawn from a (truncated) normal initialisation are
close to uniform over their range and cost ~7.2 bits each, and a short run leaves
most of the kernel's energy there. Results go to ``--out`` (JSON and markdown).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from converters.sparsity import model_kernels, nonzero_entropy_bits  # noqa: E402
from toolkit import atomic  # noqa: E402


def int8_codes(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    """Magnitude-prune an HWIO kernel to ``sparsity`` and quantise it per output channel (OHWI int8)."""
    threshold = np.quantile(np.abs(kernel), sparsity)
    pruned = np.where(np.abs(kernel) > threshold, kernel, 0.0)
    rows = np.transpose(pruned, (3, 0, 1, 2)).reshape(kernel.shape[3], -1)
    scale = np.abs(rows).max(axis=1, keepdims=True) / 127.0
    return np.round(rows / np.where(scale > 0, scale, 1.0)).astype(np.int8)


def initial_kernels(run: dict[str, dict]) -> dict[str, np.ndarray] | None:
    """The kernels the run started from, rebuilt from its seed; None when the run folder cannot tell."""
    from training.allcnn import ModelConfig, create_model
    from training.backend import keras

    if not run["config"] or run["metrics"].get("backend") != keras.backend.backend():
        return None  # no run folder, or another backend: each draws different numbers from the same seed
    keras.utils.set_random_seed(run["config"]["train"]["seed"])  # as training.train does before building the model
    return dict(model_kernels(create_model(ModelConfig.from_dict(run["config"]["model"]), keras)))


def kernel_statistics(checkpoint: Path, sparsity: float) -> dict:
    """Per-layer and total code entropy, gzip of the codes and the share of kernel energy from initialisation."""
    from training.model_files import load_keras3

    run = {name: atomic.read_json_object(checkpoint.parent / f"{name}.json") for name in ("config", "metrics")}
    initial = initial_kernels(run)
    layers, all_codes, initial_energy, total_energy = [], [], 0.0, 0.0
    for name, kernel in model_kernels(load_keras3(checkpoint)):
        codes = int8_codes(kernel, sparsity)
        all_codes.append(codes.ravel())
        row = {"layer": name, "weights": int(kernel.size), "nonzero_code_bits": round(nonzero_entropy_bits(codes), 3)}
        if initial is not None:
            # Per output channel, the least-squares multiple of the initial kernel that the trained
            # kernel still holds; its energy share is how much of the kernel is still the random start.
            trained = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
            start = initial[name].reshape(-1, kernel.shape[-1]).astype(np.float64)
            start_energy = (start * start).sum(axis=0)
            from_start = float(((trained * start).sum(axis=0) ** 2 / start_energy).sum())
            energy = float((trained * trained).sum())
            row["initialisation_energy_share"] = round(from_start / energy, 3)
            initial_energy, total_energy = initial_energy + from_start, total_energy + energy
        layers.append(row)
    codes = np.concatenate(all_codes)
    start_codes = np.concatenate([int8_codes(kernel, sparsity).ravel() for kernel in initial.values()]) if initial else None
    return {
        "checkpoint": str(checkpoint),
        "training": {key: run["metrics"].get(key) for key in ("epochs_completed", "steps_per_epoch", "train_images", "best_validation_accuracy")},
        "sparsity": sparsity,
        "layers": layers,
        "weights": int(codes.size),
        "zero_share": round(float((codes == 0).mean()), 4),
        "nonzero_code_bits": round(nonzero_entropy_bits(codes), 3),
        "codes_gzip9_bytes": atomic.gzip_size(codes.tobytes()),
        "initialisation_energy_share": round(initial_energy / total_energy, 3) if initial else None,
        # The same figures for the untrained kernels the run started from.
        "initialisation_nonzero_code_bits": round(nonzero_entropy_bits(start_codes), 3) if initial else None,
        "initialisation_codes_gzip9_bytes": atomic.gzip_size(start_codes.tobytes()) if initial else None,
    }


def markdown(reports: list[dict]) -> str:
    lines = [
        "# Kernel statistics: how compressible the int8 kernels of a float checkpoint will be",
        "",
        f"Generated by `python benchmarks/kernel_statistics.py` ({platform.machine()}, Python {platform.python_version()}). "
        "Kernels pruned by magnitude per layer and quantised per output channel as the converter does; "
        "the int8 `.tflite` adds about 20 KB (gzip) of scales, biases and names to the codes' gzip size.",
        "",
        "| checkpoint | training | bits per non-zero code | gzip -9 of the codes | kernel energy still from the initialisation | "
        "at initialisation: bits, gzip |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for report in reports:
        share, training = report["initialisation_energy_share"], report["training"]
        trained = (
            f"{training['epochs_completed']} epochs x {training['steps_per_epoch']} steps on {training['train_images']:,} images, "
            f"validation {training['best_validation_accuracy']:.1%}"
            if training["epochs_completed"] else "unknown"
        )
        start = (
            "unknown (no run folder, or trained on another backend)" if share is None
            else f"{report['initialisation_nonzero_code_bits']:.3f}, {report['initialisation_codes_gzip9_bytes'] / 1e6:.3f} MB"
        )
        lines.append(
            f"| `{report['checkpoint']}` | {trained} | {report['nonzero_code_bits']:.3f} | {report['codes_gzip9_bytes'] / 1e6:.3f} MB | "
            f"{'-' if share is None else f'{share:.0%}'} | {start} |"
        )
    for report in reports:
        lines += [
            "", f"## `{report['checkpoint']}`", "",
            "| layer | weights | bits per non-zero code | energy from initialisation |", "| --- | --- | --- | --- |",
        ]  # fmt: skip
        for row in report["layers"]:
            share = row.get("initialisation_energy_share")
            share_text = "-" if share is None else f"{share:.0%}"
            lines.append(f"| {row['layer']} | {row['weights']:,} | {row['nonzero_code_bits']:.2f} | {share_text} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="trained .keras files (Keras 3)")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=None, help="write kernel_statistics.json and .md into this folder")
    args = parser.parse_args()
    missing = [str(path) for path in args.checkpoints if not path.is_file()]
    if missing:
        parser.error(f"no such checkpoint: {missing[0]}")
    reports = [kernel_statistics(path, args.sparsity) for path in args.checkpoints]
    text = markdown(reports)
    print(text)
    if args.out:
        atomic.write_json(args.out / "kernel_statistics.json", reports)
        atomic.write_text(args.out / "kernel_statistics.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
