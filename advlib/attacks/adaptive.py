"""Adaptive attacks: the attacker knows the paper's corrections and its detectors.

The paper (Nguyen et al., IEICE 2022) evaluates its detector and its corrections against attacks
that ignore them. Evaluating a detection or input-transformation defence needs the attacker who
does not (Carlini & Wagner 2017, "Adversarial examples are not easily detected: bypassing ten
detection methods", AISec; Athalye, Carlini & Wagner 2018, "Obfuscated gradients give a false
sense of security", ICML, for BPDA and EOT; Tramer, Carlini, Brendel & Madry 2020, "On adaptive
attacks to adversarial example defenses", NeurIPS). This module gives advlib that attacker, on
the PGD engine of :mod:`advlib.attacks.pgd`, the gradient-free engine of
:mod:`advlib.attacks.square` and the differentiable operations of :func:`advlib.ops.diff_op`
(JPEG through BPDA, i.e. the identity's gradient, or kornia's differentiable JPEG; exact gathers
for scaling and rotation; blur with the gradient of its unrounded box passes).

Every attack minimises one loss, built by :func:`combined_loss` from three parts, and differs
from the non-adaptive baseline :func:`attack_pgd` in those parts only (same top-5 margin
``kappa``, steps, step size, random start and restarts unless the caller changes them):

- the top-5 margin (:func:`~advlib.attacks.pgd.top5_margin`) on the image as it will be saved
  (8-bit rounding and the JPEG quality-100 round trip, straight-through), averaged over the
  identity and ``eot`` operations drawn at random each step (expectation over transformation);
- optionally ``lam`` x a hinge on a detector's score: the paper's feature detectors through
  :func:`detector_term` (a torch copy of the fitted estimator, exact continuous features, a soft
  surrogate of the discrete ``count`` / ``diff``), feature squeezing through
  :func:`squeezing_term` (bit depth and non-local means straight-through, the median filter
  exact).

Attacks (each returns an :class:`~advlib.attacks.pgd.AdaptiveOutcome`; every adversarial is
rounded to 8 bits, saved and re-checked from the saved pixels with
:func:`advlib.attacks.is_adversarial`, as notebook 01 does):

- :func:`attack_pgd`: the margin on the identity only: the non-adaptive baseline.
- :func:`attack_high_confidence`: the baseline with a large ``kappa`` (the paper's intuition:
  confident adversarials survive the operations).
- :func:`attack_correction`: EOT over the 26 JPEG and scaling operations label correction votes
  over (image correction's JPEG qualities among them).
- :func:`attack_detector`: + the hinge on a :class:`advlib.Detector`'s score, with a search
  over ``lam`` (per image, the first of increasing values that evades).
- :func:`attack_squeezing`: + the hinge on feature squeezing's score.
- :func:`attack_pipeline`: the paper's two levels at once: EOT over the correction's
  operations and the hinge on the detector that decides whether to correct.
- :func:`attack_square`: any of these losses minimised without gradients (the Square attack):
  the check for masked gradients.

Costs (forward and backward passes per image per step): 1 for :func:`attack_pgd`, ``1 + eot``
for :func:`attack_correction`, ``detector.passes`` for :func:`attack_detector` (times the
``lam`` values an image needs), 4 for :func:`attack_squeezing`, ``detector.passes + eot`` for
:func:`attack_pipeline`; :func:`attack_square` the same passes per query, forward only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import ops as _ops
from ..store import check_images
from .criteria import check_labels
from .losses import (
    DetectorTerm,
    combined_loss,
    detector_term,
    squeezing_term,
)
from .pgd import (
    AdaptiveOutcome,
    check_budget,
    finish,
    run,
)
from .square import square

__all__ = ["attack_correction", "attack_detector", "attack_high_confidence", "attack_pgd", "attack_pipeline",
           "attack_square", "attack_squeezing", "combined_loss", "detector_term", "squeezing_term"]

def _op_names(groups: str | Sequence[str]) -> list[str]:
    try:
        return _ops.names_of(groups) if groups else []
    except KeyError as e:
        raise ValueError(f"ops: {e.args[0]}") from None


def attack_correction(classifier: nn.Module, images: torch.Tensor, labels: Any, eps: float, *, steps: int = 40,
                      step_size: float | None = None, ops: str | Sequence[str] = "jpeg+scaling", eot: int = 4,
                      jpeg: str = "bpda", kappa: float = 0.0, norm: str = "linf", random_start: bool = True,
                      restarts: int = 1, seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 8,
                      save_format: str = "jpeg", progress: bool = False) -> AdaptiveOutcome:
    """EOT-PGD against label correction and image correction.

    Minimises :func:`combined_loss` with ``eot`` operations drawn per step from ``ops`` (group
    names of :data:`advlib.ops.GROUPS` and/or operation names; default the 26 that label
    correction votes over, which include every JPEG quality image correction can pick) and the
    identity. ``jpeg``: the JPEG gradient (:data:`advlib.ops.JPEG_GRADIENTS`). ``kappa``: the
    top-5 margin, 0 as :func:`attack_pgd`, so that the EOT is the only difference. ``eps``: the
    budget in ``norm`` (``"linf"`` or ``"l2"``) on the [0, 1] scale; ``step_size`` defaults to
    ``2.5 * eps / steps`` (Madry et al.); ``restarts``: random restarts, per image the best
    final iterate wins. ``images`` uint8 (N, 3, H, W), ``labels`` (N,) reference labels.
    Returns the last iterate as an :class:`AdaptiveOutcome`; its ``loss_history`` (steps + 1, N)
    is the loss of each step's draw. Cost: ``1 + eot`` forward and backward passes per image
    per step and restart.
    """
    names = _op_names(ops)
    if not (isinstance(eot, int) and eot >= 0):
        raise ValueError(f"eot must be an int >= 0 (operations drawn per step), got {eot!r}")
    _ops.check_jpeg_gradient(jpeg)
    eot = min(eot, len(names))
    name = "eot_pgd" if eot else "pgd"
    return run(name, classifier, images, labels, eps,
               combined_loss(classifier, kappa=kappa, names=names, eot=eot, jpeg=jpeg, save_format=save_format),
               steps=steps, step_size=step_size, norm=norm, random_start=random_start, seed=seed, device=device,
               batch_size=batch_size, save_format=save_format, track_best=False, progress=progress,
               restarts=restarts, params={"ops": names if eot else [], "eot": eot, "jpeg": jpeg, "kappa": kappa})


def attack_pgd(classifier: nn.Module, images: torch.Tensor, labels: Any, eps: float, *, steps: int = 40,
               step_size: float | None = None, kappa: float = 0.0, norm: str = "linf", random_start: bool = True,
               restarts: int = 1, seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 8,
               save_format: str = "jpeg", progress: bool = False) -> AdaptiveOutcome:
    """The non-adaptive baseline: :func:`attack_correction`'s PGD (same loss on the saved image,
    step rule, projection, rounding and re-check) on the identity only, no EOT. One forward and
    backward pass per image per step."""
    return attack_correction(classifier, images, labels, eps, steps=steps, step_size=step_size, ops=(), eot=0,
                             kappa=kappa, norm=norm, random_start=random_start, restarts=restarts, seed=seed,
                             device=device, batch_size=batch_size, save_format=save_format, progress=progress)


def attack_high_confidence(classifier: nn.Module, images: torch.Tensor, labels: Any, eps: float, *,
                           kappa: float = 30.0, steps: int = 40, **kwargs: Any) -> AdaptiveOutcome:
    """High-confidence PGD: :func:`attack_pgd` with a large margin ``kappa`` (logits) between the
    reference label and the 5th other class, the simplest adaptive attack: the paper's own
    intuition says confident adversarial noise survives the operations. ``kwargs``: as
    :func:`attack_pgd`."""
    out = attack_pgd(classifier, images, labels, eps, steps=steps, kappa=kappa, **kwargs)
    out.attack = "high_confidence_pgd"
    return out


def _search_lam(name: str, attack: Callable[[float, np.ndarray], AdaptiveOutcome], n: int, lam: float | Sequence[float],
                judge: Callable[[AdaptiveOutcome], np.ndarray]) -> AdaptiveOutcome:
    """Run ``attack(lam_value, idx)`` for each value of ``lam`` in turn on the images not yet
    successful (``judge(outcome)``: bool per image); per image the first value that succeeds is
    kept (else the last value's result). The outcome's ``params`` record ``lam`` per image."""
    lams = [float(lam)] if isinstance(lam, (int, float)) else [float(v) for v in lam]
    if not lams or any(not v > 0 for v in lams):
        raise ValueError(f"lam must be a positive number or a list of them, got {lam!r}")
    idx = np.arange(n)
    out = attack(lams[0], idx)
    used = np.full(n, lams[0])
    for value in lams[1:]:
        todo = idx[~judge(out)]
        if not len(todo):
            break
        more = attack(value, todo)
        used[todo] = value
        out.replace(todo, more)
    out.params.update(lam=lams, lam_used=used.tolist())
    out.attack = name
    return out


def _judge_detector(detector: Any) -> Callable[[AdaptiveOutcome], np.ndarray]:
    def judge(out: AdaptiveOutcome) -> np.ndarray:
        out.detector_score = np.asarray(detector.score(out.saved), dtype=np.float64)
        out.detected = out.detector_score >= detector.threshold
        return out.success_saved & ~out.detected

    return judge


def _judge_squeezer(squeezer: Any) -> Callable[[AdaptiveOutcome], np.ndarray]:
    def judge(out: AdaptiveOutcome) -> np.ndarray:
        out.detector_score = np.asarray(squeezer.decision_function(out.saved), dtype=np.float64)
        out.detected = out.detector_score > squeezer.threshold_used()
        return out.success_saved & ~out.detected

    return judge


def _with_term(name: str, classifier: nn.Module, images: torch.Tensor, labels: Any, eps: float, term: DetectorTerm,
               term_params: dict, judge: Callable[[AdaptiveOutcome], np.ndarray], *, lam: float | Sequence[float],
               kappa: float, names: Sequence[str], eot: int, jpeg: str, steps: int, step_size: float | None,
               norm: str, random_start: bool, restarts: int, seed: int, device: str | torch.device,
               batch_size: int, save_format: str, progress: bool) -> AdaptiveOutcome:
    """PGD on :func:`combined_loss` with a detector ``term``, over the ``lam`` search."""
    labels = check_labels("labels", labels, len(images))

    def attack(value: float, idx: np.ndarray) -> AdaptiveOutcome:
        t = torch.as_tensor(idx)
        out = run(name, classifier, images[t], labels[t], eps,
                  combined_loss(classifier, kappa=kappa, names=names, eot=eot, jpeg=jpeg, save_format=save_format,
                                term=term, lam=value),
                  steps=steps, step_size=step_size, norm=norm, random_start=random_start, seed=seed, device=device,
                  batch_size=batch_size, save_format=save_format, track_best=True, progress=progress,
                  restarts=restarts, params={"kappa": kappa, "ops": list(names) if eot else [], "eot": eot,
                                             **term_params})
        judge(out)
        return out

    return _search_lam(name, attack, len(images), lam, judge)


def attack_detector(classifier: nn.Module, detector: Any, images: torch.Tensor, labels: Any, eps: float, *,
                    steps: int = 40, step_size: float | None = None, lam: float | Sequence[float] = (1.0, 10.0, 100.0),
                    kappa: float = 0.0, det_margin: float = 1.0, detector_loss: str = "auto",
                    surrogate: str = "rank", temperature: float = 0.25, jpeg: str = "bpda", norm: str = "linf",
                    random_start: bool = True, restarts: int = 1, seed: int = 0, device: str | torch.device = "cpu",
                    batch_size: int = 8, save_format: str = "jpeg", checkpoint: bool | None = None,
                    progress: bool = False) -> AdaptiveOutcome:
    """C&W-style PGD against a fitted :class:`advlib.Detector`: fool the classifier and stay
    under the detector's threshold, both on the saved file.

    Loss per image (minimised): ``top5_margin(logits, labels, kappa) + lam * relu(z - t + det_margin)``
    (:func:`combined_loss` with :func:`detector_term`). ``lam``: one value, or increasing values
    searched per image as C&W search their constant: an image that fools the classifier but is
    still flagged (judged on the saved file by the real detector) is attacked again, from the
    start, with the next value. With each value the returned iterate is, per image, the one with
    the lowest loss among those that fool the classifier and score under the threshold, else the
    lowest loss. Cost per step: ``detector.passes`` forward and backward passes per image, per
    value of ``lam`` the image needs. The outcome has the real ``detector.score`` of the saved
    adversarials (``detector_score``, ``detected``) and ``params["lam_used"]``.
    """
    term, term_params = detector_term(classifier, detector, det_margin=det_margin, detector_loss=detector_loss,
                                      surrogate=surrogate, temperature=temperature, jpeg=jpeg,
                                      checkpoint=checkpoint, device=device)
    return _with_term("detector_pgd", classifier, images, labels, eps, term, term_params, _judge_detector(detector),
                      lam=lam, kappa=kappa, names=(), eot=0, jpeg=jpeg, steps=steps, step_size=step_size, norm=norm,
                      random_start=random_start, restarts=restarts, seed=seed, device=device, batch_size=batch_size,
                      save_format=save_format, progress=progress)


def attack_squeezing(classifier: nn.Module, squeezer: Any, images: torch.Tensor, labels: Any, eps: float, *,
                     steps: int = 40, step_size: float | None = None, lam: float | Sequence[float] = (1.0, 10.0, 100.0),
                     kappa: float = 0.0, det_margin: float = 0.05, norm: str = "linf", random_start: bool = True,
                     restarts: int = 1, seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 8,
                     save_format: str = "jpeg", progress: bool = False) -> AdaptiveOutcome:
    """PGD against feature squeezing (a fitted :class:`advlib.detect.FeatureSqueezing`) through
    its own squeezers (:func:`squeezing_term`): fool the classifier and keep the squeezing score
    at or under its threshold, on the saved file; ``lam`` searched as :func:`attack_detector`'s.
    Cost per step: 4 forward and backward passes per image (and one NLM)."""
    term, term_params = squeezing_term(classifier, squeezer, det_margin=det_margin)
    return _with_term("squeezing_pgd", classifier, images, labels, eps, term, term_params, _judge_squeezer(squeezer),
                      lam=lam, kappa=kappa, names=(), eot=0, jpeg="bpda", steps=steps, step_size=step_size, norm=norm,
                      random_start=random_start, restarts=restarts, seed=seed, device=device, batch_size=batch_size,
                      save_format=save_format, progress=progress)


def attack_pipeline(classifier: nn.Module, detector: Any, images: torch.Tensor, labels: Any, eps: float, *,
                    ops: str | Sequence[str] = "jpeg+scaling", eot: int = 4, steps: int = 40,
                    step_size: float | None = None, lam: float | Sequence[float] = (1.0, 10.0, 100.0),
                    kappa: float = 0.0, det_margin: float = 1.0, jpeg: str = "bpda", norm: str = "linf",
                    random_start: bool = True, restarts: int = 1, seed: int = 0, device: str | torch.device = "cpu",
                    batch_size: int = 8, save_format: str = "jpeg", progress: bool = False) -> AdaptiveOutcome:
    """The attacker of the paper's two-level defence (detect, then correct what is flagged):
    EOT over ``eot`` of the correction's operations ``ops`` per step (as :func:`attack_correction`)
    plus the hinge on ``detector``'s score (as :func:`attack_detector`, ``lam`` searched the
    same way). The adversarial must fool the classifier, stay under the detector's threshold,
    and keep the label out of the top-5 under the operations label correction votes over, so
    that either level alone fails. Cost per step: ``detector.passes + eot`` passes per image."""
    names = _op_names(ops)
    eot = min(eot, len(names))
    term, term_params = detector_term(classifier, detector, det_margin=det_margin, jpeg=jpeg, device=device)
    return _with_term("pipeline_pgd", classifier, images, labels, eps, term, term_params, _judge_detector(detector),
                      lam=lam, kappa=kappa, names=names, eot=eot, jpeg=jpeg, steps=steps, step_size=step_size,
                      norm=norm, random_start=random_start, restarts=restarts, seed=seed, device=device,
                      batch_size=batch_size, save_format=save_format, progress=progress)


def attack_square(classifier: nn.Module, images: torch.Tensor, labels: Any, eps: float, *, queries: int = 500,
                  p_init: float = 0.3, detector: Any = None, squeezer: Any = None, lam: float = 10.0,
                  ops: str | Sequence[str] = (), eot: int = 0, kappa: float = 0.0, seed: int = 0,
                  device: str | torch.device = "cpu", batch_size: int = 8, save_format: str = "jpeg",
                  progress: bool = False) -> AdaptiveOutcome:
    """The Square attack (:mod:`advlib.attacks.square`, L-inf, gradient-free) on the loss of
    :func:`combined_loss`: the top-5 margin alone (default: the non-adaptive gradient-free
    attack), with ``eot`` operations of ``ops`` drawn once and kept (a deterministic loss over
    the correction's operations), and/or ``lam`` x the hinge on ``detector``'s or ``squeezer``'s
    score computed exactly (no surrogate: the real features and the real squeezers forward).
    ``queries``: loss evaluations per image (an image stops once it is adversarial and, with a
    detector, under its threshold). ``p_init``: the first square's share of the image; the
    authors' 0.05 is for 10,000 queries, and their schedule (rescaled to ``queries``) shrinks it
    within the first few queries of a budget of hundreds: at 200 queries and 8/255 it fooled the
    top-5 on 0 of 2 foolbox photos with 0.05 and on 1 (after 50 queries) with 0.3, the default. With a detector or squeezer the outcome has its real
    ``detector_score`` / ``detected``."""
    check_images(images)
    labels = check_labels("labels", labels, len(images))
    check_budget(eps, 1, None, "linf")
    if not (isinstance(queries, int) and queries >= 1):
        raise ValueError(f"queries must be an int >= 1, got {queries!r}")
    if detector is not None and squeezer is not None:
        raise ValueError("attack_square: give a detector or a squeezer, not both")
    names = _op_names(ops)
    eot = min(eot, len(names))
    start = time.perf_counter()
    device = torch.device(device)
    classifier = classifier.to(device).eval()
    term, term_params, judge = None, {}, None
    if detector is not None:
        term, term_params = detector_term(classifier, detector, device=device)
        judge = _judge_detector(detector)
    elif squeezer is not None:
        term, term_params = squeezing_term(classifier, squeezer)
        judge = _judge_squeezer(squeezer)
    make = combined_loss(classifier, kappa=kappa, names=names, eot=eot, save_format=save_format, term=term,
                         lam=lam, fixed=True)
    gen = torch.Generator().manual_seed(seed)
    xs, histories = [], []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x0 = images[s:s + batch_size].to(device).float().div(255)
            x, hist, _ = square(make(gen), x0, labels[s:s + batch_size].to(device), eps, queries=queries,
                                p_init=p_init, gen=gen, progress=progress, desc=f"square [{s}:{s + len(x0)}]")
            xs.append(x)
            histories.append(hist)
    out = finish("square", classifier, images, labels, xs, histories, float(eps), "linf", save_format, start,
                  {"queries": queries, "p_init": p_init, "kappa": kappa, "lam": lam if term is not None else None,
                   "ops": list(names) if eot else [], "eot": eot, "seed": seed, **term_params}, batch_size)
    if judge is not None:
        judge(out)
    return out
