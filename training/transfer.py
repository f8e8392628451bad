"""Start training from a trained model (``pretrained``: the shipped reference one): its weights matched by layer name,
a new classifier when the classes differ, the first stages frozen on request.

    parent = parent_architecture("pretrained")
    start_from(model, parent, labels, freeze_stages=1)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.keras_file import check_keras_archive
from toolkit.model_card import ModelCard, load_card
from toolkit.pretrained import default_model
from training.allcnn import ARCHITECTURES, ModelConfig
from training.model_files import check_model_path, load_keras3

PRETRAINED = "pretrained"
PRETRAINED_FLOAT_NAME = "model.keras"


class Parent(NamedTuple):
    """A ``--from`` model: its file, card and architecture."""

    path: Path
    card: ModelCard
    architecture: ModelConfig


def parent_architecture(spec: str) -> Parent:
    """The path, card and architecture (which the child keeps) of the ``.keras`` model ``--from`` names."""
    path = default_model(PRETRAINED_FLOAT_NAME, instead=f"--from {PRETRAINED}") if spec == PRETRAINED else Path(spec)
    try:
        check_model_path(path)
    except ToolkitError as error:
        raise ToolkitError(f"--from {spec}: {error}") from None
    check_keras_archive(path)
    card = load_card(path)
    return Parent(path, card, ModelConfig.from_card(card, f"--from {spec}: the card of {path}"))


def stage_layer_names(config: ModelConfig) -> list[list[str]]:
    """Names of the conv and batch-norm layers of each stage, in order (the last stage is the classifier)."""
    names, index = [], 0
    for stage in ARCHITECTURES[config.name](config.num_classes):
        convs = [step for step in stage if step[0] == "conv"]
        names.append([name for offset in range(1, len(convs) + 1) for name in (f"conv{index + offset}", f"bn{index + offset}")])
        index += len(convs)
    return names


def start_from(model: Any, parent: Parent, labels: list[str], freeze_stages: int = 0) -> None:
    """Copy the weights of ``parent`` into ``model`` (built for ``labels``) and freeze stages."""
    parent_layers = {layer.name: layer for layer in load_keras3(parent.path).layers}
    classifier = [layer for layer in model.layers if layer.name.startswith("conv")][-1].name
    for layer in model.layers:
        if not layer.weights or layer.name not in parent_layers:
            continue
        if layer.name == classifier and list(parent.card.labels) != list(labels):
            continue  # other classes: the classifier starts from its initialisation
        layer.set_weights([_fit(value, target.shape, layer.name, parent.path) for value, target in zip(parent_layers[layer.name].get_weights(), layer.weights)])
    frozen = {name for stage in stage_layer_names(parent.architecture)[:freeze_stages] for name in stage}
    for layer in model.layers:
        if layer.name in frozen:
            layer.trainable = False


def _fit(value: np.ndarray, shape: tuple[int, ...], layer: str, path: Path) -> np.ndarray:
    shape = tuple(int(size) for size in shape)
    if value.shape == shape:
        return value
    if value.ndim == 4 and value.shape[2] == 3 and shape[2] == 1 and value.shape[:2] + value.shape[3:] == shape[:2] + shape[3:]:
        return value.sum(axis=2, keepdims=True)  # grey from RGB: a grey image is the same picture in all three channels
    raise ToolkitError(f"--from {path}: layer {layer} holds weights of shape {value.shape}, this model needs {shape} (another width?)")
