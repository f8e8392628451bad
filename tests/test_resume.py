"""--resume: a run killed with SIGKILL mid-epoch, and runs killed between two of an epoch's files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit import atomic
from toolkit.errors import ToolkitError
from training.backend import keras
from toolkit.atomic import file_digest
from training.run_folder import RunFolder
from training.train import TrainConfig, train

REPO_ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
BATCH = 8  # 270 training images -> 33 steps per epoch, so the kill lands inside an epoch


def history_epochs(run: Path) -> list[int]:
    return [int(row["epoch"]) for row in csv.DictReader((run / "history.csv").open())]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_finishes_every_epoch_once(sample_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "toolkit", "train", "--data", str(sample_dir), "--width", "0.125",
               "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--out", str(run), "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run / "last.keras").exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads((run / "state.json").read_text())["epochs_completed"]
    assert 1 <= killed_at < EPOCHS, "the run finished before it could be killed"

    resumed = subprocess.run([sys.executable, "-m", "toolkit", "train", "--resume", str(run), "--no-progress"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert history_epochs(run) == list(range(1, EPOCHS + 1))
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_completed"] == EPOCHS and state["resumed_at_epochs"] == [killed_at]
    model = keras.models.load_model(run / "last.keras")
    # The optimizer state came back: its step counter (the schedule's position) counts every epoch once.
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == EPOCHS * (270 // BATCH)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.0, abs=1e-7)
    assert not list(run.glob(".*.keras"))


@pytest.mark.slow
def test_resume_before_the_first_checkpoint_starts_over(sample_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = TrainConfig(data=str(sample_dir), out=str(run), epochs=1, batch_size=32, width=0.125, progress=False)
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": config.to_dict()}))  # what a kill in epoch 1 leaves
    train(TrainConfig(resume=str(run), progress=False))
    assert history_epochs(run) == [1] and (run / "best.keras").is_file()


class Killed(BaseException):
    """Stands in for SIGKILL at one exact point (BaseException, so nothing catches it)."""


@pytest.mark.parametrize("killed_before, at_rename", [("last.keras", 2), ("best.keras", 1)])
@pytest.mark.slow
def test_kill_between_files_of_one_epoch(killed_before: str, at_rename: int, sample_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """state.json is written before the checkpoints are renamed; resume must agree with what got renamed."""
    run = tmp_path / "run"
    real_replace = os.replace
    renames = {"count": 0}

    def replace(source, target):
        if Path(target).name == killed_before:
            renames["count"] += 1
            if renames["count"] == at_rename:
                raise Killed()
        return real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(Killed):
        train(TrainConfig(data=str(sample_dir), out=str(run), epochs=3, batch_size=32, width=0.125, progress=False))
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert json.loads((run / "state.json").read_text())["epochs_completed"] == at_rename

    state = RunFolder(run).recover()
    if killed_before == "last.keras":  # epoch 2's state, epoch 1's checkpoint: back to epoch 1
        assert state["epochs_completed"] == 1 and len(state["history"]) == 1
    else:  # epoch 1's last.keras renamed, best.keras not: best is the same checkpoint
        assert state["epochs_completed"] == 1 and file_digest(run / "best.keras") == file_digest(run / "last.keras")
    train(TrainConfig(resume=str(run)))
    assert history_epochs(run) == [1, 2, 3]
    assert json.loads((run / "state.json").read_text())["resumed_at_epochs"] == [1]


def _tiny_run(data: Path, run: Path, epochs: int) -> None:
    train(TrainConfig(data=str(data), width=0.125, epochs=epochs, batch_size=16, out=str(run), progress=False))


@pytest.mark.slow
def test_resume_refuses_data_that_changed(sample_dir: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_dir, data)
    run = tmp_path / "run"
    _tiny_run(data, run, 1)
    config = json.loads((run / "config.json").read_text())
    config["train"]["epochs"] = 2  # as if stopped after epoch 1 of 2
    (run / "config.json").write_text(json.dumps(config))
    for index in range(3):  # three more images: the same steps per epoch, another split
        shutil.copy(data / "cat" / "0000.jpg", data / "cat" / f"extra{index}.jpg")
    before = (run / "last.keras").read_bytes()
    with pytest.raises(ToolkitError, match=r"cannot resume .*: the data changed since the run started \(train images 270 -> 273\)"):
        train(TrainConfig(resume=str(run), progress=False))
    assert (run / "last.keras").read_bytes() == before


@pytest.mark.slow
def test_resume_of_a_finished_run_changes_nothing_and_cleans_up(sample_dir: Path, tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    _tiny_run(sample_dir, run, 1)
    metrics = json.loads((run / "metrics.json").read_text())
    assert "images_per_second" in metrics and "wall_seconds_this_session" in metrics
    (run / ".state.k1ll3d.json").write_text("{}")  # what a SIGKILL during an epoch's bookkeeping leaves
    (run / ".last.card.k1ll3d.json").write_text("{}")
    monkeypatch.chdir(tmp_path)  # another directory: the data spec was recorded absolute
    train(TrainConfig(resume="run", progress=False))
    after = json.loads((run / "metrics.json").read_text())
    assert after == metrics  # nothing was trained, so nothing is rewritten differently
    assert not list(run.glob(".*"))


def test_a_relative_test_split_spec_is_recorded_absolute(tmp_path: Path, monkeypatch) -> None:
    from training.data import absolute_spec

    (tmp_path / "idx").mkdir()
    monkeypatch.chdir(tmp_path)
    assert absolute_spec("idx:test") == f"{tmp_path / 'idx'}:test"
    assert absolute_spec("idx") == str(tmp_path / "idx")
    assert absolute_spec("cifar10:test") == "cifar10:test" and absolute_spec("fashion-mnist") == "fashion-mnist"
