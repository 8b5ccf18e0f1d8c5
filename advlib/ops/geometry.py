"""Rotation by 1-8 degrees and nearest-neighbour scaling by 0.75-1.25 (18 operations): Pillow's
``Image.rotate(angle)`` (counter-clockwise, nearest, no expand, black fill) and
``Image.resize((int(w * s), int(h * s)), NEAREST)`` (not resized back), their batched twins
(Pillow's affine sampling, ``libImaging/Geometry.c``: 16.16 fixed point for rotations,
``ImagingScaleAffine``'s accumulated double coordinates for scaling, precomputed as an index
table per (H, W, operation) and applied with one gather per batch), and differentiable versions
(the same gather on float pixels: exact values on 8-bit input and an exact gradient).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from .base import Operation, OperationGroup

ANGLES = tuple(range(1, 9))
SCALES = (0.75, 0.8, 0.85, 0.9, 0.95, 1.05, 1.1, 1.15, 1.2, 1.25)


def pil_rotate(image: Image.Image, angle: float) -> Image.Image:
    """The reference: the authors' ``image.rotate(angle)``."""
    return image.rotate(angle)


def pil_scale(image: Image.Image, scale: float) -> Image.Image:
    """The reference: the authors' resize by ``scale``, NEAREST (Pillow 6's default), not back to 224."""
    w, h = image.size
    return image.resize((int(w * scale), int(h * scale)), Image.NEAREST)


def _rotation_table(angle: float, height: int, width: int) -> np.ndarray:
    """Source pixel (flat index, -1 = black) of each output pixel of ``Image.rotate(angle)``."""
    # Image.rotate: the inverse matrix, rounded to 15 decimals, about the centre (w/2, h/2).
    cx, cy = width / 2, height / 2
    t = -math.radians(angle % 360.0)
    a, b, d, e = round(math.cos(t), 15), round(math.sin(t), 15), round(-math.sin(t), 15), round(math.cos(t), 15)
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    corners = [(0, 0), (width, height), (0, height), (width, 0)]
    if not all(abs(x * a + y * b + c) < 32768.0 and abs(x * d + y * e + f) < 32768.0 for x, y in corners):
        raise ValueError(f"rotation of a {height}x{width} image exceeds Pillow's fixed-point range")

    def fix(v: float) -> int:  # 16.16 fixed point, FLOOR(v * 65536 + 0.5)
        return math.floor(v * 65536.0 + 0.5)

    a0, a1, a3, a4 = fix(a), fix(b), fix(d), fix(e)
    a2, a5 = fix(c + a * 0.5 + b * 0.5), fix(f + d * 0.5 + e * 0.5)
    ys, xs = np.meshgrid(np.arange(height, dtype=np.int64), np.arange(width, dtype=np.int64), indexing="ij")
    xin = (a2 + ys * a1 + xs * a0) >> 16
    yin = (a5 + ys * a4 + xs * a3) >> 16
    valid = (xin >= 0) & (xin < width) & (yin >= 0) & (yin < height)
    return np.where(valid, yin * width + xin, -1)


def _scale_axis(size_in: int, size_out: int) -> np.ndarray:
    """Source coordinate (-1 = outside) of each output coordinate, as ImagingScaleAffine."""
    step = float(np.float32(size_in)) / size_out  # (double)(box extent, a float) / size
    pos = 0.0 + step * 0.5
    out = np.empty(size_out, dtype=np.int64)
    for i in range(size_out):  # coordinates are accumulated in double, as in C
        k = -1 if pos < 0.0 else int(pos)
        out[i] = k if 0 <= k < size_in else -1
        pos += step
    return out


def _scale_table(scale: float, height: int, width: int) -> np.ndarray:
    """Source pixel (flat index, -1 = black) of each output pixel of ``resize(..., NEAREST)``."""
    h2, w2 = int(height * scale), int(width * scale)
    if (h2, w2) == (height, width):
        return np.arange(height * width, dtype=np.int64).reshape(height, width)
    ys, xs = _scale_axis(height, h2), _scale_axis(width, w2)
    valid = (ys[:, None] >= 0) & (xs[None, :] >= 0)
    return np.where(valid, ys[:, None] * width + xs[None, :], -1)


@lru_cache(maxsize=256)
def index_table(kind: str, value: float, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Flat source index per output pixel (H', W') of a rotation (``kind`` "rotation") or a
    scaling by ``value``; -1 (outside the source) maps to H*W, the extra black pixel."""
    table = {"rotation": _rotation_table, "scaling": _scale_table}[kind](value, height, width)
    table = np.where(table < 0, height * width, table)
    return torch.from_numpy(table).to(device)


def _batched(images: torch.Tensor, op: Operation, workers: int = 0) -> torch.Tensor:
    """A rotation or scaling on a uint8 batch: one gather through its index table."""
    return gather(images, index_table(op.group, op.value, images.shape[2], images.shape[3], images.device))


def gather(images: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``images`` (B, C, H, W), any dtype, sampled through ``table`` (H', W') of flat source
    indices (H*W: the black pixel): (B, C, H', W')."""
    b, ch, h, w = images.shape
    flat = torch.cat([images.reshape(b, ch, h * w), images.new_zeros(b, ch, 1)], dim=2)
    return flat.index_select(2, table.reshape(-1)).reshape(b, ch, *table.shape)


def _differentiable(group: str):
    def run(x: torch.Tensor, value: float, gradient: str = "bpda") -> torch.Tensor:
        """The same gather on float pixels (exact values and gradient; ``gradient``: JPEG's option, unused)."""
        return gather(x, index_table(group, value, x.shape[2], x.shape[3], x.device))

    return run


ROTATION = OperationGroup("rotation", "rotation (degrees)", pil_rotate, _batched, _differentiable("rotation"))
SCALING = OperationGroup("scaling", "scale factor", pil_scale, _batched, _differentiable("scaling"), resizes=True)
