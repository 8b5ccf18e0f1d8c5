"""A run's tables against the committed ones: one row per compared number, within a measured tolerance.

Every table a reader compares with the README (Table 1's counts, Table 3's percentages, Tables
4-5's accuracies, EERs and AUCs, label correction, Table 6) has a reference copy in
``tests/reference/<profile>/`` (for the demo: the committed ``tables/demo/`` files, kept equal
by a test). :func:`compare` matches a run's table with it row by row (:data:`COMPARED` names the
key columns and the compared columns of each table) and :func:`check` writes
``tables/<run>/reproducibility.csv``: table, row, column, ours, committed, difference,
allowed, within.

**Tolerances come from a measurement, not a guess** (:data:`MEASURED_DRIFT`, README
"Reproducibility"): the demo's notebook 01 and the smoke profile's five notebooks were run under
emulated CPUs (oneDNN / ATen / MKL / OpenBLAS instruction-set caps, 1 vs 2 threads, numerics
native) and the largest difference from the reference was recorded per table, in images (a
count, or a percentage of n images, moves by whole images) and in AUC. The allowed difference is
that measurement times :data:`MARGIN`, rounded up, and at least one image: for a count,
``allowed`` images; for a percentage of ``n`` images, ``100 * allowed / n`` points.

A difference beyond the tolerance is **reported, never fatal**, in ``make reproduce``: the run
goes on and its end summary names it. It fails the run only when strict
(:func:`strict`: ``ADVLIB_STRICT=1``, set by ``advlib reproduce --strict``, or a profile with
``strict_reference: true``, the smoke profile of ``make test``, where the reference is a
regression guard).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths, profiles
from .store import write_csv

#: ``ADVLIB_STRICT=1``: a difference beyond the tolerance raises (``advlib reproduce --strict``).
STRICT_ENV = "ADVLIB_STRICT"

#: Factor between the largest measured difference and the allowed one.
MARGIN = 1.5


@dataclass(frozen=True)
class Compared:
    """How one table is compared: its file stem, a title for the summary, the columns that
    identify a row, and the compared columns with their kind: ``count`` (images), ``pct`` (a
    percentage of the images counted by the column ``n_of[column]``) or ``auc`` (absolute)."""

    name: str
    title: str
    keys: tuple[str, ...]
    columns: dict[str, str]
    n_of: dict[str, str] = field(default_factory=dict)
    unit: str = "numbers"


#: The compared tables, in notebook order.
COMPARED: dict[str, Compared] = {c.name: c for c in [
    Compared("table1_attack_success", "Table 1", ("classifier", "attack"),
             {"attacked": "count", "success_raw": "count", "success_rounded": "count", "success_saved": "count"},
             unit="counts"),
    Compared("table3_operation_effects", "Table 3", ("classifier", "set", "op"),
             {"n": "count", "misclassified_pct": "pct"}, {"misclassified_pct": "n"}, unit="numbers"),
    Compared("table4_detection_features", "Table 4", ("detector", "group", "feature"),
             {"accuracy_pct": "pct", "auc": "auc"}, {"accuracy_pct": "n_images"}),
    Compared("table5_detection_comparison", "Table 5", ("scenario", "detector"),
             {"accuracy_pct": "pct", "eer_pct": "pct", "auc": "auc"},
             {"accuracy_pct": "n_images", "eer_pct": "n_images"}),
    Compared("fig6_label_correction", "Label correction (Fig. 6)", ("op_set", "type", "attack"),
             {"n": "count", "correct_pct": "pct"}, {"correct_pct": "n"}),
    Compared("table6_image_correction", "Table 6", ("method",),
             {"normal_pct": "pct", "adversarial_pct": "pct"},
             {"normal_pct": "n_normal", "adversarial_pct": "n_adversarial"}),
]}

#: The drift measurement every tolerance is derived from (README "Reproducibility"): one row per
#: profile, setting (an emulated or a real other CPU, a thread count; :func:`drift` of its tables
#: against the reference run's) and table: numbers compared, numbers that moved, the largest move
#: in images (a count, or a percentage of n images times n) and in AUC.
DRIFT_FILE = paths.ROOT / "tests" / "reference" / "drift.csv"

DRIFT_COLUMNS = ["profile", "setting", "table", "numbers", "moved", "max_images", "max_auc"]


def measured_drift(path: Path | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """profile -> table -> ``{"images": largest move in images, "auc": largest AUC move}`` over
    every setting of the drift measurement (:data:`DRIFT_FILE`); {} when there is none."""
    path = Path(path or DRIFT_FILE)
    if not path.exists():
        return {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (profile, table), g in pd.read_csv(path).groupby(["profile", "table"]):
        out.setdefault(profile, {})[table] = {"images": float(g["max_images"].max()),
                                               "auc": float(g["max_auc"].fillna(0).max())}
    return out


COLUMNS = ["table", "row", "column", "ours", "committed", "difference", "allowed", "within"]


def reference_dir(profile: str) -> Path:
    """``tests/reference/<profile>/``: the reference tables of a profile."""
    return paths.ROOT / "tests" / "reference" / profile


def allowed_images(profile: str, table: str) -> tuple[int, float]:
    """(images, AUC) a number of ``table`` may move in a run of ``profile``: the measured drift
    (:func:`measured_drift`, the demo's for an unmeasured profile) times :data:`MARGIN`, rounded
    up, at least 1 image and 0.01 AUC."""
    measured = measured_drift()
    drift = measured.get(profile, measured.get("demo", {})).get(table, {})
    images = max(1, math.ceil(MARGIN * drift.get("images", 1) - 1e-9))
    auc = max(0.01, math.ceil(100 * MARGIN * drift.get("auc", 0.0) - 1e-9) / 100)
    return images, auc


def _row_label(row: pd.Series, keys: tuple[str, ...]) -> str:
    return " / ".join(str(row[k]) for k in keys)


def compare(name: str, ours: pd.DataFrame, reference: pd.DataFrame, profile: str) -> pd.DataFrame:
    """One row per compared number of table ``name`` (:data:`COMPARED`): :data:`COLUMNS`. A row
    present in one table only is a difference that is never within the tolerance; a number
    that is missing (NaN) in both is within."""
    spec = COMPARED[name]
    images, auc = allowed_images(profile, name)
    keys = list(spec.keys)
    cols = [c for c in spec.columns if c in ours.columns or c in reference.columns]
    n_cols = sorted({spec.n_of[c] for c in cols if c in spec.n_of} - set(cols))
    take = lambda t: t[[c for c in keys + cols + n_cols if c in t.columns]].astype({k: str for k in keys if k in t})  # noqa: E731
    m = take(ours).merge(take(reference), on=keys, how="outer", suffixes=("_ours", "_ref"), indicator=True)
    rows = []
    for _, r in m.iterrows():
        label = _row_label(r, spec.keys)
        for c in cols:
            a, b = r.get(f"{c}_ours", np.nan), r.get(f"{c}_ref", np.nan)
            kind = spec.columns[c]
            n = np.nan
            if kind == "count":
                allowed = float(images)
                n = float(np.nanmax([a, b])) if a == a or b == b else np.nan
            elif kind == "pct":
                n = float(np.nanmax([float(r.get(f"{spec.n_of[c]}_ours", np.nan)),
                                     float(r.get(f"{spec.n_of[c]}_ref", np.nan))]))
                allowed = 100.0 * images / n if n == n and n > 0 else 0.0
            else:
                allowed = auc
            both_nan = a != a and b != b
            diff = 0.0 if both_nan else (abs(float(a) - float(b)) if a == a and b == b else np.nan)
            within = r["_merge"] == "both" and diff == diff and diff <= allowed + 1e-9
            rows.append({"table": name, "row": label, "column": c, "ours": a, "committed": b,
                         "difference": diff, "allowed": allowed, "within": bool(within), "n": n})
    return pd.DataFrame(rows, columns=COLUMNS + ["n"])


def drift(name: str, ours: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
    """How far table ``name`` of one run moved from the reference run's: numbers compared, numbers
    that moved, the largest move in images (a count's difference; a percentage's difference
    times its n / 100) and in AUC. A number present in one table only counts as moved, by its
    row's n images."""
    spec = COMPARED[name]
    rows = compare(name, ours, reference, "demo")
    images, auc, moved = 0.0, 0.0, 0
    for r in rows.itertuples():
        kind, d = spec.columns[r.column], r.difference
        if d != d:  # a row in one table only
            moved += 1
            images = max(images, r.n if r.n == r.n else 1.0)
            continue
        moved += int(d > 1e-9)
        if kind == "auc":
            auc = max(auc, d)
        else:
            images = max(images, d if kind == "count" else d * r.n / 100.0)
    return {"numbers": len(rows), "moved": moved, "max_images": round(float(images), 2), "max_auc": round(float(auc), 4)}


def strict(params: dict[str, Any] | None = None) -> bool:
    """Whether a difference beyond the tolerance fails the run: ``ADVLIB_STRICT`` (``1``/``0``)
    if set, else the profile's ``strict_reference``."""
    env = os.environ.get(STRICT_ENV)
    if env not in (None, ""):
        return env not in ("0", "false", "no")
    return bool((params or {}).get("strict_reference", False))


class DriftError(AssertionError):
    """A strict run's table differs from its reference beyond the tolerance."""


def summary_line(name: str, rows: pd.DataFrame) -> str:
    """``Table 1: 46 of 48 counts within tolerance; pgd success_saved differs by 3 (allowed 2)``."""
    spec = COMPARED[name]
    bad = rows[~rows["within"]]
    same = int((rows["difference"] == 0).sum())
    text = f"{spec.title}: {len(rows) - len(bad)} of {len(rows)} {spec.unit} within tolerance ({same} identical)"
    if len(bad):
        worst = bad.assign(excess=(bad["difference"] - bad["allowed"]).fillna(np.inf)).sort_values(
            "excess", ascending=False)
        parts = []
        for _, r in worst.head(3).iterrows():
            d = "missing" if r["difference"] != r["difference"] else f"differs by {r['difference']:.3g}"
            parts.append(f"{r['row']} {r['column']} {d} (allowed {r['allowed']:.3g})")
        text += "; " + "; ".join(parts) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
    return text


def check(params: dict[str, Any], names: list[str] | str | None = None, *, raise_on_drift: bool | None = None) -> list[str]:
    """Compare the run's tables ``names`` (default: every table of :data:`COMPARED` the run has
    written) with the profile's references; update ``tables/<run>/reproducibility.csv`` (the
    rows of these tables are replaced, the others kept) and return one summary line per table
    (:func:`summary_line`). Raises :class:`DriftError` when a number is beyond its tolerance and
    the run is strict (``raise_on_drift``, default :func:`strict`). A run whose parameters differ
    from its profile's file, or a profile without references, is compared with nothing (one line
    says so)."""
    run, profile = profiles.run_name(params), params["profile"]
    tables = profiles.out_dirs(params)["tables"]
    if isinstance(names, str):
        names = [names]
    names = [n for n in (names or COMPARED) if (tables / f"{n}.csv").exists()]
    if run != profile:
        return [f"run {run}: its parameters differ from params/{profile}.yaml, nothing to compare with"]
    ref = reference_dir(profile)
    if not ref.exists():
        return [f"profile {profile}: no reference tables ({ref}), nothing to compare with"]

    out = tables / "reproducibility.csv"
    kept = pd.read_csv(out)[COLUMNS] if out.exists() else pd.DataFrame(columns=COLUMNS)
    kept = kept[~kept["table"].isin(names)]
    lines, parts, bad = [], [kept], []
    for n in names:
        if not (ref / f"{n}.csv").exists():
            lines.append(f"{COMPARED[n].title}: no reference ({ref / (n + '.csv')})")
            continue
        rows = compare(n, pd.read_csv(tables / f"{n}.csv"), pd.read_csv(ref / f"{n}.csv"), profile)
        parts.append(rows[COLUMNS])
        lines.append(summary_line(n, rows))
        if not rows["within"].all():
            bad.append(lines[-1])
    order = {n: i for i, n in enumerate(COMPARED)}
    report = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else kept
    report = report.sort_values("table", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    write_csv(report, out)
    if (strict(params) if raise_on_drift is None else raise_on_drift) and bad:
        raise DriftError("beyond the tolerance of the reference tables (tests/reference/"
                         f"{profile}/; README 'Reproducibility'):\n  " + "\n  ".join(bad)
                         + f"\n(details: {out}; if a code change moved the numbers on purpose, "
                         f"`python -m advlib.reproducibility update-reference {profile}`)")
    return lines


def update_reference(profile: str, names: list[str] | None = None) -> list[Path]:
    """Copy the profile's tables (``tables/<profile>/``, from a run with the profile's own
    parameters) into ``tests/reference/<profile>/``: after a change that moves numbers on
    purpose. Returns the files written."""
    src = paths.ROOT / "tables" / profile
    dst = reference_dir(profile)
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for n in names or COMPARED:
        if (src / f"{n}.csv").exists():
            shutil.copyfile(src / f"{n}.csv", dst / f"{n}.csv")
            written.append(dst / f"{n}.csv")
    return written


def record_drift(profile: str, setting: str, tables: Path, reference: Path, path: Path | None = None) -> pd.DataFrame:
    """Add the drift of one setting to the measurement (:data:`DRIFT_FILE`): :func:`drift` of each
    compared table in folder ``tables`` (a run under that setting: an emulated CPU, a thread
    count, another machine) against the same table in ``reference`` (the reference run's folder).
    A row already there for (profile, setting, table) is replaced. Returns the new rows."""
    path = Path(path or DRIFT_FILE)
    rows = []
    for name in COMPARED:
        a, b = Path(tables) / f"{name}.csv", Path(reference) / f"{name}.csv"
        if a.exists() and b.exists():
            rows.append({"profile": profile, "setting": setting, "table": name,
                         **drift(name, pd.read_csv(a), pd.read_csv(b))})
    new = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    old = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=DRIFT_COLUMNS)
    keep = ~old.set_index(["profile", "setting", "table"]).index.isin(new.set_index(["profile", "setting", "table"]).index)
    out = pd.concat([old[keep], new], ignore_index=True) if len(old) else new
    write_csv(out, path)
    return new


def main(argv: list[str] | None = None) -> int:
    """``python -m advlib.reproducibility check PROFILE`` | ``update-reference PROFILE`` |
    ``record-drift PROFILE SETTING TABLES_DIR REFERENCE_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["record-drift"] and len(args) == 5:
        new = record_drift(args[1], args[2], Path(args[3]), Path(args[4]))
        print(new.to_string(index=False) if len(new) else "no compared table in both folders")
        return 0
    if len(args) != 2 or args[0] not in ("check", "update-reference"):
        print("usage: python -m advlib.reproducibility {check,update-reference} PROFILE | record-drift PROFILE "
              "SETTING TABLES_DIR REFERENCE_DIR", file=sys.stderr)
        return 2
    if args[0] == "update-reference":
        for p in update_reference(args[1]):
            print(f"wrote {p}")
        return 0
    params = profiles.load_profile(args[1], check=False)
    try:
        print("\n".join(check(params)))
    except DriftError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
