"""Evaluate a ``.keras`` or ``.tflite`` model on a dataset: top-1, top-5, per-class accuracy, confusion matrix.

Both formats run behind one :class:`toolkit.preprocessing.Predictor` fed from the card beside the model,
so a float model and its int8 conversion are scored on identical inputs.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import atomic, preprocessing
from toolkit.errors import ToolkitError
from toolkit.model_card import ModelCard, check_card_matches, load_card
from toolkit.preprocessing import Predictor
from training.data import Dataset, load_dataset, stratified_subset
from training.model_files import check_model_path, load_keras3
from training.splits import SplitSettings, load_split

# Several models predicting in one process (a pipeline's stages, parity) retrace Keras's predict step, and
# TensorFlow warns about each retrace; for predictions that is expected and costs under a second.
logging.getLogger("tensorflow").addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())
FORMATS = {".keras": "keras", ".tflite": "tflite"}


class KerasPredictor(Predictor):
    """A Keras model of either stack (Keras 3 or tf_keras) behind :class:`toolkit.preprocessing.Predictor`."""

    def __init__(self, model: Any, card: ModelCard) -> None:
        super().__init__(card)
        self.model = model

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """The model's outputs for normalised float32 inputs, in inference mode."""
        return np.asarray(self.model.predict_on_batch(inputs), dtype=np.float32)


def load_predictor(model_path: str | os.PathLike, threads: int | None = None) -> Predictor:
    """A ``.keras`` model (tf_keras files with tfmot wrappers too) or a ``.tflite`` model on the edge app's
    runtime (``threads``), checked against the card beside it. Load once, predict many times."""
    model_path = check_model_path(model_path, tuple(FORMATS))
    if model_path.suffix.lower() != ".keras":
        from edge_app.runtime import TFLitePredictor

        return TFLitePredictor(model_path, threads=threads)
    card = load_card(model_path)
    model = load_keras3(model_path, tf_keras_fallback=True)
    check_card_matches(model_path, card, input_shape=model.input_shape[1:], num_outputs=model.output_shape[-1])
    return KerasPredictor(model, card)


def predict_with_progress(predictor: Predictor, images: np.ndarray, description: str, batch_size: int = 256,
                          progress: bool | None = None) -> np.ndarray:  # fmt: skip
    """Class probabilities (N x num_classes, float32) for uint8 images of any size, under a progress bar
    (``progress`` None: only on a terminal)."""
    from tqdm.auto import tqdm

    disable = None if progress is None else not progress
    with tqdm(total=len(images), desc=description, unit="img", leave=False, disable=disable) as bar:
        return predictor.predict(images, batch_size, on_batch=bar.update)


def label_mapping(dataset_classes: list[str], model_labels: list[str]) -> np.ndarray:
    """For each dataset class id, the model's class id with the same name (exact, else case-insensitive)."""
    exact = {name: index for index, name in enumerate(model_labels)}
    folded = {name.casefold(): index for index, name in enumerate(model_labels)}
    mapping = [exact.get(name, folded.get(name.casefold())) for name in dataset_classes]
    unknown = [name for name, index in zip(dataset_classes, mapping) if index is None]
    if unknown:
        raise ToolkitError(
            f"dataset class(es) {', '.join(unknown)} are not among the model's labels ({', '.join(model_labels)}); "
            "class folders must use the model card's label names"
        )
    return np.asarray(mapping, dtype=np.int64)


def plot_confusion_matrix(matrix: np.ndarray, labels: list[str], path: str | os.PathLike, title: str = "") -> Path:
    """Write a confusion-matrix PNG (rows normalised to recall, counts written in the cells), atomically."""
    from matplotlib.figure import Figure

    count = len(labels)
    side = max(4.5, 0.55 * count + 2.5)
    figure = Figure(figsize=(side + 1.0, side))  # no pyplot: no GUI backend, no global figure to close
    axes = figure.add_subplot()
    totals = matrix.sum(axis=1, keepdims=True)
    recall = np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)
    shown = axes.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    axes.set_xticks(range(count), labels, rotation=45, ha="right")
    axes.set_yticks(range(count), labels)
    axes.set(xlabel="predicted", ylabel="true")
    if title:
        axes.set_title(title, fontsize=10)
    if count <= 30:
        for row, column in zip(*np.nonzero(matrix)):
            colour = "white" if recall[row, column] > 0.5 else "black"
            axes.text(column, row, str(matrix[row, column]), ha="center", va="center", fontsize=7, color=colour)
    figure.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=120, format="png")
    return Path(path)


def evaluate(model_path: str | os.PathLike, dataset: Dataset, batch_size: int = 256,
             confusion_path: str | os.PathLike | None = None, progress: bool | None = None,
             predictor: Predictor | None = None) -> dict[str, Any]:
    """Score a model on ``dataset``, its classes matched to the model's labels by name; returns the report dict (top1,
    top5, per_class, n, confusion matrix...)."""
    model_path = Path(model_path)
    predictor = predictor or load_predictor(model_path)
    card = predictor.card
    if len(dataset) == 0:
        raise ToolkitError(f"dataset {dataset.source or ''} holds no images to evaluate")
    targets = label_mapping(dataset.class_names, card.labels)[dataset.labels]
    started = time.perf_counter()
    probabilities = predict_with_progress(predictor, dataset.images, f"evaluating {model_path.name}", batch_size, progress)
    seconds = time.perf_counter() - started
    ranked, _ = preprocessing.top_k(probabilities, 5)
    predictions = ranked[:, 0]
    matrix = np.zeros((card.num_classes, card.num_classes), dtype=np.int64)  # row = true class, column = predicted
    np.add.at(matrix, (targets, predictions), 1)
    counts, hits = matrix.sum(axis=1), np.diag(matrix)
    per_class = {name: float(hits[index] / counts[index]) for index, name in enumerate(card.labels) if counts[index]}
    per_class_count = {name: int(counts[index]) for index, name in enumerate(card.labels) if counts[index]}
    report = {
        "model": str(model_path),
        "format": FORMATS[model_path.suffix.lower()],
        "card_format": card.format,
        "data": dataset.source,
        "n": int(len(targets)),
        "top1": float((predictions == targets).mean()),
        "top5": float((ranked == targets[:, None]).any(axis=1).mean()),
        "top5_k": int(ranked.shape[1]),
        "per_class": per_class,
        "per_class_count": per_class_count,
        "labels": list(card.labels),
        "confusion_matrix": matrix.tolist(),
        "confusion_png": None,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(targets) / max(seconds, 1e-9), 1),
    }
    if confusion_path is not None:
        title = f"{model_path.name}: top-1 {report['top1']:.1%} on {report['n']} images"
        report["confusion_png"] = str(plot_confusion_matrix(matrix, card.labels, confusion_path, title))
    return report


def load_evaluation_data(
    data: str, card: ModelCard, split: str = "all", limit: int | None = None, seed: int = 0, progress: bool | None = None
) -> Dataset:
    """The images to evaluate on: every image of ``data`` (``all``) or the validation split training carved from it,
    as the card records (``validation``); then a seeded, class-balanced ``limit`` of them."""
    if split == "all":
        return load_dataset(data, limit=limit, seed=seed, progress=progress)
    if split != "validation":
        raise ToolkitError(f"--split must be all or validation, got {split!r}")
    _, validation = load_split(SplitSettings.from_card(card, data), progress=progress)
    if limit is not None and limit < len(validation):
        validation = validation.subset(stratified_subset(validation.labels, limit, seed))
    return validation
