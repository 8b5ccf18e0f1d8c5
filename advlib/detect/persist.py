"""Saving and loading fitted detectors in safe formats (skops with scikit-learn types only,
tensors read with ``weights_only``, JSON)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import skops.io
import torch
from sklearn.base import BaseEstimator
from torch import nn

from ..models import load_classifier
from ..store import atomic_write_bytes
from .base import TorchDetector, device_of
from .finetune import FineTunedEfficientNet
from .raw_cnn import RawImageCNN
from .squeezing import FeatureSqueezing
from .stats_cnn import StatsCNN

# --------------------------------------------------------------------------- save / load

_CONFIG = "detector.json"


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def save_detector(detector, path: str | os.PathLike, meta: dict) -> Path:
    """Save a fitted detector in folder ``path``: the model file, then ``detector.json``.

    sklearn models: ``model.skops``. Torch detectors: ``state_dict.pt`` (tensors only) and their
    parameters in the JSON. Feature squeezing: parameters and fitted threshold only (its
    classifier is reloaded by name). ``meta`` (classifier, operation set, feature, ...) is
    stored in the JSON and checked by :func:`load_detector`. Every file is written atomically.
    """
    path = Path(path)
    meta = json.loads(json.dumps(meta, default=_jsonable))
    if isinstance(detector, FeatureSqueezing):
        params = {k: _jsonable(v) for k, v in detector.get_params().items() if k != "model"}
        config = {"kind": "FeatureSqueezing", "params": params,
                  "classifier": getattr(detector.model, "name", None),
                  "fitted": {k: getattr(detector, k, None) for k in ("threshold_", "fpr_threshold_")}}
    elif isinstance(detector, TorchDetector):
        if not hasattr(detector, "net_"):
            raise ValueError("save_detector: the detector is not fitted")
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in detector.net_.state_dict().items()}, buf)
        atomic_write_bytes(path / "state_dict.pt", buf.getvalue())
        fitted = {k: _jsonable(getattr(detector, k, None))
                  for k in ("n_features_in_", "layout_", "best_epoch_", "dev_accuracy_", "history_")}
        config = {"kind": type(detector).__name__, "params": {k: _jsonable(v) for k, v in detector.get_params().items()},
                  "fitted": fitted}
    elif hasattr(detector, "state_dict_trainable"):  # FineTunedEfficientNet: trained tensors only
        buf = io.BytesIO()
        torch.save(detector.state_dict_trainable(), buf)
        atomic_write_bytes(path / "state_dict.pt", buf.getvalue())
        config = {"kind": type(detector).__name__, "params": {k: _jsonable(v) for k, v in detector.get_params().items()},
                  "fitted": {k: _jsonable(v) for k, v in detector.fitted_attributes().items()}}
    elif isinstance(detector, BaseEstimator):
        atomic_write_bytes(path / "model.skops", skops.io.dumps(detector))
        config = {"kind": "sklearn", "class": type(detector).__name__}
    else:
        raise TypeError(f"save_detector: unsupported detector type {type(detector).__name__}")
    config["meta"] = meta
    atomic_write_bytes(path / _CONFIG, json.dumps(config, indent=2, sort_keys=True).encode())
    return path


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` dict saved beside a detector."""
    return json.loads((Path(path) / _CONFIG).read_text())["meta"]


def load_detector(path: str | os.PathLike, expect: dict | None = None, *, model: nn.Module | None = None,
                  device: str | None = None):
    """Load a detector saved by :func:`save_detector`.

    ``expect``: each key must equal the saved meta's value, else ValueError naming the key,
    expected and found values. ``model``: the classifier of a feature squeezing detector
    (default: loaded by its saved name). ``device``: where torch detectors run (default: saved).
    """
    path = Path(path)
    if not (path / _CONFIG).exists():
        raise FileNotFoundError(f"no saved detector in {path} ({_CONFIG} missing)")
    config = json.loads((path / _CONFIG).read_text())
    meta = config["meta"]
    for key, want in (expect or {}).items():
        found = meta.get(key, "<missing>")
        if json.loads(json.dumps(want, default=_jsonable)) != found:
            raise ValueError(f"saved detector {path}: meta key {key!r}: expected {want!r}, found {found!r}")
    kind = config["kind"]
    if kind == "sklearn":
        data = (path / "model.skops").read_bytes()
        untrusted = skops.io.get_untrusted_types(data=data)
        bad = [t for t in untrusted if not t.startswith("sklearn.")]
        if bad:
            raise ValueError(f"{path}/model.skops holds types outside scikit-learn: {bad}")
        return skops.io.loads(data, trusted=untrusted)
    params = dict(config["params"])
    if device is not None:
        params["device"] = device
    if kind == "FeatureSqueezing":
        if model is None:
            model = load_classifier(config["classifier"], device=device_of(params["device"]))
        params["nlm"] = tuple(params["nlm"])
        det = FeatureSqueezing(model, **params)
        for k, v in config["fitted"].items():
            if v is not None:
                setattr(det, k, v)
        return det
    if kind == "FineTunedEfficientNet":
        state = torch.load(path / "state_dict.pt", map_location="cpu", weights_only=True)
        return FineTunedEfficientNet.from_saved(params, state, config["fitted"])
    cls = {"StatsCNN": StatsCNN, "RawImageCNN": RawImageCNN}[kind]
    arch = params.pop("arch", None)
    det = cls(arch, **params) if arch else cls(**params)
    fitted = config["fitted"]
    for k, v in fitted.items():
        setattr(det, k, v)
    net = det.build_net(fitted.get("n_features_in_") or 0, init=False) if kind == "StatsCNN" else det.build_net(0, init=False)
    net.load_state_dict(torch.load(path / "state_dict.pt", map_location="cpu", weights_only=True))
    det.net_ = net.to(device_of(det.device)).eval()
    return det
