"""Smoke test of benchmarks/own_data.py on a tiny Fashion-MNIST-like IDX folder with a tiny parent model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from script_support import load_script

CLASSES = 10
SIDE = 28  # Fashion-MNIST's image size


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fashion_like_folder(root: Path, train_per_class: int = 20, test_per_class: int = 10) -> Path:
    """Grey 28x28 IDX files, one bright band per class; "fashion" in the name gives Fashion-MNIST's labels."""
    folder = root / "fashion-like"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        labels = np.repeat(np.arange(CLASSES), per_class)
        images = rng.integers(0, 60, (len(labels), SIDE, SIDE))
        for index, label in enumerate(labels):
            images[index, 2 * label : 2 * label + 6, 4:24] += 180
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder


def tiny_parent(sample_dir: Path, root: Path) -> Path:
    """A 32x32 RGB All-CNN-C of width 0.125, one epoch on the CIFAR-10 sample."""
    from training.train import TrainConfig, train

    config = TrainConfig(data=str(sample_dir), out=str(root / "parent"), epochs=1, batch_size=32, width=0.125, batch_norm=True, progress=False)
    return train(config) / "best.keras"


def refuse(*arguments, **keywords):
    raise AssertionError("a finished step was redone instead of read back")


@pytest.mark.slow
def test_both_arms_the_int8_row_and_the_verdict_are_written_and_read_back(sample_dir, tmp_path, monkeypatch):
    own_data = load_script("own_data")
    data = fashion_like_folder(tmp_path)
    arguments = [
        "--data", str(data), "--limit", "200", "--budget", "8", "--seeds", "0,1", "--parent", str(tiny_parent(sample_dir, tmp_path)),
        "--test-limit", "50", "--out-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "own_data"),
        "--markdown", str(tmp_path / "own_data.md"),
    ]  # fmt: skip
    assert own_data.main(arguments) == 0
    results = json.loads((tmp_path / "own_data.json").read_text())

    scratch, fine_tuned, *second_seed = results["arms"]
    assert [(row["seed"], row["arm"]) for row in results["arms"]] == [(0, "from scratch"), (0, "fine-tuned"), (1, "from scratch"), (1, "fine-tuned")]
    for row in results["arms"]:
        assert (row["train_images"], row["validation_images"], row["test_images"]) == (180, 20, 50)
        assert row["epochs_completed"] >= 1 and row["seconds_spent"] > 0 and row["budget_seconds"] == 8
        assert 0 <= row["test_top1"] <= 1 and Path(row["model"]).is_file()
    assert scratch["input_size"] == [SIDE, SIDE, 1] and fine_tuned["input_size"] == [32, 32, 1]

    int8 = results["int8"]
    assert Path(int8["model"]).suffix == ".tflite" and Path(int8["model"]).is_file()
    assert (int8["calibration_images"], int8["validation_images"], int8["test_images"]) == (180, 20, 50)
    assert 0 <= int8["test_top1"] <= 1 and 0 <= int8["validation_top1"] <= 1

    per_seed = [100 * (fine_tuned["test_top1"] - scratch["test_top1"]), 100 * (second_seed[1]["test_top1"] - second_seed[0]["test_top1"])]
    difference = sum(per_seed) / 2
    assert results["target"] == {"points": 5.0, "difference_points": round(difference, 2), "met": difference >= 5,
                                 "per_seed": {"0": round(per_seed[0], 2), "1": round(per_seed[1], 2)}}  # fmt: skip
    assert Path(int8["model"]).parent.parent == Path(fine_tuned["run"]).parent  # the first seed's fine-tuned model
    report = (tmp_path / "own_data.md").read_text()
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row["finished_at"]) for row in results["arms"])
    assert f"| 0 | from scratch | {scratch['finished_at']} | 180 |" in report and f"| 1 | fine-tuned | {second_seed[1]['finished_at']} | 180 |" in report
    assert "| 0 | fine-tuned, int8 |" in report
    assert f"**{'met' if difference >= 5 else 'NOT met'}**" in report
    assert f"`python benchmarks/own_data.py --data {data}" in report and "--test-limit 50" in report

    monkeypatch.setattr("benchmarks.sitting.train", refuse)
    monkeypatch.setattr(own_data, "convert", refuse)
    monkeypatch.setattr(own_data, "evaluate", refuse)
    assert own_data.main(arguments) == 0
    again = json.loads((tmp_path / "own_data.json").read_text())
    assert (again["arms"], again["int8"], again["target"]) == (results["arms"], results["int8"], results["target"])
