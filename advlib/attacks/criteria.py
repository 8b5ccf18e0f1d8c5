"""The paper's success criteria: targeted p(target) >= 0.99, non-targeted the label out of the
top-5, and in both cases the reference label (the ground truth where known) out of the top-5."""

from __future__ import annotations

from typing import Any

import eagerpy as ep
import foolbox as fb
import numpy as np
import torch
from torch import nn

TOP_K = 5  # non-targeted: the original label must leave the top-5
TARGET_PROB = 0.99  # targeted: p(target) >= 0.99
TARGET_SHIFT = 100  # target = (top-1 + 100) mod 1000
N_CLASSES = 1000


class TopKMisclassification(fb.criteria.Misclassification):
    """Foolbox 3 criterion: adversarial when ``labels`` (B,) is not among the top-``k`` outputs.

    Subclasses ``Misclassification`` so that Foolbox's gradient attacks, DeepFool and C&W use
    the untargeted losses on ``labels``.
    """

    def __init__(self, labels: Any, k: int = TOP_K):
        super().__init__(labels)
        self.k = k

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"

    def __call__(self, perturbed, outputs):
        outputs_, restore_type = ep.astensor_(outputs)
        topk = outputs_.argsort(axis=-1)[:, -self.k:]
        is_adv = (topk == self.labels[:, None]).any(axis=-1).logical_not()
        return restore_type(is_adv)


class TargetedProbability(fb.criteria.TargetedMisclassification):
    """Foolbox 3 criterion: adversarial when softmax p(target) >= ``threshold`` (targets (B,))."""

    def __init__(self, target_classes: Any, threshold: float = TARGET_PROB):
        super().__init__(target_classes)
        self.threshold = threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"

    def __call__(self, perturbed, outputs):
        outputs_, restore_type = ep.astensor_(outputs)
        p = ep.softmax(outputs_, axis=-1)[range(len(outputs_)), self.target_classes]
        return restore_type(p >= self.threshold)


def target_labels(labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The paper's targets: ``(labels + 100) mod 1000`` (int64, same length)."""
    return (torch.as_tensor(labels, dtype=torch.long) + TARGET_SHIFT) % N_CLASSES

def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def out_of_topk(logits: torch.Tensor, labels: torch.Tensor, k: int = TOP_K) -> torch.Tensor:
    """bool (B,): ``labels`` (B,) not among the ``k`` largest of ``logits`` (B, C)."""
    return ~(logits.topk(k, dim=1).indices == labels[:, None]).any(1)


def success(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None,
             reference: torch.Tensor | None = None) -> torch.Tensor:
    """The combined success test on logits (B, C): the attack's criterion (targeted: softmax
    p(``targets``) >= 0.99; non-targeted: ``labels`` out of the top-5) AND, when given,
    ``reference`` (B,) out of the top-5. Returns bool (B,)."""
    if targets is None:
        ok = out_of_topk(logits, labels)
    else:
        ok = logits.softmax(1).gather(1, targets[:, None])[:, 0] >= TARGET_PROB
    return ok if reference is None else ok & out_of_topk(logits, reference)


def check_labels(name: str, labels: Any, n: int) -> torch.Tensor:
    """``labels`` as an int64 CPU tensor (n,) of class indices, or ValueError naming ``name``."""
    out = torch.as_tensor(labels, dtype=torch.long).cpu().clone()  # not an inference-mode tensor
    if out.shape != (n,) or (n and (out.min() < 0 or out.max() >= N_CLASSES)):
        raise ValueError(f"{name} must be {n} class indices in [0, {N_CLASSES}), got shape {tuple(out.shape)}")
    return out


@torch.no_grad()
def is_adversarial(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   targets: torch.Tensor | None = None, batch_size: int = 64,
                   reference: torch.Tensor | None = None) -> np.ndarray:
    """The paper's success test for images (B, 3, H, W) (uint8, or float in [0, 1]).

    Non-targeted (``targets=None``): ``labels`` (B,) is not in the top-5. Targeted: softmax
    probability of ``targets`` (B,) >= 0.99. In both cases ``reference`` (B,) (default:
    ``labels``) must not be in the top-5 either. Returns a bool array (B,).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if len(labels) != len(images) or (targets is not None and len(targets) != len(images)):
        raise ValueError(f"labels/targets must have {len(images)} entries, one per image")
    reference = labels if reference is None else reference
    if len(reference) != len(images):
        raise ValueError(f"reference must have {len(images)} entries, one per image")
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(images), batch_size):
        x = as_float(images[s:s + batch_size].to(device))
        t = None if targets is None else torch.as_tensor(targets[s:s + batch_size]).long().to(device)
        lab = torch.as_tensor(labels[s:s + batch_size]).long().to(device)
        ref = torch.as_tensor(reference[s:s + batch_size]).long().to(device)
        out.append(success(model(x), lab, t, ref).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=bool)
