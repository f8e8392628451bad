"""The model card: everything needed to feed a model and read its answer, stored beside it.

``model.keras`` has ``model.card.json``; ``model_int8.tflite`` has
``model_int8.card.json``. Labels, input size, colour order and mean/std are
declared here once and read by training, conversion, evaluation and the edge app.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

from toolkit import atomic
from toolkit.errors import ToolkitError
from toolkit.flags import known_fields

CARD_SUFFIX = ".card.json"


@dataclasses.dataclass
class TensorQuantization:
    """How a TFLite input or output tensor stores real numbers."""

    dtype: str = "float32"  # numpy dtype name of the tensor: int8, uint8 or float32
    scale: float = 0.0  # real = (code - zero_point) * scale; 0 for float tensors
    zero_point: int = 0  # integer code that represents 0.0


@dataclasses.dataclass
class ModelCard:
    """Data settings that travel with a model (timm-style ``pretrained_cfg``)."""

    labels: list[str]  # class names, index = class id
    input_size: list[int]  # [height, width, channels] of one input image
    mean: list[float]  # per-channel mean of training pixels scaled to [0, 1]
    std: list[float]  # per-channel standard deviation, same scale
    colour_order: str = "RGB"  # channel order the model expects: RGB or GRAY
    architecture: dict[str, Any] = dataclasses.field(default_factory=dict)  # builder name and options
    dataset: str = ""  # where the training images came from
    format: str = "keras"  # keras, tflite-float32, tflite-float16, tflite-dynamic, tflite-int8
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)  # measured accuracy figures
    input_quantization: TensorQuantization | None = None  # set for .tflite models
    output_quantization: TensorQuantization | None = None  # set for .tflite models
    sparsity: float | None = None  # fraction of zero conv/dense kernel weights
    source_sha256: str | None = None  # hash of the model this one was derived from
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # bytes: raw, gzip
    history: list[str] = dataclasses.field(default_factory=list)  # stages this model went through
    notes: str = ""  # free text: recipe, caveats

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "ModelCard":
        values = known_fields(cls, payload)
        for key in ("input_quantization", "output_quantization"):
            if isinstance(values.get(key), dict):
                values[key] = TensorQuantization(**values[key])
        missing = [name for name in ("labels", "input_size", "mean", "std") if name not in values]
        if missing:
            raise ToolkitError(f"model card is missing {', '.join(missing)}")
        return cls(**values)

    def replace(self, **changes: Any) -> "ModelCard":
        """A copy with some fields changed (cards of derived models start from their source's)."""
        return dataclasses.replace(self, **changes)


def card_path(model_path: str | Path) -> Path:
    """The card file that belongs beside ``model_path``."""
    return Path(model_path).with_suffix(CARD_SUFFIX)


def save_card(card: ModelCard, model_path: str | Path) -> Path:
    """Atomically write ``card`` beside ``model_path`` and return the card's path."""
    return atomic.write_json(card_path(model_path), card.to_dict())


def load_card(model_path: str | Path) -> ModelCard:
    """Read the card beside ``model_path``; a missing or broken card is a one-line error."""
    path = card_path(model_path)
    if not path.exists():
        raise ToolkitError(f"no model card {path} beside {model_path}: labels, input size and normalisation come from it")
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ToolkitError(f"model card {path} is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ToolkitError(f"model card {path} is not a JSON object")
    try:
        return ModelCard.from_dict(payload)
    except ToolkitError as error:
        raise ToolkitError(f"{error} ({path})") from None


def check_card_matches(
    model_path: str | Path,
    card: ModelCard,
    input_shape: Sequence[int] | None = None,
    num_outputs: int | None = None,
    card_of: str | Path | None = None,
) -> None:
    """A one-line error naming both files unless ``card`` can be the card of ``model_path``: its recorded size and,
    when given, the model's input shape (no batch axis) and class count must match. ``card_of`` names the file ``card``
    belongs to when that is another (an Edge TPU build reads its source's card); its size is then not compared.
    """
    model_path = Path(model_path)
    owner = Path(card_of) if card_of is not None else model_path
    recorded = int((card.sizes or {}).get("raw") or 0)
    expected = [int(value) for value in card.input_size]
    actual_shape = None if input_shape is None else [int(value) for value in input_shape]
    if owner == model_path and recorded and recorded != model_path.stat().st_size:
        reason = f"the card records a {recorded:,}-byte model but the file has {model_path.stat().st_size:,} bytes"
    elif actual_shape is not None and actual_shape != expected:
        reason = f"the card says input {expected} but the model expects {actual_shape}"
    elif num_outputs is not None and int(num_outputs) != card.num_classes:
        reason = f"the card lists {card.num_classes} labels but the model outputs {int(num_outputs)} classes"
    else:
        return
    raise ToolkitError(f"model card {card_path(owner)} does not belong to {model_path}: {reason}")
