"""Adaptive attacks: the attacker knows the paper's corrections and its detector.

The paper (Nguyen et al., IEICE 2022) evaluates its detector and its corrections against attacks
that ignore them. Evaluating a detection or input-transformation defence needs the attacker who
does not (Carlini & Wagner 2017, "Adversarial examples are not easily detected: bypassing ten
detection methods", AISec; Athalye, Carlini & Wagner 2018, "Obfuscated gradients give a false
sense of security", ICML, for BPDA and EOT; Tramer, Carlini, Brendel & Madry 2020, "On adaptive
attacks to adversarial example defenses", NeurIPS). This module gives advlib that attacker.

Conventions as in the rest of advlib: images are uint8 (N, 3, H, W) in and out; a classifier is a
module taking float [0, 1] pixels (B, 3, H, W) and returning (B, 1000) logits; ``labels`` are the
reference labels (N,) the attack must push out of the top-5 (the paper's criterion); ``eps`` is
on the [0, 1] pixel scale (``8 / 255``); ``device`` is where the classifier runs (it is moved
there, as :func:`advlib.attacks.run_attack` does).

Differentiable operations (:func:`diff_op`, same names as :mod:`advlib.ops`), on float [0, 1]:

- JPEG, three gradients (``jpeg=``, :data:`JPEG_GRADIENTS`):

  * ``"bpda"``: the forward pass is the exact advlib JPEG (:func:`advlib.ops.apply` on the 8-bit
    rounding of the input: Pillow's libjpeg-turbo, bit for bit), the backward pass is the
    identity (straight-through, BPDA, Athalye et al. 2018);
  * ``"kornia"``: kornia's differentiable JPEG (``kornia.enhance.jpeg_codec_differentiable``,
    Reich et al. 2024 after Shin & Song 2017) at the same quality, forward and backward, its
    output rounded to 8 bits (straight-through). It is an approximation, not Pillow's codec: a
    float DCT and a polynomial rounding of the coefficients, ``round(c) + (c - round(c))^3``,
    in the forward pass too (libjpeg-turbo: integer "islow" DCT, hard rounding, 8-bit
    intermediate colour planes), chroma downsampled by antialiased bilinear rescaling and
    upsampled bilinearly (libjpeg-turbo: 2x2 averages, "fancy" triangular upsampling when
    decoding), and a smooth clipping to [0, 1]. Measured on a real 224x224 photo (foolbox's
    ImageNet sample 0, kornia 0.9.0; ``tests/test_adaptive.py`` prints it again): the mean
    absolute difference from the exact operation is 0.56 8-bit levels at quality 100, 1.1 to
    1.3 at 95 to 80 and 1.5 to 1.8 at 75 to 25, single pixels off by 5 (quality 100) to 30
    levels at sharp colour edges; the exact operation itself moves that photo by 1.1 (quality
    100) to 7.5 (quality 25) levels on average, so the approximation error is 0.38 (quality 90)
    to 0.25 (quality 25) of JPEG's own effect. The cubic rounding also scales the gradient
    down (mean |gradient| of a pixel sum 0.28 of the identity's at quality 50); PGD's sign
    steps do not mind;
  * ``"kornia_st"``: the exact forward pass with kornia's gradient (the gradient of an
    approximation of the codec instead of the identity).

- scaling and rotation: the exact nearest-neighbour gather through the same index tables as
  :mod:`advlib.ops` (``_index_table`` / ``_gather``): on 8-bit input the forward pass equals
  :func:`advlib.ops.apply` bit for bit and the gradient is exact (a scatter-add);
- Gaussian blur: the exact forward pass (Pillow's integer box blur) with the gradient of the same
  three box passes without their 8-bit rounding (straight-through).

Attacks (each returns an :class:`AdaptiveOutcome`; every adversarial is rounded to 8 bits, saved
(JPEG quality 100 by default, :func:`advlib.store.as_saved`) and re-checked from the saved pixels
with :func:`advlib.attacks.is_adversarial`, as notebook 01 does):

- :func:`attack_correction`: PGD with expectation over transformation against label correction
  and image correction (the vote over the 26 JPEG and scaling operations, or JPEG at the
  heuristic's quality). Each step draws ``eot`` of the correction's operations at random and
  averages the top-5 margin loss (:func:`top5_margin`) over them and the identity. The loss is
  taken on the image as it will be saved (JPEG-100 round trip, straight-through), so the
  operations see what the defence will see.
- :func:`attack_pgd`: the same PGD with the same budget, step size and loss but no EOT (the
  identity only): the non-adaptive baseline, written here rather than taken from Foolbox so that
  the only difference between the two is the EOT.
- :func:`attack_high_confidence`: :func:`attack_pgd` with a large margin ``kappa`` over the
  top-5 (the paper's intuition: confident adversarials survive the operations).
- :func:`attack_detector`: C&W-style, loss = top-5 margin + ``lam`` x hinge on the detector's
  score (keep it under the detector's threshold), through a torch copy of the detector
  (:func:`torch_estimator`: SVC of any kernel with its Platt scaling, LDA, logistic regression,
  MLP). Continuous features (``prob``, ``shift``) are computed exactly and differentiably; the
  paper's discrete ``count`` / ``diff`` features through a soft surrogate
  (:func:`surrogate_features`, :func:`surrogate_correlation`). For other estimators the detector
  part of the loss makes the features look like a clean image's (no label change, no shift).
  It returns the iterate that best meets both goals, judged with the real detector on the exact
  forward values.

Costs: one classifier forward and backward pass per image per step for :func:`attack_pgd`,
``1 + eot`` for :func:`attack_correction`, ``1 + len(detector.op_names)`` for
:func:`attack_detector`. On one CPU thread efficientnet_lite0 takes about 65 ms per pass and image.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import ops as _ops
from .attacks import TOP_K, _check_labels, is_adversarial, perturbation_norms, quantize
from .store import as_saved, check_images

__all__ = ["JPEG_GRADIENTS", "SURROGATES", "AdaptiveOutcome", "TorchEstimator", "attack_correction",
           "attack_detector", "attack_high_confidence", "attack_pgd", "detector_features", "diff_op",
           "surrogate_correlation", "surrogate_features", "top5_margin", "torch_estimator"]

#: Gradients of JPEG in :func:`diff_op` (see the module docstring).
JPEG_GRADIENTS = ("bpda", "kornia", "kornia_st")
#: Soft "label unchanged" for the discrete features (:func:`soft_unchanged`).
SURROGATES = ("rank", "prob")
NORMS = ("linf", "l2")
SAVE_FORMATS = ("jpeg", "png")


# --------------------------------------------------------------------------- differentiable operations

def _check_float(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4 or x.shape[1] != 3:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor (N, 3, H, W) of [0, 1] pixels, got {got}")
    return x


def _straight_through(surrogate: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """The value of ``exact`` with the gradient of ``surrogate`` (same shape)."""
    return surrogate + (exact.detach() - surrogate.detach())


def _round8(x: torch.Tensor) -> torch.Tensor:
    """``x`` on the 8-bit grid (values k / 255 in [0, 1]), identity gradient."""
    return _straight_through(x, x.detach().mul(255).round().clamp(0, 255).div(255))


def _exact(name: str, x: torch.Tensor) -> torch.Tensor:
    """Operation ``name`` of :mod:`advlib.ops` on the 8-bit rounding of ``x``, as float [0, 1]
    (no gradient), on ``x``'s device."""
    return _ops.apply(name, quantize(x)).to(device=x.device, dtype=x.dtype).div(255)


def _kornia_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    try:
        from kornia.enhance import jpeg_codec_differentiable
    except ImportError as e:  # pragma: no cover - kornia is a dependency of advlib
        raise ImportError("jpeg='kornia' needs kornia (pip install 'kornia>=0.7,<0.10')") from e
    q = torch.tensor([float(quality)], device=x.device, dtype=x.dtype)
    return jpeg_codec_differentiable(x, q)


def _diff_jpeg(x: torch.Tensor, quality: int, jpeg: str) -> torch.Tensor:
    if jpeg == "bpda":
        return _straight_through(x, _exact(_ops.jpeg_name(quality), x))
    approx = _kornia_jpeg(x, quality)
    if jpeg == "kornia":
        return _straight_through(approx, approx.detach().clamp(0, 1).mul(255).round().div(255))
    return _straight_through(approx, _exact(_ops.jpeg_name(quality), x))  # kornia_st


def _linear_box_pass(x: torch.Tensor, r: int, ww: int, fw: int) -> torch.Tensor:
    """``advlib.ops._box_pass`` (one Pillow box-blur pass along the last dim) without its
    rounding: a linear, differentiable map."""
    n = x.shape[-1]
    edge = (*x.shape[:-1], r + 1)
    padded = torch.cat([x[..., :1].expand(edge), x, x[..., -1:].expand(edge)], -1)
    c = padded.cumsum(-1)
    a, b = fw * 2.0 ** -24, (ww - fw) * 2.0 ** -24
    out = a * c[..., 2 * r + 2:] + b * (c[..., 2 * r + 1:-1] - c[..., :n])
    return out - a * F.pad(c[..., :n - 1], (1, 0))


def _linear_blur(x: torch.Tensor, radius: float, passes: int = 3) -> torch.Tensor:
    """Pillow's ``GaussianBlur(radius)`` (three horizontal then three vertical box passes)
    without the 8-bit rounding after each pass, on float (N, 3, H, W)."""
    r, ww, fw = _ops._box_weights(_ops._box_radius(radius, passes))
    for _ in range(passes):
        x = _linear_box_pass(x, r, ww, fw)
    x = x.transpose(-1, -2)
    for _ in range(passes):
        x = _linear_box_pass(x, r, ww, fw)
    return x.transpose(-1, -2)


def diff_op(name: str, x: torch.Tensor, jpeg: str = "bpda") -> torch.Tensor:
    """Operation ``name`` of :data:`advlib.ops.OPERATIONS` on float [0, 1] pixels (N, 3, H, W),
    differentiable; returns float (N, 3, H', W') on ``x``'s device (H', W' change for scaling).

    On an 8-bit input (``u8.float() / 255``) the forward pass equals ``ops.apply(name, u8) / 255``
    exactly for every operation, except JPEG with ``jpeg="kornia"`` (an approximation, see the
    module docstring). ``jpeg``: the JPEG gradient, one of :data:`JPEG_GRADIENTS`. Scaling and
    rotation are exact gathers (exact gradient); blur has the gradient of its unrounded box passes.
    """
    op = _ops._op(name)
    _check_float(x)
    if jpeg not in JPEG_GRADIENTS:
        raise ValueError(f"jpeg must be one of {JPEG_GRADIENTS}, got {jpeg!r}")
    if op.group == "jpeg":
        return _diff_jpeg(x, int(op.value), jpeg)
    if op.group in ("scaling", "rotation"):
        table = _ops._index_table(op.group, op.value, x.shape[2], x.shape[3], x.device)
        return _ops._gather(x, table)
    if op.group == "blur":
        return _straight_through(_linear_blur(x, float(op.value)), _exact(name, x))
    raise NotImplementedError(f"no differentiable version of operation group {op.group!r} ({name})")


def _saved_pixels(x: torch.Tensor, save_format: str) -> torch.Tensor:
    """What a file of ``x`` (float [0, 1], rounded to 8 bits) saved as ``save_format`` decodes
    to, as float [0, 1] on ``x``'s device (no gradient: the save is straight-through)."""
    u8 = quantize(x).cpu()
    if save_format == "jpeg":
        u8 = torch.stack([as_saved(im, "jpeg") for im in u8])
    return u8.to(device=x.device, dtype=x.dtype).div(255)


# --------------------------------------------------------------------------- losses

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


# --------------------------------------------------------------------------- results

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


# --------------------------------------------------------------------------- the PGD engine

#: ``value_and_grad(x, labels, need_grad)`` -> (loss (n,), gradient (n, 3, H, W) or None, ok (n,) bool or None)
ValueAndGrad = Callable[[torch.Tensor, torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor | None,
                                                                  torch.Tensor | None]]


def _check_budget(eps: float, steps: int, step_size: float | None, norm: str) -> float:
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
         progress: bool, desc: str) -> tuple[torch.Tensor, np.ndarray]:
    """Projected gradient descent on ``value_and_grad`` from float ``x0`` (n, 3, H, W).

    Returns ``(x, history (evaluations, n))``. ``track_best``: evaluate the final iterate too
    and return, per image, the iterate with ``ok`` whose loss was lowest (else the lowest loss
    overall); otherwise the last iterate.
    """
    from tqdm.auto import tqdm

    x = _random_start(x0, eps, norm, gen) if random_start else x0.clone()
    best, best_key = x.clone(), torch.full((len(x0),), float("inf"), device=x0.device)
    history = []
    for t in tqdm(range(steps + int(track_best)), desc=desc, disable=not progress, leave=False):
        last = t == steps
        loss, grad, ok = value_and_grad(x, labels, not last)
        history.append(loss.detach().double().cpu().numpy())
        if track_best:
            key = loss.detach().float() - (1e9 * ok.float() if ok is not None else 0.0)
            better = key < best_key
            best[better], best_key[better] = x[better], key[better]
        if last:
            break
        if not torch.isfinite(grad).all():
            raise FloatingPointError(f"{desc}: non-finite gradient at step {t}")
        x = _project(_step(x, grad, step_size, norm), x0, eps, norm)
    return (best if track_best else x), np.stack(history)


def _finish(name: str, classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, xs: list[torch.Tensor],
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


def _run(name: str, classifier: nn.Module, images: torch.Tensor, labels: Any, eps: float, make_loss: Callable,
         *, steps: int, step_size: float | None, norm: str, random_start: bool, seed: int,
         device: str | torch.device, batch_size: int, save_format: str, track_best: bool, progress: bool,
         params: dict[str, Any]) -> AdaptiveOutcome:
    """Shared driver: checks, batches of ``batch_size``, seeding, :func:`_pgd`, :func:`_finish`."""
    check_images(images)
    labels = _check_labels("labels", labels, len(images))
    size = _check_budget(eps, steps, step_size, norm)
    if save_format not in SAVE_FORMATS:
        raise ValueError(f"save_format must be one of {SAVE_FORMATS}, got {save_format!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    device = torch.device(device)
    classifier = classifier.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    value_and_grad = make_loss(gen)
    xs, histories = [], []
    for s in range(0, len(images), batch_size):
        x0 = images[s:s + batch_size].to(device).float().div(255)
        x, hist = _pgd(value_and_grad, x0, labels[s:s + batch_size].to(device), eps, steps=steps, step_size=size,
                       norm=norm, random_start=random_start, gen=gen, track_best=track_best, progress=progress,
                       desc=f"{name} [{s}:{s + len(x0)}]")
        xs.append(x.detach())
        histories.append(hist)
    params = {"steps": steps, "step_size": size, "random_start": random_start, "seed": seed, **params}
    return _finish(name, classifier, images, labels, xs, histories, float(eps), norm, save_format, start, params,
                   batch_size)


# --------------------------------------------------------------------------- attacks on the corrections

def _eot_loss(classifier: nn.Module, names: list[str], eot: int, jpeg: str, kappa: float,
              save_format: str) -> Callable[[torch.Generator], ValueAndGrad]:
    """EOT value-and-gradient: the mean :func:`top5_margin` over the identity and ``eot``
    operations of ``names`` drawn per step, on the saved image (straight-through save). The
    gradient is accumulated one operation at a time (one graph in memory)."""

    def make(gen: torch.Generator) -> ValueAndGrad:
        def value_and_grad(x, labels, need_grad):
            saved = _saved_pixels(x, save_format)
            picks = [] if eot == 0 or not names else \
                [names[i] for i in torch.randperm(len(names), generator=gen)[:eot].tolist()]
            total = torch.zeros(len(x), device=x.device)
            grad = torch.zeros_like(x) if need_grad else None
            for name in [None] + picks:
                with torch.set_grad_enabled(need_grad):
                    xs = saved.clone().requires_grad_(need_grad)
                    loss = top5_margin(classifier(xs if name is None else diff_op(name, xs, jpeg)), labels, kappa)
                    if need_grad:
                        grad += torch.autograd.grad(loss.sum(), xs)[0]
                total += loss.detach()
            n = 1 + len(picks)
            return total / n, (grad / n if need_grad else None), None

        return value_and_grad

    return make


def _op_names(ops: str | Sequence[str]) -> list[str]:
    try:
        return _ops.names_of(ops) if ops else []
    except KeyError as e:
        raise ValueError(f"ops: {e.args[0]}") from None


def attack_correction(classifier: nn.Module, images: torch.Tensor, labels: Any, eps: float, *, steps: int = 40,
                      step_size: float | None = None, ops: str | Sequence[str] = "jpeg+scaling", eot: int = 4,
                      jpeg: str = "bpda", kappa: float = 5.0, norm: str = "linf", random_start: bool = True,
                      seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 8,
                      save_format: str = "jpeg", progress: bool = False) -> AdaptiveOutcome:
    """EOT-PGD against label correction and image correction.

    Minimises, per step, the mean of :func:`top5_margin` (``labels`` out of the top-5 with
    margin ``kappa`` logits) over the saved image itself and ``eot`` operations drawn at random
    (without replacement, the same for the whole batch) from ``ops`` (group names of
    :data:`advlib.ops.GROUPS` and/or operation names; default the 26 that label correction
    votes over, which include every JPEG quality image correction can pick). ``jpeg``: the JPEG
    gradient (:data:`JPEG_GRADIENTS`). ``eps``: the budget in ``norm`` (``"linf"`` or ``"l2"``)
    on the [0, 1] scale; ``step_size`` defaults to ``2.5 * eps / steps`` (Madry et al.).
    ``images`` uint8 (N, 3, H, W), ``labels`` (N,) reference labels. Returns the last iterate,
    as an :class:`AdaptiveOutcome`; its ``loss_history`` (steps, N) is the EOT loss of each
    step's draw. Cost: ``1 + eot`` forward and backward passes per image per step.
    """
    names = _op_names(ops)
    if not (isinstance(eot, int) and eot >= 0):
        raise ValueError(f"eot must be an int >= 0 (operations drawn per step), got {eot!r}")
    if jpeg not in JPEG_GRADIENTS:
        raise ValueError(f"jpeg must be one of {JPEG_GRADIENTS}, got {jpeg!r}")
    eot = min(eot, len(names))
    name = "eot_pgd" if eot else "pgd"
    return _run(name, classifier, images, labels, eps, _eot_loss(classifier, names, eot, jpeg, kappa, save_format),
                steps=steps, step_size=step_size, norm=norm, random_start=random_start, seed=seed, device=device,
                batch_size=batch_size, save_format=save_format, track_best=False, progress=progress,
                params={"ops": names if eot else [], "eot": eot, "jpeg": jpeg, "kappa": kappa})


def attack_pgd(classifier: nn.Module, images: torch.Tensor, labels: Any, eps: float, *, steps: int = 40,
               step_size: float | None = None, kappa: float = 0.0, norm: str = "linf", random_start: bool = True,
               seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 8, save_format: str = "jpeg",
               progress: bool = False) -> AdaptiveOutcome:
    """The non-adaptive baseline: :func:`attack_correction`'s PGD (same loss on the saved image,
    step rule, projection, rounding and re-check) on the identity only, no EOT. One forward and
    backward pass per image per step."""
    return attack_correction(classifier, images, labels, eps, steps=steps, step_size=step_size, ops=(), eot=0,
                             kappa=kappa, norm=norm, random_start=random_start, seed=seed, device=device,
                             batch_size=batch_size, save_format=save_format, progress=progress)


def attack_high_confidence(classifier: nn.Module, images: torch.Tensor, labels: Any, eps: float, *,
                           kappa: float = 30.0, steps: int = 40, **kwargs: Any) -> AdaptiveOutcome:
    """High-confidence PGD: :func:`attack_pgd` with a large margin ``kappa`` (logits) between the
    reference label and the 5th other class, the simplest adaptive attack: the paper's own
    intuition says confident adversarial noise survives the operations. ``kwargs``: as
    :func:`attack_pgd`."""
    out = attack_pgd(classifier, images, labels, eps, steps=steps, kappa=kappa, **kwargs)
    out.attack = "high_confidence_pgd"
    return out


# --------------------------------------------------------------------------- the detector in torch

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "tanh": torch.tanh, "logistic": torch.sigmoid, "identity": lambda z: z}


class TorchEstimator:
    """A fitted binary scikit-learn estimator as differentiable torch functions (float64).

    ``decision(X)``: the estimator's ``decision_function`` (N,). ``score(X)``: what
    :func:`advlib.detect.detector_scores` returns (``predict_proba[:, 1]``, else the decision).
    ``logit(X)``: a smooth monotone stand-in of ``score`` on the logit scale (the attack's loss;
    for an SVC with probabilities its Platt sigmoid before libsvm's pairwise coupling, within
    about 0.003 of ``score``). ``threshold_logit(t)``: a score threshold on the scale of ``logit``.
    Build with :func:`torch_estimator`.
    """

    def __init__(self, decision: Callable[[torch.Tensor], torch.Tensor], probability: str | None,
                 platt: tuple[float, float] | None = None, name: str = ""):
        self._decision, self.probability, self.platt, self.name = decision, probability, platt, name

    def decision(self, X: torch.Tensor) -> torch.Tensor:
        return self._decision(X.double())

    def logit(self, X: torch.Tensor) -> torch.Tensor:
        d = self.decision(X)
        if self.probability == "platt":
            a, b = self.platt
            return b - a * d
        return d

    def score(self, X: torch.Tensor) -> torch.Tensor:
        if self.probability == "platt":
            a, b = self.platt
            return _libsvm_two_class(self.decision(X), a, b)
        if self.probability == "sigmoid":
            return torch.sigmoid(self.decision(X))
        return self.decision(X)

    def threshold_logit(self, threshold: float) -> float:
        if self.probability is None:
            return float(threshold)
        t = min(max(float(threshold), 1e-7), 1 - 1e-7)
        return math.log(t / (1 - t))

    def __repr__(self) -> str:
        return f"TorchEstimator({self.name}, probability={self.probability!r})"


def _libsvm_two_class(d: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """P(classes_[1]) of a binary libsvm SVC from sklearn's decision ``d`` (N,), as libsvm
    computes it: the Platt sigmoid of its own decision value (``-d``) clipped to [1e-7, 1 - 1e-7],
    then ``multiclass_probability``'s iterative coupling (stopping at error 0.005 / k), which
    for two classes is not exactly the sigmoid."""
    r01 = torch.sigmoid(a * d - b).clamp(1e-7, 1 - 1e-7)  # 1 / (1 + exp(A * dec_libsvm + B))
    r10 = 1 - r01
    q00, q11, q01 = r10 * r10, r01 * r01, -r10 * r01
    p0, p1 = torch.full_like(d, 0.5), torch.full_like(d, 0.5)
    eps = 0.005 / 2
    done = torch.zeros_like(d, dtype=torch.bool)
    for _ in range(100):
        qp0, qp1 = q00 * p0 + q01 * p1, q01 * p0 + q11 * p1
        pqp = p0 * qp0 + p1 * qp1
        done = done | (torch.maximum((qp0 - pqp).abs(), (qp1 - pqp).abs()) < eps)
        if bool(done.all()):
            break
        diff = (pqp - qp0) / q00  # t = 0
        n0, n1 = (p0 + diff) / (1 + diff), p1 / (1 + diff)
        pqp2 = (pqp + diff * (diff * q00 + 2 * qp0)) / (1 + diff) / (1 + diff)
        qp1b = (qp1 + diff * q01) / (1 + diff)
        diff = (pqp2 - qp1b) / q11  # t = 1
        n0, n1 = n0 / (1 + diff), (n1 + diff) / (1 + diff)
        p0, p1 = torch.where(done, p0, n0), torch.where(done, p1, n1)
    return p1


def _svc_decision(est: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    sv = torch.as_tensor(np.asarray(est.support_vectors_), dtype=torch.float64)
    coef = torch.as_tensor(np.asarray(est.dual_coef_)[0], dtype=torch.float64)
    b0 = float(np.asarray(est.intercept_)[0])
    gamma, coef0, degree = float(est._gamma), float(est.coef0), int(est.degree)
    kernel = est.kernel

    def decision(X: torch.Tensor) -> torch.Tensor:
        s = sv.to(X.device)
        if kernel == "rbf":
            k = torch.exp(-gamma * ((X * X).sum(1, keepdim=True) - 2 * X @ s.T + (s * s).sum(1)).clamp_min(0))
        elif kernel == "linear":
            k = X @ s.T
        elif kernel == "poly":
            k = (gamma * X @ s.T + coef0) ** degree
        else:  # sigmoid
            k = torch.tanh(gamma * X @ s.T + coef0)
        return k @ coef.to(X.device) + b0

    return decision


def _linear_decision(est: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    w = torch.as_tensor(np.asarray(est.coef_, dtype=np.float64).reshape(-1))
    b = float(np.asarray(est.intercept_).reshape(-1)[0])
    return lambda X: X @ w.to(X.device) + b


def _mlp_decision(est: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    ws = [torch.as_tensor(np.asarray(w, dtype=np.float64)) for w in est.coefs_]
    bs = [torch.as_tensor(np.asarray(b, dtype=np.float64)) for b in est.intercepts_]
    act = _ACTIVATIONS[est.activation]

    def decision(X: torch.Tensor) -> torch.Tensor:
        h = X
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = h @ w.to(X.device) + b.to(X.device)
            if i < len(ws) - 1:
                h = act(h)
        return h[:, 0]

    return decision


def torch_estimator(estimator: Any) -> TorchEstimator:
    """A fitted binary scikit-learn estimator as a :class:`TorchEstimator`.

    Supported: ``SVC`` (kernels rbf, linear, poly, sigmoid; ``gamma`` as fitted, ``_gamma``,
    so "auto" / "scale" are resolved; with ``probability=True`` the score is libsvm's Platt
    probability from ``probA_`` / ``probB_``), ``LinearDiscriminantAnalysis`` and
    ``LogisticRegression`` (linear decision, sigmoid probability) and ``MLPClassifier`` (its
    layers; logistic output). Anything else raises ``TypeError`` naming it.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    kind = type(estimator).__name__
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        raise ValueError(f"estimator {kind} is not fitted")
    if len(classes) != 2:
        raise ValueError(f"estimator {kind} has {len(classes)} classes; the detector is binary")
    if isinstance(estimator, SVC):
        if estimator.kernel not in ("rbf", "linear", "poly", "sigmoid"):
            raise TypeError(f"SVC kernel {estimator.kernel!r} has no torch version (rbf, linear, poly, sigmoid)")
        prob_a = np.asarray(getattr(estimator, "probA_", []))
        if estimator.probability and prob_a.size:
            platt = (float(prob_a[0]), float(np.asarray(estimator.probB_)[0]))
            return TorchEstimator(_svc_decision(estimator), "platt", platt, f"SVC({estimator.kernel})")
        return TorchEstimator(_svc_decision(estimator), None, None, f"SVC({estimator.kernel})")
    if isinstance(estimator, (LinearDiscriminantAnalysis, LogisticRegression)):
        return TorchEstimator(_linear_decision(estimator), "sigmoid", None, kind)
    if isinstance(estimator, MLPClassifier):
        if estimator.out_activation_ != "logistic":
            raise TypeError(f"MLPClassifier with output {estimator.out_activation_!r} is not a binary one")
        return TorchEstimator(_mlp_decision(estimator), "sigmoid", None, kind)
    raise TypeError(f"no torch version of estimator {kind} (supported: SVC, LinearDiscriminantAnalysis, "
                    f"LogisticRegression, MLPClassifier)")


# --------------------------------------------------------------------------- the detector's features in torch

def soft_unchanged(logits: torch.Tensor, logits0: torch.Tensor, ref: torch.Tensor, mode: str = "rank",
                   temperature: float = 0.25, candidates: int = 10) -> torch.Tensor:
    """Soft "the rank-r label is unchanged", float (N, n_ops, 5) in [0, 1]: the surrogate of the
    paper's discrete features (1 - this is the soft differences bit; its sum over operations
    the soft count).

    ``logits`` (N, n_ops, C) under the operations, ``logits0`` (N, C) of the image itself,
    ``ref`` (N, 5) its top-5 labels. ``mode``:

    - ``"rank"``: the soft rank of label ``l = ref[:, r]`` under each operation,
      ``sum_k sigmoid((z_k - z_l) / temperature)`` over the operation's top-``candidates``
      classes ``k != l`` (the others cannot be above a top-5 label; summing over all 1,000
      would add hundreds of small sigmoids), compared with ``r``: ``exp(-(soft_rank - r)^2 /
      0.25)``; tends to the exact bit as ``temperature`` -> 0.
    - ``"prob"``: the probability ratio, ``exp(-|log p_op(l) - log p(l)|)`` =
      ``min(p_op / p, p / p_op)`` (1 - the brief's "1 - p_op / p", made symmetric: a rank-r
      label also leaves its rank when its probability rises).

    Measured (:func:`surrogate_correlation`, efficientnet_lite0, 12 foolbox ImageNet photos and
    their 10 FGSM adversarials, operations jpeg_90, jpeg_70, scale_0.80): Pearson correlation
    with the real count / diff features 0.92 / 0.86 for ``"rank"`` at temperature 0.25 (the
    default), 0.82 / 0.69 at 0.5, 0.63 / 0.47 at 1.0; 0.57 / 0.41 for ``"prob"``.
    """
    if mode not in SURROGATES:
        raise ValueError(f"mode must be one of {SURROGATES}, got {mode!r}")
    n, n_ops, _ = logits.shape
    idx = ref[:, None, :].expand(n, n_ops, ref.shape[1])
    if mode == "prob":
        lp = logits.float().log_softmax(-1).gather(2, idx)
        lp0 = logits0.float().log_softmax(-1).gather(1, ref)[:, None, :]
        return torch.exp(-(lp - lp0).abs())
    z = logits.float()
    top = z.detach().topk(candidates, dim=2).indices  # (N, n_ops, K)
    zk = z.gather(2, top)  # (N, n_ops, K)
    zl = z.gather(2, idx)  # (N, n_ops, 5)
    above = torch.sigmoid((zk[:, :, None, :] - zl[..., None]) / temperature)  # (N, n_ops, 5, K)
    self_term = (top[:, :, None, :] == idx[..., None])
    soft_rank = above.masked_fill(self_term, 0.0).sum(-1)
    r = torch.arange(ref.shape[1], device=z.device, dtype=z.dtype)
    return torch.exp(-(soft_rank - r) ** 2 / 0.25)


def _assemble(detector: Any, unchanged: torch.Tensor, stats: torch.Tensor | None) -> torch.Tensor:
    """The detector's feature vector (N, d) from per-operation values, laid out as
    :meth:`advlib.Detector.features` lays it out (``unchanged`` (N, n_ops, 5) for count / diff,
    ``stats`` (N, n_ops, 2) prob and shift for the continuous kinds)."""
    from . import features as _features

    kind = detector.feature
    if kind in _features.CONTINUOUS_KINDS:
        cols = [_features.STATS.index(k) for k in kind.split("+")]
        return stats[:, :, cols].reshape(len(stats), -1)
    if kind == "diff":
        return (1 - unchanged).reshape(len(unchanged), -1)
    if detector.group is None:  # counted over all the operations together
        return unchanged.sum(1)
    groups = [_ops.OPERATIONS[n].group for n in detector.op_names]
    bases = list(dict.fromkeys(_ops.OPERATIONS[n].group for n in _ops.GROUPS[detector.group]))
    parts = [unchanged[:, [i for i, g in enumerate(groups) if g == b]].sum(1) for b in bases]
    return torch.cat(parts, dim=1)


def _op_logits(model: nn.Module, x: torch.Tensor, names: list[str], jpeg: str, checkpoint: bool) -> torch.Tensor:
    """Logits (N, n_ops, C) of ``model`` under each operation of ``names`` (differentiable;
    ``checkpoint``: recompute each operation's forward pass in the backward pass instead of
    keeping its activations)."""
    out = []
    for name in names:
        fn = (lambda v, name=name: model(diff_op(name, v, jpeg)).float())
        if checkpoint and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint as ckpt

            out.append(ckpt(fn, x, use_reentrant=False))
        else:
            out.append(fn(x))
    return torch.stack(out, 1)


def detector_features(detector: Any, x: torch.Tensor, *, logits0: torch.Tensor | None = None, jpeg: str = "bpda",
                      surrogate: str = "rank", temperature: float = 0.25, checkpoint: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The detector's features of float [0, 1] images ``x`` (N, 3, H, W), in torch.

    Returns ``(soft, hard)``, both float (N, d) in :meth:`advlib.Detector.features`' layout.
    ``hard`` (no gradient) are the real features, computed from the same forward passes: on
    8-bit ``x`` (and ``jpeg`` "bpda" or "kornia_st") they equal ``detector.features`` (to float
    rounding). ``soft`` is differentiable: the same values for the continuous features
    (``prob``: softmax probability of the image's own top-1 label after each operation;
    ``shift``: L1 distance between the softmax vectors after and before), the
    :func:`soft_unchanged` surrogate (``surrogate``, ``temperature``) for ``count`` / ``diff``.
    ``logits0``: the detector classifier's logits of ``x`` if already computed (with their graph).
    """
    from . import features as _features

    model = detector.classifier
    logits0 = model(x).float() if logits0 is None else logits0.float()
    lo = _op_logits(model, x, list(detector.op_names), jpeg, checkpoint)
    if detector.feature in _features.CONTINUOUS_KINDS:
        stats = _features.softmax_stats(logits0.softmax(1), lo.softmax(2), logits0.detach().argmax(1))
        soft = _assemble(detector, None, stats)
        return soft, soft.detach()
    ref = logits0.detach().topk(TOP_K, dim=1).indices
    same = (lo.detach().topk(TOP_K, dim=2).indices == ref[:, None, :]).float()
    soft = _assemble(detector, soft_unchanged(lo, logits0, ref, surrogate, temperature), None)
    return soft, _assemble(detector, same, None)


def surrogate_features(classifier: nn.Module, images: torch.Tensor, detector: Any, *, surrogate: str = "rank",
                       temperature: float = 0.25, jpeg: str = "bpda", device: str | torch.device = "cpu",
                       batch_size: int = 8) -> np.ndarray:
    """The differentiable stand-in of ``detector``'s features of uint8 ``images`` (N, 3, H, W):
    float64 (N, d), laid out as ``detector.features(images)`` (see :func:`detector_features`;
    the continuous features are exact, ``count`` / ``diff`` the soft surrogate). The passes use
    ``classifier`` (normally ``detector.classifier``), moved to ``device``."""
    check_images(images)
    classifier = classifier.to(device).eval()
    proxy = _DetectorView(detector, classifier)
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = images[s:s + batch_size].to(device).float().div(255)
            out.append(detector_features(proxy, x, jpeg=jpeg, surrogate=surrogate,
                                         temperature=temperature)[0].double().cpu())
    d = out[0].shape[1] if out else 0
    return torch.cat(out).numpy() if out else np.zeros((0, d))


@dataclass
class _DetectorView:
    """A detector's feature layout (``feature``, ``group``, ``op_names``) with another classifier."""

    detector: Any
    classifier: nn.Module

    def __getattr__(self, name: str) -> Any:
        return getattr(self.detector, name)


def surrogate_correlation(classifier: nn.Module, images: torch.Tensor, detector: Any, **kwargs: Any
                          ) -> dict[str, float]:
    """How well the surrogate tracks the real features on ``images`` (uint8 (N, 3, H, W)):
    Pearson and Spearman correlation between :func:`surrogate_features` and
    ``detector.features(images)`` over all N x d values. Returns ``{"pearson", "spearman",
    "n_values", "mean_abs_diff"}`` (correlations NaN when either side is constant). ``kwargs``:
    as :func:`surrogate_features`."""
    from scipy import stats

    real = np.asarray(detector.features(images), dtype=np.float64).ravel()
    sur = surrogate_features(classifier, images, detector, **kwargs).ravel()
    if real.shape != sur.shape:
        raise RuntimeError(f"surrogate has {sur.size} values, the detector's features {real.size}")
    constant = real.std() == 0 or sur.std() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pearson = float("nan") if constant else float(stats.pearsonr(real, sur)[0])
        spearman = float("nan") if constant else float(stats.spearmanr(real, sur)[0])
    return {"pearson": pearson, "spearman": spearman, "n_values": int(real.size),
            "mean_abs_diff": float(np.abs(real - sur).mean()) if real.size else float("nan")}


# --------------------------------------------------------------------------- attack on the detector

def _clean_looking(detector: Any, soft: torch.Tensor) -> torch.Tensor:
    """Estimator-free detector loss (N,) in [0, 1] from :func:`detector_features`' ``soft``
    (N, d): how unlike a clean image's the features are. A clean image keeps its labels and its
    softmax under the operations: ``count`` / ``diff``, the mean soft label change; ``prob``,
    the mean of 1 - prob; ``shift``, the mean shift / 2 (an L1 distance of softmax vectors is
    at most 2); ``prob+shift``, the mean of both."""
    kind, n_ops = detector.feature, len(detector.op_names)
    if kind == "diff":
        return soft.mean(1)
    if kind == "count":
        return 1 - soft.sum(1) / (TOP_K * n_ops)
    stats = soft.view(len(soft), n_ops, -1)
    parts = {"prob": lambda v: 1 - v, "shift": lambda v: v / 2}
    return torch.stack([parts[k](stats[..., i]) for i, k in enumerate(kind.split("+"))], -1).mean((1, 2))


def attack_detector(classifier: nn.Module, detector: Any, images: torch.Tensor, labels: Any, eps: float, *,
                    steps: int = 40, step_size: float | None = None, lam: float = 1.0, kappa: float = 0.0,
                    det_margin: float = 1.0, detector_loss: str = "auto", surrogate: str = "rank",
                    temperature: float = 0.25, jpeg: str = "bpda", norm: str = "linf", random_start: bool = True,
                    seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 8,
                    save_format: str = "jpeg", checkpoint: bool | None = None,
                    progress: bool = False) -> AdaptiveOutcome:
    """C&W-style PGD against a fitted :class:`advlib.Detector`: fool the classifier and stay
    under the detector's threshold, both on the saved file.

    Loss per image (minimised): ``top5_margin(logits, labels, kappa) + lam * relu(z - t + det_margin)``
    where ``z`` is the detector's score on the logit scale and ``t`` its threshold there
    (:class:`TorchEstimator`), the features computed by :func:`detector_features` on the image
    as saved (straight-through), ``jpeg`` the JPEG gradient. ``detector_loss``: ``"estimator"``
    (:func:`torch_estimator` of ``detector.estimator_``), ``"features"`` (no estimator: make the
    features look like a clean image's, ``_clean_looking``: no label change under the
    operations, no probability shift), ``"auto"`` (the estimator when it has a torch version,
    e.g. not a random forest). With a fixed ``lam`` (no binary search over it, unlike C&W),
    the returned iterate is, per image,
    the one with the lowest loss among those that fool the classifier (``labels`` out of the
    top-5) and score under the threshold with the real detector on the exact forward values,
    else the lowest loss. ``checkpoint`` (default: more than 8 operations): recompute each
    operation's forward pass in the backward pass to bound memory. Cost per step: ``1 +
    len(detector.op_names)`` forward and backward passes per image. The outcome has the real
    ``detector.score`` of the saved adversarials (``detector_score``, ``detected``).
    """
    if detector_loss not in ("auto", "estimator", "features"):
        raise ValueError(f"detector_loss must be 'auto', 'estimator' or 'features', got {detector_loss!r}")
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    if jpeg not in JPEG_GRADIENTS:
        raise ValueError(f"jpeg must be one of {JPEG_GRADIENTS}, got {jpeg!r}")
    est = detector._fitted()
    head = None
    if detector_loss != "features":
        try:
            head = torch_estimator(est)
        except TypeError:
            if detector_loss == "estimator":
                raise
    from . import detect, features as _features

    continuous = detector.feature in _features.CONTINUOUS_KINDS
    det_model = detector.classifier.to(device).eval()
    same_model = det_model is classifier
    checkpoint = len(detector.op_names) > 8 if checkpoint is None else checkpoint
    thr_z = head.threshold_logit(detector.threshold) if head is not None else None

    def make(gen: torch.Generator) -> ValueAndGrad:
        def value_and_grad(x, labels, need_grad):
            with torch.set_grad_enabled(need_grad):
                xs = _saved_pixels(x, save_format).requires_grad_(need_grad)
                logits = classifier(xs).float()
                soft, hard = detector_features(detector, xs, logits0=logits if same_model else None, jpeg=jpeg,
                                               surrogate=surrogate, temperature=temperature, checkpoint=checkpoint)
                if head is not None:
                    det = F.relu(head.logit(soft).float() - thr_z + det_margin)
                else:
                    det = _clean_looking(detector, soft)
                loss = top5_margin(logits, labels, kappa) + lam * det
                grad = torch.autograd.grad(loss.sum(), xs)[0] if need_grad else None
            fooled = ~(logits.detach().topk(TOP_K, dim=1).indices == labels[:, None]).any(1)
            scores = detect.detector_scores(est, hard.double().cpu().numpy())
            under = torch.from_numpy(scores < detector.threshold).to(x.device)
            return loss.detach(), grad, fooled & under

        return value_and_grad

    out = _run("detector_pgd", classifier, images, labels, eps, make, steps=steps, step_size=step_size, norm=norm,
               random_start=random_start, seed=seed, device=device, batch_size=batch_size, save_format=save_format,
               track_best=True, progress=progress,
               params={"lam": lam, "kappa": kappa, "det_margin": det_margin, "jpeg": jpeg,
                       "detector_loss": "estimator" if head is not None else "features",
                       "surrogate": None if continuous else surrogate, "temperature": temperature,
                       "detector": repr(detector)})
    out.detector_score = detector.score(out.saved)
    out.detected = out.detector_score >= detector.threshold
    return out
