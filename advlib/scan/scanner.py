"""The scan itself: :class:`Scanner` (read, detect, correct), :func:`load_scanner` (detector, threshold)
and :func:`scan` (resumable, in batches, the report rewritten atomically every few seconds)."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

# torch, numpy, PIL and the library's torch modules are imported inside the functions: the
# command line imports this module, and ``advlib scan --help`` loads no torch.
from . import UsageError
from .files import Found, corrected_name, file_sha256, find_images, shard_of
from .report import DETECTOR_COLUMN, read_report, report_columns, write_report
from .shipped import detector_folder

#: The report is rewritten (atomically) at most this often, and at the end: at least this many
#: seconds apart, and at least 4 times as long as the last rewrite took (so that rewriting a
#: large report costs at most a fifth of the time).
SAVE_SECONDS = 10.0


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during :func:`scan`, after the report was saved with ``saved`` rows."""

    def __init__(self, saved: int):
        super().__init__(saved)
        self.saved = saved


@dataclass
class Scanner:
    """What a scan needs: the detector (and its classifier), its fingerprint, the class names,
    the threshold on its score and where it comes from (``threshold_note``), and where
    corrected copies go (None: no correction)."""

    detector: Any
    detector_id: str
    names: list[str]
    threshold: float
    threshold_note: str = "the detector's threshold"
    correct_dir: Path | None = None

    def _name(self, label: int) -> str:
        return self.names[label] if 0 <= label < len(self.names) else ""

    def read(self, paths: Sequence[str]) -> tuple[list[str], list, dict[str, str], dict[str, str]]:
        """Read ``paths`` as :func:`advlib.images.load_image` does: (paths read, their uint8
        (3, 224, 224) images, {path: error message} of the others, {path: warning} of files
        smaller than 224 pixels on a side, which the preparation upscales)."""
        from PIL import Image

        from ..images import SIZE, load_image

        ok, images, errors, warnings = [], [], {}, {}
        for p in paths:
            try:
                images.append(load_image(p))
                ok.append(p)
                with Image.open(p) as im:  # the header only: the size before preparation
                    w, h = im.size
                if min(w, h) < SIZE:
                    warnings[p] = f"upscaled from {w}x{h} (smaller than the classifier's {SIZE}x{SIZE} input)"
            except Exception as e:  # any unreadable file (truncated, not an image, bomb...) is a row, not a crash
                errors[p] = str(e) if str(e).startswith(str(p)) else f"{p}: {type(e).__name__}: {e}"
        return ok, images, errors, warnings

    def rows(self, files: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """Report rows of ``files`` ((path, sha256) pairs), in order: top-1 and its probability,
        score, threshold, flag, warning, and with correction the voted label and corrected copy of
        flagged files; error rows for files that cannot be read."""
        import torch

        sha = dict(files)
        ok, images, errors, warnings = self.read([p for p, _ in files])
        out = {p: {"path": p, "sha256": sha[p], "error": e, DETECTOR_COLUMN: self.detector_id}
               for p, e in errors.items()}
        if ok:
            x = torch.stack(images)
            top1, prob, scores = self.detect(x)
            for i, p in enumerate(ok):
                out[p] = {"path": p, "sha256": sha[p], "top1": int(top1[i]), "top1_name": self._name(int(top1[i])),
                          "top1_prob": repr(float(prob[i])), "score": repr(float(scores[i])),
                          "threshold": repr(self.threshold), "flag": bool(scores[i] >= self.threshold),
                          "warning": warnings.get(p, ""), "error": "", DETECTOR_COLUMN: self.detector_id}
            idx = [i for i in range(len(ok)) if scores[i] >= self.threshold]
            if self.correct_dir is not None and idx:
                for i, extra in zip(idx, self.correct(x[idx], [ok[i] for i in idx])):
                    out[ok[i]].update(extra)
        return [out[p] for p, _ in files]

    def detect(self, images) -> tuple[Any, Any, Any]:
        """(top-1 label int (N,), its softmax probability float (N,), score float (N,)) of uint8
        (N, 3, 224, 224): :meth:`advlib.Detector.score_top5` (the top-1 from the detector's own
        passes) and :func:`advlib.models.top1_probability` (one more classifier pass)."""
        import numpy as np

        from ..models import top1_probability

        det = self.detector
        scores, top5 = det.score_top5(images)
        prob = top1_probability(det.classifier, images, det.batch_size)
        return top5[:, 0], prob, np.asarray(scores, dtype=np.float64)

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

    def reuse(self, row: dict[str, str] | None, sha: str) -> dict[str, Any] | None:
        """An earlier report row that stands for this file as it is now (same SHA-256 and
        detector), its flag and threshold set from its score and this scan's threshold; None when
        the file must be scanned again (changed, another detector, or with correction a flagged
        file without its corrected copy)."""
        if row is None or row.get("sha256") != sha or row.get(DETECTOR_COLUMN) != self.detector_id:
            return None
        if row.get("error") or not row.get("score"):
            return row
        flag = float(row["score"]) >= self.threshold
        if self.correct_dir is not None and flag and not (row.get("corrected_path")
                                                          and Path(row["corrected_path"]).exists()):
            return None
        new = dict(row, threshold=repr(self.threshold), flag=str(flag))
        if not flag:
            new.update({c: "" for c in ("voted_label", "voted_name", "corrected_path", "corrected_qf") if c in row})
        return new


def _detector_id(folder: Path) -> str:
    return hashlib.sha256((folder / "detector.json").read_bytes()).hexdigest()[:16]


def calibrated_threshold(detector: Any, folder: str, fpr: float) -> tuple[float, str]:
    """The threshold that flags about ``fpr`` of the images in ``folder`` (the user's normal
    images: :func:`advlib.detect.calibrate_threshold` of their scores) and a note saying so.
    :class:`UsageError` when the folder holds no readable image."""
    import numpy as np
    import torch

    from ..detect import calibrate_threshold
    from ..images import load_image

    found = find_images([folder])
    images, bad = [], []
    for p in found.paths:
        try:
            images.append(load_image(p))
        except Exception as e:  # unreadable calibration files are named, the others used
            bad.append(f"{p} ({e})")
    if not images:
        raise UsageError(f"--calibration {folder}: no readable image files there" + (f" ({len(bad)} unreadable)"
                                                                                     if bad else ""))
    for b in bad:
        print(f"--calibration: left out, cannot read {b}", file=sys.stderr)
    scores = detector.score(torch.stack(images))
    threshold = float(calibrate_threshold(scores, fpr))
    n, k = len(scores), int(np.sum(scores >= threshold))
    note = f"set at {fpr:.1%} false positives on {n} normal image(s) of {folder}: {k} of them flagged"
    if n * fpr < 1:
        note += f"; with {n} images no false-positive rate under {1 / n:.1%} can be measured"
    return threshold, note


def load_scanner(classifier: str, detector: str | None, device: str, batch_size: int, correct_dir: str | None,
                 threshold: float | None = None, fpr: float | None = None, calibration: str | None = None) -> Scanner:
    """The :class:`Scanner` of ``classifier`` with a detector (:func:`advlib.scan.shipped.detector_folder`:
    the shipped one, ``paper``, or a folder written by :meth:`advlib.Detector.save`). Threshold:
    ``threshold``, else set at ``fpr`` on the images of ``calibration``, else the detector's.
    :class:`UsageError` for an unknown classifier or device, missing weights, no detector, or a
    detector of another classifier."""
    from .. import models, runtime
    from ..detect import Detector

    if classifier not in models.CLASSIFIERS:
        raise UsageError(f"--classifier: unknown classifier {classifier!r} (known: {', '.join(models.CLASSIFIERS)})")
    folder = detector_folder(classifier, detector)
    try:
        device = runtime.resolve_device(device)
        batch_size = batch_size or runtime.auto_batch_size(device)
        clf = models.load_classifier(classifier, device)
        det = Detector.load(folder, clf, batch_size=batch_size, device=device)
    except (RuntimeError, ValueError, FileNotFoundError) as e:  # no GPU, weights missing, detector mismatch
        raise UsageError(str(e)) from e
    scanner = Scanner(det, _detector_id(folder), models.imagenet_class_names(), det.threshold,
                      correct_dir=Path(correct_dir) if correct_dir else None)
    if threshold is not None:
        scanner.threshold, scanner.threshold_note = float(threshold), "--threshold"
    elif fpr is not None:
        scanner.threshold, scanner.threshold_note = calibrated_threshold(det, calibration, fpr)
    return scanner


def scan(found: Found, scanner: Scanner, out: str | os.PathLike, fmt: str | None = None, chunk: int = 0,
         progress: bool = True, shard: tuple[int, int] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Scan the files of ``found`` (:func:`find_images`; with ``shard`` ``(k, n)`` only those of
    shard k of n, :func:`advlib.scan.files.shard_of`) into the report ``out`` (resuming from
    it): returns its rows, in order, and how many were taken from the earlier report. Files are
    classified ``chunk`` at a time (0: the detector's batch size), the progress bar moves after
    each batch, and the report is rewritten atomically every :data:`SAVE_SECONDS` and at the
    end. Ctrl-C saves the report first, then raises :class:`Interrupted`."""
    from tqdm.auto import tqdm

    columns = report_columns(scanner.correct_dir is not None)
    files = found.paths if shard is None else [f for f in found.paths if shard_of(f, shard[1]) == shard[0]]
    chunk = chunk or scanner.detector.batch_size
    earlier = read_report(out, columns, fmt)
    done: dict[str, dict[str, Any]] = {}
    pending: list[tuple[str, str]] = []
    skipped, saved_at, save_cost = 0, time.time(), 0.0

    def save() -> int:
        nonlocal saved_at, save_cost
        rows = [done[f] if f in done else earlier[f] for f in files if f in done or f in earlier]
        start = time.time()
        write_report(rows, out, columns, fmt)
        saved_at, save_cost = time.time(), time.time() - start
        return len(rows)

    def classify() -> None:
        if pending:
            done.update((r["path"], r) for r in scanner.rows(pending))
            bar.update(len(pending))
            pending.clear()
        if time.time() - saved_at >= max(SAVE_SECONDS, 4 * save_cost):
            save()

    with tqdm(total=len(files), desc="scan", unit="file", disable=not progress, file=sys.stderr) as bar:
        try:
            for f in files:
                if f in found.unreadable:
                    done[f] = {"path": f, "sha256": "", "error": found.unreadable[f], DETECTOR_COLUMN: scanner.detector_id}
                    bar.update(1)
                    continue
                try:
                    sha = file_sha256(f)
                except OSError as e:
                    done[f] = {"path": f, "sha256": "", "error": f"{f}: cannot read file ({e.strerror or e})",
                               DETECTOR_COLUMN: scanner.detector_id}
                    bar.update(1)
                    continue
                row = scanner.reuse(earlier.get(f), sha)
                if row is not None:
                    done[f] = row
                    skipped += 1
                    bar.update(1)
                else:
                    pending.append((f, sha))
                    if len(pending) >= chunk:
                        classify()
            classify()
        except KeyboardInterrupt:
            raise Interrupted(save() if done or earlier else 0) from None
    save()
    return [done[f] for f in files], skipped
