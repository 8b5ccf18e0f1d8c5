"""Detectors of adversarial images (paper section 4) and their evaluation (Table 4, Table 5).

Every detector follows the scikit-learn estimator API: ``fit``, ``predict`` (1 = adversarial,
0 = normal), ``predict_proba`` (probability of "normal", "adversarial") and/or
``decision_function``. :data:`DETECTORS` maps the names used in the profiles to factories:

- ``svm``, ``random_forest``, ``lda``, ``mlp``: the traditional classifiers of section 4.3 on
  counting / differences feature matrices (N, d), with scikit-learn 0.21.3's defaults as the
  paper: ``SVC(gamma="auto", probability=True)``, 100 trees of depth 2, LDA, MLP. No scaler
  in front, as in the paper and the authors' code. :func:`select_on_dev` picks the
  hyper-parameters of :data:`PARAM_GRIDS` on the dev split (section 4.3).
- ``stats_cnn`` (:class:`StatsCNN`): the authors' 1-D CNN on one feature vector (section 4.4).
- ``raw_resnet50``, ``raw_xception`` (:class:`RawImageCNN`): CNNs on the uint8 images,
  trained from scratch or fine-tuned from local ImageNet weights (section 4.4).
- ``feature_squeezing`` (:class:`FeatureSqueezing`): Xu et al., NDSS 2018 (EvadeML-Zoo).

Scores: :func:`detector_scores` returns the probability of "adversarial" (``predict_proba``
column 1) or, for feature squeezing, its raw L1 score. :func:`evaluate` counts a score
``>= threshold`` as adversarial; 0.5 on the probability is the paper's accuracy threshold.
:func:`save_detector` / :func:`load_detector` store a fitted detector in a folder with safe
formats only (skops, ``state_dict`` + JSON).

The method as one object is :class:`Detector` (:mod:`.pipeline`): operations, features and an
estimator together, ``fit`` / ``score`` / ``detect`` / ``calibrate`` / ``save`` / ``load`` /
``pretrained``.

One module per concept: :mod:`.base` (input checks, the torch detectors' base class and their
best-epoch loop), :mod:`.classic` (SVM, random forest, LDA, MLP), :mod:`.stats_cnn`,
:mod:`.raw_cnn`, :mod:`.finetune` (the fine-tuned EfficientNet-Lite0 raw-image baseline),
:mod:`.squeezing`, :mod:`.registry` (:data:`DETECTORS`, what each takes, :data:`PARAM_GRIDS`,
:func:`select_on_dev`), :mod:`.metrics`, :mod:`.persist`, :mod:`.pipeline` (:class:`Detector`)
and :mod:`.differentiable` (torch copies of fitted detectors for the adaptive attacks); every
public name is importable from ``advlib.detect``. Registering a detector:
:func:`register_detector` (README, "Extending advlib").
"""

from . import differentiable
from .base import TorchDetector
from .classic import lda, mlp, random_forest, svm
from .finetune import FineTunedEfficientNet
from .metrics import (
                      bootstrap_ci,
                      calibrate_threshold,
                      detector_scores,
                      eer,
                      evaluate,
                      fpr_threshold,
                      is_degenerate,
                      tpr_at_fpr,
)
from .persist import load_detector, read_meta, save_detector
from .pipeline import FEATURES, Detector
from .raw_cnn import RawImageCNN, pretrained_weights
from .registry import (
                      DETECTORS,
                      PARAM_GRIDS,
                      TAKES,
                      feature_detectors,
                      make_detector,
                      register_detector,
                      select_on_dev,
                      takes,
)
from .squeezing import (
                      PAPER_THRESHOLD,
                      FeatureSqueezing,
                      bit_depth,
                      median_filter,
                      non_local_means,
)
from .stats_cnn import STATS_CNN_LAYOUTS, StatsCNN

__all__ = ["DETECTORS", "FEATURES", "PARAM_GRIDS", "PAPER_THRESHOLD", "STATS_CNN_LAYOUTS", "TAKES", "Detector",
           "FeatureSqueezing", "FineTunedEfficientNet", "RawImageCNN", "StatsCNN", "TorchDetector", "differentiable",
           "feature_detectors", "register_detector", "takes", "bit_depth", "bootstrap_ci", "calibrate_threshold", "detector_scores", "eer", "evaluate",
           "fpr_threshold", "is_degenerate", "lda", "load_detector", "make_detector", "median_filter", "mlp",
           "non_local_means", "pretrained_weights", "random_forest", "read_meta", "save_detector", "select_on_dev",
           "svm", "tpr_at_fpr"]
