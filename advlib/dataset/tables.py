"""The dataset's tables: Table 1 (attack success) and Table 2 (splits)."""

from __future__ import annotations

import pandas as pd

from .. import folds
from .spec import SPLITS


def table2(manifest: pd.DataFrame) -> pd.DataFrame:
    """Table 2: normal / adversarial / total / ratio per attack setting and split."""
    rows = []
    for setting, kinds in (("targeted", ["targeted"]), ("non-targeted", ["non-targeted"]),
                           ("combination", ["targeted", "non-targeted"])):
        for split in SPLITS:
            s = manifest[manifest["split"] == split]
            n_norm = int((s["kind"] == "normal").sum())
            n_adv = int(s["kind"].isin(kinds).sum())
            rows.append({"setting": setting, "split": split, "normal": n_norm, "adversarial": n_adv,
                         "total": n_norm + n_adv, "ratio": f"1:{n_adv / n_norm:.2f}" if n_norm else "-"})
    return pd.DataFrame(rows)


TABLE1_COLUMNS = ["classifier", "kind", "attack", "attacked", "success_raw", "success_rounded", "success_saved",
                  "median_l2", "median_linf", "median_psnr"]


def table1(attacked: pd.DataFrame, attack_order: list[str]) -> pd.DataFrame:
    """Table 1 from the per-image rows (``build(...)["attacked"]``), per classifier and attack.

    ``attacked``: images attacked. ``success_raw``, ``success_rounded``, ``success_saved``:
    images that succeed (attack criterion and reference label out of the top-5) on the float
    result, after 8-bit rounding, and read back from the saved file, all at each image's final
    strength. ``median_l2`` ([0, 1] pixel scale, over all 3x224x224 values), ``median_linf``
    (8-bit levels) and ``median_psnr`` (dB): medians over the kept images (``success_saved``)
    of the saved adversarial file against the saved normal image; NaN when none is kept.
    """
    if attacked.empty:
        return pd.DataFrame(columns=TABLE1_COLUMNS)
    keys = ["classifier", "attack"]
    t = attacked.groupby(keys).agg(
        attacked=("image_id", "size"), success_raw=("success_raw", "sum"),
        success_rounded=("success_rounded", "sum"), success_saved=("success_saved", "sum")).reset_index()
    kept = attacked[attacked["success_saved"].astype(bool)]
    medians = kept.groupby(keys).agg(median_l2=("l2", "median"), median_linf=("linf", "median"),
                                     median_psnr=("psnr", "median")).reset_index()
    t = t.merge(medians, on=keys, how="left")
    t["kind"] = t["attack"].map(attacked.drop_duplicates("attack").set_index("attack")["kind"])
    t["attack"] = pd.Categorical(t["attack"], attack_order, ordered=True)
    t = t.sort_values(keys).reset_index(drop=True)
    t["attack"] = t["attack"].astype(str)
    return t[TABLE1_COLUMNS]


def table1_by_classifier(t1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 in the paper's layout: one row per attack, one column per classifier holding the
    images kept (``success_saved``, the paper's counts), each followed by ``<classifier>_attacked``
    (the images the attack was run on: every normal image when every attack runs on every image,
    as in the paper). From :func:`table1`'s long table."""
    if t1.empty:
        return pd.DataFrame()
    order = list(dict.fromkeys(t1["attack"]))
    cols = {}
    for clf in dict.fromkeys(t1["classifier"]):
        t = t1[t1["classifier"] == clf].set_index("attack").reindex(order)
        cols[clf] = t["success_saved"]
        cols[f"{clf}_attacked"] = t["attacked"]
    out = pd.DataFrame(cols)
    out.index.name = "attack"
    return out.reset_index()


def per_strength(attempts: pd.DataFrame) -> pd.DataFrame:
    """Every strength tried (``attempts.csv``): per classifier, attack and strength, the images tried
    and their success rates raw / rounded / saved, with the median L2 ([0, 1] scale) and L-inf
    (8-bit levels) of the rounded image against the normal image."""
    return attempts.groupby(["classifier", "attack", "rung", "strength"], sort=False).agg(
        tried=("image_id", "size"), success_raw=("success_raw", "mean"), success_rounded=("success_rounded", "mean"),
        success_saved=("success_saved", "mean"), median_l2=("l2", "median"), median_linf=("linf", "median"))


def splits_table(manifest: pd.DataFrame, cv_folds: int, seed: int) -> pd.DataFrame:
    """Table 2: with ``cv_folds`` K >= 2 the K folds over source photos (:func:`advlib.folds.fold_table`),
    with 0 the fixed train/dev/eval split (:func:`table2`; no photo in two splits, checked)."""
    if cv_folds:
        return folds.fold_table(manifest, cv_folds, seed)
    if manifest.groupby("source")["split"].nunique().max() > 1:
        raise AssertionError("a source photo is in two splits")
    return table2(manifest)


def check_one_format(manifest: pd.DataFrame) -> None:
    """Every image of the dataset, normal or adversarial, is stored in one file format (the format
    must not give an adversarial image away); ``AssertionError`` naming the formats otherwise."""
    suffixes = manifest["path"].str.rsplit(".", n=1).str[-1].unique()
    if len(suffixes) != 1:
        raise AssertionError(f"normal and adversarial images are stored in several formats: {list(suffixes)}")
