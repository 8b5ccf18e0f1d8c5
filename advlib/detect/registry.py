"""The detectors by name (:data:`DETECTORS`), their dev-set grids and the dev-set selection."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from sklearn.model_selection import ParameterGrid

from .base import binary_labels
from .classic import lda, mlp, random_forest, svm
from .finetune import FineTunedEfficientNet
from .metrics import detector_scores
from .raw_cnn import RawImageCNN
from .squeezing import FeatureSqueezing
from .stats_cnn import StatsCNN


def raw_resnet50(**params) -> RawImageCNN:
    """ResNet-50 on raw images (:class:`~advlib.detect.raw_cnn.RawImageCNN`)."""
    return RawImageCNN("resnet50", **params)


def raw_xception(**params) -> RawImageCNN:
    """Xception on raw images (:class:`~advlib.detect.raw_cnn.RawImageCNN`)."""
    return RawImageCNN("xception", **params)


def raw_efficientnet_lite0(**params) -> FineTunedEfficientNet:
    """EfficientNet-Lite0 fine-tuned from its shipped ImageNet weights (:class:`~advlib.detect.finetune.FineTunedEfficientNet`)."""
    return FineTunedEfficientNet(classifier="efficientnet_lite0", **params)


#: Detector names (as in the profiles) -> factories taking keyword parameters.
DETECTORS: dict[str, Callable[..., Any]] = {
    "svm": svm,
    "random_forest": random_forest,
    "lda": lda,
    "mlp": mlp,
    "stats_cnn": StatsCNN,
    "raw_resnet50": raw_resnet50,
    "raw_xception": raw_xception,
    "raw_efficientnet_lite0": raw_efficientnet_lite0,
    "feature_squeezing": FeatureSqueezing,
}

#: What each detector takes: ``"features"`` (a feature matrix (N, d): it can be the estimator of
#: an :class:`advlib.detect.Detector`) or ``"images"`` (uint8 images: the raw-image CNNs and
#: feature squeezing). A name missing here (one registered with ``DETECTORS[name] = ...``) takes
#: features; :func:`register_detector` records it.
TAKES: dict[str, str] = {"raw_resnet50": "images", "raw_xception": "images", "raw_efficientnet_lite0": "images",
                         "feature_squeezing": "images"}


def takes(name: str) -> str:
    """``"images"`` or ``"features"``: what detector ``name`` of :data:`DETECTORS` is fitted on."""
    if name not in DETECTORS:
        raise KeyError(f"unknown detector {name!r} (known: {', '.join(DETECTORS)})")
    return TAKES.get(name, "features")


def feature_detectors() -> list[str]:
    """The names of :data:`DETECTORS` that take features (the estimators a :class:`advlib.detect.Detector` can use)."""
    return [n for n in DETECTORS if takes(n) == "features"]


def register_detector(name: str, factory: Callable[..., Any], *, takes: str = "features",
                      grid: dict[str, list] | None = None) -> None:
    """Add detector ``name``: ``factory(**params)`` builds an unfitted one; ``takes``
    ``"features"`` or ``"images"``; ``grid``: its dev-set grid (:data:`PARAM_GRIDS`)."""
    if takes not in ("features", "images"):
        raise ValueError(f"takes must be 'features' or 'images', got {takes!r}")
    DETECTORS[name] = factory
    TAKES[name] = takes
    if grid is not None:
        PARAM_GRIDS[name] = grid

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
    y_train, y_dev = binary_labels(y_train, "y_train"), binary_labels(y_dev, "y_dev")
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
