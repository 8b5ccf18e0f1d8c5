"""``python -m advlib.run PROFILE [NOTEBOOK ...]``: run the notebooks with papermill.

The profile is validated first (a bad key stops here, naming the key and the file); then each
notebook runs in paper order with the profile's values injected into its ``parameters`` cell.
Executed copies go to ``build/<profile>/``; the committed notebooks are never run in place.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import config

NOTEBOOKS = ("01_dataset", "02_operation_effects", "03_detection", "04_correction")


def run(profile: str, notebooks: list[str] | None = None) -> list[Path]:
    import papermill as pm

    params = config.load_profile(profile)
    out_dir = config.ROOT / "build" / params["profile"]
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name in notebooks or NOTEBOOKS:
        src = config.ROOT / "notebooks" / f"{Path(name).stem}.ipynb"
        if not src.exists():
            raise FileNotFoundError(f"no notebook {src}")
        dst = out_dir / src.name
        t0 = time.time()
        print(f"== {src.name} (profile {params['profile']}) -> {dst}", flush=True)
        pm.execute_notebook(str(src), str(dst), parameters=params, cwd=str(src.parent), progress_bar=False,
                            log_output=False)
        print(f"   done in {time.time() - t0:.0f} s", flush=True)
        done.append(dst)
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        run(args[0], args[1:] or None)
    except config.ProfileError as e:
        print(f"profile error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
