"""The shipped default model, ``pretrained/model_int8.tflite``, for commands run without --model.

Standard library only: ``toolkit classify`` imports it on the device.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from toolkit.errors import ToolkitError

FOLDER_NAME = "pretrained"
MODEL_NAME = "model_int8.tflite"
INSTALLED_FOLDER = Path("share") / "allcnn-edge-toolkit" / FOLDER_NAME


def search_paths(name: str = MODEL_NAME) -> tuple[Path, ...]:
    """Where the shipped file ``name`` is looked for, in order: the checkout (or editable install), then a pip install."""
    repository_root = Path(__file__).resolve().parents[1]
    # pip's data folder is sys.prefix in a virtual environment, elsewhere e.g. /usr/local or ~/.local.
    installed = [Path(sys.prefix), Path(sysconfig.get_path("data"))]
    return tuple(dict.fromkeys([repository_root / FOLDER_NAME / name, *(root / INSTALLED_FOLDER / name for root in installed)]))


def default_model(name: str = MODEL_NAME, instead: str = "no --model given") -> Path:
    """The first existing of :func:`search_paths` (its card beside it); a ToolkitError naming the places looked if none."""
    candidates = search_paths(name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = " and ".join(str(candidate) for candidate in candidates)
    hint = "pass --model path/to/model_int8.tflite" if name == MODEL_NAME else f"pass a path to a trained {Path(name).suffix} model"
    raise ToolkitError(f"{instead} and no shipped {name} is installed (looked for {looked}): {hint}")


def model_or_default(model: str | None) -> str:
    """``model`` when given, else the default model, named in one line on stderr."""
    if model is not None:
        return model
    chosen = default_model()
    print(f"using the default model {chosen}", file=sys.stderr)
    return str(chosen)
