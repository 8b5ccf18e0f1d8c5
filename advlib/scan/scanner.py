"""The scan itself: :class:`Scanner` (read, detect, correct) and :func:`scan` (resumable, in chunks)."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..pretrained import DIR as PRETRAINED_DIR
from ..pretrained import shipped_detectors
from . import UsageError
from .files import corrected_name, file_sha256, find_images
from .report import DETECTOR_COLUMN, read_report, report_columns, write_report

#: Files read and classified together; the report is rewritten (atomically) after each batch.
DEFAULT_CHUNK = 32


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
        """Read ``paths`` as :func:`advlib.images.load_image` does: (paths read, their uint8
        (3, 224, 224) images, {path: error message} of the others)."""
        from ..images import load_image

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
        from ..api import correct_images, correct_labels
        from ..store import atomic_write_bytes, encode_image

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
    from .. import models, runtime
    from ..detect import Detector

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
        device = runtime.resolve_device(device)
        batch_size = batch_size or runtime.auto_batch_size(device)
        clf = models.load_classifier(classifier, device)
        kw = {"batch_size": batch_size, "device": device}
        det = Detector.load(folder, clf, **kw) if detector_dir else Detector.pretrained(clf, **kw)
    except (RuntimeError, ValueError, FileNotFoundError) as e:  # no GPU, weights missing, detector mismatch
        raise UsageError(str(e)) from e
    return Scanner(det, _detector_id(folder), models.imagenet_class_names(), Path(correct_dir) if correct_dir else None)


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
