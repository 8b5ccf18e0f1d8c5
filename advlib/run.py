"""``python -m advlib.run PROFILE [NOTEBOOK ...] [--set KEY=VALUE ...]``: run the notebooks with papermill.

The profile is validated first (a bad key stops here, naming the key and the file); then each
notebook runs in paper order with ``profile`` (and ``overrides``, from ``--set``, values read as
YAML) injected into its ``parameters`` cell; the notebook calls
``config.load_profile(profile, **overrides)``. Executed copies go to ``build/<run>/`` (``<run>``:
the profile's name, or ``<profile>-<hash>`` with overrides); the committed notebooks are never
run in place.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import yaml

from . import config

NOTEBOOKS = ("01_dataset", "02_operation_effects", "03_detection", "04_correction")


def run(profile: str, notebooks: list[str] | None = None, overrides: dict[str, Any] | None = None) -> list[Path]:
    import papermill as pm

    overrides = dict(overrides or {})
    params = config.load_profile(profile, **overrides)
    out_dir = config.ROOT / "build" / config.run_name(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name in notebooks or NOTEBOOKS:
        src = config.ROOT / "notebooks" / f"{Path(name).stem}.ipynb"
        if not src.exists():
            raise FileNotFoundError(f"no notebook {src}")
        dst = out_dir / src.name
        t0 = time.time()
        print(f"== {src.name} (profile {params['profile']}{', overrides ' + str(overrides) if overrides else ''})"
              f" -> {dst}", flush=True)
        pm.execute_notebook(str(src), str(dst), parameters={"profile": str(profile), "overrides": overrides},
                            cwd=str(src.parent), progress_bar=False, log_output=False)
        print(f"   done in {time.time() - t0:.0f} s", flush=True)
        done.append(dst)
    return done


def parse_args(args: list[str]) -> tuple[str, list[str], dict[str, Any]]:
    """``PROFILE [NOTEBOOK ...] [--set KEY=VALUE ...]`` -> (profile, notebooks, overrides)."""
    if not args:
        raise ValueError("no profile given")
    profile, notebooks, overrides = args[0], [], {}
    rest = iter(args[1:])
    for a in rest:
        if a == "--set":
            kv = next(rest, None)
            if kv is None or "=" not in kv:
                raise ValueError("--set needs KEY=VALUE")
            key, value = kv.split("=", 1)
            overrides[key] = yaml.safe_load(value)
        else:
            notebooks.append(a)
    return profile, notebooks, overrides


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        profile, notebooks, overrides = parse_args(args)
    except ValueError as e:
        print(f"{e}\n{__doc__}", file=sys.stderr)
        return 2
    try:
        run(profile, notebooks or None, overrides)
    except config.ProfileError as e:
        print(f"profile error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
