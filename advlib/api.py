"""The method on your own classifier and images: the functions ``import advlib`` exports.

Images are uint8 tensors (N, 3, H, W) in RGB, or lists of image file paths (read as
:func:`advlib.images.load_image` does); classifiers are modules taking float (B, 3, H, W) pixels
in [0, 1] and returning (B, 1000) ImageNet logits (:func:`load_classifier`, or any network
wrapped with :func:`wrap`). Labels are ImageNet class indices 0..999.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from . import attacks as _attacks
from . import correct as _correct
from . import features, models
from . import ops as _ops
from .detect.pipeline import as_images
from .models import classifier_name

__all__ = ["load_classifier", "wrap", "load_images", "predict_top5", "correct_labels", "correct_images", "attack"]


def load_classifier(name: str, device: str | torch.device = "cpu") -> models.PixelClassifier:
    """A classifier of :data:`advlib.models.CLASSIFIERS` by name (``"efficientnet_lite0"`` ships
    with its weights; torchvision's need their file locally: nothing is downloaded)."""
    return models.load_classifier(name, device)


def wrap(model: nn.Module, mean: Sequence[float], std: Sequence[float], name: str = "") -> models.PixelClassifier:
    """Your network (taking normalised input) as a classifier of [0, 1] pixels: ``(x - mean) /
    std`` is applied inside. ``name`` identifies it in saved detectors (default: its class name).
    Returned in eval mode with gradients off for its parameters (attacks still get input gradients)."""
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std must have 3 values (R, G, B), got {mean!r} and {std!r}")
    return models.PixelClassifier(model, tuple(mean), tuple(std), name=name or type(model).__name__
                                  ).eval().requires_grad_(False)


def load_images(paths: Sequence[str]) -> torch.Tensor:
    """Image files as uint8 (N, 3, 224, 224): 224x224 files as they are, others resized to 256
    and centre-cropped to 224 (the paper's preprocessing)."""
    return as_images(list(paths), "paths")


def predict_top5(classifier: nn.Module, images: Any, batch_size: int = 16) -> np.ndarray:
    """int64 (N, 5): the classifier's top-5 labels of each image, most probable first."""
    return models.predict_topk(classifier, as_images(images), 5, batch_size).numpy()


def _after(classifier: nn.Module, images: torch.Tensor, op_names: list[str], batch_size: int,
           device: Any) -> np.ndarray:
    t = features.top5_under_ops(classifier, images, op_names, batch_size=batch_size, device=device, progress=False,
                                classifier=classifier_name(classifier))
    return np.asarray(t)[:, 1:]


def correct_labels(classifier: nn.Module, images: Any, *, groups: Sequence[str] = _correct.CORRECTION_GROUPS,
                   batch_size: int = 16, device: Any = None) -> np.ndarray:
    """Label correction (Sect. 5.1): int64 (N, 5), the five labels voted most often over the
    classifier's top-5 under the operations of ``groups`` (default JPEG + scaling, the paper's
    26 operations); -1 pads images with fewer than five distinct labels."""
    x = as_images(images)
    names = _ops.names_of(groups)
    return _correct.label_correction(_after(classifier, x, names, batch_size, device), names, groups)


def correct_images(classifier: nn.Module, images: Any, strategy: str = "min", *,
                   qfs: Sequence[int] = _correct.HEURISTIC_QFS, groups: Sequence[str] = _correct.CORRECTION_GROUPS,
                   batch_size: int = 16, device: Any = None) -> tuple[torch.Tensor, np.ndarray]:
    """Image correction (Sect. 5.2): JPEG at the quality the heuristic chooses per image.

    ``strategy``: ``"min"`` (the paper's best), ``"2ndmin"``, ``"median"`` or ``"max"``.
    Returns ``(corrected uint8 (N, 3, H, W), chosen quality int64 (N,))``. Step 2 reads the
    voted label *in the top-5* (the authors' code; :data:`advlib.correct.HEURISTIC_RANK`).
    """
    x = as_images(images)
    names = _ops.names_of(list(groups) + [_ops.jpeg_name(q) for q in qfs])
    fixed, qf, _ = _correct.heuristic_correct(x, _after(classifier, x, names, batch_size, device), names, strategy,
                                              qfs, groups=groups)
    return fixed, qf


def attack(name: str, classifier: nn.Module, images: Any, labels: Any = None, *, save_format: str = "jpeg",
           batch_size: int = 16, device: str | torch.device = "cpu", seed: int = 0,
           **options: Any) -> _attacks.AttackOutcome:
    """Run attack ``name`` of :data:`advlib.attacks.ATTACKS` with the dataset's criteria.

    ``labels``: the labels the attack steers by (default: the classifier's top-1 of each image,
    as the paper). An image succeeds only if, after 8-bit rounding and saving in ``save_format``
    (JPEG quality 100 or PNG), the attack's criterion holds and the label is out of the top-5.
    Returns an :class:`advlib.attacks.AttackOutcome`: ``.adversarial`` uint8 images,
    ``.success_saved`` bool per image, the strength used, every attempt.
    """
    x = as_images(images)
    if labels is None:
        labels = predict_top5(classifier, x, batch_size)[:, 0]
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    return _attacks.run_attack(name, classifier, x, labels, save_format=save_format, device=device,
                               batch_size=batch_size, seed=seed, **options)
