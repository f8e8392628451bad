"""Keras callbacks of the training loop: NaN guard, progress bar, weight average, batch-norm recalibration (the checkpoints:
training.run_folder)."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from training.backend import keras

EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")  # what Keras logs at the end of an epoch, validated


def current_learning_rate(model: Any) -> float:
    """The optimizer's learning rate at its current step (schedules evaluated)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss (or, at epoch end, weights) and remembers where.

    Must come before :class:`training.run_folder.RunCheckpoint` in the callback list, which then skips
    the broken epoch so the last good checkpoint stays on disk.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failure: dict[str, Any] | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._check((logs or {}).get("loss"), batch + 1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key in ("loss", "val_loss"):
            self._check((logs or {}).get(key), None)
        # Under XLA the cross-entropy's clip can turn NaN probabilities into a finite loss,
        # so a model whose weights went NaN would otherwise look merely untrained.
        if self.failure is None and not all(np.all(np.isfinite(weight)) for weight in self.model.get_weights()):
            self._fail(None, "the weights became NaN or infinite")

    def _check(self, value: Any, step: int | None) -> None:
        if value is not None and self.failure is None and not math.isfinite(float(value)):
            self._fail(step, "the loss became NaN")

    def _fail(self, step: int | None, what: str) -> None:
        self.failure = {"epoch": self.epoch + 1, "step": step, "what": what, "learning_rate": current_learning_rate(self.model)}
        self.model.stop_training = True


class ProgressBar(keras.callbacks.Callback):
    """A tqdm bar per epoch (steps, loss, accuracy) and, without or after it, one summary line per epoch."""

    def __init__(self, epochs: int | None, steps_per_epoch: int, bar: bool = True, summary: bool = True) -> None:
        super().__init__()
        self.epochs, self.steps_per_epoch, self.show_bar, self.summary = epochs, steps_per_epoch, bar, summary
        self.bar = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self.show_bar:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.steps_per_epoch, desc=self._name(epoch), unit="step", leave=False, file=sys.stderr, mininterval=0.5
        )

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if logs and (batch % 5 == 0 or batch + 1 == self.steps_per_epoch):
            self.bar.set_postfix(loss=f"{float(logs.get('loss', math.nan)):.4f}", accuracy=f"{float(logs.get('accuracy', math.nan)):.4f}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not self.summary:
            return
        logs = logs or {}
        parts = [f"{key} {float(logs[key]):.4f}" for key in EPOCH_METRICS if key in logs]
        print(f"{self._name(epoch)}: " + ", ".join(parts), file=sys.stderr, flush=True)

    def _name(self, epoch: int) -> str:
        return f"epoch {epoch + 1}/{self.epochs}" if self.epochs else f"epoch {epoch + 1}"


class WeightAverage(keras.callbacks.Callback):
    """Validates and saves an exponential moving average of the weights instead of the weights.

    ``average = decay * average + (1 - decay) * weights`` after every step, over all the
    model's weights (batch norm's moving statistics too, so they match the averaged
    kernels). The average is swapped in for the validation pass and the checkpoint and
    swapped out again before the next step; after the last epoch it stays in the model.
    A resumed run restarts the average from the checkpoint's weights.
    """

    def __init__(self, decay: float) -> None:
        super().__init__()
        self.decay = float(decay)
        self.average: list[np.ndarray] | None = None
        self.training_weights: list[np.ndarray] | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.average = [np.array(weight, np.float32) for weight in self.model.get_weights()]

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.training_weights is not None:  # the averaged weights were validated and saved: train on
            self.model.set_weights(self.training_weights)
            self.training_weights = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        for average, weight in zip(self.average, self.model.get_weights()):
            average *= self.decay
            average += (1.0 - self.decay) * weight

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self.training_weights is None:
            self.training_weights = self.model.get_weights()
            self.model.set_weights(self.average)


class BatchNormRecalibration(keras.callbacks.Callback):
    """Sets every batch norm's moving statistics to those of ``images`` (normalised, unaugmented training images)
    before each validation, so that what is validated and saved is normalised by its own weights' statistics.

    The moving averages lag when an epoch is shorter than their horizon (momentum 0.99 averages about 100 steps)
    and follow augmented, dropped-out batches; on 1,000 images that costs points. One forward pass in training mode
    with momentum 0 makes each layer's moving mean and variance those of the one batch, and dropout at rate 0 makes
    them the statistics the layer sees at inference.
    """

    def __init__(self, images: np.ndarray) -> None:
        super().__init__()
        self.images = images

    def on_test_begin(self, logs: dict | None = None) -> None:
        saved = [(layer, "momentum", layer.momentum) for layer in batch_norm_layers(self.model)]
        saved += [(layer, "rate", layer.rate) for layer in self.model.layers if isinstance(layer, keras.layers.Dropout)]
        for layer, name, _ in saved:
            setattr(layer, name, 0.0)
        try:
            self.model(self.images, training=True)
        finally:
            for layer, name, value in saved:
                setattr(layer, name, value)


def batch_norm_layers(model: Any) -> list[Any]:
    """The model's batch-norm layers."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
