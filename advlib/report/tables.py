"""Every table a run writes, by file name: :data:`TABLES` maps a file stem of ``tables/<run>/`` to
its notebook and the function that turns an experiment's result into the published table (the
paper's values beside ours, rates in percent: :mod:`advlib.paper`). :func:`write` is the one
way the notebooks write a table; a table that has a reference (:data:`advlib.reproducibility.COMPARED`)
is compared with it at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .. import paper, profiles, reproducibility
from ..store import write_csv, write_json


def _same(table: pd.DataFrame) -> pd.DataFrame:
    return table


@dataclass(frozen=True)
class Table:
    """One table: the ``notebook`` that writes it, ``what`` it holds, and ``publish`` (result -> the CSV)."""

    notebook: str
    what: str
    publish: Callable[[Any], Any] = _same
    kind: str = "csv"  # or "json"


#: File stem -> :class:`Table`, in notebook order.
TABLES: dict[str, Table] = {
    "table1_attack_success": Table("01_dataset", "Table 1: attacked images and successes per attack", paper.beside_table1),
    "table1_by_classifier": Table("01_dataset", "Table 1 in the paper's layout: images kept per attack, a column "
                                  "per classifier"),
    "table2_splits": Table("01_dataset", "Table 2: the splits (or the folds over photos)"),
    "table3_operation_effects": Table("02_operation_effects", "Table 3: % misclassified after each operation",
                                      paper.beside_table3),
    "table3_by_classifier": Table("02_operation_effects", "Table 3 as % misclassified, per classifier and pooled "
                                  "(classifier 'all', Fig. 4)"),
    "table4_detection_features": Table("03_detection", "Table 4: the feature detectors, out of fold", paper.beside_table4),
    "table5_detection_comparison": Table("03_detection", "Table 5: detectors compared, seen and unseen attacks",
                                         paper.beside_table5),
    "detection_rate_per_attack": Table("03_detection", "detection rate per attack at the calibrated threshold"),
    "detection_format_robustness": Table("03_detection", "flags on re-encoded images", paper.in_percent),
    "detection_fpr_investigation": Table("03_detection", "why normal photos look adversarial", paper.in_percent),
    "detector_svm_diff_all": Table("03_detection", "the saved all-38 detector's metadata", kind="json"),
    "detection_cost": Table("03_detection", "cheap detection: accuracy against classifier passes", paper.in_percent),
    "detection_shipped_nested": Table("03_detection", "the shipped detector's procedure, nested: each outer fold's "
                                      "choice and rates, and the pooled rates", paper.in_percent),
    "detector_cheap": Table("03_detection", "the shipped cheap detector's metadata", kind="json"),
    "subsets": Table("03_detection", "Tables 4-6 on the full-size and the ImageNet photos (notebook 04 adds Table 6)",
                     paper.in_percent),
    "paired_tests": Table("03_detection", "paired tests of the small-n claims (notebook 04 adds its own)"),
    "fig6_label_correction": Table("04_correction", "Fig. 6: label correction per attack"),
    "table6_image_correction": Table("04_correction", "Table 6: image correction", paper.beside_table6),
    "fig8_corrected_quality": Table("04_correction", "Fig. 8: PSNR and SSIM after correction"),
    "correction_pipeline": Table("04_correction", "detect, then correct"),
    "adaptive_surrogate_correlation": Table("05_adaptive", "the surrogate of the discrete features against the real ones",
                                            kind="json"),
    "table_adaptive": Table("05_adaptive", "adaptive attacks against every defence"),
    "table_adaptive_breaking": Table("05_adaptive", "where each defence breaks (by the intervals' lower bounds)"),
    "table_adaptive_masking": Table("05_adaptive", "gradient-masking checks: gradient-free and transfer attacks"),
    "table_adaptive_convergence": Table("05_adaptive", "convergence: steps and restarts"),
}


def path(name: str, params: dict[str, Any]) -> Path:
    """Where table ``name`` of :data:`TABLES` goes in a run: ``tables/<run>/<name>.<kind>``."""
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r} (known: {', '.join(TABLES)})")
    return profiles.out_dirs(params)["tables"] / f"{name}.{TABLES[name].kind}"


def write(name: str, result: Any, params: dict[str, Any]) -> Any:
    """Publish ``result`` as table ``name`` of the run of ``params`` (its :attr:`Table.publish`,
    written atomically) and, when the table has a reference, compare it
    (:func:`advlib.reproducibility.check`: the lines are printed; a strict run raises beyond
    the tolerance). Returns the published table."""
    out = path(name, params)  # KeyError naming the known tables
    spec = TABLES[name]
    table = spec.publish(result)
    if spec.kind == "json":
        write_json(table, out)
    else:
        write_csv(table, out)
    if name in reproducibility.COMPARED:
        print("\n".join(reproducibility.check(params, name)))
    return table


def update(name: str, result: pd.DataFrame, params: dict[str, Any], key: str = "table") -> pd.DataFrame:
    """Table ``name`` with the rows of ``result`` replacing the rows of the same ``key`` values
    already in the run's file (a table two notebooks write parts of: ``subsets``,
    ``paired_tests``); the new rows are published (:attr:`Table.publish`) first. Returns the file's table."""
    out = path(name, params)
    new = TABLES[name].publish(result)
    if out.exists():
        old = pd.read_csv(out)
        if key in old.columns and key in new.columns:
            old = old[~old[key].isin(set(new[key]))]
        new = paper.integer_counts(pd.concat([old, new], ignore_index=True))  # rows without a count: empty
    write_csv(new, out)
    return new
