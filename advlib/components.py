"""A profile's named components checked against their registries: classifiers, corpus, attacks
(and their options), detectors (and their grids), operations.

Kept apart from :mod:`advlib.profiles` because the registries import torch and Foolbox, and a
profile must be readable before the numerics are pinned (:func:`advlib.notebook.setup`).
"""

from __future__ import annotations

from typing import Any

from . import attacks, corpora, detect, models, ops


class ComponentError(ValueError):
    """A profile names a component its registry does not have (:func:`check`; loading a profile
    turns it into an :class:`advlib.profiles.ProfileError`)."""


def check(params: dict[str, Any], source: str = "<parameters>") -> None:
    """Check the profile's named components against their registries and keyword signatures:
    every classifier, attack, detector and operation name exists, every attack option is one of the
    attack's options (``advlib.attacks.ATTACKS[name].options``), every grid parameter one of the
    detector's (``get_params()``), and the corpus one of :data:`advlib.corpora.CORPORA`. Raises
    a :class:`ComponentError` naming the key and ``source``. Imports the registries
    (torch, Foolbox): :func:`advlib.profiles.load_profile` calls it unless ``check=False``."""
    def known(names, registry: dict, key: str, kind: str) -> None:
        for name in names:
            if name not in registry:
                raise ComponentError(f"{source}: key '{key}': unknown {kind} '{name}' (known: {', '.join(registry)})")

    known([params["corpus"]], corpora.CORPORA, "corpus", "corpus")
    known(params["classifiers"], models.CLASSIFIERS, "classifiers", "classifier")
    known(params["attacks"], attacks.ATTACKS, "attacks", "attack")
    known(params["attack_options"], attacks.ATTACKS, "attack_options", "attack")
    known(params["detectors"], detect.DETECTORS, "detectors", "detector")
    known(params["detector_grids"], detect.DETECTORS, "detector_grids", "detector")
    known(params["ops"] or [], ops.OPERATIONS, "ops", "operation")
    for name, opts in params["attack_options"].items():
        unknown = sorted(set(opts) - set(attacks.ATTACKS[name].options))
        if unknown:
            raise ComponentError(f"{source}: attack '{name}': unknown option(s) {unknown} "
                               f"(its options: {', '.join(attacks.ATTACKS[name].options)})")
    for name, grid in params["detector_grids"].items():
        if name in ("svm", "random_forest", "lda", "mlp"):  # cheap to build: check the grid's keys
            unknown = sorted(set(grid) - set(detect.make_detector(name).get_params()))
            if unknown:
                raise ComponentError(f"{source}: detector '{name}': unknown grid parameter(s) {unknown}")
