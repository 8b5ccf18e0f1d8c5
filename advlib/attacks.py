"""The paper's 12 adversarial attacks (Sect. 2.3, Table 1), their criteria, and the saving re-check.

Targeted attacks aim at ``(top-1 + 100) mod 1000`` and succeed when that class has softmax
probability >= 0.99; non-targeted attacks succeed when the original top-1 label is no longer in
the top-5. Attacks start from the classifier's top-1, not the ground truth. On top of its own
criterion an image counts as adversarial only if its *reference* label (the ImageNet ground
truth where known, else the top-1; ``run_attack(reference=...)``) is not in the top-5 either:
the paper's re-check "the top-5 no longer contains the ground-truth label".

============  ========  ==============================================================  ===========================
name          targeted  implementation                                                  strength searched
============  ========  ==============================================================  ===========================
lbfgs         yes       own (``attacks_custom.lbfgs``): scipy L-BFGS-B on                (c, overshoot)
                        c*CE(target) + ||delta||^2 in the box [0, 1], whole batch at once
bim           yes       Foolbox 3 ``LinfBasicIterativeAttack``                          epsilon (Linf)
pgd           yes       Foolbox 3 ``LinfProjectedGradientDescentAttack``                epsilon (Linf)
l1_iterative  yes       Foolbox 3 ``L1BasicIterativeAttack``                            epsilon (L1)
l2_iterative  yes       Foolbox 3 ``L2BasicIterativeAttack``                            epsilon (L2)
gradient      no        Foolbox 3 ``L2FastGradientAttack`` (one L2 gradient step)       epsilon (L2)
fgsm          no        Foolbox 3 ``LinfFastGradientAttack``                            epsilon (Linf)
deepfool      no        Foolbox 3 ``L2DeepFoolAttack``, top-5 criterion; subclass       overshoot
                        ``TopKDeepFool`` skips classes already above the label
newtonfool    no        own (``attacks_custom.newtonfool``); Foolbox 3's version        overshoot
                        stops at the first top-1 change whatever the criterion
adef          no        own (``attacks_custom.adef``) after Alaifari et al. 2019;       internal top-k stop (> 5)
                        no library's ADef reaches the top-5 criterion
jsma          no        own (``attacks_custom.jsma``): batched pixel-pair JSMA; the     internal top-k stop (>= 5)
                        libraries' versions stop at a top-1 change or do not fit
                        224x224x3 inputs
cw            no        Foolbox 3 ``L2CarliniWagnerAttack`` under its own top-1         confidence
                        criterion (see ``_run_cw``); top-5 checked after saving
============  ========  ==============================================================  ===========================

Saving destroys minimum-norm adversarials (8-bit rounding alone adds ~0.44 L2, and JPEG-100's
4:2:0 chroma subsampling removes much of the colour part of a perturbation), so every attack
walks through a list of strength settings and re-checks the criterion on the image rounded to
8 bits, encoded (JPEG quality 100 or PNG) and decoded; images that succeed after saving are not
attacked again at a higher strength. Settings are the entries' options (overridable). Every
setting tried is logged (:attr:`AttackOutcome.attempts`); the per-image results are those of
the image's final setting.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import eagerpy as ep
import foolbox as fb
import numpy as np
import torch
from torch import nn

from . import attacks_custom as custom
from .store import as_saved, check_images

TOP_K = 5  # non-targeted: the original label must leave the top-5
TARGET_PROB = 0.99  # targeted: p(target) >= 0.99
TARGET_SHIFT = 100  # target = (top-1 + 100) mod 1000
N_CLASSES = 1000


# --------------------------------------------------------------------------- criteria

class TopKMisclassification(fb.criteria.Misclassification):
    """Foolbox 3 criterion: adversarial when ``labels`` (B,) is not among the top-``k`` outputs.

    Subclasses ``Misclassification`` so that Foolbox's gradient attacks, DeepFool and C&W use
    the untargeted losses on ``labels``.
    """

    def __init__(self, labels: Any, k: int = TOP_K):
        super().__init__(labels)
        self.k = k

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"

    def __call__(self, perturbed, outputs):
        outputs_, restore_type = ep.astensor_(outputs)
        topk = outputs_.argsort(axis=-1)[:, -self.k:]
        is_adv = (topk == self.labels[:, None]).any(axis=-1).logical_not()
        return restore_type(is_adv)


class TargetedProbability(fb.criteria.TargetedMisclassification):
    """Foolbox 3 criterion: adversarial when softmax p(target) >= ``threshold`` (targets (B,))."""

    def __init__(self, target_classes: Any, threshold: float = TARGET_PROB):
        super().__init__(target_classes)
        self.threshold = threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"

    def __call__(self, perturbed, outputs):
        outputs_, restore_type = ep.astensor_(outputs)
        p = ep.softmax(outputs_, axis=-1)[range(len(outputs_)), self.target_classes]
        return restore_type(p >= self.threshold)


def target_labels(labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The paper's targets: ``(labels + 100) mod 1000`` (int64, same length)."""
    return (torch.as_tensor(labels, dtype=torch.long) + TARGET_SHIFT) % N_CLASSES


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _out_of_top5(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """bool (B,): ``labels`` (B,) not among the 5 largest of ``logits`` (B, C)."""
    return ~(logits.topk(TOP_K, dim=1).indices == labels[:, None]).any(1)


def _success(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None,
             reference: torch.Tensor | None = None) -> torch.Tensor:
    """The combined success test on logits (B, C): the attack's criterion (targeted: softmax
    p(``targets``) >= 0.99; non-targeted: ``labels`` out of the top-5) AND, when given,
    ``reference`` (B,) out of the top-5. Returns bool (B,)."""
    if targets is None:
        ok = _out_of_top5(logits, labels)
    else:
        ok = logits.softmax(1).gather(1, targets[:, None])[:, 0] >= TARGET_PROB
    return ok if reference is None else ok & _out_of_top5(logits, reference)


def _check_labels(name: str, labels: Any, n: int) -> torch.Tensor:
    """``labels`` as an int64 CPU tensor (n,) of class indices, or ValueError naming ``name``."""
    out = torch.as_tensor(labels, dtype=torch.long).cpu().clone()  # not an inference-mode tensor
    if out.shape != (n,) or (n and (out.min() < 0 or out.max() >= N_CLASSES)):
        raise ValueError(f"{name} must be {n} class indices in [0, {N_CLASSES}), got shape {tuple(out.shape)}")
    return out


@torch.no_grad()
def is_adversarial(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   targets: torch.Tensor | None = None, batch_size: int = 64,
                   reference: torch.Tensor | None = None) -> np.ndarray:
    """The paper's success test for images (B, 3, H, W) (uint8, or float in [0, 1]).

    Non-targeted (``targets=None``): ``labels`` (B,) is not in the top-5. Targeted: softmax
    probability of ``targets`` (B,) >= 0.99. In both cases ``reference`` (B,) (default:
    ``labels``) must not be in the top-5 either. Returns a bool array (B,).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if len(labels) != len(images) or (targets is not None and len(targets) != len(images)):
        raise ValueError(f"labels/targets must have {len(images)} entries, one per image")
    reference = labels if reference is None else reference
    if len(reference) != len(images):
        raise ValueError(f"reference must have {len(images)} entries, one per image")
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(images), batch_size):
        x = _as_float(images[s:s + batch_size].to(device))
        t = None if targets is None else torch.as_tensor(targets[s:s + batch_size]).long().to(device)
        lab = torch.as_tensor(labels[s:s + batch_size]).long().to(device)
        ref = torch.as_tensor(reference[s:s + batch_size]).long().to(device)
        out.append(_success(model(x), lab, t, ref).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=bool)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 by rounding (not truncation, which loses perturbation)."""
    return (x.detach() * 255).round().clamp(0, 255).to(torch.uint8)


def save_roundtrip(images: torch.Tensor, save_format: str = "jpeg") -> torch.Tensor:
    """uint8 (B, 3, H, W) -> encoded as ``save_format`` (JPEG quality 100 or PNG, see
    :func:`advlib.store.image_format`) and decoded, as the dataset's files are."""
    return torch.stack([as_saved(im, save_format) for im in images])


def perturbation_norms(adv: torch.Tensor, ref: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Perturbation of uint8 images ``adv`` against uint8 ``ref`` (both (B, 3, H, W)).

    Returns ``(l2, linf)``: float (B,) L2 norm over all 3*H*W values on the [0, 1] pixel scale,
    and int (B,) L-inf in 8-bit levels (0..255).
    """
    d = adv.cpu().to(torch.int32) - ref.cpu().to(torch.int32)
    l2 = (d.flatten(1).double() / 255).norm(dim=1).numpy()
    linf = d.flatten(1).abs().amax(1).numpy().astype(np.int64)
    return l2, linf


# --------------------------------------------------------------------------- results

@dataclass
class AttackOutcome:
    """Result of :func:`run_attack` for B images.

    Per image, everything is measured at its *final* setting: the one at which it succeeded after
    saving, else the last (strongest) one tried. ``adversarial``: uint8 (B, 3, H, W) CPU, the
    rounded image at that setting (the input if the attack never returned one).
    ``success_raw/rounded/saved``: bool (B,), the combined success test (the attack's criterion
    and the reference label out of the top-5) on the float result, after 8-bit rounding, after
    encoding and decoding in memory. ``strength``: per image the setting that succeeded after
    saving (None if none). ``target``: int (B,), -1 when non-targeted. ``attempts``: one dict per
    image per setting tried, in order: ``index`` (image, 0..B-1), ``rung`` (0, 1, ... per image),
    ``strength``, ``success_raw``, ``success_rounded``, ``success_saved``, ``l2`` (rounded image
    minus input, [0, 1] scale, over all 3*H*W values), ``linf`` (8-bit levels, 0..255).
    ``seconds``: wall time of the whole call.
    """

    adversarial: torch.Tensor
    success_raw: np.ndarray
    success_rounded: np.ndarray
    success_saved: np.ndarray
    strength: list
    target: np.ndarray
    seconds: float = 0.0
    attempts: list[dict] = field(default_factory=list)


class _Tracker:
    """Per-image bookkeeping for one batch of B images; ``check`` is the callback the attacks call.

    ``x0``: float (B, 3, H, W) inputs; ``labels``, ``reference`` (B,) and ``targets`` (B,) or None,
    on the model's device. ``offset``: index of the batch's first image in the whole call (for
    the attempt log).
    """

    def __init__(self, model, x0, labels, targets, reference, save_format, offset: int = 0):
        self.model, self.labels, self.targets, self.reference = model, labels, targets, reference
        self.fmt, self.offset = save_format, offset
        B = len(x0)
        self.x0_u8 = quantize(x0).cpu()
        self.adv = self.x0_u8.clone()
        self.raw, self.rounded, self.saved = (np.zeros(B, dtype=bool) for _ in range(3))
        self.strength: list = [None] * B
        self.rungs = np.zeros(B, dtype=np.int64)  # settings tried so far, per image
        self.attempts: list[dict] = []

    @torch.no_grad()
    def check(self, idx: torch.Tensor, x: torch.Tensor, strength: object) -> torch.Tensor:
        """Test candidates ``x`` (len(idx), 3, H, W) in [0, 1] for images ``idx`` at setting
        ``strength``: raw, rounded to 8 bits, and after an in-memory save round trip, each with
        the combined success test. Logs one attempt per image; keeps the values as the image's
        final ones unless it already succeeded after saving. Returns the saved success, bool
        (len(idx),) on ``idx``'s device (what the runners use to drop images)."""
        lab, ref = self.labels[idx], self.reference[idx]
        tgt = None if self.targets is None else self.targets[idx]
        q = quantize(x)
        saved_img = save_roundtrip(q.cpu(), self.fmt).to(x.device)
        raw = _success(self.model(x.detach().float()), lab, tgt, ref).cpu().numpy()
        rounded = _success(self.model(q.float() / 255), lab, tgt, ref).cpu().numpy()
        saved = _success(self.model(saved_img.float() / 255), lab, tgt, ref).cpu().numpy()
        ii = idx.cpu().numpy()
        l2, linf = perturbation_norms(q, self.x0_u8[ii])
        value = _plain(strength)
        for j, i in enumerate(ii):
            self.attempts.append({
                "index": int(i) + self.offset, "rung": int(self.rungs[i]), "strength": value,
                "success_raw": bool(raw[j]), "success_rounded": bool(rounded[j]),
                "success_saved": bool(saved[j]), "l2": float(l2[j]), "linf": int(linf[j])})
            self.rungs[i] += 1
            if self.saved[i]:  # final already: succeeded at an earlier setting
                continue
            self.adv[i] = q[j].cpu()
            self.raw[i], self.rounded[i], self.saved[i] = raw[j], rounded[j], saved[j]
            self.strength[i] = value if saved[j] else None
        return torch.from_numpy(saved).to(idx.device)


def _fmt(v: Any) -> str:
    """repr for option values; Linf epsilons on the 8-bit grid read as ``4/255``."""
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(e) for e in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, float) and 0 < v < 1 and abs(v * 255 - round(v * 255)) < 1e-9:
        return f"{round(v * 255)}/255"
    return repr(v)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _plain(v):
    return v.item() if hasattr(v, "item") else v


# --------------------------------------------------------------------------- runners

def _fb_model(model: nn.Module, device) -> fb.PyTorchModel:
    return fb.PyTorchModel(model, bounds=(0, 1), device=device)


def _criterion(labels, targets, idx):
    return TopKMisclassification(labels[idx]) if targets is None else TargetedProbability(targets[idx])


def _epsilon_runner(attack_cls, ctor_keys: tuple[str, ...]) -> Callable:
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


def _run_deepfool(model, x0, labels, targets, check, opts):
    attack = TopKDeepFool(steps=opts["steps"], candidates=opts["candidates"], overshoot=opts["overshoot"],
                          loss="logits")
    x = attack.run(_fb_model(model, x0.device), x0, _criterion(labels, None, slice(None)))
    custom.overshoot_scan(x0, x, opts["overshoot"], opts["overshoots"], check)


def _run_cw(model, x0, labels, targets, check, opts):
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


def _custom(fn: Callable, *, target: bool = False) -> Callable:
    def run(model, x0, labels, targets, check, opts):
        fn(model, x0, targets if target else labels, check, **opts)

    return run


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True, repr=False)
class AttackSpec:
    """One attack: whether it is targeted, where it comes from, and its keyword options.

    ``options`` are the defaults; :meth:`with_options` returns a copy with some replaced (the
    profile's ``attack_options: {name: {key: value}}``). Lists become tuples.
    """

    name: str
    targeted: bool
    library: str
    runner: Callable = field(compare=False)
    options: Mapping[str, Any] = field(default_factory=dict)

    def with_options(self, **overrides: Any) -> "AttackSpec":
        unknown = sorted(set(overrides) - set(self.options))
        if unknown:
            raise ValueError(f"attack '{self.name}': unknown option(s) {', '.join(unknown)} "
                             f"(known: {', '.join(self.options)})")
        new = dict(self.options)
        for k, v in overrides.items():
            default = self.options[k]
            if isinstance(default, tuple):
                if not isinstance(v, (list, tuple)) or not v or not all(_is_number(e) for e in v):
                    raise ValueError(f"attack '{self.name}': option '{k}' must be a non-empty list of numbers, "
                                     f"got {v!r}")
                v = tuple(v)
            elif isinstance(default, bool) != isinstance(v, bool) or not (isinstance(v, bool) or _is_number(v)):
                raise ValueError(f"attack '{self.name}': option '{k}' must be {type(default).__name__}, got {v!r}")
            new[k] = v
        return AttackSpec(self.name, self.targeted, self.library, self.runner, new)

    def __post_init__(self):
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))  # read-only

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={_fmt(v)}" for k, v in self.options.items())
        return f"AttackSpec({self.name!r}, targeted={self.targeted}, library={self.library!r}, {opts})"


def _foolbox(name: str, targeted: bool, attack_cls, **options: Any) -> AttackSpec:
    """An entry for a Foolbox fixed-epsilon attack: ``epsilons`` is the ladder, the other
    options go to the attack's constructor."""
    keys = tuple(k for k in options if k != "epsilons")
    return AttackSpec(name, targeted, f"foolbox {fb.__version__} {attack_cls.__name__}",
                      _epsilon_runner(attack_cls, keys), options)


#: Register a Foolbox 3 fixed-epsilon attack: ``ATTACKS[name] = foolbox_attack(name, targeted,
#: fb.attacks.SomeAttack, epsilons=(...), **constructor_options)`` (README, "Extending advlib").
foolbox_attack = _foolbox


def _own(name: str, targeted: bool, library: str, runner: Callable, **options: Any) -> AttackSpec:
    return AttackSpec(name, targeted, library, runner, options)


_LINF = (2 / 255, 4 / 255, 8 / 255, 16 / 255)
_BIM = dict(steps=10, rel_stepsize=0.2)

#: The paper's 12 attacks by name (see the module docstring's table).
ATTACKS: dict[str, AttackSpec] = {spec.name: spec for spec in [
    # targeted
    _own("lbfgs", True, "own (scipy L-BFGS-B)", _custom(custom.lbfgs, target=True),
         consts=(10.0, 100.0), maxiter=15, overshoots=(0.0, 0.5, 1.0, 2.0)),
    _foolbox("bim", True, fb.attacks.LinfBasicIterativeAttack, epsilons=_LINF, **_BIM, random_start=False),
    _foolbox("pgd", True, fb.attacks.LinfProjectedGradientDescentAttack, epsilons=_LINF, **_BIM,
             random_start=True),
    _foolbox("l1_iterative", True, fb.attacks.L1BasicIterativeAttack, epsilons=(500.0, 1000.0, 2000.0, 4000.0),
             **_BIM, random_start=False),
    _foolbox("l2_iterative", True, fb.attacks.L2BasicIterativeAttack, epsilons=(1.0, 2.0, 4.0, 8.0, 16.0),
             **_BIM, random_start=False),
    # non-targeted
    _foolbox("gradient", False, fb.attacks.L2FastGradientAttack, epsilons=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
             random_start=False),
    _foolbox("fgsm", False, fb.attacks.LinfFastGradientAttack, epsilons=(1 / 255,) + _LINF + (32 / 255,),
             random_start=False),
    _own("deepfool", False, f"foolbox {fb.__version__} L2DeepFoolAttack (TopKDeepFool)", _run_deepfool,
         overshoots=(1.0, 2.0, 4.0, 8.0), overshoot=1.0, steps=6, candidates=10),
    _own("newtonfool", False, "own (after Jang et al. 2017)", _custom(custom.newtonfool),
         overshoots=(0.0, 0.5, 1.0, 2.0, 4.0), steps=30, stepsize=0.01),
    _own("adef", False, "own (after Alaifari et al. 2019)", _custom(custom.adef),
         top_ks=(10, 20, 50), max_iter=30, smooth=1.0, overshoot=1.2),
    _own("jsma", False, "own (batched pixel-pair JSMA)", _custom(custom.jsma),
         top_ks=(5, 10), candidates=64, pairs_per_step=16, competitors=10, max_fraction=0.02),
    _own("cw", False, f"foolbox {fb.__version__} L2CarliniWagnerAttack", _run_cw,
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
    """Attack uint8 images (B, 3, H, W) whose classifier top-1 labels are ``labels`` (B,).

    ``model``: pixel-space classifier from :mod:`advlib.models` (moved to ``device``, as Foolbox
    does). The attacks steer by ``labels`` (targets ``(labels + 100) mod 1000``); an image counts
    as successful (raw, rounded, saved, and in the strength search) only if, besides the
    attack's criterion, ``reference`` (B,) (default ``labels``; the dataset passes the ground
    truth where known) is not in the top-5. Runs in batches of ``batch_size``; ``options``
    override the attack's defaults (``ATTACKS[name].options``); ``seed`` fixes PGD's random
    start. See :class:`AttackOutcome`.
    """
    spec = get_attack(name, **options)
    check_images(images)
    labels = _check_labels("labels", labels, len(images))
    reference = labels.clone() if reference is None else _check_labels("reference", reference, len(images))
    if save_format not in ("jpeg", "png"):
        raise ValueError(f"save_format must be 'jpeg' or 'png', got {save_format!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from tqdm.auto import tqdm

    start = time.perf_counter()
    model = model.to(device).eval()
    targets = target_labels(labels) if spec.targeted else None
    parts = []
    with torch.random.fork_rng(devices=[torch.device(device)] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)
        for s in tqdm(range(0, len(images), batch_size), desc=f"attack {name}", disable=not progress, leave=False):
            x0 = images[s:s + batch_size].to(device).float() / 255
            lab = labels[s:s + batch_size].to(device)
            ref = reference[s:s + batch_size].to(device)
            tgt = None if targets is None else targets[s:s + batch_size].to(device)
            tracker = _Tracker(model, x0, lab, tgt, ref, save_format, offset=s)
            spec.runner(model, x0, lab, tgt, tracker.check, dict(spec.options))
            parts.append(tracker)
    cat = (lambda a: np.concatenate(a) if a else np.zeros(0, dtype=bool))
    return AttackOutcome(
        adversarial=torch.cat([t.adv for t in parts]) if parts else images.clone(),
        success_raw=cat([t.raw for t in parts]),
        success_rounded=cat([t.rounded for t in parts]),
        success_saved=cat([t.saved for t in parts]),
        strength=[v for t in parts for v in t.strength],
        target=(targets.numpy() if targets is not None else np.full(len(images), -1, dtype=np.int64)),
        seconds=time.perf_counter() - start,
        attempts=[a for t in parts for a in t.attempts],
    )
