"""Fine-tuning on the tf_keras twin with the data, split, normalisation and augmentation of the source run.

Pruning and QAT continue training the model ``toolkit train`` produced, so they must
see the same training images, the same augmentation and the same validation split;
mean and std come from the source model's card (never recomputed). The settings are
read from the ``config.json`` of the source's run folder (``toolkit train`` writes a
``train`` section, pruning and QAT a ``data`` section) and can be overridden by flags.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from converters import stage
from converters.bridge import SourceModel, load_source
from toolkit.errors import ToolkitError
from toolkit.preprocessing import prepare_batch
from training.batches import BatchSource, as_keras_dataset
from training.data import Dataset, fit_images_to_size, load_dataset, stratified_subset, train_validation_split, training_split


@dataclasses.dataclass
class DataSettings:
    """Where the fine-tuning images come from; stored as the ``data`` section of a stage's config.json."""

    data: str  # dataset spec: cifar10, fashion-mnist or an image folder
    limit: int | None = None  # the seeded class-balanced subset the source was trained on
    validation_fraction: float = 0.1  # the source's validation split
    seed: int = 0  # the source's split seed
    augmentation: str = "paper"  # the source's augmentation policy
    batch_size: int = 128  # fine-tuning batch size
    weight_decay: float = 0.001  # L2 coefficient, as the source was trained with
    momentum: float = 0.9  # SGD momentum

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_data_settings(source: SourceModel, overrides: dict[str, Any]) -> DataSettings:
    """The source run's data settings, with every non-None value of ``overrides`` taking precedence."""
    saved: dict[str, Any] = {}
    run_config = source.run_config
    if isinstance(run_config.get("data"), dict):
        saved = dict(run_config["data"])
    elif isinstance(run_config.get("train"), dict):
        train = run_config["train"]
        saved = {key: train.get(key) for key in ("data", "limit", "validation_fraction", "seed", "augmentation", "batch_size", "weight_decay", "momentum")}
    else:
        # No run folder: the card still records the dataset and the split.
        saved = {
            "data": source.card.dataset or None,
            "validation_fraction": source.card.metrics.get("validation_fraction"),
            "seed": source.card.metrics.get("split_seed"),
        }
    merged = {key: value for key, value in saved.items() if value is not None}
    merged.update({key: value for key, value in overrides.items() if value is not None})
    if not merged.get("data"):
        raise ToolkitError(
            f"cannot tell which images {source.path} was trained on (no config.json beside it, no dataset in its card): pass --data"
        )
    known = {field.name for field in dataclasses.fields(DataSettings)}
    return DataSettings(**{key: value for key, value in merged.items() if key in known})


@dataclasses.dataclass
class FineTuneData:
    """Training and validation images as the source run saw them."""

    settings: DataSettings
    train: Dataset
    validation: Dataset
    mean: list[float]
    std: list[float]

    def train_source(self, seed_offset: int = 0) -> BatchSource:
        """Shuffled, augmented, normalised training batches (drop_remainder, as ``toolkit train``)."""
        settings = self.settings
        batch_size = min(settings.batch_size, len(self.train))
        return BatchSource(
            self.train.images, self.train.labels, batch_size, self.mean, self.std,
            augmentation=settings.augmentation, shuffle=True, seed=settings.seed + seed_offset, drop_remainder=True,
        )  # fmt: skip

    def validation_source(self) -> BatchSource:
        return BatchSource(self.validation.images, self.validation.labels, self.settings.batch_size, self.mean, self.std)

    def summary(self) -> dict[str, Any]:
        return {
            **self.settings.to_dict(),
            "train_images": len(self.train),
            "validation_images": len(self.validation),
        }

    def card_metrics(self) -> dict[str, Any]:
        """The split a stage's model card records, so ``toolkit eval --split validation`` rebuilds it."""
        return {
            "validation_images": len(self.validation),
            "validation_fraction": self.settings.validation_fraction,
            "split_seed": self.settings.seed,
            "limit": self.settings.limit,
            "train_images": len(self.train),
        }


@dataclasses.dataclass
class StageStart:
    """What a fine-tuning stage (prune, QAT) starts from."""

    out: Path  # the prepared run folder
    source: SourceModel  # the model to fine-tune, with its card
    data: FineTuneData  # the source run's images, split and normalisation
    accuracy_before: float  # the source model's validation accuracy


def start_stage(config: Any) -> StageStart:
    """Prepare the run folder, load the source model and its training data, measure where it starts.

    ``config`` is a PruneConfig or QatConfig: both name ``model``, ``out``, ``overwrite``
    and the data overrides (``data``, ``limit``, ``batch_size``, ``augmentation``, ``seed``).
    """
    out = stage.prepare_folder(config.out, config.overwrite)
    source = load_source(config.model)
    overrides = {name: getattr(config, name) for name in ("data", "limit", "batch_size", "augmentation", "seed")}
    data = load_training_data(source, resolve_data_settings(source, overrides))
    return StageStart(out, source, data, accuracy(source.model, data.validation, data.mean, data.std))


def load_training_data(source: SourceModel, settings: DataSettings) -> FineTuneData:
    """Load the dataset and carve the source run's train/validation split; check it matches the card."""
    dataset = load_fitted(settings, source, settings.limit)
    train, validation = training_split(dataset, settings.validation_fraction, settings.seed)
    return FineTuneData(settings, train, validation, list(source.card.mean), list(source.card.std))


def load_fitted(settings: DataSettings, source: SourceModel, limit: int | None) -> Dataset:
    """The dataset as the source model was trained on it: its classes, at its input size (see :func:`fit_to_card`)."""
    dataset = load_dataset(settings.data, limit=limit, seed=settings.seed)
    if dataset.images.ndim == 3:
        dataset.images = dataset.images[..., None]
    fit_to_card(dataset, source, settings.data)
    return dataset


def fit_to_card(dataset: Dataset, source: SourceModel, spec: str) -> None:
    """Resize the images to the card's input size, as training did for a model started from another's
    (``toolkit train --from``); one-line errors when the classes or the channels differ."""
    card = source.card
    if list(dataset.class_names) != list(card.labels):
        raise ToolkitError(
            f"{spec} has classes {', '.join(dataset.class_names[:5])}{'...' if len(dataset.class_names) > 5 else ''} "
            f"but {source.path.name} was trained on {', '.join(card.labels[:5])}{'...' if len(card.labels) > 5 else ''}"
        )
    shape = [int(value) for value in dataset.images.shape[1:]]
    if shape[2] != int(card.input_size[2]):
        raise ToolkitError(f"{spec} holds {shape[1]}x{shape[0]}x{shape[2]} images but the model expects {card.input_size}")
    dataset.images = fit_images_to_size(dataset.images, int(card.input_size[0]), int(card.input_size[1]))


def held_out_images(settings: DataSettings, source: SourceModel, count: int) -> tuple[Dataset, dict[str, int]]:
    """Images the model never trained on: the validation split, topped up to ``count`` where possible.

    When the source run used ``limit`` and its validation split is smaller than
    ``count``, images of the full dataset outside the limited subset are added (seeded):
    they were never seen in training either. ``count`` <= 0 means the whole split.
    Returns the images and where they came from.
    """
    dataset = load_fitted(settings, source, settings.limit)
    _, validation = train_validation_split(dataset, settings.validation_fraction, settings.seed)
    origin = {"validation_split": len(validation), "outside_training_subset": 0}
    if count <= 0 or len(validation) >= count:
        if count > 0:
            validation = validation.subset(np.sort(stratified_subset(validation.labels, count, settings.seed)))
            origin["validation_split"] = len(validation)
        return validation, origin
    if settings.limit is None:
        return validation, origin
    full = load_fitted(settings, source, None)
    if len(full) <= settings.limit:
        return validation, origin
    # The limited subset is stratified_subset(labels, limit, seed) of the full listing
    # (training.data.load_dataset); everything else was never loaded for training.
    used = np.zeros(len(full), dtype=bool)
    used[stratified_subset(full.labels, settings.limit, settings.seed)] = True
    outside = full.subset(np.flatnonzero(~used))
    extra = min(count - len(validation), len(outside))
    picked = outside.subset(np.sort(stratified_subset(outside.labels, extra, settings.seed)))
    origin["outside_training_subset"] = len(picked)
    combined = Dataset(
        np.concatenate([validation.images, picked.images]),
        np.concatenate([validation.labels, picked.labels]),
        validation.class_names,
        validation.source,
    )
    return combined, origin


def sgd_with_l2(learning_rate: Any, momentum: float, l2: float) -> Any:
    """tf_keras SGD with momentum and coupled L2 weight decay (gradient += l2 * w), as ``toolkit train`` uses."""
    from training.tensorflow_stack import tf_keras

    class L2SGD(tf_keras.optimizers.SGD):
        def update_step(self, gradient, variable):
            if l2:
                gradient = gradient + l2 * variable
            return super().update_step(gradient, variable)

    return L2SGD(learning_rate=learning_rate, momentum=momentum)


def cosine_learning_rate(initial: float, total_steps: int) -> Any:
    """Cosine decay from ``initial`` to 0 over the fine-tuning."""
    from training.tensorflow_stack import tf_keras

    return tf_keras.optimizers.schedules.CosineDecay(initial, max(1, total_steps))


def fit(
    model: Any,
    data: FineTuneData,
    epochs: int,
    learning_rate: float,
    extra_callbacks: list | None = None,
    epoch_metrics: Any = None,
    progress: bool = True,
    description: str = "fine-tuning",
) -> list[dict[str, Any]]:
    """Compile and fit a tf_keras model; returns one history row per epoch.

    ``epoch_metrics(model) -> dict`` adds columns to each row (e.g. the sparsity).
    """
    from training.tensorflow_stack import tf_keras

    train_source = data.train_source()
    steps_per_epoch = len(train_source)
    if steps_per_epoch < 1:
        raise ToolkitError(f"{len(data.train)} training images are too few for one batch of {data.settings.batch_size}")
    schedule = cosine_learning_rate(learning_rate, epochs * steps_per_epoch)
    model.compile(
        optimizer=sgd_with_l2(schedule, data.settings.momentum, data.settings.weight_decay),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    rows: list[dict[str, Any]] = []
    recorder = _EpochRecorder(tf_keras, rows, epoch_metrics, train_source)
    bar = _ProgressBar(tf_keras, epochs, steps_per_epoch, description, progress)
    model.fit(
        as_keras_dataset(train_source, tf_keras),
        validation_data=as_keras_dataset(data.validation_source(), tf_keras),
        epochs=epochs,
        callbacks=[*(extra_callbacks or []), recorder, bar],
        verbose=0,
    )
    for row in rows:
        if not all(math.isfinite(row[key]) for key in ("loss", "val_loss")):
            raise ToolkitError(f"{description}: loss became NaN in epoch {row['epoch']}; lower --learning-rate", exit_code=3)
    return rows


def _EpochRecorder(tf_keras: Any, rows: list, epoch_metrics: Any, train_source: BatchSource) -> Any:
    class EpochRecorder(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            train_source.set_epoch(epoch)
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            optimizer = self.model.optimizer
            row = {
                "epoch": epoch + 1,
                "loss": float(logs.get("loss", float("nan"))),
                "accuracy": float(logs.get("accuracy", float("nan"))),
                "val_loss": float(logs.get("val_loss", float("nan"))),
                "val_accuracy": float(logs.get("val_accuracy", float("nan"))),
                "learning_rate": float(optimizer.learning_rate(optimizer.iterations)) if callable(optimizer.learning_rate) else float(optimizer.learning_rate),
                "seconds": round(time.perf_counter() - self.started, 3),
            }
            if epoch_metrics is not None:
                row.update(epoch_metrics(self.model))
            rows.append(row)

    return EpochRecorder()


def _ProgressBar(tf_keras: Any, epochs: int, steps_per_epoch: int, description: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    class ProgressBar(tf_keras.callbacks.Callback):
        bar = None

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            if enabled:
                self.bar = tqdm(total=steps_per_epoch, desc=f"{description} {epoch + 1}/{epochs}", unit="step", leave=False, file=sys.stderr)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if self.bar is not None:
                logs = logs or {}
                self.bar.set_postfix(loss=f"{logs.get('loss', 0):.3f}", accuracy=f"{logs.get('accuracy', 0):.3f}", refresh=False)
                self.bar.update(1)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            if enabled:
                logs = logs or {}
                print(
                    f"{description} epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.4f} "
                    f"accuracy {logs.get('accuracy', float('nan')):.4f} val_accuracy {logs.get('val_accuracy', float('nan')):.4f}",
                    file=sys.stderr,
                )

    return ProgressBar()


def accuracy(model: Any, dataset: Dataset, mean: list[float], std: list[float], batch_size: int = 256) -> float:
    """Top-1 accuracy of a Keras model (either stack) on uint8 images normalised with the card's mean/std."""
    correct = 0
    for start in range(0, len(dataset), batch_size):
        images = prepare_batch(dataset.images[start : start + batch_size], mean, std)
        predictions = np.asarray(model(images, training=False))
        correct += int(np.sum(np.argmax(predictions, axis=-1) == dataset.labels[start : start + batch_size]))
    return correct / max(1, len(dataset))


def write_history_csv(rows: list[dict[str, Any]], target: Path) -> None:
    """history.csv of a fine-tuning run (atomic)."""
    import csv
    import io

    from toolkit import atomic

    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(target, buffer.getvalue())
