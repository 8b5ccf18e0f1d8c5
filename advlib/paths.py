"""Where things are: the repository root, the profiles' folder, a run's folders, artefact keys."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("ADVLIB_ROOT", Path(__file__).resolve().parent.parent))
PARAMS_DIR = ROOT / "params"
IMAGENET_ENV = "ADVLIB_IMAGENET_DIR"


def resolve(path: str | os.PathLike) -> Path:
    """A path of a profile (``imagenet_dir``, ...): absolute as given, or relative to the repository
    root (:data:`ROOT`), not to the working directory (notebooks run in ``notebooks/``)."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else ROOT / p


def fingerprint(*parts: Any, length: int = 12) -> str:
    """A short hex digest of JSON-serialisable ``parts`` (dict keys sorted): the key of a cached
    artefact, computed from exactly the parameters (and code versions) it depends on."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def store_dir(params: dict[str, Any] | str) -> Path:
    """``data/<profile>`` (created): the keyed artefacts shared by every run of a profile. Needs
    only the profile's name, not :func:`run_name` (which reads the profile's file)."""
    path = ROOT / "data" / (params if isinstance(params, str) else params["profile"])
    path.mkdir(parents=True, exist_ok=True)
    return path
