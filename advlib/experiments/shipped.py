"""The shipped cheap detector: the procedure that produces it, and its nested evaluation.

:func:`run_procedure` is everything that turns a set of training photos into the file that ships
(``advlib/pretrained/<classifier>/``), and nothing else:

1. **Selection, inner folds.** The training photos are dealt into ``inner_folds`` folds
   (:func:`advlib.folds.partitions` on those photos only). For every configuration of the cost
   curve with at most :data:`~advlib.experiments.cost.MAX_PASSES` passes (the features of
   :data:`~advlib.experiments.cost.KINDS` on :data:`~advlib.experiments.cost.STEPS` operations,
   greedily chosen on each inner partition's training and dev photos, an SVM with the dev-set
   grid), the inner out-of-fold AUC is measured *per inner fold* and averaged (pooled ROC curves
   would mix the fold models' score scales). The configuration with the best mean inner AUC wins
   (ties: fewer passes, then the order of the kinds).
2. **The operations and C.** The winning configuration's operations are those chosen most often
   across the inner folds (ties: the better mean position), C the grid point chosen most often.
3. **The refit.** An SVM with those operations and that C is fitted on every training image.
4. **The threshold, cross-fitted.** For each inner fold, the same SVM (same operations, same C)
   is refitted without that fold and scores the fold's normal images; the threshold is set at
   ``target_fpr`` on these pooled scores of the calibration photos (``calibration``: the
   full-size photos when the corpus has upscaled thumbnails, decided before any result was seen:
   the shipped detector scans camera photos, and thumbnails upscaled from 32 px would set its
   threshold for images it will not see; they stay in training). Why cross-fitted rather than a
   separate calibration split: every score comes from a model that did not train on that image
   and has the final model's operations and C (no mixing of operation sets), and every normal
   image of the training photos takes part (a separate split would leave about 10 full-size
   normal images per outer fold, whose 5% quantile is their maximum). The calibration images did
   take part in step 1 (as inner eval folds); the outer folds measure what that costs.

:func:`nested_evaluation` runs the whole procedure on the training photos of each *outer* fold
(the profile's partitions: ``cv_folds`` folds over all photos) and judges the outer fold's
photos, which took part in nothing, at that fold's threshold: the false-positive and detection
rates a user should expect on new photos, with photo-cluster bootstrap intervals and exact
(Clopper-Pearson) intervals. :func:`shipped_detector` runs the procedure on every photo and
writes those outer-fold figures into the detector's metadata.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import detect, folds
from ..detect.pipeline import Detector
from ..runtime import progress as progress_bar
from ..stats import clopper_pearson
from ..store import write_json
from .cost import KINDS, MAX_PASSES, STEPS, OpOutputs, subset_fitter
from .protocol import OOF, Data, cross_validate

#: Inner folds of the selection (over the training photos of an outer fold).
INNER_FOLDS = 4

#: Cluster-bootstrap resamples behind the stated intervals of the shipped detector.
N_BOOT = 2000


@dataclass
class Procedure:
    """What :func:`run_procedure` produced from one set of training photos: the configuration
    (``kind``, ``k`` operations), the ``ops`` and SVM ``params``, the fitted ``estimator``, the
    cross-fitted ``threshold`` and the number of calibration scores behind it, and ``inner``: one
    row per candidate configuration (mean inner AUC per fold and pooled)."""

    kind: str
    k: int
    ops: list[str]
    params: dict
    estimator: Any
    threshold: float
    n_calibration: int
    inner: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def passes(self) -> int:
        return 1 + self.k


def inner_partitions(d: Data, photos: np.ndarray, n_folds: int, seed: int) -> list[folds.Partition]:
    """Partitions over the manifest rows of the photos ``photos`` (a row mask) only: their
    source photos dealt into ``n_folds`` folds (:func:`advlib.folds.photo_folds`); rows outside
    ``photos`` are in no part."""
    rows = np.flatnonzero(photos)
    fold = np.full(len(photos), -1)
    fold[rows] = folds.photo_folds(d.groups[rows], n_folds, seed)
    parts = []
    for j in range(n_folds):
        ev, dv = fold == j, fold == (j + 1) % n_folds
        parts.append(folds.Partition(f"inner{j}", photos & ~(ev | dv), dv, ev))
    return parts


def _vote_ops(o: OOF, k: int) -> list[str]:
    lists = [m.info["ops"] for m in o.models if m is not None]
    count = Counter(op for ops in lists for op in ops)
    pos = {op: np.mean([ops.index(op) if op in ops else k for ops in lists]) for op in count}
    return sorted(count, key=lambda op: (-count[op], pos[op], op))[:k]


def _vote_params(o: OOF) -> dict:
    infos = [{key: v for key, v in m.info.items() if key != "ops"} for m in o.models if m is not None]
    keys = [str(i) for i in infos]
    return infos[keys.index(max(keys, key=keys.count))]  # the most frequent; ties: the first fold's


def _svm(d: Data, params: dict):
    est = detect.make_detector("svm", **params)
    if "random_state" in est.get_params():
        est.set_params(random_state=d.seed)
    return est


def run_procedure(d: Data, out: OpOutputs, photos: np.ndarray, *, calibration: np.ndarray | None = None,
                  inner_folds: int = INNER_FOLDS, grid: dict | None = None, max_passes: int = MAX_PASSES,
                  target_fpr: float | None = None, seed: int | None = None) -> Procedure:
    """The procedure that produces the shipped detector, on the training photos ``photos`` (a
    mask over the manifest rows): see the module docstring. ``calibration``: a row mask of the
    photos whose normal images set the threshold (default: all). ``grid``: the SVM's dev-set
    grid. Only the combination setting is used (normal, targeted and non-targeted images)."""
    seed = d.seed if seed is None else seed
    target_fpr = d.target_fpr if target_fpr is None else target_fpr
    photos = photos & d.in_setting("combination")
    parts = inner_partitions(d, photos, inner_folds, seed)
    rows, oofs, orders = [], {}, {}
    for kind in KINDS:
        for k in STEPS:
            if 1 + k > max_passes:
                continue
            o = cross_validate(d, subset_fitter(d, out, kind, k, orders, grid), "combination", "combination",
                               partitions=parts)
            oofs[(kind, k)] = o
            pooled = detect.evaluate(o.y, o.scores)["auc"] if 0 < o.y.sum() < len(o.y) else np.nan
            rows.append({"feature": kind, "n_ops": k, "passes": 1 + k, "inner_auc_per_fold": o.per_fold("auc"),
                         "inner_auc_pooled": pooled})
    inner = pd.DataFrame(rows)
    order = inner.assign(_kind=inner.feature.map({kk: i for i, kk in enumerate(KINDS)}))
    best = order.sort_values(["inner_auc_per_fold", "passes", "_kind"], ascending=[False, True, True]).iloc[0]
    kind, k = str(best.feature), int(best.n_ops)
    o = oofs[(kind, k)]
    ops, params = _vote_ops(o, k), _vote_params(o)
    cols = [out.op_names.index(n) for n in ops]
    X, y = out.matrix(kind, cols), d.y
    estimator = _svm(d, params).fit(X[photos], y[photos])
    calibration = np.ones(len(y), bool) if calibration is None else calibration
    scores = []
    for part in parts:
        fit_rows, cal_rows = part.train | part.dev, part.eval & (y == 0) & calibration
        if not cal_rows.any() or len(np.unique(y[fit_rows])) < 2:
            continue
        scores.append(detect.detector_scores(_svm(d, params).fit(X[fit_rows], y[fit_rows]), X[cal_rows]))
    scores = np.concatenate(scores) if scores else np.zeros(0)
    if not len(scores):
        raise ValueError("no calibration images: the training photos hold no normal image of the calibration set")
    threshold = float(detect.calibrate_threshold(scores, target_fpr))
    inner["chosen"] = (inner.feature == kind) & (inner.n_ops == k)
    return Procedure(kind, k, ops, params, estimator, threshold, len(scores), inner)


@dataclass
class Nested:
    """The nested evaluation: ``rows`` (one per outer-eval image: outer fold, manifest row, y,
    score, threshold, flagged, calibration photo), ``folds`` (one per outer fold: the
    procedure's choice and that fold's rates) and the :class:`Procedure` of each outer fold."""

    rows: pd.DataFrame
    folds: pd.DataFrame
    procedures: list[Procedure]


def nested_evaluation(d: Data, out: OpOutputs, *, calibration: np.ndarray | None = None,
                      inner_folds: int = INNER_FOLDS, grid: dict | None = None, progress: bool = True) -> Nested:
    """The procedure (:func:`run_procedure`) on the training photos of each outer partition of
    ``d`` (its train and dev parts), judged on the outer eval photos at its own threshold."""
    y, m = d.y, d.in_setting("combination")
    calibration = np.ones(len(y), bool) if calibration is None else calibration
    rows, fold_rows, procs = [], [], []
    for k, part in enumerate(progress_bar(d.parts, desc="nested evaluation (outer folds)", disable=not progress)):
        proc = run_procedure(d, out, (part.train | part.dev) & m, calibration=calibration, inner_folds=inner_folds,
                             grid=grid)
        procs.append(proc)
        ev = np.flatnonzero(part.eval & m)
        cols = [out.op_names.index(n) for n in proc.ops]
        s = detect.detector_scores(proc.estimator, out.matrix(proc.kind, cols)[ev])
        flagged = s >= proc.threshold
        rows.append(pd.DataFrame({"fold": k, "row": ev, "y": y[ev], "score": s, "threshold": proc.threshold,
                                  "flagged": flagged, "calibration_photo": calibration[ev],
                                  "source": d.groups[ev]}))
        normal, adv = y[ev] == 0, y[ev] == 1
        fold_rows.append({"fold": k, "feature": proc.kind, "passes": proc.passes, "ops": ",".join(proc.ops),
                          "params": str(proc.params), "threshold": proc.threshold,
                          "n_calibration": proc.n_calibration, "n_normal": int(normal.sum()),
                          "n_adversarial": int(adv.sum()),
                          "fpr": float(flagged[normal].mean()) if normal.any() else np.nan,
                          "detection_rate": float(flagged[adv].mean()) if adv.any() else np.nan,
                          "auc": detect.evaluate(y[ev], s)["auc"] if normal.any() and adv.any() else np.nan})
    return Nested(pd.concat(rows, ignore_index=True), pd.DataFrame(fold_rows), procs)


def nested_metrics(nested: Nested, *, subset: np.ndarray | None = None, n_boot: int = N_BOOT,
                   seed: int = 0) -> dict[str, float]:
    """The outer-fold rates of the procedure (fractions): false-positive rate on the normal
    images and detection rate on the adversarial ones, each at its fold's threshold, with a
    photo-cluster bootstrap interval (``n_boot`` resamples) and an exact Clopper-Pearson one; the
    AUC per fold (mean) and pooled; ``n_*`` counts. ``subset``: a mask over ``nested.rows``."""
    r = nested.rows if subset is None else nested.rows[np.asarray(subset, bool)]
    y, s, thr, g = r.y.to_numpy(), r.score.to_numpy(), r.threshold.to_numpy(), r.source.to_numpy()
    normal, adv = y == 0, y == 1
    out: dict[str, float] = {"n_images": int(len(r)), "n_normal": int(normal.sum()), "n_adversarial": int(adv.sum()),
                             "n_photos": int(len(np.unique(g)))}
    for name, mask, metric in (("fpr", normal, "fpr"), ("detection_rate", adv, "tpr")):
        k, n = int(r.flagged.to_numpy()[mask].sum()), int(mask.sum())
        out[name] = k / n if n else np.nan
        out[f"{name}_cp_low"], out[f"{name}_cp_high"] = clopper_pearson(k, n)
        lo, hi = detect.bootstrap_ci(y, s, metric=metric, n_boot=n_boot, seed=seed, threshold=thr, groups=g) \
            if normal.any() and adv.any() else (np.nan, np.nan)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = lo, hi
    folds_auc = []
    for _, f in r.groupby("fold"):
        if 0 < f.y.sum() < len(f):
            folds_auc.append(detect.evaluate(f.y.to_numpy(), f.score.to_numpy())["auc"])
    out["auc_per_fold"] = float(np.mean(folds_auc)) if folds_auc else np.nan
    out["auc_pooled"] = detect.evaluate(y, s)["auc"] if normal.any() and adv.any() else np.nan
    return out


def shipped_detector(d: Data, out: OpOutputs, classifier: Any, nested: Nested, *,
                     calibration: np.ndarray | None = None, grid: dict | None = None,
                     calibration_name: str = "all photos", n_boot: int = N_BOOT) -> Detector:
    """The detector to ship: :func:`run_procedure` on every photo, as an :class:`advlib.Detector`
    whose ``meta`` states the procedure and its outer-fold figures (:func:`nested_metrics`, on
    all outer-eval images and on the calibration photos), the configuration each outer fold
    chose, and the SHA-256 of the training data."""
    m = d.in_setting("combination")
    proc = run_procedure(d, out, m, calibration=calibration, grid=grid)
    cols = [out.op_names.index(n) for n in proc.ops]
    lines = "\n".join(f"{h}:{label}" for h, label in zip(d.manifest["sha256"].to_numpy()[m], d.y[m]))
    det = Detector(classifier, feature=proc.kind, ops=proc.ops, estimator=_svm(d, proc.params))
    det.fit_features(out.matrix(proc.kind, cols)[m], d.y[m].astype(bool),
                     training_data_sha256=hashlib.sha256(lines.encode()).hexdigest())
    det.threshold = proc.threshold
    all_rows = nested_metrics(nested, n_boot=n_boot, seed=d.seed)
    cal_rows = nested_metrics(nested, subset=nested.rows.calibration_photo.to_numpy(), n_boot=n_boot, seed=d.seed)
    det.meta.update(
        params=proc.params, target_fpr=d.target_fpr, protocol=d.protocol, calibration=calibration_name,
        n_calibration=proc.n_calibration,
        procedure=(f"nested: inner {INNER_FOLDS}-fold selection among {len(proc.inner)} configurations (<= "
                   f"{MAX_PASSES} passes) by mean per-fold AUC; operations and C by vote over the inner folds; "
                   f"SVM refitted on every training image; threshold at {d.target_fpr:.0%} false positives on "
                   f"cross-fitted scores of the calibration photos' normal images ({calibration_name})"),
        oof={**{k: v for k, v in all_rows.items()}, "scope": "outer folds, every photo"},
        oof_calibration_photos={**cal_rows, "scope": f"outer folds, {calibration_name}"},
        outer_choices=nested.folds[["fold", "feature", "passes", "ops"]].to_dict("records"))
    return det


def nested_table(nested: Nested, calibration_name: str, *, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """The nested evaluation as a table (``detection_shipped_nested.csv``): one row per outer fold
    (the configuration its procedure chose, its threshold, its rates on its outer photos) and two
    pooled rows (every outer photo; the calibration photos only) with photo-cluster bootstrap and
    Clopper-Pearson intervals. Fractions in [0, 1]."""
    rows = [{"scope": f"outer fold {int(f.fold)}", **f.drop("fold").to_dict()} for _, f in nested.folds.iterrows()]
    for scope, subset in (("every photo (pooled over the outer folds)", None),
                          (f"{calibration_name} (pooled over the outer folds)",
                           nested.rows.calibration_photo.to_numpy())):
        m = nested_metrics(nested, subset=subset, n_boot=n_boot, seed=seed)
        rows.append({"scope": scope, **m})
    return pd.DataFrame(rows)


def save_fold_detectors(d: Data, paper_oof: OOF, nested: Nested, out: OpOutputs, classifier: Any, folder: Path,
                        *, paper: tuple[str, str] = ("diff", "all")) -> Path:
    """The detectors of each outer fold, for attacks on photos they never saw (notebook 05).

    Under ``folder`` (``data/<run>/models/folds``): ``fold<k>/paper`` (the paper's detector as
    :func:`advlib.experiments.table5` fitted it on fold ``k``'s training part, its threshold the
    one calibrated on that fold's dev part) and ``fold<k>/cheap`` (:func:`run_procedure` on fold
    ``k``'s training photos: the shipped detector's recipe), both :class:`advlib.Detector` folders,
    and ``folds.json``: the source photos of each fold's eval part. An image of fold ``k``'s eval
    photos took part in neither detector's training, selection or calibration."""
    folder = Path(folder)
    kind, group = paper
    listing = {}
    for k, part in enumerate(d.parts):
        fitted = paper_oof.models[k] if k < len(paper_oof.models) else None
        if fitted is None or k >= len(nested.procedures):
            continue
        thr = paper_oof.calibrated[paper_oof.fold == k]
        thr = float(thr[0]) if len(thr) and np.isfinite(thr[0]) else float(fitted.threshold)
        Detector.from_estimator(classifier, fitted.model, feature=kind, ops=group, threshold=thr,
                                meta={"fold": k, "protocol": d.protocol, "role": "paper detector of an outer fold"}
                                ).save(folder / f"fold{k}" / "paper")
        proc = nested.procedures[k]
        Detector.from_estimator(classifier, proc.estimator, feature=proc.kind, ops=proc.ops, threshold=proc.threshold,
                                meta={"fold": k, "protocol": d.protocol, "params": proc.params,
                                      "role": "the shipped detector's procedure on an outer fold's training photos"}
                                ).save(folder / f"fold{k}" / "cheap")
        listing[str(k)] = sorted(set(d.groups[part.eval].tolist()))
    write_json(listing, folder / "folds.json")
    return folder
