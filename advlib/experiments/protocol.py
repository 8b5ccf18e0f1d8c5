"""The evaluation protocol shared by the detection experiments: the dataset with its labels
(:class:`Data`), out-of-fold scores (:class:`OOF`, :func:`cross_validate`) and their metrics
with cluster-bootstrap intervals (:func:`metric_row`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from .. import detect, features, folds
from ..dataset import DatasetSpec, load_images, load_manifest, under_ops

#: Attack settings of Table 2: which adversarial kinds each contains (normal images always).
SETTINGS = {"targeted": ("targeted",), "non-targeted": ("non-targeted",),
            "combination": ("targeted", "non-targeted")}

#: Table 5 scenarios: (name, training setting, test setting).
SCENARIOS = (("seen (combination)", "combination", "combination"),
             ("targeted -> non-targeted", "targeted", "non-targeted"),
             ("non-targeted -> targeted", "non-targeted", "targeted"))

#: The paper's best statistical detectors (Table 4) compared in Table 5: (label, detector, feature, group).
MAIN_FEATURE_DETECTORS = (("MLP - counting feature", "mlp", "count", "jpeg+scaling"),
                          ("SVM - differences feature", "svm", "diff", "all"),
                          ("CNN - counting feature", "stats_cnn", "count", "all"),
                          ("CNN - differences feature", "stats_cnn", "diff", "all"))


@dataclass
class Data:
    """The dataset with its labels and its evaluation protocol: ``y`` 1 for adversarial;
    ``top5`` aligned with ``manifest``.

    ``parts``: the protocol's partitions (:func:`advlib.folds.partitions`): one fixed
    train/dev/eval split (``cv_folds`` 0, paper profile) or K folds over the source photos
    (demo, smoke). ``seed`` seeds every fit and resample; ``target_fpr`` is the false-positive
    rate thresholds are calibrated to; ``bootstrap`` the number of cluster-bootstrap resamples
    behind each confidence interval. :meth:`split` builds one.
    """

    manifest: pd.DataFrame
    top5: np.ndarray
    op_names: list[str]
    parts: list[folds.Partition] = field(default_factory=list)
    cv_folds: int = 0
    seed: int = 0
    target_fpr: float = 0.05
    bootstrap: int = 0

    @classmethod
    def split(cls, manifest: pd.DataFrame, top5: np.ndarray, op_names: list[str], *, cv_folds: int, seed: int = 0,
              target_fpr: float = 0.05, bootstrap: int = 0) -> "Data":
        """The data with its partitions: ``cv_folds`` 0 = the manifest's ``split`` column, K >= 2 =
        K folds over the source photos (seeded)."""
        return cls(manifest, top5, op_names, folds.partitions(manifest, cv_folds, seed), cv_folds, seed, target_fpr,
                   bootstrap)

    @property
    def protocol(self) -> str:
        """The protocol in words, as the tables and saved detectors state it."""
        return "fixed split" if self.cv_folds == 0 else f"{self.cv_folds}-fold over source photos"

    @property
    def y(self) -> np.ndarray:
        return (self.manifest["kind"] != "normal").to_numpy().astype(int)

    @property
    def groups(self) -> np.ndarray:
        """(N,) source photo of each row: the unit of the cluster bootstrap."""
        return self.manifest["source"].to_numpy()

    def in_setting(self, setting: str) -> np.ndarray:
        """Rows of a Table 2 attack setting: normal images and the setting's adversarial kinds."""
        m = self.manifest
        return ((m["kind"] == "normal") | m["kind"].isin(SETTINGS[setting])).to_numpy()

    def features(self, kind: str, group: str) -> np.ndarray:
        return features.feature_matrix(self.top5, kind, group, ops=self.op_names)


@dataclass
class Fitted:
    """A detector fitted on one partition: ``score(mask)`` gives the (n,) scores of those rows;
    ``threshold`` is its own decision threshold (0.5 on a probability); ``info`` its chosen
    hyper-parameters; ``model`` the fitted estimator."""

    score: Callable[[np.ndarray], np.ndarray]
    threshold: float = 0.5
    info: dict = field(default_factory=dict)
    model: Any = None


@dataclass
class OOF:
    """Pooled out-of-fold results of one detector in one scenario (one entry per eval image).

    ``rows``: manifest row of each eval image; ``threshold``: the detector's own threshold;
    ``calibrated``: per image, the threshold of its fold's model calibrated to ``target_fpr`` on
    the normal images of that fold's dev part (never on the eval fold); ``fold``: the partition
    index; ``models``: the fitted detector of each partition (None where a partition was skipped).
    """

    rows: np.ndarray
    y: np.ndarray
    scores: np.ndarray
    threshold: np.ndarray
    calibrated: np.ndarray
    fold: np.ndarray
    models: list
    groups: np.ndarray

    def restrict(self, mask: np.ndarray) -> "OOF":
        """The entries whose manifest row is in ``mask`` (bool over the manifest rows): a subset
        of the images, judged by the same fold models."""
        keep = np.asarray(mask, bool)[self.rows]
        return OOF(self.rows[keep], self.y[keep], self.scores[keep], self.threshold[keep], self.calibrated[keep],
                   self.fold[keep], self.models, self.groups[keep])

    def per_fold(self, metric: str) -> float:
        """The mean over folds of each fold's own ``metric`` (``auc`` or ``tpr_at_5fpr``: the ROC
        of that fold's model alone, so that the folds' score scales are never mixed); NaN when no
        fold has both classes."""
        values = []
        for k in np.unique(self.fold):
            m = self.fold == k
            if 0 < self.y[m].sum() < m.sum():
                values.append(detect.evaluate(self.y[m], self.scores[m])[metric])
        return float(np.mean(values)) if values else float("nan")

    def flag_rate(self, mask: np.ndarray, calibrated: bool = False) -> float:
        """Share of the images in ``mask`` (over the OOF entries) flagged at the detector's own
        threshold, or at the calibrated one (images whose fold has no calibrated threshold are
        left out); NaN when no image is left."""
        thr = self.calibrated if calibrated else self.threshold
        m = mask & np.isfinite(thr)
        return float((self.scores[m] >= thr[m]).mean()) if m.any() else np.nan


def cross_validate(d: Data, fit: Callable, train_setting: str, test_setting: str, *,
                   partitions: list | None = None) -> OOF:
    """Fit ``fit(train_mask, dev_mask) -> Fitted`` on each partition and pool its eval scores.

    Train and dev rows come from ``train_setting``, eval rows from ``test_setting``. A partition
    whose training rows hold one class only is skipped (its eval images are then missing).
    Thresholds are calibrated to ``d.target_fpr`` on each dev part's normal images.
    """
    target_fpr = d.target_fpr
    y = d.y
    tr_set, te_set = d.in_setting(train_setting), d.in_setting(test_setting)
    rows, scores, thr, cal, fold, models = [], [], [], [], [], []
    for k, part in enumerate(partitions or d.parts):
        tr, dv, te = part.train & tr_set, part.dev & tr_set, part.eval & te_set
        if len(np.unique(y[tr])) < 2 or not te.any():
            models.append(None)
            continue
        fitted = fit(tr, dv)
        dev_normal = dv & (y == 0)
        t_cal = detect.calibrate_threshold(fitted.score(dev_normal), target_fpr) if dev_normal.any() else np.nan
        idx = np.flatnonzero(te)
        rows.append(idx)
        scores.append(fitted.score(te))
        thr.append(np.full(len(idx), fitted.threshold))
        cal.append(np.full(len(idx), t_cal))
        fold.append(np.full(len(idx), k))
        models.append(fitted)
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    r = cat(rows, np.int64)
    return OOF(r, y[r], cat(scores, np.float64), cat(thr, np.float64), cat(cal, np.float64), cat(fold, np.int64),
               models, d.groups[r])


ALL_CIS = ("accuracy", "eer", "auc", "fpr", "tpr")


def metric_row(o: OOF, n_boot: int, seed: int, cis: tuple[str, ...] = ALL_CIS) -> dict[str, Any]:
    """Metrics of pooled out-of-fold results, with cluster-bootstrap 95% CIs over source photos.

    Fractions in [0, 1]: ``accuracy`` (own threshold, 0.5 on a probability: the paper's
    reading), ``eer``, ``auc``, ``tpr_at_5fpr`` (ROC of the pooled scores); ``fpr`` and
    ``detection_rate`` at the own threshold; ``fpr_calibrated`` and ``detection_rate_calibrated``
    at each fold's dev-calibrated threshold (what to expect on new photos). ``degenerate``: one
    class makes up >= 95% of the predictions (a constant predictor, not a finding). ``cis``:
    the metrics that get ``<name>_ci_low`` / ``<name>_ci_high`` columns (``fpr`` / ``tpr``: the
    calibrated rates).
    """
    y, s = o.y, o.scores
    row = detect.evaluate(y, s, threshold=o.threshold)
    row["n_images"] = row.pop("n")
    row["n_photos"] = int(len(np.unique(o.groups)))
    row["fpr"], row["detection_rate"] = o.flag_rate(y == 0), o.flag_rate(y == 1)
    row["fpr_calibrated"] = o.flag_rate(y == 0, calibrated=True)
    row["detection_rate_calibrated"] = o.flag_rate(y == 1, calibrated=True)
    row["degenerate"] = detect.is_degenerate(s >= o.threshold)
    row["constant_accuracy"] = max(row["n_adversarial"], row["n_images"] - row["n_adversarial"]) / row["n_images"] \
        if row["n_images"] else np.nan  # the accuracy of always answering the majority class
    row["auc_per_fold"], row["tpr_at_5fpr_per_fold"] = o.per_fold("auc"), o.per_fold("tpr_at_5fpr")
    ok_cal = np.isfinite(o.calibrated)
    if n_boot and len(np.unique(y)) == 2:
        for metric, thr in (("accuracy", o.threshold), ("eer", o.threshold), ("auc", o.threshold),
                            ("tpr_at_5fpr", o.threshold), ("fpr", o.calibrated), ("tpr", o.calibrated)):
            if metric not in cis:
                continue
            name = {"fpr": "fpr_calibrated", "tpr": "detection_rate_calibrated"}.get(metric, metric)
            keep = ok_cal if metric in ("fpr", "tpr") else np.ones(len(y), bool)
            if not keep.any():
                continue
            lo, hi = detect.bootstrap_ci(y[keep], s[keep], metric=metric, n_boot=n_boot, seed=seed,
                                         threshold=thr[keep], groups=o.groups[keep])
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = lo, hi
    return row


def feature_fitter(d: Data, name: str, kind: str, group: str, *, grid: dict | None = None,
                   options: dict | None = None, **fixed) -> Callable:
    """``fit(tr, dv)`` for a feature detector: trained on ``tr``, hyper-parameters (``grid``, or
    :data:`advlib.detect.PARAM_GRIDS` when None) or the stats-CNN's best epoch chosen on ``dv``.
    ``options``: keyword arguments of the detector's constructor (the stats-CNN's ``epochs``,
    ``batch_size``); ``fixed``: parameters held fixed during the grid search."""
    X, y = d.features(kind, group), d.y
    options = dict(options or {})

    def fit(tr: np.ndarray, dv: np.ndarray) -> Fitted:
        if name == "stats_cnn":
            det = detect.make_detector("stats_cnn", **options, random_state=d.seed, progress=False)
            det.fit(X[tr], y[tr], X_dev=X[dv] if dv.any() else None, y_dev=y[dv] if dv.any() else None)
            best = {"best_epoch": det.best_epoch_}
        elif dv.any():
            det, best, _ = detect.select_on_dev(name, X[tr], y[tr], X[dv], y[dv], seed=d.seed, grid=grid,
                                                **options, **fixed)
        else:  # no dev part: the paper's setting (first grid point)
            det, best = detect.make_detector(name, **options, **fixed), {}
            if "random_state" in det.get_params():
                det.set_params(random_state=d.seed)
            det.fit(X[tr], y[tr])
        return Fitted(lambda m: detect.detector_scores(det, X[m]), 0.5, best, det)
    return fit


@dataclass
class Loaded:
    """What the detection and correction notebooks start from (:func:`load`): the run's dataset
    ``spec``, its ``manifest``, the top-5 (and, with ``stats``, the continuous stats) under the
    operations, the :class:`Data` with the profile's protocol, and ``load(mask)``: the uint8
    images of the manifest rows ``mask``, in manifest order."""

    spec: Any
    manifest: pd.DataFrame
    top5: np.ndarray
    stats: np.ndarray | None
    op_names: list[str]
    data: Data
    load: Callable[[np.ndarray], Any]


def load(params: dict[str, Any], *, stats: bool = False, progress: bool = True) -> Loaded:
    """The dataset notebook 01 built and the features notebook 02 cached, for the run of
    ``params``: the one start of notebooks 03-05."""
    spec = DatasetSpec.from_profile(params)
    manifest = load_manifest(spec)
    top5, st, op_names = under_ops(spec, manifest, stats=stats, progress=progress)
    data = Data.split(manifest, top5, op_names, cv_folds=params["cv_folds"], seed=params["seed"],
                      target_fpr=params["target_fpr"], bootstrap=params["bootstrap"])
    return Loaded(spec, manifest, top5, st, op_names, data,
                  lambda mask: load_images(spec.store, manifest["path"][mask].tolist()))
