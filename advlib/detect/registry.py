"""The detectors by name (:data:`DETECTORS`), their dev-set grids and the dev-set selection."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from sklearn.model_selection import ParameterGrid

from ._checks import _labels
from .classic import lda, mlp, random_forest, svm
from .metrics import detector_scores
from .raw_cnn import _raw_efficientnet_lite0, _raw_resnet50, _raw_xception
from .squeezing import FeatureSqueezing
from .stats_cnn import StatsCNN


DETECTORS: dict[str, Callable[..., Any]] = {
    "svm": svm,
    "random_forest": random_forest,
    "lda": lda,
    "mlp": mlp,
    "stats_cnn": StatsCNN,
    "raw_resnet50": _raw_resnet50,
    "raw_xception": _raw_xception,
    "raw_efficientnet_lite0": _raw_efficientnet_lite0,
    "feature_squeezing": FeatureSqueezing,
}

#: Dev-set grids of :func:`select_on_dev` (the paper's setting first: it wins ties).
PARAM_GRIDS: dict[str, dict[str, list]] = {
    "svm": {"C": [1.0, 0.1, 10.0]},
    "random_forest": {"n_estimators": [100], "max_depth": [2]},
    "lda": {"solver": ["svd", "lsqr"]},
    "mlp": {"hidden_layer_sizes": [(100,), (50,), (100, 50)], "alpha": [1e-4, 1e-3, 1e-2]},
    "stats_cnn": {},
    "raw_resnet50": {},
    "raw_xception": {},
    "raw_efficientnet_lite0": {},
}


def make_detector(name: str, **params) -> Any:
    """Build detector ``name`` of :data:`DETECTORS` with keyword ``params``."""
    if name not in DETECTORS:
        raise KeyError(f"unknown detector {name!r} (known: {', '.join(DETECTORS)})")
    return DETECTORS[name](**params)


def _fit(det, X, y, X_dev=None, y_dev=None):
    if X_dev is not None and "X_dev" in inspect.signature(det.fit).parameters:
        return det.fit(X, y, X_dev=X_dev, y_dev=y_dev)
    return det.fit(X, y)


def select_on_dev(name: str, X_train, y_train, X_dev, y_dev, grid: dict[str, list] | None = None,
                  seed: int = 0, **fixed) -> tuple[Any, dict, float]:
    """Fit ``name`` on train for every point of ``grid`` (default :data:`PARAM_GRIDS`); keep the best on dev.

    Dev accuracy uses the same decision rule as the evaluation: a score
    (:func:`detector_scores`) ``>= 0.5`` is "adversarial" (for SVC, ``predict`` and
    ``predict_proba >= 0.5`` can disagree, so ``predict`` is not used); ties go to the earlier
    grid point. Detectors whose ``fit`` takes a dev set (stats-CNN,
    raw-image CNNs) also use it for their best-epoch choice. ``fixed`` params go to every fit.
    Returns ``(fitted_estimator, best_params, dev_accuracy)``.
    """
    y_train, y_dev = _labels(y_train, "y_train"), _labels(y_dev, "y_dev")
    grid = PARAM_GRIDS.get(name, {}) if grid is None else grid
    best = (None, {}, -1.0)
    for params in ParameterGrid(grid):
        det = make_detector(name, **{**fixed, **params})
        if "random_state" in det.get_params():
            det.set_params(random_state=seed)
        _fit(det, X_train, y_train, X_dev, y_dev)
        acc = float(((detector_scores(det, X_dev) >= 0.5) == y_dev).mean())
        if acc > best[2]:
            best = (det, dict(params), acc)
    return best
