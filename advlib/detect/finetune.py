"""Raw-image baseline detector: an ImageNet-pretrained EfficientNet-Lite0, fine-tuned on CPU.

The paper's raw-image baselines (section 4.4) are ResNet-50 / Xception fine-tuned from ImageNet
weights on normal vs adversarial images. Those weights are not on an offline machine, so the
demo uses :class:`FineTunedEfficientNet` instead: the EfficientNet-Lite0 classifier whose
ImageNet weights ship in an installed wheel (:func:`advlib.models.load_classifier`), with its
early network frozen and its last stage(s) fine-tuned with a new 2-way head.

Split point. EfficientNet-Lite's network (``efficientnet_lite_pytorch.EfficientNet``) is
``_conv_stem -> _bn0 -> ReLU6 -> _blocks[0..15] (MBConv) -> _conv_head (1x1, 320 -> 1280) ->
_bn1 -> ReLU6 -> global average pool -> dropout -> _fc``. For Lite0 at 224 x 224 the last
MBConv block (192 -> 320 channels at 7 x 7) is preceded by three 192-channel 7 x 7 blocks, so
with ``trainable_blocks=k`` the frozen part is stem + ``_blocks[:16 - k]`` and its output
(for k = 1: 192 x 7 x 7 = 9408 floats, 37 KB per image) is what is cached. The trained part is
``_blocks[16 - k:]`` + ``_conv_head`` + ``_bn1`` (ImageNet weights as the starting point) +
a new ``Linear(1280, 2)`` head (PyTorch's default initialisation, seeded by ``random_state``)
behind the network's own dropout (0.2). ``trainable_blocks=0`` trains only ``_conv_head``,
``_bn1`` and the linear head.

BatchNorm. The ImageNet BatchNorm layers of the trained part stay in eval mode during training
(their running statistics are frozen; their affine weight and bias are trained): batches of a
few dozen images of two classes would give noisy batch statistics and drift the running ones.
The network's stochastic depth (drop-connect) is off for the same reason (it is tied to the
block's training flag); only the head's dropout is active in training.

Cache. The frozen part is run once per image (under ``torch.inference_mode()``, in batches of
:data:`FROZEN_BATCH_CPU` on the CPU, where small batches are fastest) and its output is kept in
the module-level :data:`ACTIVATION_CACHE`, keyed by ``(classifier, frozen blocks, pixel
SHA-256)`` (:func:`advlib.store.pixel_sha256`). Repeated fits over cross-validation folds, and
``predict_proba`` on images already seen, reuse them. The cache is an LRU bounded in bytes
(:data:`CACHE_MAX_BYTES`, 512 MiB by default, environment variable ``ADVLIB_FINETUNE_CACHE_MB``);
``ACTIVATION_CACHE.clear()`` empties it. Cached tensors are float32 on the CPU.

Training: AdamW (``lr``, ``weight_decay`` on every trained tensor), cross-entropy with class
weights (``"balanced"``: ``n / (2 * n_c)``), no data augmentation (a flip of the cached
activations is not the activation of the flipped image). With a dev set the epoch of best dev
accuracy (P(adversarial) >= 0.5) is kept, ties going to the earliest.

Saving: :meth:`FineTunedEfficientNet.state_dict_trainable` holds only the trained part's
tensors (the frozen part is rebuilt from the wheel's weights); :meth:`FineTunedEfficientNet.fitted_attributes`
its JSON-able fitted attributes; :meth:`FineTunedEfficientNet.from_saved` rebuilds a fitted
detector from the three (parameters, tensors, attributes).
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from ..models import CLASSIFIERS, load_classifier
from ..runtime import progress as progress_bar
from ..runtime import torch_threads as _threads
from ..store import pixel_sha256
from .base import binary_labels, device_of, train_best_epoch

#: Frozen-part batch size on the CPU (small batches are faster there) and on a GPU.
FROZEN_BATCH_CPU = 4
FROZEN_BATCH_GPU = 64

#: Bound of :data:`ACTIVATION_CACHE` in bytes.
CACHE_MAX_BYTES = int(float(os.environ.get("ADVLIB_FINETUNE_CACHE_MB", 512)) * 2**20)

#: Fitted attributes stored beside the trained tensors (all JSON-able).
FITTED_ATTRIBUTES = ("best_epoch_", "dev_accuracy_", "history_", "n_blocks_", "class_weights_")


class ActivationCache:
    """LRU cache of frozen-part activations, bounded in bytes: key -> float32 CPU tensor.

    ``hits`` / ``misses`` count look-ups since creation or the last :meth:`clear`.
    """

    def __init__(self, max_bytes: int = CACHE_MAX_BYTES):
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key) -> bool:
        return key in self._data

    def get(self, key: tuple) -> torch.Tensor | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: tuple, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.max_bytes:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.nbytes -= old.numel() * old.element_size()
        self._data[key] = value
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, dropped = self._data.popitem(last=False)
            self.nbytes -= dropped.numel() * dropped.element_size()

    def clear(self) -> None:
        self._data.clear()
        self.nbytes = self.hits = self.misses = 0

    def info(self) -> dict[str, int]:
        return {"entries": len(self._data), "nbytes": self.nbytes, "max_bytes": self.max_bytes,
                "hits": self.hits, "misses": self.misses}


#: The module-level activation cache shared by every :class:`FineTunedEfficientNet`.
ACTIVATION_CACHE = ActivationCache()

_BACKBONES: dict[tuple[str, str], nn.Module] = {}


def _backbone(name: str, device: torch.device) -> nn.Module:
    """The pretrained pixel-space classifier ``name`` on ``device`` (loaded once, never modified)."""
    key = (name, str(device))
    if key not in _BACKBONES:
        model = load_classifier(name, device)
        net = getattr(model, "net", None)
        missing = [a for a in ("_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1", "_swish", "_fc")
                   if not hasattr(net, a)]
        if missing:
            raise ValueError(f"classifier {name!r} is not an EfficientNet-Lite network (no {', '.join(missing)})")
        _BACKBONES[key] = model
    return _BACKBONES[key]


def _frozen_features(model: nn.Module, x: torch.Tensor, n_frozen: int) -> torch.Tensor:
    """Frozen part on float pixels in [0, 1]: normalisation, stem, ``_blocks[:n_frozen]``."""
    net = model.net
    h = net._swish(net._bn0(net._conv_stem((x - model.mean) / model.std)))
    for block in net._blocks[:n_frozen]:
        h = block(h)
    return h


class _TrainedPart(nn.Module):
    """Trained part: the last MBConv blocks, the 1x1 head conv + BN + ReLU6, pooling, dropout, Linear(., 2)."""

    def __init__(self, net: nn.Module, n_frozen: int):
        super().__init__()
        self.blocks = nn.ModuleList(copy.deepcopy(list(net._blocks[n_frozen:])))
        self.conv_head = copy.deepcopy(net._conv_head)
        self.bn = copy.deepcopy(net._bn1)
        self.act = copy.deepcopy(net._swish)
        self.dropout = nn.Dropout(float(net._global_params.dropout_rate))
        self.fc = nn.Linear(net._fc.in_features, 2)
        self.requires_grad_(True)

    def train(self, mode: bool = True) -> "_TrainedPart":
        """Only the dropout follows ``mode``: the ImageNet BN layers (and drop-connect) stay in eval mode."""
        super().train(False)
        self.dropout.train(mode)
        self.training = mode
        return self

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h)
        h = self.act(self.bn(self.conv_head(h)))
        return self.fc(self.dropout(h.mean(dim=(2, 3))))


class FineTunedEfficientNet(BaseEstimator, ClassifierMixin):
    """ImageNet-pretrained EfficientNet-Lite fine-tuned on uint8 images (N, 3, 224, 224); see the module doc.

    ``trainable_blocks``: how many of the last MBConv blocks are trained (with the head conv,
    its BN and the new linear head; 0: head only). ``class_weight``: ``"balanced"``
    (``n / (2 * n_c)``), None, or ``{0: w0, 1: w1}``. AdamW with ``lr`` / ``weight_decay``,
    ``epochs`` at ``batch_size``. ``predict_proba``: (N, 2) float64 (normal, adversarial);
    ``predict``: 1 where P(adversarial) >= 0.5. ``num_threads``: None leaves torch's intra-op
    thread count alone; an int sets it during ``fit`` / ``predict_proba`` and restores it after
    (on 2 busy shared cores one thread trained 5x faster than two: OpenMP's second thread waits).

    Fitted attributes: ``net_`` (the trained part), ``n_blocks_`` (MBConv blocks of the
    network), ``class_weights_``, ``best_epoch_`` (1-based), ``dev_accuracy_`` (None without
    dev), ``history_`` (per epoch: train loss / accuracy, dev accuracy), ``n_computed_`` (images
    whose frozen activations the last fit or predict had to compute; the rest came from
    :data:`ACTIVATION_CACHE`).
    """

    classes_ = np.array([0, 1])

    def __init__(self, *, classifier: str = "efficientnet_lite0", trainable_blocks: int = 1, epochs: int = 10,
                 batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 1e-4,
                 class_weight: str | dict | None = "balanced", device: str = "cpu", random_state: int = 0,
                 progress: bool = True, num_threads: int | None = None):
        self.classifier = classifier
        self.trainable_blocks = trainable_blocks
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.device = device
        self.random_state = random_state
        self.progress = progress
        self.num_threads = num_threads

    # ------------------------------------------------------------------ inputs

    def _size(self) -> int:
        if self.classifier not in CLASSIFIERS or CLASSIFIERS[self.classifier].source != "efficientnet_lite":
            lite = [k for k, v in CLASSIFIERS.items() if v.source == "efficientnet_lite"]
            raise ValueError(f"classifier must be one of {lite}, got {self.classifier!r}")
        return CLASSIFIERS[self.classifier].input_size

    def _images(self, X, name: str = "X") -> torch.Tensor:
        size = self._size()
        if isinstance(X, np.ndarray):
            X = torch.from_numpy(X)
        if not isinstance(X, torch.Tensor):
            raise ValueError(f"{name} must be a uint8 tensor or array (N, 3, {size}, {size}), got {type(X).__name__}")
        if X.dtype != torch.uint8:
            raise ValueError(f"{name} must have dtype uint8 (pixels 0..255), got {X.dtype}")
        if X.dim() != 4 or X.shape[1] != 3:
            raise ValueError(f"{name} must have shape (N, 3, H, W), got {tuple(X.shape)}")
        if tuple(X.shape[2:]) != (size, size):
            raise ValueError(f"{name}: {self.classifier} takes {size} x {size} images, got "
                             f"{X.shape[2]} x {X.shape[3]}")
        return X.cpu()

    def _n_frozen(self, n_blocks: int) -> int:
        k = self.trainable_blocks
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n_blocks:
            raise ValueError(f"trainable_blocks must be an integer in 0..{n_blocks}, got {k!r}")
        return n_blocks - int(k)

    def _activations(self, X: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Frozen-part outputs (N, C, h, w) float32 on the CPU, from the cache or computed once."""
        model = _backbone(self.classifier, device)
        n_frozen = self._n_frozen(len(model.net._blocks))
        keys = [(self.classifier, n_frozen, pixel_sha256(img)) for img in X]
        out: list[torch.Tensor | None] = [ACTIVATION_CACHE.get(k) for k in keys]
        todo = [i for i, a in enumerate(out) if a is None]
        step = FROZEN_BATCH_CPU if device.type == "cpu" else FROZEN_BATCH_GPU
        for s in progress_bar(range(0, len(todo), step), desc="frozen features", disable=not self.progress or not todo,
                      leave=False):
            idx = todo[s:s + step]
            with torch.inference_mode():
                h = _frozen_features(model, X[idx].to(device).float() / 255, n_frozen).float().cpu()
            h = h.clone()  # a normal tensor (inference tensors cannot be saved for backward)
            for j, i in enumerate(idx):
                out[i] = h[j].clone()
                ACTIVATION_CACHE.put(keys[i], out[i])
        self.n_computed_ = len(todo)
        if not out:
            return torch.empty(0)
        return torch.stack(out)

    def _class_weights(self, y: np.ndarray) -> np.ndarray:
        counts = np.bincount(y, minlength=2)
        if (counts == 0).any():
            raise ValueError(f"y must hold both classes (0 normal, 1 adversarial), got counts {counts.tolist()}")
        cw = self.class_weight
        if cw is None:
            return np.ones(2)
        if isinstance(cw, str) and cw == "balanced":
            return len(y) / (2.0 * counts)
        if isinstance(cw, dict):
            try:  # JSON (a saved detector's parameters) turns the keys into "0" / "1"
                w = {int(k): float(v) for k, v in cw.items()}
            except (TypeError, ValueError):
                w = {}
            if w and set(w) <= {0, 1}:
                return np.array([w.get(0, 1.0), w.get(1, 1.0)])
        raise ValueError(f"class_weight must be 'balanced', None or {{0: w0, 1: w1}}, got {cw!r}")

    # ------------------------------------------------------------------ fit / predict

    def fit(self, X, y, X_dev=None, y_dev=None):
        """Fine-tune for ``epochs``; with a dev set, keep the epoch of best dev accuracy (ties: earliest)."""
        with _threads(self.num_threads):
            return self._fit(X, y, X_dev, y_dev)

    def _fit(self, X, y, X_dev, y_dev):
        X = self._images(X)
        y = binary_labels(y)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} images but y has {len(y)} labels")
        has_dev = X_dev is not None or y_dev is not None
        if has_dev:
            if X_dev is None or y_dev is None:
                raise ValueError("X_dev and y_dev must be given together")
            X_dev, y_dev = self._images(X_dev, "X_dev"), binary_labels(y_dev, "y_dev")
            if len(X_dev) != len(y_dev):
                raise ValueError(f"X_dev has {len(X_dev)} images but y_dev has {len(y_dev)} labels")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        weights = self._class_weights(y)
        device = device_of(self.device)
        model = _backbone(self.classifier, device)
        self.n_blocks_ = len(model.net._blocks)
        n_frozen = self._n_frozen(self.n_blocks_)
        A = self._activations(X, device)
        computed = self.n_computed_
        A_dev = self._activations(X_dev, device) if has_dev else None
        self.n_computed_ = computed + (self.n_computed_ if has_dev else 0)
        yt = torch.from_numpy(y)

        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.random_state)
            net = _TrainedPart(model.net, n_frozen).to(device)
            optimizer = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=device))
            generator = torch.Generator().manual_seed(self.random_state)
            self.class_weights_ = weights.tolist()

            def epoch_batches():
                order = torch.randperm(len(A), generator=generator)
                return ((A[idx].to(device), yt[idx].to(device))
                        for idx in (order[s:s + self.batch_size] for s in range(0, len(A), self.batch_size)))

            def dev_accuracy(net: nn.Module) -> float:
                return float(((self._proba(net, A_dev)[:, 1] >= 0.5) == y_dev).mean())

            self.history_, self.best_epoch_, self.dev_accuracy_ = train_best_epoch(
                net, self.epochs, epoch_batches, optimizer, loss_fn, len(A), dev_accuracy if has_dev else None,
                desc=type(self).__name__, progress=self.progress)
        self.net_ = net.eval()
        return self

    @torch.inference_mode()
    def _proba(self, net: nn.Module, A: torch.Tensor) -> np.ndarray:
        device = next(net.parameters()).device
        was_training = net.training
        net.eval()
        out = [torch.softmax(net(A[s:s + self.batch_size].to(device)).float(), 1).cpu()
               for s in range(0, len(A), self.batch_size)]
        net.train(was_training)
        return torch.cat(out).double().numpy() if out else np.zeros((0, 2))

    def predict_proba(self, X) -> np.ndarray:
        """(N, 2) float64 softmax probabilities of (normal, adversarial)."""
        if not hasattr(self, "net_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit first")
        X = self._images(X)
        device = next(self.net_.parameters()).device
        with _threads(self.num_threads):
            return self._proba(self.net_, self._activations(X, device))

    def predict(self, X) -> np.ndarray:
        """(N,) int64 labels: 1 (adversarial) where P(adversarial) >= 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    # ------------------------------------------------------------------ save / load

    def state_dict_trainable(self) -> dict[str, torch.Tensor]:
        """The trained part's tensors only (CPU copies): last blocks, head conv, BN, linear head."""
        if not hasattr(self, "net_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit first")
        return {k: v.detach().cpu().clone() for k, v in self.net_.state_dict().items()}

    def fitted_attributes(self) -> dict[str, Any]:
        """JSON-able fitted attributes (:data:`FITTED_ATTRIBUTES`) to store beside the tensors."""
        return {k: getattr(self, k, None) for k in FITTED_ATTRIBUTES}

    def load_trainable(self, state: dict[str, torch.Tensor], fitted: dict[str, Any] | None = None):
        """Rebuild the trained part from the ImageNet weights and load ``state`` (strict); returns self."""
        device = device_of(self.device)
        model = _backbone(self.classifier, device)
        self.n_blocks_ = len(model.net._blocks)
        net = _TrainedPart(model.net, self._n_frozen(self.n_blocks_))
        net.load_state_dict(state, strict=True)
        for k, v in (fitted or {}).items():
            if k in FITTED_ATTRIBUTES and v is not None:
                setattr(self, k, v)
        self.net_ = net.to(device).eval()
        return self

    @classmethod
    def from_saved(cls, params: dict[str, Any], state: dict[str, torch.Tensor],
                   fitted: dict[str, Any] | None = None) -> "FineTunedEfficientNet":
        """A fitted detector from its ``get_params()``, :meth:`state_dict_trainable` and :meth:`fitted_attributes`."""
        return cls(**params).load_trainable(state, fitted)
