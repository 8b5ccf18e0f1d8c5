"""The ``advlib scan`` command line (:func:`main`); ``--help`` loads no torch."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from ..runtime import THREADS_ENV, resolve_threads, torch_threads
from . import UsageError
from .files import check_writable, find_images
from .help import scan_parser
from .jobs import run_jobs, usable_cpus
from .merge import merge_reports, shard_report
from .report import FORMATS, format_of, summary, write_report
from .scanner import Interrupted, load_scanner, scan

#: OpenMP's waiting policy the command sets before torch starts (unless ``OMP_WAIT_POLICY`` is set):
#: waiting threads sleep. With OpenMP's default they spin, and 2 threads on 2 shared cores scanned
#: 0.19 img/s beside another torch job against 2.96 img/s passive (BENCHMARKS.md, ``scan threads``).
WAIT_POLICY = "PASSIVE"


def passive_openmp() -> bool:
    """Set ``OMP_WAIT_POLICY`` to :data:`WAIT_POLICY` unless set or torch is already loaded (then
    too late: OpenMP read it); whether waiting threads sleep in this process."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == WAIT_POLICY


def scan_threads(option: int | None, passive: bool) -> tuple[int, bool]:
    """(torch threads, whether they were asked for): ``--threads``, else ``$ADVLIB_THREADS``
    (0 = one per CPU this process may use), else one per CPU when OpenMP's waiting threads sleep
    (``passive``), else 1 (BENCHMARKS.md, ``scan threads``). :class:`UsageError` for a bad value."""
    if option is None and not os.environ.get(THREADS_ENV):
        return (usable_cpus() if passive else 1), False
    if option is not None and option < 0:
        raise UsageError(f"--threads must be >= 0 (0 = one per CPU), got {option}")
    try:
        n = option if option is not None else resolve_threads(None)
    except ValueError as e:
        raise UsageError(str(e)) from e
    return (n or usable_cpus()), True


def _check(args: argparse.Namespace) -> None:
    """:class:`UsageError` for bad option values, before any work."""
    if args.batch_size < 0:
        raise UsageError(f"--batch-size must be >= 0 (0 = auto), got {args.batch_size}")
    if args.chunk < 0:
        raise UsageError(f"--chunk must be >= 0 (0 = the batch size), got {args.chunk}")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UsageError(f"--threshold must be in [0, 1] (a probability), got {args.threshold}")
    if args.threshold is not None and args.fpr is not None:
        raise UsageError("--threshold and --fpr both set a threshold: give one")
    if (args.fpr is None) != (args.calibration is None):
        raise UsageError("--fpr and --calibration DIR go together (the threshold is set at that false-positive "
                         "rate on your normal images in DIR)")
    if args.fpr is not None and not 0 < args.fpr < 1:
        raise UsageError(f"--fpr must be in (0, 1), e.g. 0.05, got {args.fpr}")
    if args.calibration is not None and not os.path.isdir(args.calibration):
        raise UsageError(f"--calibration {args.calibration}: not a folder")
    if args.shards < 1:
        raise UsageError(f"--shards must be >= 1, got {args.shards}")
    if args.shard is not None and not 0 <= args.shard < args.shards:
        raise UsageError(f"--shard must be in 0..{args.shards - 1} (--shards {args.shards}), got {args.shard}")
    if args.shard is not None and args.executor:
        raise UsageError("--shard runs one shard here; --executor runs all --shards as jobs: give one")
    if not args.merge and not args.paths:
        raise UsageError("give the PATHs to scan (or --merge REPORT...)")
    suffix = Path(args.out).suffix.lower().lstrip(".")
    if suffix in FORMATS and suffix != args.format:
        raise UsageError(f"--out {args.out}: a .{suffix} name for a --format {args.format} report")


def _outputs(args: argparse.Namespace) -> str:
    """The report this process writes (a shard's beside ``--out``), after checking that it and
    ``--correct`` and ``--plot`` can be written (:class:`UsageError` otherwise)."""
    out = str(shard_report(args.out, args.shard, args.shards)) if args.shard is not None else args.out
    check_writable(out, "--out")
    if args.correct:
        check_writable(args.correct, "--correct", folder=True)
    if args.plot:
        check_writable(args.plot, "--plot")
    return out


def _finish(rows, out: str, threshold: float, threshold_text: str, skipped: int, seconds: float, args,
            left_out: str = "", extra: Sequence[str] = ()) -> int:
    """Print the summary, write the plot; exit status 0, or 1 when a row has an error or ``extra`` problems."""
    print(summary(rows, out, threshold_text, skipped, seconds, Path(args.correct) if args.correct else None, left_out))
    for line in extra:
        print(line)
    if args.plot:
        from .plot import plot_scores  # matplotlib: only with --plot

        print(f"score histogram: {plot_scores(rows, threshold, args.plot, title=os.path.basename(out))}")
    return 1 if extra or any(r.get("error") for r in rows) else 0


def _merge(args: argparse.Namespace) -> int:
    """``--merge REPORT... --out M`` (with PATHs: checked against their files)."""
    t0 = time.time()
    expected = find_images(args.paths, [args.out]).paths if args.paths else None
    m = merge_reports(args.merge, expected)
    write_report(m.rows, args.out, m.columns, args.format)
    thr = m.threshold if m.threshold is not None else float("nan")
    notes = [f"merged {len(args.merge)} report(s)"] + m.notes
    print("; ".join(notes), file=sys.stderr)
    return _finish(m.rows, args.out, thr, f"{thr:.3g}", 0, time.time() - t0, args,
                   extra=[f"problem: {p}" for p in m.problems])


def main(argv: Sequence[str]) -> int:
    """``advlib scan``: see :func:`advlib.scan.help.scan_parser`. Exit status 0, 1 (unreadable
    files, failed jobs, an incomplete merge), 2 (bad arguments) or 130 (interrupted)."""
    args = scan_parser().parse_args(argv)
    args.out = args.out or f"scan_report.{args.format or 'csv'}"
    args.format = format_of(args.out, args.format)
    out = args.out
    try:
        _check(args)
        args.threads, args.threads_given = scan_threads(args.threads, passive_openmp())
        out = _outputs(args)
        if args.merge:
            return _merge(args)
        found = find_images(args.paths, [out, args.out] + ([args.correct] if args.correct else []))
        if not found.paths:
            left = found.left_out_text()
            raise UsageError(f"no image files in {', '.join(args.paths)}" + (f" (left out: {left})" if left else ""))
        if args.executor:
            return _jobs(args, found)
        return _scan(args, found, out)
    except UsageError as e:
        print(f"advlib scan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        saved = e.saved if isinstance(e, Interrupted) else 0
        print(f"\ninterrupted: {out} holds {saved} file(s); rerun the same command to resume" if saved else
              "\ninterrupted before any file was scanned: no report written", file=sys.stderr)
        return 130


def _scan(args: argparse.Namespace, found, out: str) -> int:
    """One process: this machine scans every file (or ``--shard`` K's) into ``out``."""
    with torch_threads(args.threads):
        scanner = load_scanner(args.classifier, args.detector, args.device, args.batch_size, args.correct,
                               args.threshold, args.fpr, args.calibration)
        t0 = time.time()
        shard = (args.shard, args.shards) if args.shard is not None else None
        rows, skipped = scan(found, scanner, out, args.format, args.chunk, progress=not args.quiet, shard=shard)
    text = f"{scanner.threshold:.3g}, {scanner.threshold_note}"
    return _finish(rows, out, scanner.threshold, text, skipped, time.time() - t0, args, found.left_out_text())


def _jobs(args: argparse.Namespace, found) -> int:
    """``--executor``: the shards as jobs, then their reports merged into ``--out``."""
    t0 = time.time()
    try:
        reports, failed = run_jobs(args)
    except KeyboardInterrupt:
        where = ("the local jobs were interrupted too and saved their reports" if args.executor == "local" else
                 "the SLURM jobs go on (scancel them, or wait)")
        print(f"\ninterrupted: {where}; rerun the same command to resume each shard from "
              f"{shard_report(args.out, 'K', args.shards)} and merge", file=sys.stderr)
        return 130
    reports = [r for r in reports if r.exists()]
    if not reports:
        print("\n".join(f"problem: {p}" for p in failed) or "problem: no shard wrote a report", file=sys.stderr)
        return 1
    m = merge_reports(reports, found.paths)
    write_report(m.rows, args.out, m.columns, args.format)
    thr = m.threshold if m.threshold is not None else float("nan")
    return _finish(m.rows, args.out, thr, f"{thr:.3g}", 0, time.time() - t0, args, found.left_out_text(),
                   [f"problem: {p}" for p in [*failed, *m.problems]])
