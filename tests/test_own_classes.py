"""The whole journey with classes of your own: collect from a video, fine-tune from the shipped model, convert, classify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_support import write_lossless_video
from toolkit.cli import main
from toolkit.model_card import load_card

LABELS = ("red", "green", "blue")
FRAMES_PER_CLASS = 30


def class_video(path: Path, channel: int, seed: int) -> Path:
    """80x60 frames of noise tinted towards one BGR channel, with a bright square somewhere in the centre crop."""
    random = np.random.default_rng(seed)
    frames = []
    for _ in range(FRAMES_PER_CLASS):
        frame = random.integers(0, 90, (60, 80, 3)).astype(np.uint8)
        frame[..., channel] = random.integers(150, 256, (60, 80))
        top, left = random.integers(5, 35, 2)
        frame[top : top + 15, left + 10 : left + 25] = 255
        frames.append(frame)
    return write_lossless_video(path, frames, fps=10.0)


@pytest.mark.slow
def test_collect_fine_tune_from_pretrained_convert_and_classify(tmp_path: Path, capsys) -> None:
    root = tmp_path / "dataset"
    for channel, label in zip((2, 1, 0), LABELS):  # BGR: red is channel 2
        video = class_video(tmp_path / f"{label}.mkv", channel, seed=channel)
        assert main(["collect", "--source", str(video), "--label", label, "--out", str(root), "--count", str(FRAMES_PER_CLASS), "--every", "0"]) == 0
        assert len(list((root / label).glob("*.jpg"))) == FRAMES_PER_CLASS

    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--from", "pretrained", "--epochs", "12", "--out", str(run), "--no-progress"]) == 0
    card = load_card(run / "best.keras")
    assert card.labels == sorted(LABELS) and card.history[-1].endswith("pretrained/model.keras")

    converted = tmp_path / "convert"
    assert main(["convert", "--model", str(run / "best.keras"), "--int8", "--max-drop", "100", "--out", str(converted), "--no-progress"]) == 0
    report = json.loads((converted / "report.json").read_text())
    assert report["calibration"]["images"] == 81  # all of the training split: fewer than the default 500
    capsys.readouterr()

    assert main(["classify", "--model", str(converted / "model_int8.tflite"), "--source", str(root), "--headless"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    predictions = [line for line in lines if "top_k" in line]
    assert len(predictions) == len(LABELS) * FRAMES_PER_CLASS
    correct = sum(line["top_k"][0]["label"] == Path(line["source"]).parent.name for line in predictions)
    assert correct / len(predictions) >= 0.8, correct
