"""Detectors of adversarial images (paper section 4) and their evaluation (Table 4, Table 5).

Every detector follows the scikit-learn estimator API: ``fit``, ``predict`` (1 = adversarial,
0 = normal), ``predict_proba`` (probability of "normal", "adversarial") and/or
``decision_function``. :data:`DETECTORS` maps the names used in the profiles to factories:

- ``svm``, ``random_forest``, ``lda``, ``mlp``: the traditional classifiers of section 4.3 on
  counting / differences feature matrices (N, d), with scikit-learn 0.21.3's defaults as the
  paper: ``SVC(gamma="auto", probability=True)``, 100 trees of depth 2, LDA, MLP. No scaler
  in front, as in the paper and the authors' code. :func:`select_on_dev` picks the
  hyper-parameters of :data:`PARAM_GRIDS` on the dev split (section 4.3).
- ``stats_cnn`` (:class:`StatsCNN`): the authors' 1-D CNN on one feature vector (section 4.4).
- ``raw_resnet50``, ``raw_xception`` (:class:`RawImageCNN`): CNNs on the uint8 images,
  trained from scratch or fine-tuned from local ImageNet weights (section 4.4).
- ``feature_squeezing`` (:class:`FeatureSqueezing`): Xu et al., NDSS 2018 (EvadeML-Zoo).

Scores: :func:`detector_scores` returns the probability of "adversarial" (``predict_proba``
column 1) or, for feature squeezing, its raw L1 score. :func:`evaluate` counts a score
``>= threshold`` as adversarial; 0.5 on the probability is the paper's accuracy threshold.
:func:`save_detector` / :func:`load_detector` store a fitted detector in a folder with safe
formats only (skops, ``state_dict`` + JSON).
"""

from __future__ import annotations

import inspect
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import ParameterGrid
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from torch import nn

from .models import IMAGENET_MEAN, IMAGENET_STD, MissingWeightsError
from .store import atomic_write_bytes

#: EvadeML-Zoo's ImageNet threshold for "Best Joint Detection (5-bit, 2x2, 11-3-4)", used by the paper.
PAPER_THRESHOLD = 1.2128


def _device(device: str | torch.device) -> torch.device:
    from .config import resolve_device

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
    X = torch.as_tensor(X)
    if X.dtype != torch.uint8 or X.dim() != 4 or X.shape[1] != 3:
        raise ValueError(f"{name} must be uint8 images (N, 3, H, W), got {X.dtype} {tuple(X.shape)}")
    return X


# --------------------------------------------------------------------------- traditional classifiers

def svm(**params) -> SVC:
    """``SVC(gamma="auto", probability=True)`` as the paper (scikit-learn 0.21 otherwise)."""
    return SVC(gamma="auto", probability=True, random_state=0).set_params(**params)


def random_forest(**params) -> RandomForestClassifier:
    """``RandomForestClassifier(n_estimators=100, max_depth=2)`` as the paper."""
    return RandomForestClassifier(n_estimators=100, max_depth=2, random_state=0).set_params(**params)


def lda(**params) -> LinearDiscriminantAnalysis:
    """``LinearDiscriminantAnalysis()`` with scikit-learn defaults, as the paper."""
    return LinearDiscriminantAnalysis().set_params(**params)


def mlp(**params) -> MLPClassifier:
    """``MLPClassifier()`` with scikit-learn defaults (one hidden layer of 100, adam, alpha 1e-4).

    ``max_iter`` is raised from 200 to 2000 so that training converges rather than stopping
    with a warning; the stopping rule (``tol`` over ``n_iter_no_change`` epochs) is unchanged.
    """
    return MLPClassifier(max_iter=2000, random_state=0).set_params(**params)


# --------------------------------------------------------------------------- stats-CNN

#: The authors' two stats-CNN layouts: (out_channels, kernel, stride) of the 5 Conv1d layers and
#: the width of the first fully connected layer ("count": 20 inputs, "diff": 190 inputs).
STATS_CNN_LAYOUTS: dict[str, tuple[tuple[tuple[int, int, int], ...], int]] = {
    "count": (((8, 5, 2), (16, 3, 2), (32, 3, 1), (64, 3, 1), (128, 3, 1)), 512),
    "diff": (((8, 7, 3), (16, 5, 3), (32, 3, 2), (64, 3, 1), (128, 3, 1)), 1024),
}


def _stats_cnn_net(n_features: int, layout: str) -> nn.Sequential:
    convs, hidden = STATS_CNN_LAYOUTS[layout]
    layers: list[nn.Module] = []
    channels = 1
    for out, kernel, stride in convs:
        layers += [nn.Conv1d(channels, out, kernel, stride=stride, padding=1), nn.BatchNorm1d(out), nn.ReLU()]
        channels = out
    features = nn.Sequential(*layers)
    with torch.no_grad():
        flat = features(torch.zeros(2, 1, n_features)).flatten(1).shape[1]
    net = nn.Sequential(features, nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, 2))
    for m in net.modules():  # the authors' initialisation
        if isinstance(m, nn.Conv1d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.normal_(m.weight, 0.5, 0.02)
            nn.init.zeros_(m.bias)
    return net


class _TorchDetector(BaseEstimator, ClassifierMixin):
    """Shared training loop: Adam, cross-entropy on 2 logits, keep the best epoch on dev."""

    classes_ = np.array([0, 1])

    def _inputs(self, X) -> torch.Tensor:  # (N, ...) tensor the network takes, on the CPU
        raise NotImplementedError

    def _build(self, n_features: int, *, init: bool) -> nn.Module:
        raise NotImplementedError

    #: intra-op threads while training on the CPU (None: torch's setting)
    _fit_threads: int | None = None

    def fit(self, X, y, X_dev=None, y_dev=None):
        """Train for ``epochs``; with a dev set, keep the epoch of best dev accuracy (ties: earliest).

        Sets ``best_epoch_`` (1-based), ``dev_accuracy_`` (None without dev) and ``history_``
        (one dict per epoch: train loss and accuracy, dev accuracy).
        """
        from .config import torch_threads

        with torch_threads(self._fit_threads if _device(self.device).type == "cpu" else None):
            return self._fit(X, y, X_dev, y_dev)

    def _fit(self, X, y, X_dev, y_dev):
        self.__dict__.pop("n_features_in_", None)  # a refit may change the feature count
        X, y = self._inputs(X), torch.as_tensor(_labels(y))
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        has_dev = X_dev is not None
        if has_dev:
            X_dev, y_dev = self._inputs(X_dev), _labels(y_dev, "y_dev")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        from tqdm.auto import tqdm

        device = _device(self.device)
        torch.manual_seed(self.random_state)
        self.n_features_in_ = int(X.shape[-1]) if X.dim() == 2 else None
        net = self._build(X.shape[-1], init=True).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, betas=(0.9, 0.999))
        loss_fn = nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(self.random_state)
        best_state, best_acc, self.history_, self.best_epoch_ = None, -1.0, [], self.epochs
        for epoch in tqdm(range(1, self.epochs + 1), desc=type(self).__name__, disable=not self.progress, leave=False):
            net.train()
            order = torch.randperm(len(X), generator=generator)
            total, correct = 0.0, 0
            for start in range(0, len(X), self.batch_size):
                idx = order[start:start + self.batch_size]
                if len(idx) < 2 and len(X) > 1:  # BatchNorm needs two samples in train mode
                    continue
                xb, yb = self._prepare(X[idx], device), y[idx].to(device)
                optimizer.zero_grad()
                logits = net(xb)
                loss = loss_fn(logits, yb)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
            record = {"epoch": epoch, "train_loss": total / len(X), "train_accuracy": correct / len(X)}
            if has_dev:
                self.net_ = net
                acc = float((self.predict(X_dev) == y_dev).mean())
                record["dev_accuracy"] = acc
                if acc > best_acc:
                    best_acc, self.best_epoch_ = acc, epoch
                    best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            self.history_.append(record)
        if best_state is not None:
            net.load_state_dict(best_state)
        self.net_ = net.eval()
        self.dev_accuracy_ = best_acc if has_dev else None
        return self

    def _prepare(self, xb: torch.Tensor, device: torch.device) -> torch.Tensor:
        return xb.to(device)

    @torch.inference_mode()
    def predict_proba(self, X) -> np.ndarray:
        """(N, 2) float64 softmax probabilities of (normal, adversarial)."""
        if not hasattr(self, "net_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit first")
        X = self._inputs(X)
        device = next(self.net_.parameters()).device
        was_training = self.net_.training
        self.net_.eval()
        out = [torch.softmax(self.net_(self._prepare(X[s:s + self.batch_size], device)).float(), 1).cpu()
               for s in range(0, len(X), self.batch_size)]
        self.net_.train(was_training)
        return torch.cat(out).double().numpy() if out else np.zeros((0, 2))

    def predict(self, X) -> np.ndarray:
        """(N,) int64 labels: 1 (adversarial) where P(adversarial) >= 0.5, as the authors' code."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


class StatsCNN(_TorchDetector):
    """The stats-CNN of section 4.4 on one counting or differences vector (N, d).

    5 x (Conv1d + BatchNorm1d + ReLU), Linear + ReLU + Dropout(0.5) + Linear(2), the authors'
    channel widths, kernels and initialisation (:data:`STATS_CNN_LAYOUTS`); ``layout="auto"``
    takes "count" below 100 features and "diff" from 100 up. Adam (lr 5e-4, betas 0.9/0.999),
    cross-entropy; the paper's code trains 100 epochs at batch 64 on unscaled features.
    Trains on one CPU thread (a network this small gains nothing from a second one).
    """

    _fit_threads = 1

    def __init__(self, *, epochs: int = 100, batch_size: int = 64, lr: float = 5e-4, layout: str = "auto",
                 device: str = "cpu", random_state: int = 0, progress: bool = True):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.layout = layout
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def _inputs(self, X) -> torch.Tensor:
        X = torch.from_numpy(_features(X))
        if hasattr(self, "n_features_in_") and self.n_features_in_ and X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the detector was fitted on {self.n_features_in_}")
        return X

    def _build(self, n_features: int, *, init: bool) -> nn.Module:
        layout = self.layout if self.layout != "auto" else ("count" if n_features < 100 else "diff")
        if layout not in STATS_CNN_LAYOUTS:
            raise ValueError(f"layout must be 'auto' or one of {list(STATS_CNN_LAYOUTS)}, got {self.layout!r}")
        try:
            net = _stats_cnn_net(n_features, layout)
        except RuntimeError as e:
            raise ValueError(f"StatsCNN layout {layout!r}: {n_features} features are too few ({e})") from e
        self.layout_ = layout
        return net

    def _prepare(self, xb: torch.Tensor, device: torch.device) -> torch.Tensor:
        return xb.unsqueeze(1).to(device)  # (B, 1, d)


# --------------------------------------------------------------------------- raw-image CNNs

def _hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def pretrained_weights(arch: str) -> Path:
    """The local ImageNet weights file for a raw-image CNN; :class:`MissingWeightsError` if absent.

    ``resnet50``: torchvision's IMAGENET1K_V1 file in the torch hub cache
    (:func:`advlib.models.weights_file`). ``xception``: timm's ``legacy_xception`` weights, in
    the torch hub cache (the file of its ``url``) or the Hugging Face hub cache.
    """
    if arch == "resnet50":
        from .models import _torchvision_url, weights_file

        path = weights_file("resnet50")
        if path.exists():
            return path
        raise MissingWeightsError(
            f"raw_resnet50 (fine-tuned): ImageNet weights not found: {path}. Nothing is downloaded: fetch "
            f"{_torchvision_url('resnet50')} elsewhere and copy it to {path.parent}/")
    if arch == "xception":
        import timm

        cfg = timm.models.get_pretrained_cfg("legacy_xception.tf_in1k").to_dict()
        candidates = []
        if cfg.get("url"):
            candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg["url"]))
        if cfg.get("hf_hub_id"):
            repo = _hf_cache_dir() / ("models--" + cfg["hf_hub_id"].replace("/", "--")) / "snapshots"
            candidates += sorted(repo.glob("*/model.safetensors")) + sorted(repo.glob("*/pytorch_model.bin"))
        for path in candidates:
            if path.exists():
                return path
        where = candidates[0] if candidates else "the torch hub cache"
        raise MissingWeightsError(
            f"raw_xception (fine-tuned): timm legacy_xception ImageNet weights not found: {where}. Nothing is "
            f"downloaded: fetch {cfg.get('url') or cfg.get('hf_hub_id')} elsewhere and copy it there")
    raise ValueError(f"arch must be 'resnet50' or 'xception', got {arch!r}")


class _ImageNet(nn.Module):
    """uint8 (B, 3, H, W) pixels -> normalised floats -> ``net`` -> (B, 2) logits."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.float() / 255 - self.mean) / self.std)


class RawImageCNN(_TorchDetector):
    """ResNet-50 (torchvision) or Xception (timm ``legacy_xception``) with a binary head (section 4.4).

    Takes the uint8 images (N, 3, 224, 224) as they are (no resizing, as the authors' code);
    normalisation is inside the module (ImageNet mean/std for ResNet-50, timm's 0.5/0.5 for
    Xception). ``pretrained=True`` fine-tunes from local ImageNet weights
    (:func:`pretrained_weights`; :class:`MissingWeightsError` when absent), else trains from
    scratch. Adam lr 5e-4; the paper trains 150 epochs and keeps the best epoch on dev.
    """

    def __init__(self, arch: str, *, pretrained: bool = False, epochs: int = 150, batch_size: int = 32,
                 lr: float = 5e-4, device: str = "cpu", random_state: int = 0, progress: bool = True):
        if arch not in ("resnet50", "xception"):
            raise ValueError(f"arch must be 'resnet50' or 'xception', got {arch!r}")
        self.arch = arch
        self.pretrained = pretrained
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def _inputs(self, X) -> torch.Tensor:
        return _images(X)

    def _build(self, n_features: int, *, init: bool) -> nn.Module:
        if self.arch == "resnet50":
            import torchvision

            net = torchvision.models.resnet50(weights=None)
            if init and self.pretrained:
                net.load_state_dict(torch.load(pretrained_weights("resnet50"), map_location="cpu", weights_only=True))
            net.fc = nn.Linear(net.fc.in_features, 2)
            return _ImageNet(net, IMAGENET_MEAN, IMAGENET_STD)
        import timm

        net = timm.create_model("legacy_xception", pretrained=False)
        if init and self.pretrained:
            path = pretrained_weights("xception")
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(path)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        net.reset_classifier(2)
        return _ImageNet(net, net.pretrained_cfg["mean"], net.pretrained_cfg["std"])


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
    import cv2

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
        X = _images(X)
        device = _device(self.device)
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
        X = _images(X)
        if y is not None:
            y = _labels(y)
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


# --------------------------------------------------------------------------- registry

def _raw_resnet50(**params) -> RawImageCNN:
    """ResNet-50 on raw images (:class:`RawImageCNN`)."""
    return RawImageCNN("resnet50", **params)


def _raw_xception(**params) -> RawImageCNN:
    """Xception on raw images (:class:`RawImageCNN`)."""
    return RawImageCNN("xception", **params)


def _raw_efficientnet_lite0(**params):
    """EfficientNet-Lite0 fine-tuned from its shipped ImageNet weights (:class:`advlib.raw_finetune.FineTunedEfficientNet`)."""
    from .raw_finetune import FineTunedEfficientNet

    return FineTunedEfficientNet(classifier="efficientnet_lite0", **params)


#: Detector names (as in the profiles) -> factories taking keyword parameters.
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


# --------------------------------------------------------------------------- evaluation

def detector_scores(det, X) -> np.ndarray:
    """(N,) float64 score of "adversarial": ``predict_proba[:, 1]``, else ``decision_function``."""
    if hasattr(det, "predict_proba"):
        return np.asarray(det.predict_proba(X))[:, 1].astype(np.float64)
    return np.asarray(det.decision_function(X), dtype=np.float64)


def _check(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = _labels(y_true, "y_true")
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
    pred = (s >= threshold) if y_pred is None else _labels(y_pred, "y_pred")
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
    elif isinstance(detector, _TorchDetector):
        if not hasattr(detector, "net_"):
            raise ValueError("save_detector: the detector is not fitted")
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in detector.net_.state_dict().items()}, buf)
        atomic_write_bytes(path / "state_dict.pt", buf.getvalue())
        fitted = {k: _jsonable(getattr(detector, k, None))
                  for k in ("n_features_in_", "layout_", "best_epoch_", "dev_accuracy_", "history_")}
        config = {"kind": type(detector).__name__, "params": {k: _jsonable(v) for k, v in detector.get_params().items()},
                  "fitted": fitted}
    elif hasattr(detector, "state_dict_trainable"):  # raw_finetune.FineTunedEfficientNet: trained tensors only
        buf = io.BytesIO()
        torch.save(detector.state_dict_trainable(), buf)
        atomic_write_bytes(path / "state_dict.pt", buf.getvalue())
        config = {"kind": type(detector).__name__, "params": {k: _jsonable(v) for k, v in detector.get_params().items()},
                  "fitted": {k: _jsonable(v) for k, v in detector.fitted_attributes().items()}}
    elif isinstance(detector, BaseEstimator):
        import skops.io

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
        import skops.io

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
            from .models import load_classifier

            model = load_classifier(config["classifier"], device=_device(params["device"]))
        params["nlm"] = tuple(params["nlm"])
        det = FeatureSqueezing(model, **params)
        for k, v in config["fitted"].items():
            if v is not None:
                setattr(det, k, v)
        return det
    if kind == "FineTunedEfficientNet":
        from .raw_finetune import FineTunedEfficientNet

        state = torch.load(path / "state_dict.pt", map_location="cpu", weights_only=True)
        return FineTunedEfficientNet.from_saved(params, state, config["fitted"])
    cls = {"StatsCNN": StatsCNN, "RawImageCNN": RawImageCNN}[kind]
    arch = params.pop("arch", None)
    det = cls(arch, **params) if arch else cls(**params)
    fitted = config["fitted"]
    for k, v in fitted.items():
        setattr(det, k, v)
    net = det._build(fitted.get("n_features_in_") or 0, init=False) if kind == "StatsCNN" else det._build(0, init=False)
    net.load_state_dict(torch.load(path / "state_dict.pt", map_location="cpu", weights_only=True))
    det.net_ = net.to(_device(det.device)).eval()
    return det
