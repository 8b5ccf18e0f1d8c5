"""Figures of Sect. 4.5 (notebook 03): ROC, per-attack detection, format robustness, FPR vs confidence."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import roc_auc_score, roc_curve

from .style import SavedFigure, save, styled


@styled
def fig_roc(scores: dict[str, tuple], path: str | Path, degenerate: set | frozenset = frozenset(),
            title: str = "ROC, seen attacks (out of fold, combination setting)") -> SavedFigure:
    """ROC curves: ``scores`` maps a label to ``(y_true, score)``; labels in ``degenerate``
    (constant predictors at their threshold) are drawn grey and dashed and say so. Curves that
    coincide are drawn with decreasing widths so that none hides another; the legend sits
    outside the axes."""
    fig, ax = plt.subplots(figsize=(8.4, 4.6))
    n = len(scores)
    for i, (label, (y, s)) in enumerate(scores.items()):
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        text = f"{label} (AUC {roc_auc_score(y, s):.3f}, n={len(y)})"
        style = dict(lw=1.0 + 2.0 * (n - i) / n, alpha=0.85)
        if label in degenerate:
            style.update(color="grey", ls="--")
            text += " [degenerate at its threshold]"
        ax.plot(fpr, tpr, label=text, **style)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set_xlabel("false positive rate (normal flagged)")
    ax.set_ylabel("detection rate (adversarial flagged)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return save(fig, path)


@styled
def fig_detection_per_attack(per_attack: pd.DataFrame, path: str | Path, order: list[str],
                             degenerate: set | frozenset = frozenset(), col: str = "flagged_calibrated_pct") -> SavedFigure:
    """% of each attack's images flagged (out of fold), per detector ('none': normal images,
    i.e. the FPR); ``n`` under each attack name; degenerate detectors marked."""
    p = per_attack.pivot_table(index="detector", columns="attack", values=col, sort=False)
    n = per_attack.groupby("attack")["n"].max()
    p = p[[a for a in order if a in p.columns]]
    p.index = [f"{d} [degenerate]" if d in degenerate else d for d in p.index]
    fig, ax = plt.subplots(figsize=(0.6 * p.shape[1] + 4, 0.45 * p.shape[0] + 1.8))
    sns.heatmap(p, annot=True, fmt=".0f", cmap="rocket_r", vmin=0, vmax=100, ax=ax,
                cbar_kws={"label": "% flagged as adversarial"})
    ax.set_xticklabels([f"{a}\n(n={n[a]})" for a in p.columns], rotation=90, fontsize=7)
    ax.set_xlabel("attack ('none' = normal images: the false-positive rate)")
    ax.set_ylabel("")
    ax.set_title("flagged at the threshold calibrated to 5% FPR on dev-fold normal images" if col.startswith("flagged_cal")
                 else "flagged at the detector's own threshold", fontsize=9)
    return save(fig, path)


@styled
def fig_format_robustness(table: pd.DataFrame, path: str | Path) -> SavedFigure:
    """Flag rate of the detector on normal and adversarial images re-encoded in other formats."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, col, title in ((axes[0], "flagged_calibrated_pct", "calibrated threshold (5% FPR on dev normals)"),
                           (axes[1], "flagged_05_pct", "threshold 0.5 (paper)")):
        sns.barplot(table, x="format", y=col, hue="type", ax=ax, palette={"normal": "tab:blue", "adversarial": "tab:red"})
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("% flagged as adversarial")
        ax.tick_params(axis="x", rotation=30)
        ax.set_ylim(0, 105)
    n = table.groupby("type")["n_images"].max()
    fig.suptitle(f"Re-encoded images (out of fold; n = {n.get('normal', 0)} normal, {n.get('adversarial', 0)} adversarial)",
                 fontsize=10)
    return save(fig, path)


@styled
def fig_fpr_confidence(prob: np.ndarray, score: np.ndarray, threshold: np.ndarray, path: str | Path) -> SavedFigure:
    """Normal images: the detector's out-of-fold score against the classifier's top-1 probability."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    flagged = score >= threshold
    ax.scatter(prob[~flagged], score[~flagged], s=12, c="tab:blue", label=f"not flagged (n={int((~flagged).sum())})")
    ax.scatter(prob[flagged], score[flagged], s=14, c="tab:red", marker="x", label=f"flagged (n={int(flagged.sum())})")
    ax.set_xlabel("classifier's top-1 softmax probability")
    ax.set_ylabel("detector score (P(adversarial))")
    ax.set_title("Normal images, out of fold: flagged = P(adversarial) >= the detector's threshold (0.5)", fontsize=8)
    ax.legend(fontsize=7)
    return save(fig, path)


@styled
def fig_detection_cost(table: pd.DataFrame, path: str | Path, references: dict[str, dict] | None = None,
                       max_passes: int | None = None) -> SavedFigure:
    """Accuracy, AUC and detection rate at 5% false positives (pooled out-of-fold ROC) against classifier
    passes per image (log axis), one line per feature (``table``: :func:`advlib.experiments.cost_curve`,
    fractions, with ``*_ci_low/high``); ``references``: label -> a row of metrics with ``passes``
    (e.g. feature squeezing), drawn as markers; ``max_passes``: the target, a vertical line."""
    metrics = [("accuracy", "accuracy (threshold 0.5)"), ("auc", "AUC"),
               ("tpr_at_5fpr", "detection rate at 5% FPR (out of fold)")]
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.0), sharex=True)
    palette = dict(zip(table["feature"].unique(), sns.color_palette("colorblind", table["feature"].nunique())))
    for ax, (col, label) in zip(axes, metrics):
        for feature, g in table.sort_values("passes").groupby("feature", sort=False):
            ax.plot(g["passes"], g[col], marker="o", ms=4, color=palette[feature], label=feature)
            lo, hi = f"{col}_ci_low", f"{col}_ci_high"
            if lo in g and g[lo].notna().any():
                ax.fill_between(g["passes"], g[lo], g[hi], color=palette[feature], alpha=0.12, lw=0)
        for i, (name, row) in enumerate((references or {}).items()):
            if pd.notna(row.get(col)):
                ax.plot([row["passes"]], [row[col]], marker="*^sD"[i % 4], ms=11, color="black", ls="none",
                        label=name)
        if max_passes:
            ax.axvline(max_passes, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks([2, 3, 4, 6, 8, 16, 39], ["2", "3", "4", "6", "8", "16", "39"])
        ax.set_xlabel("classifier passes per image")
        ax.set_ylabel(label)
    n = int(table["n_images"].iloc[0]) if "n_images" in table else None
    fig.suptitle("Detection vs cost, out of fold (combination setting"
                 + (f", n={n} images" if n else "") + "); bands: 95% cluster-bootstrap CI", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=8, bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    return save(fig, path)
