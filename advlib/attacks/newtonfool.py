"""NewtonFool (Jang et al. 2017), our own batched version: Foolbox 3's stops at the first top-1
change whatever the criterion.

Takes float images ``x0`` (B, 3, H, W) in [0, 1] on the model's device and a
``check(idx, x, strength)`` callback (:data:`advlib.attacks.saving.Check`) that rounds the
candidates of images ``idx`` to 8 bits, saves and decodes them, and returns which now succeed
after saving (the paper's criterion and the reference label out of the top-5); those images are
not attacked again, the others go on at the next strength setting. Internal stops (``top_k``,
``top_ks``) look at the attack's own label only."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .criteria import out_of_topk
from .saving import Check, overshoot_scan


def newtonfool(model: nn.Module, x0: torch.Tensor, labels: torch.Tensor, check: Check, *,
               steps: int, stepsize: float, overshoots: Sequence[float], top_k: int = 5) -> None:
    """Jang et al. (2017), batched: Newton steps that lower the softmax score of the label.

    Step i: ``delta = min(eta * ||x0|| * ||grad||, p_label - 1/K)``, ``x -= delta * grad / ||grad||^2``,
    until the label has left the top-``top_k`` (Foolbox 3's version stops at the first top-1
    change whatever the criterion). The result is then scaled by ``1 + overshoot`` for each
    overshoot in turn (:func:`overshoot_scan`).
    """
    x = x0.clone()
    norm0 = x0.flatten(1).norm(dim=1)
    active = torch.arange(len(x0), device=x0.device)
    for _ in range(steps):
        if active.numel() == 0:
            break
        xi = x[active].clone().requires_grad_(True)
        logits = model(xi)
        n_classes = logits.shape[1]
        p = logits.softmax(1)[torch.arange(len(active), device=x0.device), labels[active]]
        (g,) = torch.autograd.grad(p.sum(), xi)
        done = out_of_topk(logits.detach(), labels[active], top_k)
        gn = g.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = torch.minimum(stepsize * norm0[active] * gn, (p.detach() - 1.0 / n_classes).clamp_min(0))
        x[active] = (xi.detach() - (delta / gn**2)[:, None, None, None] * g).clamp(0, 1)
        active = active[~done]
    overshoot_scan(x0, x, 0.0, overshoots, check)
