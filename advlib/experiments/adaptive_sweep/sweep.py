"""Notebook 05's attacks: the defences of each outer fold, the attacks of the sweep, its shards
(keyed, atomic, resumable), the sweep and the convergence study, the images. The reading of
their rows is in :mod:`advlib.experiments.adaptive_sweep.tables`."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ... import (
    attacks,
    correct,
    detect,
    features,
    models,
    ops,
    paths,
    profiles,
    runtime,
)
from ...attacks import adaptive
from ...corpora import thumbnail_sources
from ...dataset import read_table, save_dataset_image
from ...detect import detector_scores
from ...runtime import numerics_id
from ...runtime import progress as tqdm
from ...store import atomic_write_bytes, pixel_sha256, write_csv
from ..correction import jpeg_top5

#: Columns judged per image (bool): flagged by each detector, label restored by each correction,
#: the final answer of each two-level pipeline correct.
DETECTORS = ("paper_detector", "cheap_detector", "feature_squeezing")
CORRECTIONS = ("label_correction", "image_correction")
PIPELINES = ("pipeline_cheap", "pipeline_paper")
DEFENCES = DETECTORS + CORRECTIONS + PIPELINES

#: What each defence column means, for the tables.
DEFENCE_NAMES = {
    "paper_detector": "paper's detector (SVM, differences feature, all 38 operations)",
    "cheap_detector": "cheap detector (the shipped detector's procedure)",
    "feature_squeezing": "feature squeezing (5-bit, 2x2 median, NLM 11-3-4)",
    "label_correction": "label correction (vote over the 26 JPEG and scaling operations)",
    "image_correction": "image correction (JPEG at the heuristic-min quality)",
    "pipeline_cheap": "cheap detector, then label correction of what it flags",
    "pipeline_paper": "paper's detector, then label correction of what it flags",
}


@dataclass(frozen=True)
class Strength:
    """How hard an attack tries: PGD ``steps`` and random ``restarts``, ``eot`` operations per
    step, the ``lam`` values searched by the detector attacks, the Square attack's ``queries``,
    the high-confidence margin ``kappa_high``."""

    steps: int = 10
    restarts: int = 1
    eot: int = 3
    lam: tuple[float, ...] = (1.0, 10.0, 100.0)
    queries: int = 300
    kappa_high: float = 30.0

    def key(self) -> list:
        return [self.steps, self.restarts, self.eot, list(self.lam), self.queries, self.kappa_high]


@dataclass
class Defences:
    """What judges (and what the adaptive attacker knows of) the adversarials of one outer fold.

    ``paper`` / ``cheap``: :class:`advlib.Detector` objects; ``squeezing``: a fitted
    :class:`advlib.detect.FeatureSqueezing`; ``heuristic_qfs`` / ``groups``: image and label
    correction settings (notebook 04's); ``source``: the classifier of the transfer attack.
    """

    classifier: torch.nn.Module
    paper: Any
    cheap: Any
    squeezing: Any
    heuristic_qfs: list[int]
    groups: list[str]
    fold: int = 0
    batch_size: int = 16
    workers: int = 0
    source: torch.nn.Module | None = None

    def key(self) -> str:
        """What a judgement depends on (the detectors' metadata and thresholds, the settings)."""
        def what(det) -> dict:  # the detector itself, not the name or parameters of the run that saved it
            return {k: v for k, v in det.describe().items() if k not in ("run", "params_hash")}

        return paths.fingerprint(what(self.paper), what(self.cheap), float(self.squeezing.threshold_),
                                 self.heuristic_qfs, self.groups)

    def judge(self, images: torch.Tensor, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Per image, bool: flagged by each detector; reference label back in the top-5 after each
        correction; final answer right (label in the top-5) for each pipeline; ``top5_clean``
        (the label in the top-5 with no defence)."""
        names = list(ops.OPERATIONS)
        top5 = np.asarray(features.top5_under_ops(self.classifier, images, names, batch_size=self.batch_size,
                                                  workers=self.workers, progress=False))
        after = top5[:, 1:]
        cols = [0] + [1 + names.index(n) for n in self.paper.op_names]  # the paper detector's passes
        paper_flag = detector_scores(self.paper.fitted_estimator(), self.paper.features_of(top5[:, cols])) \
            >= self.paper.threshold
        cheap_flag = self.cheap.detect(images)
        voted = correct.label_correction(after, names, self.groups)
        _, s_qf, _ = correct.heuristic_steps(after, names, self.heuristic_qfs, groups=self.groups)
        qf = correct.choose_qf(s_qf, "min", fallback_qf=min(self.heuristic_qfs))
        clean, restored = correct.top5_correct(top5[:, 0], labels), correct.label_correction_success(voted, labels)
        return {"top5_clean": clean,
                "paper_detector": paper_flag,
                "cheap_detector": cheap_flag,
                "feature_squeezing": np.asarray(self.squeezing.predict(images)).astype(bool),
                "label_correction": restored,
                "image_correction": correct.top5_correct(jpeg_top5(after, names, qf), labels),
                "image_correction_qf": np.asarray(qf),
                "pipeline_cheap": np.where(cheap_flag, restored, clean),
                "pipeline_paper": np.where(paper_flag, restored, clean)}


Runner = Callable[[torch.Tensor, np.ndarray, float, Defences, Strength, int, int], Any]


@dataclass(frozen=True)
class SweepAttack:
    """One attack of the sweep: ``adaptive`` (knows the defences), ``target`` (the defences it is
    designed for, columns of :data:`DEFENCES`), ``kind`` (gradient, gradient-free, transfer),
    ``differs``: how it differs from the baseline ``pgd`` (everything else is the same), and
    ``run(images, labels, eps, defences, strength, seed, batch_size)``."""

    adaptive: bool
    target: tuple[str, ...]
    kind: str
    differs: str
    run: Runner = field(repr=False)


def _pgd_kw(s: Strength, seed: int, batch_size: int) -> dict:
    return {"steps": s.steps, "restarts": s.restarts, "seed": seed, "batch_size": batch_size}


#: The attacks of the sweep by name (``none``: the normal images themselves).
ATTACKS: dict[str, SweepAttack] = {
    "pgd": SweepAttack(False, (), "gradient", "- (the non-adaptive baseline: top-5 margin, no knowledge of the defences)",
                       lambda x, y, e, d, s, seed, bs: adaptive.attack_pgd(d.classifier, x, y, e,
                                                                           **_pgd_kw(s, seed, bs))),
    "high_confidence": SweepAttack(
        True, CORRECTIONS + ("pipeline_cheap", "pipeline_paper"), "gradient", "margin kappa = 30 logits (not 0)",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_pgd(d.classifier, x, y, e, kappa=s.kappa_high,
                                                            **_pgd_kw(s, seed, bs))),
    "eot_correction": SweepAttack(
        True, CORRECTIONS, "gradient", "EOT: the margin averaged over the image and `eot` of the 26 correction "
        "operations drawn per step (BPDA through JPEG)",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_correction(d.classifier, x, y, e, eot=s.eot,
                                                                   **_pgd_kw(s, seed, bs))),
    "eot_kornia": SweepAttack(
        True, CORRECTIONS, "gradient", "EOT as eot_correction, through kornia's differentiable JPEG",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_correction(d.classifier, x, y, e, eot=s.eot, jpeg="kornia",
                                                                   **_pgd_kw(s, seed, bs))),
    "detector_cheap": SweepAttack(
        True, ("cheap_detector",), "gradient", "+ lam x hinge on the cheap detector's score (exact features, BPDA "
        "JPEG), lam searched per image",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_detector(d.classifier, d.cheap, x, y, e, lam=s.lam,
                                                                 **_pgd_kw(s, seed, bs))),
    "detector_paper": SweepAttack(
        True, ("paper_detector",), "gradient", "+ lam x hinge on the paper detector's score through a soft "
        "surrogate of its discrete features, lam searched per image",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_detector(d.classifier, d.paper, x, y, e, lam=s.lam,
                                                                 **_pgd_kw(s, seed, bs))),
    "squeezing": SweepAttack(
        True, ("feature_squeezing",), "gradient", "+ lam x hinge on feature squeezing's score through its squeezers "
        "(BPDA bit depth and NLM, exact median), lam searched per image",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_squeezing(d.classifier, d.squeezing, x, y, e, lam=s.lam,
                                                                  **_pgd_kw(s, seed, bs))),
    "pipeline": SweepAttack(
        True, ("pipeline_cheap", "cheap_detector", "label_correction"), "gradient",
        "EOT as eot_correction + lam x hinge on the cheap detector, lam searched per image",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_pipeline(d.classifier, d.cheap, x, y, e, eot=s.eot, lam=s.lam,
                                                                 **_pgd_kw(s, seed, bs))),
    "transfer_lite1": SweepAttack(
        True, CORRECTIONS + DETECTORS, "transfer", "made on efficientnet_lite1 (never sees the attacked classifier "
        "or the detectors' models): EOT as eot_correction, kappa 30",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_correction(d.source, x, y, e, eot=s.eot, kappa=s.kappa_high,
                                                                   **_pgd_kw(s, seed, bs))),
    "square": SweepAttack(
        False, (), "gradient-free", "Square attack (queries, no gradient) on the same top-5 margin",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_square(d.classifier, x, y, e, queries=s.queries, seed=seed,
                                                               batch_size=bs)),
    "square_correction": SweepAttack(
        True, CORRECTIONS, "gradient-free", "Square attack on the margin averaged over the image and `eot` "
        "correction operations (drawn once)",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_square(d.classifier, x, y, e, queries=s.queries, seed=seed,
                                                               ops="jpeg+scaling", eot=s.eot, batch_size=bs)),
    "square_detector": SweepAttack(
        True, ("cheap_detector",), "gradient-free", "Square attack on the margin + 10 x hinge on the cheap "
        "detector's real score",
        lambda x, y, e, d, s, seed, bs: adaptive.attack_square(d.classifier, x, y, e, queries=s.queries, seed=seed,
                                                               detector=d.cheap, lam=10.0, batch_size=bs)),
}

#: Transfer attacks need this classifier (:func:`load_defences` loads it only when asked).
TRANSFER_SOURCE = "efficientnet_lite1"


@dataclass(frozen=True)
class Job:
    """One shard: an attack at a budget (8-bit levels) on the images of one fold, with a strength."""

    attack: str
    eps_levels: float
    fold: int
    strength: Strength


def shard(job: Job, images: torch.Tensor, labels: np.ndarray, ids: list[str], d: Defences, folder: Path, *,
          seed: int, batch_size: int, threads: int = 0) -> pd.DataFrame:
    """One shard: attack, save each adversarial as JPEG quality 100 under ``folder``, re-check the
    paper's criterion from the file, judge it by every defence; one row per image. The attack's
    loss history goes beside it (``.npy``, (steps + 1, n)). Cached: the CSV (written last,
    atomically) marks the shard done. ``threads``: torch threads of the attack (fixed, as the
    dataset's ``attack_threads``, so that the adversarials do not depend on the core count)."""
    name = job.attack
    key = paths.fingerprint(name, job.eps_levels, job.strength.key(), seed, threads,
                            [pixel_sha256(im) for im in images], np.asarray(labels).tolist(), d.key(),
                            numerics_id(), length=10)
    out = folder / name / f"eps{job.eps_levels:g}-fold{job.fold}-{key}.csv"
    if out.exists():
        return read_table(out)
    history = None
    if name == "none":
        files, pixels = [""] * len(images), images
        success = np.zeros(len(images), bool)
        l2, linf, seconds, lam_used = np.zeros(len(images)), np.zeros(len(images), int), 0.0, [np.nan] * len(images)
    else:
        spec = ATTACKS[name]
        with runtime.torch_threads(threads or None):
            outcome = spec.run(images, labels, job.eps_levels / 255, d, job.strength, seed, batch_size)
        saved = [save_dataset_image(outcome.adversarial[i], folder / name / key / ids[i].replace("/", "_"), "jpeg")
                 for i in range(len(images))]
        files = [str(p.relative_to(folder)) for p, _ in saved]
        pixels = torch.stack([px for _, px in saved])
        if not torch.equal(pixels, outcome.saved):
            raise RuntimeError(f"{name} eps {job.eps_levels}: the saved files decode to other pixels than the attack's")
        success = attacks.is_adversarial(d.classifier, pixels, torch.as_tensor(labels), batch_size=batch_size)
        l2, linf, seconds = outcome.l2, outcome.linf, outcome.seconds
        lam_used = outcome.params.get("lam_used", [np.nan] * len(images))
        history = outcome.loss_history
    judged = d.judge(pixels, np.asarray(labels))
    spec = ATTACKS.get(name)
    rows = pd.DataFrame({"image_id": ids, "attack": name, "adaptive": bool(spec and spec.adaptive),
                         "kind": spec.kind if spec else "-", "eps_levels": job.eps_levels, "fold": job.fold,
                         "steps": job.strength.steps, "restarts": job.strength.restarts, "path": files,
                         "label": np.asarray(labels), "success_saved": success, "l2": l2, "linf": linf,
                         "lam_used": lam_used, "seconds_per_image": seconds / max(1, len(images)), **judged,
                         "shard": str(out.relative_to(folder))})
    if history is not None:
        buf = io.BytesIO()
        np.save(buf, history)
        atomic_write_bytes(out.with_suffix(".npy"), buf.getvalue())
    write_csv(rows, out)
    return read_table(out)


def _run_jobs(jobs: list[Job], picks: dict[int, tuple], defences: dict[int, Defences], folder: Path, *, seed: int,
              batch_size: int, threads: int, progress: bool, desc: str, n: dict[str, int] | None = None,
              on_error: Callable | None = None) -> pd.DataFrame:
    parts, failed = [], []
    for job in tqdm(jobs, desc=desc, disable=not progress):
        images, labels, ids = picks[job.fold]
        k = (n or {}).get(job.attack)
        if k is not None:
            images, labels, ids = images[:k], labels[:k], ids[:k]
        if not len(ids):
            continue
        try:
            parts.append(shard(job, images, labels, ids, defences[job.fold], folder, seed=seed,
                               batch_size=batch_size, threads=threads))
        except Exception as e:  # noqa: BLE001 - a failing shard must not stop the others
            failed.append((job.attack, job.eps_levels, job.fold, repr(e)))
            (on_error or (lambda j, err: print(f"adaptive shard {j} failed: {err!r}")))(job, e)
    if failed:
        print(f"{len(failed)} adaptive shard(s) failed: {failed}")
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _split_by_fold(pick: pd.DataFrame, images: torch.Tensor) -> dict[int, tuple]:
    out = {}
    for k in sorted(pick["fold"].unique()):
        m = (pick["fold"] == k).to_numpy()
        out[int(k)] = (images[torch.from_numpy(m)], pick["label"].to_numpy()[m], pick["image_id"][m].tolist())
    return out


def sweep(pick: pd.DataFrame, images: torch.Tensor, defences: dict[int, Defences], folder: Path, *,
          plan: dict[str, dict], eps_levels: list[float], strength: Strength, seed: int, batch_size: int,
          threads: int = 0, progress: bool = True, on_error: Callable | None = None) -> pd.DataFrame:
    """Every attack of ``plan`` (name -> options: ``eps``, budgets instead of ``eps_levels``;
    ``steps``, another step count; ``n``, the first images of each fold only) at its budgets on
    the images of ``pick`` (:func:`pick_images`, with their ``fold``), each fold's images through
    that fold's ``defences``, plus the normal images (``none``). Returns one row per (attack,
    budget, image). A failing shard is reported (``on_error(job, exc)``, default print) and the
    others go on."""
    unknown = [a for a in plan if a not in ATTACKS]
    if unknown:
        raise KeyError(f"unknown adaptive attack(s) {unknown} (known: {', '.join(ATTACKS)})")
    picks = _split_by_fold(pick, images)
    jobs = [Job("none", 0.0, k, strength) for k in picks]
    n = {}
    for name, opts in plan.items():
        opts = opts or {}
        s = replace(strength, steps=int(opts.get("steps", strength.steps)))
        if "n" in opts:
            n[name] = int(opts["n"])
        jobs += [Job(name, float(e), k, s) for e in opts.get("eps", eps_levels) for k in picks]
    return _run_jobs(jobs, picks, defences, folder, seed=seed, batch_size=batch_size, threads=threads,
                     progress=progress, desc="adaptive attacks", n=n, on_error=on_error)


# --------------------------------------------------------------------------- convergence


def convergence(pick: pd.DataFrame, images: torch.Tensor, defences: dict[int, Defences], folder: Path, *,
                attacks: list[str], eps_levels: list[float], steps: list[int], restarts: int, strength: Strength,
                n: int, seed: int, batch_size: int, threads: int = 0, progress: bool = True) -> pd.DataFrame:
    """The convergence study: each attack of ``attacks`` at each budget of ``eps_levels`` with
    every step count of ``steps`` (one start), and with ``restarts`` random restarts at the
    middle step count, on the first ``n`` images of ``pick`` (in its round-robin ``order``, so
    that they come from every fold). Returns the
    per-image rows (as :func:`sweep`; ``steps`` and ``restarts`` columns tell the runs apart)."""
    first = pick["order"].to_numpy() < n  # the first n in round-robin order: every fold's images
    picks = _split_by_fold(pick[first].reset_index(drop=True), images[torch.from_numpy(first)])
    middle = sorted(steps)[len(steps) // 2]
    configs = [(s, 1) for s in steps] + ([(middle, restarts)] if restarts > 1 else [])
    jobs = [Job(a, float(e), k, replace(strength, steps=s, restarts=r))
            for a in attacks for e in eps_levels for s, r in configs for k in picks]
    return _run_jobs(jobs, picks, defences, folder, seed=seed, batch_size=batch_size, threads=threads,
                     progress=progress, desc="convergence study")


# --------------------------------------------------------------------------- images and defences

def pick_images(manifest: pd.DataFrame, classifier: str, n: int, seed: int, fold_sources: dict[int, list[str]],
                photos: str = "all") -> pd.DataFrame:
    """``n`` normal images of ``classifier``, one per source photo, from the eval photos of the
    outer folds (``fold_sources``: fold -> its eval photos) taken in turn (fold 0's first, fold
    1's first, ...; within a fold in a seeded order), with a ``fold`` column. ``photos``:
    ``"full-size"`` keeps only photos of 224 px or more on a side (demo corpus), ``"all"`` every
    photo. Fewer than ``n`` when there are not enough photos (the table's ``n_images`` says)."""
    if photos not in ("all", "full-size"):
        raise ValueError(f"adaptive_photos must be 'all' or 'full-size', got {photos!r}")
    normal = manifest[(manifest["kind"] == "normal") & (manifest["classifier"] == classifier)]
    firsts = normal.drop_duplicates("source")
    if photos == "full-size":
        firsts = firsts[~firsts["source"].isin(thumbnail_sources())]
    rng = np.random.default_rng(seed)
    queues = []
    for k in sorted(fold_sources, key=int):
        f = firsts[firsts["source"].isin(fold_sources[k])].assign(fold=int(k))
        queues.append(f.iloc[rng.permutation(len(f))])
    out, i = [], 0
    while len(out) < n and any(i < len(q) for q in queues):
        out += [q.iloc[[i]] for q in queues if i < len(q)]
        i += 1
    picked = pd.concat(out[:n]) if out else firsts.iloc[:0].assign(fold=0)
    picked = picked.assign(order=np.arange(len(picked)))  # the round-robin order: the first m cover the folds evenly
    return picked.sort_values(["fold"], kind="stable").reset_index(drop=True)


def folds_dir(dirs: dict[str, Path]) -> Path:
    """Where notebook 03 saved the outer folds' detectors (:func:`advlib.experiments.save_fold_detectors`)."""
    return dirs["models"] / "folds"


def fold_sources(dirs: dict[str, Path]) -> dict[int, list[str]]:
    """Fold -> the source photos of its eval part, as notebook 03 saved them."""
    path = folds_dir(dirs) / "folds.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: notebook 05 attacks through the outer folds' detectors that "
                                f"notebook 03 saves; run notebook 03 of this profile first (advlib reproduce "
                                f"<profile> 03_detection)")
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


def load_defences(params: dict[str, Any], dirs: dict[str, Path], classifier: Any, manifest: pd.DataFrame,
                  load_normal: Callable[[np.ndarray], torch.Tensor], device: str, folds: list[int],
                  transfer: bool = False) -> dict[int, Defences]:
    """The defences of each outer fold of ``folds``: its paper and cheap detectors as notebook 03
    saved them, feature squeezing fitted at ``target_fpr`` on the normal images of the other
    folds' photos (``load_normal(mask)``: the manifest rows' images), notebook 04's correction
    settings; ``transfer``: also load the transfer attack's source classifier."""
    bs = params["batch_size"]
    sources = fold_sources(dirs)
    normal = ((manifest["kind"] == "normal") & (manifest["classifier"] == params["classifiers"][0])).to_numpy()
    source = models.load_classifier(TRANSFER_SOURCE, device) if transfer else None
    out = {}
    for k in folds:
        base = folds_dir(dirs) / f"fold{k}"
        paper = detect.Detector.load(base / "paper", classifier, batch_size=bs)
        cheap = detect.Detector.load(base / "cheap", classifier, batch_size=bs)
        others = normal & ~manifest["source"].isin(sources[k]).to_numpy()
        squeezer = detect.FeatureSqueezing(classifier, device=device, batch_size=bs, fpr=params["target_fpr"])
        squeezer.fit(load_normal(others))
        out[k] = Defences(classifier, paper, cheap, squeezer, params["heuristic_qfs"], params["correction_groups"],
                          fold=k, batch_size=bs, workers=params["workers"], source=source)
    return out


def strength(params: dict[str, Any]) -> Strength:
    """The attack strength of a run's profile (``adaptive_steps``, ``adaptive_restarts``,
    ``adaptive_eot``, ``adaptive_lam``, ``adaptive_queries``)."""
    return Strength(steps=params["adaptive_steps"], restarts=params["adaptive_restarts"], eot=params["adaptive_eot"],
                    lam=tuple(float(v) for v in params["adaptive_lam"]), queries=params["adaptive_queries"])


def write_rows(rows: pd.DataFrame, data_dir: Path, name: str = "adaptive_rows.csv") -> Path:
    """The sweep's per-image rows (with the attacks' wall times on this machine) as the run's
    ``data/<run>/adaptive_rows.csv``."""
    return write_csv(rows, Path(data_dir) / name)


def stated(params: dict[str, Any]) -> dict[str, Any]:
    """The run's adaptive settings, for the notebook's header and the README."""
    return {k: v for k, v in params.items() if k.startswith("adaptive_")} | {"profile": profiles.run_name(params)}
