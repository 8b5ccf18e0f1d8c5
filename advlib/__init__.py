"""advlib: detecting and correcting adversarial images with image processing operations.

A reproduction of Nguyen, Kuribayashi, Yamagishi and Echizen, "Effects of Image Processing
Operations on Adversarial Noise and Their Use in Detecting and Correcting Adversarial Images",
IEICE Trans. Inf. & Syst., 2022. One module per concept:

- ``config``: profiles (``params/*.yaml``) and output folders
- ``models``: the ImageNet classifiers (``CLASSIFIERS``, ``load_classifier``)
- ``data``: image loading, ImageNet readers, the offline demo corpus, normal-image selection
- ``ops``: the 38 image processing operations, batched and Pillow-exact
- ``features``: top-5 labels under the operations, counting and differences features
- ``attacks``: the 12 adversarial attacks (``ATTACKS``)
- ``dataset``: building the normal/adversarial dataset and its splits
- ``detect``: the detectors (``DETECTORS``)
- ``correct``: label and image correction
- ``report``: tables and figures
- ``detector``: :class:`Detector`, the method as one object; ``api``: the functions below

The public API (``advlib.__all__``), for your own classifier and images::

    clf = advlib.load_classifier("efficientnet_lite0")          # or advlib.wrap(model, mean, std)
    det = advlib.Detector(clf, feature="diff", ops="all", estimator="svm").fit(images, is_adversarial)
    scores, flags = det.score(images), det.detect(images)
    labels = advlib.correct_labels(clf, images)                  # voted top-5 (Sect. 5.1)
    fixed, qf = advlib.correct_images(clf, images, strategy="min")   # JPEG heuristic (Sect. 5.2)
    adv = advlib.attack("pgd", clf, images)                      # the dataset's attacks and criteria

Importing advlib loads nothing heavy and changes no global state: the names are resolved on
first use.
"""

import importlib

__version__ = "0.1.0"

#: name -> module that defines it
_EXPORTS = {
    "Detector": "detect",
    "load_classifier": "api", "wrap": "api", "load_images": "api", "predict_top5": "api",
    "correct_labels": "api", "correct_images": "api", "attack": "api",
    "load_profile": "profiles",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'advlib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
