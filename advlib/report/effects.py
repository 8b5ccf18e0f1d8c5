"""Sect. 3 (notebook 02): Table 3's counts (:func:`operation_effects`), Fig. 4 and the restored heatmap."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from .. import paper
from ..ops import OPERATION_GROUPS, OPERATIONS
from .style import SavedFigure, save, styled


def operation_effects(manifest: pd.DataFrame, top5: np.ndarray, op_names: list[str]) -> pd.DataFrame:
    """Table 3 (long form): per classifier, image set (normal or attack) and operation.

    - ``top1_unchanged``: the top-1 label after the operation equals the one before it;
    - ``misclassified``: the reference label is not in the top-5 (the paper's Table 3 counts);
    - ``restored``: the top-1 after the operation is the original top-1 of the normal image
      (for adversarial images: the operation undid the attack).
    The ``original`` rows are before any operation.
    """
    label = manifest["label"].to_numpy()
    orig = manifest["top1"].to_numpy()
    sets = np.where(manifest["kind"] == "normal", "normal", manifest["attack"])
    rows = []
    names = ["original"] + list(op_names)
    for j, op in enumerate(names):
        t = top5[:, j]
        frame = pd.DataFrame({
            "classifier": manifest["classifier"].to_numpy(), "set": sets, "kind": manifest["kind"].to_numpy(),
            "top1_unchanged": t[:, 0] == top5[:, 0, 0],
            "misclassified": ~(t == label[:, None]).any(1),
            "restored": t[:, 0] == orig,
        })
        g = frame.groupby(["classifier", "set", "kind"]).agg(
            n=("misclassified", "size"), top1_unchanged=("top1_unchanged", "sum"),
            misclassified=("misclassified", "sum"), restored=("restored", "sum")).reset_index()
        g.insert(3, "op", op)
        rows.append(g)
    out = pd.concat(rows, ignore_index=True)
    for c in ("top1_unchanged", "misclassified", "restored"):
        out[f"{c}_pct"] = (100 * out[c] / out["n"]).round(2)
    return out


def op_axis(op_names: list[str]) -> pd.DataFrame:
    """Each operation's group and parameter (the x axis of Fig. 4)."""
    return pd.DataFrame({"op": op_names, "group": [OPERATIONS[o].group for o in op_names],
                         "value": [OPERATIONS[o].value for o in op_names]})


#: Table 3's columns (the operations the paper's Table 3 shows).
TABLE3_OPS = ["original", "jpeg_100", "jpeg_80", "jpeg_60", "jpeg_40", "scale_0.75", "scale_0.85", "scale_0.95",
              "scale_1.05", "scale_1.15", "scale_1.25", "blur_3", "rotate_2", "rotate_5"]


def table3_counts(effects: pd.DataFrame, shown: list[str] = TABLE3_OPS) -> pd.DataFrame:
    """Table 3 in the paper's layout: misclassified images per (classifier, set) and operation."""
    return effects[effects.op.isin(shown)].pivot_table(index=["classifier", "set"], columns="op",
                                                       values="misclassified", sort=False)[shown]


def table3_percent(effects: pd.DataFrame, shown: list[str] = TABLE3_OPS) -> pd.DataFrame:
    """Table 3 as percentages of each set, ours (all classifiers together) above the paper's
    ResNet-50 below (its blur "3x3" read as ``blur_3``; its sets: 1,000 normal images, each
    attack's successes)."""
    ours = effects[effects.op.isin(shown)].groupby(["set", "op"])[["misclassified", "n"]].sum()
    ours = (100 * ours.misclassified / ours.n).unstack("op")[shown].round(1)
    t3 = paper.beside_table3(effects)
    theirs = t3[t3.op.isin(shown)].drop_duplicates(["set", "op"]).pivot(index="set", columns="op",
                                                                        values="paper_misclassified_pct")[shown].round(1)
    return pd.concat({"ours": ours, "paper (ResNet-50)": theirs.reindex(ours.index)})


def table3_by_classifier(effects: pd.DataFrame, shown: list[str] = TABLE3_OPS) -> pd.DataFrame:
    """Table 3 as % misclassified (label out of the top-5) for each classifier and for all of them
    pooled (``classifier`` "all", what Fig. 4 plots): one row per (classifier, set), one column
    per operation of the paper's Table 3, with the set's size ``n``."""
    e = effects[effects.op.isin(shown)]
    parts = [e] + ([e.assign(classifier="all")] if e["classifier"].nunique() > 1 else [])
    g = pd.concat(parts).groupby(["classifier", "set", "op"], sort=False)[["misclassified", "n"]].sum()
    pct = (100 * g.misclassified / g.n).round(2).unstack("op")[[o for o in shown if o in set(e.op)]]
    n = g.n.groupby(["classifier", "set"], sort=False).max()
    return pct.assign(n=n).reset_index()


def group_summary(effects: pd.DataFrame, op_names: list[str]) -> pd.DataFrame:
    """% misclassified per operation group, normal against adversarial images (all classifiers)."""
    e = effects[effects.op != "original"].merge(op_axis(op_names), on="op")
    e["type"] = e.kind.where(e.kind == "normal", "adversarial")
    s = e.groupby(["group", "type"])[["misclassified", "n"]].sum()
    return (100 * s.misclassified / s.n).unstack("type").round(1)


GROUP_TITLES = {g: OPERATION_GROUPS[g].title for g in ("jpeg", "scaling", "blur", "rotation")}


@styled
def fig4_operation_effects(effects: pd.DataFrame, path: str | Path, by: str = "type") -> SavedFigure:
    """Fig. 4: % of images misclassified (label not in top-5) after each operation, all classifiers.

    ``by='type'``: normal vs adversarial (the paper's figure); ``by='kind'``: normal vs targeted
    vs non-targeted.
    """
    e = effects[effects["op"] != "original"].copy()
    e["images"] = np.where(e["kind"] == "normal", "normal", "adversarial" if by == "type" else e["kind"])
    n = e[e["op"] == e["op"].iloc[0]].groupby("images")["n"].sum()
    e["images"] = e["images"].map(lambda k: f"{k} (n={n[k]})")
    g = e.groupby(["images", "op"])[["misclassified", "n"]].sum().reset_index()
    g["pct"] = 100 * g["misclassified"] / g["n"]
    g = g.merge(op_axis(sorted(set(g["op"]), key=list(e["op"]).index)), on="op")
    groups = [k for k in GROUP_TITLES if k in set(g["group"])]
    fig, axes = plt.subplots(1, len(groups), figsize=(3.4 * len(groups), 3.2), sharey=True, squeeze=False)
    for ax, grp in zip(axes[0], groups):
        s = g[g["group"] == grp]
        sns.lineplot(data=s, x="value", y="pct", hue="images", marker="o", ax=ax, legend=False)
        if by == "type":  # the paper's ResNet-50 at the operations of its Table 3, same quantity
            for kind, style in (("normal", dict(color="tab:orange")), ("adversarial", dict(color="tab:blue"))):
                ref = _paper_fig4(kind)
                ref = ref[ref["group"] == grp]
                if len(ref):
                    ax.plot(ref["value"], ref["pct"], ls=":", marker="x", ms=6, lw=1.2, **style)
        ax.set_xlabel(GROUP_TITLES[grp])
        ax.set_ylabel("% misclassified (label not in top-5)")
        if grp == "jpeg":
            ax.invert_xaxis()

    labels = sorted(set(g["images"]))
    colors = dict(zip(labels, sns.color_palette(n_colors=len(labels))))
    handles = [Line2D([], [], color=colors[k], marker="o", label=f"ours: {k}") for k in labels]
    if by == "type":
        handles += [Line2D([], [], color=c, ls=":", marker="x", label=f"paper, ResNet-50 (Table 3): {k}")
                    for k, c in (("adversarial", "tab:blue"), ("normal", "tab:orange"))]
    fig.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)),
               frameon=False)
    clfs = ", ".join(sorted(set(effects["classifier"])))
    fig.suptitle(f"Effect of the operations on normal and adversarial images (classifier{'s' if ',' in clfs else ''}: "
                 f"{clfs})", y=1.03)
    return save(fig, path)


def _paper_fig4(kind: str) -> pd.DataFrame:
    """The paper's Table 3 (ResNet-50) as % misclassified per operation, for normal images or all
    adversarial images together: columns op, group, value, pct (the 13 operations it reports)."""
    t = paper.TABLE3_RESNET50.rename(columns=paper.TABLE3_OPS).drop(columns=["jpeg_20", "original"])
    if kind == "normal":
        pct = 100 * t.loc["normal"] / 1000
    else:
        adv = t.drop(index="normal")
        pct = 100 * adv.sum() / paper.TABLE3_RESNET50.drop(index="normal")["original"].sum()
    out = pd.DataFrame({"op": pct.index, "pct": pct.to_numpy()})
    return out.merge(op_axis(list(out["op"])), on="op")


@styled
def fig_restored_heatmap(effects: pd.DataFrame, path: str | Path, attacks: list[str]) -> SavedFigure:
    """Heatmap attack x operation: % of adversarial images whose original top-1 is restored."""
    e = effects[(effects["kind"] != "normal") & (effects["op"] != "original")]
    g = e.groupby(["set", "op"])[["restored", "n"]].sum()
    pct = (100 * g["restored"] / g["n"]).unstack("op")
    pct = pct.reindex(index=[a for a in attacks if a in pct.index], columns=list(dict.fromkeys(e["op"])))
    n = e[e["op"] == e["op"].iloc[0]].groupby("set")["n"].sum()
    pct.index = [f"{a} (n={n[a]})" for a in pct.index]
    fig, ax = plt.subplots(figsize=(0.32 * pct.shape[1] + 2, 0.4 * pct.shape[0] + 1.5))
    sns.heatmap(pct, cmap="viridis", vmin=0, vmax=100, ax=ax, cbar_kws={"label": "% original top-1 restored"})
    ax.set_xlabel("")
    ax.set_ylabel("attack")
    return save(fig, path)
