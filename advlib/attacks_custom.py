"""Own batched implementations of the attacks no library runs under the paper's criteria.

Used by :mod:`advlib.attacks` (see its table). Every function takes float images ``x0``
(B, 3, H, W) in [0, 1] on the model's device and a ``check(idx, x, strength)`` callback that
rounds ``x`` (the candidates for images ``idx``) to 8 bits, saves and decodes them, and returns
a bool tensor (len(idx),): which now succeed after saving (the paper's criterion and the
reference label out of the top-5; see :func:`advlib.attacks.run_attack`). Those images are not
attacked again; the others go on at the next strength setting. Every call is one logged attempt
per image. The internal stops here (``top_k``, ``top_ks``) look at the attack's own label only.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Check = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


def _out_of_topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """bool (B,): ``labels`` not among the ``k`` largest logits."""
    return ~(logits.topk(k, dim=1).indices == labels[:, None]).any(1)


def overshoot_scan(x0: torch.Tensor, x_adv: torch.Tensor, base: float, overshoots: Sequence[float],
                   check: Check) -> None:
    """Scale the perturbation ``x_adv - x0`` (found with overshoot ``base``) to each overshoot in turn.

    ``x0 + (1 + o) / (1 + base) * (x_adv - x0)``, clipped to [0, 1], is what a DeepFool-style
    attack run with overshoot ``o`` ends on: forward passes only, no new attack run.
    """
    pert = (x_adv - x0) / (1.0 + base)
    idx = torch.arange(len(x0), device=x0.device)
    for o in overshoots:
        if idx.numel() == 0:
            return
        ok = check(idx, (x0[idx] + (1.0 + o) * pert[idx]).clamp(0, 1), o)
        idx = idx[~ok.to(idx.device)]


# --------------------------------------------------------------------------- L-BFGS

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
    from scipy.optimize import Bounds, minimize

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


# --------------------------------------------------------------------------- NewtonFool

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
        done = _out_of_topk(logits.detach(), labels[active], top_k)
        gn = g.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = torch.minimum(stepsize * norm0[active] * gn, (p.detach() - 1.0 / n_classes).clamp_min(0))
        x[active] = (xi.detach() - (delta / gn**2)[:, None, None, None] * g).clamp(0, 1)
        active = active[~done]
    overshoot_scan(x0, x, 0.0, overshoots, check)


# --------------------------------------------------------------------------- ADef

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


# --------------------------------------------------------------------------- JSMA

def jsma(model: nn.Module, x0: torch.Tensor, labels: torch.Tensor, check: Check, *,
         top_ks: Sequence[int], candidates: int, pairs_per_step: int, competitors: int,
         max_fraction: float) -> None:
    """Non-targeted JSMA (Papernot et al., EuroS&P 2016), batched for 224x224x3 inputs.

    Features are pixels (all three colour values; single colour values do not survive JPEG's
    chroma subsampling); they are only increased, to white, each at most once. Per step: alpha = d p_label / dx and beta = d (sum of the ``competitors``
    largest other softmax probabilities) / dx, both times the room (1 - x) the feature has
    left; the ``candidates`` features with the largest single saliency -alpha*beta (alpha < 0,
    beta > 0) are paired, and the ``pairs_per_step`` disjoint pairs with alpha_p + alpha_q < 0,
    beta_p + beta_q > 0 and the largest -(alpha_p + alpha_q)(beta_p + beta_q) are set to 1. Runs until the label leaves the top-k
    (k from ``top_ks``, increasing) or ``max_fraction`` of the features have been changed.
    """
    B = len(x0)
    x = x0.clone()
    n_feat = x0[0, 0].numel()  # features are pixels (all three colour values together)
    budget = int(max_fraction * n_feat)
    changed = torch.zeros(B, n_feat, dtype=torch.bool, device=x0.device)
    upper = torch.triu(torch.ones(candidates, candidates, dtype=torch.bool, device=x0.device), 1)
    todo = torch.arange(B, device=x0.device)
    for k in top_ks:
        active = todo
        while active.numel():
            xi = x[active].clone().requires_grad_(True)
            logits = model(xi)
            probs = logits.softmax(1)
            rows = torch.arange(len(active), device=x0.device)
            others = probs.scatter(1, labels[active, None], 0).topk(competitors, dim=1).values
            alpha = torch.autograd.grad(probs[rows, labels[active]].sum(), xi, retain_graph=True)[0]
            beta = torch.autograd.grad(others.sum(), xi)[0]
            done = _out_of_topk(logits.detach(), labels[active], k) | (changed[active].sum(1) >= budget)
            room = 1 - xi.detach()
            a, b = (alpha * room).sum(1).flatten(1), (beta * room).sum(1).flatten(1)
            single = torch.where((a < 0) & (b > 0) & ~changed[active], -a * b, torch.zeros_like(a))
            cand = single.topk(candidates, dim=1).indices
            ac, bc = a.gather(1, cand), b.gather(1, cand)
            A, Bs = ac[:, :, None] + ac[:, None, :], bc[:, :, None] + bc[:, None, :]
            ok_c = single.gather(1, cand) > 0
            pair_ok = (A < 0) & (Bs > 0) & upper & ok_c[:, :, None] & ok_c[:, None, :]
            score = torch.where(pair_ok, -A * Bs, torch.zeros_like(A))
            flat = x[active].flatten(2)
            moved = torch.zeros_like(done)
            for _ in range(pairs_per_step):
                best, pos = score.flatten(1).max(1)
                p, q = pos // candidates, pos % candidates
                valid = (best > 0) & ~done
                moved |= valid
                r = rows[valid]
                for j in (p[valid], q[valid]):
                    feat = cand[r, j]
                    flat[r, :, feat] = 1.0
                    changed[active[r], feat] = True
                    score[r, j, :] = 0
                    score[r, :, j] = 0
            x[active] = flat.view_as(xi)
            active = active[~(done | ~moved)]  # stop where no pair qualifies any more
        if todo.numel() == 0:
            return
        ok = check(todo, x[todo], k)
        todo = todo[~ok.to(todo.device)]
