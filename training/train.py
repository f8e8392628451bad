"""The float training loop: one config in, one run folder out.

    from training.train import TrainConfig, train
    run = train(TrainConfig(data="../shared/data/cifar10-jpeg/train", epochs=30, out="runs/c30"))

Keras 3 on the TensorFlow or JAX backend. The input pipeline is numpy only
(:class:`training.batches.BatchSource`); mean/std come from the training split.
Each epoch ends with ``last.keras`` (model + optimizer state) and, when validation
accuracy improved, ``best.keras``, each with a model card; ``--resume RUN`` continues
from ``last.keras`` with the right epoch counter and schedule position.
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
from training.allcnn import create_model
from training.backend import backend_name, keras
from training.batches import BatchSource, as_keras_dataset
from training.budget import LearningRateByProgress, rate_at
from training.callbacks import EpochCheckpoint, NanGuard, ProgressBar, WeightAverage, current_learning_rate
from training.data import absolute_spec, channel_statistics, fit_images_to_size, load_dataset, training_split
from training.distribution import Distribution, setup_distribution
from training.optimization import create_loss, create_optimizer
from training.run_folder import RunFolder
from training.schedules import create_schedule, paper_milestones, warmup_steps_for
from training.train_config import TrainConfig
from training.transfer import parent_architecture, start_from

MAX_BUDGET_EPOCHS = 100_000  # a budgeted run ends on time, not on an epoch count
# Keras mixed-precision policy of each --precision.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def train(config: TrainConfig) -> Path:
    """Train the model ``config`` describes and return its run folder (see training/run_folder.py)."""
    resuming = config.resume is not None
    if resuming:
        config = _saved_config(Path(config.resume), config.progress)
    requested = config
    config = config.resolved()
    config.validate()
    backend = backend_name()
    distribution = setup_distribution(config.strategy, backend)  # before any tensor exists
    try:
        return _train(config, requested, backend, distribution, resuming)
    finally:
        distribution.close()
        keras.mixed_precision.set_global_policy("float32")


def _saved_config(run_root: Path, progress: bool) -> TrainConfig:
    saved = RunFolder(run_root).read_config()["train"]
    config = TrainConfig.from_dict(saved)
    config.out = str(run_root)
    config.resume = str(run_root)
    config.progress = progress  # how to display, not what to train: the caller's choice
    return config


def _has_gpu(backend: str) -> bool:
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    return bool(keras.distribution.list_devices("gpu")) if hasattr(keras.distribution, "list_devices") else False


def _train(config: TrainConfig, requested: TrainConfig, backend: str, distribution: Distribution, resuming: bool) -> Path:
    config.data = absolute_spec(config.data)  # --resume from another directory still finds it
    run = RunFolder(Path(config.out) if distribution.is_chief else Path(config.out) / f"worker-{distribution.worker_index}")
    if not resuming and run.holds_run():
        raise ToolkitError(f"{run.root} already holds a run; continue it with --resume {run.root} or choose another --out")
    keras.utils.set_random_seed(config.seed)

    dataset = load_dataset(config.data, limit=config.limit, seed=config.seed)
    if dataset.images.ndim == 3:
        dataset.images = dataset.images[..., None]
    if len(dataset.class_names) < 2:
        raise ToolkitError(f"{config.data} has only one class ({dataset.class_names[0]}); a classifier needs at least two")
    parent = parent_architecture(config.from_model) if config.from_model else None
    if parent is not None:  # the images as the parent model sees them: its input size
        dataset.images = fit_images_to_size(dataset.images, *parent[2].input_shape[:2])
    train_set, validation_set = training_split(dataset, config.validation_fraction, config.seed)
    mean, std = channel_statistics(train_set.images)
    input_shape = tuple(int(value) for value in train_set.images.shape[1:])
    model_config = config.model_config(input_shape, len(dataset.class_names))
    if parent is not None:  # the parent's layers, width and batch norm; this run's data and dropout
        model_config = dataclasses.replace(parent[2], input_shape=input_shape, num_classes=len(dataset.class_names),
                                           input_dropout=config.input_dropout, stage_dropout=config.stage_dropout)  # fmt: skip
    changes = requested.small_data_changes(len(train_set))
    if changes:
        config = dataclasses.replace(config, **changes)
        print(f"{len(train_set)} training images: batch size {config.batch_size}, learning rate {config.learning_rate:.4g} "
              "(the recipe's, scaled down; --batch-size and --learning-rate choose others)", file=sys.stderr)  # fmt: skip

    if config.batch_size % distribution.replicas:
        raise ToolkitError(f"--batch-size {config.batch_size} must be divisible by the {distribution.replicas} replicas")
    if config.batch_size > len(train_set):
        raise ToolkitError(f"--batch-size {config.batch_size} is larger than the {len(train_set)} training images")
    train_source = BatchSource(
        train_set.images, train_set.labels, config.batch_size, mean, std,
        augmentation=config.augmentation, shuffle=True, seed=config.seed, drop_remainder=True,
    )  # fmt: skip
    validation_source = BatchSource(validation_set.images, validation_set.labels, config.batch_size, mean, std)
    steps_per_epoch = len(train_source)

    if resuming and not run.has_checkpoint():
        resuming = False  # killed before its first checkpoint: nothing to continue, start over
    if resuming:
        changes = _data_changes(run.read_config(), list(dataset.class_names), len(train_set), len(validation_set), mean, std)
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
    else:
        run.start(steps_per_epoch)
    initial_epoch = run.state["epochs_completed"]

    if config.precision == "float16" and not _has_gpu(backend):
        warnings.warn("--precision float16 on a CPU works but is usually slower than float32; use bfloat16 or a GPU", ToolkitWarning)
    keras.mixed_precision.set_global_policy(POLICIES[config.precision])
    budget_seconds = config.budget_seconds
    rate_controller = None
    if budget_seconds is not None or config.schedule == "linear":
        rate_controller = LearningRateByProgress(
            config.learning_rate, config.warmup_fraction, config.schedule, total_steps=config.epochs * steps_per_epoch,
            budget_seconds=budget_seconds, seconds_spent=run.state.get("seconds_spent", 0.0),
        )  # fmt: skip
    with distribution.scope():
        if resuming:
            model = keras.models.load_model(run.last)
        else:
            model = create_model(model_config, keras)
            if parent is not None:
                start_from(model, parent[0], parent[1], list(dataset.class_names), config.freeze_stages)
            if rate_controller is not None:
                schedule = rate_at(0.0, config.learning_rate, config.warmup_fraction)  # set before every step
            else:
                schedule = create_schedule(config.schedule, config.learning_rate, config.epochs, steps_per_epoch, config.warmup_epochs)
            model.compile(
                optimizer=create_optimizer(schedule, config.momentum, config.weight_decay, config.nesterov),
                loss=create_loss(config.label_smoothing),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            )

    summary = {
        "dataset": dataset.source or config.data,
        "classes": len(dataset.class_names),
        "train_images": len(train_set),
        "validation_images": len(validation_set),
        "validation_fraction": config.validation_fraction,
        "split_seed": config.seed,
        "limit": config.limit,  # eval --split validation rebuilds the same subset and split
        "epochs": None if budget_seconds else config.epochs,
        "budget_seconds": budget_seconds,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": config.batch_size,
        "backend": backend,
        "strategy": distribution.name,
        "replicas": distribution.replicas,
        "workers": distribution.num_workers,
        "parameters": int(model.count_params()),
        "title": f"{model_config.name} width {model_config.width:g} on {'/'.join(Path(config.data).parts[-2:])}",
    }
    resolved = {
        "train": config.to_dict() | {"resume": None},
        "requested": requested.to_dict() | {"resume": None},  # before the recipe and the data filled it in
        "model": model_config.to_dict(),
        "schedule": _schedule_description(config, steps_per_epoch),
        "mean": mean,
        "std": std,
        "labels": list(dataset.class_names),
        **{key: summary[key] for key in ("dataset", "train_images", "validation_images", "steps_per_epoch", "backend")},
    }
    if not resuming:
        run.write_config(resolved)
    card = ModelCard(
        labels=list(dataset.class_names),
        input_size=list(input_shape),
        mean=mean,
        std=std,
        colour_order="GRAY" if input_shape[-1] == 1 else "RGB",
        architecture=model_config.to_dict(),
        dataset=summary["dataset"],
        format="keras",
        history=[*parent[1].history, f"train --from {parent[0]}"] if parent else ["train"],
        source_sha256=atomic.file_digest(parent[0]) if parent else None,
        notes=f"toolkit train: {config.schedule} schedule, {config.augmentation} augmentation, backend {backend}",
    )

    def on_epoch_begin(epoch: int) -> None:
        train_source.set_epoch(epoch)  # the same shuffle and augmentation as an unbroken run

    def publish(model: Any, epoch: int, logs: dict, seconds: float, images_per_second: float) -> None:
        row = {
            "epoch": epoch + 1,
            "loss": float(logs["loss"]),
            "accuracy": float(logs["accuracy"]),
            "val_loss": float(logs["val_loss"]),
            "val_accuracy": float(logs["val_accuracy"]),
            "learning_rate": current_learning_rate(model),
            "seconds": round(seconds, 3),
        }
        summary["images_per_second"] = round(images_per_second, 1)
        if rate_controller is not None:
            run.state["seconds_spent"] = round(rate_controller.seconds_spent(), 1)
            run.state["finished"] = rate_controller.finished
            summary["seconds_spent"] = run.state["seconds_spent"]
        run.publish_epoch(lambda path: model.save(path), row, card, summary)

    guard = NanGuard()
    callbacks = [
        guard,
        *([rate_controller] if rate_controller is not None else []),
        *([WeightAverage(config.ema)] if config.ema else []),
        EpochCheckpoint(publish, guard, on_epoch_begin, config.batch_size),
        ProgressBar(None if budget_seconds else config.epochs, steps_per_epoch, bar=config.progress and distribution.is_chief, summary=distribution.is_chief),
    ]
    finished = run.state.get("finished", False) if budget_seconds else initial_epoch >= config.epochs
    if finished:  # a finished run (or one killed after its last epoch): nothing to train
        if resuming:
            previous = run.read_metrics()
            summary.update({key: previous[key] for key in ("images_per_second", "wall_seconds_this_session") if key in previous})
        run.write_derived(card, summary)
        return run.root
    if resuming:
        run.state["resumed_at_epochs"].append(initial_epoch)
    distribution.prepare_model(model, train_source[0])
    started = time.perf_counter()
    model.fit(
        as_keras_dataset(train_source, keras, workers=config.workers),
        validation_data=as_keras_dataset(validation_source, keras, workers=config.workers),
        epochs=MAX_BUDGET_EPOCHS if budget_seconds else config.epochs,
        initial_epoch=initial_epoch,
        shuffle=False,  # BatchSource shuffles by (seed, epoch), so a resumed run sees the same batches
        callbacks=callbacks,
        verbose=0,
    )
    if guard.failure is not None:
        failure = guard.failure
        where = f"epoch {failure['epoch']}" + (f", step {failure['step']}" if failure["step"] else "")
        kept = (
            f"the last good checkpoint {run.last} (epoch {run.state['epochs_completed']}) is kept"
            if run.state["epochs_completed"]
            else "no checkpoint had been written yet"
        )
        raise ToolkitError(
            f"training diverged: {failure['what']} at {where} (learning rate {failure['learning_rate']:.3g}); {kept}; "
            "lower --learning-rate, enable --batch-norm or check the data",
            exit_code=3,
        )
    if budget_seconds and not run.state.get("finished"):
        raise ToolkitError(f"training stopped after epoch {run.state['epochs_completed']} before its budget was spent; resume with --resume {run.root}")
    if not budget_seconds and run.state["epochs_completed"] < config.epochs:
        raise ToolkitError(f"training stopped after epoch {run.state['epochs_completed']} of {config.epochs}; resume with --resume {run.root}")
    summary["wall_seconds_this_session"] = round(time.perf_counter() - started, 1)
    run.write_derived(card, summary)
    return run.root


def _data_changes(saved: dict[str, Any], labels: list[str], train_images: int, validation_images: int,
                  mean: list[float], std: list[float]) -> list[str]:
    """How the data a resumed run finds differs from what its config.json recorded (older runs record less)."""
    changes = []
    if "labels" in saved and saved["labels"] != labels:
        added, removed = sorted(set(labels) - set(saved["labels"])), sorted(set(saved["labels"]) - set(labels))
        changes.append("classes " + (", ".join([f"+{name}" for name in added] + [f"-{name}" for name in removed]) or "reordered"))
    for key, now in (("train_images", train_images), ("validation_images", validation_images)):
        if key in saved and saved[key] != now:
            changes.append(f"{key.replace('_', ' ')} {saved[key]} -> {now}")
    if not changes and any(
        key in saved and (len(saved[key]) != len(now) or not np.allclose(saved[key], now, rtol=0, atol=1e-6))
        for key, now in (("mean", mean), ("std", std))
    ):
        changes.append("the same number of images, but other pixels (mean/std differ)")
    return changes


def _schedule_description(config: TrainConfig, steps_per_epoch: int) -> dict[str, Any]:
    total_steps = config.epochs * steps_per_epoch
    if config.budget_seconds is not None or config.schedule == "linear":
        return {
            "name": config.schedule,
            "warmup_fraction": config.warmup_fraction,
            "by": "wall time" if config.budget_seconds is not None else "steps",
            "budget_seconds": config.budget_seconds,
            "total_steps": None if config.budget_seconds is not None else total_steps,
            "note": "linear warm-up over warmup_fraction of the run, then decay to zero at its end",
        }
    if config.schedule == "paper":
        return {
            "name": "paper",
            "milestone_epochs": paper_milestones(config.epochs),
            "factor": 0.1,
            "note": "the paper's x0.1 at epochs 200, 250, 300 of 350, scaled to this run's epochs",
        }
    return {
        "name": "cosine",
        "warmup_steps": warmup_steps_for(config.warmup_epochs, steps_per_epoch, total_steps),
        "total_steps": total_steps,
    }


__all__ = ["TrainConfig", "train"]
