"""The losses of the adaptive attacks (:mod:`advlib.attacks.adaptive`): :func:`combined_loss`,
the top-5 margin on the image as it will be saved, averaged over EOT operations, plus ``lam`` x
a detector's part, :func:`detector_term` (the paper's feature detectors) or
:func:`squeezing_term` (feature squeezing)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import detect, features
from .. import ops as _ops
from ..detect.differentiable import SURROGATES, detector_features, torch_estimator
from ..detect.squeezing import bit_depth, median_filter, non_local_means
from ..store import quantize
from .criteria import TOP_K
from .pgd import ValueAndGrad, saved_pixels, top5_margin

__all__ = ["DetectorTerm", "combined_loss", "detector_term", "squeezing_term"]

#: ``term(xs, logits)`` -> (loss (n,) to minimise, ``under`` (n,) bool: the real detector does not flag it)
DetectorTerm = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _fooled(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return ~(logits.detach().topk(TOP_K, dim=1).indices == labels[:, None]).any(1)


def combined_loss(classifier: nn.Module, *, kappa: float = 0.0, names: Sequence[str] = (), eot: int = 0,
                  jpeg: str = "bpda", save_format: str = "jpeg", term: DetectorTerm | None = None,
                  lam: float = 1.0, fixed: bool = False) -> Callable[[torch.Generator], ValueAndGrad]:
    """The loss of every attack of this module (a factory of ``value_and_grad`` functions for
    :func:`advlib.attacks.pgd.run` and :func:`advlib.attacks.square.square`).

    Per image: the mean of ``top5_margin(classifier(o(saved)), labels, kappa)`` over the identity
    and ``eot`` operations ``o`` drawn from ``names`` (without replacement, per step; ``fixed``:
    drawn once, so the loss is deterministic, as the Square attack needs), plus ``lam *
    term(saved, logits)[0]`` on the identity when ``term`` is given. ``saved``: the image as its
    file will decode (straight-through). ``ok``: the label is out of the top-5 of the identity
    and of every drawn operation, and (with ``term``) the detector does not flag the image. The
    gradient is accumulated one pass at a time (one graph in memory)."""
    names = list(names)

    def make(gen: torch.Generator) -> ValueAndGrad:
        drawn: list[list[str]] = []

        def draw() -> list[str]:
            if eot == 0 or not names:
                return []
            if fixed and drawn:
                return drawn[0]
            picks = [names[i] for i in torch.randperm(len(names), generator=gen)[:eot].tolist()]
            drawn.append(picks)
            return picks

        def value_and_grad(x, labels, need_grad):
            saved = saved_pixels(x, save_format)
            picks = draw()
            n = 1 + len(picks)
            grad = torch.zeros_like(x) if need_grad else None
            with torch.set_grad_enabled(need_grad):
                xs = saved.clone().requires_grad_(need_grad)
                logits = classifier(xs).float()
                loss = top5_margin(logits, labels, kappa) / n
                ok = _fooled(logits, labels)
                if term is not None:
                    det, under = term(xs, logits)
                    loss = loss + lam * det
                    ok = ok & under.to(ok.device)
                if need_grad:
                    grad += torch.autograd.grad(loss.sum(), xs)[0]
            total = loss.detach()
            for name in picks:
                with torch.set_grad_enabled(need_grad):
                    xs = saved.clone().requires_grad_(need_grad)
                    lo = classifier(_ops.diff_op(name, xs, jpeg)).float()
                    part = top5_margin(lo, labels, kappa) / n
                    if need_grad:
                        grad += torch.autograd.grad(part.sum(), xs)[0]
                total += part.detach()
                ok = ok & _fooled(lo, labels)
            return total, grad, ok

        return value_and_grad

    return make


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


def detector_term(classifier: nn.Module, detector: Any, *, det_margin: float = 1.0, detector_loss: str = "auto",
                  surrogate: str = "rank", temperature: float = 0.25, jpeg: str = "bpda",
                  checkpoint: bool | None = None, device: str | torch.device = "cpu"
                  ) -> tuple[DetectorTerm, dict[str, Any]]:
    """The detector part of a loss: ``relu(z - t + det_margin)`` where ``z`` is the fitted
    :class:`advlib.Detector`'s score on the logit scale and ``t`` its threshold there
    (:func:`torch_estimator`), the features from :func:`detector_features` (``surrogate`` /
    ``temperature`` for the discrete ones, ``jpeg`` the JPEG gradient). ``detector_loss``:
    ``"estimator"``, ``"features"`` (no estimator: make the features look like a clean image's,
    :func:`_clean_looking`), ``"auto"`` (the estimator when it has a torch version).
    ``under``: the real detector (its estimator on the exact forward features) scores the image
    under its threshold. ``checkpoint`` (default: more than 8 operations): recompute each
    operation's forward pass in the backward pass to bound memory. Returns ``(term, params)``."""
    if detector_loss not in ("auto", "estimator", "features"):
        raise ValueError(f"detector_loss must be 'auto', 'estimator' or 'features', got {detector_loss!r}")
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    _ops.check_jpeg_gradient(jpeg)
    est = detector.fitted_estimator()
    head = None
    if detector_loss != "features":
        try:
            head = torch_estimator(est)
        except TypeError:
            if detector_loss == "estimator":
                raise
    det_model = detector.classifier.to(device).eval()
    same_model = det_model is classifier
    checkpoint = len(detector.op_names) > 8 if checkpoint is None else checkpoint
    thr_z = head.threshold_logit(detector.threshold) if head is not None else None

    def term(xs, logits):
        soft, hard = detector_features(detector, xs, logits0=logits if same_model else None, jpeg=jpeg,
                                       surrogate=surrogate, temperature=temperature, checkpoint=checkpoint)
        det = F.relu(head.logit(soft).float() - thr_z + det_margin) if head is not None \
            else _clean_looking(detector, soft)
        scores = detect.detector_scores(est, hard.double().cpu().numpy())
        return det, torch.from_numpy(scores < detector.threshold)

    continuous = detector.feature in features.CONTINUOUS_KINDS
    return term, {"det_margin": det_margin, "jpeg": jpeg,
                  "detector_loss": "estimator" if head is not None else "features",
                  "surrogate": None if continuous else surrogate, "temperature": temperature,
                  "detector": repr(detector)}


def squeezing_term(classifier: nn.Module, squeezer: Any, *, det_margin: float = 0.05) -> tuple[DetectorTerm, dict]:
    """The feature-squeezing part of a loss: ``relu(s - t + det_margin)`` where ``s`` is the
    squeezing score (max over bit depth, median and NLM of the L1 distance between the softmax
    outputs of the image and of its squeezed version, 0..2) and ``t`` the fitted
    :class:`advlib.detect.FeatureSqueezing`'s threshold. Bit depth and NLM are passed
    straight-through (BPDA: the squeezed image forward, the identity's gradient backward; NLM
    is OpenCV's, on the 8-bit image); the median filter is differentiable as it is (the gradient
    goes to the median pixel). ``under``: the score, computed exactly, is not above the
    threshold (the squeezer flags ``score > threshold``)."""
    thr = float(squeezer.threshold_used())
    search, template, h = squeezer.nlm

    def term(xs, logits):
        p0 = logits.softmax(1)
        bd = xs + (bit_depth(xs, squeezer.bit_depth) - xs).detach()
        med = median_filter(xs, squeezer.median_size)
        nlm = non_local_means(quantize(xs.detach()).cpu(), search, template, h).to(xs.device, xs.dtype) / 255
        nl = xs + (nlm - xs).detach()
        dist = torch.stack([(classifier(v).float().softmax(1) - p0).abs().sum(1) for v in (bd, med, nl)], 1)
        score = dist.max(1).values
        return F.relu(score - thr + det_margin), (score.detach() <= thr).cpu()

    return term, {"det_margin": det_margin, "squeezer": repr(squeezer), "threshold": thr}
