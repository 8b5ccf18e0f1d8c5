"""Saving in the loop: 8-bit rounding and JPEG-100 (or PNG) round trips, perturbation norms, the
per-image tracker that re-checks every strength setting on the saved pixels, and the overshoot
ladder of the minimum-norm attacks."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..store import as_saved, quantize
from .criteria import success

#: ``check(idx, x, strength) -> bool (len(idx),)``: the callback every attack calls with the
#: candidates ``x`` of images ``idx`` at a strength setting; True where they succeed after saving.
Check = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


def save_roundtrip(images: torch.Tensor, save_format: str = "jpeg") -> torch.Tensor:
    """uint8 (B, 3, H, W) -> encoded as ``save_format`` (JPEG quality 100 or PNG, see
    :func:`advlib.store.image_format`) and decoded, as the dataset's files are."""
    return torch.stack([as_saved(im, save_format) for im in images])


def perturbation_norms(adv: torch.Tensor, ref: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Perturbation of uint8 images ``adv`` against uint8 ``ref`` (both (B, 3, H, W)).

    Returns ``(l2, linf)``: float (B,) L2 norm over all 3*H*W values on the [0, 1] pixel scale,
    and int (B,) L-inf in 8-bit levels (0..255).
    """
    d = adv.cpu().to(torch.int32) - ref.cpu().to(torch.int32)
    l2 = (d.flatten(1).double() / 255).norm(dim=1).numpy()
    linf = d.flatten(1).abs().amax(1).numpy().astype(np.int64)
    return l2, linf


class Tracker:
    """Per-image bookkeeping for one batch of B images; ``check`` is the callback the attacks call.

    ``x0``: float (B, 3, H, W) inputs; ``labels``, ``reference`` (B,) and ``targets`` (B,) or None,
    on the model's device. ``offset``: index of the batch's first image in the whole call (for
    the attempt log).
    """

    def __init__(self, model, x0, labels, targets, reference, save_format, offset: int = 0):
        self.model, self.labels, self.targets, self.reference = model, labels, targets, reference
        self.fmt, self.offset = save_format, offset
        B = len(x0)
        self.x0_u8 = quantize(x0).cpu()
        self.adv = self.x0_u8.clone()
        self.raw, self.rounded, self.saved = (np.zeros(B, dtype=bool) for _ in range(3))
        self.strength: list = [None] * B
        self.rungs = np.zeros(B, dtype=np.int64)  # settings tried so far, per image
        self.attempts: list[dict] = []

    @torch.no_grad()
    def check(self, idx: torch.Tensor, x: torch.Tensor, strength: object) -> torch.Tensor:
        """Test candidates ``x`` (len(idx), 3, H, W) in [0, 1] for images ``idx`` at setting
        ``strength``: raw, rounded to 8 bits, and after an in-memory save round trip, each with
        the combined success test. Logs one attempt per image; keeps the values as the image's
        final ones unless it already succeeded after saving. Returns the saved success, bool
        (len(idx),) on ``idx``'s device (what the runners use to drop images)."""
        lab, ref = self.labels[idx], self.reference[idx]
        tgt = None if self.targets is None else self.targets[idx]
        q = quantize(x)
        saved_img = save_roundtrip(q.cpu(), self.fmt).to(x.device)
        raw = success(self.model(x.detach().float()), lab, tgt, ref).cpu().numpy()
        rounded = success(self.model(q.float() / 255), lab, tgt, ref).cpu().numpy()
        saved = success(self.model(saved_img.float() / 255), lab, tgt, ref).cpu().numpy()
        ii = idx.cpu().numpy()
        l2, linf = perturbation_norms(q, self.x0_u8[ii])
        value = plain(strength)
        for j, i in enumerate(ii):
            self.attempts.append({
                "index": int(i) + self.offset, "rung": int(self.rungs[i]), "strength": value,
                "success_raw": bool(raw[j]), "success_rounded": bool(rounded[j]),
                "success_saved": bool(saved[j]), "l2": float(l2[j]), "linf": int(linf[j])})
            self.rungs[i] += 1
            if self.saved[i]:  # final already: succeeded at an earlier setting
                continue
            self.adv[i] = q[j].cpu()
            self.raw[i], self.rounded[i], self.saved[i] = raw[j], rounded[j], saved[j]
            self.strength[i] = value if saved[j] else None
        return torch.from_numpy(saved).to(idx.device)


def plain(v: Any) -> Any:
    """A tensor scalar as a Python number (strength settings in the attempt log)."""
    return v.item() if hasattr(v, "item") else v


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
