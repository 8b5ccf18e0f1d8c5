"""Foolbox 3's attacks under the paper's criteria: fixed-epsilon ladders, DeepFool under the
top-5 criterion, Carlini-Wagner with a confidence ladder."""

from __future__ import annotations

from typing import Any, Callable

import eagerpy as ep
import foolbox as fb
import torch
from torch import nn

from .base import AttackSpec
from .criteria import TargetedProbability, TopKMisclassification
from .saving import overshoot_scan


def _fb_model(model: nn.Module, device) -> fb.PyTorchModel:
    return fb.PyTorchModel(model, bounds=(0, 1), device=device)


def _criterion(labels, targets, idx):
    return TopKMisclassification(labels[idx]) if targets is None else TargetedProbability(targets[idx])


def epsilon_runner(attack_cls, ctor_keys: tuple[str, ...]) -> Callable:
    """Runner for Foolbox fixed-epsilon attacks: one run per epsilon on the images left."""

    def run(model, x0, labels, targets, check, opts):
        fmodel = _fb_model(model, x0.device)
        attack = attack_cls(**{k: opts[k] for k in ctor_keys})
        idx = torch.arange(len(x0), device=x0.device)
        for eps in opts["epsilons"]:
            if idx.numel() == 0:
                return
            x = attack.run(fmodel, x0[idx], _criterion(labels, targets, idx), epsilon=eps)
            idx = idx[~check(idx, x, eps)]

    return run


class TopKDeepFool(fb.attacks.L2DeepFoolAttack):
    """Foolbox 3's L2 DeepFool, stepping only towards candidate classes still below the label.

    Under the top-5 criterion the label has to fall below five classes; stock DeepFool keeps
    choosing classes it has already pushed above the label (they are the nearest), which
    wastes steps that each cost ``candidates - 1`` gradients.
    """

    def get_distances(self, losses: ep.Tensor, grads: ep.Tensor) -> ep.Tensor:
        return ep.where(losses > 0, ep.inf, super().get_distances(losses, grads))


def run_deepfool(model, x0, labels, targets, check, opts):
    attack = TopKDeepFool(steps=opts["steps"], candidates=opts["candidates"], overshoot=opts["overshoot"],
                          loss="logits")
    x = attack.run(_fb_model(model, x0.device), x0, _criterion(labels, None, slice(None)))
    overshoot_scan(x0, x, opts["overshoot"], opts["overshoots"], check)


def run_cw(model, x0, labels, targets, check, opts):
    """Foolbox's C&W adds the confidence to the label's logit before it asks the criterion, and
    its loss only aims at the best other class: under the top-5 criterion it finds nothing
    (measured 1 of 4 photos). So it runs with a top-``criterion_k`` criterion (1: its own
    semantics, label kappa below the best other class) and a confidence ladder, and the top-5
    criterion is checked on the saved images."""
    fmodel = _fb_model(model, x0.device)
    idx = torch.arange(len(x0), device=x0.device)
    for conf in opts["confidences"]:
        if idx.numel() == 0:
            return
        attack = fb.attacks.L2CarliniWagnerAttack(
            binary_search_steps=opts["binary_search_steps"], steps=opts["steps"], stepsize=opts["stepsize"],
            confidence=conf, initial_const=opts["initial_const"], abort_early=True)
        x = attack.run(fmodel, x0[idx], TopKMisclassification(labels[idx], k=opts["criterion_k"]))
        found = x.flatten(1).abs().amax(1) > 0  # Foolbox returns zeros where nothing was found
        x = torch.where(found[:, None, None, None], x, x0[idx])
        idx = idx[~check(idx, x, conf)]


def foolbox_attack(name: str, targeted: bool, attack_cls, **options: Any) -> AttackSpec:
    """An entry for a Foolbox fixed-epsilon attack: ``epsilons`` is the ladder, the other
    options go to the attack's constructor. Register one with ``ATTACKS[name] = foolbox_attack(name,
    targeted, fb.attacks.SomeAttack, epsilons=(...), **constructor_options)`` (README, "Extending advlib")."""
    keys = tuple(k for k in options if k != "epsilons")
    return AttackSpec(name, targeted, f"foolbox {fb.__version__} {attack_cls.__name__}",
                      epsilon_runner(attack_cls, keys), options)
