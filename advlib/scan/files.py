"""The files a scan reads: paths and folders walked in a fixed order, the report and copies left out."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

from . import UsageError


def find_images(paths: Sequence[str], exclude: Iterable[str | os.PathLike] = ()) -> list[str]:
    """The files to scan, in a fixed order: each PATH in turn, a folder's image files
    (suffixes of :data:`advlib.images.IMAGE_SUFFIXES`, hidden files and folders skipped) sorted by
    path, recursively. Paths are normalised (``os.path.normpath``), duplicates dropped; files
    under ``exclude`` (the report, the corrected copies) are left out. :class:`UsageError` names
    a PATH that does not exist."""
    from ..images import image_files

    skip = [Path(e).resolve() for e in exclude]
    found: dict[str, None] = {}
    for p in paths:
        if not os.path.exists(p):
            raise UsageError(f"no such file or folder: {p}")
        files = image_files(p) if os.path.isdir(p) else [p]
        for f in files:
            f = os.path.normpath(f)
            r = Path(f).resolve()
            if not any(r == s or s in r.parents for s in skip):
                found.setdefault(f, None)
    return list(found)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def corrected_name(path: str) -> Path:
    """Where the corrected copy of report path ``path`` goes under OUTDIR: the path itself when
    relative (without ``..``), else its absolute path less the root; JPEG names are kept, others
    get ``.jpg`` appended (``a.png`` -> ``a.png.jpg``), so two files never share a copy."""
    p = Path(path)
    if p.is_absolute() or ".." in p.parts:
        p = Path(*Path(os.path.abspath(p)).parts[1:])
    return p if p.suffix.lower() in (".jpg", ".jpeg") else p.with_name(p.name + ".jpg")
