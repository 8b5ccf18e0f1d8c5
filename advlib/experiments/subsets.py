"""Beyond the headline numbers: Tables 4-6 on paper-faithful subsets of the photos, and paired
tests of the claims that rest on a handful of images (notebooks 03 and 04).

Subsets (:func:`photo_subsets`; the same detectors, judged out of fold on fewer photos): the
full-size photos (the demo's 40 CIFAR thumbnails and one text image are upscaled from less than
224 px) and the ImageNet photos, whose ground truth is known and in the classifier's top-5 (the
paper's selection; the other demo photos take the classifier's top-1 as their label).

Paired tests (:func:`paired_tests`; :mod:`advlib.stats`): two methods judged on the same images
are compared by McNemar's exact test on the images where they disagree, or by a paired
photo-cluster bootstrap for a rate at a calibrated threshold; the README words each claim by
the test's result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import corpora, detect
from ..stats import clopper_pearson, mcnemar, paired_bootstrap, reading
from .protocol import OOF, Data, metric_row

ALL = "all photos"
FULL_SIZE = "full-size photos (224 px or more)"
THUMBNAILS = "upscaled thumbnails (smaller than 224 px)"
IMAGENET = "ImageNet photos (ground truth in the top-5)"


def photo_subsets(d: Data, corpus: str) -> dict[str, np.ndarray]:
    """Row masks over the manifest: every photo, the full-size photos and the upscaled thumbnails
    (demo corpus only: :func:`advlib.corpora.thumbnail_sources`, photos under 224 px on a side)
    and the ImageNet photos (``label_source == "imagenet"``, whose normal image was kept because
    its ground truth is in the top-5)."""
    out = {ALL: np.ones(len(d.manifest), bool)}
    small = corpora.thumbnail_sources() if corpus == "demo" else set()
    if small:
        out[FULL_SIZE] = ~d.manifest["source"].isin(small).to_numpy()
        out[THUMBNAILS] = ~out[FULL_SIZE]
    imagenet = d.manifest["label_source"].to_numpy() == "imagenet"
    if imagenet.any() and not imagenet.all():
        out[IMAGENET] = imagenet
    return out


def _detector_rows(subsets: dict[str, np.ndarray], table: str, oofs: dict[str, OOF], d: Data) -> list[dict]:
    rows = []
    for name, mask in subsets.items():
        for label, o in oofs.items():
            r = o.restrict(mask)
            if not len(r.y) or r.y.min() == r.y.max():
                continue
            m = metric_row(r, d.bootstrap, d.seed, cis=("accuracy", "auc", "eer", "fpr", "tpr"))
            rows.append({"subset": name, "table": table, "row": label, **{k: m.get(k) for k in (
                "n_images", "n_photos", "n_adversarial", "constant_accuracy", "accuracy", "accuracy_ci_low",
                "accuracy_ci_high", "auc", "auc_ci_low", "auc_ci_high", "eer", "eer_ci_low", "eer_ci_high",
                "fpr_calibrated", "fpr_calibrated_ci_low", "fpr_calibrated_ci_high", "detection_rate_calibrated",
                "detection_rate_calibrated_ci_low", "detection_rate_calibrated_ci_high", "degenerate")}})
    return rows


def subsets_table(d: Data, subsets: dict[str, np.ndarray], *, table4: dict[tuple, OOF], table5: dict[str, OOF],
                  table6: dict[str, np.ndarray]) -> pd.DataFrame:
    """Tables 4, 5 (seen attacks) and 6 on each subset: one row per (subset, table, row).

    Detection rows (Tables 4-5: their :class:`OOF`, ``table4`` keyed by (detector, group, feature),
    ``table5`` by row label) carry accuracy, AUC, EER and the rates at the calibrated threshold,
    with photo-cluster bootstrap intervals and the constant-answer accuracy; correction rows
    (Table 6: per-image outcomes by method, NaN where a method does not judge an image) the %
    of normal and adversarial images correctly classified with exact Clopper-Pearson intervals.
    Fractions in [0, 1] (:func:`advlib.paper.in_percent` writes them in percent)."""
    subsets = {k: v for k, v in subsets.items() if k != THUMBNAILS}
    rows = _detector_rows(subsets, "Table 4", {" / ".join(k): o for k, o in table4.items()}, d)
    rows += _detector_rows(subsets, "Table 5 (seen attacks)", table5, d)
    adv = d.y == 1
    for name, mask in subsets.items():
        for method, ok in table6.items():
            row: dict[str, Any] = {"subset": name, "table": "Table 6", "row": method}
            judged = mask & np.isfinite(ok)
            for kind, sel in (("normal", judged & ~adv), ("adversarial", judged & adv)):
                k, n = int(np.nansum(ok[sel])), int(sel.sum())
                lo, hi = clopper_pearson(k, n)
                row.update({f"{kind}_correct": k / n if n else np.nan, f"{kind}_correct_cp_low": lo,
                            f"{kind}_correct_cp_high": hi, f"n_{kind}": n})
            row["n_photos"] = int(len(np.unique(d.groups[judged])))
            rows.append(row)
    return pd.DataFrame(rows)


def paired_tests(d: Data, *, table6: dict[str, np.ndarray], label_correction: dict[str, np.ndarray],
                 detection: dict[str, OOF], n_boot: int = 2000) -> pd.DataFrame:
    """The paired tests of the README's small-n claims, one row each (the comparison, the images,
    both rates, the images where they disagree, p and the wording it allows):

    - Table 6, adversarial images: QF 50 against heuristic-min (McNemar);
    - label correction, normal images kept and adversarial images restored: scaling alone against
      JPEG+scaling (McNemar; ``label_correction``: per-image "label in the voted top-5" by op set);
    - detection at 5% false positives on the pooled out-of-fold scores: each pair of
      ``detection`` (label -> :class:`OOF` on the same images), ``(a, b)`` in insertion order,
      by a paired photo bootstrap of the difference in detection rate (each resample sets both
      thresholds again on its own normal images).
    """
    adv, normal = d.y == 1, d.y == 0
    rows = []

    def mc(what: str, a_name: str, b_name: str, a: np.ndarray, b: np.ndarray, sel: np.ndarray) -> None:
        keep = sel & np.isfinite(a) & np.isfinite(b)
        t = mcnemar(a[keep].astype(bool), b[keep].astype(bool))
        first, second = (a_name, b_name) if t["a_rate"] >= t["b_rate"] else (b_name, a_name)
        rows.append({"claim": what, "a": a_name, "b": b_name, "test": "McNemar (exact)", "n_images": t["n"],
                     "n_photos": int(len(np.unique(d.groups[keep]))), "a_rate": t["a_rate"], "b_rate": t["b_rate"],
                     "a_only": t["a_only"], "b_only": t["b_only"], "difference": t["a_rate"] - t["b_rate"],
                     "ci_low": np.nan, "ci_high": np.nan, "p": t["p"], "reading": reading(t["p"], first, second)})

    if "QF 50" in table6 and "Heuristic - min" in table6:
        mc("image correction of adversarial images (Table 6)", "QF 50", "Heuristic - min",
           table6["QF 50"], table6["Heuristic - min"], adv)
    if "scaling" in label_correction and "JPEG+scaling" in label_correction:
        lc = {k: v.astype(float) for k, v in label_correction.items()}
        mc("label correction keeps normal images (harm = 100 - rate)", "scaling", "JPEG+scaling",
           lc["scaling"], lc["JPEG+scaling"], normal)
        mc("label correction restores adversarial images", "JPEG+scaling", "scaling",
           lc["JPEG+scaling"], lc["scaling"], adv)
    names = list(detection)
    for i, a_name in enumerate(names):
        for b_name in names[i + 1:]:
            rows.append(_detection_pair(d, a_name, b_name, detection[a_name], detection[b_name], n_boot))
    return pd.DataFrame(rows)


def _detection_pair(d: Data, a_name: str, b_name: str, a: OOF, b: OOF, n_boot: int) -> dict[str, Any]:
    """Detection rate at 5% FPR (pooled out-of-fold scores) of two detectors on the images both
    judged, and the paired photo bootstrap of its difference."""
    common = np.intersect1d(a.rows, b.rows)
    score_a, score_b = dict(zip(a.rows.tolist(), a.scores)), dict(zip(b.rows.tolist(), b.scores))
    sa = np.array([score_a[r] for r in common.tolist()])
    sb = np.array([score_b[r] for r in common.tolist()])
    y, groups = d.y[common], d.groups[common]

    def rate(s: np.ndarray, rows: np.ndarray) -> float:
        yy, ss = y[rows], s[rows]
        return detect.tpr_at_fpr(yy, ss, 0.05) if 0 < yy.sum() < len(yy) else np.nan

    res = paired_bootstrap(lambda rows: rate(sa, rows) - rate(sb, rows), groups, n_boot=n_boot, seed=d.seed)
    ra, rb = rate(sa, np.arange(len(y))), rate(sb, np.arange(len(y)))
    first, second = (a_name, b_name) if ra >= rb else (b_name, a_name)
    return {"claim": "detection rate at 5% false positives (pooled out-of-fold scores)", "a": a_name, "b": b_name,
            "test": f"paired photo bootstrap ({res['n_boot']} resamples)", "n_images": int(len(y)),
            "n_photos": int(len(np.unique(groups))), "a_rate": ra, "b_rate": rb, "a_only": np.nan, "b_only": np.nan,
            "difference": res["estimate"], "ci_low": res["ci_low"], "ci_high": res["ci_high"], "p": res["p"],
            "reading": reading(res["p"], first, second)}
