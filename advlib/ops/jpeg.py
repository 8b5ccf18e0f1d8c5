"""JPEG at quality q (16 operations, q = 100, 95, ..., 25): Pillow's ``save(format="JPEG",
quality=q)`` and decode, its batched twin through torchvision's libjpeg-turbo ops (the same
quantisation tables and 4:2:0 subsampling: byte-identical files), and its differentiable
versions (:data:`JPEG_GRADIENTS`).

Gradients of the differentiable version (``jpeg=``):

- ``"bpda"``: the forward pass is the exact JPEG on the 8-bit rounding of the input, the backward
  pass the identity (straight-through, BPDA: Athalye, Carlini & Wagner 2018);
- ``"kornia"``: kornia's differentiable JPEG (``kornia.enhance.jpeg_codec_differentiable``,
  Reich et al. 2024 after Shin & Song 2017) at the same quality, forward and backward, its
  output rounded to 8 bits (straight-through). It is an approximation, not Pillow's codec: a
  float DCT and a polynomial rounding of the coefficients, ``round(c) + (c - round(c))^3``, in
  the forward pass too (libjpeg-turbo: integer "islow" DCT, hard rounding, 8-bit intermediate
  colour planes), chroma downsampled by antialiased bilinear rescaling and upsampled bilinearly
  (libjpeg-turbo: 2x2 averages, "fancy" triangular upsampling when decoding), and a smooth
  clipping to [0, 1]. Measured on a real 224x224 photo (foolbox's ImageNet sample 0, kornia
  0.9.0; ``tests/test_ops.py`` prints it again): the mean absolute difference from the exact
  operation is 0.56 8-bit levels at quality 100, 1.1 to 1.3 at 95 to 80 and 1.5 to 1.8 at 75 to
  25, single pixels off by 5 (quality 100) to 30 levels at sharp colour edges; the exact
  operation itself moves that photo by 1.1 (quality 100) to 7.5 (quality 25) levels on average,
  so the approximation error is 0.38 (quality 90) to 0.25 (quality 25) of JPEG's own effect.
  The cubic rounding also scales the gradient down (mean |gradient| of a pixel sum 0.28 of the
  identity's at quality 50); PGD's sign steps do not mind;
- ``"kornia_st"``: the exact forward pass with kornia's gradient.
"""

from __future__ import annotations

import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import torch
from PIL import Image

from ..store import from_pil, to_pil
from .base import Operation, OperationGroup, exact_float, straight_through

#: Gradients of the differentiable JPEG (see the module docstring).
JPEG_GRADIENTS = ("bpda", "kornia", "kornia_st")

QUALITIES = tuple(range(100, 24, -5))  # 100, 95, ..., 25 (16 ops)

# torchvision 0.29 marks its codec deprecated (in favour of TorchCodec); it still is libjpeg-turbo.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


def pil_jpeg(image: Image.Image, quality: float) -> Image.Image:
    """The reference: the authors' Pillow JPEG save at ``quality`` and decode."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


@lru_cache(maxsize=None)
def jpeg_codec():
    """(encode(chw, quality) -> bytes tensor, decode(bytes tensor) -> chw) with torchvision's
    libjpeg-turbo ops, called directly (no per-call deprecation warning or Python wrapper
    overhead inside the worker threads); None when torchvision has no codec."""
    try:  # local: a torchvision built without its image codec still imports
        from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg
    except ImportError:
        return None
    image_ops = getattr(torch.ops, "image", None)
    try:
        enc, dec = image_ops.encode_jpeg, image_ops.decode_jpeg
    except (AttributeError, RuntimeError):  # a torchvision without the registered ops
        return (lambda x, quality: encode_jpeg(x, quality=quality)), decode_jpeg
    unchanged = ImageReadMode.UNCHANGED.value
    return (lambda x, quality: enc(x, quality)), (lambda data: dec(data, unchanged, False))


def round_trip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of one CPU uint8 (3, H, W) image with torchvision's codec (the same
    libjpeg-turbo through Pillow if torchvision has none)."""
    codec = jpeg_codec()
    if codec is None:
        return from_pil(pil_jpeg(to_pil(image), quality))
    encode, decode = codec
    return decode(encode(image, quality=quality))


def _cpu_batch(images: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of a CPU uint8 batch, one image at a time."""
    return torch.stack([round_trip(im, quality) for im in images])


def jpeg(images: torch.Tensor, quality: int, workers: int = 0) -> torch.Tensor:
    """JPEG at ``quality`` on a uint8 batch (B, 3, H, W), any device (the codec runs on the CPU,
    ``workers`` threads when > 1), pixel-identical to :func:`pil_jpeg`."""
    cpu = images.cpu()
    if workers > 1 and len(cpu) > 1:  # the codec releases the GIL: one image per task
        with ThreadPoolExecutor(workers) as pool:
            out = torch.stack(list(pool.map(lambda im: _cpu_batch(im[None], quality)[0], cpu)))
    else:
        out = _cpu_batch(cpu, quality)
    return out.to(images.device)


def _kornia_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    from kornia.enhance import (
        jpeg_codec_differentiable,  # local: kornia loads only for this gradient
    )

    q = torch.tensor([float(quality)], device=x.device, dtype=x.dtype)
    return jpeg_codec_differentiable(x, q)


def check_gradient(gradient: str) -> None:
    """ValueError unless ``gradient`` is one of :data:`JPEG_GRADIENTS` (callers check it before any work)."""
    if gradient not in JPEG_GRADIENTS:
        raise ValueError(f"jpeg must be one of {JPEG_GRADIENTS}, got {gradient!r}")


def differentiable_jpeg(x: torch.Tensor, quality: float, gradient: str = "bpda") -> torch.Tensor:
    """JPEG at ``quality`` on float [0, 1] pixels (N, 3, H, W) with the gradient ``gradient``
    (:data:`JPEG_GRADIENTS`); on 8-bit input the forward pass is the exact JPEG except for
    ``"kornia"`` (an approximation, see the module docstring)."""
    check_gradient(gradient)
    q = int(quality)
    if gradient == "bpda":
        return straight_through(x, exact_float(lambda u8: jpeg(u8, q), x))
    approx = _kornia_jpeg(x, q)
    if gradient == "kornia":
        return straight_through(approx, approx.detach().clamp(0, 1).mul(255).round().div(255))
    return straight_through(approx, exact_float(lambda u8: jpeg(u8, q), x))  # kornia_st


def _batched(images: torch.Tensor, op: Operation, workers: int) -> torch.Tensor:
    return jpeg(images, int(op.value), workers)


GROUP = OperationGroup("jpeg", "JPEG quality", pil_jpeg, _batched, differentiable_jpeg,
                       one_cpu=lambda chw, q: round_trip(chw, int(q)))
