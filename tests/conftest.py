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
def edge_int8_model(tmp_path_factory) -> Path:
    """A tiny int8 All-CNN-C .tflite with its card, for the edge app tests (built with TF once per session)."""
    from edge_support import build_tiny_int8_model

    return build_tiny_int8_model(tmp_path_factory.mktemp("edge-model"), SAMPLE_DIR)
