"""Pruning, quantization-aware training and TFLite conversion on the tf_keras (Keras 2) twin.

Workstation-only: the edge app never imports this package.
"""

import os

# Must precede the first TensorFlow import anywhere in the process: tfmot works only
# when `tf.keras` is Keras 2 (the tf_keras package).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
