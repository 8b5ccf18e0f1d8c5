"""The figures' look (applied per figure, no global state), saving (PNG + PDF), shared helpers."""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler


def theme() -> dict:
    """The figures' look as matplotlib rc settings: seaborn's whitegrid style, paper context and
    deep palette. Applied only while a figure of this module is drawn (:func:`styled`):
    importing ``advlib.report`` changes no global state (backend, rcParams, seaborn theme)."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper")}
    rc["axes.prop_cycle"] = cycler(color=sns.color_palette("deep"))
    rc["font.family"] = ["sans-serif"]
    return rc


def styled(func):
    """Draw ``func``'s figure under :func:`theme`, leaving the caller's settings as they were."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(theme()):
            return func(*args, **kwargs)

    return wrapper


class SavedFigure:
    """A figure saved by :func:`save`: ``.figure`` (the matplotlib Figure, to restyle and save
    again), ``.path`` (the PNG; a PDF sits beside it). ``str()`` / ``os.fspath()`` give the PNG's
    path, and Jupyter shows the PNG (``_repr_png_``) whatever the backend."""

    def __init__(self, figure, path: Path):
        self.figure, self.path = figure, path

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"SavedFigure({str(self.path)!r})"

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()


#: Formats every figure is saved in (the PNG is what the README shows; the PDF is for papers).
FORMATS = ("png", "pdf")


def save(fig, path: str | Path) -> SavedFigure:
    """Save ``fig`` as ``path`` (PNG) and the same name with ``.pdf``, each atomically; close it
    in pyplot (the Figure object stays usable) and return a :class:`SavedFigure`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for fmt in FORMATS:
        out = path.with_suffix(f".{fmt}")
        tmp = out.with_name(f".{out.stem}.tmp.{fmt}")
        fig.savefig(tmp, dpi=110, bbox_inches="tight", **({"metadata": {"CreationDate": None}} if fmt == "pdf" else {}))
        tmp.replace(out)
    plt.close(fig)
    return SavedFigure(fig, path)


#: Axis labels with units.
UNITS = {"psnr": "PSNR (dB)", "ssim": "SSIM (0-1)"}


def mean_min_max_bars(ax, values: pd.DataFrame, by: str, col: str, order: list[str], color: str,
                       rotation: int) -> None:
    """Bars of the mean of ``col`` per ``by`` group (in ``order``), error bars from min to max;
    each tick label carries its group's n (images with a finite value)."""
    g = values.replace([np.inf], np.nan).groupby(by)[col].agg(["mean", "min", "max", "count"]).reindex(order)
    x = np.arange(len(g))
    ax.bar(x, g["mean"], color=color, alpha=0.8)
    ax.errorbar(x, g["mean"], yerr=[g["mean"] - g["min"], g["max"] - g["mean"]], fmt="none", ecolor="k",
                capsize=3, lw=1)
    ax.set_xticks(x, [f"{k} (n={int(c) if c == c else 0})" for k, c in zip(g.index, g["count"])],
                  rotation=rotation, ha="right")
    ax.set_ylabel(UNITS.get(col, col))


def beside(ours: pd.DataFrame, theirs: pd.DataFrame, on: list[str], cols: list[str]) -> pd.DataFrame:
    """Our values and the paper's side by side: columns ``<col>`` and ``<col> (paper)``."""
    t = theirs[on + cols].rename(columns={c: f"{c} (paper)" for c in cols})
    out = ours[on + cols].merge(t, on=on, how="outer")
    order = on + [x for c in cols for x in (c, f"{c} (paper)")]
    return out[order]
