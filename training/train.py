"""The float training loop: one config in, one run folder out (training/run_folder.py), on Keras 3 (TensorFlow or JAX).

    from training.train import TrainConfig, train
    run = train(TrainConfig(data="../shared/data/cifar10-jpeg/train", epochs=30, out="runs/c30"))
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import atomic
from toolkit.errors import ToolkitError, ToolkitWarning
from toolkit.model_card import ModelCard
from toolkit.preprocessing import normalize
from training.allcnn import ModelConfig, create_model
from training.backend import backend_name, gpu_present, keras, native_bfloat16
from training.batches import BatchSource, as_keras_dataset
from training.budget import LearningRateByProgress, rate_at
from training.callbacks import BatchNormRecalibration, NanGuard, ProgressBar, WeightAverage, batch_norm_layers
from training.data import Dataset, absolute_spec, channel_statistics, fit_images_to_size, stratified_subset
from training.distribution import Distribution, setup_distribution
from training.fused_batch_norm import fuse_batch_norm
from training.optimization import create_loss, create_optimizer
from training.run_folder import RunCheckpoint, RunFolder
from training.schedules import create_schedule, describe_schedule
from training.splits import SplitSettings, load_split, split_metrics
from training.train_config import TrainConfig
from training.transfer import Parent, parent_architecture, start_from

MAX_BUDGET_EPOCHS = 100_000  # a budgeted run ends on time, not on an epoch count
# Keras mixed-precision policy of each --precision.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
RECALIBRATION_PIXELS = 256 * 32 * 32  # batch norm is recalibrated on at most 256 images of 32x32, or as many pixels


@dataclasses.dataclass
class TrainingData:
    """A run's images, split, with the training split's mean/std."""

    train: Dataset
    validation: Dataset
    labels: list[str]
    mean: list[float]
    std: list[float]
    source: str  # where the images came from
    split: SplitSettings  # how train and validation were carved

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(value) for value in self.train.images.shape[1:])


def train(config: TrainConfig) -> Path:
    """Train the model ``config`` describes and return its run folder (see training/run_folder.py)."""
    record = RunFolder(config.resume).read_config() if config.resume is not None else None  # a resumed run's config.json
    if record is not None:  # the run's saved config; progress is how to display, not what to train: the caller's choice
        root = str(Path(config.resume))
        config = dataclasses.replace(TrainConfig.from_dict(record["train"]), out=root, resume=root, progress=config.progress)
    requested = dataclasses.replace(config, data=absolute_spec(config.data))  # --resume from another directory still finds it
    config = requested.resolved()
    config.validate()
    backend = backend_name()
    distribution = setup_distribution(config.strategy, backend)  # before any tensor exists
    try:
        return _train(config, requested, backend, distribution, record)
    finally:
        distribution.close()
        keras.mixed_precision.set_global_policy("float32")


def _train(config: TrainConfig, requested: TrainConfig, backend: str, distribution: Distribution, record: dict[str, Any] | None) -> Path:
    """The loop: run folder, data, model, callbacks, ``fit``, then the outcome checked (``record``: a resumed run's config.json)."""
    run = RunFolder(Path(config.out) if distribution.is_chief else Path(config.out) / f"worker-{distribution.worker_index}")
    if record is None and run.holds_run():
        raise ToolkitError(f"{run.root} already holds a run; continue it with --resume {run.root} or choose another --out")
    keras.utils.set_random_seed(config.seed)
    parent = parent_architecture(config.from_model) if config.from_model else None
    data = _load_data(config, parent)
    config = _fit_to_machine(_fit_to_data(config, requested, len(data.train), distribution.replicas), requested)
    batches = BatchSource(
        data.train.images, data.train.labels, config.batch_size, data.mean, data.std,
        augmentation=config.augmentation, training=True, seed=config.seed,
    )  # fmt: skip
    validation_batches = BatchSource(data.validation.images, data.validation.labels, config.batch_size, data.mean, data.std)
    resuming = _open_run(run, record, data, len(batches))
    model_config = _model_config(config, data, parent)
    keras.mixed_precision.set_global_policy(POLICIES[config.precision])
    clock = _rate_controller(config, run, len(batches))
    with distribution.scope():
        model = keras.models.load_model(run.last) if resuming else _new_model(config, model_config, parent, data.labels, clock, len(batches))
    fuse_batch_norm(model)
    summary = _summary(config, data, model, model_config, backend, distribution, len(batches))
    if not resuming:
        atomic.write_json(run.config, _config_record(config, requested, model_config, data, summary))
    card = _card(config, data, model_config, parent, backend)
    if (run.state.get("finished", False) if config.budget else run.state["epochs_completed"] >= config.epochs):
        # A finished run resumed (or killed after its last epoch): nothing to train; keep what the last session measured.
        previous = run.read_metrics()
        kept = ("images_per_second", "wall_seconds_this_session", "seconds_spent", "batch_norm_recalibration_images")
        summary.update({key: previous[key] for key in kept if key in previous})
        run.write_derived(card, summary)
        return run.root
    recalibration = _batch_norm_recalibration(model, data, len(batches), distribution.replicas, config.seed)
    summary["batch_norm_recalibration_images"] = len(recalibration.images) if recalibration else 0
    guard = NanGuard()
    callbacks = [
        guard,
        *([clock] if clock is not None else []),
        *([WeightAverage(config.ema)] if config.ema else []),
        *([recalibration] if recalibration else []),  # after the weight average: recalibrates what is validated
        RunCheckpoint(run, card, summary, guard, batches, config.batch_size, clock),
        ProgressBar(None if config.budget else config.epochs, len(batches), bar=config.progress and distribution.is_chief, summary=distribution.is_chief),
    ]
    if resuming:
        run.state["resumed_at_epochs"].append(run.state["epochs_completed"])
    distribution.prepare_model(model, batches[0])
    started = time.perf_counter()
    model.fit(
        as_keras_dataset(batches, keras, workers=config.workers),
        validation_data=as_keras_dataset(validation_batches, keras, workers=config.workers),
        epochs=MAX_BUDGET_EPOCHS if config.budget else config.epochs,
        initial_epoch=run.state["epochs_completed"],
        shuffle=False,  # BatchSource shuffles by (seed, epoch), so a resumed run sees the same batches
        callbacks=callbacks,
        verbose=0,
    )
    _check_outcome(config, run, guard)
    summary["wall_seconds_this_session"] = round(time.perf_counter() - started, 1)
    run.write_derived(card, summary)
    return run.root


def _load_data(config: TrainConfig, parent: Parent | None) -> TrainingData:
    """The run's images, split (fitted to a parent model's input size), with the training split's mean/std."""
    settings = SplitSettings(config.data, config.validation_fraction, config.seed, config.limit)
    train_set, validation_set = load_split(settings, strict=True)
    if parent is not None:  # the images as the parent model sees them: its input size
        for part in (train_set, validation_set):
            part.images = fit_images_to_size(part.images, *parent.architecture.input_shape[:2])
    mean, std = channel_statistics(train_set.images)
    return TrainingData(train_set, validation_set, list(train_set.class_names), mean, std, train_set.source or config.data, settings)


def _fit_to_data(config: TrainConfig, requested: TrainConfig, train_images: int, replicas: int) -> TrainConfig:
    """The config with the batch and learning rate a small dataset needs (printed once); one-line errors for a batch that cannot work."""
    changes = requested.small_data_changes(train_images)
    if changes:
        config = dataclasses.replace(config, **changes)
        print(f"{train_images} training images: batch size {config.batch_size}, learning rate {config.learning_rate:.4g} "
              "(the recipe's, scaled down; --batch-size and --learning-rate choose others)", file=sys.stderr)  # fmt: skip
    if config.batch_size % replicas:
        raise ToolkitError(f"--batch-size {config.batch_size} must be divisible by the {replicas} replicas")
    if config.batch_size > train_images:
        raise ToolkitError(f"--batch-size {config.batch_size} is larger than the {train_images} training images")
    return config


def _open_run(run: RunFolder, record: dict[str, Any] | None, data: TrainingData, steps_per_epoch: int) -> bool:
    """Start the run folder, or recover a resumed run (``record``: its config.json) whose data is unchanged; returns whether it resumes."""
    if record is None or not run.has_checkpoint():  # a fresh run, or one killed before its first checkpoint: start over
        run.start(steps_per_epoch)
        return False
    changes = _data_changes(record, data)
    if changes:
        raise ToolkitError(
            f"cannot resume {run.root}: the data changed since the run started ({'; '.join(changes)}), so the "
            "split and the normalisation would too; train a new run with another --out"
        )
    state = run.recover()
    if state["steps_per_epoch"] != steps_per_epoch:
        raise ToolkitError(
            f"cannot resume {run.root}: the data now gives {steps_per_epoch} steps per epoch, "
            f"the run had {state['steps_per_epoch']} (did --data change?)"
        )
    return True


def _data_changes(saved: dict[str, Any], data: TrainingData) -> list[str]:
    """How the data a resumed run finds differs from what its config.json recorded (older runs record less)."""
    changes, labels = [], data.labels
    if "labels" in saved and saved["labels"] != labels:
        added, removed = sorted(set(labels) - set(saved["labels"])), sorted(set(saved["labels"]) - set(labels))
        changes.append("classes " + (", ".join([f"+{name}" for name in added] + [f"-{name}" for name in removed]) or "reordered"))
    for key, now in (("train_images", len(data.train)), ("validation_images", len(data.validation))):
        if key in saved and saved[key] != now:
            changes.append(f"{key.replace('_', ' ')} {saved[key]} -> {now}")
    if not changes and any(
        key in saved and (len(saved[key]) != len(now) or not np.allclose(saved[key], now, rtol=0, atol=1e-6))
        for key, now in (("mean", data.mean), ("std", data.std))
    ):
        changes.append("the same number of images, but other pixels (mean/std differ)")
    return changes


def _model_config(config: TrainConfig, data: TrainingData, parent: Parent | None) -> ModelConfig:
    """The architecture: the config's, or with --from the parent's layers, width and batch norm with this run's data and dropout."""
    if parent is None:
        return config.model_config(data.input_shape, len(data.labels))
    return dataclasses.replace(parent.architecture, input_shape=data.input_shape, num_classes=len(data.labels),
                               input_dropout=config.input_dropout, stage_dropout=config.stage_dropout)  # fmt: skip


def _batch_norm_recalibration(model: Any, data: TrainingData, steps_per_epoch: int, replicas: int,
                              seed: int) -> BatchNormRecalibration | None:  # fmt: skip
    """Batch-norm recalibration before each validation when the moving averages span more than an epoch (on one device;
    printed once), on a seeded, class-balanced subset of the training images."""
    layers = batch_norm_layers(model)
    # momentum m averages about 1 / (1 - m) steps: more than an epoch when m > 1 - 1 / steps
    if replicas > 1 or not any(layer.momentum > 1.0 - 1.0 / steps_per_epoch for layer in layers):
        return None
    height, width = data.input_shape[:2]
    count = min(len(data.train), max(1, RECALIBRATION_PIXELS // (height * width)))
    chosen = stratified_subset(data.train.labels, count, seed)
    print(f"{steps_per_epoch} steps an epoch: batch norm's statistics are recomputed on {count} training images "
          "before each validation", file=sys.stderr)  # fmt: skip
    return BatchNormRecalibration(normalize(data.train.images[chosen], data.mean, data.std))


def _fit_to_machine(config: TrainConfig, requested: TrainConfig) -> TrainConfig:
    """The config with float32 instead of the recipe's bfloat16 where the machine has no bfloat16 hardware (printed
    once); a warning for a precision asked for that the machine would emulate."""
    if config.precision == "float16" and not gpu_present():
        warnings.warn("--precision float16 on a CPU works but is usually slower than float32; use bfloat16 or a GPU", ToolkitWarning)
    if config.precision != "bfloat16" or native_bfloat16():
        return config
    if requested.precision is not None:
        warnings.warn("--precision bfloat16 on a CPU without bfloat16 instructions (AVX512-BF16, AMX or Arm's BF16) is "
                      "emulated and several times slower than float32", ToolkitWarning)  # fmt: skip
        return config
    print("no bfloat16 instructions found on this CPU (AVX512-BF16, AMX or Arm's BF16): precision float32, several times "
          "faster than the recipe's bfloat16 emulated (--precision bfloat16 insists)", file=sys.stderr)  # fmt: skip
    return dataclasses.replace(config, precision="float32")


def _rate_controller(config: TrainConfig, run: RunFolder, steps_per_epoch: int) -> LearningRateByProgress | None:
    """The per-step learning rate of a linear schedule or a --budget run (None: a schedule object in the optimizer does it)."""
    if config.budget is None and config.schedule != "linear":
        return None
    return LearningRateByProgress(
        config.learning_rate, config.warmup_fraction, config.schedule, total_steps=config.epochs * steps_per_epoch,
        budget_seconds=config.budget_seconds, seconds_spent=run.state.get("seconds_spent", 0.0), steps_per_epoch=steps_per_epoch,
    )  # fmt: skip


def _new_model(config: TrainConfig, model_config: ModelConfig, parent: Parent | None, labels: list[str],
               clock: LearningRateByProgress | None, steps_per_epoch: int) -> Any:  # fmt: skip
    """A compiled model: freshly initialised, or started from the parent's weights."""
    model = create_model(model_config, keras)
    if parent is not None:
        start_from(model, parent, labels, config.freeze_stages)
    if clock is not None:
        schedule = rate_at(0.0, config.learning_rate, config.warmup_fraction)  # the clock sets it before every step
    else:
        schedule = create_schedule(config.schedule, config.learning_rate, config.epochs, steps_per_epoch, config.warmup_epochs)
    compile_model(model, config, schedule)
    return model


def compile_model(model: Any, config: TrainConfig, learning_rate: Any) -> None:
    """Compile ``model`` with the config's optimizer and loss, as every training run does."""
    model.compile(
        optimizer=create_optimizer(learning_rate, config.momentum, config.weight_decay, config.nesterov),
        loss=create_loss(config.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def _summary(config: TrainConfig, data: TrainingData, model: Any, model_config: ModelConfig, backend: str,
             distribution: Distribution, steps_per_epoch: int) -> dict[str, Any]:  # fmt: skip
    """The run's facts for metrics.json (and, in part, the cards)."""
    return {
        "dataset": data.source,
        "classes": len(data.labels),
        **split_metrics(data.split, data.train, data.validation),  # eval --split validation rebuilds the same subset and split
        "epochs": None if config.budget else config.epochs,
        "budget_seconds": config.budget_seconds,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": config.batch_size,
        "backend": backend,
        "strategy": distribution.name,
        "replicas": distribution.replicas,
        "workers": distribution.num_workers,
        "parameters": int(model.count_params()),
        "title": f"{model_config.name} width {model_config.width:g} on {'/'.join(Path(config.data).parts[-2:])}",
    }


def _config_record(config: TrainConfig, requested: TrainConfig, model_config: ModelConfig, data: TrainingData,
                   summary: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """config.json: what --resume continues and what a resume checks the data against."""
    return {
        "train": config.to_dict() | {"resume": None},
        "requested": requested.to_dict() | {"resume": None},  # before the recipe and the data filled it in
        "model": model_config.to_dict(),
        "schedule": describe_schedule(config, summary["steps_per_epoch"]),
        "mean": data.mean,
        "std": data.std,
        "labels": data.labels,
        **{key: summary[key] for key in ("dataset", "train_images", "validation_images", "steps_per_epoch", "backend")},
    }


def _card(config: TrainConfig, data: TrainingData, model_config: ModelConfig, parent: Parent | None, backend: str) -> ModelCard:
    """The card saved beside last.keras and best.keras (their metrics are added per epoch)."""
    return ModelCard(
        labels=data.labels,
        input_size=list(data.input_shape),
        mean=data.mean,
        std=data.std,
        colour_order="GRAY" if data.input_shape[-1] == 1 else "RGB",
        architecture=model_config.to_dict(),
        dataset=data.source,
        format="keras",
        history=[*parent.card.history, f"train --from {parent.path}"] if parent else ["train"],
        source_sha256=atomic.file_digest(parent.path) if parent else None,
        notes=f"toolkit train: {config.schedule} schedule, {config.augmentation} augmentation, backend {backend}",
    )


def _check_outcome(config: TrainConfig, run: RunFolder, guard: NanGuard) -> None:
    """One-line errors for a run that diverged or stopped before its end; the last good checkpoint stays."""
    done = run.state["epochs_completed"]
    if guard.failure is not None:
        failure = guard.failure
        where = f"epoch {failure['epoch']}" + (f", step {failure['step']}" if failure["step"] else "")
        kept = f"the last good checkpoint {run.last} (epoch {done}) is kept" if done else "no checkpoint had been written yet"
        raise ToolkitError(
            f"training diverged: {failure['what']} at {where} (learning rate {failure['learning_rate']:.3g}); {kept}; "
            "lower --learning-rate, enable --batch-norm or check the data",
            exit_code=3,
        )
    if config.budget and not run.state.get("finished"):
        raise ToolkitError(f"training stopped after epoch {done} before its budget was spent; resume with --resume {run.root}")
    if not config.budget and done < config.epochs:
        raise ToolkitError(f"training stopped after epoch {done} of {config.epochs}; resume with --resume {run.root}")
