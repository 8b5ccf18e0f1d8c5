"""Image files: reading one as the pipeline's 224x224 RGB uint8 tensor, finding them in folders,
comparing two (PSNR, SSIM).

Every image the pipeline works on is a 224x224 RGB uint8 tensor (3, 224, 224), as in the paper:
larger images get the standard ImageNet preprocessing (shorter side resized to 256 with
bilinear antialiasing, centre crop 224).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .store import from_pil as _to_tensor

SIZE = 224
RESIZE = 256
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


class ImageReadError(OSError):
    """An image file could not be read; the message names the file."""


def _open(path: str | os.PathLike) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
    return _eight_bit(im, path).convert("RGB")


def _eight_bit(im: Image.Image, path: str | os.PathLike) -> Image.Image:
    """16-bit greyscale (Pillow's modes ``I;16*``, and ``I`` holding 0..65535, as 16-bit PNG, TIFF
    and PGM files open) as 8-bit ``L`` by the high byte, as Pillow reads 16-bit RGB files
    (``convert`` would clip every value above 255 to white). Other modes as they are;
    :class:`ImageReadError` for 32-bit float (``F``) or integer values beyond 16 bits, whose
    range is not known."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageReadError(f"{path}: cannot read image (32-bit integer pixels beyond 16 bits: convert it to "
                                 "8 or 16 bits)")
        return Image.fromarray((a >> 8).astype(np.uint8), "L")
    if im.mode == "F":
        raise ImageReadError(f"{path}: cannot read image (32-bit float pixels, range unknown: convert it to 8 or "
                             "16 bits)")
    return im


def resize_crop(im: Image.Image, resize: int = RESIZE, size: int = SIZE, anchor: str = "center") -> Image.Image:
    """Resize the shorter side to ``resize`` (bilinear, antialiased) and crop ``size`` x ``size``.

    ``anchor`` is ``center`` (torchvision's CenterCrop), ``tl``, ``tr``, ``bl`` or ``br``.
    """
    w, h = im.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    im = im.resize((nw, nh), Image.BILINEAR)
    if anchor == "center":
        left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    else:
        left = 0 if anchor[1] == "l" else nw - size
        top = 0 if anchor[0] == "t" else nh - size
    return im.crop((left, top, left + size, top + size))


def load_image(path: str | os.PathLike, crop: str = "center256") -> torch.Tensor:
    """Read an image file as a uint8 tensor (3, 224, 224).

    A 224x224 file is taken as it is. Others get ``crop``: ``center256`` is the standard
    ImageNet preprocessing; ``<anchor><resize>`` (e.g. ``tl256``, ``center320``) picks other
    crops of the same photo. Raises :class:`ImageReadError` naming the file.
    """
    im = _open(path)
    if im.size == (SIZE, SIZE):
        return _to_tensor(im)
    m = re.fullmatch(r"(center|tl|tr|bl|br)(\d+)", crop)
    if not m:
        raise ValueError(f"unknown crop {crop!r} (e.g. 'center256', 'tl288')")
    return _to_tensor(resize_crop(im, int(m.group(2)), SIZE, m.group(1)))


def image_files(root: str | os.PathLike,
                on_skip: Callable[[str, str, OSError | None], None] | None = None) -> list[str]:
    """The image files under folder ``root``, recursively: suffixes of :data:`IMAGE_SUFFIXES`,
    hidden files and folders skipped, symlinked folders not followed, sorted by path string.
    ``on_skip(path, reason, error)`` hears of everything left out: ``reason`` ``"hidden"``,
    ``"suffix"`` (a file without an image suffix), ``"symlinked folder"`` (``error`` None), or
    ``"unreadable folder"`` with the ``OSError`` of a folder that could not be listed."""
    def tell(path: str, reason: str, error: OSError | None = None) -> None:
        if on_skip is not None:
            on_skip(path, reason, error)

    files = []
    for folder, dirs, names in os.walk(root, onerror=lambda e: tell(e.filename, "unreadable folder", e)):
        keep = []
        for d in sorted(dirs):
            path = os.path.join(folder, d)
            if d.startswith("."):
                tell(path, "hidden")
            elif os.path.islink(path):
                tell(path, "symlinked folder")
            else:
                keep.append(d)
        dirs[:] = keep
        for n in names:
            path = os.path.join(folder, n)
            if n.startswith("."):
                tell(path, "hidden")
            elif Path(n).suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
            else:
                tell(path, "suffix")
    return sorted(files)


def psnr_ssim(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB; inf for identical images) and SSIM of uint8 image ``a`` (3, H, W) against ``b``."""
    x, y = a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy()
    psnr = peak_signal_noise_ratio(x, y, data_range=255) if not np.array_equal(x, y) else np.inf
    return float(psnr), float(structural_similarity(x, y, channel_axis=2, data_range=255))
