"""Learning-rate schedules, evaluated per optimizer step and saved inside the checkpoint, and their record in config.json.

``paper``: Springenberg et al. multiply the rate by 0.1 at epochs 200, 250 and 300 of
350, scaled to other epoch counts (100 epochs: 57, 71, 86; :func:`paper_milestones`).
``cosine`` (default): linear warm-up from 0 to the base rate, then cosine decay to 0.
Both are ``LearningRateSchedule`` objects of the optimizer, so ``last.keras`` restores them
and the optimizer's step counter gives the position after ``--resume``. (``linear`` and
``--budget`` runs: training.budget.)
"""

from __future__ import annotations

import math
from typing import Any

from training.backend import keras
from training.train_config import SCHEDULES, TrainConfig

PAPER_EPOCHS = 350
PAPER_MILESTONES = (200, 250, 300)
PAPER_FACTOR = 0.1


def paper_milestones(epochs: int) -> list[int]:
    """The paper's drop epochs (200, 250, 300 of 350) scaled to a run of ``epochs``."""
    return [max(1, int(round(milestone * epochs / PAPER_EPOCHS))) for milestone in PAPER_MILESTONES]


def warmup_steps_for(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    """Warm-up length in steps: ``warmup_epochs`` long, but at most a tenth of the run."""
    return int(min(round(warmup_epochs * steps_per_epoch), total_steps // 10))


@keras.saving.register_keras_serializable(package="toolkit")
class PiecewiseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``base * factor ** (number of boundaries passed)``; boundaries are step numbers."""

    def __init__(self, base_learning_rate: float, boundaries: list[int], factor: float = PAPER_FACTOR) -> None:
        self.base_learning_rate = float(base_learning_rate)
        self.boundaries = [int(boundary) for boundary in boundaries]
        self.factor = float(factor)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        passed = keras.ops.zeros((), "float32")
        for boundary in self.boundaries:
            passed = passed + keras.ops.cast(keras.ops.greater_equal(step, float(boundary)), "float32")
        return self.base_learning_rate * keras.ops.power(self.factor, passed)

    def get_config(self) -> dict[str, Any]:
        return {"base_learning_rate": self.base_learning_rate, "boundaries": self.boundaries, "factor": self.factor}


@keras.saving.register_keras_serializable(package="toolkit")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over ``warmup_steps`` to ``base``, then ``base * (1 + cos(pi * t)) / 2`` down to 0."""

    def __init__(self, base_learning_rate: float, total_steps: int, warmup_steps: int = 0) -> None:
        self.base_learning_rate = float(base_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        # Step s trains with the rate of s + 1 during warm-up, so the first step is not wasted at 0.
        warmup = self.base_learning_rate * (step + 1.0) / float(max(1, self.warmup_steps))
        decay_length = float(max(1, self.total_steps - self.warmup_steps))
        progress = keras.ops.clip((step - float(self.warmup_steps)) / decay_length, 0.0, 1.0)
        cosine = 0.5 * self.base_learning_rate * (1.0 + keras.ops.cos(math.pi * progress))
        return keras.ops.where(step < float(self.warmup_steps), warmup, cosine)

    def get_config(self) -> dict[str, Any]:
        return {"base_learning_rate": self.base_learning_rate, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def create_schedule(
    name: str, base_learning_rate: float, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0
) -> keras.optimizers.schedules.LearningRateSchedule:
    """The schedule ``name`` (one of SCHEDULES) for a run of ``epochs`` x ``steps_per_epoch`` steps."""
    total_steps = epochs * steps_per_epoch
    if name == "paper":
        return PiecewiseDecay(base_learning_rate, [epoch * steps_per_epoch for epoch in paper_milestones(epochs)])
    if name == "cosine":
        return WarmupCosine(base_learning_rate, total_steps, warmup_steps_for(warmup_epochs, steps_per_epoch, total_steps))
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def describe_schedule(config: TrainConfig, steps_per_epoch: int) -> dict[str, Any]:
    """The learning-rate schedule of a run, as its config.json records it."""
    total_steps = config.epochs * steps_per_epoch
    if config.budget_seconds is not None or config.schedule == "linear":
        return {
            "name": config.schedule,
            "warmup_fraction": config.warmup_fraction,
            "by": "wall time" if config.budget_seconds is not None else "steps",
            "budget_seconds": config.budget_seconds,
            "total_steps": None if config.budget_seconds is not None else total_steps,
            "note": "linear warm-up over warmup_fraction of the run, then decay to zero at its end",
        }
    if config.schedule == "paper":
        return {
            "name": "paper",
            "milestone_epochs": paper_milestones(config.epochs),
            "factor": PAPER_FACTOR,
            "note": "the paper's x0.1 at epochs 200, 250, 300 of 350, scaled to this run's epochs",
        }
    return {
        "name": "cosine",
        "warmup_steps": warmup_steps_for(config.warmup_epochs, steps_per_epoch, total_steps),
        "total_steps": total_steps,
    }
