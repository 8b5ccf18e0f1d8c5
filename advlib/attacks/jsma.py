"""JSMA (Papernot et al., EuroS&P 2016), non-targeted, our own batched pixel-pair version: the
libraries' versions stop at a top-1 change or do not fit 224x224x3 inputs.

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
from .saving import Check


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
            done = out_of_topk(logits.detach(), labels[active], k) | (changed[active].sum(1) >= budget)
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
