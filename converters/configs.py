"""The configurations of `toolkit prune`, `qat` and `convert`, importable without TensorFlow.

The CLI builds each command's flags from these classes (toolkit/flags.py), so a field's
comment is also its flag's --help text.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from toolkit.errors import ToolkitError, check

SCHEMES = ("auto", "default", "prune-preserve")
FORMATS = ("float32", "float16", "dynamic", "int8")
IO_TYPES = ("int8", "uint8", "float32")
# The prune and QAT fields that override the source run's data settings (None: the source's).
DATA_FIELDS = ("data", "limit", "batch_size", "augmentation", "seed")


class _Config:
    """What the three configs share."""

    def to_dict(self) -> dict[str, Any]:
        """The config as saved in config.json or report.json."""
        return dataclasses.asdict(self)


def _check_fine_tuning(config: PruneConfig | QatConfig, *checks: tuple[bool, str]) -> None:
    """A stage's own ``checks``, then those prune and QAT share."""
    check(
        *checks,
        (config.epochs >= 1, f"--epochs must be at least 1, got {config.epochs}"),
        (config.learning_rate > 0, f"--learning-rate must be positive, got {config.learning_rate}"),
        (config.batch_size is None or config.batch_size >= 1, f"--batch-size must be at least 1, got {config.batch_size}"),
    )


@dataclasses.dataclass
class PruneConfig(_Config):
    """One pruning run; saved in OUT/config.json. The data fields left at None take the source run's values."""

    model: str  # trained Keras 3 model (.keras with its .card.json)
    out: str = "runs/prune"  # run folder for model.keras, its card, config.json, report.json
    sparsity: float = 0.5  # target fraction of zero kernel weights
    structured: str | None = None  # M:N structured sparsity instead, e.g. 2:4 (then the sparsity is M/N)
    epochs: int = 2  # fine-tuning epochs
    learning_rate: float = 0.01  # peak learning rate of the fine-tuning (cosine decay to 0)
    ramp_fraction: float = 0.75  # share of the fine-tuning steps over which sparsity ramps 0 -> target
    data: str | None = None  # cifar10, fashion-mnist or an image folder ROOT/<class>/<image>
    limit: int | None = None  # seeded class-balanced subset of this many images
    batch_size: int | None = None  # fine-tuning batch size
    augmentation: str | None = None  # augmentation policy: none, paper or cutout
    seed: int | None = None  # split, shuffle and augmentation seed
    progress: bool = True  # progress bars
    overwrite: bool = False  # replace a finished run in --out

    def m_by_n(self) -> tuple[int, int] | None:
        if not self.structured:
            return None
        try:
            kept_zeros, block = (int(part) for part in self.structured.split(":"))
        except ValueError:
            raise ToolkitError(f"--structured must look like M:N (e.g. 2:4), got {self.structured!r}") from None
        if not 0 < kept_zeros < block:
            raise ToolkitError(f"--structured {self.structured}: M must be between 1 and N-1")
        return kept_zeros, block

    def validate(self) -> None:
        _check_fine_tuning(
            self,
            (0.0 < self.sparsity < 1.0, f"--sparsity must be between 0 and 1 (exclusive), got {self.sparsity}"),
            (0.0 < self.ramp_fraction <= 1.0, f"--ramp-fraction must be in (0, 1], got {self.ramp_fraction}"),
        )
        self.m_by_n()


@dataclasses.dataclass
class QatConfig(_Config):
    """One quantization-aware fine-tuning run; saved in OUT/config.json. The data fields left at None take the source run's values."""

    model: str  # float (possibly pruned) Keras 3 model (.keras with its .card.json)
    out: str = "runs/qat"  # run folder for model.keras, model.qat.weights.h5, card, report
    epochs: int = 1  # fine-tuning epochs
    learning_rate: float = 0.001  # peak learning rate (cosine decay to 0); QAT wants a small one
    scheme: str = "auto"  # tfmot 8-bit scheme; auto keeps sparsity (prune-preserve) when the kernels are at least 1% zeros
    data: str | None = None  # cifar10, fashion-mnist or an image folder ROOT/<class>/<image>
    limit: int | None = None  # seeded class-balanced subset of this many images
    batch_size: int | None = None  # fine-tuning batch size
    augmentation: str | None = None  # augmentation policy: none, paper or cutout
    seed: int | None = None  # split, shuffle and augmentation seed
    calibration_batches: int = 16  # training batches whose float activations set the quantisation ranges before QAT (0: tfmot's [-6, 6] start)
    progress: bool = True  # progress bars
    overwrite: bool = False  # replace a finished run in --out

    def validate(self) -> None:
        _check_fine_tuning(
            self,
            (self.calibration_batches >= 0, f"--calibration-batches must not be negative, got {self.calibration_batches}"),
            (self.scheme in SCHEMES, f"--scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}"),
        )


@dataclasses.dataclass
class ConvertConfig(_Config):
    """One conversion; saved into OUT/report.json."""

    model: str  # Keras 3 model (.keras with card); a QAT run's model.keras converts its QAT twin
    out: str = "runs/convert"  # folder for model_<format>.tflite, cards, parity.json, report.json
    formats: tuple[str, ...] = FORMATS  # any of float32, float16, dynamic, int8
    io: str = "int8"  # input and output type of the int8 model
    calib: str | None = None  # calibration images (None: the source run's training split)
    calib_samples: int | None = None  # calibration images (None: 500, or all when fewer); fewer than a number given is an error, except for a QAT model, whose ranges they do not set
    data: str | None = None  # data for the held-out parity images (None: the source run's)
    limit: int | None = None  # the class-balanced subset the source was trained on (None: the source run's)
    parity_samples: int = 1000  # held-out images for the parity report (0: the whole validation split)
    max_drop: float = 1.0  # fail when a converted model's top-1 is more points below the float one
    embed_labels: bool = True  # write labels (and the card) into the .tflite metadata
    edgetpu: bool = False  # also run edgetpu_compiler on the int8 model (when installed)
    seed: int = 0  # picks the calibration images
    progress: bool = True  # progress bars
    overwrite: bool = False  # replace a conversion already in --out (its files this one does not remake are removed)

    def validate(self) -> None:
        unknown = [name for name in self.formats if name not in FORMATS]
        check(
            (not unknown, f"unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)}"),
            (bool(self.formats), "choose at least one format (--int8, --float16, --dynamic, --float32)"),
            (self.io in IO_TYPES, f"--io must be one of {', '.join(IO_TYPES)}, got {self.io!r}"),
            (self.calib_samples is None or self.calib_samples >= 1, f"--calib-samples must be at least 1, got {self.calib_samples}"),
            (self.parity_samples >= 0, f"--parity-samples must not be negative, got {self.parity_samples}"),
            (self.max_drop >= 0, f"--max-drop must not be negative, got {self.max_drop}"),
        )
