"""Is the input pipeline the bottleneck? images/s of `toolkit train`'s pipeline against a plain fit.

    python benchmarks/train_throughput.py            # writes benchmarks/results/train_throughput.{json,md}

Both sides train the same freshly built All-CNN-C (same seed, optimizer, loss and
metrics as `toolkit train`) for the same number of steps of the same batch size:

* toolkit: uint8 images -> training.batches.BatchSource (shuffle, the paper's
  augmentation, normalisation, in numpy) -> as_keras_dataset -> model.fit, with the
  training loop's NaN guard, exactly as training.train does;
* plain: model.fit on an in-memory, already normalised float32 array (no augmentation).

Like `toolkit train`, each side runs all its epochs in one ``fit``; the first epoch of
every fit (tracing, pipeline start-up) is not timed. Fits alternate (toolkit, plain,
toolkit, plain) so load from other users of the machine hits both alike; the median
epoch time is reported. Target: ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from toolkit import atomic  # noqa: E402
from toolkit.preprocessing import prepare_batch  # noqa: E402
from training.allcnn import ModelConfig, create_model  # noqa: E402
from training.backend import backend_name, keras  # noqa: E402
from training.batches import BatchSource, as_keras_dataset  # noqa: E402
from training.callbacks import NanGuard  # noqa: E402
from training.data import channel_statistics, load_dataset  # noqa: E402
from training.optimization import create_loss, create_optimizer  # noqa: E402
from training.schedules import create_schedule  # noqa: E402
from training.train_config import TrainConfig  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "train"
SAMPLE = REPO_ROOT / "tests" / "data" / "cifar10-sample"


def build(width: float, steps: int, defaults: TrainConfig):
    keras.utils.set_random_seed(0)
    model = create_model(ModelConfig(width=width), keras)
    schedule = create_schedule("cosine", defaults.learning_rate, 1000, steps, defaults.warmup_epochs)
    model.compile(
        optimizer=create_optimizer(schedule, defaults.momentum, defaults.weight_decay),
        loss=create_loss(defaults.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch of one fit."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def measure(width: float, batch_size: int, steps: int, repeats: int, rounds: int, images, labels) -> dict:
    defaults = TrainConfig()
    count = steps * batch_size
    images, labels = images[:count], labels[:count]
    mean, std = channel_statistics(images)
    source = BatchSource(images, labels, batch_size, mean, std, augmentation=defaults.augmentation, shuffle=True, drop_remainder=True)
    toolkit_data = as_keras_dataset(source, keras, workers=defaults.workers)
    arrays = (prepare_batch(images, mean, std), labels.astype("int32"))

    toolkit_model, plain_model = build(width, steps, defaults), build(width, steps, defaults)

    def timed_epochs(fit) -> list[float]:
        # One fit of 1 + repeats epochs, as toolkit train runs all its epochs in one fit;
        # the first epoch (tracing, pipeline start-up) is not timed.
        timer = EpochTimer()
        fit(timer)
        return timer.seconds[1:]

    def run_toolkit(timer) -> None:
        toolkit_model.fit(toolkit_data, epochs=1 + repeats, shuffle=False, callbacks=[NanGuard(), timer], verbose=0)

    def run_plain(timer) -> None:
        plain_model.fit(*arrays, batch_size=batch_size, epochs=1 + repeats, shuffle=True, callbacks=[timer], verbose=0)

    toolkit_seconds, plain_seconds = [], []
    for _ in range(rounds):  # alternate, so load from other users hits both sides alike
        toolkit_seconds += timed_epochs(run_toolkit)
        plain_seconds += timed_epochs(run_plain)
    toolkit_rate, plain_rate = count / float(np.median(toolkit_seconds)), count / float(np.median(plain_seconds))
    return {
        "width": width,
        "parameters": int(toolkit_model.count_params()),
        "batch_size": batch_size,
        "steps": steps,
        "timed_epochs_per_side": repeats * rounds,
        "toolkit_images_per_second": round(toolkit_rate, 1),
        "plain_images_per_second": round(plain_rate, 1),
        "ratio": round(toolkit_rate / plain_rate, 3),
        "toolkit_seconds": [round(value, 2) for value in toolkit_seconds],
        "plain_seconds": [round(value, 2) for value in plain_seconds],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=str(SHARED if SHARED.is_dir() else SAMPLE), help="image folder")
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.25], help="model widths to measure")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size of both sides")
    parser.add_argument("--steps", type=int, default=16, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per fit (after one untimed epoch)")
    parser.add_argument("--rounds", type=int, default=2, help="fits per side, alternating toolkit and plain")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "train_throughput"), help="result path without suffix")
    args = parser.parse_args()

    dataset = load_dataset(args.data, limit=args.steps * args.batch_size, seed=0)
    if len(dataset) < args.steps * args.batch_size:
        args.steps = len(dataset) // args.batch_size
    load_before = os.getloadavg()[0]
    results = [measure(width, args.batch_size, args.steps, args.repeats, args.rounds, dataset.images, dataset.labels) for width in args.widths]
    payload = {
        "target_ratio": 0.9,
        "meets_target": all(result["ratio"] >= 0.9 for result in results),
        "backend": backend_name(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other users), {platform.python_version()}",
        "keras": keras.__version__,
        "data": str(args.data),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "results": results,
    }
    atomic.write_json(f"{args.out}.json", payload)
    lines = [
        "# Training throughput: `toolkit train` pipeline vs plain `model.fit` on arrays",
        "",
        f"Backend {payload['backend']}, Keras {payload['keras']}, {payload['machine']}. "
        f"Same model, batch and steps on both sides; median epoch time of {args.repeats * args.rounds} timed epochs "
        f"of {args.steps} steps per side ({args.rounds} alternating fits each). "
        "Generated by `python benchmarks/train_throughput.py`.",
        "",
        "| width | parameters | batch | steps | toolkit images/s | plain images/s | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        lines.append(
            f"| {result['width']:g} | {result['parameters']:,} | {result['batch_size']} | {result['steps']} | "
            f"{result['toolkit_images_per_second']} | {result['plain_images_per_second']} | {result['ratio']:.3f} |"
        )
    lines += [
        "",
        f"Target: ratio >= 0.9 -> {'met' if payload['meets_target'] else 'NOT met'}. "
        f"1-minute load average before/after: {payload['load_average_before_after']} "
        "(other jobs share the machine; per-epoch times are in the JSON).",
        "",
    ]
    atomic.write_text(f"{args.out}.md", "\n".join(lines))
    print("\n".join(lines))
    return 0 if payload["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
