"""The scan report: its columns, CSV and JSON (the same columns), reading an earlier one (resume),
atomic rewrites, the closing summary."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import UsageError

#: Report columns, in order. Values are kept as the CSV writes them (strings; "" when empty).
COLUMNS = ("path", "sha256", "top1", "top1_name", "top1_prob", "score", "threshold", "flag", "warning", "error")
CORRECT_COLUMNS = ("voted_label", "voted_name", "corrected_path", "corrected_qf")
#: A fingerprint of the detector's ``detector.json``, so that a resumed scan reuses only rows of the same detector.
DETECTOR_COLUMN = "detector"

#: Report formats: CSV, or JSON (a list of one object per row, the same columns; numbers and
#: booleans typed, empty values null).
FORMATS = ("csv", "json")
_INT = {"top1", "voted_label", "corrected_qf"}
_FLOAT = {"top1_prob", "score", "threshold"}
_BOOL = {"flag"}


def report_columns(correct: bool) -> list[str]:
    """The report's columns: :data:`COLUMNS`, :data:`CORRECT_COLUMNS` with ``--correct``, ``detector``."""
    return [*COLUMNS, *(CORRECT_COLUMNS if correct else ()), DETECTOR_COLUMN]


def format_of(path: str | os.PathLike, fmt: str | None = None) -> str:
    """``fmt`` when given, else ``json`` for a ``.json`` path, else ``csv``."""
    return fmt or ("json" if Path(path).suffix.lower() == ".json" else "csv")


def _typed(column: str, value: Any) -> Any:
    """A report value (string) as JSON writes it."""
    if value == "" or value is None:
        return None
    if column in _INT:
        return int(value)
    if column in _FLOAT:
        return float(value)
    if column in _BOOL:
        return str(value) == "True"
    return str(value)


def _untyped(value: Any) -> str:
    """A JSON value back as the report keeps it (the CSV's text: ``repr`` of floats, True/False)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def load_rows(path: str | os.PathLike, fmt: str | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a report file, CSV or JSON (values as strings). :class:`UsageError`
    naming the file when it cannot be read or is not a scan report (no path and sha256 columns)."""
    p, fmt = Path(path), format_of(path, fmt)
    try:
        if fmt == "json":
            data = json.loads(p.read_text())
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise UsageError(f"{p}: not an advlib scan report (JSON: not a list of rows)")
            header = list(data[0]) if data else ["path", "sha256"]
            rows = [{k: _untyped(v) for k, v in r.items()} for r in data]
        else:
            with open(p, newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as e:
        if isinstance(e, UsageError):
            raise
        raise UsageError(f"{p}: cannot read the report ({type(e).__name__}: {e})") from e
    if not {"path", "sha256"} <= set(header):
        raise UsageError(f"{p}: not an advlib scan report (no path and sha256 columns)")
    return header, rows


def read_report(path: str | os.PathLike, columns: Sequence[str], fmt: str | None = None) -> dict[str, dict[str, str]]:
    """Rows of an earlier report at ``path`` by file path ({} when there is none, or when its
    columns differ from ``columns``: the scan then starts afresh). :class:`UsageError` when the
    file is not a scan report, so that it is not overwritten."""
    if not Path(path).exists():
        return {}
    try:
        header, rows = load_rows(path, fmt)
    except UsageError as e:
        raise UsageError(f"--out {e}; choose another --out") from e
    if rows and list(header) != list(columns):
        print(f"{path}: written with other options (columns {', '.join(header)}): scanning every file again",
              file=sys.stderr)
        return {}
    return {r["path"]: r for r in rows}


def write_report(rows: Iterable[dict[str, Any]], path: str | os.PathLike, columns: Sequence[str],
                 fmt: str | None = None) -> Path:
    """Write the report atomically (:func:`advlib.store.atomic_write_bytes`), CSV or JSON."""
    from ..store import atomic_write_bytes  # torch: not for --help

    if format_of(path, fmt) == "json":
        data = [{c: _typed(c, r.get(c, "")) for c in columns} for r in rows]
        return atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows({c: r.get(c, "") for c in columns} for r in rows)
    return atomic_write_bytes(path, buf.getvalue().encode())


def summary(rows: Sequence[dict[str, Any]], out: str | os.PathLike, threshold: str, skipped: int,
            seconds: float, correct_dir: Path | None = None, left_out: str = "") -> str:
    """The closing lines: files, flagged (``threshold``: the threshold and where it comes
    from), unreadable, with a warning, reused from the report, time; what the folders left out."""
    flagged = sum(str(r.get("flag")) == "True" for r in rows)
    bad = [r for r in rows if r.get("error")]
    warned = sum(bool(r.get("warning")) for r in rows)
    lines = [f"{len(rows)} file(s): {flagged} flagged as adversarial (score >= {threshold}), {len(bad)} unreadable, "
             f"{warned} with a warning, {skipped} already in the report (skipped); {seconds:.1f} s",
             f"report: {out}"]
    if left_out:
        lines.append(f"left out of the folders: {left_out}")
    if correct_dir is not None:
        lines.append(f"corrected copies of the flagged files: {correct_dir}")
    lines += [f"  unreadable: {r['error']}" for r in bad[:10]] + (["  ..."] if len(bad) > 10 else [])
    return "\n".join(lines)
