"""L-BFGS (Szegedy et al. 2014), our own: no library reaches p(target) >= 0.99 (see
:mod:`advlib.attacks`).

Takes float images ``x0`` (B, 3, H, W) in [0, 1] on the model's device and a
``check(idx, x, strength)`` callback (:data:`advlib.attacks.saving.Check`) that rounds the
candidates of images ``idx`` to 8 bits, saves and decodes them, and returns which now succeed
after saving (the paper's criterion and the reference label out of the top-5); those images are
not attacked again, the others go on at the next strength setting. Internal stops (``top_k``,
``top_ks``) look at the attack's own label only."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import Bounds, minimize
from torch import nn

from .saving import Check, overshoot_scan


def lbfgs(model: nn.Module, x0: torch.Tensor, targets: torch.Tensor, check: Check, *,
          consts: Sequence[float], maxiter: int, overshoots: Sequence[float]) -> None:
    """Szegedy et al. (2014): minimise ``c * CE(target) + ||x - x0||_2^2`` over the box [0, 1].

    One scipy L-BFGS-B run (at most ``maxiter`` iterations) over the whole batch (the sum of
    the per-image objectives is separable), for each ``c`` in the increasing list ``consts``,
    warm-started from the previous solution. The minimum-norm solution sits where JPEG's chroma
    subsampling undoes it, so each solution is then scaled by ``1 + overshoot`` for each
    overshoot in turn (:func:`overshoot_scan`); the strength is the pair ``(c, overshoot)``.
    Images that reach p(target) >= 0.99 after saving are dropped before the next ``c``.
    """
    x = x0.clone()
    idx = torch.arange(len(x0), device=x0.device)
    for c in consts:
        if idx.numel() == 0:
            return
        xs, ts, shape = x0[idx], targets[idx], x0[idx].shape

        def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
            xt = torch.from_numpy(z).view(shape).to(x0.device, torch.float32).requires_grad_(True)
            ce = F.cross_entropy(model(xt), ts, reduction="sum")
            loss = c * ce + (xt - xs).square().sum()
            (g,) = torch.autograd.grad(loss, xt)
            return float(loss.detach()), g.double().cpu().numpy().ravel()

        res = minimize(fun, x[idx].double().cpu().numpy().ravel(), jac=True, method="L-BFGS-B",
                       bounds=Bounds(0.0, 1.0), options={"maxiter": maxiter})
        x[idx] = torch.from_numpy(res.x).view(shape).to(x0.device, torch.float32)
        ok = torch.zeros(len(idx), dtype=torch.bool, device=idx.device)

        def check_c(sub: torch.Tensor, xc: torch.Tensor, o: float, c: float = c) -> torch.Tensor:
            res_ = check(idx[sub], xc, (c, o))
            ok[sub] |= res_.to(ok.device)
            return res_

        overshoot_scan(xs, x[idx], 0.0, overshoots, check_c)
        idx = idx[~ok]
