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
lbfgs         yes       own (:mod:`.lbfgs`): scipy L-BFGS-B on                (c, overshoot)
                        c*CE(target) + ||delta||^2 in the box [0, 1], whole batch at once
bim           yes       Foolbox 3 ``LinfBasicIterativeAttack``                          epsilon (Linf)
pgd           yes       Foolbox 3 ``LinfProjectedGradientDescentAttack``                epsilon (Linf)
l1_iterative  yes       Foolbox 3 ``L1BasicIterativeAttack``                            epsilon (L1)
l2_iterative  yes       Foolbox 3 ``L2BasicIterativeAttack``                            epsilon (L2)
gradient      no        Foolbox 3 ``L2FastGradientAttack`` (one L2 gradient step)       epsilon (L2)
fgsm          no        Foolbox 3 ``LinfFastGradientAttack``                            epsilon (Linf)
deepfool      no        Foolbox 3 ``L2DeepFoolAttack``, top-5 criterion; subclass       overshoot
                        ``TopKDeepFool`` skips classes already above the label
newtonfool    no        own (:mod:`.newtonfool`); Foolbox 3's version        overshoot
                        stops at the first top-1 change whatever the criterion
adef          no        own (:mod:`.adef`) after Alaifari et al. 2019;       internal top-k stop (> 5)
                        no library's ADef reaches the top-5 criterion
jsma          no        own (:mod:`.jsma`): batched pixel-pair JSMA; the     internal top-k stop (>= 5)
                        libraries' versions stop at a top-1 change or do not fit
                        224x224x3 inputs
cw            no        Foolbox 3 ``L2CarliniWagnerAttack`` under its own top-1         confidence
                        criterion (see ``run_cw``); top-5 checked after saving
============  ========  ==============================================================  ===========================

Saving destroys minimum-norm adversarials (8-bit rounding alone adds ~0.44 L2, and JPEG-100's
4:2:0 chroma subsampling removes much of the colour part of a perturbation), so every attack
walks through a list of strength settings and re-checks the criterion on the image rounded to
8 bits, encoded (JPEG quality 100 or PNG) and decoded; images that succeed after saving are not
attacked again at a higher strength. Settings are the entries' options (overridable). Every
setting tried is logged (:attr:`AttackOutcome.attempts`); the per-image results are those of
the image's final setting.

Modules, one per concept: :mod:`.criteria` (the success tests), :mod:`.saving` (the saved-file
check of every strength tried, the overshoot ladder), :mod:`.base` (:class:`AttackSpec`, callable
as ``attack(classifier, images, labels)`` like torchattacks' attacks, and :class:`AttackOutcome`),
:mod:`.foolbox_wrappers` (Foolbox 3's attacks under these criteria), :mod:`.lbfgs`,
:mod:`.newtonfool`, :mod:`.adef`, :mod:`.jsma` (our own), :mod:`.registry` (:data:`ATTACKS`);
beyond the paper, :mod:`.pgd` and :mod:`.adaptive` (attacks that know the defences).
"""

from .base import AttackOutcome, AttackSpec, run
from .criteria import (
                       N_CLASSES,
                       TARGET_PROB,
                       TARGET_SHIFT,
                       TOP_K,
                       TargetedProbability,
                       TopKMisclassification,
                       is_adversarial,
                       target_labels,
)
from .foolbox_wrappers import TopKDeepFool, foolbox_attack
from .registry import ATTACKS, get_attack, run_attack
from .saving import perturbation_norms, save_roundtrip

__all__ = ["ATTACKS", "AttackOutcome", "AttackSpec", "N_CLASSES", "TARGET_PROB", "TARGET_SHIFT", "TOP_K",
           "TargetedProbability", "TopKDeepFool", "TopKMisclassification", "foolbox_attack", "get_attack",
           "is_adversarial", "perturbation_norms", "run", "run_attack", "save_roundtrip", "target_labels"]
