"""Fine-tuning on the tf_keras twin with the data, split, normalisation and augmentation of the source run.

The settings come from the ``config.json`` of the source's run folder (``toolkit train`` writes a
``train`` section, pruning and QAT a ``data`` section), flags override them; mean and std come
from the source model's card (never recomputed).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any

from converters.bridge import SourceModel
from converters.parity import top1
from toolkit.errors import ToolkitError
from toolkit.model_card import ModelCard
from training.batches import BatchSource, as_keras_dataset
from training.data import Dataset
from training.evaluate import KerasPredictor
from training.splits import SplitSettings, load_split


@dataclasses.dataclass(frozen=True)
class DataSettings(SplitSettings):
    """The source run's split (``data``, ``validation_fraction``, ``seed``, ``limit``) and fine-tuning settings;
    stored as the ``data`` section of a stage's config.json."""

    augmentation: str = "paper"  # the source's augmentation policy
    batch_size: int = 128  # fine-tuning batch size
    weight_decay: float = 0.001  # L2 coefficient, as the source was trained with
    momentum: float = 0.9  # SGD momentum

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in STORED_FIELDS}


# Everything but the split's expected size, which only a card records.
STORED_FIELDS = tuple(field.name for field in dataclasses.fields(DataSettings) if field.name != "validation_images")


def resolve_data_settings(source: SourceModel, overrides: dict[str, Any]) -> DataSettings:
    """The source run's data settings, with every non-None value of ``overrides`` taking precedence."""
    run_config = source.run_config
    if isinstance(run_config.get("data"), dict):
        saved = run_config["data"]
    elif isinstance(run_config.get("train"), dict):
        saved = run_config["train"]  # its other fields are dropped below
    else:  # no run folder: the card records the split
        saved = dataclasses.asdict(SplitSettings.from_card(source.card, source.card.dataset or ""))
    merged = {key: value for key, value in saved.items() if value is not None}
    merged.update({key: value for key, value in overrides.items() if value is not None})
    if not merged.get("data"):
        raise ToolkitError(
            f"cannot tell which images {source.path} was trained on (no config.json beside it, no dataset in its card): pass --data"
        )
    return DataSettings(**{key: value for key, value in merged.items() if key in STORED_FIELDS})


@dataclasses.dataclass
class FineTuneData:
    """Training and validation images as the source run saw them."""

    settings: DataSettings
    train: Dataset
    validation: Dataset
    mean: list[float]
    std: list[float]

    def train_source(self, seed_offset: int = 0) -> BatchSource:
        """Shuffled, augmented, normalised training batches (full batches only, as ``toolkit train``)."""
        settings = self.settings
        batch_size = min(settings.batch_size, len(self.train))
        return BatchSource(
            self.train.images, self.train.labels, batch_size, self.mean, self.std,
            augmentation=settings.augmentation, training=True, seed=settings.seed + seed_offset,
        )  # fmt: skip

    def validation_source(self) -> BatchSource:
        """Unaugmented, normalised validation batches."""
        return BatchSource(self.validation.images, self.validation.labels, self.settings.batch_size, self.mean, self.std)


def load_training_data(source: SourceModel, settings: DataSettings, strict: bool = True) -> FineTuneData:
    """The source run's train/validation split, its images fitted to the card's input size (``strict``: as training checks it)."""
    train, validation = load_split(settings, fit_to=source.card, strict=strict)
    return FineTuneData(settings, train, validation, list(source.card.mean), list(source.card.std))


def sgd_with_l2(learning_rate: Any, momentum: float, l2: float) -> Any:
    """tf_keras SGD with momentum and coupled L2 weight decay (gradient += l2 * w), as ``toolkit train`` uses."""
    from training.tensorflow_stack import tf_keras

    class L2SGD(tf_keras.optimizers.SGD):
        def update_step(self, gradient, variable):
            if l2:
                gradient = gradient + l2 * variable
            return super().update_step(gradient, variable)

    return L2SGD(learning_rate=learning_rate, momentum=momentum)


def fit(
    model: Any,
    data: FineTuneData,
    config: Any,
    description: str,
    extra_callbacks: list | None = None,
    epoch_metrics: Any = None,
) -> list[dict[str, Any]]:
    """Compile and fit a tf_keras model as ``config`` (a PruneConfig or QatConfig) says; returns one history row per epoch.

    ``epoch_metrics(model) -> dict`` adds columns to each row (e.g. the sparsity).
    """
    from tqdm.auto import tqdm

    from training.run_folder import history_row
    from training.tensorflow_stack import tf_keras

    epochs = config.epochs
    train_source = data.train_source()
    schedule = tf_keras.optimizers.schedules.CosineDecay(config.learning_rate, epochs * len(train_source))  # to 0 at the end
    model.compile(
        optimizer=sgd_with_l2(schedule, data.settings.momentum, data.settings.weight_decay),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    rows: list[dict[str, Any]] = []

    class EpochCallback(tf_keras.callbacks.Callback):
        """Sets the training batches' epoch and appends one history row per epoch to ``rows``; with ``progress``, a bar and a line."""

        bar = None

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            train_source.set_epoch(epoch)
            self.started = time.perf_counter()
            if config.progress:
                self.bar = tqdm(total=len(train_source), desc=f"{description} {epoch + 1}/{epochs}", unit="step", leave=False, file=sys.stderr)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if self.bar is not None:
                logs = logs or {}
                self.bar.set_postfix(loss=f"{logs.get('loss', 0):.3f}", accuracy=f"{logs.get('accuracy', 0):.3f}", refresh=False)
                self.bar.update(1)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            row = history_row(epoch, logs, float(self.model.optimizer.learning_rate), self.started)  # the schedule's rate at the last step
            if epoch_metrics is not None:
                row.update(epoch_metrics(self.model))
            rows.append(row)
            if self.bar is not None:
                self.bar.close()
                print(
                    f"{description} epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f} accuracy {row['accuracy']:.4f} "
                    f"val_accuracy {row['val_accuracy']:.4f}",
                    file=sys.stderr,
                )

    model.fit(
        as_keras_dataset(train_source, tf_keras),
        validation_data=as_keras_dataset(data.validation_source(), tf_keras),
        epochs=epochs,
        callbacks=[*(extra_callbacks or []), EpochCallback()],
        verbose=0,
    )
    for row in rows:
        if not all(math.isfinite(row[key]) for key in ("loss", "val_loss")):
            raise ToolkitError(f"{description}: loss became NaN in epoch {row['epoch']}; lower --learning-rate", exit_code=3)
    return rows


def accuracy(model: Any, card: ModelCard, dataset: Dataset) -> float:
    """Top-1 accuracy of a Keras model (either stack) on uint8 images, fed as its card says (0 without images)."""
    return top1(KerasPredictor(model, card).predict(dataset.images), dataset.labels)
