"""Reading a ``.keras`` model file (Keras 3, or where asked tf_keras with tfmot's wrappers), with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError, first_line
from toolkit.keras_file import check_keras_archive


def check_model_path(model_path: str | Path, suffixes: tuple[str, ...] = (".keras",)) -> Path:
    """A one-line error unless ``model_path`` is an existing file whose suffix (any case) is one of ``suffixes``.

    A folder is named as one, with the first model file in it as a hint.
    """
    model_path = Path(model_path)
    if model_path.is_dir():
        candidates = sorted(path for suffix in suffixes for path in model_path.glob(f"*{suffix}"))
        hint = f" (did you mean {candidates[0]}?)" if candidates else ""
        raise ToolkitError(f"{model_path} is a folder, not a model file{hint}")
    if model_path.suffix.lower() not in suffixes:
        raise ToolkitError(f"model file {model_path}: expected a {' or '.join(suffixes)} model, got {model_path.suffix or 'no suffix'}")
    if not model_path.is_file():
        raise ToolkitError(f"model file {model_path} does not exist")
    return model_path


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
        if tf_keras_fallback:
            try:
                from training.tensorflow_stack import tf_keras, tfmot

                with tfmot.quantization.keras.quantize_scope(), tfmot.sparsity.keras.prune_scope():
                    return tf_keras.models.load_model(model_path, compile=False)
            except Exception:  # noqa: BLE001 - report Keras 3's reason, the format the file claims to be
                pass
        raise ToolkitError(f"{model_path} could not be loaded as a Keras model: {first_line(error)[:200]}") from None
