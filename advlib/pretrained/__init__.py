"""The detectors shipped inside advlib, one folder per classifier (``<classifier>/detector.json``
and its estimator), written by the demo run (notebook 03). This module reads their metadata as
JSON only (no torch), so that ``advlib scan --help`` stays fast; :meth:`advlib.detect.Detector.pretrained`
loads one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The folder of the shipped detectors.
DIR = Path(__file__).resolve().parent


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
