"""`toolkit eval` and training.evaluate on a tiny All-CNN-C: .keras, float and int8 .tflite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from toolkit import preprocessing
from toolkit.cli import main
from toolkit.errors import ToolkitError
from toolkit.model_card import ModelCard, load_card, save_card
from training.data import Dataset, load_dataset
from training.evaluate import evaluate, label_mapping, load_evaluation_data, load_predictor
from training.splits import train_validation_split

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def models(tiny_models: dict[str, Path]) -> dict[str, Path]:
    """The session's tiny model as run/best.keras, float32 and int8 (int8 in and out), each with a card."""
    return {"keras": tiny_models["keras"], "float": tiny_models["float32"], "int8": tiny_models["int8"]}


def test_cli_writes_report_and_confusion_png(models: dict[str, Path], sample_dir: Path, tmp_path: Path, capsys) -> None:
    report_path = tmp_path / "m.json"
    code = main(["eval", "--model", str(models["keras"]), "--data", str(sample_dir), "--limit", "50", "--report", str(report_path)])
    assert code == 0
    output = capsys.readouterr().out
    assert "top-1" in output and "50 images" in output
    report = json.loads(report_path.read_text())
    assert report["n"] == 50 and report["format"] == "keras"
    assert set(report["per_class"]) == set(LABELS) and sum(report["per_class_count"].values()) == 50
    matrix = np.asarray(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 50
    assert report["top1"] == pytest.approx(np.trace(matrix) / 50)
    assert 0.0 <= report["top1"] <= report["top5"] <= 1.0
    png = tmp_path / "m.confusion.png"
    assert report["confusion_png"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The figures agree with the raw probabilities computed independently.
    subset = load_dataset(str(sample_dir), limit=50)
    probabilities = load_predictor(models["keras"]).predict(subset.images)
    assert report["top1"] == pytest.approx(np.mean(probabilities.argmax(axis=1) == subset.labels))


def test_labels_are_matched_by_name(models: dict[str, Path], sample_dataset: Dataset, tmp_path: Path) -> None:
    # The same model with its card listing the classes in reverse order.
    reversed_model = tmp_path / "reversed.keras"
    shutil.copy(models["keras"], reversed_model)
    save_card(load_card(models["keras"]).replace(labels=LABELS[::-1]), reversed_model)
    predictions = load_predictor(reversed_model).predict(sample_dataset.images).argmax(axis=1)
    report = evaluate(reversed_model, sample_dataset)
    by_name = predictions == 9 - sample_dataset.labels
    by_id = predictions == sample_dataset.labels
    assert report["top1"] == pytest.approx(by_name.mean())
    for index, name in enumerate(LABELS):
        assert report["per_class"][name] == pytest.approx(by_name[sample_dataset.labels == index].mean())
    assert any(
        report["per_class"][name] != pytest.approx(by_id[sample_dataset.labels == index].mean()) for index, name in enumerate(LABELS)
    ), "the model's predictions cannot tell name matching from id matching; the test would prove nothing"

    # A folder holding three classes, in another order, scores those images the same.
    chosen = [LABELS.index(name) for name in ("truck", "cat", "bird")]
    members = np.flatnonzero(np.isin(sample_dataset.labels, chosen))
    partial = Dataset(sample_dataset.images[members], np.asarray([chosen.index(label) for label in sample_dataset.labels[members]]), ["truck", "cat", "bird"])
    partial_report = evaluate(reversed_model, partial)
    assert partial_report["n"] == 90 and set(partial_report["per_class"]) == {"truck", "cat", "bird"}
    for name in ("truck", "cat", "bird"):
        assert partial_report["per_class"][name] == pytest.approx(report["per_class"][name])

    with pytest.raises(ToolkitError, match="zebra are not among the model's labels"):
        label_mapping(["cat", "zebra"], LABELS)
    assert label_mapping(["CAT", "dog"], LABELS).tolist() == [3, 5]


def test_tflite_float_matches_keras_and_int8_runs(models: dict[str, Path], sample_dataset: Dataset) -> None:
    images = sample_dataset.images[::10]
    keras_probabilities = load_predictor(models["keras"]).predict(images)
    float_probabilities = load_predictor(models["float"]).predict(images)
    np.testing.assert_allclose(float_probabilities, keras_probabilities, atol=1e-4)
    int8_probabilities = load_predictor(models["int8"]).predict(images)
    assert int8_probabilities.shape == (30, 10)
    np.testing.assert_allclose(int8_probabilities.sum(axis=1), 1.0, atol=0.05)
    # Dequantised int8 outputs stay near the float ones (raw codes or a wrong zero point would not).
    assert np.abs(int8_probabilities - keras_probabilities).mean() < 0.02
    assert np.abs(int8_probabilities - keras_probabilities).max() < 0.2
    report = evaluate(models["int8"], sample_dataset.subset(np.arange(0, 300, 10)))
    assert report["format"] == "tflite" and report["card_format"] == "tflite-int8" and report["n"] == 30
    assert report["top1"] == pytest.approx(np.mean(int8_probabilities.argmax(axis=1) == sample_dataset.labels[::10]))


def test_images_of_another_size_go_through_shared_preprocessing(models: dict[str, Path], sample_dataset: Dataset) -> None:
    from training.backend import keras

    import cv2

    large = np.stack([cv2.resize(image, (48, 40), interpolation=cv2.INTER_LINEAR) for image in sample_dataset.images[:6]])
    card = load_card(models["keras"])
    expected = keras.models.load_model(models["keras"]).predict_on_batch(
        np.stack([preprocessing.prepare_image(image, card.input_size, card.mean, card.std) for image in large])
    )
    np.testing.assert_allclose(load_predictor(models["keras"]).predict(large), expected, atol=1e-5)
    np.testing.assert_allclose(load_predictor(models["float"]).predict(large), expected, atol=1e-4)


def test_validation_split_follows_the_card(sample_dir: Path, sample_dataset: Dataset) -> None:
    card = ModelCard(labels=LABELS, input_size=[32, 32, 3], mean=[0.5] * 3, std=[0.25] * 3)
    card.metrics = {"validation_fraction": 0.2, "split_seed": 1, "train_images": 240, "validation_images": 60}
    validation = load_evaluation_data(str(sample_dir), card, "validation")
    _, expected = train_validation_split(sample_dataset, 0.2, 1)
    np.testing.assert_array_equal(validation.images, expected.images)
    assert len(load_evaluation_data(str(sample_dir), card, "validation", limit=20)) == 20
    # Trained with --limit 100: the split is carved from that same subset.
    card.metrics = {"validation_fraction": 0.1, "split_seed": 0, "train_images": 90, "validation_images": 10}
    limited = load_evaluation_data(str(sample_dir), card, "validation")
    _, expected = train_validation_split(load_dataset(str(sample_dir), limit=100, seed=0), 0.1, 0)
    np.testing.assert_array_equal(limited.images, expected.images)
    card.metrics = {"validation_fraction": 0.1, "split_seed": 0, "limit": None, "validation_images": 12}
    with pytest.raises(ToolkitError, match="has 30 images but the model card records 12"):
        load_evaluation_data(str(sample_dir), card, "validation")


def test_bad_inputs_are_one_line_errors(models: dict[str, Path], sample_dir: Path, tmp_path: Path, capsys) -> None:
    def error_of(*arguments: str) -> str:
        assert main(["eval", *arguments]) == 2
        message = capsys.readouterr().err.strip()
        assert message.startswith("error: ") and "\n" not in message
        return message

    assert "does not exist" in error_of("--model", str(tmp_path / "none.keras"), "--data", str(sample_dir))
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip file")
    save_card(load_card(models["keras"]), corrupt)
    assert "is not a Keras model file (not a zip archive)" in error_of("--model", str(corrupt), "--data", str(sample_dir))
    corrupt_lite = tmp_path / "corrupt.tflite"
    corrupt_lite.write_bytes(b"\x00" * 64)
    save_card(load_card(models["keras"]), corrupt_lite)
    assert "is not a TFLite model" in error_of("--model", str(corrupt_lite), "--data", str(sample_dir))
    no_card = tmp_path / "no_card.keras"
    shutil.copy(models["keras"], no_card)
    assert "no model card" in error_of("--model", str(no_card), "--data", str(sample_dir))
    assert "expected a .keras or .tflite model" in error_of("--model", str(tmp_path / "model.h5"), "--data", str(sample_dir))
    other = tmp_path / "other"
    for name in ("cat", "zebra"):
        shutil.copytree(sample_dir / "cat", other / name)
    assert "zebra are not among" in error_of("--model", str(models["keras"]), "--data", str(other))
