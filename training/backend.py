"""The only module that imports Keras 3. Everything in `training` gets ``keras`` from here.

The backend comes from ``KERAS_BACKEND`` (``tensorflow`` or ``jax``); the JAX backend
needs no TensorFlow installed, which is how the GPU machine trains.
"""

from __future__ import annotations

from toolkit.errors import ToolkitError
from toolkit.native_logs import quiet_native_logs

# training/__init__.py, run before this module, sets TF_USE_LEGACY_KERAS=1 for tfmot before TensorFlow loads.
with quiet_native_logs(start_gpu_platform=True):  # Keras on its TensorFlow backend loads TensorFlow here
    import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax")


def backend_name() -> str:
    """Name of the active Keras 3 backend; anything but TensorFlow or JAX is refused."""
    name = keras.backend.backend()
    if name not in SUPPORTED_BACKENDS:
        raise ToolkitError(f"KERAS_BACKEND={name} is not supported: use one of {', '.join(SUPPORTED_BACKENDS)}")
    return name
