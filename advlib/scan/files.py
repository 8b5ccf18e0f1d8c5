"""The files a scan reads: paths and folders walked in a fixed order (what is left out counted, folders
that cannot be listed kept as error rows), the report and copies excluded, shards, output checks."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from . import UsageError


@dataclass
class Found:
    """What :func:`find_images` found. ``paths``: the report's paths in order, the image files
    and the folders that could not be listed; ``unreadable``: {folder: error message} of those
    folders (an error row each); ``left_out``: what the folder walks left out, by reason
    (``"suffix .gif"``, ``"hidden"``, ``"symlinked folder"``)."""

    paths: list[str]
    unreadable: dict[str, str] = field(default_factory=dict)
    left_out: Counter = field(default_factory=Counter)

    def left_out_text(self) -> str:
        """``"2 without an image suffix (.gif 1, .txt 1), 1 hidden, 1 symlinked folder (not followed)"``,
        or "" when nothing was left out."""
        suffixes = sorted((k.split(" ", 1)[1], n) for k, n in self.left_out.items() if k.startswith("suffix "))
        parts = []
        if suffixes:
            parts.append(f"{sum(n for _, n in suffixes)} without an image suffix ("
                         + ", ".join(f"{s} {n}" for s, n in suffixes) + ")")
        if self.left_out["hidden"]:
            parts.append(f"{self.left_out['hidden']} hidden")
        if self.left_out["symlinked folder"]:
            parts.append(f"{self.left_out['symlinked folder']} symlinked folder (not followed)")
        return ", ".join(parts)


def find_images(paths: Sequence[str], exclude: Iterable[str | os.PathLike] = ()) -> Found:
    """The files to scan, in a fixed order: each PATH in turn, a folder's image files
    (:func:`advlib.images.image_files`: suffixes of :data:`advlib.images.IMAGE_SUFFIXES`, hidden
    files and folders and symlinked folders left out and counted) and the sub-folders that
    could not be listed, sorted by path, recursively. Paths are normalised
    (``os.path.normpath``), duplicates dropped; files under ``exclude`` (the report, the
    corrected copies) are left out. :class:`UsageError` names a PATH that does not exist. A
    file named on the command line is always listed (a symlink loop or unreadable file becomes
    an error row when it is read)."""
    from ..images import image_files  # torch: not for --help

    skip = [os.path.realpath(e) for e in exclude]
    real_dirs: dict[str, str] = {}
    found = Found([])

    def excluded(f: str) -> bool:
        parent, name = os.path.split(f)
        if parent not in real_dirs:
            real_dirs[parent] = os.path.realpath(parent or ".")
        r = os.path.join(real_dirs[parent], name)
        return any(r == s or r.startswith(s + os.sep) for s in skip)

    def on_skip(path: str, reason: str, error: OSError | None) -> None:
        if reason == "unreadable folder":
            found.unreadable[os.path.normpath(path)] = (f"{path}: cannot list folder "
                                                        f"({type(error).__name__}: {error.strerror or error})")
        elif reason == "suffix":
            found.left_out[f"suffix {Path(path).suffix.lower() or '(none)'}"] += 1
        else:
            found.left_out[reason] += 1

    chosen: dict[str, None] = {}
    for p in paths:
        if not os.path.lexists(p):
            raise UsageError(f"no such file or folder: {p}")
        if os.path.isdir(p):
            before = set(found.unreadable)
            entries = image_files(p, on_skip)
            entries = sorted(entries + [d for d in found.unreadable if d not in before])
        else:
            entries = [p]
        for f in entries:
            f = os.path.normpath(f)
            if not excluded(f):
                chosen.setdefault(f, None)
    found.paths = list(chosen)
    return found


def shard_of(path: str, shards: int) -> int:
    """The shard (0 .. ``shards`` - 1) of a report path: SHA-256 of the path string, modulo
    ``shards``; the same on every machine and Python process (unlike ``hash``)."""
    return int(hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16], 16) % shards


def check_writable(path: str | os.PathLike, option: str, folder: bool = False) -> None:
    """:class:`UsageError` naming ``option`` unless ``path`` can be written: a file (or with
    ``folder``, a folder) that is not a folder (a file), whose nearest existing parent is a
    folder where a file can be created (tried: a temporary file is made and removed)."""
    p = Path(path)
    if not folder and p.is_dir():
        raise UsageError(f"{option} {p}: is a folder, give a file name")
    if folder and p.exists() and not p.is_dir():
        raise UsageError(f"{option} {p}: is a file, give a folder")
    q = (p if folder else p.parent).absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    if not q.is_dir():
        raise UsageError(f"{option} {p}: {q} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=q, prefix=".advlib-write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UsageError(f"{option} {p}: cannot write in {q} ({e.strerror or e})") from e


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
