"""Cheap detection: the paper's future work on computational cost (notebook 03, beyond the paper).

The paper's detector classifies every image 39 times (the image and its 38 operations). Here a
few operations are chosen by greedy forward selection on each partition's training and dev
images only (never its eval images), and detectors on those operations are compared at equal
numbers of classifier passes (``1 + number of operations``):

- the paper's features of the chosen operations: ``diff`` (did each of the top-5 labels
  change, 5 bits per operation) and ``count`` (how many operations kept each rank's label);
- continuous features of the same forward passes (:data:`advlib.features.CONTINUOUS_KINDS`):
  ``prob`` (the probability of the image's own top-1 label after each operation), ``shift``
  (the L1 distance between the softmax vectors before and after) and ``prob+shift``.

Reading, fixed before the results were seen: operations are added one at a time, each time the
one that maximises the dev AUC of an SVM (the paper's best detector: ``SVC(gamma="auto")``)
trained on the training part (ties: the earlier operation in the paper's order). Each subset is
then evaluated like Table 5's detectors: an SVM with the dev-set grid, out of fold, threshold 0.5
on P(adversarial) for accuracy and the dev-calibrated threshold for the detection rate at
``target_fpr``; AUC and the detection rate at 5% false positives are given per fold (averaged:
each fold's model on its own scale) beside the pooled ones (which mix the folds' score scales).
The curve compares configurations; it is not how the shipped detector is chosen or evaluated:
:mod:`advlib.experiments.shipped` runs that whole procedure inside a nested cross-validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

from .. import detect, features
from ..detect.pipeline import PRETRAINED_DIR
from ..runtime import progress as tqdm
from .protocol import OOF, Data, Fitted, cross_validate, metric_row

#: Feature kinds compared on operation subsets.
KINDS = ("diff", "count") + features.CONTINUOUS_KINDS

#: Numbers of operations of the cost curve (passes = 1 + operations).
STEPS = (1, 2, 3, 5, 7)

#: The target of the issue: at most this many classifier passes per image.
MAX_PASSES = 8


@dataclass
class OpOutputs:
    """What the classifier said about each image and each operation: ``top5`` int (N, 1 + n_ops,
    5) and ``stats`` float (N, n_ops, 2) (:func:`advlib.features.outputs_under_ops`)."""

    top5: np.ndarray
    stats: np.ndarray
    op_names: list[str]

    def matrix(self, kind: str, cols: list[int]) -> np.ndarray:
        """The ``kind`` feature of operations ``cols`` (indices into ``op_names``)."""
        return features.subset_features(self.top5, self.stats, kind, cols)


def _selection_score(X: np.ndarray, y: np.ndarray, tr: np.ndarray, dv: np.ndarray, seed: int) -> float:
    est = SVC(gamma="auto", random_state=seed).fit(X[tr], y[tr])
    return float(roc_auc_score(y[dv], est.decision_function(X[dv])))


def greedy_order(out: OpOutputs, kind: str, y: np.ndarray, tr: np.ndarray, dv: np.ndarray, k_max: int,
                 seed: int = 0) -> tuple[list[int], list[float]]:
    """Greedy forward selection of ``k_max`` operations for feature ``kind``: each step adds the
    operation that maximises the dev AUC of an SVM trained on ``tr`` (ties: the earlier
    operation). Returns the chosen operation indices in order and the dev AUC after each step.
    A dev part with one class only (a handful of photos, as in the smoke profile's inner folds)
    cannot rank operations: the selection is then scored on the training part itself (in-sample,
    optimistic; the demo and paper profiles never need it)."""
    if len(np.unique(y[tr])) < 2:
        raise ValueError("greedy_order needs both classes in the training part")
    if len(np.unique(y[dv])) < 2:
        dv = tr
    chosen, aucs = [], []
    for _ in range(min(k_max, len(out.op_names))):
        best = (-1.0, -1)
        for j in range(len(out.op_names)):
            if j in chosen:
                continue
            auc = _selection_score(out.matrix(kind, chosen + [j]), y, tr, dv, seed)
            if auc > best[0]:
                best = (auc, j)
        chosen.append(best[1])
        aucs.append(best[0])
    return chosen, aucs


def subset_fitter(d: Data, out: OpOutputs, kind: str, k: int | None, orders: dict,
                  grid: dict | None = None) -> Callable:
    """``fit(tr, dv)`` for an SVM on the ``kind`` feature of the first ``k`` operations chosen by
    :func:`greedy_order` on ``tr``/``dv`` (``k`` None: all operations, no selection). ``orders``
    caches each partition's greedy order (nested subsets: one selection serves every ``k``)."""
    y = d.y

    def fit(tr: np.ndarray, dv: np.ndarray) -> Fitted:
        if k is None:
            cols = list(range(len(out.op_names)))
        else:
            key = (kind, tr.tobytes(), dv.tobytes())
            if key not in orders:
                orders[key] = greedy_order(out, kind, y, tr, dv, max(STEPS), d.seed)[0]
            cols = orders[key][:k]
        X = out.matrix(kind, cols)
        det, best, _ = detect.select_on_dev("svm", X[tr], y[tr], X[dv], y[dv], seed=d.seed, grid=grid)
        info = {**best, "ops": [out.op_names[c] for c in cols]}
        return Fitted(lambda m: detect.detector_scores(det, X[m]), 0.5, info, det)
    return fit


def cost_curve(d: Data, out: OpOutputs, *, kinds=KINDS, steps=STEPS, grid: dict | None = None,
               progress: bool = True) -> tuple[pd.DataFrame, dict[tuple[str, int | None], OOF]]:
    """Out-of-fold accuracy, AUC, detection rate at 5% false positives on the pooled out-of-fold
    scores (``tpr_at_5fpr``: a threshold set on the out-of-fold normal scores, as the shipped
    detector's) and at each fold's dev-calibrated threshold, of each feature kind on
    ``steps`` greedily chosen operations and on all of them (``n_ops`` = len(op_names)), with
    ``passes`` = 1 + n_ops classifier passes per image (combination setting). Returns the table
    and the :class:`OOF` of each ``(kind, k)`` (``k`` None: all operations)."""
    rows, oofs, orders = [], {}, {}
    jobs = [(kind, k) for kind in kinds for k in (*steps, None)]
    for kind, k in tqdm(jobs, desc="cost curve", disable=not progress):
        o = cross_validate(d, subset_fitter(d, out, kind, k, orders, grid), "combination", "combination")
        oofs[(kind, k)] = o
        n_ops = len(out.op_names) if k is None else k
        chosen = [m.info["ops"] for m in o.models if m is not None]
        r = metric_row(o, d.bootstrap, d.seed, cis=("accuracy", "auc", "tpr_at_5fpr", "tpr"))
        rows.append({"feature": kind, "n_ops": n_ops, "passes": 1 + n_ops, "selected": k is not None,
                     "ops_per_fold": " | ".join(",".join(c) for c in chosen), **r})
    return pd.DataFrame(rows), oofs


def meets_target(table: pd.DataFrame, reference_accuracy: float, reference_ci_low: float,
                 max_passes: int = MAX_PASSES) -> pd.DataFrame:
    """Rows of ``table`` with at most ``max_passes`` passes, not degenerate, whose out-of-fold
    accuracy is at most 1 point below the all-38 reference and not below the reference's CI
    (the issue's target)."""
    m = (table["passes"] <= max_passes) & ~table["degenerate"].astype(bool) & \
        (table["accuracy"] >= reference_accuracy - 0.01) & (table["accuracy"] >= reference_ci_low)
    return table[m]


def cheap_detector_dir(run: str, classifier: str, models_dir) -> Path:
    """Where notebook 03 saves the cheap detector: inside the package
    (:data:`advlib.detect.pipeline.PRETRAINED_DIR`, shipped) for the demo run of efficientnet_lite0,
    else the run's ``models/detector_cheap``."""
    if run == "demo" and classifier == "efficientnet_lite0":
        return PRETRAINED_DIR / classifier
    return Path(models_dir) / "detector_cheap"


def cost_table(cost: pd.DataFrame, seen: pd.DataFrame, shipped: tuple[str, int],
               all38_label: str = "SVM - differences feature",
               squeezing_label: str = "Feature squeezing (5% FPR threshold)") -> tuple[pd.DataFrame, dict]:
    """The cost curve as notebook 03 publishes it (``detection_cost.csv``): every configuration of
    ``cost`` (:func:`cost_curve`) with ``meets_target`` and ``shipped`` (the ``(feature,
    operations)`` the shipped detector's procedure chose on every photo:
    :func:`advlib.experiments.shipped.run_procedure`), and feature squeezing (4 passes) from
    ``seen`` (Table 5's seen-attack rows, by detector) as a reference row. Checks that the all-38
    ``diff`` row is Table 5's ``all38_label`` row (the same fits). Returns ``(table, references
    for the figure)``."""
    seen = seen.set_index("detector") if "detector" in seen.columns else seen
    all38 = cost[(cost.feature == "diff") & ~cost.selected.astype(bool)].iloc[0]
    if not np.isclose(all38.accuracy, seen.loc[all38_label, "accuracy"]):
        raise AssertionError(f"cost curve and Table 5 disagree on {all38_label}: {all38.accuracy} vs "
                             f"{seen.loc[all38_label, 'accuracy']}")
    squeeze = seen.loc[squeezing_label] if squeezing_label in seen.index else None
    refs = {} if squeeze is None or pd.isna(squeeze.get("accuracy")) else \
        {"feature squeezing (5% FPR threshold)": {**squeeze.to_dict(), "passes": 4}}
    met = meets_target(cost, all38.accuracy, all38.accuracy_ci_low)
    rows = cost.assign(meets_target=cost.index.isin(met.index),
                       shipped=(cost.feature == shipped[0]) & (cost.n_ops == shipped[1]) & cost.selected.astype(bool))
    extra = pd.DataFrame([{"feature": name, "n_ops": 3, "passes": 4, "selected": False,
                           **{k: v for k, v in row.items() if k in cost.columns and k not in ("passes", "n_ops")}}
                          for name, row in refs.items()])
    return pd.concat([rows, extra], ignore_index=True), refs


def target_line(cost: pd.DataFrame) -> str:
    """The target (at most :data:`MAX_PASSES` passes, within 1 point and the interval of the all-38
    SVM-diff detector) in words, and whether it is met."""
    all38 = cost[(cost.feature == "diff") & ~cost.selected.astype(bool)].iloc[0]
    met = meets_target(cost, all38.accuracy, all38.accuracy_ci_low)
    return (f"target (<= {MAX_PASSES} passes, within 1 point and the CI of all-38 SVM-diff "
            f"{100 * all38.accuracy:.1f}% [{100 * all38.accuracy_ci_low:.1f}, {100 * all38.accuracy_ci_high:.1f}]): "
            + (f"met by {len(met)} configuration(s), fewest passes {int(met.passes.min())}" if len(met) else "NOT met"))
