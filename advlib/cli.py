"""The ``advlib`` command line (also ``python -m advlib``): one way to do each thing.

- ``advlib scan PATH...``: find adversarial images in files and folders with a detector (the one
  shipped with advlib for the classifier, or ``--detector DIR``), one CSV row per file,
  optionally with corrected copies (the paper's heuristic JPEG, Sect. 5.2);
- ``advlib reproduce [PROFILE]``: the five notebooks on a profile (:mod:`advlib.run`);
- ``advlib check-profile FILE_OR_NAME``: validate a profile and print its parameters;
- ``advlib bench ...``: the speed figures (:mod:`advlib.bench`).

:func:`main` takes the arguments and returns the exit status (0 fine, 1 some files unreadable
or a notebook failed, 2 bad arguments); it never calls ``sys.exit``. ``--help`` loads no torch.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

#: Detectors shipped inside the package, one folder per classifier: the same folder as
#: :data:`advlib.detector.PRETRAINED_DIR` (not imported from there: that would load torch for ``--help``).
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_CLASSIFIER = "efficientnet_lite0"
DEFAULT_REPORT = "scan_report.csv"
#: Files read and classified together; the report is rewritten (atomically) after each batch.
DEFAULT_CHUNK = 32

#: Report columns, in order. ``detector``: a fingerprint of the detector's ``detector.json``, so
#: a resumed scan reuses only rows of the same detector.
COLUMNS = ("path", "sha256", "top1", "top1_name", "score", "flag", "error")
CORRECT_COLUMNS = ("voted_label", "voted_name", "corrected_path", "corrected_qf")
DETECTOR_COLUMN = "detector"


class UsageError(ValueError):
    """Bad arguments or missing inputs of a command: exit status 2, the message names the culprit."""


# =========================================================================== shipped detectors (no torch)

def shipped_detectors() -> dict[str, dict[str, Any]]:
    """classifier name -> the ``meta`` of the detector shipped for it (``advlib/pretrained/<name>/
    detector.json``, read as JSON: no torch). Unreadable files are left out."""
    out = {}
    for f in sorted(PRETRAINED_DIR.glob("*/detector.json")):
        try:
            meta = json.loads(f.read_text()).get("meta", {})
        except (OSError, ValueError, AttributeError):
            continue
        out[f.parent.name] = meta if isinstance(meta, dict) else {}
    return out


def _number(where: Any, key: str) -> float | None:
    """``where[key]`` as a float when ``where`` is a mapping holding a number there, else None."""
    v = where.get(key) if isinstance(where, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def describe_shipped(name: str, meta: dict[str, Any]) -> str:
    """One paragraph on a shipped detector: operations, feature, estimator, threshold, and the
    out-of-fold false-positive and detection rates its metadata states (tolerant: what is
    missing is left out, or said to be missing)."""
    ops = meta.get("ops") if isinstance(meta.get("ops"), list) else None
    parts = [f"{name}: {meta.get('feature', '?')} features"]
    passes = meta.get("passes", 1 + len(ops) if ops is not None else None)
    if ops is not None:
        parts[0] += f" of {len(ops)} operation(s)"
    if isinstance(passes, int):
        parts[0] += f" ({passes} classifier passes per image)"
    if meta.get("estimator"):
        parts.append(f"estimator {meta['estimator']}")
    thr = meta.get("threshold")
    target = _number(meta, "target_fpr") or _number(meta, "calibrated_fpr_target")
    if isinstance(thr, (int, float)):
        parts.append(f"threshold {thr:.3g}" + (f" (calibrated to {target:.0%} false positives)" if target else ""))
    text = ", ".join(parts) + "."
    oof = meta.get("oof") if isinstance(meta.get("oof"), dict) else {}
    # the rates at the shipped (calibrated) threshold, as advlib.experiments.final_feature_detector writes them
    fpr, rate = _number(oof, "fpr_calibrated"), _number(oof, "detection_rate_calibrated")
    if fpr is None and rate is None:
        return text + " Its metadata states no out-of-fold rates."
    how = ", ".join(str(v) for v in (meta.get("protocol"),
                                     f"{oof['n_images']} images" if "n_images" in oof else None,
                                     f"{oof['n_photos']} photos" if "n_photos" in oof else None) if v)
    rates = [f"false-positive rate {fpr:.1%} on normal photos" if fpr is not None else None,
             f"detection rate {rate:.1%} on adversarial images" if rate is not None else None]
    at5 = _number(oof, "tpr_at_5fpr")
    extra = f" (detection rate {at5:.1%} at 5% false positives on the pooled out-of-fold scores)" if at5 is not None else ""
    return text + f" Out of fold{' (' + how + ')' if how else ''}: " + ", ".join(r for r in rates if r) + extra + \
        ". Expect about these rates on photos like its training photos."


def _scan_description() -> str:
    shipped = shipped_detectors()
    text = ("Scan image files and folders (recursively) for adversarial images. Each image is prepared as "
            "advlib.data.load_image does: 224x224 files as they are (adversarial files keep their noise), "
            "others resized to 256 and centre-cropped to 224. The detector is the paper's (Sect. 4): the "
            "classifier's outputs (its top-5 labels, or the probability of its top-1 label and the shift of its "
            "softmax vector) before and after image processing operations, as features of a trained "
            "estimator; its score is P(adversarial).")
    paras = [textwrap.fill(text, 100)]
    if shipped:
        paras.append("Shipped detectors (used unless --detector names another):")
        paras += [textwrap.fill(describe_shipped(n, m), 100, initial_indent="  ", subsequent_indent="    ")
                  for n, m in shipped.items()]
    else:
        paras.append(textwrap.fill(
            f"No detector ships with this install yet ({PRETRAINED_DIR} holds none; `make reproduce` writes "
            "the one for efficientnet_lite0): pass --detector DIR, a folder written by advlib.Detector.save().",
            100))
    return "\n\n".join(paras)


_SCAN_EPILOG = """\
report columns: path, sha256 (of the file's bytes), top1, top1_name (the classifier's top-1 ImageNet
  label and its name), score (P(adversarial), full precision), flag (score >= the detector's
  threshold), error (why the file could not be read; empty when fine); with --correct: voted_label,
  voted_name (label correction, Sect. 5.1), corrected_path, corrected_qf (the heuristic JPEG,
  Sect. 5.2, quality chosen with strategy 'min'); detector (fingerprint of the detector used).
--correct corrects flagged files only: their corrected copy is the prepared 224x224 image saved as
  JPEG at the chosen quality under OUTDIR, mirroring the file's path (JPEG names kept, other names
  get '.jpg' appended); unflagged rows leave the correction columns empty.
folders: files with an image suffix (.jpg .jpeg .png .bmp .tif .tiff .webp .ppm), hidden files and
  folders skipped, in sorted order; files named on the command line are always read.
resume: the report is rewritten atomically after each batch; rerunning the same command skips files
  already in it with the same path, SHA-256 and detector.
exit status: 0 all files read, 1 some could not be read (see the error column), 2 bad arguments."""


# =========================================================================== scan: files and report

def find_images(paths: Sequence[str], exclude: Iterable[str | os.PathLike] = ()) -> list[str]:
    """The files to scan, in a fixed order: each PATH in turn, a folder's image files
    (suffixes of :data:`advlib.data.IMAGE_SUFFIXES`, hidden files and folders skipped) sorted by
    path, recursively. Paths are normalised (``os.path.normpath``), duplicates dropped; files
    under ``exclude`` (the report, the corrected copies) are left out. :class:`UsageError` names
    a PATH that does not exist."""
    from .data import image_files

    skip = [Path(e).resolve() for e in exclude]
    found: dict[str, None] = {}
    for p in paths:
        if not os.path.exists(p):
            raise UsageError(f"no such file or folder: {p}")
        files = image_files(p) if os.path.isdir(p) else [p]
        for f in files:
            f = os.path.normpath(f)
            r = Path(f).resolve()
            if not any(r == s or s in r.parents for s in skip):
                found.setdefault(f, None)
    return list(found)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    from .store import atomic_write_bytes

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows({c: r.get(c, "") for c in columns} for r in rows)
    return atomic_write_bytes(path, buf.getvalue().encode())


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names by label index (torchvision's list, the label order of
    every classifier of :data:`advlib.models.CLASSIFIERS`)."""
    from torchvision.models import get_model_weights

    return list(get_model_weights("resnet50")["IMAGENET1K_V1"].meta["categories"])


def corrected_name(path: str) -> Path:
    """Where the corrected copy of report path ``path`` goes under OUTDIR: the path itself when
    relative (without ``..``), else its absolute path less the root; JPEG names are kept, others
    get ``.jpg`` appended (``a.png`` -> ``a.png.jpg``), so two files never share a copy."""
    p = Path(path)
    if p.is_absolute() or ".." in p.parts:
        p = Path(*Path(os.path.abspath(p)).parts[1:])
    return p if p.suffix.lower() in (".jpg", ".jpeg") else p.with_name(p.name + ".jpg")


# =========================================================================== scan: detection

@dataclass
class Scanner:
    """What a scan needs: the detector (and its classifier), its fingerprint, the class names,
    and where corrected copies go (None: no correction)."""

    detector: Any
    detector_id: str
    names: list[str]
    correct_dir: Path | None = None

    def _name(self, label: int) -> str:
        return self.names[label] if 0 <= label < len(self.names) else ""

    def read(self, paths: Sequence[str]) -> tuple[list[str], list, dict[str, str]]:
        """Read ``paths`` as :func:`advlib.data.load_image` does: (paths read, their uint8
        (3, 224, 224) images, {path: error message} of the others)."""
        from .data import load_image

        ok, images, errors = [], [], {}
        for p in paths:
            try:
                images.append(load_image(p))
                ok.append(p)
            except Exception as e:  # any unreadable file (truncated, not an image, bomb...) is a row, not a crash
                errors[p] = str(e) if str(e).startswith(str(p)) else f"{p}: {type(e).__name__}: {e}"
        return ok, images, errors

    def rows(self, files: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """Report rows of ``files`` ((path, sha256) pairs), in order: top-1, score, flag, and with
        correction the voted label and corrected copy of flagged files; error rows for files
        that cannot be read."""
        import torch

        sha = dict(files)
        ok, images, errors = self.read([p for p, _ in files])
        out = {p: {"path": p, "sha256": sha[p], "error": e, DETECTOR_COLUMN: self.detector_id}
               for p, e in errors.items()}
        if ok:
            x = torch.stack(images)
            top1, scores, flags = self.detect(x)
            for i, p in enumerate(ok):
                out[p] = {"path": p, "sha256": sha[p], "top1": int(top1[i]), "top1_name": self._name(int(top1[i])),
                          "score": repr(float(scores[i])), "flag": bool(flags[i]), "error": "",
                          DETECTOR_COLUMN: self.detector_id}
            if self.correct_dir is not None and flags.any():
                idx = [i for i in range(len(ok)) if flags[i]]
                for i, extra in zip(idx, self.correct(x[idx], [ok[i] for i in idx])):
                    out[ok[i]].update(extra)
        return [out[p] for p, _ in files]

    def detect(self, images) -> tuple[Any, Any, Any]:
        """(top-1 label int (N,), score float (N,), flag bool (N,)) of uint8 (N, 3, 224, 224):
        :meth:`advlib.Detector.score_top5` (the top-1 comes from the detector's own passes) and
        ``score >= threshold``."""
        import numpy as np

        det = self.detector
        scores, top5 = det.score_top5(images)
        scores = np.asarray(scores, dtype=np.float64)
        return top5[:, 0], scores, scores >= det.threshold

    def correct(self, images, paths: Sequence[str]) -> list[dict[str, Any]]:
        """Label and image correction of flagged images: the voted label
        (:func:`advlib.correct_labels`) and the heuristic JPEG (:func:`advlib.correct_images`,
        strategy ``min``) written under ``correct_dir``; one dict of report columns per image."""
        from .api import correct_images, correct_labels
        from .store import atomic_write_bytes, encode_image

        det = self.detector
        kw = {"batch_size": det.batch_size, "device": det.device}
        voted = correct_labels(det.classifier, images, **kw)[:, 0]
        _, qfs = correct_images(det.classifier, images, strategy="min", **kw)
        out = []
        for im, p, v, q in zip(images, paths, voted, qfs):
            dst = self.correct_dir / corrected_name(p)
            # the JPEG operations are byte-identical to Pillow's encoder: this file decodes to the corrected pixels
            atomic_write_bytes(dst, encode_image(im, "jpeg", int(q)))
            out.append({"voted_label": int(v), "voted_name": self._name(int(v)), "corrected_path": str(dst),
                        "corrected_qf": int(q)})
        return out


def _detector_id(folder: Path) -> str:
    return hashlib.sha256((folder / "detector.json").read_bytes()).hexdigest()[:16]


def load_scanner(classifier: str, detector_dir: str | None, device: str, batch_size: int,
                 correct_dir: str | None) -> Scanner:
    """The :class:`Scanner` of ``classifier`` with the shipped detector
    (:meth:`advlib.Detector.pretrained`) or the one saved in ``detector_dir``
    (:meth:`advlib.Detector.load`). :class:`UsageError` for an unknown classifier or device,
    missing weights, no detector, or a detector of another classifier."""
    from . import config, models
    from .detector import Detector

    if classifier not in models.CLASSIFIERS:
        raise UsageError(f"--classifier: unknown classifier {classifier!r} (known: {', '.join(models.CLASSIFIERS)})")
    folder = Path(detector_dir) if detector_dir else PRETRAINED_DIR / classifier
    if not (folder / "detector.json").exists():
        if detector_dir:
            raise UsageError(f"--detector {folder}: no detector.json there (give a folder written by "
                             "advlib.Detector.save())")
        shipped = ", ".join(shipped_detectors()) or "none"
        raise UsageError(f"no detector ships with this advlib for classifier {classifier!r} ({folder}/detector.json "
                         f"missing; shipped: {shipped}). Pass --detector DIR, a folder written by "
                         "advlib.Detector.save(), or run `make reproduce` (demo) to train the shipped one")
    try:
        device = config.resolve_device(device)
        batch_size = batch_size or config.auto_batch_size(device)
        clf = models.load_classifier(classifier, device)
        kw = {"batch_size": batch_size, "device": device}
        det = Detector.load(folder, clf, **kw) if detector_dir else Detector.pretrained(clf, **kw)
    except (RuntimeError, ValueError, FileNotFoundError) as e:  # no GPU, weights missing, detector mismatch
        raise UsageError(str(e)) from e
    return Scanner(det, _detector_id(folder), imagenet_class_names(), Path(correct_dir) if correct_dir else None)


def _reusable(row: dict[str, str] | None, sha: str, scanner: Scanner) -> bool:
    """Whether an earlier report row stands for this file as it is now (same SHA-256 and
    detector; with correction, a flagged row's corrected copy still on disk)."""
    if row is None or row.get("sha256") != sha or row.get(DETECTOR_COLUMN) != scanner.detector_id:
        return False
    if scanner.correct_dir is not None and row.get("flag") == "True":
        return bool(row.get("corrected_path")) and Path(row["corrected_path"]).exists()
    return True


def scan(paths: Sequence[str], scanner: Scanner, out: str | os.PathLike, chunk: int = DEFAULT_CHUNK,
         progress: bool = True) -> tuple[list[dict[str, Any]], int]:
    """Scan ``paths`` into the report ``out`` (resuming from it): returns its rows, in the order
    of :func:`find_images`, and how many were taken from the earlier report (skipped). Files are
    classified ``chunk`` at a time and the report is rewritten atomically after each chunk,
    holding the rows of every file handled so far."""
    from tqdm.auto import tqdm

    columns = report_columns(scanner.correct_dir is not None)
    exclude = [out] + ([scanner.correct_dir] if scanner.correct_dir is not None else [])
    files = find_images(paths, exclude)
    earlier = read_report(out, columns)
    done: dict[str, dict[str, Any]] = {}
    pending: list[tuple[str, str]] = []
    skipped = 0

    def flush() -> None:
        if pending:
            done.update((r["path"], r) for r in scanner.rows(pending))
            bar.update(len(pending))
            pending.clear()
        write_report([done[f] for f in files if f in done], out, columns)

    with tqdm(total=len(files), desc="scan", unit="file", disable=not progress, file=sys.stderr) as bar:
        for f in files:
            try:
                sha = file_sha256(f)
            except OSError as e:
                done[f] = {"path": f, "sha256": "", "error": f"{f}: cannot read file ({e})",
                           DETECTOR_COLUMN: scanner.detector_id}
                bar.update(1)
                continue
            if _reusable(earlier.get(f), sha, scanner):
                done[f] = earlier[f]
                skipped += 1
                bar.update(1)
            else:
                pending.append((f, sha))
                if len(pending) >= chunk:
                    flush()
        flush()
    return [done[f] for f in files], skipped


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


def scan_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="advlib scan", description=_scan_description(), epilog=_SCAN_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders (folders recursively)")
    p.add_argument("--classifier", default=DEFAULT_CLASSIFIER,
                   help=f"ImageNet classifier, a name of advlib.models.CLASSIFIERS (default {DEFAULT_CLASSIFIER})")
    p.add_argument("--detector", metavar="DIR",
                   help="a detector folder written by advlib.Detector.save() (default: the one shipped for the classifier)")
    p.add_argument("--out", default=DEFAULT_REPORT, metavar="CSV",
                   help=f"the report; an existing one is resumed (default {DEFAULT_REPORT})")
    p.add_argument("--correct", metavar="OUTDIR",
                   help="write corrected copies of the flagged files here and add the voted label")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the classifier runs "
                   "(default auto: cuda when available)")
    p.add_argument("--batch-size", type=int, default=0, metavar="N",
                   help="classifier batch size (0 = auto: 4 on CPU, 128 on GPU)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, metavar="N",
                   help=f"files per batch; the report is rewritten after each (default {DEFAULT_CHUNK})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def cmd_scan(argv: Sequence[str]) -> int:
    """``advlib scan``: see :func:`scan_parser`. Exit status 0, 1 (unreadable files) or 2."""
    args = scan_parser().parse_args(argv)
    try:
        if args.batch_size < 0:
            raise UsageError(f"--batch-size must be >= 0 (0 = auto), got {args.batch_size}")
        if args.chunk < 1:
            raise UsageError(f"--chunk must be >= 1, got {args.chunk}")
        find_images(args.paths)  # a missing PATH stops here, before the classifier loads
        scanner = load_scanner(args.classifier, args.detector, args.device, args.batch_size, args.correct)
        t0 = time.time()
        rows, skipped = scan(args.paths, scanner, args.out, args.chunk, progress=not args.quiet)
    except UsageError as e:
        print(f"advlib scan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.out} holds the files done so far; rerun the same command to resume",
              file=sys.stderr)
        return 130
    print(summary(rows, args.out, scanner.detector.threshold, skipped, time.time() - t0, scanner.correct_dir))
    return 1 if any(r.get("error") for r in rows) else 0


# =========================================================================== reproduce, check-profile, bench

def cmd_reproduce(argv: Sequence[str]) -> int:
    """``advlib reproduce [PROFILE] [NOTEBOOK ...] [--set KEY=VALUE ...]`` (:func:`advlib.run.reproduce`)."""
    from . import run

    p = argparse.ArgumentParser(
        prog="advlib reproduce", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the notebooks (papermill) on a profile: tables/<run>/, figures/<run>/, executed copies in "
                    "build/<run>/.\nBefore the first notebook the profile and its inputs (classifier weights, "
                    "ImageNet folder) are checked\nand everything missing is named; each notebook shows a progress "
                    "bar of its cells.",
        epilog="At the end every compared table is checked against tests/reference/<profile>/ (tables/<run>/"
               "reproducibility.csv) and the README's statements on the new tables (tables/<run>/claims.csv).\n"
               "exit status: 0 done, 1 a notebook failed (its cell's error is printed) or --strict and a table beyond "
               "its tolerance, 2 bad profile or missing inputs")
    p.add_argument("profile", nargs="?", default="demo", help="a name of params/ (smoke, demo, paper) or a YAML file "
                   "(default demo)")
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help=f"default: all ({', '.join(run.NOTEBOOKS)})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile key (value read as YAML), e.g. --set attacks_per_image=1")
    p.add_argument("--strict", action="store_true",
                   help="a table beyond the measured tolerance of its reference (tests/reference/<profile>/) fails "
                        "the run (default: reported in the end summary; the smoke profile is always strict)")
    p.add_argument("--numerics", choices=["pinned", "native"],
                   help="CPU numerics (default: the profile's, pinned: every library's AVX2 path, the same numbers on "
                        "any x86 CPU; native: fastest)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads of every notebook (default: the profile's "
                   "threads; 0 = one per core)")
    p.add_argument("--no-progress", action="store_true", help="no status line")
    args = p.parse_intermixed_args(argv)
    try:
        overrides = dict(run.parse_set(kv) for kv in args.set)
    except ValueError as e:
        p.error(str(e))
    from .runtime import NUMERICS_ENV, THREADS_ENV

    if args.numerics:
        os.environ[NUMERICS_ENV] = args.numerics
    if args.threads is not None:
        if args.threads < 0:
            p.error(f"--threads must be >= 0 (0 = one per core), got {args.threads}")
        os.environ[THREADS_ENV] = str(args.threads)
    return run.reproduce(args.profile, args.notebooks or None, overrides, progress=not args.no_progress,
                         strict=args.strict)


def cmd_check_profile(argv: Sequence[str]) -> int:
    """``advlib check-profile FILE_OR_NAME``: the normalised parameters (YAML), or the error and exit 2."""
    import yaml

    from . import config

    p = argparse.ArgumentParser(prog="advlib check-profile",
                                description="Validate a profile (keys, types, paths, component names) and print "
                                            "its normalised parameters.")
    p.add_argument("profile", metavar="FILE_OR_NAME", help="a name of params/ (smoke, demo, paper) or a YAML file")
    args = p.parse_args(argv)
    try:
        params = config.load_profile(args.profile)
    except config.ProfileError as e:
        print(f"profile error: {e}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(params, sort_keys=False), end="")
    return 0


def cmd_bench(argv: Sequence[str]) -> int:
    """``advlib bench ...``: :func:`advlib.bench.main` with the same arguments."""
    from . import bench

    bench.main(list(argv))
    return 0


#: command -> (function of the remaining arguments returning the exit status, one-line summary)
COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "scan": (cmd_scan, "find (and correct) adversarial images in files and folders; CSV report"),
    "reproduce": (cmd_reproduce, "run the five notebooks on a profile (make reproduce)"),
    "check-profile": (cmd_check_profile, "validate a profile and print its parameters"),
    "bench": (cmd_bench, "speed figures into BENCHMARKS.md (make bench)"),
}


def usage() -> str:
    """The top-level help."""
    from . import __version__

    cmds = "\n".join(f"  {name:<15} {summary_}" for name, (_, summary_) in COMMANDS.items())
    return (f"usage: advlib COMMAND [ARGS ...]   (also: python -m advlib)\n\n"
            f"advlib {__version__}: detecting and correcting adversarial images with image processing operations\n"
            f"(Nguyen et al., IEICE 2022), reproduced.\n\ncommands:\n{cmds}\n\n"
            f"'advlib COMMAND --help' describes a command.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``advlib`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        from . import __version__

        print(f"advlib {__version__}")
        return 0
    if args[0] not in COMMANDS:
        print(f"advlib: unknown command {args[0]!r} (commands: {', '.join(COMMANDS)}; see advlib --help)",
              file=sys.stderr)
        return 2
    try:
        return int(COMMANDS[args[0]][0](args[1:]) or 0)
    except SystemExit as e:  # argparse: --help (0) and usage errors (2), already printed
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


if __name__ == "__main__":
    sys.exit(main())
