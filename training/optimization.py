"""The paper's optimizer and the loss: SGD + momentum with L2 weight decay, cross-entropy with label smoothing.

Weight decay as in the paper (Caffe): the L2 term ``weight_decay * w`` is added to the
gradient *before* momentum, i.e. the loss gets ``weight_decay / 2 * ||w||^2``.
Keras's own ``SGD(weight_decay=...)`` is decoupled (``w -= lr * wd * w`` after the
momentum step) which, with momentum 0.9, decays about ten times less for the same
number; :class:`L2SGD` keeps the paper's meaning of 0.001. It applies to every
trainable variable, biases included, as Caffe's default does.
"""

from __future__ import annotations

from typing import Any

from training.backend import keras


@keras.saving.register_keras_serializable(package="toolkit")
class L2SGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with coupled L2 weight decay (gradient += l2 * weight)."""

    def __init__(self, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = keras.ops.add(
                keras.ops.cast(gradient, variable.dtype),
                keras.ops.multiply(keras.ops.cast(self.l2, variable.dtype), variable),
            )
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package="toolkit")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy for integer labels and softmax outputs, with label smoothing.

    Keras's ``SparseCategoricalCrossentropy`` has no ``label_smoothing``; this one-hots
    the labels inside the loss so the input pipeline keeps integer labels.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "sparse_smoothed_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        one_hot = keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def create_optimizer(learning_rate: Any, momentum: float = 0.9, weight_decay: float = 0.001, nesterov: bool = False) -> L2SGD:
    """SGD with (Nesterov) momentum and the paper's L2 weight decay; ``learning_rate`` may be a schedule."""
    return L2SGD(l2=weight_decay, learning_rate=learning_rate, momentum=momentum, nesterov=bool(nesterov))


def create_loss(label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Cross-entropy on integer labels; label smoothing when ``label_smoothing`` > 0."""
    if label_smoothing:
        return SparseSmoothedCrossentropy(label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()
