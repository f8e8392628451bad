"""Float training on Keras 3 (TensorFlow or JAX backend): data, the All-CNN-C family, the training loop.

Workstation-only: the edge app never imports this package.
"""

import os

# tfmot (training.tensorflow_stack, used by `converters`) needs `tf.keras` to be Keras 2; the
# variable must be set before TensorFlow is first imported, and Keras 3 ignores it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
