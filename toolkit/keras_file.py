"""Is a file a Keras 3 ``.keras`` archive? One-line answers before Keras reads it (standard library only)."""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

from toolkit.errors import ToolkitError

KERAS_CONFIG_NAME = "config.json"  # the model's architecture inside a .keras archive
ZIP_LOCAL_HEADER = b"PK\x03\x04"


def check_keras_archive(model_path: str | Path) -> None:
    """A one-line error unless ``model_path`` is an intact zip archive holding a Keras model's ``config.json``."""
    problem = _keras_archive_problem(model_path)
    if problem:
        raise ToolkitError(f"{model_path} is not a Keras model file ({problem})")


def _keras_archive_problem(model_path: str | Path) -> str | None:
    """What keeps ``model_path`` from being a .keras archive, or None."""
    if not zipfile.is_zipfile(model_path):
        with open(model_path, "rb") as handle:
            starts_like_zip = handle.read(4) == ZIP_LOCAL_HEADER
        return "truncated or damaged zip archive" if starts_like_zip else "not a zip archive"
    try:
        with zipfile.ZipFile(model_path) as archive:
            damaged_member = archive.testzip()
            names = archive.namelist()
            config_bytes = archive.read(KERAS_CONFIG_NAME) if damaged_member is None and KERAS_CONFIG_NAME in names else None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as error:
        return f"truncated or damaged zip archive: {error}"
    if damaged_member is not None:
        return f"truncated or damaged zip archive: {damaged_member} fails its checksum"
    if config_bytes is None:
        return f"the archive holds no readable Keras model: no {KERAS_CONFIG_NAME}, only {', '.join(names[:5]) or 'nothing'}"
    try:
        config = json.loads(config_bytes)
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError
        return f"the archive holds no readable Keras model: its {KERAS_CONFIG_NAME} is not JSON"
    if not isinstance(config, dict):
        return f"the archive holds no readable Keras model: its {KERAS_CONFIG_NAME} is not a JSON object"
    return None
