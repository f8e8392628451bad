"""Reading a ``.keras`` model file (Keras 3, or where asked tf_keras with tfmot's wrappers), with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError, first_line
from toolkit.keras_file import check_keras_archive


def load_keras3(model_path: str | Path, tf_keras_fallback: bool = False) -> Any:
    """``keras.models.load_model`` of a checked ``.keras`` archive, with one-line errors.

    With ``tf_keras_fallback``, a file Keras 3 cannot build (a tf_keras model with tfmot's
    pruning or quantisation wrappers) is read with tf_keras under tfmot's scopes instead.
    """
    model_path = Path(model_path)
    check_keras_archive(model_path)
    from training.backend import keras

    try:
        # compile=False: the training optimizer and loss are not needed downstream, and
        # custom ones (training.optimization) would otherwise have to be importable.
        return keras.models.load_model(model_path, compile=False)
    except Exception as error:  # noqa: BLE001 - keras raises many types for a broken archive
        keras_error = error
    if tf_keras_fallback:
        try:
            return _load_tf_keras(model_path)
        except Exception:  # noqa: BLE001 - report Keras 3's reason, the format the file claims to be
            pass
    raise ToolkitError(f"{model_path} could not be loaded as a Keras model: {first_line(keras_error)[:200]}") from None


def _load_tf_keras(model_path: Path) -> Any:
    """A tf_keras ``.keras`` model, pruning and quantisation wrappers included."""
    from training.tensorflow_stack import tf_keras, tfmot

    with tfmot.quantization.keras.quantize_scope(), tfmot.sparsity.keras.prune_scope():
        return tf_keras.models.load_model(model_path, compile=False)

