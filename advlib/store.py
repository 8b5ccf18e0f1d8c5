"""Results as files: atomic writes, pixel hashes, image files.

Every result file is written to a temporary name in the same folder and renamed into place,
so an interrupted run never leaves a half-written file behind. The file gets the mode an
ordinary ``open(path, "w")`` would give it, ``0o666 & ~umask`` (``tempfile.mkstemp`` alone
creates 0600 files); the umask is read once, when this module is imported.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def _read_umask() -> int:
    """The process umask (``os.umask`` can only be read by setting it, so set it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Mode of every file written here: what ``open()`` gives a new file (0o644 under umask 022).
FILE_MODE = 0o666 & ~_read_umask()

#: ``save_format`` -> (file suffix, JPEG quality; None for lossless PNG). JPEG uses Pillow's
#: default 4:2:0 chroma subsampling, as the paper's code did.
IMAGE_FORMATS: dict[str, tuple[str, int | None]] = {"jpeg": (".jpg", 100), "png": (".png", None)}


def image_format(save_format: str) -> tuple[str, int | None]:
    """File suffix and quality of a profile's ``save_format``: ``'jpeg'`` -> ``('.jpg', 100)``,
    ``'png'`` -> ``('.png', None)``. The one place normal and adversarial images get their format."""
    if save_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown save_format {save_format!r} (use {' or '.join(map(repr, IMAGE_FORMATS))})")
    return IMAGE_FORMATS[save_format]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename).

    The file ends with mode :data:`FILE_MODE` (``0o666 & ~umask``), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_csv(df, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame as CSV atomically (no index column)."""
    return atomic_write_bytes(path, df.to_csv(index=False).encode())


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def save_tensors(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` atomically (load back with ``torch.load(..., weights_only=True)``)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def pixel_sha256(image: torch.Tensor | np.ndarray) -> str:
    """SHA-256 of a uint8 image's pixels (C, H, W), independent of its file format."""
    arr = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"pixel_sha256 expects uint8 pixels, got {arr.dtype}")
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def check_images(images: Any, name: str = "images") -> torch.Tensor:
    """``images`` if it is a uint8 tensor (N, 3, H, W), else ``ValueError`` naming ``name`` and
    what it got. The one check of image batches (ops, features, attacks, correction, detectors)."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 \
            or images.shape[1] != 3:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a uint8 tensor (N, 3, H, W), got {got}")
    return images


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 by rounding (not truncation, which loses perturbation)."""
    return (x.detach() * 255).round().clamp(0, 255).to(torch.uint8)


def to_pil(image: torch.Tensor):
    """uint8 (3, H, W) tensor (any device) -> RGB ``PIL.Image``. The one tensor-to-Pillow conversion."""
    return Image.fromarray(image.permute(1, 2, 0).cpu().numpy())


def from_pil(image) -> torch.Tensor:
    """``PIL.Image`` (any mode, read as RGB) -> contiguous uint8 (3, H, W) CPU tensor."""
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


def encode_image(image: torch.Tensor, fmt: str, quality: int | None = 100) -> bytes:
    """Encode a uint8 (3, H, W) tensor as PNG or JPEG bytes with Pillow (JPEG: 4:2:0, ``quality``,
    which must be given; PNG ignores it)."""
    buf = io.BytesIO()
    if fmt == "jpeg":
        if quality is None:
            raise ValueError("JPEG encoding needs a quality (1..100)")
        to_pil(image).save(buf, format="JPEG", quality=quality)
    elif fmt == "png":
        to_pil(image).save(buf, format="PNG")
    else:
        raise ValueError(f"unknown image format {fmt!r} (use 'jpeg' or 'png')")
    return buf.getvalue()


def decode_image(data: bytes) -> torch.Tensor:
    """Decode image bytes to a uint8 (3, H, W) tensor (RGB)."""
    with Image.open(io.BytesIO(data)) as im:
        return from_pil(im)


def as_saved(image: torch.Tensor, save_format: str) -> torch.Tensor:
    """uint8 (3, H, W) -> the pixels a file saved in ``save_format`` (:func:`image_format`)
    decodes to, encoded and decoded in memory (the encoders are deterministic)."""
    return decode_image(encode_image(image.cpu(), save_format, quality=image_format(save_format)[1]))


def save_image(image: torch.Tensor, path: str | os.PathLike, quality: int | None = 100) -> Path:
    """Save a uint8 (3, H, W) tensor atomically; the format follows the suffix (.jpg/.png).

    ``quality``: JPEG quality (PNG ignores it). Dataset images go through :func:`image_format`.
    """
    suffix = Path(path).suffix.lower()
    fmt = "jpeg" if suffix in (".jpg", ".jpeg") else "png"
    return atomic_write_bytes(path, encode_image(image, fmt, quality))
