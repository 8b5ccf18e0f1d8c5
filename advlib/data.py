"""Images: loading, ImageNet validation readers, the offline demo corpus, normal-image selection.

Every image the pipeline works on is a 224x224 RGB uint8 tensor (3, 224, 224), as in the paper:
larger images get the standard ImageNet preprocessing (shorter side resized to 256 with
bilinear antialiasing, centre crop 224).
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from .store import pixel_sha256

SIZE = 224
RESIZE = 256
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


class ImageReadError(OSError):
    """An image file could not be read; the message names the file."""


@dataclass
class Item:
    """One input image: its id, where it comes from and its label.

    ``label_source`` is ``"imagenet"`` for a ground-truth ImageNet label, ``"top1"`` when the
    photo has no ImageNet label and the classifier's top-1 is used as the reference instead
    (the paper's attacks and corrections start from the top-1 anyway).
    """

    image_id: str
    source: str  # the source photo: crops of one photo share it, so splits keep them together
    path: str
    label: int  # -1 until known
    label_source: str
    crop: str = "center256"


def _to_tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


def _open(path: str | os.PathLike) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
    return im.convert("RGB")


def resize_crop(im: Image.Image, resize: int = RESIZE, size: int = SIZE, anchor: str = "center") -> Image.Image:
    """Resize the shorter side to ``resize`` (bilinear, antialiased) and crop ``size`` x ``size``.

    ``anchor`` is ``center`` (torchvision's CenterCrop), ``tl``, ``tr``, ``bl`` or ``br``.
    """
    w, h = im.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    im = im.resize((nw, nh), Image.BILINEAR)
    if anchor == "center":
        left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    else:
        left = 0 if anchor[1] == "l" else nw - size
        top = 0 if anchor[0] == "t" else nh - size
    return im.crop((left, top, left + size, top + size))


def load_image(path: str | os.PathLike, crop: str = "center256") -> torch.Tensor:
    """Read an image file as a uint8 tensor (3, 224, 224).

    A 224x224 file is taken as it is. Others get ``crop``: ``center256`` is the standard
    ImageNet preprocessing; ``<anchor><resize>`` (e.g. ``tl256``, ``center320``) picks other
    crops of the same photo. Raises :class:`ImageReadError` naming the file.
    """
    im = _open(path)
    if im.size == (SIZE, SIZE):
        return _to_tensor(im)
    m = re.fullmatch(r"(center|tl|tr|bl|br)(\d+)", crop)
    if not m:
        raise ValueError(f"unknown crop {crop!r} (e.g. 'center256', 'tl288')")
    return _to_tensor(resize_crop(im, int(m.group(2)), SIZE, m.group(1)))


def read_images(items: list[Item], progress: bool = False) -> tuple[torch.Tensor, list[Item], list[tuple[str, str]]]:
    """Read ``items``; return the (N, 3, 224, 224) uint8 stack, the items read, and failures.

    A file that cannot be read does not stop the others: it is returned in ``failures`` as
    ``(path, message)`` for the caller to report.
    """
    from tqdm.auto import tqdm

    images, ok, failures = [], [], []
    for item in tqdm(items, desc="reading images", disable=not progress):
        try:
            images.append(load_image(item.path, item.crop))
            ok.append(item)
        except (ImageReadError, ValueError) as e:
            failures.append((item.path, str(e)))
    stack = torch.stack(images) if images else torch.empty(0, 3, SIZE, SIZE, dtype=torch.uint8)
    return stack, ok, failures


# --------------------------------------------------------------------------- ImageNet validation

def imagenet_items(root: str | os.PathLike, labels_file: str | os.PathLike | None = None) -> list[Item]:
    """List an ImageNet validation folder in either layout.

    - class sub-folders (torchvision ImageFolder): 1,000 folders named by WordNet id; the
      label of a folder is its index in sorted order (torchvision's class indices);
    - flat ILSVRC2012 folder (``ILSVRC2012_val_00000001.JPEG`` ...) with a label file of
      ``filename index`` lines (``labels_file``, or ``val.txt`` / ``labels.txt`` inside
      ``root``), indices in torchvision order.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet folder not found: {root}")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if subdirs:
        items = []
        for idx, d in enumerate(subdirs):
            for f in sorted(d.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    items.append(Item(f"{d.name}/{f.stem}", f.stem, str(f), idx, "imagenet"))
        return items
    if labels_file is None:
        candidates = [root / n for n in ("val.txt", "labels.txt", "ground_truth.txt")]
        labels_file = next((c for c in candidates if c.exists()), None)
        if labels_file is None:
            raise FileNotFoundError(
                f"{root}: flat ImageNet folder without a label file: put 'val.txt' with lines "
                "'ILSVRC2012_val_00000001.JPEG 65' in it, or set imagenet_labels in the profile"
            )
    labels: dict[str, int] = {}
    for n, line in enumerate(Path(labels_file).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{labels_file}:{n}: expected 'filename index', got {line!r}")
        labels[parts[0]] = int(parts[1])
    items = []
    for f in sorted(root.iterdir()):
        if f.suffix.lower() in IMAGE_SUFFIXES and f.name in labels:
            items.append(Item(f.stem, f.stem, str(f), labels[f.name], "imagenet"))
    return items


# --------------------------------------------------------------------------- demo corpus

#: Crops taken from each demo photo, in order: distinct 224x224 views of the same photo.
DEMO_CROPS = ("center256", "tl256", "br256", "center320", "tr256", "bl256", "center384", "center288")


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def demo_photos() -> list[tuple[str, Path, int]]:
    """The real photographs shipped inside installed packages: ``(source_id, path, label)``.

    ``label`` is the ImageNet label where the package records one (foolbox's 20 ImageNet
    validation samples: ``imagenet_<i>_<label>.jpg``), else -1.
    """
    photos: list[tuple[str, Path, int]] = []
    fb = _package_dir("foolbox")
    if fb is not None:
        for f in sorted((fb / "data").glob("imagenet_*_*.jpg")):
            label = int(f.stem.split("_")[-1])
            photos.append((f"foolbox_{f.stem}", f, label))
    sk = _package_dir("skimage")
    if sk is not None:
        for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg",
                     "motorcycle_left.png", "motorcycle_right.png", "retina.jpg"):
            if (sk / "data" / name).exists():
                photos.append((f"skimage_{Path(name).stem}", sk / "data" / name, -1))
    mpl = _package_dir("matplotlib")
    if mpl is not None and (mpl / "mpl-data/sample_data/grace_hopper.jpg").exists():
        photos.append(("matplotlib_grace_hopper", mpl / "mpl-data/sample_data/grace_hopper.jpg", -1))
    skl = _package_dir("sklearn")
    if skl is not None:
        for name in ("china.jpg", "flower.jpg"):
            if (skl / "datasets/images" / name).exists():
                photos.append((f"sklearn_{Path(name).stem}", skl / "datasets/images" / name, -1))
    if not photos:
        raise FileNotFoundError("no demo photos found: install foolbox, scikit-image, matplotlib, scikit-learn")
    return photos


def demo_items(crops_per_photo: int = 4) -> list[Item]:
    """Demo inputs: ``crops_per_photo`` distinct crops (see :data:`DEMO_CROPS`) of each photo."""
    if not 1 <= crops_per_photo <= len(DEMO_CROPS):
        raise ValueError(f"crops_per_photo must be 1..{len(DEMO_CROPS)}, got {crops_per_photo}")
    items = []
    for source, path, label in demo_photos():
        for crop in DEMO_CROPS[:crops_per_photo]:
            items.append(Item(f"{source}_{crop}", source, str(path), label,
                              "imagenet" if label >= 0 else "top1", crop))
    return items


# --------------------------------------------------------------------------- normal images

def select_normal(top5: torch.Tensor, items: list[Item]) -> np.ndarray:
    """The paper's selection: keep an image when the classifier's top-5 contains its label.

    Items without an ImageNet label (``label_source == 'top1'``) take the top-1 as label and
    are kept. Returns a boolean mask; fills in ``item.label`` for the top-1 ones.
    """
    keep = np.zeros(len(items), dtype=bool)
    for i, item in enumerate(items):
        if item.label_source == "top1":
            item.label = int(top5[i, 0])
            keep[i] = True
        else:
            keep[i] = bool((top5[i] == item.label).any())
    return keep


def manifest(items: Iterable[Item], images: torch.Tensor, **columns) -> pd.DataFrame:
    """A DataFrame of ``items`` with the SHA-256 of each image's pixels and extra columns."""
    rows = [asdict(it) for it in items]
    df = pd.DataFrame(rows)
    df["sha256"] = [pixel_sha256(im) for im in images]
    for k, v in columns.items():
        df[k] = v
    return df
