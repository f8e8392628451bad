"""Training images/s of the fast recipe against the old float32 default, both through `toolkit train`'s own pipeline.

    python benchmarks/train_throughput.py            # writes benchmarks/results/train_throughput.{json,md}
    python benchmarks/train_throughput.py --compare precision --widths 1 --out benchmarks/results/train_precision

The two sides, old (recipe "paper") and fast (recipe "fast"), or with ``--compare precision`` the fast recipe in
float32 and in bfloat16, are built and fed as training.train builds and feeds a run, on the same images every epoch,
a multiple of both batch sizes.

Each fit runs 1 + --repeats epochs; its first epoch (tracing, pipeline start-up) is not
timed. Fits alternate (old, fast, fast, old, ...) so load from other users of the machine
hits both alike. The ratio is of each side's fastest epoch: on a shared 2-core machine another
job on one core makes whole epochs take twice as long (the per-epoch times in the JSON show
the two modes), which a median mixes in unevenly. The medians are reported beside it.
Target: fast / old >= 1.8 (none for the precision comparison, which shows what bfloat16 costs or saves here).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.sitting import DEFAULT_DATA, generated_line, run_script, sitting, write_results  # noqa: E402
from toolkit.benchmark.run import load_average  # noqa: E402
from toolkit.errors import ToolkitError  # noqa: E402
from training.allcnn import create_model  # noqa: E402
from training.backend import keras, native_bfloat16  # noqa: E402
from training.batches import BatchSource, as_keras_dataset  # noqa: E402
from training.budget import LearningRateByProgress  # noqa: E402
from training.callbacks import NanGuard  # noqa: E402
from training.data import Dataset, channel_statistics, load_dataset  # noqa: E402
from training.fused_batch_norm import fuse_batch_norm  # noqa: E402
from training.train import POLICIES, compile_model  # noqa: E402
from training.train_config import TrainConfig  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Two sides measured against each other, baseline first."""

    sides: dict[str, tuple[str, str | None]]  # side -> (recipe, precision; None: the recipe's own)
    title: str  # what the report compares
    description: str  # each side's settings, under the title
    target_ratio: float | None = None  # candidate / baseline images/s to reach at every width; None: no target


COMPARISONS = {
    "recipes": Comparison(
        {"old": ("paper", None), "fast": ("fast", None)}, "the fast recipe vs the old float32 default",
        "old: recipe paper (float32, batch 128, no batch norm, dropout 0.2/0.5, crop + flip, SGD momentum). "
        "fast: recipe fast (mixed_bfloat16, batch 256, batch norm, no dropout, cutout, Nesterov SGD).", target_ratio=1.8),
    "precision": Comparison(
        {"float32": ("fast", "float32"), "bfloat16": ("fast", "bfloat16")}, "the fast recipe in bfloat16 vs float32",
        "Both: recipe fast (batch 256, batch norm, no dropout, cutout, Nesterov SGD); float32: --precision float32, "
        "bfloat16: --precision bfloat16 (mixed_bfloat16)."),
}  # fmt: skip


@dataclasses.dataclass
class Side:
    """One recipe's model and input pipeline, and the wall time of its timed epochs."""

    name: str
    config: TrainConfig
    model: Any
    dataset: Any
    seconds: list[float] = dataclasses.field(default_factory=list)


def build_side(name: str, recipe: str, precision: str | None, width: float, dataset: Dataset) -> Side:
    """The model (built under the side's dtype policy) and the input pipeline of one side's recipe."""
    config = TrainConfig(recipe=recipe, precision=precision, width=width).resolved()
    mean, std = channel_statistics(dataset.images)
    source = BatchSource(
        dataset.images, dataset.labels, config.batch_size, mean, std,
        augmentation=config.augmentation, training=True, seed=0,
    )  # fmt: skip
    keras.mixed_precision.set_global_policy(POLICIES[config.precision])
    keras.utils.set_random_seed(0)
    model = create_model(config.model_config(tuple(dataset.images.shape[1:]), len(dataset.class_names)), keras)
    fuse_batch_norm(model)
    compile_model(model, config, config.learning_rate)
    return Side(name, config, model, as_keras_dataset(source, keras, workers=config.workers))


def timed_fit(side: Side, repeats: int, total_steps: int) -> None:
    """One fit of 1 + ``repeats`` epochs, as toolkit train runs all its epochs in one fit; the first is not timed."""
    config = side.config
    keras.mixed_precision.set_global_policy(POLICIES[config.precision])
    starts, seconds = [], []
    timer = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: starts.append(time.perf_counter()),
                                           on_epoch_end=lambda epoch, logs: seconds.append(time.perf_counter() - starts[-1]))  # fmt: skip
    rate = LearningRateByProgress(config.learning_rate, config.warmup_fraction, config.schedule, total_steps=total_steps)
    side.model.fit(side.dataset, epochs=1 + repeats, shuffle=False, callbacks=[NanGuard(), rate, timer], verbose=0)
    side.seconds += seconds[1:]


def measure(comparison: Comparison, width: float, dataset: Dataset, repeats: int, rounds: int) -> dict[str, Any]:
    """Images/s of both sides at one width, fits alternating baseline, candidate, candidate, baseline, ..."""
    baseline, candidate = (build_side(name, *recipe, width, dataset) for name, recipe in comparison.sides.items())
    for round_index in range(rounds):  # alternate, so load from other users hits both sides alike
        for side in (baseline, candidate) if round_index % 2 == 0 else (candidate, baseline):
            timed_fit(side, repeats, total_steps=rounds * (1 + repeats) * len(side.dataset))
    rates = {side.name: len(dataset) / min(side.seconds) for side in (baseline, candidate)}
    medians = {side.name: len(dataset) / float(np.median(side.seconds)) for side in (baseline, candidate)}
    row: dict[str, Any] = {"width": width, "images_per_epoch": len(dataset), "timed_epochs_per_side": repeats * rounds}
    for side in (baseline, candidate):
        row[side.name] = {
            "recipe": side.config.recipe,
            "policy": POLICIES[side.config.precision],
            "batch_size": side.config.batch_size,
            "steps_per_epoch": len(side.dataset),
            "parameters": int(side.model.count_params()),
            "images_per_second": round(rates[side.name], 1),
            "images_per_second_median": round(medians[side.name], 1),
            "epoch_seconds": [round(value, 2) for value in side.seconds],
        }
    row["ratio"] = round(rates[candidate.name] / rates[baseline.name], 3)
    row["ratio_of_medians"] = round(medians[candidate.name] / medians[baseline.name], 3)
    row["meets_target"] = None if comparison.target_ratio is None else row["ratio"] >= comparison.target_ratio
    return row


def load_images(data: str, images_per_epoch: int, comparison: Comparison) -> Dataset:
    """A class-balanced subset of ``data`` whose size is a multiple of both sides' batch sizes."""
    multiple = math.lcm(*(TrainConfig(recipe=recipe).resolved().batch_size for recipe, _ in comparison.sides.values()))
    dataset = load_dataset(data, limit=images_per_epoch, seed=0)
    count = min(images_per_epoch, len(dataset)) // multiple * multiple
    if count == 0:
        raise ToolkitError(f"{data} has {len(dataset)} images; an epoch needs at least {multiple}")
    return dataset.subset(np.arange(count))


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="image folder")
    parser.add_argument("--compare", choices=COMPARISONS, default="recipes", help="recipes: fast against the old default; precision: the fast recipe in bfloat16 against float32")
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.25], help="model widths to measure")
    parser.add_argument("--images", type=int, default=2048, help="images per epoch (rounded down to a multiple of both batch sizes)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per fit (after one untimed epoch)")
    parser.add_argument("--rounds", type=int, default=2, help="fits per side, alternating the two sides")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "train_throughput"), help="result path without suffix")
    return parser.parse_args(argv)


def markdown(payload: dict[str, Any]) -> str:
    """The report: one row per width, the ratio and whether it meets the target."""
    comparison = COMPARISONS[payload["comparison"]]
    first, second = comparison.sides
    verdicts = {True: "met", False: "NOT met", None: "-"}
    lines = [
        f"# Training throughput: {comparison.title}",
        "",
        generated_line(payload),
        "Both sides train through `toolkit train`'s own pipeline (BatchSource -> as_keras_dataset -> model.fit) on the same "
        f"images; the fastest of {payload['results'][0]['timed_epochs_per_side']} timed epochs per side (medians beside it), fits alternating. "
        + comparison.description,
        f"bfloat16 instructions (AVX512-BF16, AMX or Arm's BF16) on this machine: {'yes' if payload['native_bfloat16'] else 'no'}.",
        "",
        f"| width | images/epoch | {first} parameters | {second} parameters | {first} images/s | {second} images/s | {second} / {first} | "
        f"medians: {first}, {second}, {second} / {first} | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in payload["results"]:
        baseline, candidate = row[first], row[second]
        lines.append(
            f"| {row['width']:g} | {row['images_per_epoch']} | {baseline['parameters']:,} | {candidate['parameters']:,} | "
            f"{baseline['images_per_second']} | {candidate['images_per_second']} | {row['ratio']:.3f} | "
            f"{baseline['images_per_second_median']}, {candidate['images_per_second_median']}, {row['ratio_of_medians']:.3f} | "
            f"{verdicts[row['meets_target']]} |"
        )
    target = (f"Target: {second} / {first} >= {comparison.target_ratio} at every width -> {verdicts[payload['meets_target']]}. "
              if comparison.target_ratio else "No target: this shows what the side on the right costs or saves on this machine. ")  # fmt: skip
    lines += [
        "",
        target + f"1-minute load average before/after: {payload['load_average_before_after']} "
        "(other jobs may share the machine; per-epoch times are in the JSON).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Measure every width, write the JSON and markdown; exit 0 when the target is met (or there is none)."""
    args = parse_arguments(argv)
    comparison = COMPARISONS[args.compare]
    dataset = load_images(args.data, args.images, comparison)
    facts = sitting("train_throughput.py", argv)
    try:
        results = [measure(comparison, width, dataset, args.repeats, args.rounds) for width in args.widths]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    payload = {
        **facts,
        "comparison": args.compare,
        "native_bfloat16": native_bfloat16(),
        "target_ratio": comparison.target_ratio,
        "meets_target": None if comparison.target_ratio is None else all(row["meets_target"] for row in results),
        "data": str(args.data),
        "load_average_before_after": [facts["load_average_at_start"], load_average()],
        "results": results,
    }
    report = markdown(payload)
    write_results(payload, report, args.out)
    print(report)
    return 0 if payload["meets_target"] in (True, None) else 1


if __name__ == "__main__":
    run_script(main)
