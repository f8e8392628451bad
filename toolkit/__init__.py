"""All-CNN-C edge toolkit: train, compress, convert and run image classifiers on edge devices.

This package holds the shared core (preprocessing, model cards, atomic artifact writes),
the CLI, and the stages the CLI runs across packages (``toolkit.pipeline``,
``toolkit.benchmark``). The shared core imports only numpy so that `edge_app` can use it
on a device that has no TensorFlow or Keras.
"""

__version__ = "0.1.0"
