"""Pruning, quantization-aware training and TFLite conversion on the tf_keras (Keras 2) twin.

Workstation-only: the edge app never imports this package.
"""

import training  # noqa: F401 - sets TF_USE_LEGACY_KERAS, which tfmot needs, before TensorFlow loads
