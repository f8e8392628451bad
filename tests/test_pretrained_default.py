"""Without --model, `toolkit classify` and `toolkit eval` use the shipped pretrained/model_int8.tflite.

The shipped model is not in a fresh clone, so each test puts the fixture model where the search looks.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from edge_support import REPO_ROOT, json_lines
from test_import_rules import offending
from toolkit import pretrained
from toolkit.cli import main
from toolkit.errors import ToolkitError


@pytest.fixture
def installed_model(edge_int8_model: Path, tmp_path: Path, monkeypatch) -> Path:
    """The fixture model and its card copied to the second search path; the first stays empty."""
    folder = tmp_path / "share" / "pretrained"
    folder.mkdir(parents=True)
    model = Path(shutil.copy(edge_int8_model, folder / "model_int8.tflite"))
    shutil.copy(edge_int8_model.with_name("model_int8.card.json"), folder / "model_int8.card.json")
    monkeypatch.setattr(pretrained, "search_paths", lambda *_: (tmp_path / "checkout" / "model_int8.tflite", model))
    return model


def test_search_paths_are_the_checkout_then_the_installed_share_folder(monkeypatch) -> None:
    monkeypatch.setattr(sys, "prefix", "/opt/environment")
    monkeypatch.setattr(pretrained.sysconfig, "get_path", lambda name: {"data": "/usr/local"}[name])
    assert pretrained.search_paths() == (
        REPO_ROOT / "pretrained" / "model_int8.tflite",
        Path("/opt/environment/share/allcnn-edge-toolkit/pretrained/model_int8.tflite"),
        Path("/usr/local/share/allcnn-edge-toolkit/pretrained/model_int8.tflite"),
    )


def test_default_model_is_the_first_existing_search_path(tmp_path: Path, monkeypatch) -> None:
    first, second = tmp_path / "first" / "model_int8.tflite", tmp_path / "second" / "model_int8.tflite"
    monkeypatch.setattr(pretrained, "search_paths", lambda *_: (first, second))
    second.parent.mkdir()
    second.write_bytes(b"model")
    assert pretrained.default_model() == second
    first.parent.mkdir()
    first.write_bytes(b"model")
    assert pretrained.default_model() == first


def test_no_default_model_is_one_line_naming_both_places(tmp_path: Path, monkeypatch) -> None:
    places = (tmp_path / "checkout" / "model_int8.tflite", tmp_path / "share" / "model_int8.tflite")
    monkeypatch.setattr(pretrained, "search_paths", lambda *_: places)
    with pytest.raises(ToolkitError) as raised:
        pretrained.default_model()
    message = str(raised.value)
    assert "\n" not in message and "no shipped model_int8.tflite is installed" in message and "pass --model" in message
    assert all(str(place) in message for place in places)


def test_the_module_needs_only_the_standard_library() -> None:
    assert offending([REPO_ROOT / "toolkit" / "pretrained.py"], allowed={"toolkit"}) == []


def test_classify_without_model_uses_the_default(installed_model: Path, sample_dir: Path, capsys) -> None:
    assert main(["classify", "--source", str(sample_dir / "cat"), "--headless", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert f"using the default model {installed_model}\n" in captured.err
    records, summary = json_lines(captured.out)
    assert len(records) == 30 and summary["frames"] == 30 and summary["model"] == str(installed_model)


def test_classify_with_model_does_not_announce_the_default(installed_model: Path, sample_dir: Path, capsys) -> None:
    arguments = ["classify", "--model", str(installed_model), "--source", str(sample_dir / "cat" / "0000.jpg"), "--headless"]
    assert main(arguments) == 0
    assert "using the default model" not in capsys.readouterr().err


def test_classify_without_any_model_is_a_one_line_error(tmp_path: Path, sample_dir: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(pretrained, "search_paths", lambda *_: (tmp_path / "model_int8.tflite",))
    assert main(["classify", "--source", str(sample_dir / "cat"), "--headless"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"error: no --model given and no shipped model_int8.tflite is installed (looked for {tmp_path / 'model_int8.tflite'}): "
        "pass --model path/to/model_int8.tflite"
    ]


def test_eval_without_model_uses_the_default(installed_model: Path, sample_dir: Path, capsys) -> None:
    assert main(["eval", "--data", str(sample_dir), "--limit", "20", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"using the default model {installed_model}\n" in captured.err
    assert f"model     {installed_model} (tflite-int8)" in captured.out and "20 images" in captured.out
