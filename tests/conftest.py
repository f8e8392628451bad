"""Shared fixtures: the committed real CIFAR-10 sample, temporary run folders."""

from __future__ import annotations

import os
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
def shared_cifar() -> Path:
    """The 50,000 shared CIFAR-10 JPEGs; tests that need them skip when they are absent."""
    if not SHARED_CIFAR.is_dir():
        pytest.skip("../shared/data/cifar10-jpeg is not present")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """One tiny trained All-CNN-C as run/best.keras and int8, uint8 and float32 .tflite, with cards (built once)."""
    from tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"), SAMPLE_DIR)


@pytest.fixture(scope="session")
def edge_int8_model(tiny_models: dict[str, Path]) -> Path:
    """The tiny model as int8 .tflite (int8 I/O) with its card."""
    return tiny_models["int8"]
