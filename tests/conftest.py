"""Shared fixtures: the real default classifier and real photos shipped in installed packages."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

from advlib import data, models


@pytest.fixture(scope="session")
def classifier():
    torch.manual_seed(0)
    return models.load_classifier("efficientnet_lite0")


@pytest.fixture(scope="session")
def imagenet_samples():
    """The 20 labelled ImageNet validation samples of the foolbox wheel: (images, labels, items)."""
    items = [it for it in data.demo_items(1) if it.label_source == "imagenet"]
    images, ok, failures = data.read_images(items)
    assert not failures
    return images, torch.tensor([it.label for it in ok]), ok
