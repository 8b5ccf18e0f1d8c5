"""The PGD engine of the adaptive attacks (:mod:`advlib.attacks.adaptive`): budgets, projection,
steps, random starts, the C&W-style top-5 margin loss, and the rounding, saving and re-check of
every result (:class:`AdaptiveOutcome`).

Conventions as in the rest of advlib: images are uint8 (N, 3, H, W) in and out; a classifier is a
module taking float [0, 1] pixels (B, 3, H, W) and returning (B, 1000) logits; ``labels`` are the
reference labels (N,) the attack must push out of the top-5 (the paper's criterion); ``eps`` is
on the [0, 1] pixel scale (``8 / 255``); ``device`` is where the classifier runs (it is moved
there, as :func:`advlib.attacks.run_attack` does).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..runtime import progress as progress_bar
from ..store import as_saved, check_images, quantize
from .criteria import TOP_K, check_labels, is_adversarial
from .saving import perturbation_norms

NORMS = ("linf", "l2")
SAVE_FORMATS = ("jpeg", "png")


def saved_pixels(x: torch.Tensor, save_format: str) -> torch.Tensor:
    """What a file of ``x`` (float [0, 1], rounded to 8 bits) saved as ``save_format`` decodes
    to, as float [0, 1] on ``x``'s device (no gradient: the save is straight-through)."""
    u8 = quantize(x).cpu()
    if save_format == "jpeg":
        u8 = torch.stack([as_saved(im, "jpeg") for im in u8])
    return u8.to(device=x.device, dtype=x.dtype).div(255)


def top5_margin(logits: torch.Tensor, labels: torch.Tensor, kappa: float = 0.0, k: int = TOP_K) -> torch.Tensor:
    """C&W-style margin of the top-``k`` criterion, to minimise: float (N,).

    ``logits`` (N, C), ``labels`` (N,). The margin is the label's logit minus the ``k``-th largest
    other logit: negative exactly when the label is out of the top-``k``. Clipped below at
    ``-kappa``: no gradient once the label is ``kappa`` logits below the ``k``-th other class.
    """
    logits = logits.float()
    labels = torch.as_tensor(labels, dtype=torch.long, device=logits.device)
    if labels.is_inference():  # e.g. from advlib.models.predict_topk: not usable in autograd
        labels = labels.clone()
    ref = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf"))
    kth = others.topk(k, dim=1).values[:, k - 1]
    return (ref - kth).clamp(min=-float(kappa))


@dataclass
class AdaptiveOutcome:
    """Result of one adaptive attack on N images.

    ``adversarial``: uint8 (N, 3, H, W) CPU, the final iterate rounded to 8 bits (and, for L-inf,
    clipped to ``eps`` in whole 8-bit levels). ``saved``: uint8 (N, 3, H, W), what its file in
    ``save_format`` decodes to. ``success_saved``: bool (N,), the paper's criterion on the saved
    pixels (the reference label out of the top-5, :func:`advlib.attacks.is_adversarial`).
    ``linf``: int64 (N,) in 8-bit levels, ``l2``: float64 (N,) on the [0, 1] scale, both of
    ``adversarial`` minus the input. ``loss_history``: float64 (steps, N), the attack's loss at
    each evaluated iterate (EOT attacks: on that step's random operations). ``seconds``: wall
    time. ``params``: the settings. ``detector_score`` / ``detected``: for :func:`attack_detector`,
    the real detector's score of the saved file (float (N,)) and ``score >= threshold``.
    """

    attack: str
    adversarial: torch.Tensor
    saved: torch.Tensor
    success_saved: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    loss_history: np.ndarray
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    detector_score: np.ndarray | None = None
    detected: np.ndarray | None = None

    @property
    def evaded(self) -> np.ndarray | None:
        """bool (N,): fooled the classifier after saving and not detected (detector attacks only)."""
        return None if self.detected is None else self.success_saved & ~self.detected

    def subset(self, idx: np.ndarray) -> "AdaptiveOutcome":
        """The outcome of the images ``idx`` (int indices) only."""
        t = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        pick = lambda a: None if a is None else a[np.asarray(idx)]  # noqa: E731
        return AdaptiveOutcome(self.attack, self.adversarial[t], self.saved[t], self.success_saved[idx],
                               self.linf[idx], self.l2[idx], self.loss_history[:, idx], self.seconds,
                               dict(self.params), pick(self.detector_score), pick(self.detected))

    def replace(self, idx: np.ndarray, other: "AdaptiveOutcome") -> None:
        """Put ``other`` (an outcome of the images ``idx``, same steps) in their place; the wall
        times add up."""
        t = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        self.adversarial[t], self.saved[t] = other.adversarial, other.saved
        for name in ("success_saved", "linf", "l2", "detector_score", "detected"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None:
                mine[idx] = theirs
        self.loss_history[:, idx] = other.loss_history
        self.seconds += other.seconds


#: ``value_and_grad(x, labels, need_grad)`` -> (loss (n,), gradient (n, 3, H, W) or None, ok (n,) bool or None)
ValueAndGrad = Callable[[torch.Tensor, torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor | None,
                                                                  torch.Tensor | None]]


def check_budget(eps: float, steps: int, step_size: float | None, norm: str) -> float:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps must be a positive number (pixel scale [0, 1], e.g. 8 / 255), got {eps!r}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    size = 2.5 * eps / steps if step_size is None else step_size
    if not size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    return float(size)


def _project(x: torch.Tensor, x0: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``x`` projected onto the ``norm`` ball of radius ``eps`` around ``x0`` and onto [0, 1]."""
    d = x - x0
    if norm == "linf":
        d = d.clamp(-eps, eps)
    else:
        n = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        d = d * (eps / n).clamp(max=1.0).view(-1, 1, 1, 1)
    return (x0 + d).clamp(0, 1)


def _step(x: torch.Tensor, grad: torch.Tensor, size: float, norm: str) -> torch.Tensor:
    """One descent step (the losses are minimised)."""
    if norm == "linf":
        return x - size * grad.sign()
    n = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return x - size * grad / n


def _random_start(x0: torch.Tensor, eps: float, norm: str, gen: torch.Generator) -> torch.Tensor:
    if norm == "linf":
        d = (torch.rand(x0.shape, generator=gen) * 2 - 1) * eps
    else:
        d = torch.randn(x0.shape, generator=gen)
        r = torch.rand(len(x0), generator=gen) * eps
        d = d * (r / d.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    return _project(x0 + d.to(x0.device, x0.dtype), x0, eps, norm)


def _pgd(value_and_grad: ValueAndGrad, x0: torch.Tensor, labels: torch.Tensor, eps: float, *, steps: int,
         step_size: float, norm: str, random_start: bool, gen: torch.Generator, track_best: bool,
         progress: bool, desc: str) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """Projected gradient descent on ``value_and_grad`` from float ``x0`` (n, 3, H, W).

    Returns ``(x, history (steps + 1, n), key (n,))``: the loss at every iterate (the last one
    evaluated too) and the returned iterate's ``key`` (its loss, minus 1e9 where ``ok``: lower
    is better, what restarts compare). ``track_best``: return, per image, the iterate with ``ok``
    whose loss was lowest (else the lowest loss overall); otherwise the last iterate.
    """
    x = _random_start(x0, eps, norm, gen) if random_start else x0.clone()
    best, best_key = x.clone(), torch.full((len(x0),), float("inf"), device=x0.device)
    history = []
    key = best_key
    for t in progress_bar(range(steps + 1), desc=desc, disable=not progress, leave=False):
        last = t == steps
        loss, grad, ok = value_and_grad(x, labels, not last)
        history.append(loss.detach().double().cpu().numpy())
        key = loss.detach().float() - (1e9 * ok.float() if ok is not None else 0.0)
        if track_best:
            better = key < best_key
            best[better], best_key[better] = x[better], key[better]
        if last:
            break
        if not torch.isfinite(grad).all():
            raise FloatingPointError(f"{desc}: non-finite gradient at step {t}")
        x = _project(_step(x, grad, step_size, norm), x0, eps, norm)
    return (best, np.stack(history), best_key) if track_best else (x, np.stack(history), key)


def finish(name: str, classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, xs: list[torch.Tensor],
            histories: list[np.ndarray], eps: float, norm: str, save_format: str, start: float,
            params: dict[str, Any], batch_size: int) -> AdaptiveOutcome:
    """Round, clip to the budget in 8-bit levels (L-inf), save, re-check, measure."""
    adv = quantize(torch.cat(xs)).cpu()
    if norm == "linf":
        levels = math.floor(eps * 255 + 1e-6)
        ref = images.cpu().to(torch.int16)
        adv = torch.minimum(torch.maximum(adv.to(torch.int16), ref - levels), ref + levels).clamp(0, 255) \
            .to(torch.uint8)
    saved = torch.stack([as_saved(im, save_format) for im in adv]) if len(adv) else adv.clone()
    success = is_adversarial(classifier, saved, labels, batch_size=batch_size)
    l2, linf = perturbation_norms(adv, images)
    history = np.concatenate(histories, axis=1) if histories else np.zeros((0, 0))
    return AdaptiveOutcome(name, adv, saved, success, linf, l2, history, time.perf_counter() - start,
                           {"eps": eps, "norm": norm, "save_format": save_format, **params})


def run(name: str, classifier: nn.Module, images: torch.Tensor, labels: Any, eps: float, make_loss: Callable,
        *, steps: int, step_size: float | None, norm: str, random_start: bool, seed: int,
        device: str | torch.device, batch_size: int, save_format: str, track_best: bool, progress: bool,
        params: dict[str, Any], restarts: int = 1) -> AdaptiveOutcome:
    """Shared driver: checks, batches of ``batch_size``, seeding, :func:`_pgd` from ``restarts``
    random starts (the first as ``random_start`` says; per image the restart with the lowest final
    key wins: success first, then loss), :func:`finish`."""
    check_images(images)
    labels = check_labels("labels", labels, len(images))
    size = check_budget(eps, steps, step_size, norm)
    if save_format not in SAVE_FORMATS:
        raise ValueError(f"save_format must be one of {SAVE_FORMATS}, got {save_format!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not (isinstance(restarts, int) and restarts >= 1):
        raise ValueError(f"restarts must be an int >= 1, got {restarts!r}")
    start = time.perf_counter()
    device = torch.device(device)
    classifier = classifier.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    value_and_grad = make_loss(gen)
    xs, histories = [], []
    for s in range(0, len(images), batch_size):
        x0 = images[s:s + batch_size].to(device).float().div(255)
        lab = labels[s:s + batch_size].to(device)
        best_x, best_hist, best_key = None, None, None
        for r in range(restarts):
            x, hist, key = _pgd(value_and_grad, x0, lab, eps, steps=steps, step_size=size, norm=norm,
                                random_start=random_start or r > 0, gen=gen, track_best=track_best,
                                progress=progress, desc=f"{name} [{s}:{s + len(x0)}] restart {r}")
            if best_x is None:
                best_x, best_hist, best_key = x.detach(), hist, key
                continue
            better = (key < best_key).cpu()
            best_x[better] = x.detach()[better]
            best_hist[:, better.numpy()] = hist[:, better.numpy()]
            best_key = torch.where(better.to(key.device), key, best_key)
        xs.append(best_x)
        histories.append(best_hist)
    params = {"steps": steps, "step_size": size, "random_start": random_start, "restarts": restarts, "seed": seed,
              **params}
    return finish(name, classifier, images, labels, xs, histories, float(eps), norm, save_format, start, params,
                   batch_size)
