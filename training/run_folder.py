"""The run folder of ``toolkit train`` and its crash-safe bookkeeping.

    RUN/config.json                   resolved configuration (what --resume continues)
    RUN/last.keras, RUN/last.card.json   model + optimizer state after the latest epoch
    RUN/best.keras, RUN/best.card.json   the latest epoch within one standard error of the best validation accuracy
    RUN/state.json                    epoch counter, history, checkpoint hashes (for --resume)
    RUN/history.csv, RUN/curves.png, RUN/metrics.json

Every file is written atomically. A SIGKILL can still land between two files, so the
state names the SHA-256 of the checkpoints it describes *and* of the previous ones:
on resume, whichever of the two ``last.keras`` matches decides the epoch counter, and
files derived from the state (cards, history, curves, metrics) are rewritten.
:class:`RunCheckpoint` is the Keras callback that writes an epoch into it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from toolkit import atomic
from toolkit.errors import ToolkitError
from toolkit.model_card import ModelCard, save_card
from training.backend import keras
from training.callbacks import EPOCH_METRICS, NanGuard, current_learning_rate
from training.splits import SPLIT_KEYS

HISTORY_COLUMNS = ("epoch", *EPOCH_METRICS, "learning_rate", "seconds")
# The names cards and metrics.json give a history row's columns.
ROW_METRICS = {"val_accuracy": "validation_accuracy", "val_loss": "validation_loss", "accuracy": "train_accuracy", "loss": "train_loss"}


class RunFolder:
    """Paths and writers of one training run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.state_path = self.root / "state.json"
        self.last = self.root / "last.keras"
        self.best = self.root / "best.keras"
        self.history = self.root / "history.csv"
        self.curves = self.root / "curves.png"
        self.metrics = self.root / "metrics.json"
        self.state: dict[str, Any] = {}
        self.plotted_rows: list[dict] | None = None  # the history curves.png shows, drawn by this process

    def holds_run(self) -> bool:
        """True when a run has already started here (a fresh run must not overwrite it)."""
        return self.state_path.exists() or self.last.exists()

    def has_checkpoint(self) -> bool:
        """True when at least one epoch was checkpointed (something for --resume to continue)."""
        return self.state_path.exists() and self.last.exists()

    def read_config(self) -> dict[str, Any]:
        if not self.config.exists():
            raise ToolkitError(f"{self.root} is not a run folder: {self.config} is missing")
        return json.loads(self.config.read_text())

    def remove_temporary_files(self) -> None:
        """Delete the temporary files a killed run left (``.last.x1y2.keras``, ``.state.x1y2.json`` ...)."""
        for name in (self.last, self.best, self.state_path, self.history, self.curves, self.metrics,
                     self.root / "last.card.json", self.root / "best.card.json"):  # fmt: skip
            stem, suffix = name.name.rsplit(".", 1)
            for stale in self.root.glob(f".{stem}.*.{suffix}"):
                stale.unlink(missing_ok=True)

    def read_metrics(self) -> dict[str, Any]:
        """metrics.json as written after the last epoch, or {} when there is none yet."""
        return atomic.read_json_object(self.metrics)

    def start(self, steps_per_epoch: int) -> None:
        """Begin a fresh run: an empty state (and none of a killed attempt's temporary files)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.remove_temporary_files()
        self.state = {"epochs_completed": 0, "steps_per_epoch": steps_per_epoch, "history": [], "last_sha256": None,
                      "best": None, "previous": None, "resumed_at_epochs": []}

    def recover(self) -> dict[str, Any]:
        """Load the state of an interrupted run and make it agree with the checkpoints on disk (after :meth:`has_checkpoint`)."""
        try:
            state = json.loads(self.state_path.read_text())
        except json.JSONDecodeError as error:
            raise ToolkitError(f"cannot resume {self.root}: state.json is not valid JSON ({error})") from None
        last_sha = atomic.file_digest(self.last)
        if last_sha != state["last_sha256"]:
            previous = state.get("previous")
            if not previous or previous["last_sha256"] != last_sha:
                raise ToolkitError(f"cannot resume {self.root}: last.keras matches no epoch recorded in state.json")
            # Killed after the state was written but before last.keras was renamed.
            state.update(previous)
            state["history"] = state["history"][: state["epochs_completed"]]
            state["previous"] = None
        best = state.get("best")
        if best and (not self.best.exists() or atomic.file_digest(self.best) != best["sha256"]):
            if best["sha256"] != last_sha:
                raise ToolkitError(f"cannot resume {self.root}: best.keras matches no epoch recorded in state.json")
            # Killed between renaming last.keras and best.keras: they are the same checkpoint.
            with atomic.atomic_path(self.best) as temporary:
                shutil.copyfile(self.last, temporary)
        self.remove_temporary_files()
        state.setdefault("resumed_at_epochs", [])
        self.state = state
        return state

    def publish_epoch(self, save_model: Callable[[Path], None], row: dict[str, float], card: ModelCard,
                      summary: dict[str, Any]) -> None:
        """Checkpoint one finished epoch: last (and best when it ties with the best so far), state, cards, history, curves."""
        state = self.state
        earlier = state["history"][: state["epochs_completed"]]
        is_best = state["best"] is None or _ties_with_best(earlier, row, summary.get("validation_images"))
        previous = {key: state[key] for key in ("epochs_completed", "last_sha256", "best")}
        with contextlib.ExitStack() as stack:
            # Renames happen in reverse order of entry: last.keras first, then best.keras.
            best_temporary = stack.enter_context(atomic.atomic_path(self.best)) if is_best else None
            last_temporary = stack.enter_context(atomic.atomic_path(self.last))
            save_model(last_temporary)
            sha = atomic.file_digest(last_temporary)
            if best_temporary is not None:
                shutil.copyfile(last_temporary, best_temporary)
            state["history"] = earlier + [row]
            state["epochs_completed"] = int(row["epoch"])
            state["last_sha256"] = sha
            if is_best:
                state["best"] = {"epoch": int(row["epoch"]), "validation_accuracy": row["val_accuracy"], "sha256": sha}
            state["previous"] = previous
            atomic.write_json(self.state_path, state)
        self.write_derived(card, summary)

    def write_derived(self, card: ModelCard, summary: dict[str, Any]) -> None:
        """Cards, history.csv, curves.png and metrics.json, all computed from the state."""
        state = self.state
        rows = state["history"]
        if not rows:
            return
        save_card(card.replace(metrics=_card_metrics(rows[-1], summary)), self.last)
        best = state["best"] or {}
        if best:
            best_row = next(row for row in rows if int(row["epoch"]) == best["epoch"])
            save_card(card.replace(metrics=_card_metrics(best_row, summary)), self.best)
        write_history_csv(rows, self.history)
        if rows != self.plotted_rows:  # the write after the last epoch adds figures, not epochs
            plot_history(rows, self.curves, title=str(summary.get("title", "")))
            self.plotted_rows = list(rows)
        atomic.write_json(self.metrics, {
            "epochs_completed": state["epochs_completed"],
            "best_epoch": best.get("epoch"),
            "best_validation_accuracy": best.get("validation_accuracy"),
            **{f"final_{name}": rows[-1][key] for key, name in ROW_METRICS.items()},
            "training_seconds": round(sum(row["seconds"] for row in rows), 2),
            "resumed_at_epochs": state.get("resumed_at_epochs", []),
            **{key: value for key, value in summary.items() if key != "title"},
        })


def _card_metrics(row: dict[str, float], summary: dict[str, Any]) -> dict[str, Any]:
    """A card's metrics: the epoch's history row and the split it was measured on."""
    return {
        "epoch": int(row["epoch"]),
        **{name: row[key] for key, name in ROW_METRICS.items()},
        **{key: summary[key] for key in SPLIT_KEYS if key in summary},
    }


def _ties_with_best(history: list[dict], row: dict, validation_images: int | None) -> bool:
    """True when ``row``'s validation accuracy is within one standard error of the highest so far.

    The latest such epoch becomes best.keras: on a small validation split, epochs that differ by
    less than sampling noise are a tie, and the later epochs of a decaying learning rate are the
    better bet (on 110 validation images one standard error is about 3 points).
    """
    highest = max(previous["val_accuracy"] for previous in [*history, row])
    error = math.sqrt(highest * (1.0 - highest) / validation_images) if validation_images else 0.0
    return row["val_accuracy"] >= highest - error


def history_row(epoch: int, logs: dict | None, learning_rate: float, started: float) -> dict[str, float]:
    """The HISTORY_COLUMNS row of Keras's ``epoch`` (counted from 0), begun at ``started`` (time.perf_counter())."""
    logs = logs or {}
    return {
        "epoch": epoch + 1,
        **{key: float(logs.get(key, math.nan)) for key in EPOCH_METRICS},
        "learning_rate": float(learning_rate),
        "seconds": round(time.perf_counter() - started, 3),
    }


def write_history_csv(rows: Sequence[dict], target: str | Path, columns: Sequence[str] = HISTORY_COLUMNS) -> None:
    """``rows`` as a CSV file of ``columns`` (other keys left out), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(target, buffer.getvalue())


def plot_history(rows: Sequence[dict], target: str | Path, title: str = "") -> None:
    """Draw loss (left) and accuracy (right) from history rows and write ``target`` atomically."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(10, 4))  # no pyplot: no GUI backend, no global figure to close
    loss_axis, accuracy_axis = figure.subplots(1, 2)
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
    with atomic.atomic_path(target) as temporary:
        figure.savefig(temporary, format="png", dpi=100)


class RunCheckpoint(keras.callbacks.Callback):
    """Writes every epoch the NaN guard let through into the run folder, fixing each epoch's shuffle and augmentation
    first so a resumed run sees what an unbroken one would. Its images/s: this session's steps over their time, without
    validation (a budgeted run's last epoch ends early)."""

    def __init__(self, run: RunFolder, card: ModelCard, summary: dict[str, Any], guard: NanGuard,
                 batches: Any, batch_size: int, clock: Any = None) -> None:  # fmt: skip
        super().__init__()
        self.run, self.card, self.summary, self.guard = run, card, summary, guard
        self.batches, self.batch_size, self.clock = batches, batch_size, clock
        self.started = self.training_seconds = 0.0
        self.steps = 0  # trained in this session; training_seconds is their time

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.batches.set_epoch(epoch)
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps += 1

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.training_seconds += time.perf_counter() - self.started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.guard.failure is not None:
            return
        row = history_row(epoch, logs, current_learning_rate(self.model), self.started)
        self.summary["images_per_second"] = round(self.steps * self.batch_size / max(self.training_seconds, 1e-9), 1)
        if self.clock is not None:
            self.run.state["seconds_spent"] = self.summary["seconds_spent"] = round(self.clock.seconds_spent(), 1)
            self.run.state["finished"] = self.clock.finished
        self.run.publish_epoch(lambda path: self.model.save(path), row, self.card, self.summary)
