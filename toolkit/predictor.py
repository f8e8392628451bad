"""One interface for every model the toolkit runs: uint8 images in, class probabilities out.

    inputs = predictor.prepare(images)          # the card's preprocessing, quantised for an integer input
    outputs = predictor.run(inputs)             # the model itself: raw output tensors
    probabilities = predictor.probabilities(outputs)   # dequantised, a softmax where the model gives logits

``training.evaluate.KerasPredictor`` runs a Keras model and ``edge_app.runtime.TFLitePredictor``
a ``.tflite`` model on LiteRT; only :meth:`Predictor.run` differs between them, so evaluation,
the parity report, fine-tuning, the benchmark and the edge app feed and read every model alike.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from toolkit import preprocessing
from toolkit.model_card import ModelCard, TensorQuantization

SOFTMAX_TOLERANCE = 0.05  # outputs whose rows sum this close to 1 (and are not negative) are probabilities already


def prepare_images(images: np.ndarray, card: ModelCard, colour_order: str = "RGB") -> np.ndarray:
    """uint8 images (N x H x W x C, or N x H x W grey) as the normalised float32 inputs ``card`` describes.

    Images already at the card's input size and colour order are only normalised, all at once;
    the others go through :func:`toolkit.preprocessing.prepare_image` (colour, centre crop, resize).
    """
    if images.ndim == 3:
        images = images[..., None]
    colour_order = "GRAY" if images.shape[-1] == 1 else colour_order
    fitting = tuple(images.shape[1:]) == tuple(int(value) for value in card.input_size)
    if fitting and colour_order in ("GRAY", card.colour_order):
        return preprocessing.normalize(images, card.mean, card.std)
    order = card.colour_order
    return np.stack([preprocessing.prepare_image(image, card.input_size, card.mean, card.std, colour_order, order) for image in images])


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
        return preprocessing.quantize(inputs, quantization.scale, quantization.zero_point, quantization.dtype)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """The model's raw outputs (N x classes) for prepared inputs."""
        raise NotImplementedError

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Raw outputs of :meth:`run` as float32 class probabilities (N x classes)."""
        quantization = self.output_quantization
        values = preprocessing.dequantize(outputs, quantization.scale, quantization.zero_point)
        # An int8 softmax rounds each class to a code: its rows may miss 1 by half a step per class.
        tolerance = SOFTMAX_TOLERANCE + 0.5 * quantization.scale * values.shape[-1]
        if values.size and (values.min() < 0 or not np.allclose(values.sum(axis=-1), 1.0, atol=tolerance)):
            return preprocessing.softmax(values)
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
