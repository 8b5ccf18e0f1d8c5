"""Corpora: the candidate input images of a run, and the paper's normal-image selection.

A corpus (:data:`CORPORA`, a profile's ``corpus``) is a function of the run's
:class:`advlib.dataset.DatasetSpec` returning :class:`Item` s: ``demo`` (84 real photos shipped
inside installed packages, :func:`demo_photos`), ``imagenet`` (a validation folder in either
layout, :func:`imagenet_items`), or one of your own (:func:`register_corpus`, e.g.
:func:`folder_items`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from . import paths
from .images import IMAGE_SUFFIXES, SIZE, ImageReadError, image_files, load_image
from .runtime import progress as progress_bar
from .store import pixel_sha256


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
    package: str = ""  # demo photos: the pip package that ships the file
    licence: str = ""  # demo photos: the photo's licence, as the package states it


def read_images(items: list[Item], progress: bool = False) -> tuple[torch.Tensor, list[Item], list[tuple[str, str]]]:
    """Read ``items``; return the (N, 3, 224, 224) uint8 stack, the items read, and failures.

    A file that cannot be read does not stop the others: it is returned in ``failures`` as
    ``(path, message)`` for the caller to report.
    """
    images, ok, failures = [], [], []
    for item in progress_bar(items, desc="reading images", disable=not progress):
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


@dataclass(frozen=True)
class Photo:
    """One real photograph shipped inside an installed package (see :func:`demo_photos`)."""

    source_id: str  # ``<import name>_<file stem>``, stable across versions
    path: Path
    label: int  # ImageNet label where the package records one, else -1
    package: str  # the pip package that ships the file
    licence: str  # as stated by the files the package ships ("see <file>" where it says less)


_FETCHERS = "see skimage/data/_fetchers.py"
_SPORCO = "see sporco/data/README.rst"

#: Photos in skimage/data, in order, with the licence of each (from the docstrings of
#: skimage/data/_fetchers.py). The first eight were the corpus's first skimage photos.
_SKIMAGE_PHOTOS = {
    "astronaut.png": f"public domain (NASA Great Images); {_FETCHERS}",
    "chelsea.png": f"CC0, photographer Stefan van der Walt; {_FETCHERS}",
    "coffee.png": f"CC0, photographer Rachel Michetti (Pikolo Espresso Bar); {_FETCHERS}",
    "rocket.jpg": f"public domain (SpaceX); {_FETCHERS}",
    "hubble_deep_field.jpg": f"public domain (NASA, HubbleSite); {_FETCHERS}",
    "motorcycle_left.png": f"Middlebury 2014 stereo benchmark, no licence stated; {_FETCHERS}",
    "motorcycle_right.png": f"Middlebury 2014 stereo benchmark, no licence stated; {_FETCHERS}",
    "retina.jpg": f"CC0 1.0 (Mikael Haggstrom, Wikimedia Commons); {_FETCHERS}",
}
_SKIMAGE_MORE = {  # grey-level photographs, read as RGB
    "camera.png": f"CC0, photographer Lav Varshney; {_FETCHERS}",
    "moon.png": f"no licence stated; {_FETCHERS}",
    "coins.png": f"no known copyright restrictions (Brooklyn Museum collection); {_FETCHERS}",
    "brick.png": f"CC0 (CC0Textures Bricks25); {_FETCHERS}",
    "grass.png": f"CC0 (DeviantArt, linolafett); {_FETCHERS}",
    "gravel.png": f"CC0 (CC0Textures Gravel04); {_FETCHERS}",
    "clock_motion.png": f"public domain, photographer Stefan van der Walt; {_FETCHERS}",
    "text.png": f"public domain (Wikipedia File:Corner.png); {_FETCHERS}",
}
_SKLEARN_PHOTOS = {
    "china.jpg": "CC BY 2.0, Flickr user danielbuechele; see sklearn/datasets/images/README.txt",
    "flower.jpg": "CC BY 2.0, Flickr user vultilion; see sklearn/datasets/images/README.txt",
}
_SPORCO_PHOTOS = {
    "kodim23.png": f"Kodak test image, released for unrestricted use; {_SPORCO}",
    "monarch.png": f"Waterloo BragZone test image, free of copyright restrictions; {_SPORCO}",
    "sail.png": f"Waterloo BragZone test image, free of copyright restrictions; {_SPORCO}",
    "tulips.png": f"Waterloo BragZone test image, free of copyright restrictions; {_SPORCO}",
    "barbara.png": f"test image attributed to Allen Gersho, believed freely redistributable; {_SPORCO}",
}
_FOOLBOX_LICENCE = {
    "imagenet": "ImageNet (ILSVRC2012) validation photo, ImageNet terms of access; no licence shipped "
                "(foolbox itself: MIT)",
    "cifar10": "CIFAR-10 test photo (Krizhevsky 2009, from 80 Million Tiny Images), no licence stated; "
               "no licence shipped (foolbox itself: MIT)",
    "cifar100": "CIFAR-100 test photo (Krizhevsky 2009, from 80 Million Tiny Images), no licence stated; "
                "no licence shipped (foolbox itself: MIT)",
}


def _named(module: str, package: str, folder: str, licences: dict[str, str]) -> list[Photo]:
    root = _package_dir(module)
    if root is None:
        return []
    return [Photo(f"{module}_{Path(name).stem}", root / folder / name, -1, package, licence)
            for name, licence in licences.items() if (root / folder / name).exists()]


def _foolbox(dataset: str) -> list[Photo]:
    """foolbox's samples ``<dataset>_<i>_<label>.<ext>``: ImageNet labels for ``imagenet``."""
    root = _package_dir("foolbox")
    if root is None:
        return []
    files = sorted(f for f in (root / "data").glob(f"{dataset}_*_*.*") if f.suffix.lower() in IMAGE_SUFFIXES)
    return [Photo(f"foolbox_{f.stem}", f, int(f.stem.split("_")[-1]) if dataset == "imagenet" else -1,
                  "foolbox", _FOOLBOX_LICENCE[dataset]) for f in files]


#: The two layouts of an ImageNet validation folder that :func:`imagenet_items` reads.
IMAGENET_LAYOUTS = ("classes", "flat")


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in torchvision's class order (sorted), from the list timm
    ships (``timm/data/_info/imagenet_synsets.txt``)."""
    root = _package_dir("timm")
    path = root / "data" / "_info" / "imagenet_synsets.txt" if root else None
    if path is None or not path.exists():
        raise FileNotFoundError("the ImageNet class list ships with timm (timm/data/_info/imagenet_synsets.txt): "
                                "pip install timm")
    wnids = path.read_text().split()
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise ValueError(f"{path}: expected 1000 sorted WordNet ids, got {len(wnids)}")
    return wnids


def write_imagenet_folder(dest: str | os.PathLike, layout: str = "classes") -> Path:
    """Write an ImageNet validation folder (``layout`` ``"classes"`` or ``"flat"``, the two that
    :func:`imagenet_items` reads) of the labelled ImageNet validation photos that ship inside
    installed packages (foolbox's 20 samples, :func:`demo_photos`), byte-for-byte copies.

    ``classes``: the 1,000 class sub-folders named by WordNet id (:func:`imagenet_wnids`; empty
    where no photo has the class, so that a folder's sorted index is its label);
    ``flat``: the files side by side with ``val.txt`` (``filename index`` lines). Both give the
    same photos with the same labels. Idempotent: an existing complete folder is left as it is.
    Returns ``dest``. (The rehearsal profile's ImageNet folder, ``advlib imagenet-folder``.)
    """
    if layout not in IMAGENET_LAYOUTS:
        raise ValueError(f"layout must be one of {IMAGENET_LAYOUTS}, got {layout!r}")
    dest = Path(dest)
    photos = [p for p in _foolbox("imagenet") if p.label >= 0]
    if not photos:
        raise FileNotFoundError("no labelled ImageNet photos found: install foolbox (it ships 20 validation samples)")
    done = dest / ".complete"
    if done.exists():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    wnids = imagenet_wnids()
    lines = []
    for p in photos:
        name = f"{p.source_id}.JPEG"
        if layout == "classes":
            target = tmp / wnids[p.label] / name
            target.parent.mkdir(exist_ok=True)
        else:
            target = tmp / name
            lines.append(f"{name} {p.label}")
        target.write_bytes(Path(p.path).read_bytes())
    if layout == "classes":
        for w in wnids:
            (tmp / w).mkdir(exist_ok=True)
    else:
        (tmp / "val.txt").write_text("\n".join(lines) + "\n")
    (tmp / ".complete").write_text(f"{len(photos)} photos, layout {layout}\n")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def demo_photos() -> list[Photo]:
    """The real photographs shipped inside installed packages, in a fixed order.

    First the corpus's original 31 (their ``source_id`` are unchanged): foolbox's 20 ImageNet
    validation samples (``imagenet_<i>_<label>.jpg``, the only ones with an ImageNet
    ``label``), 8 scikit-image colour photos, matplotlib's grace_hopper, scikit-learn's
    china and flower. Then 8 grey-level scikit-image photos, sporco's 5 colour test photos,
    and foolbox's 20 CIFAR-10 and 20 CIFAR-100 samples (32x32 photos, upscaled by
    :func:`load_image`). Not used: drawings, logos, synthetic and microscopy images and
    scans (e.g. skimage's horse, logo, color, phantom, cell, ihc, page; foolbox's MNIST).
    """
    photos = _foolbox("imagenet")
    photos += _named("skimage", "scikit-image", "data", _SKIMAGE_PHOTOS)
    mpl = _package_dir("matplotlib")
    if mpl is not None and (mpl / "mpl-data/sample_data/grace_hopper.jpg").exists():
        photos.append(Photo("matplotlib_grace_hopper", mpl / "mpl-data/sample_data/grace_hopper.jpg", -1,
                            "matplotlib", "US Navy photograph, public domain; no licence shipped "
                            "(see matplotlib/mpl-data/sample_data/README.txt)"))
    photos += _named("sklearn", "scikit-learn", "datasets/images", _SKLEARN_PHOTOS)
    photos += _named("skimage", "scikit-image", "data", _SKIMAGE_MORE)
    photos += _named("sporco", "sporco", "data", _SPORCO_PHOTOS)
    photos += _foolbox("cifar10") + _foolbox("cifar100")
    if not photos:
        raise FileNotFoundError("no demo photos found: install foolbox, scikit-image, matplotlib, "
                                "scikit-learn, sporco")
    return photos


def thumbnail_sources() -> set[str]:
    """Source ids of the demo photos smaller than 224 px on a side (the 40 CIFAR thumbnails and one
    text image), which the pipeline upscales."""
    out = set()
    for p in demo_photos():
        with Image.open(p.path) as im:
            if min(im.size) < SIZE:
                out.add(p.source_id)
    return out


def demo_items(crops_per_photo: int = 4) -> list[Item]:
    """Demo inputs: ``crops_per_photo`` distinct crops (see :data:`DEMO_CROPS`) of each photo."""
    if not 1 <= crops_per_photo <= len(DEMO_CROPS):
        raise ValueError(f"crops_per_photo must be 1..{len(DEMO_CROPS)}, got {crops_per_photo}")
    items = []
    for p in demo_photos():
        for crop in DEMO_CROPS[:crops_per_photo]:
            items.append(Item(f"{p.source_id}_{crop}", p.source_id, str(p.path), p.label,
                              "imagenet" if p.label >= 0 else "top1", crop, p.package, p.licence))
    return items


def folder_items(root: str | os.PathLike) -> list[Item]:
    """The images of any folder (recursively, sorted), one item per file, each its own source
    photo, without ImageNet labels: the classifier's top-1 is the reference (``label_source``
    ``"top1"``). A corpus for photos of your own (:func:`register_corpus`)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = [Path(f) for f in image_files(root)]
    ids = [f.relative_to(root).with_suffix("").as_posix().replace("/", "_") for f in files]
    return [Item(i, i, str(f), -1, "top1") for i, f in zip(ids, files)]


def register_corpus(name: str, items: Callable[[Any], list[Item]]) -> None:
    """Add a corpus: ``items(spec)`` returns the candidate :class:`Item` list of a run
    (``spec``: its :class:`advlib.dataset.DatasetSpec`). Profiles may then say ``corpus: name``."""
    if not callable(items):
        raise TypeError(f"register_corpus({name!r}): items must be a function of the DatasetSpec")
    CORPORA[name] = items


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


#: Corpora by the profiles' ``corpus`` name: a function of the run's
#: :class:`advlib.dataset.DatasetSpec` returning its candidate :class:`Item` list. Adding one:
#: ``register_corpus("mine", lambda spec: folder_items("my_photos"))``.
CORPORA: dict[str, Callable[[Any], list[Item]]] = {
    "demo": lambda spec: demo_items(spec.crops_per_photo),
    "imagenet": lambda spec: imagenet_items(_imagenet_dir(spec), spec.imagenet_labels and paths.resolve(spec.imagenet_labels)),
}


def _imagenet_dir(spec: Any) -> Path:
    """The spec's ImageNet folder (relative paths: to the repository root), written first from the
    photos shipped in packages when the profile says so (``imagenet_build``) and it is missing."""
    folder = paths.resolve(spec.imagenet_dir)
    if spec.imagenet_build:
        write_imagenet_folder(folder, spec.imagenet_build)
    return folder
