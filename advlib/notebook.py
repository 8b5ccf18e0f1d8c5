"""The first cell of every notebook: :func:`setup` (profile, numerics, folders, display options)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from . import profiles, runtime


def setup(profile: str, overrides: dict[str, Any] | None = None, *, display_columns: int = 30
          ) -> tuple[dict[str, Any], dict[str, Path], str]:
    """Load the profile, pin the numerics, create the run's folders: returns ``(P, DIRS, DEVICE)``.

    In this order, because the numerics must be set before torch and numpy initialise
    (:func:`advlib.runtime.pin_numerics`): the profile is read and validated without importing
    anything heavy, then the profile's ``numerics`` and ``threads`` are applied, then its
    component names are checked against the registries (which imports torch and Foolbox).
    ``P``: the parameters (:func:`advlib.profiles.load_profile`); ``DIRS``: the run's folders
    (:func:`advlib.profiles.out_dirs`); ``DEVICE``: ``cpu`` or ``cuda``. Prints one line: profile,
    classifiers, device, numerics.
    """
    raw = profiles.read_raw(profile, overrides)  # the YAML only: loading the profile imports torch (auto batch size)
    numerics = runtime.pin_numerics(raw.get("numerics", profiles.OPTIONAL["numerics"]),
                                    raw.get("threads", profiles.OPTIONAL["threads"]))
    params = profiles.load_profile(profile, **(overrides or {}))  # now the registries may load torch
    warnings.filterwarnings("ignore", category=UserWarning)
    import pandas as pd  # local: after the pin (pandas loads numpy)

    pd.set_option("display.width", 200, "display.max_columns", display_columns)
    dirs = profiles.out_dirs(params)
    device = runtime.resolve_device(params["device"])
    print(f"profile {params['profile']} (run {profiles.run_name(params)}), classifiers {', '.join(params['classifiers'])}, "
          f"device {device}; {numerics.describe()}")
    return params, dirs, device


def summary(params: dict[str, Any], names: list[str]) -> str:
    """The last cell of a notebook (``# NBVAL_CHECK_OUTPUT``: nbval compares it with the committed
    output of the smoke run): per table the run wrote, its shape and columns and, for a table with
    a reference, whether every number is within the measured tolerance
    (``tables/<run>/reproducibility.csv``). Nothing machine-dependent is printed: a rerun on any
    CPU prints the same lines unless a table changed shape or moved beyond its tolerance."""
    import pandas as pd  # local: after the pin (pandas loads numpy)

    from .report.tables import path  # local: the report loads matplotlib and the registries (after the pin)

    report_file = profiles.out_dirs(params)["tables"] / "reproducibility.csv"
    report = pd.read_csv(report_file) if report_file.exists() else None
    lines = []
    for name in names:
        p = path(name, params)
        if not p.exists():
            lines.append(f"{name}: missing")
            continue
        if p.suffix == ".json":
            lines.append(f"{name}: keys {', '.join(sorted(json.loads(p.read_text())))}")
            continue
        t = pd.read_csv(p)
        line = f"{name}: {len(t.columns)} columns"
        if report is not None and name in set(report["table"]):
            rows = report[report["table"] == name]
            line += "; every number within tolerance" if rows["within"].all() else "; BEYOND TOLERANCE"
        lines.append(line)
    return "\n".join(lines)
