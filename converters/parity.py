"""Accuracy parity of a converted model against its float reference, in numpy.

The figures are defined in ``DEFINITIONS``, which ``parity.json`` carries too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFINITIONS = {
    "top1": "fraction of images whose arg-max class equals the label",
    "gap_points": "100 x (reference top-1 - converted top-1); positive = converted is worse",
    "agreement": "fraction of images where reference and converted pick the same class",
    "mean_probability_difference": "mean over images of max over classes |p_reference - p_converted|",
    "max_probability_difference": "max over images and classes |p_reference - p_converted|",
}


def top1(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy; ties resolve to the lower class index (``np.argmax``)."""
    return float(np.mean(np.argmax(probabilities, axis=-1) == labels)) if len(labels) else 0.0


def parity_metrics(labels: np.ndarray, reference: np.ndarray, converted: np.ndarray) -> dict[str, Any]:
    """Parity of ``converted`` against ``reference`` probabilities (N x classes) on ``labels``."""
    reference = np.asarray(reference, dtype=np.float64)
    converted = np.asarray(converted, dtype=np.float64)
    if reference.shape != converted.shape:
        raise ValueError(f"probability shapes differ: {reference.shape} vs {converted.shape}")
    difference = np.abs(reference - converted)
    reference_top1 = top1(reference, labels)
    converted_top1 = top1(converted, labels)
    return {
        "reference_top1": reference_top1,
        "top1": converted_top1,
        "gap_points": round((reference_top1 - converted_top1) * 100.0, 6),
        "agreement": float(np.mean(np.argmax(reference, axis=-1) == np.argmax(converted, axis=-1))),
        "mean_probability_difference": float(np.mean(np.max(difference, axis=-1))),
        "max_probability_difference": float(np.max(difference)),
        "images": int(len(labels)),
    }
