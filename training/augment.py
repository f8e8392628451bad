"""Augmentation in numpy, so the input pipeline needs no TensorFlow: the paper's translations and flips, or also cutout."""

from __future__ import annotations

import numpy as np

AUGMENTATIONS = ("none", "paper", "cutout")
PADDING = 4  # pixels of zero padding: translations of up to this many pixels
CUTOUT_SIZE = 7  # side of cutout's black square, odd so that it centres on a pixel (the recipes were measured with it)


def augment_batch(images: np.ndarray, policy: str, rng: np.random.Generator) -> np.ndarray:
    """Augment a uint8 batch NxHxWxC according to ``policy`` (one of AUGMENTATIONS)."""
    if policy == "none":
        return images
    if policy not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {policy!r}; choose one of {', '.join(AUGMENTATIONS)}")
    count, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (PADDING, PADDING), (PADDING, PADDING), (0, 0)), mode="constant")
    offsets_y = rng.integers(0, 2 * PADDING + 1, size=count)
    offsets_x = rng.integers(0, 2 * PADDING + 1, size=count)
    # Gather every crop at once: index grids of shape N x H x W.
    y = np.arange(height)[None, :, None]
    x = np.arange(width)[None, None, :]
    rows = offsets_y[:, None, None] + y
    columns = offsets_x[:, None, None] + x
    flip = rng.random(count) < 0.5
    columns = np.where(flip[:, None, None], columns[:, :, ::-1], columns)
    output = padded[np.arange(count)[:, None, None], rows, columns]
    if policy == "cutout":
        centres_y = rng.integers(0, height, size=count)
        centres_x = rng.integers(0, width, size=count)
        half = CUTOUT_SIZE // 2
        mask = (np.abs(y - centres_y[:, None, None]) <= half) & (np.abs(x - centres_x[:, None, None]) <= half)
        output[mask] = 0
    return output
