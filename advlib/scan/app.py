"""The ``advlib scan`` command line (:func:`main`); ``--help`` loads no torch."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from typing import Sequence

from ..pretrained import DIR as PRETRAINED_DIR
from ..pretrained import shipped_detectors
from . import UsageError
from .files import find_images
from .report import summary
from .scanner import DEFAULT_CHUNK, load_scanner, scan
from .shipped import describe_shipped

DEFAULT_CLASSIFIER = "efficientnet_lite0"
DEFAULT_REPORT = "scan_report.csv"


def _scan_description() -> str:
    shipped = shipped_detectors()
    text = ("Scan image files and folders (recursively) for adversarial images. Each image is prepared as "
            "advlib.images.load_image does: 224x224 files as they are (adversarial files keep their noise), "
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


def main(argv: Sequence[str]) -> int:
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
