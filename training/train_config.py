"""The configuration of `toolkit train`, importable without Keras (the CLI builds --help from it)."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from toolkit.errors import ToolkitError, check
from toolkit.flags import known_fields
from training.allcnn import ARCHITECTURES, ModelConfig
from training.augment import AUGMENTATIONS

SCHEDULES = ("cosine", "paper", "linear")
STRATEGIES = ("none", "mirrored", "multiworker", "data-parallel")
PRECISIONS = ("float32", "bfloat16", "float16")

# Values a recipe gives the fields left unset (None). "paper" is the paper's setting with
# batch norm off; "fast" is the short-budget recipe of benchmarks/recipe.md.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "batch_norm": False,
        "batch_size": 128,
        "augmentation": "paper",
        "schedule": "cosine",
        "learning_rate": 0.05,
        "nesterov": False,
        "weight_decay": 0.001,
        "label_smoothing": 0.0,
        "input_dropout": 0.2,
        "stage_dropout": 0.5,
        "precision": "float32",
    },
    "fast": {
        "batch_norm": True,
        "batch_size": 256,
        "augmentation": "cutout",
        "schedule": "linear",
        "learning_rate": 0.2,
        "nesterov": True,
        "weight_decay": 0.0005,
        "label_smoothing": 0.2,
        "input_dropout": 0.0,
        "stage_dropout": 0.0,
        "precision": "bfloat16",
    },
}


def parse_budget(text: str | int | float | None) -> float | None:
    """Seconds in a budget written as ``5400``, ``90m``, ``2h`` or ``1h30m``; None stays None."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if match is None or not any(match.groups()):  # an empty or blank text matches with no group
        raise ToolkitError(f"--budget must be seconds or a duration like 90m, 2h or 1h30m, got {text!r}")
    hours, minutes, seconds = (float(value) if value else 0.0 for value in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run needs; saved as RUN/config.json and reused by --resume.

    Fields left at None take the value of ``recipe`` (see RECIPES) when the run starts.
    """

    data: str = "cifar10"  # cifar10, fashion-mnist, or an image folder ROOT/<class>/<image>
    out: str = "runs/train"  # run folder to create (it must not already hold a run)
    recipe: str = "paper"  # defaults of the fields left unset: paper, or fast (short-budget: batch norm, no dropout, Nesterov, label smoothing, cutout, bfloat16)
    epochs: int = 100  # epochs to train (the paper: 350 with --schedule paper); ignored with --budget
    budget: str | None = None  # train for this wall time (e.g. 2h, 90m, 5400; validation included) instead of --epochs; the learning rate follows the share spent
    batch_size: int | None = None  # global batch size (split across replicas)
    limit: int | None = None  # use a seeded class-balanced subset of N images (quick runs)
    validation_fraction: float = 0.1  # stratified share of the data held out for validation
    seed: int = 0  # seeds the split, the weights, the shuffling and the augmentation
    from_model: str | None = None  # start from a trained .keras, or 'pretrained' (the shipped reference model): its layers and weights, a new classifier when the classes differ
    freeze_stages: int = 0  # with --from: keep the first 1 or 2 down-sampling stages' weights fixed
    architecture: str = "all_cnn_c"  # the paper's model family
    batch_norm: bool | None = None  # BatchNormalization after every conv but the classifier
    width: float = 1.0  # filter-count multiplier (0.25 for quick tests)
    input_dropout: float | None = None  # dropout on the input image
    stage_dropout: float | None = None  # dropout after each down-sampling stage
    augmentation: str | None = None  # paper: pad-4 crop + flip; cutout: paper + 7x7 cutout; none
    schedule: str | None = None  # cosine: warm-up + cosine decay; linear: warm-up + linear decay; paper: x0.1 at epochs 200/250/300 of 350, scaled to --epochs
    warmup_epochs: float = 5.0  # cosine warm-up length by epochs; at most a tenth of the run
    warmup_fraction: float = 0.15  # linear schedule and --budget runs: share of the run spent warming up
    learning_rate: float | None = None  # peak learning rate
    momentum: float = 0.9  # SGD momentum, as in the paper
    nesterov: bool | None = None  # Nesterov momentum
    weight_decay: float | None = None  # L2 coefficient added to the gradient before momentum (the paper's weight decay)
    label_smoothing: float | None = None  # label smoothing of the cross-entropy
    ema: float = 0.0  # per-step decay of a moving average of the weights, validated and saved (e.g. 0.999); 0 is off
    precision: str | None = None  # bfloat16 (mixed): fast on AVX512-BF16 CPUs (the fast recipe uses float32 on other CPUs); float16 (mixed): GPUs
    strategy: str = "none"  # mirrored/multiworker (TF_CONFIG): TensorFlow backend; data-parallel: JAX backend
    workers: int = 1  # threads preparing batches in parallel with training
    progress: bool = True  # a progress bar (else one line per epoch)
    resume: str | None = None  # continue an interrupted run with its saved config (every other setting is ignored)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "TrainConfig":
        values = known_fields(cls, payload)
        if "mixed_precision" in payload and "precision" not in payload:  # config.json of older runs
            values["precision"] = "float16" if payload["mixed_precision"] else "float32"
        return cls(**values)

    @classmethod
    def requested_by_run(cls, run_config: dict[str, Any]) -> "TrainConfig":
        """What a run folder's config.json says the run was asked for (before small data changed the batch), filled
        from its recipe; older runs record only ``train``, and fields added since take their defaults."""
        return cls.from_dict(run_config.get("requested") or run_config.get("train") or {}).resolved()

    def resolved(self) -> "TrainConfig":
        """A copy with every unset field filled from ``recipe``."""
        if self.recipe not in RECIPES:
            raise ToolkitError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        recipe = RECIPES[self.recipe]
        return dataclasses.replace(self, **{key: value for key, value in recipe.items() if getattr(self, key) is None})

    def small_data_changes(self, train_images: int) -> dict[str, Any]:
        """Batch size and learning rate for few training images, where the recipe sets them (flags given stay).

        The batch is the largest power of two that gives an epoch at least 16 steps, but not below 16 (or a quarter of
        the images, if that is less); the learning rate shrinks with it (the linear scaling rule), so a small folder
        trains without NaN and takes enough steps in a short budget.
        """
        if self.batch_size is not None:
            return {}
        resolved = self.resolved()
        bound = 2 ** max(0, int(math.log2(max(1, train_images // 16, min(16, train_images // 4)))))
        if resolved.batch_size <= bound:
            return {}
        changes: dict[str, Any] = {"batch_size": bound}
        if self.learning_rate is None:
            changes["learning_rate"] = resolved.learning_rate * bound / resolved.batch_size
        return changes

    @property
    def budget_seconds(self) -> float | None:
        return parse_budget(self.budget)

    def model_config(self, input_shape: tuple[int, int, int], num_classes: int) -> ModelConfig:
        return ModelConfig(
            name=self.architecture,
            input_shape=input_shape,
            num_classes=num_classes,
            batch_norm=bool(self.batch_norm),
            width=self.width,
            input_dropout=float(self.input_dropout),
            stage_dropout=float(self.stage_dropout),
        )

    def validate(self) -> None:
        """One-line errors for values that cannot work (on a resolved config)."""
        budget = self.budget_seconds
        choices = {"architecture": ARCHITECTURES, "augmentation": AUGMENTATIONS, "schedule": SCHEDULES,
                   "strategy": STRATEGIES, "precision": PRECISIONS}  # fmt: skip
        checks = [(getattr(self, name) in names, f"--{name} must be one of {', '.join(names)}") for name, names in choices.items()]
        checks += [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (budget is None or budget >= 1, f"--budget must be at least 1 second, got {self.budget!r}"),
            (budget is None or self.schedule != "paper", "--budget needs --schedule linear or cosine (the paper's steps are by epoch)"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.limit is None or self.limit >= 2, f"--limit must be at least 2, got {self.limit}"),
            (self.width > 0, f"--width must be positive, got {self.width}"),
            (self.learning_rate > 0, f"--learning-rate must be positive, got {self.learning_rate}"),
            (self.weight_decay >= 0, f"--weight-decay must not be negative, got {self.weight_decay}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must not be negative, got {self.warmup_epochs}"),
            *((0 <= getattr(self, name) < 1, f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
              for name in ("input_dropout", "stage_dropout", "momentum", "label_smoothing", "ema", "warmup_fraction")),
            (self.workers >= 1, f"--workers must be at least 1, got {self.workers}"),
            (self.freeze_stages in (0, 1, 2), f"--freeze-stages must be 0, 1 or 2, got {self.freeze_stages}"),
            (not self.freeze_stages or self.from_model, "--freeze-stages needs --from (a freshly initialised stage has nothing to keep)"),
        ]
        check(*checks)
