"""The edge app: runs on a Raspberry Pi or Coral device with only numpy, OpenCV and a LiteRT runtime.

Never imports TensorFlow, Keras or the `training` / `converters` packages.
"""
