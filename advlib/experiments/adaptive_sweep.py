"""Adaptive attacks against the paper's defences (notebook 05, beyond the paper).

For each L-inf budget ``eps`` (in 8-bit levels) and each attack of :data:`ATTACKS`, the same
normal images are attacked (:mod:`advlib.adaptive`), every adversarial is saved as a JPEG
quality-100 file (notebook 01's save path), read back and re-checked from the file, and then
judged by every defence on the file's pixels:

- detection: the paper's detector (SVM on the differences feature of all 38 operations, saved by
  notebook 03), the cheap detector (notebook 03's, shipped with advlib for the demo) and feature
  squeezing (threshold at ``target_fpr`` on the normal images);
- correction: label correction (is the reference label in the voted top-5 of the 26 JPEG and
  scaling operations?) and image correction (is it in the top-5 after JPEG at the heuristic's
  ``min`` quality?).

The reading, fixed before the results: an attack *defeats* a detector on an image when the image
is adversarial after saving and not flagged; it defeats a correction when the image is
adversarial after saving and the correction does not bring the reference label back into the
top-5. Rates are over all attacked images (``n_images``). A defence *breaks* at the smallest
budget where an adaptive attack defeats it on at least half of the images.

Work is done in shards, one per (attack, budget), written atomically under the store's
``adaptive/`` folder with a key of everything they depend on: a rerun recomputes nothing and an
interrupted run resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from .. import attacks, correct, detect, features, ops, paths, profiles, runtime
from ..attacks import adaptive
from ..dataset import read_table, save_dataset_image
from ..detect import detector_scores
from ..runtime import numerics_id
from ..runtime import progress as tqdm
from ..store import pixel_sha256, write_csv
from .correction import jpeg_top5
from .cost import cheap_detector_dir

#: The attacks of the sweep: name -> (adaptive?, what it targets, description).
ATTACKS: dict[str, tuple[bool, str, str]] = {
    "none": (False, "-", "the normal images themselves (false positives, clean accuracy)"),
    "pgd": (False, "-", "PGD on the top-5 margin, no knowledge of the defences (the non-adaptive baseline)"),
    "high_confidence": (True, "correction", "PGD with a 30-logit margin over the top-5 (the simplest adaptive attack)"),
    "eot_correction": (True, "correction", "EOT-PGD over the 26 JPEG and scaling operations, BPDA through JPEG"),
    "eot_kornia": (True, "correction", "the same EOT-PGD through kornia's differentiable JPEG approximation"),
    "detector_cheap": (True, "cheap detector", "C&W-style PGD through the cheap detector (exact gradients, BPDA JPEG)"),
    "detector_paper": (True, "paper detector",
                       "C&W-style PGD through a soft surrogate of the all-38 differences feature"),
}

#: Columns judged per image (bool): flagged by each detector, label restored by each correction.
DEFENCES = ("paper_detector", "cheap_detector", "feature_squeezing", "label_correction", "image_correction")


@dataclass
class Defences:
    """What judges the adversarials: the classifier, its detectors and the correction settings.

    ``paper`` / ``cheap``: :class:`advlib.Detector` objects (``paper`` on the ``diff`` feature of
    all operations); ``squeezing``: a fitted :class:`advlib.detect.FeatureSqueezing`;
    ``heuristic_qfs`` / ``groups``: image and label correction settings (notebook 04's).
    """

    classifier: torch.nn.Module
    paper: Any
    cheap: Any
    squeezing: Any
    heuristic_qfs: list[int]
    groups: list[str]
    batch_size: int = 16
    workers: int = 0

    def key(self) -> str:
        """What a judgement depends on (the detectors' metadata and thresholds, the settings)."""
        def what(det) -> dict:  # the detector itself, not the name or parameters of the run that saved it
            return {k: v for k, v in det.describe().items() if k not in ("run", "params_hash")}

        return paths.fingerprint(what(self.paper), what(self.cheap), float(self.squeezing.threshold_),
                                  self.heuristic_qfs, self.groups)

    def judge(self, images: torch.Tensor, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Per image, bool: flagged by each detector, reference label back in the top-5 after each
        correction, and ``top5_clean`` (the label in the top-5 with no defence)."""
        names = list(ops.OPERATIONS)
        top5 = np.asarray(features.top5_under_ops(self.classifier, images, names, batch_size=self.batch_size,
                                                  workers=self.workers, progress=False))
        after = top5[:, 1:]
        cols = [0] + [1 + names.index(n) for n in self.paper.op_names]  # the paper detector's passes
        paper_x = self.paper.features_of(top5[:, cols])
        paper_flag = detector_scores(self.paper.fitted_estimator(), paper_x) >= self.paper.threshold
        voted, s_qf, _ = correct.heuristic_steps(after, names, self.heuristic_qfs, groups=self.groups)
        qf = correct.choose_qf(s_qf, "min", fallback_qf=min(self.heuristic_qfs))
        return {"top5_clean": correct.top5_correct(top5[:, 0], labels),
                "paper_detector": paper_flag,
                "cheap_detector": self.cheap.detect(images),
                "feature_squeezing": np.asarray(self.squeezing.predict(images)).astype(bool),
                "label_correction": correct.label_correction_success(
                    correct.label_correction(after, names, self.groups), labels),
                "image_correction": correct.top5_correct(jpeg_top5(after, names, qf), labels),
                "image_correction_qf": np.asarray(qf)}


def run_attack(name: str, classifier, images: torch.Tensor, labels: np.ndarray, eps_levels: float, d: Defences, *,
               steps: int, eot: int, seed: int, batch_size: int):
    """One attack of :data:`ATTACKS` at ``eps_levels`` / 255: an :class:`advlib.attacks.pgd.AdaptiveOutcome`
    (``none``: None)."""
    eps = eps_levels / 255
    kw = dict(steps=steps, seed=seed, batch_size=batch_size)
    if name == "pgd":
        return adaptive.attack_pgd(classifier, images, labels, eps, **kw)
    if name == "high_confidence":
        return adaptive.attack_high_confidence(classifier, images, labels, eps, **kw)
    if name == "eot_correction":
        return adaptive.attack_correction(classifier, images, labels, eps, eot=eot, **kw)
    if name == "eot_kornia":
        return adaptive.attack_correction(classifier, images, labels, eps, eot=eot, jpeg="kornia", **kw)
    if name == "detector_cheap":
        return adaptive.attack_detector(classifier, d.cheap, images, labels, eps, **kw)
    if name == "detector_paper":
        return adaptive.attack_detector(classifier, d.paper, images, labels, eps, **kw)
    raise KeyError(f"unknown attack {name!r} (known: {', '.join(ATTACKS)})")


def shard(name: str, eps_levels: float, images: torch.Tensor, labels: np.ndarray, ids: list[str], d: Defences,
          folder: Path, *, steps: int, eot: int, seed: int, batch_size: int, threads: int = 0) -> pd.DataFrame:
    """One (attack, budget) shard: attack, save each adversarial as JPEG quality 100 under
    ``folder``, re-check the paper's criterion from the file, judge it by every defence; one
    row per image. Cached: the CSV (written last, atomically) marks the shard done. ``threads``:
    torch threads of the attack (0: torch's default; fixed, as the dataset's ``attack_threads``,
    so that the adversarials do not depend on the machine's core count)."""
    key = paths.fingerprint(name, eps_levels, steps, eot, seed, threads, [pixel_sha256(im) for im in images],
                             np.asarray(labels).tolist(), d.key(), numerics_id(), length=10)
    out = folder / name / f"eps{eps_levels:g}-{key}.csv"
    if out.exists():
        return read_table(out)
    with runtime.torch_threads(threads or None):
        outcome = run_attack(name, d.classifier, images, labels, eps_levels, d, steps=steps, eot=eot, seed=seed,
                             batch_size=batch_size) if name != "none" else None
    if outcome is None:
        files, pixels = [""] * len(images), images
        success = np.zeros(len(images), bool)
        l2, linf, seconds = np.zeros(len(images)), np.zeros(len(images), int), 0.0
    else:
        saved = [save_dataset_image(outcome.adversarial[i], folder / name / key / ids[i].replace("/", "_"), "jpeg")
                 for i in range(len(images))]
        files = [str(p.relative_to(folder)) for p, _ in saved]
        pixels = torch.stack([px for _, px in saved])
        if not torch.equal(pixels, outcome.saved):
            raise RuntimeError(f"{name} eps {eps_levels}: the saved files decode to other pixels than the attack's")
        success = attacks.is_adversarial(d.classifier, pixels, torch.as_tensor(labels), batch_size=batch_size)
        l2, linf, seconds = outcome.l2, outcome.linf, outcome.seconds
    judged = d.judge(pixels, np.asarray(labels))
    adaptive, target, _ = ATTACKS[name]
    rows = pd.DataFrame({"image_id": ids, "attack": name, "adaptive": adaptive, "target": target,
                         "eps_levels": eps_levels, "path": files, "label": np.asarray(labels),
                         "success_saved": success, "l2": l2, "linf": linf,
                         "seconds_per_image": seconds / max(1, len(images)), **judged})
    write_csv(rows, out)
    return read_table(out)


def sweep(images: torch.Tensor, labels: np.ndarray, ids: list[str], d: Defences, folder: Path, *,
          eps_levels: list[float], attacks: list[str], surrogate_eps: list[float], steps: int, eot: int,
          kornia_eps: list[float] | None = None, surrogate_n: int | None = None,
          seed: int, batch_size: int, threads: int = 0, progress: bool = True,
          on_error: Callable | None = None) -> pd.DataFrame:
    """Every attack of ``attacks`` at every budget of ``eps_levels`` (``detector_paper`` only at
    ``surrogate_eps`` and on the first ``surrogate_n`` images (None: all), it costs 39 passes per
    step; ``eot_kornia`` only at ``kornia_eps``, None: all), plus the normal images (``none``). Returns
    one row per (attack, budget, image). A failing shard is reported (``on_error(name, eps,
    exc)``, default print) and the others go on."""
    only = {"detector_paper": surrogate_eps, "eot_kornia": eps_levels if kornia_eps is None else kornia_eps}
    jobs = [("none", 0.0)] + [(a, e) for a in attacks for e in eps_levels if e in only.get(a, eps_levels)]
    parts, failed = [], []
    for name, eps in tqdm(jobs, desc="adaptive attacks", disable=not progress):
        try:
            n = surrogate_n if name == "detector_paper" and surrogate_n else len(images)
            parts.append(shard(name, eps, images[:n], labels[:n], ids[:n], d, folder, steps=steps, eot=eot,
                               seed=seed, batch_size=batch_size, threads=threads))
        except Exception as e:  # noqa: BLE001 - a failing shard must not stop the others
            failed.append((name, eps, repr(e)))
            (on_error or (lambda n, x, err: print(f"adaptive shard {n} eps {x} failed: {err!r}")))(name, eps, e)
    if failed:
        print(f"{len(failed)} adaptive shard(s) failed: {failed}")
    return pd.concat(parts, ignore_index=True)


def summary(rows: pd.DataFrame, groups: pd.Series | None = None) -> pd.DataFrame:
    """One row per (attack, budget): success after saving, the share of attacked images that each
    defence lets through (``defeats_*``: adversarial after saving and not flagged / not
    restored), detection rates and restored rates among the successful adversarials, median
    perturbation, ``n_images`` and ``n_photos`` (``groups``: source photo per ``image_id``). The
    attacks' wall times stay in ``rows`` (``seconds_per_image``): a recomputed table is the same
    file on any machine."""
    out = []
    for (name, eps), g in rows.groupby(["attack", "eps_levels"], sort=False):
        s = g["success_saved"].astype(bool).to_numpy()
        r = {"attack": name, "adaptive": bool(g["adaptive"].iloc[0]), "target": g["target"].iloc[0],
             "eps_levels": eps, "n_images": len(g),
             "n_photos": int(g["image_id"].map(groups).nunique()) if groups is not None else len(g),
             "success_saved_pct": 100 * s.mean(), "n_success": int(s.sum()),
             "median_linf": float(g["linf"].median()), "median_l2": float(g["l2"].median())}
        for col in ("paper_detector", "cheap_detector", "feature_squeezing"):
            flag = g[col].astype(bool).to_numpy()
            r[f"{col}_flagged_pct"] = 100 * flag.mean()  # of all images (false positives for 'none')
            r[f"{col}_detects_pct"] = 100 * flag[s].mean() if s.any() else np.nan
            r[f"defeats_{col}_pct"] = 100 * (s & ~flag).mean()
        for col in ("label_correction", "image_correction"):
            ok = g[col].astype(bool).to_numpy()
            r[f"{col}_accuracy_pct"] = 100 * ok.mean()  # label in the top-5 after the correction, all images
            r[f"{col}_restores_pct"] = 100 * ok[s].mean() if s.any() else np.nan
            r[f"defeats_{col}_pct"] = 100 * (s & ~ok).mean()
        out.append(r)
    return pd.DataFrame(out)


def breaking_budget(table: pd.DataFrame, defence: str, attacks: list[str], threshold: float = 50.0) -> float | None:
    """The smallest budget (8-bit levels) at which one of ``attacks`` defeats ``defence`` on at
    least ``threshold`` % of the attacked images (``defeats_<defence>_pct``); None if none does."""
    col = f"defeats_{defence}_pct"
    hit = table[table["attack"].isin(attacks) & (table[col] >= threshold)]
    return float(hit["eps_levels"].min()) if len(hit) else None


def pick_images(manifest: pd.DataFrame, classifier: str, n: int, seed: int) -> pd.DataFrame:
    """``n`` normal images of ``classifier``, one per source photo, drawn with ``seed`` (in manifest
    order): the images the sweep attacks."""
    normal = manifest[(manifest["kind"] == "normal") & (manifest["classifier"] == classifier)]
    firsts = normal.drop_duplicates("source")
    order = np.random.default_rng(seed).permutation(len(firsts))[:n]
    return firsts.iloc[np.sort(order)]


def load_defences(params: dict[str, Any], dirs: dict[str, Path], classifier: Any, normal_images: torch.Tensor,
                  device: str) -> Defences:
    """The defences notebook 03 trained for this run: the saved all-38 detector
    (``models/detector_svm_diff_all``), the cheap detector (:func:`advlib.experiments.cheap_detector_dir`),
    feature squeezing fitted at ``target_fpr`` on ``normal_images``, and notebook 04's correction settings."""
    paper_dir = dirs["models"] / "detector_svm_diff_all"
    meta = detect.read_meta(paper_dir)
    bs = params["batch_size"]
    paper_det = detect.Detector.from_estimator(classifier, detect.load_detector(paper_dir), feature=meta["feature"],
                                               ops=meta["group"], threshold=meta["threshold"], meta=meta, batch_size=bs)
    cheap_det = detect.Detector.load(cheap_detector_dir(profiles.run_name(params), params["classifiers"][0],
                                                        dirs["models"]), classifier, batch_size=bs)
    squeezer = detect.FeatureSqueezing(classifier, device=device, batch_size=bs, fpr=params["target_fpr"])
    squeezer.fit(normal_images)
    return Defences(classifier, paper_det, cheap_det, squeezer, params["heuristic_qfs"], params["correction_groups"],
                    batch_size=bs, workers=params["workers"])


def breaking_table(table: pd.DataFrame, adaptive_attacks: list[str], baseline: str = "pgd") -> pd.DataFrame:
    """Per defence (:data:`DEFENCES`): the budget at which an adaptive attack breaks it and the one
    at which ``baseline`` does (:func:`breaking_budget`), and the strongest adaptive attack."""
    fmt = lambda v: "never" if v is None else f"{v:g}/255"  # noqa: E731
    lines = []
    for defence in DEFENCES:
        best = table[table.attack.isin(adaptive_attacks)].sort_values(f"defeats_{defence}_pct").iloc[-1]
        lines.append({"defence": defence, "breaks_adaptive": fmt(breaking_budget(table, defence, adaptive_attacks)),
                      "breaks_non_adaptive": fmt(breaking_budget(table, defence, [baseline])),
                      "strongest_attack": best.attack, "at_eps": f"{best.eps_levels:g}/255",
                      "defeated_pct": round(best[f"defeats_{defence}_pct"], 1)})
    return pd.DataFrame(lines)


def write_rows(rows: pd.DataFrame, data_dir: Path) -> Path:
    """The sweep's per-image rows (with the attacks' wall times on this machine) as the run's
    ``data/<run>/adaptive_rows.csv``."""
    return write_csv(rows, Path(data_dir) / "adaptive_rows.csv")
