"""The fused batch norm trains and saves exactly like Keras's own layer."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from training.allcnn import ModelConfig, create_model
from training.backend import backend_name, keras
from training.fused_batch_norm import fuse_batch_norm

pytestmark = pytest.mark.skipif(backend_name() != "tensorflow", reason="the fused op is TensorFlow's")

CONFIG = ModelConfig(batch_norm=True, width=0.25, input_dropout=0.0, stage_dropout=0.0)


def _twins() -> tuple:
    keras.utils.set_random_seed(0)
    plain = create_model(CONFIG, keras)
    fused = create_model(CONFIG, keras)
    fused.set_weights(plain.get_weights())
    assert fuse_batch_norm(fused) == 8  # every conv but the classifier has one
    return plain, fused


def test_fused_batch_norm_matches_keras_in_training_and_inference() -> None:
    plain, fused = _twins()
    images = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(fused(images, training=True), plain(images, training=True), atol=1e-5)
    # Moving statistics: TensorFlow's op averages the unbiased batch variance, Keras the biased one.
    for ours, theirs in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(fused(images), plain(images), atol=1e-4)
    labels = np.arange(8) % 10
    losses = []
    for model in (plain, fused):
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
        losses.append(model.fit(images, labels, epochs=3, batch_size=8, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    assert losses[1][-1] < losses[1][0]


def test_fused_model_saves_as_plain_batch_norm(tmp_path) -> None:
    _, fused = _twins()
    path = tmp_path / "model.keras"
    fused.save(path)
    layers = json.loads(zipfile.ZipFile(path).read("config.json"))["config"]["layers"]
    assert {layer["class_name"] for layer in layers if layer["name"].startswith("bn")} == {"BatchNormalization"}
    images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras.saving.load_model(path, compile=False)(images), fused(images), atol=1e-6)


def test_fused_batch_norm_under_bfloat16() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = create_model(CONFIG, keras)
        fuse_batch_norm(model)
        outputs = model(np.zeros((2, 32, 32, 3), "float32"), training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert outputs.dtype == "float32" and np.all(np.isfinite(outputs))
    assert model.get_layer("bn1").compute_dtype == "bfloat16"
