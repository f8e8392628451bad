"""From probabilities to what the user sees: optional smoothing over frames, then top-k above a threshold."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from toolkit import preprocessing


@dataclasses.dataclass
class Prediction:
    """One class in the top-k."""

    index: int  # class id
    label: str  # class name from the model card
    score: float  # (smoothed) probability

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "score": round(self.score, 5)}


class Smoother:
    """Exponential moving average of probabilities over frames.

    ``smoothed = weight * previous + (1 - weight) * current``; weight 0 turns it off,
    0.8 averages over roughly the last five frames.
    """

    def __init__(self, weight: float = 0.0) -> None:
        self.weight = weight  # in [0, 1): run_classify checks --smoothing
        self.state: np.ndarray | None = None

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        if self.weight == 0.0:
            return probabilities
        if self.state is None:
            self.state = probabilities.astype(np.float32).copy()
        else:
            self.state *= self.weight
            self.state += (1.0 - self.weight) * probabilities
        return self.state


def top_predictions(probabilities: np.ndarray, labels: list[str], k: int = 3, threshold: float = 0.0) -> list[Prediction]:
    """The ``k`` best classes, best first, leaving out those scoring below ``threshold``."""
    indices, scores = preprocessing.top_k(probabilities, k)
    return [
        Prediction(int(index), labels[int(index)] if int(index) < len(labels) else str(int(index)), float(score))
        for index, score in zip(indices, scores)
        if score >= threshold
    ]
