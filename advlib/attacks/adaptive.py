"""Adaptive attacks: the attacker knows the paper's corrections and its detector.

The paper (Nguyen et al., IEICE 2022) evaluates its detector and its corrections against attacks
that ignore them. Evaluating a detection or input-transformation defence needs the attacker who
does not (Carlini & Wagner 2017, "Adversarial examples are not easily detected: bypassing ten
detection methods", AISec; Athalye, Carlini & Wagner 2018, "Obfuscated gradients give a false
sense of security", ICML, for BPDA and EOT; Tramer, Carlini, Brendel & Madry 2020, "On adaptive
attacks to adversarial example defenses", NeurIPS). This module gives advlib that attacker, on
the PGD engine of :mod:`advlib.attacks.pgd` and the differentiable operations of
:func:`advlib.ops.diff_op` (JPEG through BPDA or kornia's differentiable JPEG, exact gathers for
scaling and rotation, blur with the gradient of its unrounded box passes).

Attacks (each returns an :class:`~advlib.attacks.pgd.AdaptiveOutcome`; every adversarial is
rounded to 8 bits, saved (JPEG quality 100 by default, :func:`advlib.store.as_saved`) and
re-checked from the saved pixels with :func:`advlib.attacks.is_adversarial`, as notebook 01 does):
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
  (:func:`advlib.detect.differentiable.torch_estimator`: SVC of any kernel with its Platt scaling, LDA, logistic regression,
  MLP). Continuous features (``prob``, ``shift``) are computed exactly and differentiably; the
  paper's discrete ``count`` / ``diff`` features through a soft surrogate
  (:func:`advlib.detect.differentiable.surrogate_features`, :func:`~advlib.detect.differentiable.surrogate_correlation`). For other estimators the detector
  part of the loss makes the features look like a clean image's (no label change, no shift).
  It returns the iterate that best meets both goals, judged with the real detector on the exact
  forward values.

Costs: one classifier forward and backward pass per image per step for :func:`attack_pgd`,
``1 + eot`` for :func:`attack_correction`, ``1 + len(detector.op_names)`` for
:func:`attack_detector`. On one CPU thread efficientnet_lite0 takes about 65 ms per pass and image.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import detect, features
from .. import ops as _ops
from ..detect.differentiable import SURROGATES, detector_features, torch_estimator
from .criteria import TOP_K
from .pgd import AdaptiveOutcome, ValueAndGrad, run, saved_pixels, top5_margin

__all__ = ["attack_correction", "attack_detector", "attack_high_confidence", "attack_pgd"]


def _eot_loss(classifier: nn.Module, names: list[str], eot: int, jpeg: str, kappa: float,
              save_format: str) -> Callable[[torch.Generator], ValueAndGrad]:
    """EOT value-and-gradient: the mean :func:`top5_margin` over the identity and ``eot``
    operations of ``names`` drawn per step, on the saved image (straight-through save). The
    gradient is accumulated one operation at a time (one graph in memory)."""

    def make(gen: torch.Generator) -> ValueAndGrad:
        def value_and_grad(x, labels, need_grad):
            saved = saved_pixels(x, save_format)
            picks = [] if eot == 0 or not names else \
                [names[i] for i in torch.randperm(len(names), generator=gen)[:eot].tolist()]
            total = torch.zeros(len(x), device=x.device)
            grad = torch.zeros_like(x) if need_grad else None
            for name in [None] + picks:
                with torch.set_grad_enabled(need_grad):
                    xs = saved.clone().requires_grad_(need_grad)
                    loss = top5_margin(classifier(xs if name is None else _ops.diff_op(name, xs, jpeg)), labels, kappa)
                    if need_grad:
                        grad += torch.autograd.grad(loss.sum(), xs)[0]
                total += loss.detach()
            n = 1 + len(picks)
            return total / n, (grad / n if need_grad else None), None

        return value_and_grad

    return make


def _op_names(groups: str | Sequence[str]) -> list[str]:
    try:
        return _ops.names_of(groups) if groups else []
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
    gradient (:data:`advlib.ops.JPEG_GRADIENTS`). ``eps``: the budget in ``norm`` (``"linf"`` or ``"l2"``)
    on the [0, 1] scale; ``step_size`` defaults to ``2.5 * eps / steps`` (Madry et al.).
    ``images`` uint8 (N, 3, H, W), ``labels`` (N,) reference labels. Returns the last iterate,
    as an :class:`AdaptiveOutcome`; its ``loss_history`` (steps, N) is the EOT loss of each
    step's draw. Cost: ``1 + eot`` forward and backward passes per image per step.
    """
    names = _op_names(ops)
    if not (isinstance(eot, int) and eot >= 0):
        raise ValueError(f"eot must be an int >= 0 (operations drawn per step), got {eot!r}")
    if jpeg not in _ops.JPEG_GRADIENTS:
        raise ValueError(f"jpeg must be one of {_ops.JPEG_GRADIENTS}, got {jpeg!r}")
    eot = min(eot, len(names))
    name = "eot_pgd" if eot else "pgd"
    return run(name, classifier, images, labels, eps, _eot_loss(classifier, names, eot, jpeg, kappa, save_format),
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
    if jpeg not in _ops.JPEG_GRADIENTS:
        raise ValueError(f"jpeg must be one of {_ops.JPEG_GRADIENTS}, got {jpeg!r}")
    est = detector.fitted_estimator()
    head = None
    if detector_loss != "features":
        try:
            head = torch_estimator(est)
        except TypeError:
            if detector_loss == "estimator":
                raise
    continuous = detector.feature in features.CONTINUOUS_KINDS
    det_model = detector.classifier.to(device).eval()
    same_model = det_model is classifier
    checkpoint = len(detector.op_names) > 8 if checkpoint is None else checkpoint
    thr_z = head.threshold_logit(detector.threshold) if head is not None else None

    def make(gen: torch.Generator) -> ValueAndGrad:
        def value_and_grad(x, labels, need_grad):
            with torch.set_grad_enabled(need_grad):
                xs = saved_pixels(x, save_format).requires_grad_(need_grad)
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

    out = run("detector_pgd", classifier, images, labels, eps, make, steps=steps, step_size=step_size, norm=norm,
               random_start=random_start, seed=seed, device=device, batch_size=batch_size, save_format=save_format,
               track_best=True, progress=progress,
               params={"lam": lam, "kappa": kappa, "det_margin": det_margin, "jpeg": jpeg,
                       "detector_loss": "estimator" if head is not None else "features",
                       "surrogate": None if continuous else surrogate, "temperature": temperature,
                       "detector": repr(detector)})
    out.detector_score = detector.score(out.saved)
    out.detected = out.detector_score >= detector.threshold
    return out
