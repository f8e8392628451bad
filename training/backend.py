"""The only module that imports Keras 3. Everything in `training` gets ``keras`` from here.

The backend comes from ``KERAS_BACKEND`` (``tensorflow`` or ``jax``); the JAX backend
needs no TensorFlow installed, which is how the GPU machine trains.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.native_logs import quiet_native_logs

# training/__init__.py, run before this module, sets TF_USE_LEGACY_KERAS=1 for tfmot before TensorFlow loads.
with quiet_native_logs(start_gpu_platform=True):  # Keras on its TensorFlow backend loads TensorFlow here
    import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax")
# /proc/cpuinfo's names for bfloat16 instructions: x86's AVX512-BF16 and AMX, Arm's BF16. Without them
# oneDNN emulates bfloat16, which trained All-CNN-C at about a quarter of float32's images/s on a 2-core Xeon.
BFLOAT16_CPU_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def backend_name() -> str:
    """Name of the active Keras 3 backend; anything but TensorFlow or JAX is refused."""
    name = keras.backend.backend()
    if name not in SUPPORTED_BACKENDS:
        raise ToolkitError(f"KERAS_BACKEND={name} is not supported: use one of {', '.join(SUPPORTED_BACKENDS)}")
    return name


def gpu_present() -> bool:
    """Whether Keras sees a GPU (``list_devices()`` names the GPUs, "gpu:0", when there are any, else the CPUs)."""
    return any(device.startswith("gpu") for device in keras.distribution.list_devices())


def native_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether bfloat16 maths runs in hardware here: on a GPU, or on a CPU whose ``cpuinfo`` flags name bfloat16
    instructions (False where there is no such file to read: macOS, Windows)."""
    if gpu_present():
        return True
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return False
    fields = (line.partition(":") for line in lines)
    return any(set(value.split()) & BFLOAT16_CPU_FLAGS for name, _, value in fields if name.strip() in ("flags", "Features"))
