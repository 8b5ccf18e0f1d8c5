"""The paper's experiments, by section: the loops behind the tables and figures the notebooks show.

- :mod:`.protocol`: what notebooks 03-05 start from (:func:`load`), the dataset with its labels
  (:class:`Data`), out-of-fold scores
  (:class:`OOF`, :func:`cross_validate`) and metrics with cluster-bootstrap intervals.
- :mod:`.detection` (Sect. 4.5, notebook 03): Table 4, Table 5, per-attack detection rates, the
  saved detector, format robustness, the false-positive investigation.
- :mod:`.cost` (beyond the paper, notebook 03): cheap detection, operation subsets chosen on
  training/dev data, continuous features at equal numbers of classifier passes.
- :mod:`.shipped` (beyond the paper, notebook 03): the procedure that produces the shipped
  detector and its nested evaluation (the rates a user should expect on new photos).
- :mod:`.subsets` (notebooks 03-04): Tables 4-6 on paper-faithful subsets, paired tests.
- :mod:`.adaptive_sweep` (beyond the paper, notebook 05): adaptive attacks against the detectors and
  the corrections, judged from the saved files.
- :mod:`.correction` (Sect. 5.3, notebook 04): label correction (Fig. 6), image correction
  (Table 6), the denoising autoencoder, quality after correction (Fig. 8), detect-then-correct.

Everything here is glue between the dataset manifest, the cached top-5 features and
:mod:`advlib.detect` / :mod:`advlib.correct`; every public name is importable from
``advlib.experiments``.
"""

from . import adaptive_sweep
from .correction import (LABEL_CORRECTION_SETS, dae_correction, full_pipeline, jpeg_top5, label_correction_outcomes,
                         label_correction_results, quality_after_correction, saved_detector_pipeline, table6)
from .cost import (MAX_PASSES, STEPS, OpOutputs, cheap_detector_dir, cost_curve, cost_table, greedy_order,
                   meets_target, target_line)
from .detection import (FINE_TUNING, RAW_CNN_TITLES, detection_rate_per_attack, final_feature_detector,
                        format_robustness, fpr_investigation, half_photo_partitions, image_detectors, raw_cnn,
                        save_feature_detector, ship_paper_detector, squeezing, table4, table5)
from .protocol import (ALL_CIS, MAIN_FEATURE_DETECTORS, OOF, SCENARIOS, SETTINGS, Data, Fitted, Loaded, cross_validate,
                       feature_fitter, load, metric_row)
from .shipped import (Nested, Procedure, nested_evaluation, nested_metrics, nested_table, run_procedure,
                      save_fold_detectors, shipped_detector)
from .subsets import paired_tests, photo_subsets, subsets_table

__all__ = ["ALL_CIS", "Data", "FINE_TUNING", "Fitted", "LABEL_CORRECTION_SETS", "Loaded", "MAIN_FEATURE_DETECTORS",
           "MAX_PASSES", "Nested", "OOF", "OpOutputs", "Procedure", "RAW_CNN_TITLES", "SCENARIOS", "SETTINGS",
           "STEPS", "adaptive_sweep", "cheap_detector_dir", "cost_curve", "cost_table", "cross_validate",
           "dae_correction", "detection_rate_per_attack", "feature_fitter", "final_feature_detector",
           "format_robustness", "fpr_investigation", "full_pipeline", "greedy_order", "half_photo_partitions",
           "image_detectors", "jpeg_top5", "label_correction_outcomes", "label_correction_results", "load",
           "meets_target", "metric_row", "nested_evaluation", "nested_metrics", "nested_table", "paired_tests",
           "quality_after_correction", "raw_cnn", "run_procedure", "save_feature_detector",
           "save_fold_detectors", "saved_detector_pipeline", "ship_paper_detector", "shipped_detector", "squeezing", "photo_subsets", "subsets_table", "table4",
           "table5", "table6", "target_line"]
