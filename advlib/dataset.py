"""The normal/adversarial dataset of paper section 2 (Tables 1 and 2), built in resumable shards.

Layout of ``data/<profile>/``::

    normal/<classifier>-<key>.csv                         the normal images of one classifier
    normal/<classifier>-<key>/<image_id>.jpg              normal images as saved
    shards/<classifier>/<attack>/<chunk>-<key>.csv        one finished shard: one row per attacked image
    shards/<classifier>/<attack>/<chunk>-<key>.attempts.csv  its attempt log: one row per image per setting
    adversarial/<classifier>/<attack>/<key>/<id>.jpg      adversarial images as saved
    attacked.csv                                        every attacked image (all shards' rows)
    attempts.csv                                        every setting tried on every image
    manifest.csv                                        the dataset: normal + adversarial that survived saving
    failures.csv                                        shards that failed, with their error

The first four live in the profile's store (``data/<profile>/``) and carry a ``<key>``: a hash
of every parameter (and :data:`VERSION`) that determines them (:func:`normal_key`,
:func:`shard_key`). A changed parameter gives new keys for exactly the artefacts it affects, so
they are recomputed and the rest is reused; an unchanged rerun recomputes nothing. The last four
are the run's outputs, in ``data/<run>/`` (:func:`advlib.profiles.run_name`: the profile's name
unless the parameters differ from its file). Paths in the tables are relative to the store.

Normal and adversarial images are stored in one format, the profile's ``save_format``
(``.jpg``: JPEG quality 100, 4:2:0; ``.png``: lossless; :func:`advlib.store.image_format`), so
a detector cannot tell them apart by the file format. Normal images are selected (label in the
top-5) as read back from their file, and the attacks start from that file.

An adversarial image is kept when, read back from its file, the attack's criterion holds and
its reference label (column ``label``: the ImageNet ground truth where known, else the normal
image's top-1) is not in the top-5.

Work is sharded by (classifier, attack, chunk of images). A shard writes its images, then its
attempt log, then its CSV, each atomically; a rerun skips shards whose CSV exists, so an
interrupted run resumes and a rerun with the same seed gives the same manifest. A failing shard
is recorded and the others go on. Paper scale can run the shards on a SLURM cluster through
submitit (see :func:`build`).
"""

from __future__ import annotations

import hashlib
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import corpora, models, paths, profiles, runtime
from .images import SIZE, load_image, psnr_ssim
from .store import as_saved, image_format, pixel_sha256, save_image, write_csv

SPLITS = ("train", "dev", "eval")

#: Version of the selection and attack code, part of every cache key: bump it when a change to
#: ``dataset``, ``attacks`` or ``data`` can change a normal image, an adversarial image or a row.
VERSION = 3

#: Profile keys that determine the normal images of a classifier (with the classifier's name).
NORMAL_KEYS = ("corpus", "imagenet_dir", "imagenet_labels", "n_candidates", "n_normal", "crops_per_photo",
               "save_format", "seed", "batch_size", "attack_threads")


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the dataset stage depends on (the profile keys of notebook 01, by name).

    ``profile``: the profile's name (keyed artefacts go to its store, ``data/<profile>``);
    ``run``: the run's name (:func:`advlib.profiles.run_name`; its tables go to ``data/<run>``).
    ``corpus``: a name of :data:`advlib.corpora.CORPORA`, called with this spec; ``attacks``: names
    of :data:`advlib.attacks.ATTACKS` with per-attack keyword ``attack_options``. The other
    fields are documented in :data:`advlib.profiles.SCHEMA`. :meth:`from_profile` builds one from
    a loaded profile.
    """

    classifiers: list[str]
    attacks: list[str]
    profile: str = "custom"
    run: str = ""
    corpus: str = "demo"
    imagenet_dir: str | None = None
    imagenet_labels: str | None = None
    n_candidates: int = 100
    n_normal: int = 100
    crops_per_photo: int = 1
    attack_options: dict = field(default_factory=dict)
    attacks_per_image: int = 0
    save_format: str = "jpeg"
    split: list = field(default_factory=lambda: [0.6, 0.2, 0.2])
    shard_size: int = 8
    seed: int = 0
    device: str = "auto"
    batch_size: int = 0
    workers: int = 0
    attack_threads: int = 0
    ops: list | None = None

    @classmethod
    def from_profile(cls, params: dict[str, Any]) -> "DatasetSpec":
        """The dataset keys of a loaded profile (:func:`advlib.profiles.load_profile`)."""
        names = {f.name for f in fields(cls)} - {"run"}
        return cls(run=profiles.run_name(params), **{k: params[k] for k in names if k in params})

    @property
    def store(self) -> Path:
        """``data/<profile>`` (created): the keyed images, shards and top-5 cache of the profile."""
        return paths.store_dir(self.profile)

    @property
    def data_dir(self) -> Path:
        """``data/<run>`` (created): this run's manifest, attacked and attempt tables."""
        return profiles.out_dirs(self.run or self.profile)["data"]


@dataclass(frozen=True)
class Shard:
    classifier: str
    attack: str
    chunk: int
    image_ids: tuple[str, ...]
    key: str = ""  #: :func:`shard_key`: what the shard's result depends on

    def path(self, root: Path) -> Path:
        """The shard CSV (one row per attacked image); its existence marks the shard done."""
        return root / "shards" / self.classifier / self.attack / f"{self.chunk:04d}-{self.key}.csv"

    def attempts_path(self, root: Path) -> Path:
        """The shard's attempt log (one row per image per strength setting tried)."""
        return root / "shards" / self.classifier / self.attack / f"{self.chunk:04d}-{self.key}.attempts.csv"

    def image_folder(self, root: Path) -> Path:
        """Where the shard's adversarial images are saved (one folder per key: files of a stale
        shard are never overwritten by a shard computed with other parameters)."""
        return root / "adversarial" / self.classifier / self.attack / self.key


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a dataset CSV with stable dtypes (empty strings stay strings)."""
    return pd.read_csv(path, keep_default_na=False, dtype={"strength": str, "split": str})


def _seed(*parts: Any) -> int:
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def shard_seed(spec: DatasetSpec, shard: "Shard") -> int:
    """The seed of one shard's attack (PGD's random start): from the profile seed and the shard."""
    return _seed(spec.seed, shard.classifier, shard.attack, shard.chunk)


# --------------------------------------------------------------------------- image files

def save_dataset_image(image: torch.Tensor, stem: Path, save_format: str) -> tuple[Path, torch.Tensor]:
    """Save a normal or adversarial uint8 image (3, 224, 224) as ``stem`` + the format's suffix
    (atomically) and read it back: returns ``(path, pixels as read from the file)``, the pixels
    :func:`advlib.store.as_saved` predicts."""
    suffix, quality = image_format(save_format)
    path = stem.with_name(stem.name + suffix)
    save_image(image, path, quality=quality)
    return path, load_image(path)


# --------------------------------------------------------------------------- normal images

def candidate_items(spec: DatasetSpec) -> list[corpora.Item]:
    """The candidate inputs of a profile, in a seeded order (its corpus of :data:`advlib.corpora.CORPORA`)."""
    items = corpora.CORPORA[spec.corpus](spec)
    order = np.random.default_rng(spec.seed).permutation(len(items))
    return [items[i] for i in order[: spec.n_candidates]]


def normal_key(spec: DatasetSpec, classifier: str) -> str:
    """The key of a classifier's normal images: a hash of :data:`NORMAL_KEYS`, the resolved
    device, the numerics (:func:`advlib.runtime.numerics_id`), the classifier and :data:`VERSION`
    (what the selection depends on)."""
    return paths.fingerprint(VERSION, classifier, runtime.resolve_device(spec.device), runtime.numerics_id(),
                              {k: getattr(spec, k) for k in NORMAL_KEYS})


def normal_table_path(spec: DatasetSpec, classifier: str) -> Path:
    """The normal-image table of ``classifier`` under the current parameters (in the store)."""
    return spec.store / "normal" / f"{classifier}-{normal_key(spec, classifier)}.csv"


def _check_cached_normal(table: pd.DataFrame, spec: DatasetSpec, path: Path) -> pd.DataFrame:
    """A cached normal table must match the profile's file format and have today's columns."""
    suffix = image_format(spec.save_format)[0]
    stale = "l2" not in table.columns or not table["path"].astype(str).str.endswith(suffix).all()
    if stale:
        raise ValueError(f"{path} was written by an older version or another save_format (expected "
                         f"'{suffix}' files and an 'l2' column): delete {path.parent} and rerun")
    return table


def build_normal(spec: DatasetSpec, classifier: str, model: torch.nn.Module, device: str) -> pd.DataFrame:
    """Select and save the normal images of one classifier; return their table (cached).

    Every candidate is judged as it will be stored: encoded in the profile's ``save_format``
    and decoded; the paper's selection (label in the top-5) and the recorded ``top1`` (and
    ``label`` of ``label_source == 'top1'`` items) come from those pixels. The first
    ``n_normal`` selected are written with :func:`save_dataset_image` and read back (the
    attacks start from these files).
    """
    root = spec.store
    out = normal_table_path(spec, classifier)
    if out.exists():
        return _check_cached_normal(read_table(out), spec, out)
    with runtime.torch_threads(spec.attack_threads or None):
        return _build_normal(spec, classifier, model, root, out)


def _build_normal(spec: DatasetSpec, classifier: str, model: torch.nn.Module, root: Path, out: Path) -> pd.DataFrame:
    fmt = spec.save_format
    items = candidate_items(spec)
    images, items, failures = corpora.read_images(items, progress=True)
    for path, msg in failures:
        print(f"skipped unreadable image: {msg}")
    saved = torch.stack([as_saved(im, fmt) for im in images]) if len(images) else images
    top5 = models.predict_topk(model, saved, 5, spec.batch_size)
    keep = np.flatnonzero(corpora.select_normal(top5, items))[: spec.n_normal]
    rows = []
    for i in keep:
        it = items[i]
        path, pixels = save_dataset_image(images[i], out.with_suffix("") / it.image_id, fmt)
        if not torch.equal(pixels, saved[i]):
            raise RuntimeError(f"{path}: the file decodes to other pixels than the ones selected")
        rows.append({
            "image_id": f"{classifier}/{it.image_id}", "source_id": f"{classifier}/{it.image_id}",
            "source": it.source, "classifier": classifier, "attack": "none", "kind": "normal",
            "path": str(path.relative_to(root)), "label": it.label, "label_source": it.label_source,
            "top1": int(top5[i, 0]), "target": -1, "success_raw": False, "success_rounded": False,
            "success_saved": False, "psnr": np.inf, "ssim": 1.0, "l2": 0.0, "linf": 0, "strength": "",
            "sha256": pixel_sha256(pixels), "package": it.package, "licence": it.licence,
        })
    write_csv(pd.DataFrame(rows), out)
    return read_table(out)


def load_images(root: Path, paths) -> torch.Tensor:
    """Read dataset image files (relative to ``root``) as a uint8 (N, 3, 224, 224) stack."""
    return torch.stack([load_image(root / p) for p in paths]) if len(paths) else \
        torch.empty(0, 3, SIZE, SIZE, dtype=torch.uint8)


# --------------------------------------------------------------------------- shards

def assign_attacks(n_images: int, attacks: list[str], per_image: int) -> list[list[str]]:
    """Attacks run on each image: all (``per_image`` 0) or a rotating subset of ``per_image``."""
    if per_image <= 0 or per_image >= len(attacks):
        return [list(attacks) for _ in range(n_images)]
    return [[attacks[(i * per_image + j) % len(attacks)] for j in range(per_image)] for i in range(n_images)]


def shard_key(spec: DatasetSpec, classifier: str, attack: str, chunk: int, normal: pd.DataFrame) -> str:
    """The key of one shard: a hash of what its result depends on: its images (ids, pixel
    hashes, labels, top-1), the attack and its options, the file format, the seed, the batch
    size, ``attack_threads``, the resolved device, the numerics (:func:`advlib.runtime.numerics_id`)
    and :data:`VERSION`. ``normal``: the shard's rows of the normal table."""
    images = normal[["image_id", "sha256", "label", "top1"]].astype(str).to_numpy().tolist()
    return paths.fingerprint(VERSION, classifier, attack, chunk, images, spec.attack_options.get(attack, {}),
                              spec.save_format, spec.seed, spec.batch_size, spec.attack_threads,
                              runtime.resolve_device(spec.device), runtime.numerics_id())


def plan_shards(spec: DatasetSpec, normal: pd.DataFrame, classifier: str) -> list[Shard]:
    """The (classifier, attack, chunk) shards of one classifier's normal images, with their keys."""
    per_attack: dict[str, list[str]] = {a: [] for a in spec.attacks}
    for image_id, attacks in zip(normal["image_id"], assign_attacks(len(normal), spec.attacks,
                                                                    spec.attacks_per_image)):
        for a in attacks:
            per_attack[a].append(image_id)
    shards = []
    size = spec.shard_size
    by_id = normal.set_index("image_id")
    for attack, ids in per_attack.items():
        for c in range(0, len(ids), size):
            rows = by_id.loc[ids[c:c + size]].reset_index()
            shards.append(Shard(classifier, attack, c // size, tuple(ids[c:c + size]),
                                shard_key(spec, classifier, attack, c // size, rows)))
    return shards


#: Columns of the attempt logs (``<chunk>.attempts.csv``, ``attempts.csv``).
ATTEMPT_COLUMNS = ["image_id", "source_id", "classifier", "attack", "kind", "rung", "strength",
                   "success_raw", "success_rounded", "success_saved", "l2", "linf"]


def _attempt_rows(outcome: Any, normal: pd.DataFrame, shard: Shard, kind: str) -> pd.DataFrame:
    """The shard's attempt log: ``outcome.attempts`` with the image's ids (one row per image per
    setting tried; ``success_saved`` from the in-memory save round trip; ``l2`` on the [0, 1]
    scale and ``linf`` in 8-bit levels, rounded image against the saved normal image)."""
    ids = normal.index.to_list()
    rows = [{"image_id": f"{ids[a['index']]}/{shard.attack}", "source_id": ids[a["index"]],
             "classifier": shard.classifier, "attack": shard.attack, "kind": kind, "rung": a["rung"],
             "strength": str(a["strength"]), "success_raw": a["success_raw"],
             "success_rounded": a["success_rounded"], "success_saved": a["success_saved"],
             "l2": a["l2"], "linf": a["linf"]} for a in outcome.attempts]
    return pd.DataFrame(rows, columns=ATTEMPT_COLUMNS)


def run_shard(spec: DatasetSpec, shard: Shard, model: torch.nn.Module | None = None) -> pd.DataFrame:
    """Attack one shard's images, save the results, re-check them from the saved files.

    The attacks start from the saved normal files, steer by their ``top1`` and must also push the
    reference ``label`` out of the top-5; the seed is :func:`shard_seed`. Writes the images,
    then the attempt log, then the shard CSV (each atomically; the CSV last: a shard with a CSV
    is done). Per image: ``success_raw/rounded`` at its final setting (from the attack),
    ``success_saved`` re-checked from the file, and ``psnr`` (dB), ``ssim``, ``l2`` ([0, 1]
    scale, over all 3x224x224 values) and ``linf`` (8-bit levels) of the file's pixels against
    the saved normal image. Runs on ``attack_threads`` torch threads (fixed: the results do not
    depend on the machine's core count).
    """
    root = spec.store
    out = shard.path(root)
    if out.exists():
        return read_table(out)
    with runtime.torch_threads(spec.attack_threads or None):
        return _run_shard(spec, shard, model, root, out)


def _run_shard(spec: DatasetSpec, shard: Shard, model: torch.nn.Module | None, root: Path, out: Path) -> pd.DataFrame:
    from . import attacks

    device = runtime.resolve_device(spec.device)
    model = model if model is not None else models.load_classifier(shard.classifier, device)
    normal = read_table(normal_table_path(spec, shard.classifier)).set_index("image_id").loc[list(shard.image_ids)]
    images = load_images(root, normal["path"].tolist())
    labels = torch.tensor(normal["top1"].to_numpy())
    reference = torch.tensor(normal["label"].to_numpy())
    targeted = attacks.ATTACKS[shard.attack].targeted
    kind = "targeted" if targeted else "non-targeted"
    outcome = attacks.run_attack(shard.attack, model, images, labels, save_format=spec.save_format,
                                 device=device, batch_size=spec.batch_size, seed=shard_seed(spec, shard),
                                 reference=reference, **spec.attack_options.get(shard.attack, {}))
    folder = shard.image_folder(root)
    saved_files = [save_dataset_image(outcome.adversarial[i], folder / image_id.split("/", 1)[1],
                                      spec.save_format) for i, image_id in enumerate(normal.index)]
    saved = torch.stack([pixels for _, pixels in saved_files])  # the criterion is checked on the files
    targets = torch.as_tensor(outcome.target) if targeted else None
    ok_file = attacks.is_adversarial(model, saved, labels, targets, spec.batch_size, reference=reference)
    l2, linf = attacks.perturbation_norms(saved, images)
    rows = []
    for i, (image_id, row) in enumerate(normal.iterrows()):
        psnr, ssim = psnr_ssim(saved[i], images[i])
        rows.append({
            "image_id": f"{image_id}/{shard.attack}", "source_id": image_id, "source": row["source"],
            "classifier": shard.classifier, "attack": shard.attack, "kind": kind,
            "path": str(saved_files[i][0].relative_to(root)), "label": int(row["label"]),
            "label_source": row["label_source"], "top1": int(row["top1"]), "target": int(outcome.target[i]),
            "success_raw": bool(outcome.success_raw[i]), "success_rounded": bool(outcome.success_rounded[i]),
            "success_saved": bool(ok_file[i]), "psnr": psnr, "ssim": ssim, "l2": float(l2[i]),
            "linf": int(linf[i]), "strength": "" if outcome.strength[i] is None else str(outcome.strength[i]),
            "sha256": pixel_sha256(saved[i]),
        })
    write_csv(_attempt_rows(outcome, normal, shard, kind), shard.attempts_path(root))
    write_csv(pd.DataFrame(rows), out)
    return read_table(out)


# --------------------------------------------------------------------------- splits and manifest

def assign_splits(sources: list[str], fractions: list[float], seed: int) -> dict[str, str]:
    """Map each source photo to train/dev/eval (seeded), so no photo is in two splits."""
    uniq = sorted(set(sources))
    order = np.random.default_rng(seed).permutation(len(uniq))
    n = len(uniq)
    n_train = int(round(fractions[0] * n))
    n_dev = int(round(fractions[1] * n))
    split = {}
    for rank, i in enumerate(order):
        split[uniq[i]] = "train" if rank < n_train else ("dev" if rank < n_train + n_dev else "eval")
    return split


def table2(manifest: pd.DataFrame) -> pd.DataFrame:
    """Table 2: normal / adversarial / total / ratio per attack setting and split."""
    rows = []
    for setting, kinds in (("targeted", ["targeted"]), ("non-targeted", ["non-targeted"]),
                           ("combination", ["targeted", "non-targeted"])):
        for split in SPLITS:
            s = manifest[manifest["split"] == split]
            n_norm = int((s["kind"] == "normal").sum())
            n_adv = int(s["kind"].isin(kinds).sum())
            rows.append({"setting": setting, "split": split, "normal": n_norm, "adversarial": n_adv,
                         "total": n_norm + n_adv, "ratio": f"1:{n_adv / n_norm:.2f}" if n_norm else "-"})
    return pd.DataFrame(rows)


TABLE1_COLUMNS = ["classifier", "kind", "attack", "attacked", "success_raw", "success_rounded", "success_saved",
                  "median_l2", "median_linf", "median_psnr"]


def table1(attacked: pd.DataFrame, attack_order: list[str]) -> pd.DataFrame:
    """Table 1 from the per-image rows (``build(...)["attacked"]``), per classifier and attack.

    ``attacked``: images attacked. ``success_raw``, ``success_rounded``, ``success_saved``:
    images that succeed (attack criterion and reference label out of the top-5) on the float
    result, after 8-bit rounding, and read back from the saved file, all at each image's final
    strength. ``median_l2`` ([0, 1] pixel scale, over all 3x224x224 values), ``median_linf``
    (8-bit levels) and ``median_psnr`` (dB): medians over the kept images (``success_saved``)
    of the saved adversarial file against the saved normal image; NaN when none is kept.
    """
    if attacked.empty:
        return pd.DataFrame(columns=TABLE1_COLUMNS)
    keys = ["classifier", "attack"]
    t = attacked.groupby(keys).agg(
        attacked=("image_id", "size"), success_raw=("success_raw", "sum"),
        success_rounded=("success_rounded", "sum"), success_saved=("success_saved", "sum")).reset_index()
    kept = attacked[attacked["success_saved"].astype(bool)]
    medians = kept.groupby(keys).agg(median_l2=("l2", "median"), median_linf=("linf", "median"),
                                     median_psnr=("psnr", "median")).reset_index()
    t = t.merge(medians, on=keys, how="left")
    t["kind"] = t["attack"].map(attacked.drop_duplicates("attack").set_index("attack")["kind"])
    t["attack"] = pd.Categorical(t["attack"], attack_order, ordered=True)
    t = t.sort_values(keys).reset_index(drop=True)
    t["attack"] = t["attack"].astype(str)
    return t[TABLE1_COLUMNS]


# --------------------------------------------------------------------------- driver

def _concat(paths: list[Path], columns: list[str] | None = None) -> pd.DataFrame:
    """The CSVs that exist among ``paths``, concatenated (empty, with ``columns``, if none)."""
    parts = [read_table(p) for p in paths if p.exists()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def build(spec: DatasetSpec, executor: Any = None, progress: bool = True) -> dict[str, Any]:
    """Build the whole dataset of a profile; return its tables.

    Returns ``{"manifest", "attacked", "attempts", "failures"}``: the dataset (normal images and
    the adversarial images kept), one row per attacked image (``attacked.csv``; what Table 1
    counts), one row per strength setting tried on each image (``attempts.csv``), and the failed
    shards. ``executor``: ``None`` runs the shards here, in order; a ``submitit`` executor (for
    example ``submitit.AutoExecutor(folder=...)``, SLURM or local) runs them as jobs.
    """
    root, run = spec.store, spec.data_dir
    device = runtime.resolve_device(spec.device)
    normals, shards, failures = [], [], []
    loaded: dict[str, torch.nn.Module] = {}
    for clf in spec.classifiers:
        loaded[clf] = models.load_classifier(clf, device)
        normal = build_normal(spec, clf, loaded[clf], device)
        normals.append(normal)
        shards += plan_shards(spec, normal, clf)
    todo = [s for s in shards if not s.path(root).exists()]
    print(f"{len(shards)} shards, {len(shards) - len(todo)} already done, {len(todo)} to run")
    if executor is not None:
        jobs = [(s, executor.submit(run_shard, spec, s)) for s in todo]
        for s, job in runtime.progress(jobs, desc="attack shards", disable=not progress):
            try:
                job.result()
            except Exception as e:  # noqa: BLE001 - a failed shard must not stop the others
                failures.append({"shard": str(s.path(root).relative_to(root)), "error": repr(e)})
    else:
        for s in runtime.progress(todo, desc="attack shards", disable=not progress):
            try:
                run_shard(spec, s, loaded[s.classifier])
            except Exception as e:  # noqa: BLE001 - a failed shard must not stop the others
                traceback.print_exc()
                failures.append({"shard": str(s.path(root).relative_to(root)), "error": repr(e)})
    attacked = _concat([s.path(root) for s in shards])
    attempts = _concat([s.attempts_path(root) for s in shards if s.path(root).exists()], ATTEMPT_COLUMNS)
    normal = pd.concat(normals, ignore_index=True)
    adversarial = attacked[attacked["success_saved"].astype(bool)] if len(attacked) else attacked
    manifest = pd.concat([normal, adversarial], ignore_index=True)
    split = assign_splits(manifest["source"].tolist(), spec.split, spec.seed)
    manifest["split"] = manifest["source"].map(split)
    write_csv(attacked, run / "attacked.csv")
    write_csv(attempts, run / "attempts.csv")
    write_csv(manifest, run / "manifest.csv")
    write_csv(pd.DataFrame(failures, columns=["shard", "error"]), run / "failures.csv")
    if failures:
        print(f"{len(failures)} shard(s) failed (see {run / 'failures.csv'}):")
        for f in failures:
            print(f"  {f['shard']}: {f['error']}")
    return {"manifest": manifest, "attacked": attacked, "attempts": attempts,
            "failures": pd.DataFrame(failures, columns=["shard", "error"])}


def load_manifest(spec: DatasetSpec) -> pd.DataFrame:
    """The dataset manifest notebook 01 wrote for this run (``spec.data_dir``); stops with a
    message if it is missing. Its paths are relative to ``spec.store``."""
    path = spec.data_dir / "manifest.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run notebooks/01_dataset.ipynb with these parameters first")
    return read_table(path)


def top5_under_ops(spec: DatasetSpec, manifest: pd.DataFrame, progress: bool = True) -> tuple[np.ndarray, list[str]]:
    """Top-5 labels of every manifest image before and after every operation of the profile.

    Returns ``(top5, op_names)`` with ``top5`` int (len(manifest), 1 + n_ops, 5) aligned with the
    manifest rows (index 0: the image itself). Computed per classifier with
    :func:`advlib.features.top5_under_ops`, cached in ``data/<profile>/cache`` so notebooks
    02-04 share one extraction.
    """
    top5, _, op_names = _under_ops(spec, manifest, progress, stats=False)
    return top5, op_names


def outputs_under_ops(spec: DatasetSpec, manifest: pd.DataFrame, progress: bool = True
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """As :func:`top5_under_ops`, with the continuous stats of the same passes: returns
    ``(top5, stats, op_names)``, ``stats`` float (len(manifest), n_ops, 2)
    (:func:`advlib.features.outputs_under_ops`). Same cache."""
    return _under_ops(spec, manifest, progress, stats=True)


def _under_ops(spec: DatasetSpec, manifest: pd.DataFrame, progress: bool, stats: bool
               ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    from . import features, ops

    store = spec.store
    device = runtime.resolve_device(spec.device)
    op_names = list(spec.ops or ops.OPERATIONS)
    out = np.zeros((len(manifest), 1 + len(op_names), 5), dtype=np.int64)
    out_stats = np.zeros((len(manifest), len(op_names), len(features.STATS)), dtype=np.float32) if stats else None
    for clf in spec.classifiers:
        rows = np.flatnonzero(manifest["classifier"].to_numpy() == clf)
        if not len(rows):
            continue
        model = models.load_classifier(clf, device)
        images = load_images(store, manifest["path"].to_numpy()[rows].tolist())
        t, st = features.outputs_under_ops(model, images, op_names, batch_size=spec.batch_size, device=device,
                                           cache_dir=store / "cache", classifier=clf, workers=spec.workers,
                                           progress=progress, stats=stats)
        out[rows] = np.asarray(t)
        if stats:
            out_stats[rows] = st.numpy()
    return out, out_stats, op_names
