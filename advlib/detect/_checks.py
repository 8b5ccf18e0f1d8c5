"""Input checks shared by the detectors: labels, feature matrices, uint8 images, devices."""

from __future__ import annotations

import numpy as np
import torch

from ..store import check_images


def _device(device: str | torch.device) -> torch.device:
    from ..runtime import resolve_device

    return torch.device(resolve_device(device) if isinstance(device, str) else device)


def _labels(y, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must be a 1-D array of 0 (normal) / 1 (adversarial) labels, got {y!r:.80}")
    return y.astype(np.int64)


def _features(X, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise ValueError(f"{name} must be a finite (N, d) feature matrix, got shape {X.shape}")
    return X


def _images(X, name: str = "X") -> torch.Tensor:
    return check_images(torch.as_tensor(X), name)