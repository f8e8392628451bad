"""The model's input and output in pure numpy, shared by training, calibration, parity, evaluation and the edge app.

A camera frame (BGR) and a dataset image (RGB), uint8 of any size, both go through :func:`prepare_image`
(colour order -> centre crop to the input's aspect ratio -> resize -> (x / 255 - mean) / std), with the
settings of the model card. Every model runs behind one :class:`Predictor` (docs/architecture.md):

    inputs = predictor.prepare(images)          # the card's preprocessing, quantised for an integer input
    probabilities = predictor.probabilities(predictor.run(inputs))   # dequantised; a softmax of logits
    answer = top_predictions(probabilities[0], predictor.labels, k=3)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import numpy as np

from toolkit.model_card import ModelCard, TensorQuantization

COLOUR_ORDERS = ("RGB", "BGR", "GRAY")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")  # image files OpenCV decodes
SOFTMAX_TOLERANCE = 0.05  # outputs whose rows sum this close to 1 (and are not negative) are probabilities already

# ITU-R BT.601 luma weights, the ones OpenCV's RGB2GRAY uses.
_LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def convert_colour(image: np.ndarray, source_order: str, target_order: str) -> np.ndarray:
    """Convert an HxWxC (or HxW) image between RGB, BGR and GRAY; returns HxWxC."""
    if source_order not in COLOUR_ORDERS or target_order not in COLOUR_ORDERS:
        raise ValueError(f"colour order must be one of {COLOUR_ORDERS}, got {source_order!r} -> {target_order!r}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"expected an HxWxC image, got shape {image.shape}")
    if image.shape[2] == 1:
        source_order = "GRAY"
    elif image.shape[2] == 4:  # drop alpha
        image = image[:, :, :3]
    if source_order == target_order:
        return image
    if source_order == "GRAY":
        return np.repeat(image, 3, axis=2)
    if target_order != "GRAY":  # RGB <-> BGR
        return image[:, :, ::-1]
    rgb = image if source_order == "RGB" else image[:, :, ::-1]
    grey = rgb.astype(np.float32) @ _LUMA_RGB
    if np.issubdtype(image.dtype, np.integer):
        grey = np.clip(np.rint(grey), 0, np.iinfo(image.dtype).max)
    return grey.astype(image.dtype)[:, :, None]


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop the largest centred region with the aspect ratio of ``height`` x ``width`` from an HxW(xC) image."""
    source_height, source_width = image.shape[:2]
    if source_height * width > source_width * height:  # taller than the target: keep the full width
        crop_height, crop_width = max(1, round(source_width * height / width)), source_width
    else:
        crop_height, crop_width = source_height, max(1, round(source_height * width / height))
    top, left = (source_height - crop_height) // 2, (source_width - crop_width) // 2
    return image[top : top + crop_height, left : left + crop_width]


@functools.lru_cache(maxsize=32)
def _resize_weights(source: int, target: int) -> np.ndarray:
    """A (target x source) matrix that resamples one axis.

    Shrinking averages the source pixels each target pixel covers, weighted by
    overlap (OpenCV's INTER_AREA); otherwise it interpolates linearly between pixel
    centres (INTER_LINEAR with half-pixel centres; equal sizes give the identity). Each row sums to 1.
    Cached per size pair, so the matrix is read-only.
    """
    weights = np.zeros((target, source), dtype=np.float32)
    if target < source:
        scale = source / target
        bounds = np.arange(target + 1)[:, None] * scale  # output row r covers source [bounds[r], bounds[r + 1])
        columns = np.arange(source)
        weights[:] = np.maximum(np.minimum(bounds[1:], columns + 1) - np.maximum(bounds[:-1], columns), 0.0) / scale
    else:
        centres = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
        lower = np.floor(centres).astype(int)
        upper = np.minimum(lower + 1, source - 1)
        fraction = centres - lower
        weights[np.arange(target), lower] += 1.0 - fraction
        weights[np.arange(target), upper] += fraction
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=16)
def _channel_sum_matrix(pixels: int, channels: int) -> np.ndarray:
    """A (pixels * channels) x channels 0/1 matrix that sums ``pixels`` interleaved pixels per channel."""
    return np.tile(np.eye(channels, dtype=np.float32), (pixels, 1))


def _shrink_rows_uint8(image: np.ndarray, target: int) -> np.ndarray:
    """Area-average the rows of a uint8 HxWxC image down to ``target`` rows, as float32.

    Output row r covers source rows [r * scale, (r + 1) * scale). Its integral is the exact
    integer sum of the whole rows from floor(start) to floor(stop), minus the part of the
    first row before ``start``, plus the part of the row at ``stop`` before ``stop``: the
    same weights as :func:`_resize_weights`, but each source row is read once (twice at a
    band edge) instead of being multiplied by every output row's mostly zero weight.
    """
    source = image.shape[0]
    bounds = np.arange(target + 1) * source / target
    whole = np.floor(bounds).astype(np.intp)
    fraction = (bounds - whole).astype(np.float32)[:, None, None]
    sum_type = np.uint16 if source < 256 * target else np.uint32  # at most ceil(scale) rows of 255 per sum
    sums = np.stack([image[first:last].sum(axis=0, dtype=sum_type) for first, last in zip(whole[:-1], whole[1:])])
    partial = image[np.minimum(whole, source - 1)] * fraction  # the last bound has fraction 0
    return (sums.astype(np.float32) - partial[:-1] + partial[1:]) * np.float32(target / source)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an HxWxC image to ``height`` x ``width``; returns float32 in the input's value range."""
    if image.ndim == 2:
        image = image[:, :, None]
    source_height, source_width, channels = image.shape
    if (source_height, source_width) == (height, width):
        return image.astype(np.float32, copy=False)
    if source_height % height == 0 and source_width % width == 0:
        # Whole-number shrink (a 480x480 crop to 32x32): area averaging is a plain block
        # mean, much cheaper than the matrix products below and equal to them up to rounding.
        factor_y, factor_x = source_height // height, source_width // width
        if image.dtype == np.uint8 and factor_y <= 257:
            # Rows are summed exactly in uint16 (no float copy of the whole frame), then each
            # run of factor_x pixels by a small 0/1 matrix product: the same integer sums a
            # float32 sum gives, so the result is identical, about 3x faster on a camera frame.
            summed_rows = image.reshape(height, factor_y, source_width * channels).sum(axis=1, dtype=np.uint16)
            pick = _channel_sum_matrix(factor_x, channels)
            summed = (summed_rows.reshape(height * width, factor_x * channels).astype(np.float32) @ pick).reshape(height, width, channels)
        else:
            # Sum rows, then columns, each over a contiguous axis: far faster than one 2-axis sum.
            summed_rows = image.astype(np.float32).reshape(height, factor_y, source_width * channels).sum(axis=1)
            summed = summed_rows.reshape(height, width, factor_x, channels).sum(axis=2)
        return summed * np.float32(1.0 / (factor_y * factor_x))
    columns = _resize_weights(source_width, width)
    if image.dtype == np.uint8 and source_height > 8 * height:
        # A big uint8 frame (a 720p crop to 32x32): the dense row product below would multiply
        # almost only by zero weights, so sum each output row's band of source rows instead.
        resized = _shrink_rows_uint8(image, height).transpose(0, 2, 1) @ columns.T
        return np.ascontiguousarray(resized.transpose(0, 2, 1))
    rows = _resize_weights(source_height, height)
    # Two matrix products (rows, then columns) instead of one 4-D einsum: a camera
    # frame shrinks by rows first, so the second product is small.
    resized = rows @ image.reshape(source_height, source_width * channels).astype(np.float32)
    resized = resized.reshape(height, source_width, channels).transpose(0, 2, 1) @ columns.T
    return np.ascontiguousarray(resized.transpose(0, 2, 1))


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Map pixel values in [0, 255] of an image or a batch to ``(x / 255 - mean) / std`` per channel, as float32."""
    return (image.astype(np.float32) * np.float32(1.0 / 255.0) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def prepare_image(
    image: np.ndarray,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    source_colour_order: str = "RGB",
    model_colour_order: str = "RGB",
) -> np.ndarray:
    """Turn one uint8 image (any size, any colour order) into the model's float32 input of ``input_size`` (H, W, C)."""
    height, width, channels = (int(value) for value in input_size)
    target_order = "GRAY" if channels == 1 else model_colour_order
    swap_only = {source_colour_order, target_order} == {"RGB", "BGR"} and image.ndim == 3 and image.shape[2] == 3
    if not swap_only:
        image = convert_colour(image, source_colour_order, target_order)
    if image.shape[0] != height or image.shape[1] != width:
        image = resize(center_crop(image, height, width), height, width)
    if swap_only:
        # Cropping and resizing treat every channel alike, so swapping BGR<->RGB after
        # them gives the identical tensor, on 32x32 pixels instead of a whole frame.
        image = image[:, :, ::-1]
    return normalize(image, mean, std)


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: str | np.dtype) -> np.ndarray:
    """Real values to integer codes: ``clip(round(x / scale) + zero_point)`` (TFLite's affine scheme)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return values.astype(dtype, copy=False)
    if scale <= 0:
        raise ValueError(f"quantisation scale must be positive, got {scale}")
    info = np.iinfo(dtype)
    codes = np.rint(values.astype(np.float32) / np.float32(scale)) + zero_point
    return np.clip(codes, info.min, info.max).astype(dtype)


def dequantize(codes: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer codes back to real values: ``(q - zero_point) * scale``; float input passes through."""
    if np.issubdtype(codes.dtype, np.floating) or scale == 0:
        return codes.astype(np.float32)
    return (codes.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def top_k(probabilities: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` largest entries along the last axis, best first (ties: the lower index first)."""
    probabilities = np.asarray(probabilities)
    k = max(1, min(int(k), probabilities.shape[-1]))
    order = np.argsort(-probabilities, axis=-1, kind="stable")[..., :k]
    return order, np.take_along_axis(probabilities, order, axis=-1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax along the last axis."""
    exponentials = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return exponentials / np.sum(exponentials, axis=-1, keepdims=True)


def prepare_images(images: np.ndarray, card: ModelCard, colour_order: str = "RGB") -> np.ndarray:
    """uint8 images (N x H x W x C, or N x H x W grey) as the normalised float32 inputs ``card`` describes."""
    if images.ndim == 3:
        images = images[..., None]
    colour_order = "GRAY" if images.shape[-1] == 1 else colour_order
    fitting = tuple(images.shape[1:]) == tuple(int(value) for value in card.input_size)
    if fitting and colour_order in ("GRAY", card.colour_order):
        return normalize(images, card.mean, card.std)
    order = card.colour_order
    return np.stack([prepare_image(image, card.input_size, card.mean, card.std, colour_order, order) for image in images])


class Predictor:
    """A model and its card behind three calls: :meth:`prepare`, :meth:`run`, :meth:`probabilities`."""

    def __init__(self, card: ModelCard, input_quantization: TensorQuantization | None = None,
                 output_quantization: TensorQuantization | None = None) -> None:  # fmt: skip
        self.card = card
        self.input_quantization = input_quantization or TensorQuantization()
        self.output_quantization = output_quantization or TensorQuantization()

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    def prepare(self, images: np.ndarray, colour_order: str = "RGB") -> np.ndarray:
        """uint8 images (N x H x W x C, any size, in ``colour_order``) to the model's input tensors."""
        quantization = self.input_quantization
        inputs = prepare_images(images, self.card, colour_order)
        return quantize(inputs, quantization.scale, quantization.zero_point, quantization.dtype)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """The model's raw outputs (N x classes) for prepared inputs."""
        raise NotImplementedError

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Raw outputs of :meth:`run` as float32 class probabilities (N x classes)."""
        quantization = self.output_quantization
        values = dequantize(outputs, quantization.scale, quantization.zero_point)
        # An int8 softmax rounds each class to a code: its rows may miss 1 by half a step per class.
        tolerance = SOFTMAX_TOLERANCE + 0.5 * quantization.scale * values.shape[-1]
        if values.size and (values.min() < 0 or not np.allclose(values.sum(axis=-1), 1.0, atol=tolerance)):
            return softmax(values)
        return values

    def predict(self, images: np.ndarray, batch_size: int = 256, colour_order: str = "RGB",
                on_batch: Callable[[int], object] | None = None) -> np.ndarray:  # fmt: skip
        """Class probabilities (N x classes) for uint8 images, ``batch_size`` at a time; ``on_batch(count)`` after each."""
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            chunks.append(self.probabilities(self.run(self.prepare(batch, colour_order))))
            if on_batch is not None:
                on_batch(len(batch))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.card.num_classes), np.float32)


@dataclasses.dataclass
class Prediction:
    """One class in the top-k."""

    index: int  # class id
    label: str  # class name from the model card
    score: float  # (smoothed) probability

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "score": round(self.score, 5)}


def top_predictions(probabilities: np.ndarray, labels: list[str], k: int = 3, threshold: float = 0.0) -> list[Prediction]:
    """The ``k`` best classes, best first, leaving out those scoring below ``threshold``."""
    indices, scores = top_k(probabilities, k)
    return [Prediction(int(index), labels[index], float(score)) for index, score in zip(indices, scores) if score >= threshold]
