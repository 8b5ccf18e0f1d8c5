"""Adaptive attacks against the paper's defences (notebook 05, beyond the paper).

**The images.** ``adaptive_n`` normal images, one per source photo (full-size photos only when
``adaptive_photos`` is ``full-size``: the shipped detector's domain), taken from the eval parts
of the outer folds of notebook 03 in turn (:func:`pick_images`). An image of fold ``k`` is
attacked through, and judged by, the detectors of fold ``k`` (:func:`load_defences`, saved by
:func:`advlib.experiments.save_fold_detectors`), which never saw its photo in training,
selection or calibration; feature squeezing's threshold is set on the other folds' normal
images.

**The attacks** (:data:`ATTACKS`) differ from the non-adaptive baseline ``pgd`` in what their
``differs`` says and nothing else (same top-5 margin, steps, step size, random start, restarts:
``adaptive_steps``, ``adaptive_restarts``), each with the attack strength chosen from the
convergence study (:func:`convergence`). Every adversarial is saved as a JPEG quality-100 file
(notebook 01's save path), read back, re-checked from the file, and judged by every defence on
the file's pixels (:meth:`Defences.judge`):

- detection: the paper's detector (SVM on the differences feature of all 38 operations), the
  cheap detector (the shipped detector's procedure) and feature squeezing (threshold at
  ``target_fpr``);
- correction: label correction (is the reference label in the voted top-5 of the 26 JPEG and
  scaling operations?) and image correction (in the top-5 after JPEG at the heuristic's ``min``
  quality?);
- the paper's two levels: a detector, then label correction of what it flags, the rest keeping
  the classifier's answer (notebook 04's "detector + label correction"), with either detector.

**The reading, fixed before the results.** An attack *defeats* a detector on an image when the
image is adversarial after saving and not flagged; a correction, when the image is adversarial
after saving and the correction does not bring the reference label back into the top-5; a
pipeline, when its final top-5 lacks the reference label. Rates are over all attacked images,
with exact (Clopper-Pearson) 95% intervals: the images are of distinct photos, so they are
independent draws. A defence *breaks* at the smallest budget where the lower bound of an
adaptive attack's defeat rate is at least :data:`BREAK_LEVEL` (50%); where no budget's lower
bound clears it, the table says ``not shown``.

Work is done in shards, one per (attack, budget, fold, strength), written atomically under the
store's ``adaptive/`` folder with a key of everything they depend on: a rerun recomputes nothing
and an interrupted run resumes.
"""

from .sweep import (
                    ATTACKS,
                    CORRECTIONS,
                    DEFENCE_NAMES,
                    DEFENCES,
                    DETECTORS,
                    PIPELINES,
                    TRANSFER_SOURCE,
                    Defences,
                    Job,
                    Strength,
                    SweepAttack,
                    convergence,
                    fold_sources,
                    folds_dir,
                    load_defences,
                    pick_images,
                    shard,
                    stated,
                    strength,
                    sweep,
                    write_rows,
)
from .tables import (
                    BREAK_LEVEL,
                    CONVERGENCE_TARGET,
                    breaking_budget,
                    breaking_table,
                    convergence_curves,
                    convergence_table,
                    loss_history,
                    masking_checks,
                    summary,
)

__all__ = [
                    "ATTACKS",
                    "BREAK_LEVEL",
                    "CONVERGENCE_TARGET",
                    "CORRECTIONS",
                    "DEFENCES",
                    "DEFENCE_NAMES",
                    "DETECTORS",
                    "PIPELINES",
                    "TRANSFER_SOURCE",
                    "Defences",
                    "Job",
                    "Strength",
                    "SweepAttack",
                    "breaking_budget",
                    "breaking_table",
                    "convergence",
                    "convergence_curves",
                    "convergence_table",
                    "fold_sources",
                    "folds_dir",
                    "load_defences",
                    "loss_history",
                    "masking_checks",
                    "pick_images",
                    "shard",
                    "stated",
                    "strength",
                    "summary",
                    "sweep",
                    "write_rows",
]
