"""The first cell of every notebook: :func:`setup` (profile, numerics, folders, display options)."""

from __future__ import annotations

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
