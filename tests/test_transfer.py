"""Training from a trained model (--from) and defaults that work on a small folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from toolkit import atomic
from toolkit.cli import main
from toolkit.errors import ToolkitError
from toolkit.model_card import ModelCard, load_card, save_card
from training.allcnn import ModelConfig, create_model
from training.backend import keras
from training.train import train
from training.train_config import TrainConfig
from training.transfer import parent_architecture, start_from


@pytest.fixture(scope="module")
def parent(sample_dataset, tmp_path_factory) -> Path:
    """A tiny batch-norm model saved with its card as ``toolkit train`` saves one, for the 10 classes of the sample.

    Its weights are the initial ones with noise, so none is the value a fresh model starts from (not even batch
    norm's ones and zeros) and a weight that was not copied shows.
    """
    path = tmp_path_factory.mktemp("parent") / "best.keras"
    config = ModelConfig(width=0.125, batch_norm=True)
    model = create_model(config, keras)
    rng = np.random.default_rng(0)
    model.set_weights([weights * rng.uniform(0.8, 1.2, weights.shape) + rng.normal(0.0, 0.01, weights.shape) for weights in model.get_weights()])
    model.save(path)
    save_card(ModelCard(labels=sample_dataset.class_names, input_size=list(config.input_shape), mean=[0.5] * 3, std=[0.25] * 3,
                        architecture=config.to_dict(), dataset=str(sample_dataset.source), history=["train"]), path)  # fmt: skip
    return path


def small_folder(sample_dir: Path, root: Path, classes=("cat", "dog", "ship"), per_class: int = 10, size: int | None = None) -> Path:
    for name in classes:
        (root / name).mkdir(parents=True)
        for image in sorted((sample_dir / name).glob("*.jpg"))[:per_class]:
            if size is None:
                shutil.copy(image, root / name / image.name)
            else:  # as `toolkit collect` saves them: larger than the model's input
                cv2.imwrite(str(root / name / image.name), cv2.resize(cv2.imread(str(image)), (size, size)))
    return root


def test_weights_are_copied_and_the_classifier_replaced_when_the_classes_differ(parent: Path) -> None:
    parent_model = parent_architecture(str(parent))
    path, card, architecture = parent_model
    source = keras.saving.load_model(parent, compile=False)
    child = create_model(ModelConfig(width=architecture.width, batch_norm=True, num_classes=3, input_dropout=0.0, stage_dropout=0.0), keras)
    start_from(child, parent_model, ["cat", "dog", "ship"], freeze_stages=1)
    for name in ("conv1", "conv5", "conv8", "bn2", "bn6"):
        for copied, original in zip(child.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(copied, original)
    assert child.get_layer("conv9").get_weights()[0].shape[-1] == 3
    assert [layer.name for layer in child.layers if not layer.trainable and layer.weights] == ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"]
    # The same classes: the classifier is copied too.
    same = create_model(ModelConfig(width=architecture.width, batch_norm=True), keras)
    start_from(same, parent_model, list(card.labels))
    np.testing.assert_array_equal(same.get_layer("conv9").get_weights()[0], source.get_layer("conv9").get_weights()[0])


def test_a_grayscale_model_gets_the_sum_of_the_rgb_kernels(parent: Path) -> None:
    parent_model = parent_architecture(str(parent))
    gray = create_model(ModelConfig(width=parent_model.architecture.width, batch_norm=True, input_shape=(28, 28, 1), num_classes=10), keras)
    start_from(gray, parent_model, [f"class{index}" for index in range(10)])
    kernel = keras.saving.load_model(parent, compile=False).get_layer("conv1").get_weights()[0]
    np.testing.assert_allclose(gray.get_layer("conv1").get_weights()[0], kernel.sum(axis=2, keepdims=True), rtol=1e-6)


@pytest.mark.slow
def test_train_from_a_model_keeps_its_architecture_and_names_the_parent(parent: Path, sample_dir: Path, tmp_path: Path, capsys) -> None:
    data = small_folder(sample_dir, tmp_path / "mine", per_class=20, size=72)
    out = tmp_path / "child"
    assert main(["train", "--data", str(data), "--from", str(parent), "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    assert "steps an epoch: batch norm's statistics are recomputed on 54 training images" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["batch_norm_recalibration_images"] == 54
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["width"] == 0.125 and saved["model"]["batch_norm"]  # the parent's, not --width's default 1.0
    assert saved["model"]["input_shape"] == [32, 32, 3]  # 72x72 images fitted to the parent's input
    assert saved["train"]["learning_rate"] == pytest.approx(0.05 * 8 / 128)  # the recipe's, scaled to batch 8
    card = load_card(out / "best.keras")
    assert card.labels == ["cat", "dog", "ship"] and card.source_sha256 == atomic.file_digest(parent)
    assert card.history[-1] == f"train --from {parent}"
    with pytest.raises(ToolkitError, match="--from"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "other"), from_model=str(tmp_path / "missing.keras")))
    with pytest.raises(ToolkitError, match="--freeze-stages needs --from"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "other"), freeze_stages=1))
    broken = tmp_path / "broken" / "best.keras"
    broken.parent.mkdir()
    shutil.copy(parent, broken)
    card = json.loads((parent.parent / "best.card.json").read_text())
    for architecture, message in (({**card["architecture"], "name": "resnet"}, "unknown architecture 'resnet'"),
                                  ({**card["architecture"], "input_shape": "x"}, "unreadable architecture"), ({}, "records no architecture")):  # fmt: skip
        (broken.parent / "best.card.json").write_text(json.dumps({**card, "architecture": architecture}))
        with pytest.raises(ToolkitError, match=message) as raised:
            parent_architecture(str(broken))
        assert str(raised.value).startswith(f"--from {broken}: the card of {broken}") and "\n" not in str(raised.value)


@pytest.mark.slow
def test_a_small_folder_trains_with_the_defaults(sample_dir: Path, tmp_path: Path, capsys) -> None:
    data = small_folder(sample_dir, tmp_path / "mine", per_class=10)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--epochs", "3", "--width", "0.25", "--out", str(out), "--no-progress"]) == 0
    error = capsys.readouterr().err
    assert error.count("27 training images: batch size 4, learning rate 0.001563") == 1
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["batch_size"] == 4 and saved["requested"]["batch_size"] is None
    history = json.loads((out / "state.json").read_text())["history"]
    assert len(history) == 3 and all(np.isfinite(row["loss"]) for row in history)


@pytest.mark.parametrize(
    ("recipe", "train_images", "changes"),
    [
        ("fast", 1000, {"batch_size": 32, "learning_rate": 0.025}),  # 31 steps an epoch instead of 7
        ("fast", 3000, {"batch_size": 128, "learning_rate": 0.1}),
        ("fast", 4096, {}),  # 16 steps of the recipe's 256
        ("paper", 200, {"batch_size": 16, "learning_rate": 0.00625}),  # not below 16 (13 steps) ...
        ("paper", 27, {"batch_size": 4, "learning_rate": 0.0015625}),  # ... unless that is more than a quarter
        ("paper", 45000, {}),
    ],
)
def test_small_data_batch_gives_an_epoch_enough_steps(recipe: str, train_images: int, changes: dict) -> None:
    assert TrainConfig(recipe=recipe).small_data_changes(train_images) == pytest.approx(changes)


def test_small_data_changes_keep_the_flags_given() -> None:
    assert TrainConfig(batch_size=16).small_data_changes(27) == {}
    assert TrainConfig(learning_rate=0.01).small_data_changes(27) == {"batch_size": 4}
