"""Tables and figures of the notebooks, by paper section: results are files, figures are drawn
from them. Every figure function takes the data and a PNG path, saves the figure as PNG and PDF
(:func:`save`) and returns a :class:`SavedFigure` (``.figure``: the matplotlib Figure to restyle;
``.path``; Jupyter shows it). The look (:func:`theme`) is applied per figure: importing this
module changes no global state.

- :mod:`.tables`: every table a run writes, by file name (:data:`~advlib.report.tables.TABLES`, :func:`write_table`)
- :mod:`.style`: theme, saving, shared helpers, :func:`beside` (ours and the paper's side by side)
- :mod:`.dataset` (Sect. 2): Fig. 3, example images
- :mod:`.effects` (Sect. 3): Table 3's counts and views, Fig. 4, the restored heatmap
- :mod:`.detection` (Sect. 4.5): ROC, per-attack detection, format robustness, FPR vs confidence, the cost curve
- :mod:`.correction` (Sect. 5.3): Figs. 5-9
- :mod:`.adaptive_sweep` (beyond the paper, notebook 05): detection and correction under adaptive attacks
"""

from .adaptive_sweep import fig_adaptive_convergence, fig_adaptive_correction, fig_adaptive_detection
from .correction import fig5_heuristic, fig6_label_correction, fig7_examples, fig8_quality, fig9_qf_histogram
from .dataset import fig3_psnr_ssim, fig_examples
from .detection import fig_detection_cost, fig_detection_per_attack, fig_format_robustness, fig_fpr_confidence, fig_roc
from .effects import (GROUP_TITLES, TABLE3_OPS, fig4_operation_effects, fig_restored_heatmap, group_summary, op_axis,
                      operation_effects, table3_by_classifier, table3_counts, table3_percent)
from .style import FORMATS, UNITS, SavedFigure, beside, save, styled, theme
from .tables import TABLES
from .tables import write as write_table

__all__ = ["FORMATS", "GROUP_TITLES", "TABLE3_OPS", "TABLES", "UNITS", "SavedFigure", "beside",
           "fig_adaptive_convergence", "fig_adaptive_correction", "fig_adaptive_detection", "fig3_psnr_ssim", "fig4_operation_effects",
           "fig5_heuristic", "fig6_label_correction", "fig7_examples", "fig8_quality", "fig9_qf_histogram",
           "fig_detection_cost", "fig_detection_per_attack", "fig_examples", "fig_format_robustness",
           "fig_fpr_confidence", "fig_restored_heatmap", "fig_roc", "group_summary", "op_axis", "operation_effects",
           "save", "styled", "table3_by_classifier", "table3_counts", "table3_percent", "theme", "write_table"]
