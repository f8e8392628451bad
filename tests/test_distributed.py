"""Beyond one device: two MultiWorkerMirroredStrategy workers on 127.0.0.1, and JAX data-parallel without TensorFlow."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import training.train  # noqa: F401 - registers the optimizer and schedules that load_model needs
from training.backend import keras

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


@pytest.mark.slow
def test_two_workers_finish_with_identical_weights(sample_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    command = [sys.executable, "-m", "toolkit", "train", "--strategy", "multiworker", "--data", str(sample_dir),
               "--width", "0.125", "--epochs", "1", "--batch-size", "16", "--out", str(run), "--no-progress"]  # fmt: skip
    workers = []
    for index in range(2):
        environment = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]

    chief = keras.models.load_model(run / "last.keras")
    other = keras.models.load_model(run / "worker-1" / "last.keras")
    steps = 270 // 16  # the global batch of 16 is split 8 + 8, so each worker runs every step
    assert int(keras.ops.convert_to_numpy(chief.optimizer.iterations)) == steps
    assert int(keras.ops.convert_to_numpy(other.optimizer.iterations)) == steps
    for left, right in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(left, right)
    assert json.loads((run / "metrics.json").read_text())["workers"] == 2


BLOCK_TENSORFLOW = """
import sys

class BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "tensorflow_model_optimization"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, BlockTensorFlow())
try:
    import tensorflow
except ImportError:
    print("tensorflow blocked")
from toolkit.cli import main
code = main(sys.argv[1:])
assert not any(name.split(".")[0] in ("tensorflow", "tf_keras") for name in sys.modules)
sys.exit(code)
"""


@pytest.mark.slow
def test_jax_backend_trains_without_tensorflow_on_two_devices(sample_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    environment = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    command = [sys.executable, "-c", BLOCK_TENSORFLOW, "train", "--data", str(sample_dir), "--width", "0.125",
               "--epochs", "1", "--batch-size", "16", "--out", str(run), "--no-progress", "--strategy", "data-parallel"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tensorflow blocked" in result.stdout
    assert (run / "best.keras").is_file() and (run / "best.card.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["replicas"] == 2 and metrics["epochs_completed"] == 1
