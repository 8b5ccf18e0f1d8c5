"""The Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020), L-inf, on any loss.

A gradient-free attack: the check against gradient masking that Carlini et al. 2019 ("On
evaluating adversarial robustness") and Tramer et al. 2020 ask of every defence evaluated with
gradients. Written here rather than taken from a library because the maintained versions
(torchattacks' ``Square``, the authors' and AutoAttack's) optimise a classifier's own top-1
margin and cannot take the losses the adaptive attacks need (the top-5 criterion, a detector's
score, a correction's operations, all on the image as it will be saved). The algorithm is the
paper's Algorithm 1 with its L-inf proposal: an initial perturbation of vertical stripes of
+-eps, then per query one random square window (side from the paper's schedule of ``p``) set to
+-eps per channel, kept when the loss goes down. The loss is evaluated on the saved image
(8-bit rounding and, for ``jpeg``, the JPEG quality-100 round trip): what the defence will see.

It uses the ``value_and_grad`` losses of :mod:`advlib.attacks.adaptive` without gradients
(``need_grad=False``); an image whose ``ok`` is true (or, for losses without it, whose loss is
negative: the label is out of the top-5) stops querying. Cost: one evaluation of the loss per
image per query (for the losses of the adaptive attacks, ``1 + eot`` or ``detector.passes``
classifier forward passes, no backward pass).
"""

from __future__ import annotations

import numpy as np
import torch

from ..runtime import progress as progress_bar
from .pgd import ValueAndGrad

#: Iterations (on the paper's 10,000-query scale) at which the square's area fraction ``p`` halves.
P_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_selection(p_init: float, query: int, queries: int) -> float:
    """The area fraction of the square at ``query`` of ``queries`` (the authors' schedule,
    rescaled to 10,000 queries): ``p_init`` halved at each point of :data:`P_SCHEDULE` passed."""
    it = int(query / max(queries, 1) * 10000)
    return p_init / 2 ** sum(it > t for t in P_SCHEDULE)


def _ok(loss: torch.Tensor, ok: torch.Tensor | None) -> torch.Tensor:
    return (loss < 0) if ok is None else ok.bool()


def square(value_and_grad: ValueAndGrad, x0: torch.Tensor, labels: torch.Tensor, eps: float, *, queries: int,
           p_init: float = 0.05, gen: torch.Generator, progress: bool = False,
           desc: str = "square") -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """Square attack on float ``x0`` (n, 3, H, W) in [0, 1], minimising ``value_and_grad``'s loss
    within the L-inf ball of radius ``eps``.

    Returns ``(x, history (queries + 1, n), key (n,))`` like :func:`advlib.attacks.pgd._pgd`:
    the best loss after each query (per image) and the final key (loss minus 1e9 where ok).
    """
    n, c, h, w = x0.shape
    stripes = torch.randint(0, 2, (n, c, 1, w), generator=gen).to(x0) * 2 - 1
    delta = (eps * stripes).expand(n, c, h, w).clone()
    x_best = (x0 + delta).clamp(0, 1)
    loss, _, ok = value_and_grad(x_best, labels, False)
    best_loss, best_ok = loss.detach().float().clone(), _ok(loss, ok).clone()
    history = [best_loss.double().cpu().numpy()]
    for q in progress_bar(range(1, queries + 1), desc=desc, disable=not progress, leave=False):
        todo = torch.nonzero(~best_ok).flatten()
        if len(todo) == 0:
            history.append(history[-1])
            continue
        p = p_selection(p_init, q, queries)
        side = int(min(max(round(np.sqrt(p * h * w)), 1), h - 1))
        new_delta = delta[todo].clone()
        for j in range(len(todo)):
            vh = int(torch.randint(0, h - side + 1, (1,), generator=gen))
            vw = int(torch.randint(0, w - side + 1, (1,), generator=gen))
            signs = (torch.randint(0, 2, (c, 1, 1), generator=gen).to(x0) * 2 - 1) * eps
            new_delta[j, :, vh:vh + side, vw:vw + side] = signs
        x_new = (x0[todo] + new_delta).clamp(0, 1)
        loss, _, ok = value_and_grad(x_new, labels[todo], False)
        loss, ok = loss.detach().float(), _ok(loss, ok)
        better = (loss < best_loss[todo]) | (ok & ~best_ok[todo])
        idx = todo[better]
        delta[idx], x_best[idx] = new_delta[better], x_new[better]
        best_loss[idx], best_ok[idx] = loss[better], ok[better]
        history.append(best_loss.double().cpu().numpy())
    key = best_loss - 1e9 * best_ok.float()
    return x_best, np.stack(history), key
