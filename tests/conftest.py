"""Shared fixtures. The real MNIST comes through the same fetch as `make train` (cached)."""
import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def mnist():
    from lenet_edge.data import load_mnist
    return load_mnist(verbose=False)
