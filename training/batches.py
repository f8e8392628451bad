"""Shuffled, augmented, normalised batches from in-memory arrays, in numpy, for float training, pruning and QAT alike."""

from __future__ import annotations

from types import ModuleType
from typing import Sequence

import numpy as np

from toolkit.preprocessing import normalize
from training.augment import augment_batch


class BatchSource:
    """Batches of (normalised float32 images, int labels).

    ``training``: reshuffled each epoch, and only full batches (the last, smaller one is left out);
    otherwise every image once, in order.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, mean: Sequence[float], std: Sequence[float],
                 augmentation: str = "none", training: bool = False, seed: int = 0) -> None:
        self.images = images
        self.labels = labels.astype(np.int32)
        self.batch_size = int(batch_size)
        self.mean = list(mean)
        self.std = list(std)
        self.augmentation = augmentation
        self.training = training
        self.seed = seed
        self.order = np.arange(len(labels))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Fix the shuffle order for ``epoch``; a resumed run sees the same order as an unbroken one."""
        self.epoch = epoch
        if self.training:
            self.order = np.random.default_rng((self.seed, epoch)).permutation(len(self.labels))

    def __len__(self) -> int:
        count = len(self.labels) / self.batch_size
        return int(np.floor(count)) if self.training else int(np.ceil(count))

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        indices = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.images[indices]
        if self.augmentation != "none":
            images = augment_batch(images, self.augmentation, np.random.default_rng((self.seed, self.epoch, index)))
        return normalize(images, self.mean, self.std), self.labels[indices]


def as_keras_dataset(source: BatchSource, keras: ModuleType, workers: int = 1):
    """Wrap ``source`` in ``keras.utils.PyDataset`` (Keras 3) or ``keras.utils.Sequence`` (tf_keras)."""
    is_keras3 = hasattr(keras.utils, "PyDataset")
    base = keras.utils.PyDataset if is_keras3 else keras.utils.Sequence
    options = {"workers": workers, "use_multiprocessing": False} if is_keras3 else {}

    class _Dataset(base):  # type: ignore[misc, valid-type]
        def __len__(self) -> int:
            return len(source)

        def __getitem__(self, index: int):
            return source[index]

        def on_epoch_end(self) -> None:
            source.set_epoch(source.epoch + 1)

    return _Dataset(**options)
