"""``advlib scan --help``: the argument parser, what the shipped detectors are, every option (no torch)."""

from __future__ import annotations

import argparse
import textwrap

from .jobs import EXECUTORS
from .report import FORMATS
from .shipped import PAPER, PRETRAINED_DIR, describe_shipped, shipped_detectors

DEFAULT_CLASSIFIER = "efficientnet_lite0"


def _description() -> str:
    shipped = shipped_detectors()
    text = ("Scan image files and folders (recursively) for adversarial images. Each image is prepared as "
            "advlib.images.load_image does: 224x224 files as they are (adversarial files keep their noise), "
            "others resized to 256 and centre-cropped to 224. A detector reads the classifier's outputs before and "
            "after image processing operations (the paper's idea, Sect. 4) as the features of a trained estimator; "
            "its score is P(adversarial). The default detector shipped for a classifier is not the paper's: it uses "
            "continuous features (prob: the probability of the image's top-1 label, shift: the shift of the "
            "softmax vector, under each operation; its feature is named below) of a few operations, chosen by "
            "the nested procedure of notebook 03; "
            f"--detector {PAPER} takes the paper's all-38 detector (the differences of the top-5 labels under all "
            "38 operations) where one ships.")
    paras = [textwrap.fill(text, 100)]
    if shipped:
        paras.append("Shipped detectors (the classifier's own is used unless --detector names another):")
        paras += [textwrap.fill(describe_shipped(n, m), 100, initial_indent="  ", subsequent_indent="    ")
                  for n, m in shipped.items()]
    else:
        paras.append(textwrap.fill(
            f"No detector ships with this install yet ({PRETRAINED_DIR} holds none; `make reproduce` writes "
            "the one for efficientnet_lite0): pass --detector DIR, a folder written by advlib.Detector.save().",
            100))
    return "\n\n".join(paras)


_EPILOG = """\
report columns (CSV, or JSON with --format json: a list of one object per row, the same columns):
  path, sha256 (of the file's bytes), top1, top1_name (the classifier's top-1 ImageNet label and its
  name), top1_prob (its softmax probability: one more classifier pass), score (P(adversarial), full
  precision), threshold (the one this scan used), flag (score >= threshold), warning (e.g. an image
  smaller than 224x224, upscaled), error (why the file or folder could not be read; empty when fine);
  with --correct: voted_label, voted_name (label correction, Sect. 5.1), corrected_path,
  corrected_qf (the heuristic JPEG, Sect. 5.2, strategy 'min'); detector (fingerprint of the
  detector used).
--correct corrects flagged files only: their corrected copy is the prepared 224x224 image saved as
  JPEG at the chosen quality under OUTDIR, mirroring the file's path (JPEG names kept, other names
  get '.jpg' appended); unflagged rows leave the correction columns empty.
folders: files with an image suffix (.jpg .jpeg .png .bmp .tif .tiff .webp .ppm) in sorted order;
  hidden files and folders, other suffixes (.gif...) and symlinked folders are left out and counted
  in the summary; a folder that cannot be listed is an error row. Files named on the command line
  are always read; 16-bit files are read at 8 bits (high byte).
resume: the report is rewritten atomically every 10 s and at the end (Ctrl-C saves it first);
  rerunning the same command reuses the rows of files with the same path, SHA-256 and detector
  (a new --threshold only sets their flags again).
shards: --shards N --shard K scans the files whose path hash (SHA-256 of the path as written) is K
  modulo N into OUT's stem + '.shard-K-of-N' + suffix, resumable on its own; --merge joins the
  shard reports (same columns, detector and threshold, or an error; missing shards, duplicates and,
  with PATHs, files in no report are named). --executor runs the N shards as submitit jobs (SLURM
  job array, or local processes) and merges them into OUT: rerun the same command to resume.
threads: torch threads per process: --threads, else $ADVLIB_THREADS, else one per CPU this process
  may use. advlib scan sets OMP_WAIT_POLICY=PASSIVE unless it is set (waiting threads sleep): with
  OpenMP's default they spin, and 2 threads beside another job on 2 cores ran 15x slower
  (BENCHMARKS.md); when waiting threads spin (torch already loaded, or the variable set
  otherwise) the default is 1 thread. Jobs of --executor local share this machine's CPUs.
exit status: 0 all files read, 1 some could not be read (see the error column), a job failed or a
  merge is incomplete, 2 bad arguments (before any classifying), 130 interrupted."""


def scan_parser() -> argparse.ArgumentParser:
    """The parser of ``advlib scan`` (``--help`` describes the shipped detectors and every option)."""
    p = argparse.ArgumentParser(prog="advlib scan", description=_description(), epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files and folders (folders recursively)")
    g = p.add_argument_group("detector and threshold")
    g.add_argument("--classifier", default=DEFAULT_CLASSIFIER,
                   help=f"ImageNet classifier, a name of advlib.models.CLASSIFIERS (default {DEFAULT_CLASSIFIER}); "
                        "one without a shipped detector needs --detector DIR (the error says how to train one)")
    g.add_argument("--detector", metavar="DIR|paper",
                   help="a detector folder written by advlib.Detector.save(), or 'paper' for the shipped all-38 paper "
                        "detector (default: the detector shipped for the classifier)")
    g.add_argument("--threshold", type=float, metavar="T", help="flag score >= T (default: the detector's threshold)")
    g.add_argument("--fpr", type=float, metavar="RATE",
                   help="set the threshold so that RATE (e.g. 0.05) of your normal images in --calibration are flagged")
    g.add_argument("--calibration", metavar="DIR", help="a folder of your own normal (not adversarial) images, for --fpr")
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="REPORT", help="the report; an existing one is resumed (default scan_report.csv, "
                   "or .json with --format json)")
    g.add_argument("--format", choices=FORMATS, help="report format (default: from --out's suffix, else csv)")
    g.add_argument("--correct", metavar="OUTDIR", help="write corrected copies of the flagged files here and add the "
                   "voted label")
    g.add_argument("--plot", metavar="IMAGE", help="save a histogram of the scores with the threshold line "
                   "(.png, .pdf or .svg)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("computing")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the classifier runs "
                   "(default auto: cuda when available)")
    g.add_argument("--batch-size", type=int, default=0, metavar="N",
                   help="classifier batch size (0 = auto: 4 on CPU, 128 on GPU)")
    g.add_argument("--chunk", type=int, default=0, metavar="N",
                   help="files read and classified together; the progress bar moves after each (default 0: the "
                        "batch size)")
    g.add_argument("--threads", type=int, metavar="N", help="torch threads (default $ADVLIB_THREADS, else one per CPU; "
                   "0 = one per CPU; see threads below)")
    g = p.add_argument_group("many files: shards, jobs, merge")
    g.add_argument("--shards", type=int, default=1, metavar="N", help="split the files into N shards by path hash")
    g.add_argument("--shard", type=int, metavar="K", help="scan shard K (0..N-1) only, into OUT's .shard-K-of-N report")
    g.add_argument("--executor", choices=EXECUTORS, help="run the N shards as submitit jobs (slurm: a job array; "
                   "local: processes on this machine) and merge them into OUT")
    g.add_argument("--merge", nargs="+", metavar="REPORT", help="merge shard reports into OUT instead of scanning "
                   "(with PATHs: also name the files no report holds)")
    g.add_argument("--jobs-folder", metavar="DIR", help="submitit's job files and logs (default OUT.jobs)")
    g.add_argument("--cpus-per-job", type=int, metavar="N", help="CPUs of each job (SLURM cpus_per_task; also its "
                   "torch threads unless --threads; default: local, the cores shared between the jobs; slurm, 1)")
    g.add_argument("--timeout-min", type=int, default=24 * 60, metavar="MIN", help="time limit of each job "
                   "(default 1440)")
    g.add_argument("--partition", metavar="NAME", help="SLURM partition")
    g.add_argument("--job-option", action="append", default=[], metavar="KEY=VALUE",
                   help="another parameter of submitit's executor, e.g. mem_gb=8, gpus_per_node=1, "
                        "slurm_array_parallelism=50, slurm_account=proj (repeatable)")
    return p
