"""All-CNN-C as in the paper, and one builder that gives equal models on Keras 3 and tf_keras."""

from __future__ import annotations

import numpy as np
import pytest

from training.allcnn import ARCHITECTURES, ModelConfig, copy_weights, create_model
from training.backend import keras


def test_all_cnn_c_has_the_papers_parameter_count() -> None:
    model = create_model(ModelConfig(), keras)
    assert model.count_params() == 1_369_738
    assert model.output_shape == (None, 10)
    assert [layer.name for layer in model.layers if layer.name.startswith("conv")] == [f"conv{i}" for i in range(1, 10)]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_builds_for_grey_images(name: str) -> None:
    model = create_model(ModelConfig(name=name, input_shape=(28, 28, 1), num_classes=10, width=0.25), keras)
    assert model.output_shape == (None, 10)
    assert not any(type(layer).__name__.startswith(("Random", "Rescaling")) for layer in model.layers)


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(width=0.25, batch_norm=True)], ids=["paper", "batch-norm"])
def test_keras3_and_tf_keras_builds_agree_after_copying_weights(config: ModelConfig) -> None:
    from training.tensorflow_stack import tf_keras

    keras.utils.set_random_seed(1)
    model = create_model(config, keras)
    if config.batch_norm:  # non-trivial moving statistics, so a wrong copy would show
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                gamma, beta, mean, variance = layer.get_weights()
                rng = np.random.default_rng(len(layer.name))
                layer.set_weights([gamma * 1.5, beta + 0.1, rng.normal(size=mean.shape), rng.uniform(0.5, 2, variance.shape)])
    twin = create_model(config, tf_keras)
    assert twin.count_params() == model.count_params()
    copy_weights(model, twin)
    images = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    actual = twin(images, training=False).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    assert np.all(np.argmax(actual, 1) == np.argmax(expected, 1))


def test_retracing_notices_are_held_back_and_other_tensorflow_warnings_are_not(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import training.evaluate  # noqa: F401 - predicting installs the filter

    logger = logging.getLogger("tensorflow")
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        logger.warning("5 out of the last 5 calls to <function f> triggered tf.function retracing. Tracing is expensive")
        logger.warning("something else went wrong")
    assert [record.getMessage() for record in caplog.records] == ["something else went wrong"]
