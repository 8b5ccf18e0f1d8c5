"""The authors' 1-D CNN on one feature vector (Sect. 4.4), and the torch-detector base class."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn
from tqdm.auto import tqdm

from ._checks import _device, _features, _labels


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
    for epoch in tqdm(range(1, epochs + 1), desc=desc, disable=not progress, leave=False):
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
        from ..runtime import torch_threads

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
        device = _device(self.device)
        torch.manual_seed(self.random_state)
        self.n_features_in_ = int(X.shape[-1]) if X.dim() == 2 else None
        net = self._build(X.shape[-1], init=True).to(device)
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
