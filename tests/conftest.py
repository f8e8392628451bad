"""Shared fixtures (the committed real CIFAR-10 sample, the tiny test models) and the order the tests run in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "tests" / "data" / "cifar10-sample"
SHARED_CIFAR = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "train"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """300 real CIFAR-10 JPEGs (30 per class), committed so tests run on a fresh clone."""
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def sample_dataset(sample_dir: Path):
    """The committed sample, decoded once (read-only: the tests share it)."""
    from training.data import load_image_folder

    dataset = load_image_folder(sample_dir)
    dataset.images.setflags(write=False)
    dataset.labels.setflags(write=False)
    return dataset


@pytest.fixture(scope="session")
def shared_cifar() -> Path:
    """The 50,000 shared CIFAR-10 JPEGs; tests that need them skip when they are absent."""
    if not SHARED_CIFAR.is_dir():
        pytest.skip("../shared/data/cifar10-jpeg is not present")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def tiny_models(pytestconfig: pytest.Config) -> dict[str, Path]:
    """One tiny trained All-CNN-C as run/best.keras and int8, uint8 and float32 .tflite, with cards (built once)."""
    return pytestconfig.stash[TINY_MODELS].result()


@pytest.fixture(scope="session")
def edge_int8_model(tiny_models: dict[str, Path]) -> Path:
    """The tiny model as int8 .tflite (int8 I/O) with its card."""
    return tiny_models["int8"]


class TinyModelBuild:
    """tests/tiny_models.py running in a second process, started as soon as the tests are collected."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="tiny-models-"))
        self.log = self.directory / "build.log"
        environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT),
                       "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}  # one core, the tests keep the other
        with self.log.open("w") as log:
            command = [sys.executable, str(REPO_ROOT / "tests" / "tiny_models.py"), str(self.directory), str(SAMPLE_DIR)]
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)

    def result(self) -> dict[str, Path]:
        """The models' paths once the build has finished; a failed build fails every test that needs them."""
        from tiny_models import model_paths

        if self.process.wait() != 0:
            raise RuntimeError(f"building the tiny test models failed:\n{self.log.read_text()[-4000:]}")
        return model_paths(self.directory)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


TINY_MODELS = pytest.StashKey[TinyModelBuild]()


def _uses(item: pytest.Item, fixture: str) -> bool:
    """Whether ``item`` needs ``fixture``, directly or through another fixture."""
    return fixture in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that inspects test_compression's pipeline run (train, prune, QAT, convert, eval) is slow. The modules
    that use the tiny models run last: their second process builds them while the other modules run (2 cores)."""
    for item in items:
        if _uses(item, "pipeline_run"):
            item.add_marker(pytest.mark.slow)
    modules = {item.path for item in items if _uses(item, "tiny_models")}
    items.sort(key=lambda item: item.path in modules)  # stable: each module keeps its order and stays whole


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start building the tiny models when a selected test needs them (not for --collect-only)."""
    if not session.config.option.collectonly and any(_uses(item, "tiny_models") for item in session.items):
        session.config.stash[TINY_MODELS] = TinyModelBuild()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop a build that is still running (an interrupted session) and remove the models."""
    if TINY_MODELS in config.stash:
        config.stash[TINY_MODELS].close()
