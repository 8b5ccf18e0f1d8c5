"""Building the dataset (notebook 01): the normal images, the attack shards (resumable, keyed, in
process or as submitit jobs), the manifest, and the dataset's images under the operations."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import attacks, cluster, corpora, features, models, ops, runtime
from ..images import SIZE, load_image, psnr_ssim
from ..store import as_saved, image_format, pixel_sha256, save_image, write_csv
from .spec import (
    DatasetSpec,
    Shard,
    candidate_items,
    normal_table_path,
    plan_shards,
    read_table,
    shard_seed,
)


def save_dataset_image(image: torch.Tensor, stem: Path, save_format: str) -> tuple[Path, torch.Tensor]:
    """Save a normal or adversarial uint8 image (3, 224, 224) as ``stem`` + the format's suffix
    (atomically) and read it back: returns ``(path, pixels as read from the file)``, the pixels
    :func:`advlib.store.as_saved` predicts."""
    suffix, quality = image_format(save_format)
    path = stem.with_name(stem.name + suffix)
    save_image(image, path, quality=quality)
    return path, load_image(path)


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
        with executor.batch():  # one SLURM job array
            jobs = [(str(s.path(root).relative_to(root)), executor.submit(run_shard, spec, s)) for s in todo]
        print(f"{len(jobs)} attack shard job(s) submitted (logs: {executor.folder})")
        failures += [{"shard": f["job"], "error": f["error"]} for f in cluster.wait(jobs, progress, "attack shards")]
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


def feature_job(spec: DatasetSpec, classifier: str, rel_paths: list[str], op_names: list[str], stats: bool,
                threads: int) -> int:
    """A job of :func:`under_ops` with an executor: the top-5 (and ``stats``) of ``classifier`` under
    ``op_names`` for the images at ``rel_paths`` (relative to ``spec.store``), written to the
    top-5 cache of ``data/<profile>/cache``. Runs on ``threads`` torch threads (the submitting
    process's: the cache is keyed by the thread count). Returns the number of images."""
    torch.set_num_threads(threads)
    device = runtime.resolve_device(spec.device)
    model = models.load_classifier(classifier, device)
    features.outputs_under_ops(model, load_images(spec.store, rel_paths), op_names, batch_size=spec.batch_size,
                               device=device, cache_dir=spec.store / "cache", classifier=classifier,
                               workers=spec.workers, progress=False, stats=stats)
    return len(rel_paths)


def _feature_jobs(spec: DatasetSpec, manifest: pd.DataFrame, op_names: list[str], stats: bool, executor: Any,
                  progress: bool) -> list[dict[str, str]]:
    """The images not yet in the top-5 cache (by the manifest's pixel ``sha256``: no image is read
    here), ``spec.shard_size`` per job of ``executor``, per classifier; returns the failed jobs
    (their images are then computed in this process)."""
    threads = torch.get_num_threads()
    jobs = []
    with executor.batch():
        for clf in spec.classifiers:
            rows = manifest[manifest["classifier"] == clf]
            if rows.empty:
                continue
            rel = rows["path"].tolist()
            missing = features.missing_from_cache(rows["sha256"].tolist(), op_names, spec.store / "cache", clf,
                                                  spec.batch_size, stats)
            todo = [rel[i] for i in missing]
            for start in range(0, len(todo), spec.shard_size):
                chunk = todo[start:start + spec.shard_size]
                jobs.append((f"{clf}: images {start}-{start + len(chunk) - 1} of {len(todo)}",
                             executor.submit(feature_job, spec, clf, chunk, op_names, stats, threads)))
    print(f"{len(jobs)} feature-pass job(s) submitted (logs: {executor.folder})")
    return cluster.wait(jobs, progress, "feature-pass jobs")


def under_ops(spec: DatasetSpec, manifest: pd.DataFrame, *, stats: bool = False, progress: bool = True,
              executor: Any = None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The manifest's images classified before and after every operation of the run (``spec.ops``,
    default all 38): ``(top5, stats, op_names)`` aligned with the manifest rows, ``top5`` int
    (len(manifest), 1 + n_ops, 5) (index 0: the image itself), ``stats`` float (len(manifest),
    n_ops, 2) with ``stats`` (:data:`advlib.features.STATS`: the softmax probability of the
    image's top-1 label and the shift of the softmax vector, from the same passes) else None.
    Per classifier with :func:`advlib.features.outputs_under_ops`, cached in
    ``data/<profile>/cache`` so notebooks 02-05 share one extraction. ``executor`` (a submitit
    executor, :func:`advlib.cluster.make_executor`): the images missing from the cache are first
    computed by jobs (:func:`feature_job`, ``spec.shard_size`` images each), then read here; the
    images of a failed job are computed in this process."""
    store = spec.store
    device = runtime.resolve_device(spec.device)
    op_names = list(spec.ops or ops.OPERATIONS)
    if executor is not None:
        for f in _feature_jobs(spec, manifest, op_names, stats, executor, progress):
            print(f"feature-pass job failed ({f['job']}): {f['error']}; its images are computed here")
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
