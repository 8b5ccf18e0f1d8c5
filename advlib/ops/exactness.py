"""The exactness check: every batched operation gives Pillow's pixels, bit for bit (notebook 02 runs it)."""

from __future__ import annotations

import torch

from ..store import from_pil, to_pil
from .registry import OPERATIONS, apply_many, apply_pil


def check_exactness(image: torch.Tensor, ops: list[str] | None = None, *,
                    device: str | torch.device = "cpu") -> None:
    """Run one uint8 (3, H, W) image through :func:`apply` (on ``device``) and :func:`apply_pil`.

    Checks both batched paths, the exact torch code (``backend="torch"``) and what
    :func:`apply_many` runs by default on ``device``. Raises ``RuntimeError`` naming every
    operation whose pixels differ (e.g. after a Pillow or torchvision upgrade), with the number
    of differing values.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError("image must be a uint8 tensor (3, H, W)")
    names = ops or list(OPERATIONS)
    pil = to_pil(image)
    batch = image.unsqueeze(0).to(device)
    paths = {"torch": apply_many(names, batch, backend="torch")}
    if batch.device.type == "cpu":  # on a GPU the default path is the torch one
        paths["default"] = apply_many(names, batch)
    bad = []
    for k, name in enumerate(names):
        ref = from_pil(apply_pil(name, pil))
        for path, outputs in paths.items():
            ours = outputs[k][0].cpu()
            if ours.shape != ref.shape:
                bad.append(f"{name} [{path}] (shape {tuple(ours.shape)} vs Pillow {tuple(ref.shape)})")
            elif not torch.equal(ours, ref):
                bad.append(f"{name} [{path}] ({int((ours != ref).sum())} values differ)")
    if bad:
        raise RuntimeError("batched operations differ from Pillow: " + ", ".join(bad))
