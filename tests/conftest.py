"""Shared fixtures: the real default classifier and real photos shipped in installed packages."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

from advlib import corpora, models


@pytest.fixture(scope="session")
def classifier():
    torch.manual_seed(0)
    return models.load_classifier("efficientnet_lite0")


@pytest.fixture(scope="session")
def imagenet_samples():
    """The 20 labelled ImageNet validation samples of the foolbox wheel: (images, labels, items)."""
    items = [it for it in corpora.demo_items(1) if it.label_source == "imagenet"]
    images, ok, failures = corpora.read_images(items)
    assert not failures
    return images, torch.tensor([it.label for it in ok]), ok


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: on 2 busy shared cores, OpenMP's second thread made small
    ops up to 100x slower (test_attacks: 824 s vs 47 s). Use with ``pytestmark``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
