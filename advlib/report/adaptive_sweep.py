"""Figures of notebook 05 (adaptive attacks, beyond the paper): defeat rates with their exact
95% intervals against the budget, and the convergence study."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import SavedFigure, save, styled

#: Line style per attack of :data:`advlib.experiments.adaptive_sweep.ATTACKS`: non-adaptive dashed,
#: gradient-free dotted, transfer dash-dotted.
_STYLE = {"pgd": dict(color="black", ls="--", marker="o"),
          "high_confidence": dict(color="tab:orange", marker="s"),
          "eot_correction": dict(color="tab:red", marker="^"),
          "eot_kornia": dict(color="tab:brown", marker="v", ls="-."),
          "detector_cheap": dict(color="tab:purple", marker="D"),
          "detector_paper": dict(color="tab:green", marker="*", ms=10),
          "squeezing": dict(color="tab:cyan", marker="P"),
          "pipeline": dict(color="tab:pink", marker="X"),
          "transfer_lite1": dict(color="tab:olive", marker="h", ls="-."),
          "square": dict(color="grey", marker="o", ls=":"),
          "square_correction": dict(color="tab:red", marker="^", ls=":", mfc="none"),
          "square_detector": dict(color="tab:purple", marker="D", ls=":", mfc="none")}

_TITLES = {"paper_detector": "paper's detector (all 38)", "cheap_detector": "cheap detector",
           "feature_squeezing": "feature squeezing", "label_correction": "label correction",
           "image_correction": "image correction (heuristic-min)",
           "pipeline_cheap": "cheap detector + label correction",
           "pipeline_paper": "paper's detector + label correction"}


def _panels(table: pd.DataFrame, path: str | Path, defences: list[str], title: str, level: float) -> SavedFigure:
    t = table[table["attack"] != "none"]
    t = t[t["steps"] == t.groupby("attack")["steps"].transform("max")] if "steps" in t else t
    clean = table[table["attack"] == "none"]
    fig, axes = plt.subplots(1, len(defences), figsize=(3.6 * len(defences), 3.8), sharex=True, squeeze=False)
    ticks = sorted(t["eps_levels"].unique())
    for ax, defence in zip(axes[0], defences):
        col = f"defeats_{defence}"
        for i, (name, g) in enumerate(t.groupby("attack", sort=False)):
            g = g.sort_values("eps_levels")
            tag = "" if g["adaptive"].iloc[0] else " (non-adaptive)"
            err = np.vstack([g[f"{col}_pct"] - g[f"{col}_ci_low"], g[f"{col}_ci_high"] - g[f"{col}_pct"]])
            ax.errorbar(g["eps_levels"] * (1 + 0.02 * (i % 5 - 2)), g[f"{col}_pct"], yerr=err,  # dodged
                        label=f"{name}{tag}", capsize=2, elinewidth=0.8,
                        **{"lw": 1.4, "ms": 5, **_STYLE.get(name, {})})
        if len(clean) and f"{col}_pct" in clean:
            ax.axhline(clean[f"{col}_pct"].iloc[0], color="grey", ls=":", lw=1, label="normal images (no attack)")
        ax.axhline(level, color="red", lw=0.8, alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.set_xlabel("L-inf budget (8-bit levels)")
        ax.set_title(_TITLES.get(defence, defence), fontsize=9)
        ax.set_ylim(-3, 103)
    axes[0, 0].set_ylabel("attacked images it lets through (%)")
    n = int(t["n_images"].max()) if len(t) else 0
    fig.suptitle(f"{title} (n={n} images of distinct photos per point, exact 95% intervals; "
                 f"red line: {level:g}%, the breaking level)", fontsize=9)
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=7, bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    return save(fig, path)


@styled
def fig_adaptive_detection(table: pd.DataFrame, path: str | Path, level: float = 50.0) -> SavedFigure:
    """Per detector (paper's, cheap, feature squeezing): the share of attacked images that are
    adversarial after saving and not flagged, against the budget, per attack, with exact 95%
    intervals (``table``: :func:`advlib.experiments.adaptive_sweep.summary`)."""
    return _panels(table, path, ["paper_detector", "cheap_detector", "feature_squeezing"],
                   "Detectors under non-adaptive and adaptive attacks", level)


@styled
def fig_adaptive_correction(table: pd.DataFrame, path: str | Path, level: float = 50.0) -> SavedFigure:
    """Per correction and two-level pipeline: the share of attacked images whose answer stays
    wrong (adversarial after saving and not restored; for a pipeline, its final top-5 lacks the
    reference label), against the budget, per attack, with exact 95% intervals."""
    return _panels(table, path, ["label_correction", "image_correction", "pipeline_cheap", "pipeline_paper"],
                   "Corrections and detect-then-correct under non-adaptive and adaptive attacks", level)


@styled
def fig_adaptive_convergence(conv: pd.DataFrame, curves: dict[tuple[str, float], np.ndarray],
                             path: str | Path) -> SavedFigure:
    """The convergence study: left, the loss of the longest single-start run per attack and
    budget, per step (median over the images, inter-quartile band); right, the rate at which each
    attack defeats its target against the step count (single start: line; with restarts: open
    marker at the same steps), with exact 95% intervals (``conv``:
    :func:`advlib.experiments.adaptive_sweep.convergence_table`)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for (name, eps), h in curves.items():
        style = {k: v for k, v in _STYLE.get(name, {}).items() if k in ("color", "ls")}
        med, q1, q3 = np.median(h, 1), np.percentile(h, 25, 1), np.percentile(h, 75, 1)
        steps = np.arange(len(med))
        lw = 1.0 if eps == min(e for _, e in curves) else 2.0
        a.plot(steps, med, lw=lw, label=f"{name}, {eps:g}/255", **style)
        a.fill_between(steps, q1, q3, alpha=0.12, color=style.get("color", "grey"))
    a.set_xlabel("PGD step")
    a.set_ylabel("loss (top-5 margin + detector hinge; lower is better)")
    a.set_xscale("symlog", linthresh=10)
    a.legend(fontsize=7)
    for (name, eps), g in conv.groupby(["attack", "eps_levels"], sort=False):
        style = {k: v for k, v in _STYLE.get(name, {}).items() if k in ("color", "marker")}
        one = g[g.restarts == 1].sort_values("steps")
        err = np.vstack([one.defeated_pct - one.ci_low, one.ci_high - one.defeated_pct])
        ls = "-" if eps == conv.eps_levels.max() else "--"
        b.errorbar(one.steps, one.defeated_pct, yerr=err, capsize=2, ls=ls, label=f"{name}, {eps:g}/255", **style)
        more = g[g.restarts > 1]
        if len(more):
            b.scatter(more.steps * 1.08, more.defeated_pct, facecolors="none", edgecolors=style.get("color", "k"),
                      marker=style.get("marker", "o"), s=60, label=f"{name}, {eps:g}/255, "
                      f"{int(more.restarts.iloc[0])} restarts")
    b.set_xscale("log")
    b.set_xlabel("PGD steps")
    b.set_ylabel("defeats its target (%)")
    b.set_ylim(-3, 103)
    b.legend(fontsize=6, ncol=2)
    n = int(conv.n_images.max()) if len(conv) else 0
    fig.suptitle(f"Convergence of the attacks (n={n} images of distinct photos)", fontsize=9)
    fig.tight_layout()
    return save(fig, path)
