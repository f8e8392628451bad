"""Learning rate by the share of the run done: of its steps, or of a wall-clock budget.

``LearningRateByProgress`` sets the optimizer's rate before every step from the fraction
``p`` of the run already spent: a linear warm-up over ``warmup_fraction``, then linear
(or cosine) decay to zero at ``p = 1``. With a budget, ``p`` is wall time spent over the
time left for training, so a machine that slows down mid-run still ends on time with the
rate at zero; the time spent is saved with every checkpoint, so ``--resume`` continues it.
"""

from __future__ import annotations

import math
import time

from training.backend import keras

# Share of the budget held back for the last validation pass and checkpoint until one was measured.
INITIAL_RESERVE_FRACTION = 0.02
# The last validation and checkpoint are assumed to take this much longer than a recent one.
RESERVE_MARGIN = 1.5


def rate_at(fraction: float, peak: float, warmup_fraction: float, shape: str = "linear") -> float:
    """The learning rate after ``fraction`` (0..1) of the run: warm-up to ``peak``, then decay to 0."""
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction < warmup_fraction:
        return peak * fraction / warmup_fraction
    decay = (fraction - warmup_fraction) / max(1e-12, 1.0 - warmup_fraction)
    if shape == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * decay))
    return peak * (1.0 - decay)


class LearningRateByProgress(keras.callbacks.Callback):
    """Sets the learning rate before each step from the share spent of ``total_steps`` or of ``budget_seconds`` (after
    ``seconds_spent`` in earlier sessions); a budgeted run stops, ``finished``, when only its last validation still fits."""

    def __init__(self, peak: float, warmup_fraction: float, shape: str = "linear", total_steps: int | None = None,
                 budget_seconds: float | None = None, seconds_spent: float = 0.0, steps_per_epoch: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.peak, self.warmup_fraction, self.shape = peak, warmup_fraction, shape
        self.total_steps, self.steps_per_epoch, self.budget_seconds = total_steps, steps_per_epoch, budget_seconds
        self.spent_before = seconds_spent
        self.initial_reserve = INITIAL_RESERVE_FRACTION * budget_seconds if budget_seconds else 0.0
        self.started = time.perf_counter()
        self.step_seconds = 0.0
        self.first_step_seconds: float | None = None
        self.step_started = 0.0
        self.test_started: float | None = None
        self.pass_seconds: list[float] = []  # the latest two validation passes (with their checkpoints) of this process
        self.finished = False

    def seconds_spent(self) -> float:
        """Wall time of this run so far, earlier sessions included."""
        return self.spent_before + time.perf_counter() - self.started

    def fraction(self) -> float:
        if self.budget_seconds is not None:
            return self.seconds_spent() / max(1e-9, self.budget_seconds - self.reserve_seconds())
        iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        return iterations / max(1, self.total_steps or 1)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def reserve_seconds(self) -> float:
        """Time held back for the last validation pass and checkpoint."""
        if self.pass_seconds:
            # The faster of the latest two passes: the first one in a process also compiled, and one slowed by
            # a disk flush or another process would end the run early by three times the delay.
            return RESERVE_MARGIN * min(self.pass_seconds)
        if self.first_step_seconds is None:
            return self.initial_reserve
        # No validation pass timed in this process yet: its first one compiles, as the first step did.
        return max(self.initial_reserve, RESERVE_MARGIN * self.first_step_seconds)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.test_started is not None:  # the validation and checkpoint of the previous epoch just ended
            self.pass_seconds = [*self.pass_seconds[-1:], time.perf_counter() - self.test_started]
            self.test_started = None
        self.step_started = time.perf_counter()
        self.model.optimizer.learning_rate = rate_at(self.fraction(), self.peak, self.warmup_fraction, self.shape)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self.step_started
        if self.first_step_seconds is None:
            self.first_step_seconds = seconds
        self.step_seconds = seconds if not self.step_seconds else 0.9 * self.step_seconds + 0.1 * seconds
        if self.budget_seconds is None:
            return
        # Stop when one more step would leave too little time for the last validation and checkpoint;
        # after an epoch's last step, that step comes after this epoch's validation.
        validations = 2 if self.steps_per_epoch and (batch + 1) % self.steps_per_epoch == 0 else 1
        if self.seconds_spent() + self.step_seconds + validations * self.reserve_seconds() >= self.budget_seconds:
            self.finished = True
            self.model.stop_training = True

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.test_started = time.perf_counter()
