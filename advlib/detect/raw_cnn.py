"""CNNs on the uint8 images (Sect. 4.4): ResNet-50 / Xception trained from scratch or fine-tuned
from local ImageNet weights."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MissingWeightsError,
    PixelClassifier,
    torchvision_url,
    weights_file,
)
from .base import TorchDetector, image_input

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
        path = weights_file("resnet50")
        if path.exists():
            return path
        raise MissingWeightsError(
            f"raw_resnet50 (fine-tuned): ImageNet weights not found: {path}. Nothing is downloaded: fetch "
            f"{torchvision_url('resnet50')} elsewhere and copy it to {path.parent}/")
    if arch == "xception":
        import timm  # local: timm (slow to import) serves the Xception baseline only

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


class _ImageNet(PixelClassifier):
    """uint8 (B, 3, H, W) pixels -> [0, 1] -> :class:`advlib.models.PixelClassifier`'s
    normalisation -> ``net`` -> (B, 2) logits (same state-dict keys: net, mean, std)."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__(net, mean, std, name="raw_cnn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float() / 255)


class RawImageCNN(TorchDetector):
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
        return image_input(X)

    def build_net(self, n_features: int, *, init: bool) -> nn.Module:
        if self.arch == "resnet50":
            net = torchvision.models.resnet50(weights=None)
            if init and self.pretrained:
                net.load_state_dict(torch.load(pretrained_weights("resnet50"), map_location="cpu", weights_only=True))
            net.fc = nn.Linear(net.fc.in_features, 2)
            return _ImageNet(net, IMAGENET_MEAN, IMAGENET_STD)
        import timm  # local: timm (slow to import) serves the Xception baseline only

        net = timm.create_model("legacy_xception", pretrained=False)
        if init and self.pretrained:
            path = pretrained_weights("xception")
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file  # local: as timm above

                state = load_file(path)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        net.reset_classifier(2)
        return _ImageNet(net, net.pretrained_cfg["mean"], net.pretrained_cfg["std"])
