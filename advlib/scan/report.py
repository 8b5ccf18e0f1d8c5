"""The scan report: its columns, reading an earlier one (resume), atomic rewrites, the closing summary."""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import UsageError

#: Report columns, in order. ``detector``: a fingerprint of the detector's ``detector.json``, so
#: a resumed scan reuses only rows of the same detector.
COLUMNS = ("path", "sha256", "top1", "top1_name", "score", "flag", "error")
CORRECT_COLUMNS = ("voted_label", "voted_name", "corrected_path", "corrected_qf")
DETECTOR_COLUMN = "detector"


def report_columns(correct: bool) -> list[str]:
    """The report's columns: :data:`COLUMNS`, :data:`CORRECT_COLUMNS` with ``--correct``, ``detector``."""
    return [*COLUMNS, *(CORRECT_COLUMNS if correct else ()), DETECTOR_COLUMN]


def read_report(path: str | os.PathLike, columns: Sequence[str]) -> dict[str, dict[str, str]]:
    """Rows of an earlier report at ``path`` by file path ({} when there is none, or when its
    columns differ from ``columns``: the scan then starts afresh). :class:`UsageError` when the
    file is not a scan report (no path and sha256 columns), so that it is not overwritten."""
    p = Path(path)
    if not p.exists():
        return {}
    try:
        with open(p, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"--out {p}: cannot read the existing report ({e}); choose another --out") from e
    if not {"path", "sha256"} <= set(header):
        raise UsageError(f"--out {p} exists and is not an advlib scan report (no path and sha256 columns); "
                         "choose another --out")
    if list(header) != list(columns):
        print(f"{p}: written with other options (columns {', '.join(header)}): scanning every file again",
              file=sys.stderr)
        return {}
    return {r["path"]: r for r in rows}


def write_report(rows: Iterable[dict[str, Any]], path: str | os.PathLike, columns: Sequence[str]) -> Path:
    """Write the report CSV atomically (:func:`advlib.store.atomic_write_bytes`)."""
    from ..store import atomic_write_bytes

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows({c: r.get(c, "") for c in columns} for r in rows)
    return atomic_write_bytes(path, buf.getvalue().encode())


def summary(rows: Sequence[dict[str, Any]], out: str | os.PathLike, threshold: float, skipped: int,
            seconds: float, correct_dir: Path | None) -> str:
    """The closing lines: files, flagged, unreadable, skipped (already in the report), time."""
    flagged = [r for r in rows if str(r.get("flag")) == "True"]
    bad = [r for r in rows if r.get("error")]
    lines = [f"{len(rows)} file(s): {len(flagged)} flagged as adversarial (score >= {threshold:.3g}), "
             f"{len(bad)} unreadable, {skipped} already in the report (skipped); {seconds:.1f} s",
             f"report: {out}"]
    if correct_dir is not None:
        lines.append(f"corrected copies of the flagged files: {correct_dir}")
    lines += [f"  unreadable: {r['path']}" for r in bad[:10]] + (["  ..."] if len(bad) > 10 else [])
    return "\n".join(lines)
