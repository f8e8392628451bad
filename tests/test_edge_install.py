"""An edge-only install (`pip install .[edge]`): every command is listed, and one that needs the train extra says so in one line.

Each test runs the CLI in a subprocess where the train extra's modules cannot be imported:
``BLOCKED_MODULES`` also hides this package's training side (the command's flags cannot be
added), ``EDGE_INSTALL_MISSING`` hides only what ``.[edge]`` lacks (the command fails inside run).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from edge_support import BLOCKED_MODULES, EDGE_INSTALL_MISSING, REPO_ROOT, run_without_tensorflow
from toolkit.cli import COMMANDS
from toolkit.model_card import ModelCard, save_card

SAMPLE = str(REPO_ROOT / "tests" / "data" / "cifar10-sample")
BLOCKS = {"without the training side": BLOCKED_MODULES, "edge install": EDGE_INSTALL_MISSING}


def assert_needs_train_extra(result, command: str) -> None:
    """Exit 2 and exactly one stderr line that names the command and the [train] extra."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: toolkit {command} needs the training extra, which is not installed here (No module named ")
    assert "pip install 'allcnn-edge-toolkit[train]'" in lines[0]


@pytest.mark.parametrize("blocked", BLOCKS.values(), ids=BLOCKS.keys())
def test_help_lists_every_command(blocked):
    result = run_without_tensorflow(["--help"], blocked=blocked)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert set(COMMANDS) <= listed


@pytest.mark.parametrize("blocked", BLOCKS.values(), ids=BLOCKS.keys())
def test_train_names_the_train_extra(blocked, tmp_path):
    out = tmp_path / "run"
    result = run_without_tensorflow(["train", "--data", SAMPLE, "--out", str(out)], blocked=blocked)
    assert_needs_train_extra(result, "train")
    assert not out.exists()


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    """A .keras archive with its card that passes the file checks; only Keras could build it."""
    path = tmp_path_factory.mktemp("keras") / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3"}))
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {}}))
    labels = sorted(folder.name for folder in Path(SAMPLE).iterdir())
    card = ModelCard(labels=labels, input_size=[32, 32, 3], mean=[0.5] * 3, std=[0.25] * 3, architecture={"width": 0.125})
    save_card(card, path)
    return path


@pytest.mark.parametrize(
    "arguments",
    [
        ["eval", "--model", "{keras}", "--data", SAMPLE],
        ["prune", "--model", "{keras}", "--out", "{out}"],
        ["qat", "--model", "{keras}", "--out", "{out}"],
        ["convert", "--model", "{keras}", "--out", "{out}"],
        ["pipeline", "--data", SAMPLE, "--out", "{out}"],
        ["benchmark", "--model", "{keras}", "--data", SAMPLE, "--out", "{out}"],
    ],
    ids=lambda arguments: arguments[0],
)
def test_workstation_commands_name_the_train_extra_on_an_edge_install(arguments, keras_file, tmp_path):
    filled = [argument.format(keras=keras_file, out=tmp_path / "out") for argument in arguments]
    result = run_without_tensorflow(filled, blocked=EDGE_INSTALL_MISSING)
    assert_needs_train_extra(result, arguments[0])
    assert not (tmp_path / "out").exists()


def test_eval_and_classify_of_a_tflite_run_on_an_edge_install(edge_int8_model, tmp_path):
    evaluated = run_without_tensorflow(
        ["eval", "--model", str(edge_int8_model), "--data", SAMPLE, "--limit", "20", "--no-progress"],
        blocked=EDGE_INSTALL_MISSING,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "top-1" in evaluated.stdout
    classified = run_without_tensorflow(
        ["classify", "--model", str(edge_int8_model), "--source", str(Path(SAMPLE) / "cat"), "--headless", "--max-frames", "3"],
        blocked=EDGE_INSTALL_MISSING,
    )
    assert classified.returncode == 0, classified.stderr
    assert len([line for line in classified.stdout.splitlines() if line.strip()]) == 4  # 3 frames and the summary
