"""The only module that imports the Keras 2 stack: TensorFlow, tf_keras and tfmot.

tfmot's pruning and quantization wrappers work only on tf_keras models, so pruning,
QAT and conversion (``converters``) run on a tf_keras *twin* of the Keras 3 model
(``converters.bridge``). Training reaches TensorFlow here too, for ``tf.distribute``
(``training.distribution``) and for reading a tf_keras model file
(``training.model_files``). Keras 3 itself is imported by ``training.backend``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from toolkit.errors import ToolkitError  # noqa: E402
from toolkit.native_logs import quiet_native_logs  # noqa: E402

with quiet_native_logs(start_gpu_platform=True):
    import tensorflow as tf  # noqa: E402
    import tensorflow_model_optimization as tfmot  # noqa: E402
    import tf_keras  # noqa: E402

    from tensorflow.lite.python import schema_py_generated as tflite_schema  # noqa: E402 - the .tflite flatbuffer schema
    from tensorflow.lite.tools import flatbuffer_utils  # noqa: E402 - read/write .tflite files as objects

if not tf.keras.__name__.startswith("tf_keras"):
    raise ToolkitError(
        "TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was set, so tfmot cannot work; "
        "import `training` or `converters` before anything that imports TensorFlow"
    )


__all__ = ["flatbuffer_utils", "tf", "tf_keras", "tflite_schema", "tfmot"]
