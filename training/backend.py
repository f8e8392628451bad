"""The only module that imports Keras 3. Everything in `training` gets ``keras`` from here.

The backend comes from ``KERAS_BACKEND`` (``tensorflow`` or ``jax``); the JAX backend
needs no TensorFlow installed, which is how the GPU machine trains.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from toolkit.errors import ToolkitError  # noqa: E402
from toolkit.native_logs import quiet_native_logs  # noqa: E402

with quiet_native_logs(start_gpu_platform=True):  # Keras on its TensorFlow backend loads TensorFlow here
    import keras  # noqa: E402

SUPPORTED_BACKENDS = ("tensorflow", "jax")


def backend_name() -> str:
    """Name of the active Keras 3 backend; anything but TensorFlow or JAX is refused."""
    name = keras.backend.backend()
    if name not in SUPPORTED_BACKENDS:
        raise ToolkitError(f"KERAS_BACKEND={name} is not supported: use one of {', '.join(SUPPORTED_BACKENDS)}")
    return name


__all__ = ["keras", "backend_name", "SUPPORTED_BACKENDS"]
