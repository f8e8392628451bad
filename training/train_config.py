"""The configuration of `toolkit train`, importable without Keras (the CLI builds --help from it)."""

from __future__ import annotations

import dataclasses
from typing import Any

from toolkit.errors import ToolkitError
from training.allcnn import ARCHITECTURES, ModelConfig
from training.augment import AUGMENTATIONS

SCHEDULES = ("cosine", "paper")
STRATEGIES = ("none", "mirrored", "multiworker", "data-parallel")


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run needs; saved as RUN/config.json and reused by --resume."""

    data: str = "cifar10"  # cifar10, fashion-mnist, or an image folder ROOT/<class>/<image>
    out: str = "runs/train"  # run folder (created; must not already hold a run)
    epochs: int = 100  # epochs to train (the paper: 350 with --schedule paper)
    batch_size: int = 128  # global batch size, split across replicas when distributed
    limit: int | None = None  # keep a seeded, class-balanced subset of this many images (quick runs)
    validation_fraction: float = 0.1  # stratified share of the data held out for validation
    seed: int = 0  # seeds the split, the weights, the shuffling and the augmentation
    architecture: str = "all_cnn_c"  # all_cnn_c, model_c, strided_cnn_c or convpool_cnn_c
    batch_norm: bool = False  # BatchNormalization after every conv but the classifier
    width: float = 1.0  # filter-count multiplier (0.25 for quick tests)
    augmentation: str = "paper"  # none, paper (pad-4 crop + flip) or cutout (paper + 8x8 cutout)
    schedule: str = "cosine"  # cosine (linear warm-up, cosine decay) or paper (x0.1 at 200/250/300 of 350)
    warmup_epochs: float = 5.0  # cosine warm-up length; at most a tenth of the run
    learning_rate: float = 0.05  # base learning rate (peak of the cosine schedule)
    momentum: float = 0.9  # SGD momentum, as in the paper
    weight_decay: float = 0.001  # L2 coefficient added to the gradient before momentum, as in the paper
    label_smoothing: float = 0.0  # e.g. 0.1; 0 is plain cross-entropy
    mixed_precision: bool = False  # mixed_float16 compute with float32 weights and loss scaling
    strategy: str = "none"  # none, mirrored, multiworker (TensorFlow) or data-parallel (JAX)
    workers: int = 1  # threads preparing batches in parallel with training
    progress: bool = True  # show a progress bar
    resume: str | None = None  # a run folder to continue; its saved config replaces every other field

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "TrainConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in payload.items() if key in known})

    def model_config(self, input_shape: tuple[int, int, int], num_classes: int) -> ModelConfig:
        return ModelConfig(
            name=self.architecture,
            input_shape=input_shape,
            num_classes=num_classes,
            batch_norm=self.batch_norm,
            width=self.width,
        )

    def validate(self) -> None:
        """One-line errors for values that cannot work."""
        checks = [
            (self.architecture in ARCHITECTURES, f"--architecture must be one of {', '.join(ARCHITECTURES)}"),
            (self.augmentation in AUGMENTATIONS, f"--augmentation must be one of {', '.join(AUGMENTATIONS)}"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
            (self.strategy in STRATEGIES, f"--strategy must be one of {', '.join(STRATEGIES)}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.limit is None or self.limit >= 2, f"--limit must be at least 2, got {self.limit}"),
            (self.width > 0, f"--width must be positive, got {self.width}"),
            (self.learning_rate > 0, f"--learning-rate must be positive, got {self.learning_rate}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"--weight-decay must not be negative, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must not be negative, got {self.warmup_epochs}"),
            (self.workers >= 1, f"--workers must be at least 1, got {self.workers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ToolkitError(message)
