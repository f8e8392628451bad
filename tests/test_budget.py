"""The short-budget recipe: --recipe, --budget (learning rate by wall time, resumable), bfloat16 and the weight average."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from toolkit.cli import main
from toolkit.errors import ToolkitError
from training import backend, budget as budget_module, train as train_module
from training.allcnn import ModelConfig, create_model
from training.backend import keras
from training.budget import LearningRateByProgress, rate_at
from training.callbacks import BatchNormRecalibration, WeightAverage
from training.fused_batch_norm import fuse_batch_norm
from training.train import train
from training.train_config import RECIPES, TrainConfig, parse_budget


def test_budget_accepts_seconds_minutes_and_hours() -> None:
    assert parse_budget("2h") == 7200 and parse_budget("90m") == 5400 and parse_budget("1h30m") == 5400
    assert parse_budget("5400") == 5400 and parse_budget(5400) == 5400 and parse_budget("45s") == 45
    assert parse_budget(None) is None
    for bad in ("", "two hours", "2d", "h"):
        with pytest.raises(ToolkitError, match="--budget"):
            parse_budget(bad)


def test_rate_warms_up_then_decays_to_zero() -> None:
    assert rate_at(0.0, 0.2, 0.2) == 0.0
    assert rate_at(0.1, 0.2, 0.2) == pytest.approx(0.1)
    assert rate_at(0.2, 0.2, 0.2) == pytest.approx(0.2)
    assert rate_at(0.6, 0.2, 0.2) == pytest.approx(0.1)
    assert rate_at(1.0, 0.2, 0.2) == 0.0 and rate_at(1.5, 0.2, 0.2) == 0.0
    assert rate_at(0.6, 0.2, 0.2, "cosine") == pytest.approx(0.1)
    assert rate_at(0.4, 0.2, 0.2, "cosine") > rate_at(0.4, 0.2, 0.2, "linear")


def test_recipe_fills_only_the_fields_left_unset() -> None:
    fast = TrainConfig(recipe="fast").resolved()
    assert {key: getattr(fast, key) for key in RECIPES["fast"]} == RECIPES["fast"]
    mixed = TrainConfig(recipe="fast", batch_size=128, nesterov=False, stage_dropout=0.5).resolved()
    assert (mixed.batch_size, mixed.nesterov, mixed.stage_dropout, mixed.precision) == (128, False, 0.5, "bfloat16")
    assert TrainConfig().resolved().precision == "float32" and TrainConfig().resolved().batch_size == 128
    with pytest.raises(ToolkitError, match="--recipe"):
        TrainConfig(recipe="slow").resolved()
    # A config.json written before --precision existed still reads.
    assert TrainConfig.from_dict({"mixed_precision": True}).precision == "float16"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_ends_on_time_with_the_rate_at_zero_when_the_machine_slows_down(monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)
    optimizer = SimpleNamespace(learning_rate=None)
    model = SimpleNamespace(optimizer=optimizer, stop_training=False)
    controller = LearningRateByProgress(0.2, 0.1, budget_seconds=1000.0, seconds_spent=100.0)
    controller.set_model(model)
    controller.on_train_begin()
    rates, step = [], 0
    while not model.stop_training:
        controller.on_train_batch_begin(step)
        rates.append(optimizer.learning_rate)
        clock.now += 1.0 if step < 300 else 3.0  # the machine gets three times slower mid-run
        controller.on_train_batch_end(step)
        step += 1
    spent = controller.seconds_spent()
    assert controller.finished
    assert 0.95 * 1000 <= spent + controller.reserve_seconds() <= 1000  # room left for the last validation
    assert max(rates) == pytest.approx(0.2, rel=0.02)
    assert rates[-1] < 0.02 * 0.2  # at the end of the budget, not at the end of an epoch count
    assert rates[0] == pytest.approx(rate_at(100 / (1000 - controller.reserve_seconds()), 0.2, 0.1))  # earlier sessions count


@pytest.mark.parametrize(
    "budget, spent_before, first_step, step, first_validation, validation, steps_per_epoch, lowest, slow_pass",
    [
        (30.0, 15.0, 3.0, 0.05, 2.5, 2.0, 8, 0.9, None),  # resumed: the first step and validation here compile; a pass is 7 % of the budget
        (480.0, 0.0, 15.0, 1.7, 20.0, 7.0, 35, 0.95, None),  # the compiling first validation does not hold back time for the rest
        (60.0, 15.0, 3.0, 0.05, 2.5, 0.5, 8, 0.9, 24),  # one pass 4 s slower (a disk flush) near the end does not end the run early
    ],
)
def test_a_budget_run_ends_on_time_though_its_first_step_and_validation_compile(
    monkeypatch, budget, spent_before, first_step, step, first_validation, validation, steps_per_epoch, lowest, slow_pass
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)
    model = SimpleNamespace(optimizer=SimpleNamespace(learning_rate=None), stop_training=False)
    controller = LearningRateByProgress(0.2, 0.1, budget_seconds=budget, seconds_spent=spent_before, steps_per_epoch=steps_per_epoch)
    controller.set_model(model)
    controller.on_train_begin()
    steps, validations = 0, 0
    while True:
        controller.on_train_batch_begin(steps % steps_per_epoch)
        clock.now += first_step if steps == 0 else step
        controller.on_train_batch_end(steps % steps_per_epoch)
        steps += 1
        if model.stop_training or steps % steps_per_epoch == 0:
            controller.on_test_begin()
            clock.now += first_validation if validations == 0 else validation + (4.0 if validations == slow_pass else 0.0)
            validations += 1
        if model.stop_training:
            break
    assert validations > 1 and lowest * budget <= controller.seconds_spent() <= budget


def tiny(sample_dir: Path, out: Path, **changes) -> TrainConfig:
    values = dict(data=str(sample_dir), out=str(out), batch_size=32, width=0.125, progress=False, recipe="fast")
    return TrainConfig(**(values | changes))


@pytest.mark.slow
def test_budget_run_ends_within_its_budget_and_resume_continues_it(sample_dir: Path, tmp_path: Path) -> None:
    # Long enough for the first step's tracing (a few seconds) to be a small part of it; a run ends
    # within 5 % of its budget (the fake-clock tests above hold the controller to the budget itself).
    run = train(tiny(sample_dir, tmp_path / "run", budget="30"))
    state = json.loads((run / "state.json").read_text())
    assert state["finished"] and 0.8 * 30 <= state["seconds_spent"] <= 1.05 * 30
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["budget_seconds"] == 30 and metrics["epochs"] is None
    # The rate reaches zero at the budget's end; the run stops earlier by the time held back for its last validation
    # (1.5 times a measured one, twice after an epoch's last step, batch norm's recalibration included): up to 6 % of 30 s here.
    assert float(state["history"][-1]["learning_rate"]) < 0.1 * 0.2
    # Killed with 10 of 30 seconds spent (the state of an earlier checkpoint): resume counts them and ends within
    # the budget. How much of the rest it spends is the fake-clock tests' concern: the resumed process compiles
    # its steps and validation again, and until a second pass is timed it holds back 3 times the first (up to
    # 15 s of the 20 here on a loaded machine).
    epochs_before = state["epochs_completed"]
    state.update(finished=False, seconds_spent=10.0)
    (run / "state.json").write_text(json.dumps(state))
    train(TrainConfig(resume=str(run), progress=False))
    resumed = json.loads((run / "state.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert resumed["finished"] and resumed["seconds_spent"] <= 1.05 * 30, resumed["seconds_spent"]
    assert 5.0 <= resumed["seconds_spent"] - metrics["wall_seconds_this_session"] <= 10.5, metrics  # the 10 s before count
    assert resumed["epochs_completed"] > epochs_before and resumed["resumed_at_epochs"] == [epochs_before]
    # A finished budget run resumed again trains nothing and keeps its figures.
    train(TrainConfig(resume=str(run), progress=False))
    assert json.loads((run / "state.json").read_text())["history"] == resumed["history"]
    assert json.loads((run / "metrics.json").read_text())["seconds_spent"] == metrics["seconds_spent"] == resumed["seconds_spent"]


@pytest.mark.slow
def test_fast_recipe_from_the_cli_trains_in_bfloat16_without_dropout(sample_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(train_module, "native_bfloat16", lambda: True)  # as on a CPU with AVX512-BF16, whatever runs this
    out = tmp_path / "run"
    code = main(["train", "--data", str(sample_dir), "--recipe", "fast", "--budget", "6", "--batch-size", "32",
                 "--width", "0.125", "--ema", "0.9", "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["batch_size"] == 32 and saved["train"]["precision"] == "bfloat16"
    assert saved["train"]["nesterov"] is True and saved["train"]["label_smoothing"] == 0.2 and saved["train"]["ema"] == 0.9
    assert saved["model"]["input_dropout"] == 0.0 and saved["model"]["stage_dropout"] == 0.0 and saved["model"]["batch_norm"]
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    model = keras.models.load_model(out / "last.keras")
    assert model.get_layer("conv1").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    assert model.optimizer.nesterov


def test_bfloat16_instructions_are_read_from_cpuinfo(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(backend, "gpu_present", lambda: False)
    cpuinfo = tmp_path / "cpuinfo"
    for text, native in [("flags\t\t: fpu avx2 avx512f avx512_vnni\n", False), ("flags\t\t: fpu avx512f avx512_bf16\n", True),
                         ("flags\t: amx_tile amx_bf16\n", True), ("Features\t: fp asimd bf16 i8mm\n", True),
                         ("Features\t: fp asimd\nmodel name\t: bf16 in a name is not a flag\n", False)]:  # fmt: skip
        cpuinfo.write_text(text)
        assert backend.native_bfloat16(cpuinfo) is native, text
    assert backend.native_bfloat16(tmp_path / "absent") is False
    monkeypatch.setattr(backend, "gpu_present", lambda: True)
    assert backend.native_bfloat16(tmp_path / "absent") is True


def test_recipe_bfloat16_becomes_float32_without_bfloat16_hardware_unless_asked_for(monkeypatch, capsys) -> None:
    for native, asked, expected in [(False, None, "float32"), (True, None, "bfloat16")]:
        monkeypatch.setattr(train_module, "native_bfloat16", lambda: native)
        requested = TrainConfig(recipe="fast", precision=asked)
        assert train_module._fit_to_machine(requested.resolved(), requested).precision == expected
        assert ("precision float32" in capsys.readouterr().err) is (expected == "float32")
    requested = TrainConfig(recipe="paper")
    assert train_module._fit_to_machine(requested.resolved(), requested).precision == "float32"
    monkeypatch.setattr(train_module, "native_bfloat16", lambda: False)
    requested = TrainConfig(recipe="fast", precision="bfloat16")
    with pytest.warns(UserWarning, match="emulated and several times slower"):
        assert train_module._fit_to_machine(requested.resolved(), requested).precision == "bfloat16"
    assert "precision float32" not in capsys.readouterr().err


def test_weight_average_is_validated_and_then_training_goes_on_from_the_weights() -> None:
    model = create_model(ModelConfig(width=0.125, batch_norm=True), keras)
    average = WeightAverage(decay=0.75)
    average.set_model(model)
    start = [weight.copy() for weight in model.get_weights()]
    average.on_train_begin()
    trained = [weight + 1.0 for weight in start]
    model.set_weights(trained)
    average.on_train_batch_end(0)  # average = 0.75 * start + 0.25 * trained = start + 0.25
    average.on_test_begin()
    for value, origin in zip(model.get_weights(), start):
        np.testing.assert_allclose(value, origin + 0.25, rtol=1e-6, atol=1e-6)
    average.on_train_batch_begin(1)
    for value, expected in zip(model.get_weights(), trained):
        np.testing.assert_allclose(value, expected)


@pytest.mark.parametrize("fused", [False, True])
def test_recalibration_gives_batch_norm_the_statistics_of_the_images(fused: bool) -> None:
    keras.utils.set_random_seed(0)
    model = create_model(ModelConfig(width=0.125, batch_norm=True), keras)
    if fused:
        fuse_batch_norm(model)
    without_dropout = create_model(ModelConfig(width=0.125, batch_norm=True, input_dropout=0.0, stage_dropout=0.0), keras)
    without_dropout.set_weights(model.get_weights())
    images = np.random.default_rng(0).normal(2.0, 3.0, (16, 32, 32, 3)).astype(np.float32)
    as_trained = keras.ops.convert_to_numpy(without_dropout(images, training=True))  # normalised by the batch's statistics
    assert not np.allclose(keras.ops.convert_to_numpy(model(images, training=False)), as_trained, atol=1e-3)
    recalibration = BatchNormRecalibration(images)
    recalibration.set_model(model)
    recalibration.on_test_begin()
    # The fused op keeps the unbiased variance (n / (n - 1)), which moves the fused model's outputs by up to 1 %.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images, training=False)), as_trained, rtol=1e-2, atol=1e-4)
    assert {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)} == {0.99}
    assert {layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)} == {0.2, 0.5}


def test_recalibration_only_where_the_moving_averages_span_more_than_an_epoch() -> None:
    from training.datasets import Dataset
    from training.train import _batch_norm_recalibration

    model = create_model(ModelConfig(width=0.125, batch_norm=True), keras)
    train_set = Dataset(np.zeros((3000, 32, 32, 3), np.uint8), np.zeros(3000, np.int64), ["a"])
    data = SimpleNamespace(train=train_set, input_shape=(32, 32, 3), mean=[0.0] * 3, std=[1.0] * 3)
    assert _batch_norm_recalibration(model, data, steps_per_epoch=100, replicas=1, seed=0) is None  # 0.99: 100 steps
    assert len(_batch_norm_recalibration(model, data, steps_per_epoch=99, replicas=1, seed=0).images) == 256
    assert _batch_norm_recalibration(model, data, steps_per_epoch=99, replicas=2, seed=0) is None
    without = create_model(ModelConfig(width=0.125, batch_norm=False), keras)
    assert _batch_norm_recalibration(without, data, steps_per_epoch=1, replicas=1, seed=0) is None


@pytest.mark.slow
def test_a_short_epoch_run_saves_the_recalibrated_statistics(sample_dir: Path, tmp_path: Path) -> None:
    from training.callbacks import batch_norm_layers
    from training.train import _batch_norm_recalibration, _load_data

    config = TrainConfig(data=str(sample_dir), out=str(tmp_path / "run"), epochs=2, batch_size=32, width=0.125, batch_norm=True, progress=False)
    train(config)
    saved = keras.models.load_model(tmp_path / "run" / "last.keras")
    recalibration = _batch_norm_recalibration(saved, _load_data(config.resolved(), None), 8, 1, config.seed)
    before = [keras.ops.convert_to_numpy(layer.moving_mean) for layer in batch_norm_layers(saved)]
    recalibration.set_model(saved)
    recalibration.on_test_begin()
    for mean, layer in zip(before, batch_norm_layers(saved)):  # unchanged: the run saved them, not the lagging averages
        np.testing.assert_allclose(mean, keras.ops.convert_to_numpy(layer.moving_mean), atol=1e-3)


def test_images_per_second_counts_every_step_of_the_session_not_only_the_last_epoch(monkeypatch) -> None:
    from training import run_folder

    clock = FakeClock()
    monkeypatch.setattr(run_folder.time, "perf_counter", clock)
    run = SimpleNamespace(state={}, publish_epoch=lambda *arguments: None)
    checkpoint = run_folder.RunCheckpoint(run, None, {}, SimpleNamespace(failure=None), SimpleNamespace(set_epoch=lambda epoch: None), 10)
    checkpoint.set_model(SimpleNamespace(optimizer=SimpleNamespace(learning_rate=0.1)))
    logs = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5}
    for epoch, steps, seconds in ((0, 10, 10.0), (1, 1, 5.0)):  # a budget run's last epoch: one slow step
        checkpoint.on_epoch_begin(epoch)
        for step in range(steps):
            checkpoint.on_train_batch_end(step)
        clock.now += seconds
        checkpoint.on_test_begin()
        clock.now += 3.0  # validation: not training time
        checkpoint.on_epoch_end(epoch, logs)
    assert checkpoint.summary["images_per_second"] == pytest.approx(11 * 10 / 15.0, abs=0.05)
