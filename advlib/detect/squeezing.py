"""Feature squeezing (Xu et al., NDSS 2018; EvadeML-Zoo), the paper's baseline."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from .base import binary_labels, device_of, image_input
from .metrics import fpr_threshold

#: EvadeML-Zoo's ImageNet threshold for "Best Joint Detection (5-bit, 2x2, 11-3-4)", used by the paper.
PAPER_THRESHOLD = 1.2128

# --------------------------------------------------------------------------- feature squeezing

def bit_depth(x: torch.Tensor, bits: int = 5) -> torch.Tensor:
    """EvadeML's bit-depth squeezer on floats in [0, 1]: ``rint(x * (2**bits - 1)) / (2**bits - 1)``."""
    levels = 2 ** bits - 1
    return torch.round(x * levels) / levels


def median_filter(x: torch.Tensor, size: int = 2) -> torch.Tensor:
    """Per-channel ``size`` x ``size`` median of (B, C, H, W), equal to EvadeML's
    ``scipy.ndimage.median_filter(size=(size, size), mode='reflect')``: the window is anchored as
    scipy's (``size // 2`` pixels before, the rest after), edges repeat, and for an even size
    the upper of the two middle values is taken.
    """
    if x.dim() != 4:
        raise ValueError(f"median_filter expects (B, C, H, W), got {tuple(x.shape)}")
    before, after = size // 2, (size - 1) // 2
    padded = nn.functional.pad(x, (before, after, before, after), mode="replicate")
    windows = padded.unfold(2, size, 1).unfold(3, size, 1).reshape(*x.shape, size * size)
    return windows.sort(dim=-1).values[..., (size * size) // 2]


def non_local_means(images: torch.Tensor, search: int = 11, template: int = 3, h: float = 4) -> torch.Tensor:
    """EvadeML's NLM squeezer: ``cv2.fastNlMeansDenoisingColored`` on each uint8 (3, H, W) image.

    The RGB array goes to OpenCV as it is, as EvadeML-Zoo passed it (OpenCV reads it as BGR).
    """
    arrs = images.permute(0, 2, 3, 1).cpu().numpy()
    out = [cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(a), None, h=h, hColor=h,
                                           templateWindowSize=template, searchWindowSize=search) for a in arrs]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


class FeatureSqueezing(BaseEstimator, ClassifierMixin):
    """Feature squeezing (Xu et al., NDSS 2018), EvadeML-Zoo's "5-bit, 2x2, 11-3-4" ImageNet setting.

    ``model`` is a classifier taking (B, 3, H, W) floats in [0, 1] (:func:`advlib.models.load_classifier`).
    Score of an image = max over the squeezers (bit depth, median, NLM ``(search, template, h)``)
    of the L1 distance between the softmax outputs of the image and of its squeezed version
    (0..2). ``fit`` sets ``fpr_threshold_`` so that at most ``fpr`` of the normal training images
    score above it (EvadeML's rule); ``threshold`` overrides it (``PAPER_THRESHOLD`` = 1.2128,
    the fixed value the paper used, see :meth:`paper_setting`). ``threshold_used()`` (also
    ``threshold_`` after fit) is the one in force; ``predict``: adversarial when score > it.
    """

    classes_ = np.array([0, 1])

    def __init__(self, model: nn.Module, *, bit_depth: int = 5, median_size: int = 2,
                 nlm: tuple[int, int, int] = (11, 3, 4), fpr: float = 0.05, threshold: float | None = None,
                 device: str = "cpu", batch_size: int = 32):
        self.model = model
        self.bit_depth = bit_depth
        self.median_size = median_size
        self.nlm = nlm
        self.fpr = fpr
        self.threshold = threshold
        self.device = device
        self.batch_size = batch_size

    def __repr__(self) -> str:
        name = getattr(self.model, "name", type(self.model).__name__)
        return (f"FeatureSqueezing(model={name!r}, bit_depth={self.bit_depth}, median_size={self.median_size}, "
                f"nlm={tuple(self.nlm)}, fpr={self.fpr}, threshold={self.threshold})")

    @classmethod
    def paper_setting(cls, model: nn.Module, **kwargs) -> "FeatureSqueezing":
        """The paper's detector: EvadeML-Zoo's fixed ImageNet threshold 1.2128 (no fitting needed)."""
        return cls(model, threshold=PAPER_THRESHOLD, **kwargs)

    @torch.inference_mode()
    def squeezer_scores(self, X) -> np.ndarray:
        """(N, 3) float64 L1 distances of softmax outputs: bit depth, median, NLM (uint8 (N, 3, H, W) input)."""
        X = image_input(X)
        device = device_of(self.device)
        model = self.model.to(device).eval()
        search, template, h = self.nlm
        out = []
        for s in range(0, len(X), self.batch_size):
            xb = X[s:s + self.batch_size]
            nlm = non_local_means(xb, search, template, h).to(device).float() / 255
            x = xb.to(device).float() / 255
            batch = torch.cat([x, bit_depth(x, self.bit_depth), median_filter(x, self.median_size), nlm])
            p = torch.softmax(model(batch).float(), 1).view(4, len(xb), -1)
            out.append((p[1:] - p[0]).abs().sum(-1).T.double().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 3))

    def decision_function(self, X) -> np.ndarray:
        """(N,) float64 raw score: max over squeezers of the L1 distance (0..2)."""
        return self.squeezer_scores(X).max(axis=1)

    def fit(self, X, y=None):
        """Threshold at ``fpr`` false positives on normal images (``y == 0`` where y is given).

        Sets ``fpr_threshold_`` (EvadeML's rule: the ``ceil(n * (1 - fpr))``-th smallest normal
        score) and ``threshold_``, the threshold in use: ``threshold`` when set, else ``fpr_threshold_``.
        """
        X = image_input(X)
        if y is not None:
            y = binary_labels(y)
            X = X[torch.from_numpy(y == 0)]
        if len(X) == 0:
            raise ValueError("FeatureSqueezing.fit needs normal images (y == 0)")
        if not 0 < self.fpr < 1:
            raise ValueError(f"fpr must be in (0, 1), got {self.fpr}")
        scores = np.sort(self.decision_function(X))
        self.train_scores_ = scores
        self.fpr_threshold_ = fpr_threshold(scores, self.fpr)
        self.threshold_ = self.fpr_threshold_ if self.threshold is None else float(self.threshold)
        return self

    def threshold_used(self) -> float:
        """``threshold`` when set (e.g. :data:`PAPER_THRESHOLD`), else the fitted ``threshold_``."""
        if self.threshold is not None:
            return float(self.threshold)
        if not hasattr(self, "threshold_"):
            raise RuntimeError("FeatureSqueezing has no threshold: call fit or pass threshold=")
        return self.threshold_

    def predict(self, X) -> np.ndarray:
        """(N,) int64: 1 (adversarial) where the score is above the threshold."""
        return (self.decision_function(X) > self.threshold_used()).astype(np.int64)
