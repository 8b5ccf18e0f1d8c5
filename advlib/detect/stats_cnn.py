"""The authors' 1-D CNN on one feature vector (Sect. 4.4)."""

from __future__ import annotations

import torch
from torch import nn

from .base import TorchDetector, check_features

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


class StatsCNN(TorchDetector):
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
        X = torch.from_numpy(check_features(X))
        if hasattr(self, "n_features_in_") and self.n_features_in_ and X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the detector was fitted on {self.n_features_in_}")
        return X

    def build_net(self, n_features: int, *, init: bool) -> nn.Module:
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
