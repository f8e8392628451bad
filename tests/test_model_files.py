"""A broken model file, or a card that belongs to another model, is one `error:` line naming the file(s).

Every case runs the CLI in process on the .keras load paths (`eval`: training.evaluate,
`convert`: converters.bridge.load_source) or the .tflite ones (`eval`, `classify`: edge_app.runtime).
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from toolkit.cli import main
from toolkit.model_card import card_path, load_card, save_card

SAMPLE = Path(__file__).resolve().parent / "data" / "cifar10-sample"
KERAS_COMMANDS = ("eval", "convert")
TFLITE_COMMANDS = ("eval", "classify")


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory) -> Path:
    """An untrained width-0.125 All-CNN-C saved by the toolkit (its card records the file size)."""
    from converters.bridge import save_keras3
    from toolkit.model_card import ModelCard
    from training.allcnn import ModelConfig, create_model
    from training.backend import keras

    keras.utils.set_random_seed(0)
    config = ModelConfig(width=0.125)
    labels = sorted(folder.name for folder in SAMPLE.iterdir())
    card = ModelCard(labels=labels, input_size=[32, 32, 3], mean=[0.5] * 3, std=[0.25] * 3, architecture=config.to_dict())
    return save_keras3(create_model(config, keras), card, tmp_path_factory.mktemp("keras") / "model.keras")


def cli_arguments(command: str, model: Path, tmp_path: Path) -> list[str]:
    """The arguments of ``toolkit COMMAND --model MODEL`` with the other flags the command needs."""
    arguments = {
        "eval": ["--data", str(SAMPLE)],
        "convert": ["--out", str(tmp_path / "converted")],
        "classify": ["--source", str(SAMPLE / "cat"), "--headless"],
    }[command]
    return [command, "--model", str(model), *arguments]


def single_error(capsys, argv: list[str]) -> str:
    """Run the CLI; assert exit code 2 and exactly one ``error:`` line on stderr, and return it."""
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def model_with_card(path: Path, content: bytes, card_source: Path) -> Path:
    """``content`` written to ``path``, with the card of ``card_source`` beside it."""
    path.write_bytes(content)
    shutil.copy(card_path(card_source), card_path(path))
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def random_bytes(count: int) -> bytes:
    return np.random.default_rng(0).integers(0, 256, count, dtype=np.uint8).tobytes()


# --- .keras files that are not Keras models -----------------------------------------------------


@pytest.mark.parametrize("command", KERAS_COMMANDS)
def test_keras_file_of_text(command, keras_model, tmp_path, capsys):
    model = model_with_card(tmp_path / "notes.keras", b"these are my notes, not a model\n" * 20, keras_model)
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert message == f"error: {model} is not a Keras model file (not a zip archive)"


@pytest.mark.parametrize("command", KERAS_COMMANDS)
def test_keras_file_of_random_bytes(command, keras_model, tmp_path, capsys):
    model = model_with_card(tmp_path / "noise.keras", random_bytes(4096), keras_model)
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert message == f"error: {model} is not a Keras model file (not a zip archive)"


@pytest.mark.parametrize("command", KERAS_COMMANDS)
def test_truncated_keras_file(command, keras_model, tmp_path, capsys):
    data = keras_model.read_bytes()
    model = model_with_card(tmp_path / "half.keras", data[: len(data) // 2], keras_model)
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert message == f"error: {model} is not a Keras model file (truncated or damaged zip archive)"


@pytest.mark.parametrize("command", KERAS_COMMANDS)
def test_zip_holding_a_random_member(command, keras_model, tmp_path, capsys):
    model = model_with_card(tmp_path / "other.keras", zip_bytes({"data.bin": random_bytes(512)}), keras_model)
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert message.startswith(f"error: {model} is not a Keras model file (the archive holds no readable Keras model: no config.json")


@pytest.mark.parametrize("command", KERAS_COMMANDS)
def test_zip_whose_config_is_not_json(command, keras_model, tmp_path, capsys):
    members = {"metadata.json": b"{}", "config.json": random_bytes(512), "model.weights.h5": random_bytes(64)}
    model = model_with_card(tmp_path / "garbled.keras", zip_bytes(members), keras_model)
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert message == f"error: {model} is not a Keras model file (the archive holds no readable Keras model: its config.json is not JSON)"


# --- .tflite files that are not TFLite models ---------------------------------------------------


@pytest.mark.parametrize("command", TFLITE_COMMANDS)
def test_tflite_file_of_text(command, edge_int8_model, tmp_path, capsys):
    model = model_with_card(tmp_path / "notes.tflite", b"these are my notes, not a model\n" * 20, edge_int8_model)
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert message.startswith(f"error: {model} is not a TFLite model (no TFL3 identifier")


@pytest.mark.parametrize("command", TFLITE_COMMANDS)
def test_truncated_tflite_file(command, edge_int8_model, tmp_path, capsys):
    data = edge_int8_model.read_bytes()
    model = model_with_card(tmp_path / "half.tflite", data[: len(data) // 2], edge_int8_model)
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert message.startswith(f"error: {model} is not a TFLite model (truncated or damaged")


@pytest.mark.parametrize("command", TFLITE_COMMANDS)
def test_tflite_file_of_random_bytes(command, edge_int8_model, tmp_path, capsys):
    model = model_with_card(tmp_path / "noise.tflite", random_bytes(4096), edge_int8_model)
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert message.startswith(f"error: {model} is not a TFLite model (no TFL3 identifier")


# --- a card that belongs to another model -------------------------------------------------------


def copy_with_card(model: Path, folder: Path, **card_changes) -> Path:
    """A copy of ``model`` in ``folder`` beside its card with ``card_changes`` applied."""
    copy = folder / model.name
    shutil.copy(model, copy)
    save_card(load_card(model).replace(**card_changes), copy)
    return copy


def assert_names_both_files(message: str, model: Path) -> None:
    assert message.startswith(f"error: model card {card_path(model)} does not belong to {model}: ")


@pytest.mark.parametrize("command", TFLITE_COMMANDS)
def test_card_with_another_input_size(command, edge_int8_model, tmp_path, capsys):
    model = copy_with_card(edge_int8_model, tmp_path, input_size=[64, 64, 3])
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert_names_both_files(message, model)
    assert message.endswith("the card says input [64, 64, 3] but the model expects [32, 32, 3]")


@pytest.mark.parametrize("command", KERAS_COMMANDS)
def test_card_with_another_number_of_labels(command, keras_model, tmp_path, capsys):
    model = copy_with_card(keras_model, tmp_path, labels=["cat", "dog", "frog", "horse", "ship"])
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert_names_both_files(message, model)
    assert message.endswith("the card lists 5 labels but the model outputs 10 classes")


def test_tflite_card_with_another_number_of_labels(edge_int8_model, tmp_path, capsys):
    model = copy_with_card(edge_int8_model, tmp_path, labels=["cat", "dog"])
    message = single_error(capsys, cli_arguments("classify", model, tmp_path))
    assert_names_both_files(message, model)
    assert message.endswith("the card lists 2 labels but the model outputs 10 classes")


@pytest.mark.parametrize("command", KERAS_COMMANDS)
def test_card_recording_another_file_size(command, keras_model, tmp_path, capsys):
    size = keras_model.stat().st_size
    model = copy_with_card(keras_model, tmp_path, sizes={"raw": size + 1000, "gzip": 1})
    message = single_error(capsys, cli_arguments(command, model, tmp_path))
    assert_names_both_files(message, model)
    assert message.endswith(f"the card records a {size + 1000:,}-byte model but the file has {size:,} bytes")


def test_tflite_card_recording_another_file_size(edge_int8_model, tmp_path, capsys):
    size = edge_int8_model.stat().st_size
    model = copy_with_card(edge_int8_model, tmp_path, sizes={"raw": 123})
    message = single_error(capsys, cli_arguments("eval", model, tmp_path))
    assert_names_both_files(message, model)
    assert message.endswith(f"the card records a 123-byte model but the file has {size:,} bytes")


def test_edgetpu_build_with_its_source_card_is_not_size_checked(edge_int8_model, tmp_path):
    from edge_app.runtime import TFLitePredictor

    source = copy_with_card(edge_int8_model, tmp_path, sizes={"raw": edge_int8_model.stat().st_size})
    compiled = tmp_path / source.name.replace(".tflite", "_edgetpu.tflite")
    compiled.write_bytes(source.read_bytes() + b"\0" * 16)  # another size, as edgetpu_compiler's output has
    assert TFLitePredictor(compiled).card == load_card(source)


def test_valid_models_still_load(keras_model, edge_int8_model):
    from training.evaluate import load_predictor

    assert load_predictor(keras_model).card == load_card(keras_model)
    assert load_predictor(edge_int8_model).card == load_card(edge_int8_model)
    assert json.loads(card_path(keras_model).read_text())["sizes"]["raw"] == keras_model.stat().st_size
