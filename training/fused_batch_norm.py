"""Batch norm as one fused TensorFlow op while training on the TensorFlow backend.

Keras 3's ``BatchNormalization`` casts bfloat16 activations to float32 and computes the
moments, the normalisation and the cast back as separate element-wise passes, forward
and backward. On a 2-core CPU under ``mixed_bfloat16`` those passes cost about as much
as the bfloat16 convolutions save; TensorFlow's ``FusedBatchNormV3`` does it in one.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from training.backend import backend_name, keras


def _fused_call(tf: ModuleType, self: Any, inputs: Any, training: Any = None, mask: Any = None) -> Any:
    if mask is not None:
        raise ValueError("fused batch norm takes no mask")
    scale, offset = tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32")
    training = bool(training and self.trainable)
    # exponential_avg_factor folds the moving-statistics update into the op while training:
    # moving = momentum * moving + (1 - momentum) * batch, as Keras's own layer does.
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, scale, offset, mean=self.moving_mean, variance=self.moving_variance, epsilon=self.epsilon,
        is_training=training, exponential_avg_factor=1.0 - self.momentum if training else 1.0,
    )  # fmt: skip
    if training:
        self.moving_mean.assign(mean)
        self.moving_variance.assign(variance)
    return tf.cast(outputs, self.compute_dtype)


def fuse_batch_norm(model: Any) -> int:
    """Run every plain channels-last batch norm of ``model`` as one fused op; returns how many.

    Only the layers' ``call`` changes, per instance, so the model still saves and loads as
    plain Keras ``BatchNormalization`` layers. Does nothing on other backends.
    """
    if backend_name() != "tensorflow":
        return 0
    from training.tensorflow_stack import tf  # here, not inside the traced call

    fused = 0
    for layer in model.layers:
        if (type(layer) is keras.layers.BatchNormalization and len(layer.input.shape) == 4 and layer.axis in (-1, 3)
                and layer.scale and layer.center and not layer.renorm and not layer.synchronized):
            layer.call = functools.partial(_fused_call, tf, layer)
            fused += 1
    return fused
