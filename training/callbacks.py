"""Keras callbacks of the training loop: NaN guard, per-epoch checkpointing, progress bar."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable

import numpy as np

from training.backend import keras


def current_learning_rate(model: Any) -> float:
    """The optimizer's learning rate at its current step (schedules evaluated)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss (or, at epoch end, weights) and remembers where.

    Must come before :class:`EpochCheckpoint` in the callback list, which then skips
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
        if value is None or self.failure is not None:
            return
        if not math.isfinite(float(value)):
            self._fail(step, "the loss became NaN")

    def _fail(self, step: int | None, what: str) -> None:
        self.failure = {"epoch": self.epoch + 1, "step": step, "what": what, "learning_rate": current_learning_rate(self.model)}
        self.model.stop_training = True


class EpochCheckpoint(keras.callbacks.Callback):
    """Hands every finished epoch's logs to ``publish(model, epoch, logs, seconds)`` unless the NaN guard fired."""

    def __init__(self, publish: Callable[[Any, int, dict, float], None], guard: NanGuard, on_epoch_begin: Callable[[int], None]) -> None:
        super().__init__()
        self.publish = publish
        self.guard = guard
        self.begin_hook = on_epoch_begin
        self.started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.begin_hook(epoch)
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.guard.failure is not None:
            return
        self.publish(self.model, epoch, dict(logs or {}), time.perf_counter() - self.started)


class ProgressBar(keras.callbacks.Callback):
    """A tqdm bar per epoch (steps, loss, accuracy) and, without or after it, one summary line per epoch."""

    def __init__(self, epochs: int, steps_per_epoch: int, bar: bool = True, summary: bool = True) -> None:
        super().__init__()
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.show_bar = bar
        self.summary = summary
        self.bar = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self.show_bar:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=False, file=sys.stderr, mininterval=0.5
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
        parts = [f"{key} {float(logs[key]):.4f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy") if key in logs]
        print(f"epoch {epoch + 1}/{self.epochs}: " + ", ".join(parts), file=sys.stderr, flush=True)
