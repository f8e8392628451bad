"""The only module that imports the Keras 2 stack: TensorFlow, tf_keras and tfmot.

tfmot's pruning and quantization wrappers work only on tf_keras models, so pruning,
QAT and conversion (``converters``) run on a tf_keras *twin* of the Keras 3 model
(``converters.bridge``). Training reaches TensorFlow here too, for ``tf.distribute``
(``training.distribution``), the fused batch norm (``training.fused_batch_norm``) and
reading a tf_keras model file (``training.model_files``). Keras 3 itself is imported by ``training.backend``.
"""

from __future__ import annotations

from toolkit.errors import ToolkitError
from toolkit.native_logs import quiet_native_logs

# training/__init__.py, run before this module, sets TF_USE_LEGACY_KERAS=1: tfmot needs tf.keras to be tf_keras.
with quiet_native_logs(start_gpu_platform=True):
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from tensorflow.lite.python import schema_py_generated as tflite_schema  # the .tflite flatbuffer schema
    from tensorflow.lite.tools import flatbuffer_utils  # read/write .tflite files as objects

if not tf.keras.__name__.startswith("tf_keras"):
    raise ToolkitError(
        "TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was set, so tfmot cannot work; "
        "import `training` or `converters` before anything that imports TensorFlow"
    )


__all__ = ["flatbuffer_utils", "tf", "tf_keras", "tflite_schema", "tfmot"]
