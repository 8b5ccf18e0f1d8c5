"""Gaussian blur at radius 2, 3, 4, 5 (4 operations): Pillow's ``ImageFilter.GaussianBlur``
(the paper calls the radius a "kernel size"; Pillow implements it as an extended box blur,
``libImaging/BoxBlur.c``), its batched twin in integer arithmetic (cumulative sums, the same
8.24 fixed-point weights and rounding: the same pixels, any device), and a differentiable
version (the exact forward pass with the gradient of the same box passes without their 8-bit
rounding).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from .base import Operation, OperationGroup, exact_float, straight_through

RADII = (2, 3, 4, 5)


def pil_blur(image: Image.Image, radius: float) -> Image.Image:
    """The reference: the authors' ``image.filter(ImageFilter.GaussianBlur(radius))``."""
    return image.filter(ImageFilter.GaussianBlur(radius))


def _box_radius(radius: float, passes: int = 3) -> float:
    """Pillow's ``_gaussian_blur_radius``: the extended-box radius, in C float32 arithmetic."""
    f = np.float32
    sigma2 = f(radius) * f(radius) / f(passes)
    big_l = f(math.sqrt(12.0 * float(sigma2) + 1.0))
    small_l = f(math.floor((float(big_l) - 1.0) / 2.0))
    a = (f(2) * small_l + f(1)) * (small_l * (small_l + f(1)) - f(3) * sigma2)
    a = a / (f(6) * (sigma2 - (small_l + f(1)) * (small_l + f(1))))
    return float(small_l + a)


@lru_cache(maxsize=None)
def _box_weights(radius: float) -> tuple[int, int, int]:
    """(integer radius, inner weight ww, far weight fw) of one pass, 8.24 fixed point."""
    f = np.float32
    r = int(radius)
    ww = int(f(1 << 24) / (f(radius) * f(2) + f(1)))
    fw = ((1 << 24) - (2 * r + 1) * ww) // 2
    return r, ww, fw


def _box_pass(x: torch.Tensor, r: int, ww: int, fw: int) -> torch.Tensor:
    """One ``ImagingLineBoxBlur`` pass along the last dim of ``x`` (N, M, L) -> float64 (N, M, L).

    out[i] = round((ww * (x[i-r] + ... + x[i+r]) + fw * (x[i-r-1] + x[i+r+1])) / 2**24), edge
    pixels repeated, written with the cumulative sum c of the padded row as
    fw * (c[i+2r+2] - c[i-1]) + (ww - fw) * (c[i+2r+1] - c[i]). The weights are scaled by
    2**-24 (a power of two); every intermediate needs < 53 bits, so float64 is exact.
    """
    n = x.shape[-1]
    edge = (*x.shape[:-1], r + 1)  # the first and last pixels, repeated r + 1 times
    padded = torch.cat([x[..., :1].expand(edge), x, x[..., -1:].expand(edge)], -1)
    c = padded.cumsum(-1, dtype=torch.float64)
    a, b = fw * 2.0 ** -24, (ww - fw) * 2.0 ** -24
    bulk = torch.mul(c[..., 2 * r + 2:], a)
    bulk.add_(c[..., 2 * r + 1:-1], alpha=b).sub_(c[..., :n], alpha=b)
    bulk[..., 1:].sub_(c[..., :n - 1], alpha=a)
    return bulk.add_(0.5).floor_()


def gaussian_blur(images: torch.Tensor, radius: float, passes: int = 3, chunk: int | None = None) -> torch.Tensor:
    """``ImageFilter.GaussianBlur(radius)`` on a uint8 batch (B, 3, H, W), any device, pixel-identical
    to :func:`pil_blur`: ``passes`` horizontal then vertical box passes,
    each rounded to 8 bits, on ``chunk`` images at a time (default: 4 on the CPU, small enough
    to stay in cache; 64 on a GPU, large enough to fill it)."""
    chunk = chunk or (4 if images.device.type == "cpu" else 64)
    r, ww, fw = _box_weights(_box_radius(radius, passes))
    b, ch, h, w = images.shape
    out = torch.empty_like(images)
    for start in range(0, b, chunk):
        x = images[start:start + chunk].reshape(-1, h, w)
        for _ in range(passes):
            x = _box_pass(x, r, ww, fw)
        x = x.to(torch.uint8).transpose(1, 2).contiguous()
        for _ in range(passes):
            x = _box_pass(x, r, ww, fw)
        out[start:start + chunk] = x.to(torch.uint8).transpose(1, 2).reshape(-1, ch, h, w)
    return out


def _linear_box_pass(x: torch.Tensor, r: int, ww: int, fw: int) -> torch.Tensor:
    """:func:`_box_pass` (one Pillow box-blur pass along the last dim) without its rounding: a
    linear, differentiable map."""
    n = x.shape[-1]
    edge = (*x.shape[:-1], r + 1)
    padded = torch.cat([x[..., :1].expand(edge), x, x[..., -1:].expand(edge)], -1)
    c = padded.cumsum(-1)
    a, b = fw * 2.0 ** -24, (ww - fw) * 2.0 ** -24
    out = a * c[..., 2 * r + 2:] + b * (c[..., 2 * r + 1:-1] - c[..., :n])
    return out - a * F.pad(c[..., :n - 1], (1, 0))


def linear_blur(x: torch.Tensor, radius: float, passes: int = 3) -> torch.Tensor:
    """Pillow's ``GaussianBlur(radius)`` (three horizontal then three vertical box passes)
    without the 8-bit rounding after each pass, on float (N, 3, H, W)."""
    r, ww, fw = _box_weights(_box_radius(radius, passes))
    for _ in range(passes):
        x = _linear_box_pass(x, r, ww, fw)
    x = x.transpose(-1, -2)
    for _ in range(passes):
        x = _linear_box_pass(x, r, ww, fw)
    return x.transpose(-1, -2)


def differentiable_blur(x: torch.Tensor, radius: float, gradient: str = "bpda") -> torch.Tensor:
    """The blur on float [0, 1] pixels (N, 3, H, W): the exact forward pass on the 8-bit rounding
    of ``x``, the gradient of :func:`linear_blur` (``gradient``: unused, JPEG's option)."""
    return straight_through(linear_blur(x, float(radius)), exact_float(lambda u8: gaussian_blur(u8, float(radius)), x))


def _batched(images: torch.Tensor, op: Operation, workers: int) -> torch.Tensor:
    return gaussian_blur(images, float(op.value))


GROUP = OperationGroup("blur", "Gaussian blur radius", pil_blur, _batched, differentiable_blur)
