"""The registry of the paper's 12 attacks (:data:`ATTACKS`): names to :class:`~advlib.attacks.base.AttackSpec`."""

from __future__ import annotations

from typing import Any, Callable

import foolbox as fb
import torch
from torch import nn

from . import adef, jsma, lbfgs, newtonfool
from .base import AttackOutcome, AttackSpec, run
from .foolbox_wrappers import foolbox_attack, run_cw, run_deepfool


def _custom(fn: Callable, *, target: bool = False) -> Callable:
    """A runner of our own attack ``fn(model, x0, labels_or_targets, check, **options)``."""
    def runner(model, x0, labels, targets, check, opts):
        fn(model, x0, targets if target else labels, check, **opts)

    return runner


def _own(name: str, targeted: bool, library: str, runner: Callable, **options: Any) -> AttackSpec:
    return AttackSpec(name, targeted, library, runner, options)


_LINF = (2 / 255, 4 / 255, 8 / 255, 16 / 255)
_BIM = dict(steps=10, rel_stepsize=0.2)

#: The paper's 12 attacks by name (see the module docstring's table).
ATTACKS: dict[str, AttackSpec] = {spec.name: spec for spec in [
    # targeted
    _own("lbfgs", True, "own (scipy L-BFGS-B)", _custom(lbfgs.lbfgs, target=True),
         consts=(10.0, 100.0), maxiter=15, overshoots=(0.0, 0.5, 1.0, 2.0)),
    foolbox_attack("bim", True, fb.attacks.LinfBasicIterativeAttack, epsilons=_LINF, **_BIM, random_start=False),
    foolbox_attack("pgd", True, fb.attacks.LinfProjectedGradientDescentAttack, epsilons=_LINF, **_BIM,
             random_start=True),
    foolbox_attack("l1_iterative", True, fb.attacks.L1BasicIterativeAttack, epsilons=(500.0, 1000.0, 2000.0, 4000.0),
             **_BIM, random_start=False),
    foolbox_attack("l2_iterative", True, fb.attacks.L2BasicIterativeAttack, epsilons=(1.0, 2.0, 4.0, 8.0, 16.0),
             **_BIM, random_start=False),
    # non-targeted
    foolbox_attack("gradient", False, fb.attacks.L2FastGradientAttack, epsilons=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
             random_start=False),
    foolbox_attack("fgsm", False, fb.attacks.LinfFastGradientAttack, epsilons=(1 / 255,) + _LINF + (32 / 255,),
             random_start=False),
    _own("deepfool", False, f"foolbox {fb.__version__} L2DeepFoolAttack (TopKDeepFool)", run_deepfool,
         overshoots=(1.0, 2.0, 4.0, 8.0), overshoot=1.0, steps=6, candidates=10),
    _own("newtonfool", False, "own (after Jang et al. 2017)", _custom(newtonfool.newtonfool),
         overshoots=(0.0, 0.5, 1.0, 2.0, 4.0), steps=30, stepsize=0.01),
    _own("adef", False, "own (after Alaifari et al. 2019)", _custom(adef.adef),
         top_ks=(10, 20, 50), max_iter=30, smooth=1.0, overshoot=1.2),
    _own("jsma", False, "own (batched pixel-pair JSMA)", _custom(jsma.jsma),
         top_ks=(5, 10), candidates=64, pairs_per_step=16, competitors=10, max_fraction=0.02),
    _own("cw", False, f"foolbox {fb.__version__} L2CarliniWagnerAttack", run_cw,
         confidences=(5.0, 10.0, 20.0, 40.0), binary_search_steps=1, steps=40, stepsize=0.01,
         initial_const=1.0, criterion_k=1),
]}


def get_attack(name: str, **overrides: Any) -> AttackSpec:
    """``ATTACKS[name]`` with ``overrides`` applied; an unknown name raises ``KeyError``."""
    if name not in ATTACKS:
        raise KeyError(f"unknown attack '{name}' (known: {', '.join(ATTACKS)})")
    return ATTACKS[name].with_options(**overrides) if overrides else ATTACKS[name]


def run_attack(name: str, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
               save_format: str = "jpeg", device: str | torch.device = "cpu", batch_size: int = 16,
               progress: bool = False, seed: int = 0, reference: torch.Tensor | None = None,
               **options: Any) -> AttackOutcome:
    """Attack ``name`` of :data:`ATTACKS` with ``options`` replacing its defaults: :func:`advlib.attacks.base.run`."""
    return run(get_attack(name, **options), model, images, labels, save_format=save_format, device=device,
               batch_size=batch_size, progress=progress, seed=seed, reference=reference)
