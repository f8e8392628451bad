"""Training beyond one device: tf.distribute strategies on TensorFlow, keras.distribution on JAX (docs/training.md).

``batch_size`` is always the global batch; each replica gets ``batch_size / replicas``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Any, Callable, ContextManager

from toolkit.errors import ToolkitError
from training.backend import keras


@dataclasses.dataclass
class Distribution:
    """How this process takes part in training."""

    name: str  # one of training.train_config.STRATEGIES
    scope: Callable[[], ContextManager[Any]]  # build and compile the model inside it
    replicas: int = 1  # replicas that split each global batch
    worker_index: int = 0  # this process among the workers
    num_workers: int = 1  # processes training together
    strategy: Any = None  # the tf.distribute strategy, when there is one

    @property
    def is_chief(self) -> bool:
        """The worker that owns the run folder; the others write RUN/worker-<index>."""
        return self.worker_index == 0

    def prepare_model(self, model: Any, sample_batch: tuple[Any, Any]) -> None:
        """Build ``model``'s metrics and loss from one local batch before ``fit`` (tf.distribute only).

        Keras 3's TensorFlow trainer otherwise mean-reduces a whole distributed (x, y)
        batch across replicas just to learn its shapes, which MultiWorkerMirroredStrategy
        rejects ("Attempt to convert a value (PerReplica ...) to a Tensor").
        """
        if self.strategy is None:
            return
        with self.scope():
            model._symbolic_build(data_batch=sample_batch)
        model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
        if self.name == "multiworker":
            # Keras 3 then mean-reduces each step's logs across workers along axis 0, which
            # fails for scalars; hand it one-element vectors (the mean is the same).
            model.train_step = _with_vector_logs(model.train_step)
            model.test_step = _with_vector_logs(model.test_step)

    def close(self) -> None:
        """Undo global settings (keras.distribution) so later runs in this process start clean."""
        if self.name == "data-parallel":
            keras.distribution.set_distribution(None)


def _with_vector_logs(step: Callable[[Any], dict]) -> Callable[[Any], dict]:
    def step_with_vector_logs(data: Any) -> dict:
        return {name: keras.ops.reshape(value, (1,)) for name, value in step(data).items()}

    return step_with_vector_logs


def setup_distribution(name: str, backend: str) -> Distribution:
    """Create the strategy ``name`` (validated by TrainConfig) for ``backend``; call before any model or tensor exists."""
    if name == "none":
        return Distribution(name, contextlib.nullcontext)
    if name in ("mirrored", "multiworker"):
        if backend != "tensorflow":
            raise ToolkitError(f"--strategy {name} needs KERAS_BACKEND=tensorflow; on JAX use --strategy data-parallel")
        from training.tensorflow_stack import tf  # the one module allowed to import TensorFlow

        multiworker = name == "multiworker"
        worker_index, num_workers = _cluster_from_tf_config() if multiworker else (0, 1)
        strategy = tf.distribute.MultiWorkerMirroredStrategy() if multiworker else tf.distribute.MirroredStrategy()
        return Distribution(name, strategy.scope, strategy.num_replicas_in_sync, worker_index, num_workers, strategy)
    if backend != "jax":
        raise ToolkitError("--strategy data-parallel needs KERAS_BACKEND=jax; on TensorFlow use mirrored or multiworker")
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        keras.distribution.initialize()
    import jax

    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return Distribution("data-parallel", contextlib.nullcontext, len(devices), jax.process_index(), jax.process_count())


def _cluster_from_tf_config() -> tuple[int, int]:
    """(this worker's index, number of workers) from TF_CONFIG; the chief, if any, counts as index 0."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ToolkitError(
            '--strategy multiworker needs TF_CONFIG, e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    try:
        config = json.loads(raw)
        cluster = config["cluster"]
        task_type, task_index = config["task"]["type"], int(config["task"]["index"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ToolkitError(f"TF_CONFIG is not valid ({error}); it needs 'cluster' and 'task': {{'type', 'index'}}") from None
    num_workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    if task_type == "chief":
        return 0, num_workers
    if task_type != "worker":
        raise ToolkitError(f"TF_CONFIG task type {task_type!r} is not supported; use 'chief' or 'worker'")
    return task_index + (1 if cluster.get("chief") else 0), num_workers
