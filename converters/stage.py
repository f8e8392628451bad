"""The run folder of a compression stage (prune, qat): the same shape as ``toolkit train``'s.

    OUT/model.keras, OUT/model.card.json   the stage's Keras 3 model and its card
    OUT/config.json                        the stage's config and the resolved data settings
    OUT/report.json                        what the stage measured (sparsity, sizes, accuracy)
    OUT/history.csv                        one row per fine-tuning epoch

The model is written last-but-one and the report last, so a folder with a report
holds a complete stage; ``stage_complete`` is what ``toolkit pipeline`` checks.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from toolkit import atomic
from toolkit.errors import ToolkitError

MODEL_NAME = "model.keras"
REPORT_NAME = "report.json"
CONFIG_NAME = "config.json"
HISTORY_NAME = "history.csv"


@dataclasses.dataclass
class StageResult:
    """What a stage function returns: its main artifact and the report it wrote."""

    model_path: Path  # the stage's model file
    report_path: Path  # the JSON report beside it
    report: dict[str, Any]  # the report's contents

    @property
    def folder(self) -> Path:
        return self.model_path.parent


def prepare_folder(out: str | Path, overwrite: bool) -> Path:
    """Create ``out``; refuse to replace a finished stage unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ToolkitError(f"--out {out} is a file, not a folder")
    if not overwrite and (out / MODEL_NAME).exists():
        raise ToolkitError(f"{out} already holds a model ({out / MODEL_NAME}); choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_config(out: Path, payload: dict[str, Any]) -> Path:
    return atomic.write_json(out / CONFIG_NAME, payload)


def write_report(out: Path, report: dict[str, Any]) -> Path:
    return atomic.write_json(out / REPORT_NAME, report)


def read_report(out: str | Path) -> dict[str, Any] | None:
    """The report of a finished stage, or None."""
    path = Path(out) / REPORT_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
