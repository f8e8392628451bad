"""Datasets as in-memory uint8 arrays: CIFAR-10, Fashion-MNIST and image folders.

Everything returns a :class:`Dataset` (RGB or grey uint8 images, int labels, class
names) so training, calibration, evaluation and benchmarks share one loader. No
TensorFlow is needed: images are decoded with OpenCV.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from toolkit.errors import ToolkitError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclasses.dataclass
class Dataset:
    """Images and labels held in memory."""

    images: np.ndarray  # uint8, N x H x W x C, RGB (C=3) or grey (C=1)
    labels: np.ndarray  # int64, N, index into class_names
    class_names: list[str]  # label names, index = class id
    source: str = ""  # human-readable origin, recorded in model cards

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> "Dataset":
        """The examples at ``indices``, in that order."""
        return Dataset(self.images[indices], self.labels[indices], self.class_names, self.source)


def load_dataset(spec: str, limit: int | None = None, seed: int = 0) -> Dataset:
    """Load ``cifar10``, ``fashion-mnist`` or an image folder path.

    ``limit`` keeps a seeded, class-balanced subset of that many examples (for quick
    runs and tests).
    """
    if spec in ("cifar10", "cifar-10"):
        from training.datasets import load_cifar10

        dataset = load_cifar10()
    elif spec in ("fashion-mnist", "fashion_mnist"):
        from training.datasets import load_fashion_mnist

        dataset = load_fashion_mnist()
    else:
        dataset = load_image_folder(Path(spec))
    if limit is not None and limit < len(dataset):
        dataset = dataset.subset(stratified_subset(dataset.labels, limit, seed))
    return dataset


def load_image_folder(root: Path) -> Dataset:
    """An image folder: ``root/<class>/<image>``; class ids follow sorted folder names."""
    if not root.is_dir():
        raise ToolkitError(f"data folder {root} does not exist (expected ROOT/<class>/<image>.jpg)")
    class_dirs = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not class_dirs:
        raise ToolkitError(f"data folder {root} has no class subfolders (expected ROOT/<class>/<image>.jpg)")
    import cv2

    images: list[np.ndarray] = []
    labels: list[int] = []
    for class_index, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                continue
            images.append(image[:, :, ::-1])
            labels.append(class_index)
    if not images:
        raise ToolkitError(f"data folder {root} holds no readable images")
    return Dataset(np.stack(images), np.asarray(labels, np.int64), [path.name for path in class_dirs], str(root))


def stratified_subset(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Indices of a seeded subset of ``count`` examples with classes as balanced as possible."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = {int(c): rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    chosen: list[int] = []
    round_index = 0
    while len(chosen) < count:
        added = False
        for c in classes:
            members = per_class[int(c)]
            if round_index < len(members) and len(chosen) < count:
                chosen.append(int(members[round_index]))
                added = True
        if not added:
            break
        round_index += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))


def train_validation_split(dataset: Dataset, validation_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
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
    mask = np.ones(len(dataset), dtype=bool)
    mask[validation_indices] = False
    return dataset.subset(np.flatnonzero(mask)), dataset.subset(validation_indices)


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, on the [0, 1] scale."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    mean = pixels.mean(axis=0)
    std = np.maximum(pixels.std(axis=0), 1e-3)
    return [float(value) for value in mean], [float(value) for value in std]
