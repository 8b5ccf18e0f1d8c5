"""ADef (Alaifari, Alberti and Gauksson, ICLR 2019), our own batched version for the top-k
criterion: no library's ADef reaches it.

Takes float images ``x0`` (B, 3, H, W) in [0, 1] on the model's device and a
``check(idx, x, strength)`` callback (:data:`advlib.attacks.saving.Check`) that rounds the
candidates of images ``idx`` to 8 bits, saves and decodes them, and returns which now succeed
after saving (the paper's criterion and the reference label out of the top-5); those images are
not attacked again, the others go on at the next strength setting. Internal stops (``top_k``,
``top_ks``) look at the attack's own label only."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .saving import Check


def _gaussian_kernel(sigma: float, device) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    k1 = torch.exp(-t**2 / (2 * sigma**2))
    k2 = torch.outer(k1, k1)
    return (k2 / k2.sum()).expand(2, 1, 2 * r + 1, 2 * r + 1)


def _smooth(field: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Gaussian smoothing of a (B, 2, H, W) vector field, reflected at the borders."""
    r = kernel.shape[-1] // 2
    return F.conv2d(F.pad(field, (r, r, r, r), mode="reflect"), kernel, groups=2)


def deform(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """``x(u + tau(u))``: images (B, C, H, W) deformed by vector fields tau (B, 2, H, W) in pixels
    (channel 0 horizontal, 1 vertical), bilinear, border pixels repeated."""
    B, _, H, W = x.shape
    ys = torch.linspace(-1, 1, H, device=x.device)
    xs = torch.linspace(-1, 1, W, device=x.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack((gx + tau[:, 0] * 2 / (W - 1), gy + tau[:, 1] * 2 / (H - 1)), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def adef(model: nn.Module, x0: torch.Tensor, labels: torch.Tensor, check: Check, *,
         top_ks: Sequence[int], max_iter: int, smooth: float, overshoot: float) -> None:
    """ADef (Alaifari, Alberti and Gauksson, ICLR 2019), batched, for the top-k criterion.

    Each step linearises ``f = z_k - z_label`` (z_k: the k-th largest other logit, so f > 0 iff
    the label is out of the top-k) in the vector field: with ``G(u) = sum_c df/dx_c(u) grad x_c(u)``
    and S the Gaussian filter (``smooth`` = sigma in pixels), the smallest smoothed field that
    reaches f = 0 is ``-f S(S G) / ||S G||^2``; it is multiplied by ``overshoot`` and added to the
    total field, which deforms the original image. For each internal stop k in ``top_ks`` the
    loop runs until the label leaves the top-k (at most ``max_iter`` steps), then the deformed
    images are checked after saving; failures go on with the next, larger k.
    """
    kernel = _gaussian_kernel(smooth, x0.device)
    tau = torch.zeros(len(x0), 2, *x0.shape[2:], device=x0.device)
    todo = torch.arange(len(x0), device=x0.device)
    for k in top_ks:
        active = todo
        for _ in range(max_iter):
            if active.numel() == 0:
                break
            xi = deform(x0[active], tau[active]).requires_grad_(True)
            logits = model(xi)
            others = logits.detach().scatter(1, labels[active, None], -math.inf)
            kth = others.topk(k, dim=1).indices[:, -1]
            rows = torch.arange(len(active), device=x0.device)
            f = logits[rows, kth] - logits[rows, labels[active]]
            (g,) = torch.autograd.grad(f.sum(), xi)
            keep = f.detach() <= 0
            dy, dx = torch.gradient(xi.detach(), dim=(2, 3))
            G = torch.stack(((g * dx).sum(1), (g * dy).sum(1)), dim=1)
            SG = _smooth(G, kernel)
            norm2 = SG.flatten(1).square().sum(1).clamp_min(1e-12)
            step = (-f.detach() / norm2)[:, None, None, None] * _smooth(SG, kernel)
            tau[active[keep]] += overshoot * step[keep]
            active = active[keep]
        if todo.numel() == 0:
            return
        ok = check(todo, deform(x0[todo], tau[todo]).clamp(0, 1), k)
        todo = todo[~ok.to(todo.device)]
