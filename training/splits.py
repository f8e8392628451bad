"""A model's train/validation split rebuilt from what its card (or run folder) records, and held-out images beyond it.

Training splits a seeded, class-balanced ``--limit`` subset of its data; ``eval --split
validation``, calibration, parity, pruning and QAT fine-tuning and the benchmark rebuild it here:

    train, validation = load_split(SplitSettings.from_card(card, "cifar10"))
    held_out, origin = held_out_images(settings, count=1000, seed=0)   # topped up beyond a --limit subset
"""

from __future__ import annotations

import dataclasses

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.model_card import ModelCard
from training.data import Dataset, fit_images_to_size, load_dataset, stratified_subset, train_validation_split, training_split

DEFAULT_VALIDATION_FRACTION = 0.1  # training's default (training.train_config.TrainConfig)


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
        if "limit" in recorded:  # None: training used every image
            limit = None if recorded["limit"] is None else int(recorded["limit"])
        elif recorded.get("train_images") and recorded.get("validation_images"):
            # Training ran on load_dataset(data, limit, seed) with limit = train + validation images.
            limit = int(recorded["train_images"]) + int(recorded["validation_images"])
        else:
            limit = None
        fraction, seed = float(recorded.get("validation_fraction", DEFAULT_VALIDATION_FRACTION)), int(recorded.get("split_seed", 0))
        expected = card.metrics.get("validation_images")
        return cls(data, fraction, seed, limit, None if expected is None else int(expected))


def fit_to_card(dataset: Dataset, card: ModelCard, spec: str) -> Dataset:
    """The images resized to the card's input size, as training did for a model started from another's
    (``toolkit train --from``); one-line errors when the classes or the channels differ."""
    if list(dataset.class_names) != list(card.labels):
        raise ToolkitError(
            f"{spec} has classes {', '.join(dataset.class_names[:5])}{'...' if len(dataset.class_names) > 5 else ''} "
            f"but the model was trained on {', '.join(card.labels[:5])}{'...' if len(card.labels) > 5 else ''}"
        )
    if dataset.images.ndim == 3:
        dataset.images = dataset.images[..., None]
    shape = [int(value) for value in dataset.images.shape[1:]]
    if shape[2] != int(card.input_size[2]):
        raise ToolkitError(f"{spec} holds {shape[1]}x{shape[0]}x{shape[2]} images but the model expects {card.input_size}")
    dataset.images = fit_images_to_size(dataset.images, int(card.input_size[0]), int(card.input_size[1]))
    return dataset


def _load(settings: SplitSettings, limit: int | None, fit_to: ModelCard | None, progress: bool | None) -> Dataset:
    dataset = load_dataset(settings.data, limit=limit, seed=settings.seed, progress=progress)
    return dataset if fit_to is None else fit_to_card(dataset, fit_to, settings.data)


def load_split(
    settings: SplitSettings, fit_to: ModelCard | None = None, strict: bool = False, progress: bool | None = None
) -> tuple[Dataset, Dataset]:
    """The train and validation split ``settings`` describe, as training carved it.

    ``fit_to``: a card whose classes the data must have and whose input size the images
    are fitted to. ``strict``: every class must keep an image to train on
    (:func:`training.data.training_split`, as training checks).
    """
    dataset = _load(settings, settings.limit, fit_to, progress)
    split = training_split if strict else train_validation_split
    train, validation = split(dataset, settings.validation_fraction, settings.seed)
    expected = settings.validation_images
    if expected is not None and expected != len(validation):
        raise ToolkitError(
            f"the validation split of {settings.data} has {len(validation)} images but the model card records {expected}: "
            "was the model trained on other data? use --split all"
        )
    return train, validation


def held_out_images(
    settings: SplitSettings, count: int | None, seed: int, fit_to: ModelCard | None = None, progress: bool | None = None
) -> tuple[Dataset, dict[str, int]]:
    """Images the model never trained on: its validation split, ``count`` of them where possible.

    A larger split gives a seeded (``seed``), class-balanced ``count`` of its images. A smaller
    one, where training used a ``--limit`` subset, is topped up with images of the whole
    dataset outside that subset (seeded by the split's seed): never trained on either.
    ``count`` None or 0: the whole split. Returns the images and how many came from where.
    """
    _, validation = load_split(settings, fit_to, progress=progress)
    if count and 0 < count <= len(validation):
        validation = validation.subset(stratified_subset(validation.labels, count, seed))
    origin = {"validation_split": len(validation), "outside_training_subset": 0}
    if not count or count <= len(validation) or settings.limit is None:
        return validation, origin
    full = _load(settings, None, fit_to, progress)
    # The limited subset is stratified_subset(labels, limit, seed) of the full listing
    # (training.data.load_dataset); everything else was never loaded for training.
    used = np.zeros(len(full), dtype=bool)
    used[stratified_subset(full.labels, settings.limit, settings.seed)] = True
    outside = full.subset(np.flatnonzero(~used))
    picked = outside.subset(stratified_subset(outside.labels, min(count - len(validation), len(outside)), settings.seed))
    origin["outside_training_subset"] = len(picked)
    images = np.concatenate([validation.images, picked.images])
    labels = np.concatenate([validation.labels, picked.labels])
    return Dataset(images, labels, validation.class_names, validation.source), origin
