"""`toolkit train` in process on the committed sample: run folder, model card, schedules, optimizer, NaN stop."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from toolkit.cli import main
from toolkit.errors import ToolkitError
from toolkit.model_card import ModelCard, load_card
from training.allcnn import ModelConfig
from training.backend import keras
from training.batches import BatchSource
from training.data import channel_statistics, load_dataset
from training.optimization import L2SGD, SparseSmoothedCrossentropy
from training.run_folder import RunFolder
from toolkit.atomic import file_digest
from training.schedules import PiecewiseDecay, WarmupCosine, create_schedule, paper_milestones
from training.splits import train_validation_split
from training.train import TrainConfig, train


def tiny(sample_dir: Path, out: Path, **changes) -> TrainConfig:
    values = dict(data=str(sample_dir), out=str(out), epochs=2, batch_size=32, width=0.125, progress=False)
    return TrainConfig(**(values | changes))


def test_paper_schedule_drops_at_scaled_milestones() -> None:
    assert paper_milestones(350) == [200, 250, 300]
    assert paper_milestones(35) == [20, 25, 30]
    schedule = create_schedule("paper", 0.1, epochs=35, steps_per_epoch=10)
    assert isinstance(schedule, PiecewiseDecay)
    rates = {step: float(schedule(step)) for step in (0, 199, 200, 249, 250, 299, 300, 349)}
    assert rates[0] == pytest.approx(0.1) and rates[199] == pytest.approx(0.1)
    assert rates[200] == pytest.approx(0.01) and rates[249] == pytest.approx(0.01)
    assert rates[250] == pytest.approx(0.001) and rates[300] == pytest.approx(0.0001) and rates[349] == pytest.approx(0.0001)


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    schedule = create_schedule("cosine", 0.2, epochs=10, steps_per_epoch=10, warmup_epochs=5)
    assert isinstance(schedule, WarmupCosine)
    assert schedule.warmup_steps == 10  # 5 epochs would be 50 steps: capped at a tenth of the run
    rates = [float(schedule(step)) for step in range(100)]
    assert rates[0] == pytest.approx(0.02)
    assert rates[9] == pytest.approx(0.2) and rates[10] == pytest.approx(0.2)
    assert all(later <= earlier + 1e-7 for earlier, later in zip(rates[10:], rates[11:]))
    assert rates[55] == pytest.approx(0.1, rel=1e-3)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)


def test_l2_weight_decay_is_added_to_the_gradient_before_momentum() -> None:
    weight = keras.Variable(np.array([1.0, -2.0], np.float32))
    gradient = np.array([0.5, 0.5], np.float32)
    optimizer = L2SGD(l2=0.1, learning_rate=0.1, momentum=0.9)
    optimizer.apply([keras.ops.convert_to_tensor(gradient)], [weight])
    first = np.array([1.0, -2.0]) - 0.1 * (gradient + 0.1 * np.array([1.0, -2.0]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), first, rtol=1e-6)
    velocity = -0.1 * (gradient + 0.1 * np.array([1.0, -2.0]))
    optimizer.apply([keras.ops.convert_to_tensor(gradient)], [weight])
    second = first + 0.9 * velocity - 0.1 * (gradient + 0.1 * first)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), second, rtol=1e-6)


def test_label_smoothing_matches_the_formula() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    labels = np.array([0, 2])
    loss = float(SparseSmoothedCrossentropy(0.3)(labels, probabilities))
    targets = np.full((2, 3), 0.1) + 0.7 * np.eye(3)[labels]
    assert loss == pytest.approx(float(np.mean(-(targets * np.log(probabilities)).sum(1))), rel=1e-5)


def test_run_folder_card_and_curves(sample_dir: Path, tmp_path: Path) -> None:
    run = train(tiny(sample_dir, tmp_path / "run", label_smoothing=0.1, augmentation="cutout"))
    for name in ("config.json", "best.keras", "last.keras", "best.card.json", "last.card.json", "history.csv", "curves.png", "metrics.json", "state.json"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert not list(run.glob(".*"))  # no temporary files left behind

    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert all(math.isfinite(float(row[key])) for row in rows for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"))

    train_set, validation_set = train_validation_split(load_dataset(str(sample_dir)), 0.1, 0)
    mean, std = channel_statistics(train_set.images)  # training split only
    card = load_card(run / "best.keras")
    assert card.labels == sorted(path.name for path in sample_dir.iterdir())
    assert card.input_size == [32, 32, 3] and card.colour_order == "RGB" and card.format == "keras"
    np.testing.assert_allclose(card.mean, mean)
    np.testing.assert_allclose(card.std, std)
    assert card.architecture == ModelConfig(width=0.125).to_dict()
    assert card.metrics["validation_fraction"] == 0.1 and card.metrics["split_seed"] == 0
    assert card.metrics["validation_images"] == len(validation_set) == 30

    metrics = json.loads((run / "metrics.json").read_text())
    best_row = rows[metrics["best_epoch"] - 1]
    assert card.metrics["validation_accuracy"] == pytest.approx(float(best_row["val_accuracy"]))
    accuracies = [float(row["val_accuracy"]) for row in rows]
    highest = max(accuracies)
    error = math.sqrt(highest * (1 - highest) / card.metrics["validation_images"])
    tied = [epoch for epoch, accuracy in enumerate(accuracies, 1) if accuracy >= highest - error]
    assert metrics["best_epoch"] == tied[-1]
    assert metrics["best_validation_accuracy"] == pytest.approx(float(best_row["val_accuracy"]))

    config = json.loads((run / "config.json").read_text())
    assert config["train"]["label_smoothing"] == 0.1 and config["model"]["width"] == 0.125
    model = keras.models.load_model(run / "last.keras")
    assert isinstance(model.optimizer, L2SGD)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2 * (270 // 32)
    with pytest.raises(ToolkitError, match="already holds a run"):
        train(tiny(sample_dir, run))


@pytest.mark.parametrize("fault", ["learning-rate-jump", "nan-images"])
@pytest.mark.slow
def test_divergence_stops_with_one_line_and_keeps_last_good_checkpoint(
    fault: str, sample_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    if fault == "learning-rate-jump":  # a sane first epoch, then x1e6: the loss itself turns NaN
        monkeypatch.setattr(
            "training.train.create_schedule", lambda name, rate, epochs, steps, warmup: PiecewiseDecay(0.01, [steps], 1e6)
        )
    else:  # NaN pixels in the second epoch: XLA may hide them from the loss, but not from the weights
        original = BatchSource.__getitem__

        def poisoned(self, index):
            images, labels = original(self, index)
            if self.training and self.epoch >= 1:
                images = np.full_like(images, np.nan)
            return images, labels

        monkeypatch.setattr(BatchSource, "__getitem__", poisoned)
    with pytest.raises(ToolkitError) as caught:
        train(tiny(sample_dir, tmp_path / "run", epochs=3))
    message = str(caught.value)
    assert "\n" not in message and "NaN" in message and "at epoch 2" in message and "(epoch 1) is kept" in message
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epochs_completed"] == 1 and state["last_sha256"] == file_digest(tmp_path / "run" / "last.keras")
    model = keras.models.load_model(tmp_path / "run" / "last.keras")
    assert all(np.all(np.isfinite(weight)) for weight in model.get_weights())


@pytest.mark.filterwarnings("ignore:--precision float16 on a CPU")
@pytest.mark.slow
def test_mixed_precision_trains_and_keeps_a_float32_softmax(sample_dir: Path, tmp_path: Path) -> None:
    run = train(tiny(sample_dir, tmp_path / "run", epochs=1, precision="float16"))
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    model = keras.models.load_model(run / "last.keras", compile=False)
    assert model.get_layer("conv1").dtype_policy.name == "mixed_float16"
    assert model.get_layer("predictions").dtype_policy.name == "float32"


def test_cli_help_shows_defaults_and_bad_input_is_one_line(sample_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for fragment in ("--resume RUN", "--limit N", "(default: 0.9)", "(default: paper)", "paper cosine, fast linear", "paper 0.001, fast 0.0005"):
        assert fragment in help_text
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "missing" in error and "\n" not in error
    assert main(["train", "--data", str(sample_dir), "--out", str(tmp_path / "run"), "--batch-size", "1000"]) == 2
    assert "larger than the 270 training images" in capsys.readouterr().err
    # Too few images for the split: named as such (not as a batch-size problem), with no numpy
    # warnings about empty slices, and the failed run leaves no empty --out folder behind.
    assert main(["train", "--data", str(sample_dir), "--out", str(tmp_path / "tiny" / "run"), "--limit", "5"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: class ") and "has only 1 image" in error and "--limit" in error and "\n" not in error
    assert not (tmp_path / "tiny").exists()


@pytest.mark.parametrize(("validation_images", "best_epochs"), [(110, [1, 2, 3, 4]), (100_000, [1, 2, 2, 2])])
def test_best_is_the_latest_epoch_within_one_standard_error_of_the_highest(
    validation_images: int, best_epochs: list[int], tmp_path: Path
) -> None:
    """On 110 validation images 0.88 and 0.875 tie with 0.90 (one standard error is 2.9 points); on 100,000 they do not."""
    run = RunFolder(tmp_path / "run")
    run.start(steps_per_epoch=1)
    card = ModelCard(labels=["a", "b"], input_size=[32, 32, 3], mean=[0.5] * 3, std=[0.25] * 3)
    chosen = []
    for epoch, accuracy in enumerate([0.5, 0.9, 0.88, 0.875], 1):
        row = {"epoch": epoch, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": accuracy, "learning_rate": 0.1, "seconds": 1.0}
        run.publish_epoch(lambda path, epoch=epoch: Path(path).write_text(f"epoch {epoch}"), row, card, {"validation_images": validation_images})
        chosen.append(run.state["best"]["epoch"])
    assert chosen == best_epochs
    assert (run.root / "best.keras").read_text() == f"epoch {best_epochs[-1]}"
