"""Scores and metrics: EER, TPR at an FPR, accuracy at a threshold, cluster-bootstrap
intervals, calibrated thresholds, degenerate detectors."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from .base import binary_labels

# --------------------------------------------------------------------------- evaluation

def detector_scores(det, X) -> np.ndarray:
    """(N,) float64 score of "adversarial": ``predict_proba[:, 1]``, else ``decision_function``."""
    if hasattr(det, "predict_proba"):
        return np.asarray(det.predict_proba(X))[:, 1].astype(np.float64)
    return np.asarray(det.decision_function(X), dtype=np.float64)


def _check(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = binary_labels(y_true, "y_true")
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape or not np.isfinite(s).all():
        raise ValueError(f"scores must be finite with the shape of y_true {y.shape}, got {s.shape}")
    return y, s


def eer(y_true, scores) -> float:
    """Equal error rate: where the ROC curve (linearly interpolated) crosses FPR = FNR (0..1)."""
    y, s = _check(y_true, scores)
    fpr, tpr, _ = roc_curve(y, s, pos_label=1)
    f = fpr + tpr - 1  # FPR - FNR, non-decreasing along the curve, -1 at (0, 0), +1 at (1, 1)
    k = int(np.argmax(f >= 0))
    if f[k] == 0 or k == 0:
        return float(fpr[k])
    t = -f[k - 1] / (f[k] - f[k - 1])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def tpr_at_fpr(y_true, scores, fpr: float = 0.05) -> float:
    """Detection rate of the best threshold whose false positive rate is at most ``fpr``."""
    y, s = _check(y_true, scores)
    f, t, _ = roc_curve(y, s, pos_label=1, drop_intermediate=False)
    return float(t[f <= fpr + 1e-12].max())


def evaluate(y_true, scores, threshold: float = 0.5, *, y_pred=None) -> dict[str, float]:
    """Metrics of one detector on one set (label 1 = adversarial).

    ``scores``: (N,) probability of "adversarial" (or a raw score with its own ``threshold``).
    accuracy: ``scores >= threshold`` counted as adversarial, or ``y_pred`` when given (e.g. the
    detector's ``predict``, as the paper's code). eer, auc, tpr_at_5fpr: from the ROC curve of
    ``scores`` (NaN when only one class is present). Rates are fractions in [0, 1].
    """
    y, s = _check(y_true, scores)
    pred = (s >= threshold) if y_pred is None else binary_labels(y_pred, "y_pred")
    out = {"accuracy": float((pred == y).mean()) if len(y) else math.nan,
           "eer": math.nan, "auc": math.nan, "tpr_at_5fpr": math.nan,
           "n": int(len(y)), "n_adversarial": int(y.sum())}
    if 0 < y.sum() < len(y):
        out.update(eer=eer(y, s), auc=float(roc_auc_score(y, s)), tpr_at_5fpr=tpr_at_fpr(y, s, 0.05))
    return out


def bootstrap_ci(y_true, scores, *, metric: str = "accuracy", n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05, threshold: float | np.ndarray = 0.5, groups=None) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` of ``metric`` over images, or over clusters of images.

    ``metric``: a key of :func:`evaluate` (accuracy, eer, auc, tpr_at_5fpr) or ``fpr`` / ``tpr``
    (share of normal / adversarial images with ``score >= threshold``). ``threshold`` may be
    one value per image (e.g. each fold's own calibrated threshold).

    Without ``groups`` the resamples are stratified: normal and adversarial images are drawn
    separately with replacement, so every resample keeps the set's class counts. With
    ``groups`` (N,), e.g. the source photo of each image, whole groups are drawn with
    replacement (a cluster bootstrap: crops of one photo and the adversarial versions of an
    image are correlated, so they move together); resamples in which the metric is undefined
    (one class only, for eer/auc/fpr/tpr) are dropped.
    """
    y, s = _check(y_true, scores)
    if metric not in ("accuracy", "eer", "auc", "tpr_at_5fpr", "fpr", "tpr"):
        raise ValueError(f"metric must be accuracy, eer, auc, tpr_at_5fpr, fpr or tpr, got {metric!r}")
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1, got {n_boot}, {alpha}")
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), y.shape)
    rng = np.random.default_rng(seed)
    if groups is None:
        parts = [np.flatnonzero(y == c) for c in (0, 1) if (y == c).any()]
        idx = [np.concatenate([rng.choice(g, size=len(g)) for g in parts]) for _ in range(n_boot)]
    else:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise ValueError(f"groups must have the shape of y_true {y.shape}, got {groups.shape}")
        _, inverse = np.unique(groups, return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
        idx = [np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
               for _ in range(n_boot)]
    values = []
    for i in idx:
        yi, si, pred = y[i], s[i], s[i] >= thr[i]
        both = 0 < yi.sum() < len(yi)
        if metric == "accuracy":
            values.append(float((pred == yi).mean()))
        elif metric == "fpr":
            values.append(float(pred[yi == 0].mean()) if (yi == 0).any() else np.nan)
        elif metric == "tpr":
            values.append(float(pred[yi == 1].mean()) if (yi == 1).any() else np.nan)
        elif both:
            values.append({"eer": eer, "auc": roc_auc_score, "tpr_at_5fpr": tpr_at_fpr}[metric](yi, si))
        else:
            values.append(np.nan)
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))


def fpr_threshold(normal_scores, fpr: float = 0.05) -> float:
    """EvadeML-Zoo's rule: the ``ceil(n * (1 - fpr))``-th smallest of ``normal_scores``; scores
    strictly above it (at most ``fpr`` of the normal ones) are flagged."""
    s = np.sort(np.asarray(normal_scores, dtype=np.float64))
    if not len(s) or not np.isfinite(s).all():
        raise ValueError("a false-positive threshold needs finite scores of at least one normal image")
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    return float(s[math.ceil(len(s) * (1 - fpr)) - 1])


def calibrate_threshold(normal_scores, fpr: float = 0.05) -> float:
    """The lowest threshold that flags (``score >= threshold``) at most ``fpr`` of ``normal_scores``.

    :func:`fpr_threshold` (EvadeML-Zoo's rule, which flags scores above it), moved to the next
    float up, so that the ``>=`` test used everywhere in this module flags the same images.
    """
    return float(np.nextafter(fpr_threshold(normal_scores, fpr), np.inf))


def is_degenerate(pred, share: float = 0.95) -> bool:
    """True when one class makes up at least ``share`` of the predictions ``pred`` (N,) of 0/1.

    Such a detector is (close to) a constant predictor: its accuracy is the class balance,
    not a finding.
    """
    pred = np.asarray(pred).astype(bool)
    return bool(len(pred) and max(pred.mean(), 1 - pred.mean()) >= share)
