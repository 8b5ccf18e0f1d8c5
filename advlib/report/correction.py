"""Figures of Sect. 5.3 (notebook 04): Figs. 5-9."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import correct
from ..dataset import load_images
from .style import SavedFigure, mean_min_max_bars, save, styled


@styled
def fig5_heuristic(d, path: str | Path, heuristic_qfs: list[int], groups: list[str] = ("jpeg", "scaling"),
                   n: int = 4) -> SavedFigure:
    """Fig. 5: voted top-5 labels (Step 1, over the operation ``groups``), their QFs S_QF (Step
    2, searching ``heuristic_qfs``), and the Step-3 candidates, for ``n`` images."""
    voted, s_qf, _ = correct.heuristic_steps(d.top5[:, 1:], d.op_names, heuristic_qfs, groups=groups)
    kinds, attack = d.manifest["kind"].to_numpy(), d.manifest["attack"].to_numpy()
    picks = list(np.flatnonzero(kinds == "normal")[:1])
    for a in dict.fromkeys(attack[kinds != "normal"]):  # adversarial examples of distinct attacks
        if len(picks) < n:
            picks.append(int(np.flatnonzero(attack == a)[0]))
    fig, axes = plt.subplots(1, len(picks), figsize=(3.3 * len(picks), 3.2), squeeze=False)
    colors = {"max": "tab:green", "median": "tab:blue", "2ndmin": "tab:orange", "min": "tab:red"}
    for ax, i in zip(axes[0], picks):
        ax.bar(range(5), np.nan_to_num(s_qf[i], nan=0), color="lightgrey")
        ax.set_xticks(range(5), [str(v) for v in voted[i]], rotation=45)
        for j, (k, c) in enumerate(colors.items()):  # coinciding lines stay visible: wider ones first
            q = correct.choose_qf(s_qf[i:i + 1], k)[0]
            ax.axhline(q, color=c, ls=(0, (4, 2)), lw=4.0 - 0.9 * j, alpha=0.9, label=f"{k} = {q}")
        ax.set_ylim(min(heuristic_qfs) - 5, 101)
        ax.set_title(f"{d.manifest['attack'].iat[i]} (label {d.manifest['label'].iat[i]})", fontsize=9)
        ax.set_xlabel("voted top-5 label")
        ax.legend(fontsize=6, loc="lower left")
    axes[0, 0].set_ylabel("highest QF whose top-5 holds the label")
    return save(fig, path)


@styled
def fig6_label_correction(lc: pd.DataFrame, path: str | Path, attack_order: list[str],
                          paper: dict | None = None) -> SavedFigure:
    """Fig. 6: % of images whose label is in the voted top-5, per op set (top) and per attack and
    op set (bottom, with each attack's n). ``paper``: :data:`advlib.paper.LABEL_CORRECTION`,
    drawn as marks on the JPEG+scaling bars."""
    fig, axes = plt.subplots(2, 1, figsize=(10, 7.4), gridspec_kw={"height_ratios": [1, 1.1]})
    g = lc.groupby(["op_set", "type"])[["correct", "n"]].sum().reset_index()
    g["pct"] = 100 * g["correct"] / g["n"]
    order = list(dict.fromkeys(lc["op_set"]))
    n = g.groupby("type")["n"].max()
    sns.barplot(data=g, x="op_set", y="pct", hue="type", order=order, hue_order=["adversarial", "normal"],
                ax=axes[0])
    axes[0].set_ylabel("% with the label in\nthe corrected top-5")
    axes[0].set_xlabel("")
    axes[0].set_ylim(0, 112)
    for c in axes[0].containers:
        axes[0].bar_label(c, fmt="%.1f", fontsize=7, label_type="center", color="white")
    if paper and "JPEG+scaling" in order:
        x = order.index("JPEG+scaling")
        axes[0].plot([x - 0.2], [paper["adversarial_corrected"]], "k_", ms=18, mew=2,
                     label=f"paper: {paper['adversarial_corrected']}% adversarial corrected")
        axes[0].plot([x + 0.2], [100 - paper["normal_harmed"]], "kx", ms=8, mew=2,
                     label=f"paper: {100 - paper['normal_harmed']:.2f}% normal kept")
    handles, labels = axes[0].get_legend_handles_labels()
    labels = [f"{lab} (n={n[lab]})" if lab in n.index else lab for lab in labels]
    axes[0].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    p = lc.pivot_table(index="op_set", columns="attack", values="correct_pct", sort=False)
    cols = [a for a in attack_order if a in p.columns]
    p = p[cols]
    n_attack = lc.groupby("attack")["n"].max()
    sns.heatmap(p, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=axes[1],
                cbar_kws={"label": "% corrected\n('none': normal kept)"})
    axes[1].set_xticklabels([f"{a}\n(n={n_attack[a]})" for a in cols], rotation=90, fontsize=7)
    axes[1].set_yticklabels(axes[1].get_yticklabels(), rotation=0)
    axes[1].set_ylabel("")
    axes[1].set_xlabel("attack ('none' = normal images)")
    fig.tight_layout()
    return save(fig, path)


@styled
def fig7_examples(d, root: Path, qf_min: np.ndarray, path: str | Path, n: int = 5) -> SavedFigure:
    """Fig. 7: normal, corrected normal, adversarial, corrected adversarial (heuristic-min)."""
    m = d.manifest
    adv_rows = np.flatnonzero((m["kind"] != "normal").to_numpy())
    adv_rows = adv_rows[np.unique(m["attack"].to_numpy()[adv_rows], return_index=True)[1]][:n]
    row_of = pd.Series(np.arange(len(m)), index=m["image_id"])
    src_rows = row_of.loc[m["source_id"].to_numpy()[adv_rows]].to_numpy()
    norm = load_images(root, m["path"].to_numpy()[src_rows].tolist())
    adv = load_images(root, m["path"].to_numpy()[adv_rows].tolist())
    panels = [(norm, "normal", None), (correct.jpeg_correct(norm, qf_min[src_rows]), "corrected", src_rows),
              (adv, "adversarial", None), (correct.jpeg_correct(adv, qf_min[adv_rows]), "corrected", adv_rows)]
    fig, axes = plt.subplots(4, len(adv_rows), figsize=(2.1 * len(adv_rows), 8.8), squeeze=False)
    for r, (imgs, title, rows) in enumerate(panels):
        for j in range(len(adv_rows)):
            axes[r, j].imshow(imgs[j].permute(1, 2, 0).numpy())
            t = title if rows is None else f"{title} (QF {qf_min[rows[j]]})"
            if r == 2:
                t = m["attack"].iat[adv_rows[j]]
            axes[r, j].set_title(t, fontsize=8)
            axes[r, j].axis("off")
    return save(fig, path)


@styled
def fig8_quality(quality: pd.DataFrame, path: str | Path) -> SavedFigure:
    """Fig. 8: mean PSNR / SSIM of corrected adversarial images vs their normal source (min-max bars)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    order = list(dict.fromkeys(quality["method"]))
    for ax, col, color in ((axes[0], "psnr", "tab:blue"), (axes[1], "ssim", "tab:red")):
        mean_min_max_bars(ax, quality, "method", col, order, color, rotation=30)
    # the paper's Fig. 8 (Sect. 5.3.2): "the heuristic - min approach had higher PSNR and SSIM than the
    # fixed QF approach"; we say whether that holds here
    means = quality.groupby("method")[["psnr", "ssim"]].mean()
    fixed = [m for m in means.index if m.startswith("QF ")]
    for ax, col in ((axes[0], "psnr"), (axes[1], "ssim")):
        if "Heuristic - min" in means.index and fixed:
            ok = means.loc["Heuristic - min", col] > means.loc[fixed, col].max()
            ax.set_title(f"paper: heuristic-min above every fixed QF; here: {'yes' if ok else 'no'} "
                         f"(best fixed: {means.loc[fixed, col].idxmax()})", fontsize=8)
    fig.suptitle("Corrected adversarial images vs their normal source (mean, min-max bars)", y=1.02)
    return save(fig, path)


@styled
def fig9_qf_histogram(qf: np.ndarray, is_adv: np.ndarray, path: str | Path) -> SavedFigure:
    """Fig. 9: histogram of the QFs chosen by heuristic-min, normal vs adversarial (% of each)."""
    df = pd.DataFrame({"QF": qf, "type": np.where(is_adv, "adversarial", "normal")})
    counts = df.groupby(["type", "QF"]).size().rename("n").reset_index()
    total = counts.groupby("type")["n"].transform("sum")
    counts["pct"] = 100 * counts["n"] / total
    counts["type"] = counts["type"] + " (n=" + total.astype(str) + ")"
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.barplot(data=counts, x="QF", y="pct", hue="type", ax=ax)
    # the paper (Sect. 5.3.2): normal images mostly got QF 100; more than two-thirds of the
    # adversarial ones a QF from 75 to 95
    normal_100 = 100 * np.mean(qf[~is_adv] == 100) if (~is_adv).any() else np.nan
    adv_75_95 = 100 * np.mean((qf[is_adv] >= 75) & (qf[is_adv] <= 95)) if is_adv.any() else np.nan
    ax.set_title(f"paper: normal mostly QF 100, adversarial > 67% at QF 75-95; here: normal {normal_100:.0f}% "
                 f"at QF 100, adversarial {adv_75_95:.0f}% at QF 75-95", fontsize=8)
    ax.set_ylabel("% of images")
    ax.set_xlabel("JPEG quality chosen by heuristic-min")
    return save(fig, path)
