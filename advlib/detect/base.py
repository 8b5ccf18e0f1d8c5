"""What the detectors share: input checks (labels, feature matrices, uint8 images, devices) and the
torch detectors' base class with its best-epoch training loop (the stats-CNN, the raw-image CNNs
and the fine-tuned EfficientNet all keep the epoch of best dev accuracy, the paper's rule)."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from ..runtime import progress as progress_bar
from ..runtime import resolve_device, torch_threads
from ..store import check_images


def device_of(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` (``"auto"``: CUDA when available)."""
    return torch.device(resolve_device(device) if isinstance(device, str) else device)


def binary_labels(y, name: str = "y") -> np.ndarray:
    """int64 (N,) of 0 (normal) / 1 (adversarial), else ``ValueError`` naming ``name``."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must be a 1-D array of 0 (normal) / 1 (adversarial) labels, got {y!r:.80}")
    return y.astype(np.int64)


def check_features(X, name: str = "X") -> np.ndarray:
    """float32 (N, d), finite, else ``ValueError`` naming ``name``."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise ValueError(f"{name} must be a finite (N, d) feature matrix, got shape {X.shape}")
    return X


def image_input(X, name: str = "X") -> torch.Tensor:
    """uint8 (N, 3, H, W) images of an image detector, else ``ValueError`` naming ``name``."""
    return check_images(torch.as_tensor(X), name)


def fit_epoch(net: nn.Module, batches, optimizer, loss_fn) -> tuple[float, int]:
    """One training epoch over ``batches`` of ``(inputs, labels)``: returns the summed loss
    (per-sample mean times batch size) and the number of correct predictions."""
    total, correct = 0.0, 0
    for xb, yb in batches:
        optimizer.zero_grad()
        logits = net(xb)
        loss = loss_fn(logits, yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(yb)
        correct += int((logits.argmax(1) == yb).sum())
    return total, correct


def train_best_epoch(net: nn.Module, epochs: int, batches: Callable[[], Iterable], optimizer, loss_fn, n: int,
                     dev_accuracy: Callable[[nn.Module], float] | None = None, *, desc: str = "",
                     progress: bool = False) -> tuple[list[dict], int, float | None]:
    """Train ``net`` for ``epochs`` epochs and keep the epoch with the best dev accuracy (the
    paper's rule for its CNNs; ties go to the earlier epoch).

    ``batches()`` yields one epoch's ``(inputs, labels)`` (called after ``net.train()``); ``n``:
    training samples per epoch; ``dev_accuracy(net)``: accuracy on the dev set after an epoch
    (None: no dev set, the last epoch is kept). The best state is loaded back into ``net``.
    Returns ``(history, best_epoch, best_dev_accuracy)``: per epoch ``train_loss``,
    ``train_accuracy`` (and ``dev_accuracy``); the 1-based best epoch; None without dev.
    """
    best_state, best_acc, history, best_epoch = None, -1.0, [], int(epochs)
    for epoch in progress_bar(range(1, epochs + 1), desc=desc, disable=not progress, leave=False):
        net.train()
        total, correct = fit_epoch(net, batches(), optimizer, loss_fn)
        record = {"epoch": epoch, "train_loss": total / n, "train_accuracy": correct / n}
        if dev_accuracy is not None:
            acc = float(dev_accuracy(net))
            record["dev_accuracy"] = acc
            if acc > best_acc:
                best_acc, best_epoch = acc, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        history.append(record)
    if best_state is not None:
        net.load_state_dict(best_state)
    return history, best_epoch, (best_acc if dev_accuracy is not None else None)


class TorchDetector(BaseEstimator, ClassifierMixin):
    """Shared training loop: Adam, cross-entropy on 2 logits, keep the best epoch on dev."""

    classes_ = np.array([0, 1])

    def _inputs(self, X) -> torch.Tensor:  # (N, ...) tensor the network takes, on the CPU
        raise NotImplementedError

    def build_net(self, n_features: int, *, init: bool) -> nn.Module:
        raise NotImplementedError

    #: intra-op threads while training on the CPU (None: torch's setting)
    _fit_threads: int | None = None

    def fit(self, X, y, X_dev=None, y_dev=None):
        """Train for ``epochs``; with a dev set, keep the epoch of best dev accuracy (ties: earliest).

        Sets ``best_epoch_`` (1-based), ``dev_accuracy_`` (None without dev) and ``history_``
        (one dict per epoch: train loss and accuracy, dev accuracy).
        """
        with torch_threads(self._fit_threads if device_of(self.device).type == "cpu" else None):
            return self._fit(X, y, X_dev, y_dev)

    def _fit(self, X, y, X_dev, y_dev):
        self.__dict__.pop("n_features_in_", None)  # a refit may change the feature count
        X, y = self._inputs(X), torch.as_tensor(binary_labels(y))
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        has_dev = X_dev is not None
        if has_dev:
            X_dev, y_dev = self._inputs(X_dev), binary_labels(y_dev, "y_dev")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        device = device_of(self.device)
        torch.manual_seed(self.random_state)
        self.n_features_in_ = int(X.shape[-1]) if X.dim() == 2 else None
        net = self.build_net(X.shape[-1], init=True).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, betas=(0.9, 0.999))
        loss_fn = nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(self.random_state)

        def epoch_batches():
            order = torch.randperm(len(X), generator=generator)
            return ((self._prepare(X[idx], device), y[idx].to(device))
                    for idx in (order[s:s + self.batch_size] for s in range(0, len(X), self.batch_size))
                    if len(idx) >= 2 or len(X) == 1)  # BatchNorm needs two samples in train mode

        def dev_accuracy(net: nn.Module) -> float:
            self.net_ = net
            return float((self.predict(X_dev) == y_dev).mean())

        self.history_, self.best_epoch_, self.dev_accuracy_ = train_best_epoch(
            net, self.epochs, epoch_batches, optimizer, loss_fn, len(X), dev_accuracy if has_dev else None,
            desc=type(self).__name__, progress=self.progress)
        self.net_ = net.eval()
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
