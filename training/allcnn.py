"""All-CNN-C and the paper's comparison models, from one builder that serves Keras 3 and tf_keras.

Springenberg et al. 2015, "Striving for Simplicity: The All Convolutional Net", Table 2
(the "C" column). Every model here holds only layers tfmot's int8 scheme supports:
Conv2D, BatchNormalization, ReLU, MaxPooling2D, Dropout, GlobalAveragePooling2D and
Softmax. Normalisation and augmentation happen outside the model, in numpy. Layer names
are fixed (``conv1`` ... ``conv9``), so weights copy between a Keras 3 model and its tf_keras twin by name.
"""

from __future__ import annotations

import dataclasses
import functools
from types import ModuleType
from typing import Any, Callable

from toolkit.errors import ToolkitError
from toolkit.flags import known_fields
from toolkit.model_card import ModelCard

# Each stage is a list of ("conv", filters, kernel, stride, padding) or ("pool",).
_Step = tuple
# The strides of the 3x3 convolutions of each model's two down-sampling stages ("pool": a 3x3 max pool, stride 2).
_DOWN_SAMPLING = {
    "all_cnn_c": (1, 1, 2),
    "model_c": (1, 1, "pool"),
    "strided_cnn_c": (1, 2),
    "convpool_cnn_c": (1, 1, 1, "pool"),
}


def _stages(strides: tuple, num_classes: int) -> list[list[_Step]]:
    """The stages of the model with these down-sampling ``strides``: 96, then 192 filters, then the classifier."""
    return [
        *([("pool",) if stride == "pool" else ("conv", filters, 3, stride, "same") for stride in strides] for filters in (96, 192)),
        [("conv", 192, 3, 1, "valid"), ("conv", 192, 1, 1, "valid"), ("conv", num_classes, 1, 1, "valid")],
    ]


ARCHITECTURES: dict[str, Callable[[int], list[list[_Step]]]] = {
    name: functools.partial(_stages, strides) for name, strides in _DOWN_SAMPLING.items()
}


@dataclasses.dataclass
class ModelConfig:
    """Options of the All-CNN-C family; stored in the model card so any stack can rebuild the model."""

    name: str = "all_cnn_c"  # one of ARCHITECTURES
    input_shape: tuple[int, int, int] = (32, 32, 3)  # height, width, channels
    num_classes: int = 10  # size of the softmax
    batch_norm: bool = False  # BatchNormalization after every conv but the classifier
    width: float = 1.0  # multiplies every filter count except the classifier's (tests use 0.25)
    input_dropout: float = 0.2  # dropout on the input image, as in the paper
    stage_dropout: float = 0.5  # dropout after each down-sampling stage, as in the paper

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "ModelConfig":
        values = known_fields(cls, payload)
        if "input_shape" in values:
            values["input_shape"] = tuple(int(value) for value in values["input_shape"])
        return cls(**values)

    @classmethod
    def from_card(cls, card: ModelCard, where: str) -> "ModelConfig":
        """The architecture ``card`` records; a one-line error naming ``where`` (its card) when it records none or one
        this builder cannot read."""
        if not card.architecture:
            raise ToolkitError(f"{where} records no architecture")
        try:
            config = cls.from_dict(card.architecture)
        except (TypeError, ValueError, AttributeError) as error:
            raise ToolkitError(f"{where} records an unreadable architecture: {error}") from None
        if config.name not in ARCHITECTURES:
            raise ToolkitError(f"{where} records an unknown architecture {config.name!r}; known: {', '.join(ARCHITECTURES)}")
        return config


def create_model(config: ModelConfig, keras: ModuleType) -> Any:
    """Build the model ``config`` describes with the given Keras module (``keras`` or ``tf_keras``)."""
    if config.name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.name!r}; choose one of {', '.join(ARCHITECTURES)}")
    layers = keras.layers
    stages = ARCHITECTURES[config.name](config.num_classes)
    inputs = keras.Input(shape=tuple(config.input_shape), name="image")
    x = layers.Dropout(config.input_dropout, name="input_dropout")(inputs)
    conv_index = 0
    for stage_index, stage in enumerate(stages):
        for step in stage:
            if step[0] == "pool":
                x = layers.MaxPooling2D(pool_size=3, strides=2, padding="same", name=f"pool{stage_index + 1}")(x)
                continue
            _, filters, kernel, stride, padding = step
            conv_index += 1
            is_classifier = stage is stages[-1] and step is stage[-1]
            if not is_classifier:
                filters = max(1, int(round(filters * config.width)))
            use_batch_norm = config.batch_norm and not is_classifier
            x = layers.Conv2D(
                filters,
                kernel,
                strides=stride,
                padding=padding,
                use_bias=not use_batch_norm,
                kernel_initializer="he_normal",
                name=f"conv{conv_index}",
            )(x)
            if use_batch_norm:
                x = layers.BatchNormalization(name=f"bn{conv_index}")(x)
            if not is_classifier:
                x = layers.ReLU(name=f"relu{conv_index}")(x)
        if stage is not stages[-1]:
            x = layers.Dropout(config.stage_dropout, name=f"dropout{stage_index + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="global_average_pool")(x)
    # float32 even under a mixed_float16 policy, so probabilities and the loss keep full precision.
    outputs = layers.Softmax(name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=config.name)


def copy_weights(source: Any, target: Any) -> None:
    """Copy weights layer by layer (matched by name) between two builds of the same config, on either stack."""
    target_layers = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name not in target_layers:
            raise ValueError(f"layer {layer.name!r} has no counterpart in the target model")
        target_layers[layer.name].set_weights(weights)
