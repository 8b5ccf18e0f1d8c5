"""Shared fixtures: the real default classifier and real photos shipped in installed packages."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import math

import numpy as np
import pytest
import torch

from advlib import corpora, models


#: How far a float32 output of order 1 (a probability, an L1 distance between softmax vectors, a
#: detector's score) may move when the same image is classified in a batch of another
#: composition, on another thread count or CPU code path: the reductions run in another order.
#: A reduction of n terms reordered differs by about sqrt(n) float32 epsilons (Higham), and the
#: classifier chains about 50 layers whose reductions have at most 1,280 terms (its last layer),
#: so 50 * sqrt(1280) * eps = 2.1e-4 bounds it; differences of 2e-6 were seen between CPUs, a bug
#: moves scores by 1e-2 or more.
FLOAT32_ATOL = 50 * math.sqrt(1280) * float(np.finfo(np.float32).eps)


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
