"""Training curves: loss and accuracy per epoch, train and validation, as one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from toolkit.atomic import atomic_path


def plot_history(rows: Sequence[dict], target: str | Path, title: str = "") -> Path:
    """Draw loss (left) and accuracy (right) from history rows and write ``target`` atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in rows]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, label in ((loss_axis, "loss", "loss"), (accuracy_axis, "accuracy", "accuracy")):
        axis.plot(epochs, [row[key] for row in rows], marker="o", markersize=3, label=f"train {label}")
        axis.plot(epochs, [row[f"val_{key}"] for row in rows], marker="o", markersize=3, label=f"validation {label}")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    accuracy_axis.set_ylim(0.0, 1.0)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(target) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
    return Path(target)
