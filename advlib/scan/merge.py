"""``advlib scan --merge``: shard reports into one, checked (same columns, detector and threshold;
duplicates, missing shards and, given the scanned PATHs, missing files reported)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import UsageError
from .report import DETECTOR_COLUMN, load_rows

#: How a shard's report is named beside the merged one: ``report.shard-3-of-8.csv``.
SHARD_NAME = re.compile(r"\.shard-(\d+)-of-(\d+)$")


def shard_report(out: str | os.PathLike, shard: int | str, shards: int) -> Path:
    """The report of shard ``shard`` of ``shards`` beside the merged report ``out``:
    ``<stem>.shard-<shard>-of-<shards><suffix>``."""
    p = Path(out)
    return p.with_name(f"{p.stem}.shard-{shard}-of-{shards}{p.suffix}")


@dataclass
class Merged:
    """The merged report: ``columns``, ``rows`` (in the order of the PATHs' files when given,
    else sorted by path), and ``problems``, one line each (missing shards or files,
    conflicting duplicates): a merge with problems exits 1."""

    columns: list[str]
    rows: list[dict[str, str]]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def threshold(self) -> float | None:
        """The threshold of the rows (one value: :func:`merge_reports` checks it), None if none."""
        return next((float(r["threshold"]) for r in self.rows if r.get("threshold")), None)


def _sample(paths: Sequence[str], n: int = 5) -> str:
    return ", ".join(paths[:n]) + (f" and {len(paths) - n} more" if len(paths) > n else "")


def merge_reports(reports: Sequence[str | os.PathLike], expected: Sequence[str] | None = None) -> Merged:
    """Merge shard reports (CSV or JSON, by suffix). :class:`UsageError` naming the report when
    they disagree on the columns, the detector or the threshold. Reported in ``problems``:
    shards missing among ``<out>.shard-K-of-N`` names, a path in two reports with different rows
    (the first report's is kept), and with ``expected`` (the files the scan of the PATHs lists
    now) files no report holds; in ``notes``: identical duplicates, rows of files not expected."""
    if not reports:
        raise UsageError("--merge: name the shard reports to merge")
    columns: list[str] | None = None
    seen: dict[str, tuple[str, dict[str, str]]] = {}
    detectors: dict[str, str] = {}
    thresholds: dict[str, str] = {}
    conflicts, same, shard_ids = [], 0, {}
    for report in reports:
        header, rows = load_rows(report)
        if not rows:
            header = columns or header
        if columns is None:
            columns = header
        elif header != columns:
            raise UsageError(f"--merge {report}: other columns than {reports[0]} ({', '.join(header)} vs "
                             f"{', '.join(columns)}): written with other options")
        for r in rows:
            for key, values in ((DETECTOR_COLUMN, detectors), ("threshold", thresholds)):
                if r.get(key):
                    values.setdefault(r[key], str(report))
            old = seen.get(r["path"])
            if old is None:
                seen[r["path"]] = (str(report), r)
            elif old[1] == r:
                same += 1
            else:
                conflicts.append(r["path"])
        m = SHARD_NAME.search(Path(report).stem)
        if m:
            shard_ids.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    for key, values in (("detector", detectors), ("threshold", thresholds)):
        if len(values) > 1:
            raise UsageError(f"--merge: the reports disagree on the {key} ("
                             + "; ".join(f"{v} in {r}" for v, r in values.items()) + ")")
    m = Merged(list(columns or []), [])
    if len(shard_ids) > 1:
        raise UsageError(f"--merge: shard reports of different shard counts ({', '.join(map(str, sorted(shard_ids)))})")
    for n, present in shard_ids.items():
        missing = sorted(set(range(n)) - present)
        if missing:
            m.problems.append(f"shard report(s) missing: {_sample([str(k) for k in missing])} of {n}")
    if conflicts:
        m.problems.append(f"{len(conflicts)} file(s) in two reports with different rows (the first kept): "
                          f"{_sample(conflicts)}")
    if same:
        m.notes.append(f"{same} duplicate row(s), identical, merged")
    if expected is not None:
        want = set(expected)
        lost = [p for p in expected if p not in seen]
        extra = sorted(p for p in seen if p not in want)
        if lost:
            m.problems.append(f"{len(lost)} file(s) of the PATHs in no report: {_sample(lost)}")
        if extra:
            m.notes.append(f"{len(extra)} row(s) of files the PATHs no longer list (kept): {_sample(extra)}")
        order = [p for p in expected if p in seen] + extra
    else:
        order = sorted(seen)
    m.rows = [seen[p][1] for p in order]
    return m
