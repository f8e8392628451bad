"""Smoke tests of benchmarks/recipe.py, train_throughput.py and int8_compression.py on the committed sample, at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from script_support import load_script

from toolkit.errors import ToolkitError

WIDTH = "0.125"


@pytest.fixture(scope="module")
def recipe():
    return load_script("recipe")


@pytest.fixture(scope="module")
def train_throughput():
    return load_script("train_throughput")


def recipe_arguments(sample_dir: Path, root: Path, arms: str, budget: str = "4") -> list[str]:
    """Command-line arguments of recipe.py that keep everything under ``root``."""
    return [
        "--data", str(sample_dir), "--width", WIDTH, "--budget", budget, "--arms", arms,
        "--out-dir", str(root / "runs"), "--results", str(root / "recipe"), "--markdown", str(root / "recipe.md"),
    ]  # fmt: skip


def refuse_to_train(config) -> Path:
    raise AssertionError(f"train() was called for {config.out or config.resume}; the arm should have been read back")


@pytest.mark.slow
def test_recipe_table_holds_every_arm_and_reads_finished_arms_back(recipe, sample_dir, tmp_path, monkeypatch):
    arguments = recipe_arguments(sample_dir, tmp_path, "old-default,fast")
    assert recipe.main(arguments) == 0
    results = json.loads((tmp_path / "recipe.json").read_text())
    assert [row["arm"] for row in results["arms"]] == ["old-default", "fast"]
    for row in results["arms"]:
        assert row["status"] == "finished" and row["epochs_completed"] >= 1
        assert 0 <= row["best_validation_accuracy"] <= 1 and row["images_per_second"] > 0
        assert row["seconds_spent"] > 0 and row["budget_seconds"] == results["budget_seconds"] == 4
    table = (tmp_path / "recipe.md").read_text()
    assert "| old-default | recipe paper: " in table and "| fast | none: the fast recipe |" in table
    assert f"`python benchmarks/recipe.py --data {sample_dir}" in table and f"{os.cpu_count()} CPUs" in table
    assert "limit 10000" in table and "budget 4 " in table

    state = tmp_path / "runs" / "fast" / "state.json"
    written = state.stat().st_mtime_ns
    monkeypatch.setattr("benchmarks.sitting.train", refuse_to_train)
    assert recipe.main(arguments) == 0
    assert state.stat().st_mtime_ns == written
    assert json.loads((tmp_path / "recipe.json").read_text())["arms"] == results["arms"]


def test_a_diverged_arm_is_recorded_and_other_errors_are_not(recipe, sample_dir, tmp_path, monkeypatch):
    def diverge(config) -> Path:
        raise ToolkitError("training diverged: the loss became NaN at epoch 1, step 3", exit_code=3)

    monkeypatch.setattr("benchmarks.sitting.train", diverge)
    arguments = recipe_arguments(sample_dir, tmp_path, "no-batch-norm")
    assert recipe.main(arguments) == 0
    row = json.loads((tmp_path / "recipe.json").read_text())["arms"][0]
    assert row["status"] == "diverged" and "loss became NaN" in row["error"]
    assert "| no-batch-norm (diverged) | batch norm off (fast: on) |" in (tmp_path / "recipe.md").read_text()

    monkeypatch.setattr("benchmarks.sitting.train", refuse_to_train)
    assert recipe.main(arguments) == 0  # a diverged arm is read back, not rerun

    def fail(config) -> Path:
        raise ToolkitError("data folder is missing")

    monkeypatch.setattr("benchmarks.sitting.train", fail)
    with pytest.raises(ToolkitError, match="data folder is missing"):
        recipe.main(recipe_arguments(sample_dir, tmp_path, "fast"))


def test_an_interrupted_arm_is_resumed_and_other_settings_are_refused(recipe, sample_dir, tmp_path, monkeypatch):
    arguments = recipe_arguments(sample_dir, tmp_path, "ema")
    config = recipe.arm_config(recipe.select_arms("ema")[0], recipe.parse_arguments(arguments)).resolved()
    folder = Path(config.out)
    folder.mkdir(parents=True)
    saved = config.to_dict() | {"data": str(sample_dir.resolve()), "resume": None}
    (folder / "config.json").write_text(json.dumps({"train": saved}))
    (folder / "state.json").write_text(json.dumps({"epochs_completed": 1, "finished": False}))
    calls = []
    monkeypatch.setattr("benchmarks.sitting.train", lambda config: calls.append(config) or folder)
    assert recipe.main(arguments) == 0
    assert [call.resume for call in calls] == [str(folder)]

    saved["ema"] = 0.5
    (folder / "config.json").write_text(json.dumps({"train": saved}))
    with pytest.raises(ToolkitError, match=r"other settings \(ema\)"):
        recipe.main(arguments)


def test_unknown_arms_are_refused(recipe):
    with pytest.raises(ToolkitError, match="--arms"):
        recipe.select_arms("fast,fastest")


@pytest.mark.slow
@pytest.mark.parametrize("comparison, sides", [("recipes", (("old", "float32", 128, 2), ("fast", "mixed_bfloat16", 256, 1))),
                                               ("precision", (("float32", "float32", 256, 1), ("bfloat16", "mixed_bfloat16", 256, 1)))])  # fmt: skip
def test_train_throughput_reports_the_ratio_of_its_two_sides(train_throughput, sample_dir, tmp_path, comparison, sides):
    from training.backend import keras

    out = tmp_path / "train_throughput"
    arguments = ["--data", str(sample_dir), "--compare", comparison, "--widths", WIDTH, "--images", "256",
                 "--repeats", "1", "--rounds", "1", "--out", str(out)]  # fmt: skip
    code = train_throughput.main(arguments)
    payload = json.loads(out.with_suffix(".json").read_text())
    (row,) = payload["results"]
    baseline, candidate = row[sides[0][0]], row[sides[1][0]]
    for side, (_, policy, batch_size, steps) in zip((baseline, candidate), sides):
        assert (side["policy"], side["batch_size"], side["steps_per_epoch"]) == (policy, batch_size, steps)
    assert row["ratio"] == pytest.approx(candidate["images_per_second"] / baseline["images_per_second"], rel=1e-2)
    if comparison == "recipes":
        assert code == (0 if payload["meets_target"] else 1) and payload["target_ratio"] == 1.8
        assert row["meets_target"] == (row["ratio"] >= 1.8)
    else:
        assert code == 0 and payload["target_ratio"] is None and row["meets_target"] is None
    fastest = min(baseline["epoch_seconds"])  # rounded to 0.01 s
    assert 256 / (fastest + 0.006) <= baseline["images_per_second"] <= 256 / (fastest - 0.006)
    report = out.with_suffix(".md").read_text()
    verdict = {True: "met", False: "NOT met", None: "-"}[row["meets_target"]]
    assert f"| {sides[0][0]} images/s | {sides[1][0]} images/s | {sides[1][0]} / {sides[0][0]} |" in report
    assert f"bfloat16 instructions (AVX512-BF16, AMX or Arm's BF16) on this machine: {'yes' if payload['native_bfloat16'] else 'no'}." in report
    assert (f"| {baseline['images_per_second']} | {candidate['images_per_second']} | {row['ratio']:.3f} | "
            f"{baseline['images_per_second_median']}, {candidate['images_per_second_median']}, {row['ratio_of_medians']:.3f} | {verdict} |") in report
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.slow
def test_compression_benchmark_measures_every_target(sample_dir, tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "int8_compression.py"
    command = [sys.executable, str(script), "--data", str(sample_dir), "--limit", "300", "--width", WIDTH,
               "--train-epochs", "1", "--prune-epochs", "1", "--qat-epochs", "1",
               "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results"), "--no-progress"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads((tmp_path / "results" / "results.json").read_text())
    assert set(payload["met"]) == {"gap_points", "agreement", "int8_bytes", "sparse_gzip_bytes", "sparse_gzip_huffman_only_bytes"}
    measured = payload["measured"]
    assert 0 <= measured["int8_top1"] <= 1 and measured["int8_kernel_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert measured["post_training_int8_of_pruned_model"]["top1"] is not None
    assert measured["held_out_images"] > 0 and (tmp_path / "results" / "results.md").exists()
