"""Figures of notebook 05 (adaptive attacks, beyond the paper)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .style import SavedFigure, save, styled

#: Line style per attack of :data:`advlib.experiments.adaptive.ATTACKS`: non-adaptive dashed.
_STYLE = {"pgd": dict(color="black", ls="--", marker="o"),
          "high_confidence": dict(color="tab:orange", marker="s"),
          "eot_correction": dict(color="tab:red", marker="^"),
          "eot_kornia": dict(color="tab:brown", marker="v", ls="-."),
          "detector_cheap": dict(color="tab:purple", marker="D"),
          "detector_paper": dict(color="tab:green", marker="*", ms=10)}


def _panels(table: pd.DataFrame, path: str | Path, panels: list[tuple[str, str]], title: str) -> SavedFigure:
    t = table[table["attack"] != "none"]
    clean = table[table["attack"] == "none"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), sharex=True, squeeze=False)
    for ax, (col, label) in zip(axes[0], panels):
        for name, g in t.groupby("attack", sort=False):
            g = g.sort_values("eps_levels")
            tag = "" if g["adaptive"].iloc[0] else " (non-adaptive)"
            ax.plot(g["eps_levels"], g[col], label=f"{name}{tag}", **{"lw": 1.6, "ms": 5, **_STYLE.get(name, {})})
        if col.replace("_detects_pct", "_flagged_pct") in clean and len(clean) and col.endswith("_detects_pct"):
            ax.axhline(clean[col.replace("_detects_pct", "_flagged_pct")].iloc[0], color="grey", ls=":", lw=1,
                       label="false positives (normal images)")
        elif col in clean and len(clean) and col.endswith("_accuracy_pct"):
            ax.axhline(clean[col].iloc[0], color="grey", ls=":", lw=1, label="normal images")
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
        ticks = sorted(t["eps_levels"].unique())
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.set_xlabel("L-inf budget (8-bit levels)")
        ax.set_ylabel(label)
        ax.set_ylim(-3, 103)
    n = int(t["n_images"].max()) if len(t) else 0
    fig.suptitle(f"{title} (n={n} images per point; detection and restore rates among successful adversarials)",
                 fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes[0, 1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    return save(fig, path)


@styled
def fig_adaptive_detection(table: pd.DataFrame, path: str | Path) -> SavedFigure:
    """Attack success after saving and the detection rate of the paper's detector, the cheap
    detector and feature squeezing against the budget, per attack (``table``:
    :func:`advlib.experiments.adaptive.summary`)."""
    return _panels(table, path, [("success_saved_pct", "adversarial after saving (%)"),
                                 ("paper_detector_detects_pct", "paper's detector (all 38): detected (%)"),
                                 ("cheap_detector_detects_pct", "cheap detector: detected (%)"),
                                 ("feature_squeezing_detects_pct", "feature squeezing: detected (%)")],
                   "Detection under non-adaptive and adaptive attacks")


@styled
def fig_adaptive_correction(table: pd.DataFrame, path: str | Path) -> SavedFigure:
    """Accuracy (reference label in the top-5) after label correction and after image correction,
    over all attacked images, against the budget, per attack."""
    return _panels(table, path, [("success_saved_pct", "adversarial after saving (%)"),
                                 ("label_correction_accuracy_pct", "label correction: label in top-5 (%)"),
                                 ("image_correction_accuracy_pct",
                                  "image correction (heuristic-min): label in top-5 (%)")],
                   "Correction under non-adaptive and adaptive attacks")
