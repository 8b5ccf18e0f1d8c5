"""An attack as one object: :class:`AttackSpec` (its name, whether it is targeted, where it comes
from, its keyword options; callable as ``attack(classifier, images, labels)``, as torchattacks'
attacks are) and what a run returns, :class:`AttackOutcome`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..models import predict_topk
from ..runtime import progress as progress_bar
from ..store import check_images
from .criteria import check_labels, target_labels
from .saving import Tracker


@dataclass
class AttackOutcome:
    """Result of :func:`run_attack` for B images.

    Per image, everything is measured at its *final* setting: the one at which it succeeded after
    saving, else the last (strongest) one tried. ``adversarial``: uint8 (B, 3, H, W) CPU, the
    rounded image at that setting (the input if the attack never returned one).
    ``success_raw/rounded/saved``: bool (B,), the combined success test (the attack's criterion
    and the reference label out of the top-5) on the float result, after 8-bit rounding, after
    encoding and decoding in memory. ``strength``: per image the setting that succeeded after
    saving (None if none). ``target``: int (B,), -1 when non-targeted. ``attempts``: one dict per
    image per setting tried, in order: ``index`` (image, 0..B-1), ``rung`` (0, 1, ... per image),
    ``strength``, ``success_raw``, ``success_rounded``, ``success_saved``, ``l2`` (rounded image
    minus input, [0, 1] scale, over all 3*H*W values), ``linf`` (8-bit levels, 0..255).
    ``seconds``: wall time of the whole call.
    """

    adversarial: torch.Tensor
    success_raw: np.ndarray
    success_rounded: np.ndarray
    success_saved: np.ndarray
    strength: list
    target: np.ndarray
    seconds: float = 0.0
    attempts: list[dict] = field(default_factory=list)


def _fmt(v: Any) -> str:
    """repr for option values; Linf epsilons on the 8-bit grid read as ``4/255``."""
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(e) for e in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, float) and 0 < v < 1 and abs(v * 255 - round(v * 255)) < 1e-9:
        return f"{round(v * 255)}/255"
    return repr(v)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True, repr=False)
class AttackSpec:
    """One attack: whether it is targeted, where it comes from, and its keyword options.

    ``options`` are the defaults; :meth:`with_options` returns a copy with some replaced (the
    profile's ``attack_options: {name: {key: value}}``). Lists become tuples.
    """

    name: str
    targeted: bool
    library: str
    runner: Callable = field(compare=False)
    options: Mapping[str, Any] = field(default_factory=dict)

    def with_options(self, **overrides: Any) -> "AttackSpec":
        unknown = sorted(set(overrides) - set(self.options))
        if unknown:
            raise ValueError(f"attack '{self.name}': unknown option(s) {', '.join(unknown)} "
                             f"(known: {', '.join(self.options)})")
        new = dict(self.options)
        for k, v in overrides.items():
            default = self.options[k]
            if isinstance(default, tuple):
                if not isinstance(v, (list, tuple)) or not v or not all(_is_number(e) for e in v):
                    raise ValueError(f"attack '{self.name}': option '{k}' must be a non-empty list of numbers, "
                                     f"got {v!r}")
                v = tuple(v)
            elif isinstance(default, bool) != isinstance(v, bool) or not (isinstance(v, bool) or _is_number(v)):
                raise ValueError(f"attack '{self.name}': option '{k}' must be {type(default).__name__}, got {v!r}")
            new[k] = v
        return AttackSpec(self.name, self.targeted, self.library, self.runner, new)

    def __post_init__(self):
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))  # read-only

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={_fmt(v)}" for k, v in self.options.items())
        return f"AttackSpec({self.name!r}, targeted={self.targeted}, library={self.library!r}, {opts})"

    def __call__(self, classifier: nn.Module, images: torch.Tensor, labels: Any = None, *,
                 save_format: str = "jpeg", device: str | torch.device = "cpu", batch_size: int = 16,
                 progress: bool = False, seed: int = 0, reference: Any = None) -> "AttackOutcome":
        """Attack uint8 ``images`` (B, 3, H, W) whose labels are ``labels`` (B,) (default: the
        classifier's top-1 of each image, as the paper); see :func:`run`."""
        if labels is None:
            labels = predict_topk(classifier.to(device).eval(), check_images(images), 1, batch_size)[:, 0]
        return run(self, classifier, images, labels, save_format=save_format, device=device, batch_size=batch_size,
                   progress=progress, seed=seed, reference=reference)


def run(spec: AttackSpec, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
        save_format: str = "jpeg", device: str | torch.device = "cpu", batch_size: int = 16,
        progress: bool = False, seed: int = 0, reference: torch.Tensor | None = None) -> AttackOutcome:
    """Run attack ``spec`` on uint8 images (B, 3, H, W) whose classifier top-1 labels are ``labels`` (B,).

    ``model``: pixel-space classifier from :mod:`advlib.models` (moved to ``device``, as Foolbox
    does). The attacks steer by ``labels`` (targets ``(labels + 100) mod 1000``); an image counts
    as successful (raw, rounded, saved, and in the strength search) only if, besides the
    attack's criterion, ``reference`` (B,) (default ``labels``; the dataset passes the ground
    truth where known) is not in the top-5. Runs in batches of ``batch_size`` with the options of
    ``spec`` (:meth:`AttackSpec.with_options`); ``seed`` fixes PGD's random start. See
    :class:`AttackOutcome`.
    """
    check_images(images)
    labels = check_labels("labels", labels, len(images))
    reference = labels.clone() if reference is None else check_labels("reference", reference, len(images))
    if save_format not in ("jpeg", "png"):
        raise ValueError(f"save_format must be 'jpeg' or 'png', got {save_format!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    model = model.to(device).eval()
    targets = target_labels(labels) if spec.targeted else None
    parts = []
    with torch.random.fork_rng(devices=[torch.device(device)] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)
        for s in progress_bar(range(0, len(images), batch_size), desc=f"attack {spec.name}", disable=not progress,
                              leave=False):
            x0 = images[s:s + batch_size].to(device).float() / 255
            lab = labels[s:s + batch_size].to(device)
            ref = reference[s:s + batch_size].to(device)
            tgt = None if targets is None else targets[s:s + batch_size].to(device)
            tracker = Tracker(model, x0, lab, tgt, ref, save_format, offset=s)
            spec.runner(model, x0, lab, tgt, tracker.check, dict(spec.options))
            parts.append(tracker)
    cat = (lambda a: np.concatenate(a) if a else np.zeros(0, dtype=bool))
    return AttackOutcome(
        adversarial=torch.cat([t.adv for t in parts]) if parts else images.clone(),
        success_raw=cat([t.raw for t in parts]),
        success_rounded=cat([t.rounded for t in parts]),
        success_saved=cat([t.saved for t in parts]),
        strength=[v for t in parts for v in t.strength],
        target=(targets.numpy() if targets is not None else np.full(len(images), -1, dtype=np.int64)),
        seconds=time.perf_counter() - start,
        attempts=[a for t in parts for a in t.attempts],
    )
