"""The detectors shipped inside advlib, one folder per classifier (``<classifier>/detector.json``
and its estimator: the cheap detector; ``<classifier>.paper/``: the all-38 paper detector of
``advlib scan --detector paper``), written by the demo run (notebook 03). This module reads their metadata as
JSON only (no torch), so that ``advlib scan --help`` stays fast; :meth:`advlib.detect.Detector.pretrained`
loads one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: The folder of the shipped detectors.
DIR = Path(__file__).resolve().parent

#: The ``advlib scan --detector`` value of the shipped all-38 paper detector, and its folder's suffix.
PAPER = "paper"

#: Files of a detector folder that ship (pyproject.toml's package data: ``*.json``, ``*.skops``, ``*.pt``).
SHIPPED_SUFFIXES = (".json", ".skops", ".pt")


def shipped_detectors() -> dict[str, dict[str, Any]]:
    """classifier name -> the ``meta`` of the detector shipped for it (``<classifier>/detector.json``,
    read as JSON). Unreadable files are left out."""
    out = {}
    for f in sorted(DIR.glob("*/detector.json")):
        try:
            meta = json.loads(f.read_text()).get("meta", {})
        except (OSError, ValueError, AttributeError):
            continue
        out[f.parent.name] = meta if isinstance(meta, dict) else {}
    return out


def shipped_folder(classifier: str, kind: str | None = None) -> Path:
    """Where the shipped detector of ``classifier`` lives: ``DIR/<classifier>`` (the
    default), or ``DIR/<classifier>.<kind>`` (``kind`` ``"paper"``)."""
    return DIR / (classifier if kind is None else f"{classifier}.{kind}")


def ship_detector(source: str | os.PathLike, kind: str = PAPER) -> Path:
    """Copy a detector folder written by :meth:`advlib.Detector.save` into the package as the
    shipped ``kind`` detector of its classifier (:func:`shipped_folder`, e.g.
    ``advlib/pretrained/efficientnet_lite0.paper/``), so that ``advlib scan --detector paper``
    finds it. Copies ``detector.json`` (last) and the estimator's files (:data:`SHIPPED_SUFFIXES`),
    each atomically. For ``kind`` ``"paper"`` it must be the paper's detector: all 38
    operations (group ``all``) and the ``count`` or ``diff`` feature; else ``ValueError``."""
    from ..store import atomic_write_bytes  # torch: kept out of --help

    src = Path(source)
    meta = json.loads((src / "detector.json").read_text()).get("meta", {})
    classifier = meta.get("classifier")
    if not classifier:
        raise ValueError(f"{src}: detector.json names no classifier (save it with advlib.Detector.save())")
    if kind == PAPER and (meta.get("group") != "all" or meta.get("feature") not in ("count", "diff")):
        raise ValueError(f"{src}: not the paper's detector (group {meta.get('group')!r}, feature "
                         f"{meta.get('feature')!r}; it needs group 'all' and feature 'count' or 'diff')")
    dst = shipped_folder(classifier, kind)
    files = sorted(f for f in src.iterdir() if f.suffix in SHIPPED_SUFFIXES and f.name != "detector.json")
    for f in [*files, src / "detector.json"]:
        atomic_write_bytes(dst / f.name, f.read_bytes())
    return dst
