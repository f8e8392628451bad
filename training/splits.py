"""The train/validation split: carved by training, rebuilt from what a model's card records, and held-out images beyond it.

Training splits a seeded, class-balanced ``--limit`` subset of its data; ``eval --split validation``, calibration,
parity, pruning and QAT fine-tuning and the benchmarks rebuild that split from the card.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.model_card import ModelCard
from training.data import Dataset, fit_images_to_size, load_dataset, stratified_subset

DEFAULT_VALIDATION_FRACTION = 0.1  # training's default (training.train_config.TrainConfig)
# The card metrics that let a later stage rebuild the training split (SplitSettings.from_card reads them).
SPLIT_KEYS = ("validation_fraction", "split_seed", "limit", "train_images", "validation_images")


def train_validation_split(
    dataset: Dataset, validation_fraction: float = DEFAULT_VALIDATION_FRACTION, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """A fixed, seeded, stratified split: the same seed always gives the same validation images."""
    if not 0.0 < validation_fraction < 1.0:
        raise ToolkitError(f"validation fraction must be between 0 and 1, got {validation_fraction}")
    rng = np.random.default_rng(seed)
    validation: list[np.ndarray] = []
    for c in np.unique(dataset.labels):
        members = rng.permutation(np.flatnonzero(dataset.labels == c))
        take = max(1, int(round(len(members) * validation_fraction)))
        validation.append(members[:take])
    validation_indices = np.sort(np.concatenate(validation))
    return dataset.subset(np.setdiff1d(np.arange(len(dataset)), validation_indices)), dataset.subset(validation_indices)


def check_trainable(train: Dataset, validation: Dataset, validation_fraction: float) -> None:
    """One-line errors for data a classifier cannot train on: one class, or a class the split leaves without a training image."""
    if len(train.class_names) < 2:
        raise ToolkitError(f"{train.source or 'the data'} has only one class ({train.class_names[0]}); a classifier needs at least two")
    kept = np.bincount(train.labels, minlength=len(train.class_names))
    counts = kept + np.bincount(validation.labels, minlength=len(train.class_names))
    lonely = [train.class_names[index] for index in np.flatnonzero(counts == 1)]
    if lonely:
        others = f" (and {len(lonely) - 1} more class(es) like it)" if len(lonely) > 1 else ""
        raise ToolkitError(
            f"class {lonely[0]!r} has only 1 image{others}: each class needs at least 2, one to train on and one "
            f"to validate; use more images (a larger --limit)"
        )
    emptied = [train.class_names[index] for index in np.flatnonzero((counts > 0) & (kept == 0))]
    if emptied:
        raise ToolkitError(
            f"--validation-fraction {validation_fraction} puts every image of class {emptied[0]!r} into validation, "
            "leaving none to train on: lower it or use more images"
        )


@dataclasses.dataclass(frozen=True)
class SplitSettings:
    """Which images a model was trained and validated on."""

    data: str  # dataset spec: cifar10, fashion-mnist or an image folder
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION  # share of each class held out for validation
    seed: int = 0  # seed of the --limit subset and of the split
    limit: int | None = None  # size of the seeded class-balanced subset training used (None: every image)
    validation_images: int | None = None  # the split's size as the card records it; a rebuilt split must match

    @classmethod
    def from_card(cls, card: ModelCard, data: str) -> "SplitSettings":
        """The split recorded in the card (training's defaults where it records none), carved from ``data``."""
        recorded = {**card.architecture, **card.metrics}
        limit = recorded.get("limit")  # None: training used every image
        if "limit" not in recorded and recorded.get("train_images") and recorded.get("validation_images"):
            # Training ran on load_dataset(data, limit, seed) with limit = train + validation images.
            limit = int(recorded["train_images"]) + int(recorded["validation_images"])
        expected = card.metrics.get("validation_images")
        return cls(
            data,
            validation_fraction=float(recorded.get("validation_fraction", DEFAULT_VALIDATION_FRACTION)),
            seed=int(recorded.get("split_seed", 0)),
            limit=None if limit is None else int(limit),
            validation_images=None if expected is None else int(expected),
        )


def split_metrics(settings: SplitSettings, train: Dataset, validation: Dataset) -> dict[str, Any]:
    """The SPLIT_KEYS figures of a model's card: the split ``settings`` carved into ``train`` and ``validation``."""
    return {
        "train_images": len(train),
        "validation_images": len(validation),
        "validation_fraction": settings.validation_fraction,
        "split_seed": settings.seed,
        "limit": settings.limit,
    }


def fit_to_card(dataset: Dataset, card: ModelCard, spec: str) -> Dataset:
    """The images resized to the card's input size, as training did for a model started from another's
    (``toolkit train --from``); one-line errors when the classes or the channels differ."""
    if list(dataset.class_names) != list(card.labels):
        raise ToolkitError(
            f"{spec} has classes {', '.join(dataset.class_names[:5])}{'...' if len(dataset.class_names) > 5 else ''} "
            f"but the model was trained on {', '.join(card.labels[:5])}{'...' if len(card.labels) > 5 else ''}"
        )
    shape = [int(value) for value in dataset.images.shape[1:]]
    if shape[2] != int(card.input_size[2]):
        raise ToolkitError(f"{spec} holds {shape[1]}x{shape[0]}x{shape[2]} images but the model expects {card.input_size}")
    dataset.images = fit_images_to_size(dataset.images, int(card.input_size[0]), int(card.input_size[1]))
    return dataset


def load_split(
    settings: SplitSettings, fit_to: ModelCard | None = None, strict: bool = False, progress: bool | None = None
) -> tuple[Dataset, Dataset]:
    """The train and validation split ``settings`` describe, as training carves it.

    ``fit_to``: a card whose classes the data must have and whose input size the images
    are fitted to. ``strict`` (as training checks): two classes or more, each keeping an image to train on.
    """
    dataset = load_dataset(settings.data, limit=settings.limit, seed=settings.seed, progress=progress)
    dataset = dataset if fit_to is None else fit_to_card(dataset, fit_to, settings.data)
    train, validation = train_validation_split(dataset, settings.validation_fraction, settings.seed)
    if strict:
        check_trainable(train, validation, settings.validation_fraction)
    expected = settings.validation_images
    if expected is not None and expected != len(validation):
        raise ToolkitError(
            f"the validation split of {settings.data} has {len(validation)} images but the model card records {expected}: "
            "was the model trained on other data? use --split all"
        )
    return train, validation


def held_out_images(
    settings: SplitSettings, count: int | None, fit_to: ModelCard | None = None, progress: bool | None = None,
    validation: Dataset | None = None,
) -> tuple[Dataset, dict[str, int]]:
    """Images the model never trained on: its validation split, ``count`` of them where possible.

    A larger split gives a class-balanced ``count`` of its images, seeded by the split's seed. A smaller
    one, where training used a ``--limit`` subset, is topped up with images of the whole
    dataset outside that subset (seeded the same way): never trained on either.
    ``count`` None or 0: the whole split. ``validation``: the split's validation part, already loaded.
    Returns the images and how many came from where.
    """
    if validation is None:
        _, validation = load_split(settings, fit_to, progress=progress)
    if count and 0 < count <= len(validation):
        validation = validation.subset(stratified_subset(validation.labels, count, settings.seed))
    origin = {"validation_split": len(validation), "outside_training_subset": 0}
    if not count or count <= len(validation) or settings.limit is None:
        return validation, origin
    full = load_dataset(settings.data, progress=progress)
    # The limited subset is stratified_subset(labels, limit, seed) of the full listing
    # (training.data.load_dataset); everything else was never loaded for training.
    outside = full.subset(np.setdiff1d(np.arange(len(full)), stratified_subset(full.labels, settings.limit, settings.seed)))
    picked = outside.subset(stratified_subset(outside.labels, min(count - len(validation), len(outside)), settings.seed))
    picked = picked if fit_to is None else fit_to_card(picked, fit_to, settings.data)
    origin["outside_training_subset"] = len(picked)
    images = np.concatenate([validation.images, picked.images])
    labels = np.concatenate([validation.labels, picked.labels])
    return Dataset(images, labels, validation.class_names, validation.source), origin
