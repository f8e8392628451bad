"""The bridge between the two Keras stacks: a Keras 3 ``.keras`` model and its tf_keras twin.

Every stage's artifact is a Keras 3 ``.keras`` file with a model card beside it, so
``toolkit eval``, the benchmark and the next stage read any of them the same way:

    source = load_source("runs/train/best.keras")     # Keras 3 model + card + ModelConfig
    twin = source.twin()                               # tf_keras, same weights (tfmot works on it)
    ...prune or fine-tune the twin...
    save_keras3(keras3_from_weights(source.model_config, layer_weights(twin)), card, "runs/prune/model.keras")
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import atomic
from toolkit.errors import ToolkitError
from toolkit.model_card import ModelCard, card_path, check_card_matches, load_card, save_card
from training.allcnn import ModelConfig, copy_weights, create_model
from training.model_files import check_model_path, load_keras3


def prepare_folder(out: str | Path, overwrite: bool, held: str | None) -> Path:
    """Create the ``--out`` folder ``out``; refuse one that already ``held`` results (e.g. "a model (OUT/model.keras)";
    None: nothing) unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ToolkitError(f"--out {out} is a file, not a folder")
    if held and not overwrite:
        raise ToolkitError(f"{out} already holds {held}; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


@dataclasses.dataclass
class SourceModel:
    """A Keras 3 model read from disk, with what is needed to rebuild and feed it."""

    path: Path  # the .keras file
    card: ModelCard  # its model card
    model_config: ModelConfig  # rebuilt from card.architecture
    model: Any  # the Keras 3 model
    sha256: str  # hash of the .keras file, recorded as source_sha256 downstream
    run_config: dict[str, Any]  # config.json of the run folder it came from ({} when there is none)

    def twin(self) -> Any:
        """A fresh tf_keras model with this model's weights."""
        return twin_from_keras3(self.model, self.model_config)


def twin_from_keras3(model: Any, config: ModelConfig) -> Any:
    """A tf_keras model built from the same :class:`training.allcnn.ModelConfig` with ``model``'s weights."""
    from training.tensorflow_stack import tf_keras

    twin = create_model(config, tf_keras)
    copy_weights(model, twin)
    return twin


def load_source(model_path: str | Path) -> SourceModel:
    """Read a ``.keras`` model and its card; refuse a model that does not match its card."""
    model_path = check_model_path(model_path)
    card = load_card(model_path)  # a missing or broken card is its one-line error
    model_config = ModelConfig.from_card(card, f"model card {card_path(model_path)}")
    model = load_keras3(model_path)
    check_card_matches(model_path, card, input_shape=model.input_shape[1:], num_outputs=model.output_shape[-1])
    run_config = atomic.read_json_object(Path(model_path).parent / "config.json")
    return SourceModel(model_path, card, model_config, model, atomic.file_digest(model_path), run_config)


def keras3_from_weights(model_config: ModelConfig, weights: dict[str, dict[str, np.ndarray]]) -> Any:
    """A Keras 3 model built from ``model_config`` with ``weights[layer][variable]`` (e.g. ``["conv1"]["kernel"]``)."""
    from training.backend import keras

    model = create_model(model_config, keras)
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            raise ValueError(f"no weights for layer {layer.name!r}")
        layer.set_weights([weights[layer.name][short_name(variable)] for variable in layer.weights])
    return model


def layer_weights(model: Any) -> dict[str, dict[str, np.ndarray]]:
    """``{layer: {variable short name: value}}`` of a plain (unwrapped) Keras model of either stack."""
    return {
        layer.name: {short_name(variable): np.asarray(value) for variable, value in zip(layer.weights, layer.get_weights())}
        for layer in model.layers
        if layer.weights
    }


def short_name(variable: Any) -> str:
    """A weight's name within its layer ("kernel", "output_min", ...) in either Keras stack."""
    # tf_keras: "conv1/kernel:0"; Keras 3: name "kernel", path "conv1/kernel".
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0]


def save_keras3(model: Any, card: ModelCard, model_path: str | Path) -> Path:
    """Save a Keras 3 model atomically with its card beside it; returns the model path."""
    model_path = Path(model_path)
    with atomic.atomic_path(model_path) as temporary:
        model.save(temporary)
    sizes = {"raw": model_path.stat().st_size, "gzip": atomic.gzip_size(model_path)}
    save_card(card.replace(sizes=sizes, format="keras"), model_path)
    return model_path


def export_for_distribution(model_path: str | Path, target: str | Path) -> Path:
    """A float32 copy of a trained ``.keras`` for others to load: no optimizer state, only stock Keras layers.

    ``keras.saving.load_model(target)`` reads it without this package (a training
    checkpoint needs the toolkit's optimizer and loss classes, and may hold a bfloat16 policy).
    """
    from training.backend import keras

    source = load_source(model_path)
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        model = keras3_from_weights(source.model_config, layer_weights(source.model))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return save_keras3(model, source.card.replace(source_sha256=source.sha256), target)

