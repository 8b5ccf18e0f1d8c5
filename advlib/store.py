"""Results as files: atomic writes, pixel hashes, image files.

Every result file is written to a temporary name in the same folder and renamed into place,
so an interrupted run never leaves a half-written file behind.
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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


def encode_image(image: torch.Tensor, fmt: str, quality: int = 100) -> bytes:
    """Encode a uint8 (3, H, W) tensor as PNG or JPEG bytes with Pillow (JPEG: 4:2:0, ``quality``)."""
    from PIL import Image

    arr = image.permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    elif fmt == "png":
        Image.fromarray(arr).save(buf, format="PNG")
    else:
        raise ValueError(f"unknown image format {fmt!r} (use 'jpeg' or 'png')")
    return buf.getvalue()


def decode_image(data: bytes) -> torch.Tensor:
    """Decode image bytes to a uint8 (3, H, W) tensor (RGB)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def save_image(image: torch.Tensor, path: str | os.PathLike, quality: int = 100) -> Path:
    """Save a uint8 (3, H, W) tensor atomically; the format follows the suffix (.jpg/.png)."""
    suffix = Path(path).suffix.lower()
    fmt = "jpeg" if suffix in (".jpg", ".jpeg") else "png"
    return atomic_write_bytes(path, encode_image(image, fmt, quality))
