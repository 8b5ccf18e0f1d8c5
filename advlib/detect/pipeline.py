"""The paper's detector as one object: operations, features and estimator together (Sect. 4).

:class:`Detector` takes any classifier of [0, 1] pixels (``advlib.load_classifier`` or a model
wrapped by ``advlib.wrap``), applies the operations of one group to each image, reads the
classifier's top-5 labels before and after every operation, turns them into the counting or
differences feature (:mod:`advlib.features`) and scores them with an estimator (a name of
:data:`advlib.detect.DETECTORS` or any scikit-learn-API estimator with ``predict_proba``)::

    det = Detector(clf, feature="diff", ops="all", estimator="svm")
    det.fit(images, is_adversarial)          # uint8 (N, 3, H, W) or image file paths
    scores = det.score(images)               # P(adversarial), float (N,)
    flags = det.detect(images)               # scores >= det.threshold, bool (N,)
    det.save("my_detector"); det = Detector.load("my_detector", clf)

The estimator is saved in safe formats only (skops limited to scikit-learn types, or tensors
read with ``weights_only``; :func:`advlib.detect.save_detector`), with metadata: classifier,
operations, feature, group, threshold, a SHA-256 of the training data and what :meth:`fit` /
:meth:`calibrate` measured. :meth:`Detector.load` refuses another classifier or another
operation set, with a message that says which.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .. import features
from .. import ops as _ops
from ..images import SIZE, load_image
from ..models import classifier_name, load_classifier
from ..pretrained import DIR as PRETRAINED_DIR
from ..store import check_images, pixel_sha256
from .metrics import calibrate_threshold, detector_scores
from .persist import load_detector, read_meta, save_detector
from .registry import feature_detectors, make_detector

#: Feature kinds, as :func:`advlib.features.feature_matrix` names them.
FEATURES = features.FEATURE_KINDS + features.CONTINUOUS_KINDS


def as_images(images: Any, name: str = "images") -> torch.Tensor:
    """uint8 (N, 3, H, W) from a uint8 tensor or a sequence of image file paths (read as
    :func:`advlib.images.load_image` does: 224x224 files as they are, others resize 256 + centre
    crop 224). Anything else is a ``ValueError`` naming ``name``."""
    if isinstance(images, torch.Tensor):
        return check_images(images, name)
    if isinstance(images, (str, os.PathLike)):
        raise ValueError(f"{name}: give a list of paths, not one path ({images})")
    paths = list(images)
    if not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise ValueError(f"{name} must be a uint8 tensor (N, 3, H, W) or a list of image file paths")
    if not paths:
        return torch.empty(0, 3, SIZE, SIZE, dtype=torch.uint8)
    return torch.stack([load_image(p) for p in paths])


def data_sha256(images: torch.Tensor, labels: np.ndarray) -> str:
    """SHA-256 of a training set: every image's pixel hash and its label, in order."""
    h = hashlib.sha256()
    for im, y in zip(images, labels):
        h.update(pixel_sha256(im).encode())
        h.update(b"1" if y else b"0")
    return h.hexdigest()


class Detector:
    """Detect adversarial images with the paper's features (see the module docstring).

    ``classifier``: a module taking float (B, 3, H, W) pixels in [0, 1] and returning (B, 1000)
    logits. ``feature``: the paper's ``"count"`` or ``"diff"``, or a continuous feature of the
    same passes (``"prob"``, ``"shift"``, ``"prob+shift"``: :data:`advlib.features.CONTINUOUS_KINDS`).
    ``ops``: an operation group of :data:`advlib.ops.GROUPS` (``"all"`` = the 38, ``"jpeg"``,
    ``"jpeg+scaling"``, ...) or a list of operation names (each costs one classifier pass; on a
    list, ``count`` counts over all of them together).
    ``estimator``: a name of :func:`advlib.detect.feature_detectors` or an unfitted scikit-learn-API
    estimator. ``threshold``: on P(adversarial) (0.5 as the paper; :meth:`calibrate` sets one
    for a target false-positive rate). ``batch_size``, ``device``, ``workers``: as
    :func:`advlib.features.top5_under_ops`; ``cache_dir``: its on-disk cache (None: none).
    """

    def __init__(self, classifier: nn.Module, *, feature: str = "diff", ops: str | Sequence[str] = "all",
                 estimator: str | Any = "svm", threshold: float = 0.5, batch_size: int = 16,
                 device: str | torch.device | None = None, workers: int = 0,
                 cache_dir: str | os.PathLike | None = None):
        if feature not in FEATURES:
            raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
        if isinstance(ops, str):
            if ops not in _ops.GROUPS:
                raise ValueError(f"ops must be an operation group ({', '.join(_ops.GROUPS)}) or a list of "
                                 f"operation names, got {ops!r}")
            op_names, group = list(_ops.GROUPS[ops]), ops
        else:
            op_names, group = list(ops), None
            unknown = [n for n in op_names if n not in _ops.OPERATIONS]
            if unknown or not op_names or len(set(op_names)) != len(op_names):
                raise ValueError(f"ops: need distinct names of advlib.ops.OPERATIONS, got {op_names}"
                                 + (f" (unknown: {unknown})" if unknown else ""))
        if isinstance(estimator, str) and estimator not in feature_detectors():
            raise ValueError(f"unknown estimator {estimator!r} (feature estimators: {', '.join(feature_detectors())})")
        if not isinstance(estimator, str) and not (hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")):
            raise TypeError("estimator must be a name of advlib.detect.DETECTORS or have fit() and predict_proba()")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1] (a probability), got {threshold}")
        self.classifier = classifier
        self.feature, self.group, self.estimator = feature, group, estimator
        self.threshold = float(threshold)
        self.batch_size, self.device, self.workers, self.cache_dir = batch_size, device, workers, cache_dir
        self.op_names: list[str] = op_names
        self.meta: dict[str, Any] = {}
        self.estimator_: Any = None

    # ------------------------------------------------------------------ features
    @property
    def passes(self) -> int:
        """Classifier forward passes per image: the image and each operation."""
        return 1 + len(self.op_names)

    def _outputs(self, images: Any, stats: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return features.outputs_under_ops(self.classifier, as_images(images), self.op_names,
                                          batch_size=self.batch_size, device=self.device,
                                          cache_dir=self.cache_dir, classifier=classifier_name(self.classifier),
                                          workers=self.workers, progress=False, stats=stats)

    def top5(self, images: Any) -> np.ndarray:
        """int64 (N, 1 + n_ops, 5): the classifier's top-5 labels of each image, then under each
        operation (the paper's forward passes: :attr:`passes` per image)."""
        return np.asarray(self._outputs(images, False)[0])

    def features(self, images: Any) -> np.ndarray:
        """The detector's input: the ``feature`` of the operations, (N, d) (int64 for the
        paper's features, float64 for the continuous ones)."""
        return self._features_top5(images)[0]

    def features_of(self, top5: Any, stats: Any = None) -> np.ndarray:
        """The detector's input from outputs already computed over its operations: ``top5``
        (N, 1 + n_ops, 5) and, for a continuous feature, ``stats`` (N, n_ops, 2)
        (:func:`advlib.features.outputs_under_ops` with ``self.op_names``)."""
        if self.feature in features.FEATURE_KINDS and self.group is not None:
            return features.feature_matrix(top5, self.feature, self.group, self.op_names)
        return features.subset_features(top5, stats, self.feature, range(len(self.op_names)))

    def _features_top5(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        top5, stats = self._outputs(images, self.feature not in features.FEATURE_KINDS)
        return self.features_of(top5, stats), np.asarray(top5[:, 0])

    # ------------------------------------------------------------------ learning
    def fit(self, images: Any, is_adversarial: Sequence[bool] | np.ndarray) -> "Detector":
        """Fit the estimator on ``images`` (uint8 (N, 3, H, W) or file paths) and their labels
        (bool (N,), True = adversarial; both classes needed). Returns self."""
        x = as_images(images)
        y = np.asarray(is_adversarial).astype(bool)
        if y.shape != (len(x),):
            raise ValueError(f"is_adversarial must have one entry per image ({len(x)}), got shape {y.shape}")
        if len(np.unique(y)) < 2:  # checked before the classifier passes
            raise ValueError("is_adversarial must hold both normal (False) and adversarial (True) images")
        return self.fit_features(self.features(x), y, training_data_sha256=data_sha256(x, y))

    def fit_features(self, X: np.ndarray, is_adversarial: Sequence[bool] | np.ndarray, **meta: Any) -> "Detector":
        """Fit the estimator on precomputed features ``X`` (N, d) (:meth:`features` of the
        training images, e.g. from a cache) and their labels; ``meta``: what to record about the
        training data (saved with the detector). Returns self."""
        X = np.asarray(X)
        y = np.asarray(is_adversarial).astype(bool)
        if X.ndim != 2 or y.shape != (len(X),):
            raise ValueError(f"X must be (N, d) with one label per row, got X {X.shape}, labels {y.shape}")
        if len(np.unique(y)) < 2:
            raise ValueError("is_adversarial must hold both normal (False) and adversarial (True) images")
        est = make_detector(self.estimator) if isinstance(self.estimator, str) else self.estimator
        self.estimator_ = est.fit(X, y.astype(np.int64))
        self.meta = {"n_train": int(len(y)), "n_train_adversarial": int(y.sum()), **meta}
        return self

    def fitted_estimator(self) -> Any:
        if self.estimator_ is None:
            raise RuntimeError("this Detector is not fitted: call fit() or Detector.load()")
        return self.estimator_

    def score(self, images: Any) -> np.ndarray:
        """P(adversarial) of each image, float64 (N,) (empty for no images)."""
        return self.score_top5(images)[0]

    def score_top5(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(score (N,), top5 (N, 5))``: :meth:`score` and the classifier's top-5 labels of each
        image itself, from the same :attr:`passes` (no extra pass for the top-5); empty arrays
        for no images."""
        estimator, x = self.fitted_estimator(), as_images(images)
        if not len(x):
            return np.zeros(0), np.zeros((0, features.TOPK), dtype=np.int64)
        X, top5 = self._features_top5(x)
        return detector_scores(estimator, X), top5

    def detect(self, images: Any) -> np.ndarray:
        """bool (N,): score >= ``threshold`` (empty for no images)."""
        return self.score(images) >= self.threshold

    def calibrate(self, normal_images: Any, fpr: float = 0.05) -> float:
        """Set ``threshold`` so that about ``fpr`` of ``normal_images`` (images the detector did
        not see in training, for an honest rate) are flagged; returns it
        (:func:`advlib.detect.calibrate_threshold`)."""
        scores = self.score(normal_images)
        self.threshold = float(calibrate_threshold(scores, fpr))
        self.meta.update(calibrated_fpr_target=float(fpr), calibration_n=int(len(scores)),
                         calibration_fpr=float(np.mean(scores >= self.threshold)))
        return self.threshold

    # ------------------------------------------------------------------ persistence
    @property
    def estimator_name(self) -> str:
        """The estimator's registry name, or its class name for an estimator object."""
        return self.estimator if isinstance(self.estimator, str) else type(self.estimator).__name__

    def describe(self) -> dict[str, Any]:
        """The metadata saved with the detector."""
        return {"classifier": classifier_name(self.classifier), "ops": self.op_names, "group": self.group,
                "ops_version": _ops.VERSION, "feature": self.feature, "estimator": self.estimator_name,
                "threshold": self.threshold, "passes": self.passes, **self.meta}

    def save(self, path: str | os.PathLike) -> Path:
        """Save the fitted estimator and :meth:`describe` into folder ``path`` (safe formats)."""
        return save_detector(self.fitted_estimator(), path, self.describe())

    @classmethod
    def load(cls, path: str | os.PathLike, classifier: nn.Module, **kwargs: Any) -> "Detector":
        """A detector saved by :meth:`save`, for ``classifier`` (it must be the one it was trained
        with, by name, and this library's operations must be the saved ones: else ``ValueError``).
        ``kwargs``: ``batch_size``, ``device``, ``workers``, ``cache_dir``."""
        meta = read_meta(path)
        name = classifier_name(classifier)
        if meta.get("classifier") != name:
            raise ValueError(f"detector {path} was trained for classifier {meta.get('classifier')!r}, "
                             f"not {name!r}: its features would mean something else")
        group, saved_ops = meta.get("group"), meta.get("ops") or []
        if (group is not None and (group not in _ops.GROUPS or list(_ops.GROUPS[group]) != saved_ops)) or \
                any(n not in _ops.OPERATIONS for n in saved_ops):
            raise ValueError(f"detector {path} was trained on operations {saved_ops} (group {group!r}), "
                             f"which this advlib does not define the same way")
        if meta.get("ops_version", _ops.VERSION) != _ops.VERSION:
            raise ValueError(f"detector {path} was trained with advlib.ops.VERSION {meta['ops_version']}, "
                             f"this advlib has {_ops.VERSION}: its operations may give other pixels")
        est = load_detector(path, expect={"classifier": name, "ops": meta["ops"]})
        name = meta.get("estimator", "svm")  # a registry name, or the class of an estimator object
        det = cls(classifier, feature=meta["feature"], ops=group if group is not None else saved_ops,
                  estimator=name if name in feature_detectors() else est, threshold=meta.get("threshold", 0.5),
                  **kwargs)
        det.estimator_ = est
        det.meta = {k: v for k, v in meta.items() if k not in ("classifier", "ops", "group", "feature", "estimator",
                                                               "threshold", "ops_version", "passes")}
        return det

    @classmethod
    def from_estimator(cls, classifier: nn.Module, estimator: Any, *, feature: str = "diff",
                       ops: str | Sequence[str] = "all", threshold: float = 0.5,
                       meta: dict[str, Any] | None = None, **kwargs: Any) -> "Detector":
        """A detector around an estimator already fitted on this feature and these operations
        (e.g. one saved by :func:`advlib.detect.save_detector` in notebook 03). ``kwargs``: as
        the constructor's ``batch_size``, ``device``, ``workers``, ``cache_dir``."""
        if not (hasattr(estimator, "predict_proba") or hasattr(estimator, "decision_function")):
            raise TypeError("estimator must be fitted and have predict_proba() or decision_function()")
        det = cls(classifier, feature=feature, ops=ops, estimator=estimator, threshold=threshold, **kwargs)
        det.estimator_ = estimator
        det.meta = dict(meta or {})
        return det

    @classmethod
    def pretrained(cls, classifier: str | nn.Module = "efficientnet_lite0", **kwargs: Any) -> "Detector":
        """The detector shipped with advlib for ``classifier`` (a name of
        :data:`advlib.models.CLASSIFIERS`, loaded on CPU, or a loaded classifier), from
        :data:`PRETRAINED_DIR`. Its ``meta`` states the out-of-fold false-positive and detection
        rates measured when it was trained. ``kwargs``: as :meth:`load`."""
        if isinstance(classifier, str):
            classifier = load_classifier(classifier)
        name = classifier_name(classifier)
        path = PRETRAINED_DIR / name
        if not (path / "detector.json").exists():
            shipped = sorted(p.name for p in PRETRAINED_DIR.glob("*") if (p / "detector.json").exists())
            raise FileNotFoundError(f"no detector ships with advlib for classifier {name!r} (looked in {path}); "
                                    f"shipped: {', '.join(shipped) or 'none'}. Train one with advlib.Detector "
                                    f"and pass its folder instead")
        return cls.load(path, classifier, **kwargs)

    def __repr__(self) -> str:
        state = "fitted" if self.estimator_ is not None else "not fitted"
        ops = self.group if self.group is not None else self.op_names
        return (f"Detector({classifier_name(self.classifier)!r}, feature={self.feature!r}, ops={ops!r}, "
                f"estimator={self.estimator_name!r}, threshold={self.threshold:.4g}, {state})")
