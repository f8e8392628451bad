"""The shared numpy preprocessing against OpenCV, and its quantisation and top-k helpers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from toolkit import preprocessing

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("source, target", [((64, 48), (32, 24)), ((50, 37), (32, 32)), ((480, 640), (32, 32))])
def test_shrinking_matches_opencv_inter_area(source: tuple[int, int], target: tuple[int, int]) -> None:
    image = RNG.integers(0, 256, (*source, 3)).astype(np.float32)
    ours = preprocessing.resize(image, *target)
    theirs = cv2.resize(image, (target[1], target[0]), interpolation=cv2.INTER_AREA)
    assert ours.shape == (*target, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=0.05)


@pytest.mark.parametrize("source", [(480, 480), (64, 96), (33, 66)])
def test_whole_number_shrink_of_uint8_equals_the_float_path_exactly(source: tuple[int, int]) -> None:
    # uint8 frames take an integer-sum shortcut; it must give the very numbers the float path gives.
    image = RNG.integers(0, 256, (*source, 3), dtype=np.uint8)
    target = (source[0] // {480: 15, 64: 2, 33: 33}[source[0]], source[1] // {480: 15, 96: 3, 66: 33}[source[1]])
    fast = preprocessing.resize(image, *target)
    reference = preprocessing.resize(image.astype(np.float32), *target)
    assert fast.dtype == np.float32 and fast.shape == (*target, 3)
    np.testing.assert_array_equal(fast, reference)
    np.testing.assert_allclose(fast, cv2.resize(image.astype(np.float32), target[::-1], interpolation=cv2.INTER_AREA), atol=1e-3)


@pytest.mark.parametrize("source, target", [((720, 720), (32, 32)), ((1080, 1920), (32, 24)), ((300, 500), (32, 40)), ((4000, 40), (10, 32))])
def test_banded_row_shrink_of_big_uint8_frames_matches_the_float_path(source: tuple[int, int], target: tuple[int, int]) -> None:
    # Big uint8 frames sum each output row's band of source rows instead of a dense product.
    image = RNG.integers(0, 256, (*source, 3), dtype=np.uint8)
    banded = preprocessing.resize(image, *target)
    reference = preprocessing.resize(image.astype(np.float32), *target)
    assert banded.dtype == np.float32 and banded.shape == (*target, 3)
    np.testing.assert_allclose(banded, reference, atol=1e-3)
    np.testing.assert_allclose(banded, cv2.resize(image.astype(np.float32), target[::-1], interpolation=cv2.INTER_AREA), atol=1e-3)


def test_enlarging_matches_opencv_inter_linear() -> None:
    image = RNG.integers(0, 256, (16, 12, 3)).astype(np.float32)
    ours = preprocessing.resize(image, 40, 33)
    theirs = cv2.resize(image, (33, 40), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, theirs, atol=0.05)


def test_same_size_and_grey_resize() -> None:
    image = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocessing.resize(image, 8, 8), image.astype(np.float32))
    assert preprocessing.resize(image[:, :, 0], 4, 4).shape == (4, 4, 1)


def test_bgr_frame_and_rgb_image_give_the_same_tensor() -> None:
    rgb = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    from_rgb = preprocessing.prepare_image(rgb, (32, 32, 3), mean, std, "RGB")
    from_bgr = preprocessing.prepare_image(bgr, (32, 32, 3), mean, std, "BGR")
    np.testing.assert_array_equal(from_rgb, from_bgr)
    # A 640x480 camera frame takes the whole-number shrink (480 -> 32); the colours swap after it.
    frame_rgb = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frame_bgr = np.ascontiguousarray(frame_rgb[:, :, ::-1])
    np.testing.assert_array_equal(
        preprocessing.prepare_image(frame_bgr, (32, 32, 3), mean, std, "BGR"),
        preprocessing.prepare_image(frame_rgb, (32, 32, 3), mean, std, "RGB"),
    )
    # So does a 1280x720 frame, whose rows shrink band by band (720 -> 32 is not whole).
    frame_rgb = RNG.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    frame_bgr = np.ascontiguousarray(frame_rgb[:, :, ::-1])
    np.testing.assert_array_equal(
        preprocessing.prepare_image(frame_bgr, (32, 32, 3), mean, std, "BGR"),
        preprocessing.prepare_image(frame_rgb, (32, 32, 3), mean, std, "RGB"),
    )
    # A BGR model fed an RGB image: the same swap, the other way round.
    np.testing.assert_array_equal(
        preprocessing.prepare_image(rgb, (32, 32, 3), mean, std, "RGB", "BGR"),
        preprocessing.prepare_image(bgr, (32, 32, 3), mean, std, "BGR", "BGR"),
    )
    # The same as centre-cropping 48x48 and INTER_AREA-resizing with OpenCV, then normalising.
    crop = rgb[:, 8:56].astype(np.float32)
    expected = (cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA) / 255.0 - mean) / std
    np.testing.assert_allclose(from_rgb, expected, atol=1e-3)
    assert from_rgb.shape == (32, 32, 3) and from_rgb.dtype == np.float32


def test_a_non_square_input_is_cropped_as_training_crops_it() -> None:
    from training.data import fit_images_to_size

    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    for shape in ((48, 64, 3), (64, 48, 3), (480, 640, 3)):
        image = RNG.integers(0, 256, shape, dtype=np.uint8)
        trained_on = fit_images_to_size(image[None], 24, 40)[0]  # a 24x40 model: wider than tall
        expected = preprocessing.prepare_image(trained_on, (24, 40, 3), mean, std, "RGB")
        seen = preprocessing.prepare_image(image, (24, 40, 3), mean, std, "RGB")
        # Training rounds its resized image to uint8 first: at most half a code apart.
        np.testing.assert_allclose(seen, expected, atol=0.5 / 255 / 0.25 + 1e-6)
    assert fit_images_to_size(np.zeros((0, 48, 64, 1), np.uint8), 24, 40).shape == (0, 24, 40, 1)  # none to fit
    image = np.arange(48 * 64).reshape(48, 64)
    np.testing.assert_array_equal(preprocessing.center_crop(image, 24, 40), image[5:43])  # 38 rows, 5 off each edge
    np.testing.assert_array_equal(preprocessing.center_crop(image, 1, 1), image[:, 8:56])
    np.testing.assert_array_equal(preprocessing.center_crop(image, 32, 24), image[:, 14:50])


def test_grey_model_input_from_a_colour_frame() -> None:
    bgr = RNG.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    tensor = preprocessing.prepare_image(bgr, (28, 28, 1), [0.5], [0.5], "BGR")
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)[:, :, None] / 255.0
    np.testing.assert_allclose(tensor, (expected - 0.5) / 0.5, atol=2 / 255 / 0.5)
    assert preprocessing.convert_colour(np.zeros((4, 4, 4), np.uint8), "RGB", "RGB").shape == (4, 4, 3)


def test_normalize_is_per_channel_and_float32() -> None:
    images = RNG.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    normalised = preprocessing.normalize(images, [0.1, 0.2, 0.3], [0.5, 0.6, 0.7])
    assert normalised.dtype == np.float32
    for channel, (mean, std) in enumerate(zip([0.1, 0.2, 0.3], [0.5, 0.6, 0.7])):
        np.testing.assert_allclose(normalised[..., channel], (images[..., channel] / 255.0 - mean) / std, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype, zero_point", [("int8", -3), ("uint8", 128)])
def test_quantize_dequantize_round_trip_and_clipping(dtype: str, zero_point: int) -> None:
    scale = 0.02
    info = np.iinfo(dtype)
    low, high = (info.min - zero_point) * scale, (info.max - zero_point) * scale
    values = RNG.uniform(low, high, 1000).astype(np.float32)
    codes = preprocessing.quantize(values, scale, zero_point, dtype)
    assert codes.dtype == np.dtype(dtype)
    restored = preprocessing.dequantize(codes, scale, zero_point)
    assert np.max(np.abs(restored - values)) <= scale / 2 + 1e-6
    extremes = preprocessing.quantize(np.array([low - 5, high + 5], np.float32), scale, zero_point, dtype)
    assert extremes.tolist() == [info.min, info.max]
    assert preprocessing.quantize(np.array([0.0]), scale, zero_point, dtype)[0] == zero_point
    floats = np.array([0.25], np.float32)
    assert preprocessing.quantize(floats, 0.0, 0, "float32") is not None
    np.testing.assert_array_equal(preprocessing.dequantize(floats, 0.0, 0), floats)


def test_top_k_orders_best_first_with_stable_ties() -> None:
    probabilities = np.array([[0.1, 0.3, 0.3, 0.05, 0.25], [0.5, 0.1, 0.1, 0.2, 0.1]])
    indices, scores = preprocessing.top_k(probabilities, 3)
    assert indices.tolist() == [[1, 2, 4], [0, 3, 1]]
    np.testing.assert_allclose(scores, [[0.3, 0.3, 0.25], [0.5, 0.2, 0.1]])
    assert preprocessing.top_k(probabilities[0], 99)[0].tolist() == [1, 2, 4, 0, 3]
    np.testing.assert_allclose(preprocessing.softmax(np.array([[1.0, 1.0], [1000.0, 0.0]])), [[0.5, 0.5], [1.0, 0.0]])


def test_predictor_prepares_batches_as_prepare_image_does_and_reads_any_output() -> None:
    from toolkit.model_card import ModelCard, TensorQuantization
    from toolkit.preprocessing import Predictor

    card = ModelCard(labels=[str(index) for index in range(100)], input_size=[8, 8, 3], mean=[0.4] * 3, std=[0.2] * 3)
    predictor = Predictor(card, TensorQuantization("int8", 0.05, -3), TensorQuantization("int8", 1 / 256, -128))
    at_size, other_size = RNG.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8), RNG.integers(0, 256, (2, 13, 9, 3), dtype=np.uint8)
    for images, order in ((at_size, "RGB"), (at_size, "BGR"), (other_size, "BGR")):
        expected = np.stack([preprocessing.prepare_image(image, card.input_size, card.mean, card.std, order) for image in images])
        np.testing.assert_array_equal(predictor.prepare(images, order), preprocessing.quantize(expected, 0.05, -3, "int8"))
    # An int8 softmax over 100 classes may miss a sum of 1 by more than 0.05: still probabilities, kept.
    codes = np.full((1, 100), -128 + 3, np.int8)
    np.testing.assert_array_equal(predictor.probabilities(codes), preprocessing.dequantize(codes, 1 / 256, -128))
    logits = np.array([[2.0, -1.0, 0.5]], np.float32)  # a float model that ends in logits
    np.testing.assert_allclose(Predictor(card).probabilities(logits), preprocessing.softmax(logits))
