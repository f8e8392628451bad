"""Edge runtime: interpreter factory, runtime order, Edge TPU errors, I/O types and the shared preprocessing."""

from __future__ import annotations

import shutil
import sys
import types

import cv2
import numpy as np
import pytest

from edge_app import runtime
from edge_app.runtime import TFLitePredictor, card_owner, make_interpreter
from toolkit import preprocessing
from toolkit.errors import ToolkitError
from toolkit.model_card import card_path, load_card


@pytest.fixture(scope="module")
def sample_images(sample_dataset) -> np.ndarray:
    return sample_dataset.images[::6]  # 50 RGB images, 5 per class


def test_runtime_order_prefers_litert_then_tflite_runtime_then_tensorflow(monkeypatch):
    assert runtime.RUNTIME_MODULES == ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")
    assert runtime.runtime_module()[0] == "ai_edge_litert.interpreter"
    fake = types.ModuleType("tflite_runtime.interpreter")
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # None in sys.modules: ImportError
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    assert runtime.runtime_module() == ("tflite_runtime.interpreter", fake)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    monkeypatch.setitem(sys.modules, "tensorflow.lite", None)
    with pytest.raises(ToolkitError, match="pip install ai-edge-litert"):
        runtime.runtime_module()


def test_threads_and_xnnpack_options_give_the_same_answer(edge_int8_model, sample_images):
    reference = TFLitePredictor(edge_int8_model).predict(sample_images[:10])
    for threads in (1, 2):
        threaded = TFLitePredictor(edge_int8_model, threads=threads).predict(sample_images[:10])
        np.testing.assert_allclose(threaded, reference)
    # The built-in int8 kernels round a little differently from XNNPACK's: a few output steps at most.
    plain = TFLitePredictor(edge_int8_model, threads=1, xnnpack=False).predict(sample_images[:10])
    np.testing.assert_allclose(plain, reference, atol=0.05)
    with pytest.raises(ToolkitError, match="--threads must be at least 1"):
        make_interpreter(edge_int8_model, threads=0)


def test_edgetpu_without_libedgetpu_is_one_clear_line(edge_int8_model, tmp_path):
    with pytest.raises(ToolkitError, match=r"_edgetpu\.tflite"):
        make_interpreter(edge_int8_model, edgetpu=True)
    compiled = tmp_path / "model_int8_edgetpu.tflite"
    shutil.copy(edge_int8_model, compiled)
    with pytest.raises(ToolkitError) as caught:
        make_interpreter(compiled, edgetpu=True)
    message = str(caught.value)
    assert "libedgetpu" in message and "\n" not in message


def test_missing_or_broken_model_is_a_clear_error(tmp_path):
    with pytest.raises(ToolkitError, match="does not exist"):
        make_interpreter(tmp_path / "absent.tflite")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    with pytest.raises(ToolkitError, match="is not a TFLite model"):
        make_interpreter(broken)
    keras_model = tmp_path / "best.keras"
    keras_model.write_bytes(b"PK\x03\x04")
    with pytest.raises(ToolkitError, match=r"is a Keras model.*toolkit convert --int8"):
        make_interpreter(keras_model)


def test_bgr_frame_and_rgb_image_give_the_same_tensor(edge_int8_model, sample_dir):
    bgr = cv2.imread(str(next((sample_dir / "cat").glob("*.jpg"))))
    # A camera-like frame: larger than the model input and not square, so crop and resize both run.
    bgr = cv2.resize(bgr, (131, 97), interpolation=cv2.INTER_LINEAR)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    card = load_card(edge_int8_model)
    from_bgr = preprocessing.prepare_image(bgr, card.input_size, card.mean, card.std, "BGR", card.colour_order)
    from_rgb = preprocessing.prepare_image(rgb, card.input_size, card.mean, card.std, "RGB", card.colour_order)
    assert from_bgr.shape == (32, 32, 3) and from_bgr.dtype == np.float32
    np.testing.assert_array_equal(from_bgr, from_rgb)
    # A colour mix-up would show: the swapped image gives a different tensor.
    assert not np.array_equal(from_bgr, preprocessing.prepare_image(bgr, card.input_size, card.mean, card.std))
    predictor = TFLitePredictor(edge_int8_model)
    # The predictor swaps channels after the shared resize: still the identical tensor.
    float_predictor = TFLitePredictor(edge_int8_model.parent / "model_float32.tflite")
    assert float_predictor.input_quantization.dtype == "float32"  # its prepare() stops before quantising
    np.testing.assert_array_equal(float_predictor.prepare(bgr[None], "BGR")[0], from_bgr)
    np.testing.assert_array_equal(predictor.prepare(bgr[None], "BGR"), predictor.prepare(rgb[None], "RGB"))
    np.testing.assert_array_equal(predictor.predict(bgr[None], colour_order="BGR"), predictor.predict(rgb[None]))


def test_int8_uint8_and_float_models_agree(tiny_models, sample_images):
    int8, uint8, float32 = (TFLitePredictor(tiny_models[name]) for name in ("int8", "uint8", "float32"))
    assert (int8.input_quantization.dtype, uint8.input_quantization.dtype, float32.input_quantization.dtype) == (
        "int8", "uint8", "float32"
    )
    assert load_card(tiny_models["uint8"]).input_quantization == uint8.input_quantization
    results = {name: model.predict(sample_images) for name, model in
               (("int8", int8), ("uint8", uint8), ("float32", float32))}
    for probabilities in results.values():
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.05)
    # uint8 I/O is the int8 model with the zero point moved by 128: the same answers.
    np.testing.assert_allclose(results["uint8"], results["int8"], atol=1e-6)
    agreement = np.mean(results["int8"].argmax(1) == results["float32"].argmax(1))
    assert agreement >= 0.8, f"int8 and float top-1 agree on only {agreement:.0%}"
    assert len(set(results["int8"].argmax(1))) >= 3  # a model that answers one class would prove little


def test_card_that_disagrees_with_the_model_is_refused(edge_int8_model, tmp_path):
    model = tmp_path / "model.tflite"
    shutil.copy(edge_int8_model, model)
    card = load_card(edge_int8_model).replace(input_size=[64, 64, 3])
    from toolkit.model_card import save_card

    save_card(card, model)
    assert card_path(model).exists()
    with pytest.raises(ToolkitError, match="does not belong to .*the card says input"):
        TFLitePredictor(model)


def test_compiled_edgetpu_model_uses_its_source_card(edge_int8_model, tmp_path):
    compiled = tmp_path / "model_int8_edgetpu.tflite"
    shutil.copy(edge_int8_model, compiled)
    with pytest.raises(ToolkitError, match="no model card"):
        load_card(card_owner(compiled))
    shutil.copy(card_path(edge_int8_model), tmp_path / "model_int8.card.json")
    assert load_card(card_owner(compiled)) == load_card(edge_int8_model)
