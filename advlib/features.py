"""Section 4's features: top-5 labels under the 38 operations, counting and differences.

:func:`top5_under_ops` classifies every image and its 38 operated versions (39 forward passes
per image), in large batches, with an on-disk cache that a rerun reuses and an interrupted run
resumes. :func:`counting` (eq. 1-2) and :func:`differences` (eq. 3) turn the top-5 lists into
features; :func:`feature_matrix` builds them for one operation group of Table 4.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import ops as _ops
from .models import check_logits, classifier_name, model_device
from .ops import VERSION
from .runtime import numerics_id, tune_allocator
from .runtime import progress as progress_bar
from .store import check_images, pixel_sha256, save_tensors

__all__ = ["top5_under_ops", "counting", "differences", "feature_matrix", "FEATURE_KINDS"]

FEATURE_KINDS = ("count", "diff")

#: Continuous features of the same forward passes (:func:`outputs_under_ops`'s ``stats``):
#: ``prob``: the softmax probability of the image's own top-1 label after each operation;
#: ``shift``: the L1 distance between the softmax vectors after and before each operation.
CONTINUOUS_KINDS = ("prob", "shift", "prob+shift")

#: Columns of ``stats`` (last axis).
STATS = ("prob", "shift")
TOPK = 5


# --------------------------------------------------------------------------- top-5 under ops

def _check_ops(ops: list[str] | None) -> list[str]:
    names = list(_ops.OPERATIONS) if ops is None else list(ops)
    for name in names:
        _ops.get(name)  # KeyError listing the known names
    if len(set(names)) != len(names):
        raise ValueError(f"ops contains duplicates: {names}")
    return names


def _version_buffers(n_images: int, height: int, width: int, ops: list[str], device: torch.device
                     ) -> dict[tuple[int, int], tuple[list[int], torch.Tensor]]:
    """Empty uint8 stacks for the versions of a chunk, grouped by size: (h, w) -> (columns,
    stack (len(columns) * n_images, 3, h, w)), column-major (rows k*n .. k*n + n-1 are column
    columns[k]). Channels-last on the CPU, where the classifier runs faster on that layout."""
    cols: dict[tuple[int, int], list[int]] = {(height, width): [0]}
    for col, name in enumerate(ops, start=1):
        cols.setdefault(_ops.output_size(name, height, width), []).append(col)
    groups = {}
    for (h, w), cs in cols.items():
        stack = torch.empty(len(cs) * n_images, 3, h, w, dtype=torch.uint8, device=device)
        if device.type == "cpu":
            stack = stack.contiguous(memory_format=torch.channels_last)
        groups[(h, w)] = (cs, stack)
    return groups


def _jpeg_ops(ops: list[str]) -> list[str]:
    return [name for name in ops if _ops.OPERATIONS[name].group == "jpeg"]


def _cpu_versions(images: torch.Tensor, ops: list[str], workers: int) -> list[torch.Tensor]:
    """The JPEG versions of a chunk (CPU uint8, in ``ops`` order): the part of the work that
    stays on the CPU when the classifier runs on a GPU."""
    jpeg = _jpeg_ops(ops)
    return _ops.apply_many(jpeg, images.cpu(), workers=workers) if jpeg else []


@torch.inference_mode()
def versions_by_size(images: torch.Tensor, ops: list[str], device: torch.device, workers: int,
                      buffers: dict | None = None, cpu_done: list[torch.Tensor] | None = None
                      ) -> dict[tuple[int, int], tuple[list[int], torch.Tensor]]:
    """The original (column 0) and operated (column 1 + i) versions of a chunk, grouped by
    size (see :func:`_version_buffers`), written into ``buffers`` when given (reused across
    chunks of the same shape: no allocation per chunk). ``cpu_done``: the chunk's JPEG versions
    computed ahead by :func:`_cpu_versions` (overlapped with the previous chunk's forward passes)."""
    n, _, h, w = images.shape
    groups = buffers if buffers is not None else _version_buffers(n, h, w, ops, device)
    where = {c: stack[k * n:(k + 1) * n] for cols, stack in groups.values() for k, c in enumerate(cols)}
    x = images.to(device)
    where[0].copy_(x)
    column = {name: 1 + i for i, name in enumerate(ops)}
    rest = ops
    if cpu_done is not None:
        jpeg = _jpeg_ops(ops)
        for name, version in zip(jpeg, cpu_done):
            where[column[name]].copy_(version)
        rest = [name for name in ops if name not in jpeg]
    if rest:
        _ops.apply_many(rest, x, workers=workers, out=[where[column[name]] for name in rest])
    return groups


@torch.inference_mode()
def classify_groups(model: nn.Module, groups: dict, n_images: int, n_cols: int, batch_size: int,
                     stats: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Top-5 (n_images, n_cols, 5) of :func:`versions_by_size`'s groups, ``batch_size`` at a
    time, and with ``stats`` the (n_images, n_cols - 1, 2) :data:`STATS` of each operation."""
    out = torch.empty(n_images, n_cols, TOPK, dtype=torch.long)
    probs, name = None, classifier_name(model)
    for cols, stack in groups.values():
        labels, p = [], []
        for start in range(0, len(stack), batch_size):  # channels-last stacks stay channels-last
            batch = stack[start:start + batch_size].float().div_(255)
            logits = check_logits(model(batch), len(batch), name)
            labels.append(logits.topk(TOPK, dim=1).indices.cpu())
            if stats:
                p.append(logits.float().softmax(1).cpu())
        out[:, cols] = torch.cat(labels).view(len(cols), n_images, TOPK).transpose(0, 1)
        if stats:
            p = torch.cat(p)
            probs = torch.empty(n_images, n_cols, p.shape[1]) if probs is None else probs
            probs[:, cols] = p.view(len(cols), n_images, -1).transpose(0, 1)
    if not stats:
        return out, None
    return out, softmax_stats(probs[:, 0], probs[:, 1:], out[:, 0, 0])


def softmax_stats(ref: torch.Tensor, after: torch.Tensor, top1: torch.Tensor) -> torch.Tensor:
    """:data:`STATS` of each operation: ``ref`` (N, C) softmax of the image, ``after`` (N, n_ops, C)
    softmax under each operation, ``top1`` (N,) the image's top-1 label -> (N, n_ops, 2): the
    probability of ``top1`` after the operation and the L1 distance ``|after - ref|``.
    Differentiable (:mod:`advlib.adaptive` uses it on the attack's graph)."""
    own = after.gather(2, top1.view(-1, 1, 1).expand(-1, after.shape[1], 1)).squeeze(2)
    shift = (after - ref[:, None]).abs().sum(2)
    return torch.stack([own, shift], dim=2)


def _top5_chunk(model: nn.Module, images: torch.Tensor, ops: list[str], batch_size: int,
                device: torch.device, workers: int, buffers: dict | None = None,
                cpu_done: list[torch.Tensor] | None = None, stats: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(c, 1 + len(ops), 5) top-5 labels of a chunk of c images (and their stats)."""
    groups = versions_by_size(images, ops, device, workers, buffers, cpu_done)
    return classify_groups(model, groups, len(images), 1 + len(ops), batch_size, stats)


def _cache_folder(cache_dir: str | os.PathLike, classifier: str, ops: list[str], batch_size: int) -> Path:
    """Where the top-5 of ``classifier`` under ``ops`` are cached: keyed by what the float32
    outputs depend on besides the pixels: the operations (and :data:`advlib.ops.VERSION`), the
    numerics (:func:`advlib.runtime.numerics_id`), the torch thread count and the batch size."""
    what = f"v{VERSION}:{','.join(ops)}:{numerics_id()}:t{torch.get_num_threads()}:b{batch_size}"
    digest = hashlib.sha256(what.encode()).hexdigest()[:16]
    return Path(cache_dir) / "top5" / classifier / f"ops-{len(ops)}-{digest}"


def _load_cache(folder: Path, ops: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    rows: dict[str, torch.Tensor] = {}
    stats: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("chunk-*.pt")):
        data = torch.load(shard, map_location="cpu", weights_only=True)
        if data["ops"] != ops:
            raise ValueError(f"{shard}: cached for other operations than requested")
        rows.update(zip(data["sha256"], data["top5"]))
        if "stats" in data:
            stats.update(zip(data["sha256"], data["stats"]))
    return rows, stats


def missing_from_cache(hashes: list[str], ops: list[str] | None, cache_dir: str | os.PathLike, classifier: str,
                       batch_size: int, stats: bool = False) -> list[int]:
    """Indices of the images with pixel SHA-256 ``hashes`` (:func:`advlib.store.pixel_sha256`, the
    manifest's ``sha256``) whose outputs under ``ops`` are not in the cache that
    :func:`outputs_under_ops` would read with these arguments (on this process's thread count
    and numerics): what is left to compute."""
    names = _check_ops(ops)
    rows, stat_rows = _load_cache(_cache_folder(cache_dir, classifier, names, batch_size), names)
    return [i for i, h in enumerate(hashes) if h not in rows or (stats and h not in stat_rows)]


def top5_under_ops(model: nn.Module, images: torch.Tensor, ops: list[str] | None = None, **kwargs) -> torch.Tensor:
    """Top-5 labels of every image before and after every operation: LongTensor (N, 1 + len(ops),
    5), as :func:`outputs_under_ops` (same keyword arguments and cache) without the stats."""
    return outputs_under_ops(model, images, ops, **kwargs)[0]


def outputs_under_ops(model: nn.Module, images: torch.Tensor, ops: list[str] | None = None, *,
                      batch_size: int = 64, device: str | torch.device | None = None,
                      cache_dir: str | os.PathLike | None = None, classifier: str | None = None,
                      workers: int = 0, progress: bool = True, overlap: bool | None = None,
                      stats: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Top-5 labels of every image before and after every operation (and, with ``stats``, the
    continuous :data:`STATS` of the same forward passes).

    ``model`` takes float (B, 3, H, W) pixels in [0, 1] and returns (B, 1000) logits;
    ``images`` is uint8 (N, 3, H, W). Returns a LongTensor (N, 1 + len(ops), 5) on the CPU:
    index 0 is the original image, index 1 + i is after ``ops[i]`` (``None``: all 38 in the
    paper's order). Images are processed ``batch_size`` at a time: their 1 + len(ops) versions
    are grouped by size and go through the model in batches of ``batch_size``. ``device``
    defaults to the model's; JPEG runs on the CPU with ``workers`` threads. On the CPU this
    calls :func:`advlib.runtime.tune_allocator` (glibc malloc thresholds, once per process).
    ``overlap`` (default: on for a GPU, off on the CPU) computes the next chunk's JPEG versions
    in a CPU thread while the current chunk is classified; on 2 CPU cores that thread competes
    with the classifier's own threads and was measured slower.

    With ``cache_dir``, results are cached per image (pixel SHA-256), ``classifier`` name
    (default ``model.name``) and operation list, one file per chunk written atomically: a rerun
    computes nothing and an interrupted run resumes with the missing images.

    Returns ``(top5, stats)``: ``stats`` is None without ``stats``, else float32
    (N, len(ops), 2): per operation, the softmax probability of the image's own top-1 label
    after it and the L1 distance between the softmax vectors after and before it. Computing
    them costs no extra pass; a cached chunk without them is recomputed when they are asked for.
    """
    check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    names = _check_ops(ops)
    device = torch.device(device) if device is not None else model_device(model)
    if device.type == "cpu":
        tune_allocator()
    n = len(images)
    result = torch.empty(n, 1 + len(names), TOPK, dtype=torch.long)
    result_stats = torch.empty(n, len(names), len(STATS)) if stats else None
    if n == 0:
        return result, result_stats

    rows: dict[str, torch.Tensor] = {}
    stat_rows: dict[str, torch.Tensor] = {}
    folder = None
    hashes = [pixel_sha256(im) for im in images] if cache_dir is not None else [str(i) for i in range(n)]
    if cache_dir is not None:
        classifier = classifier or getattr(model, "name", None)
        if not classifier:
            raise ValueError("cache_dir needs the classifier's name: pass classifier='...'")
        folder = _cache_folder(cache_dir, classifier, names, batch_size)
        rows, stat_rows = _load_cache(folder, names)

    todo, seen = [], set()
    for i, h in enumerate(hashes):
        if (h not in rows or (stats and h not in stat_rows)) and h not in seen:
            todo.append(i)
            seen.add(h)


    bar = progress_bar(total=len(todo), desc="top-5 under operations", unit="img", disable=not progress)
    chunk = min(batch_size, len(todo))  # one set of version buffers, reused by every full chunk
    buffers = _version_buffers(chunk, *images.shape[2:], names, device) if todo else None
    chunks = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]
    overlap = device.type != "cpu" if overlap is None else overlap
    ahead = ThreadPoolExecutor(1) if overlap and todo else None

    def jpeg_ahead(k: int):
        """Start chunk k's JPEG versions in the background (None: no overlap or no chunk k)."""
        if ahead is None or k >= len(chunks):
            return None
        return ahead.submit(_cpu_versions, images[chunks[k]], names, workers)

    pending = jpeg_ahead(0)
    try:
        for k, idx in enumerate(chunks):
            cpu_done = pending.result() if pending is not None else None
            pending = jpeg_ahead(k + 1)  # the next chunk's JPEG, while this one is classified
            top5, chunk_stats = _top5_chunk(model, images[idx], names, batch_size, device, workers,
                                            buffers if len(idx) == chunk else None, cpu_done, stats)
            chunk_hashes = [hashes[i] for i in idx]
            rows.update(zip(chunk_hashes, top5))
            if stats:
                stat_rows.update(zip(chunk_hashes, chunk_stats))
            if folder is not None:
                key = hashlib.sha256("".join(chunk_hashes).encode()).hexdigest()[:16]
                saved = {"sha256": chunk_hashes, "top5": top5, "ops": names, "classifier": classifier}
                if stats:
                    saved["stats"] = chunk_stats
                save_tensors(saved, folder / f"chunk-{key}{'-stats' if stats else ''}.pt")
            bar.update(len(idx))
    finally:
        if ahead is not None:
            ahead.shutdown(wait=True, cancel_futures=True)
        bar.close()
    for i, h in enumerate(hashes):
        result[i] = rows[h]
        if stats:
            result_stats[i] = stat_rows[h]
    return result, result_stats


# --------------------------------------------------------------------------- features

def label_array(x, name: str, ndim: int, last_dim: int | None = None) -> np.ndarray:
    """Class labels (a tensor or array of integers with ``ndim`` dimensions, the last of size
    ``last_dim`` when given) as int64 numpy, else ``ValueError`` naming ``name``. The one check of
    label arrays (top-5 lists, labels under operations, voted labels)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != ndim or not np.issubdtype(arr.dtype, np.integer) or (last_dim is not None and arr.shape[-1] != last_dim):
        last = f" with last dim {last_dim}" if last_dim is not None else ""
        raise ValueError(f"{name} must be an integer array with {ndim} dims{last}, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _pair(ref, after) -> tuple[np.ndarray, np.ndarray]:
    ref, after = label_array(ref, "ref", 2, TOPK), label_array(after, "after", 3, TOPK)
    if len(ref) != len(after):
        raise ValueError(f"ref has {len(ref)} images but after has {len(after)}")
    return ref, after


def counting(ref, after) -> np.ndarray:
    """Counting feature (eq. 1-2): int64 (N, 5), entry r = number of operations whose rank-r
    label equals the rank-r label before them. ``ref`` (N, 5), ``after`` (N, n_ops, 5)."""
    ref, after = _pair(ref, after)
    return (after == ref[:, None, :]).sum(axis=1).astype(np.int64)


def differences(ref, after) -> np.ndarray:
    """Differences feature (eq. 3): int64 (N, 5 * n_ops) of 0/1, 1 where the rank-r label
    changed; op-major (operation 1's five bits, then operation 2's ...)."""
    ref, after = _pair(ref, after)
    return (after != ref[:, None, :]).reshape(len(ref), -1).astype(np.int64)


def feature_matrix(top5, kind: str, group: str, ops: list[str] | None = None) -> np.ndarray:
    """The ``kind`` feature ("count" or "diff") of operation ``group`` (a key of ``ops.GROUPS``).

    ``top5`` is (N, 1 + len(ops), 5) from :func:`top5_under_ops` (``ops`` None: all 38).
    Counting is computed per base group (jpeg, blur, rotation, scaling, in the paper's
    operation order) and concatenated: 5 numbers per base group, 20 for ``all``, 10 for
    ``jpeg+scaling``. Differences concatenate the bits of the group's operations: 190 for all.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"kind must be one of {FEATURE_KINDS}, got {kind!r}")
    if group not in _ops.GROUPS:
        raise KeyError(f"unknown operation group {group!r} (known: {', '.join(_ops.GROUPS)})")
    names = _check_ops(ops)
    arr = label_array(top5, "top5", 3, TOPK)
    if arr.shape[1] != 1 + len(names):
        raise ValueError(f"top5 has {arr.shape[1]} columns, expected 1 + {len(names)} operations")
    missing = [n for n in _ops.GROUPS[group] if n not in names]
    if missing:
        raise ValueError(f"group {group!r} needs operations absent from top5: {missing}")
    ref = arr[:, 0]

    def cols(op_names: list[str]) -> np.ndarray:
        return arr[:, [1 + names.index(n) for n in op_names]]

    if kind == "diff":
        return differences(ref, cols(_ops.GROUPS[group]))
    bases = list(dict.fromkeys(_ops.OPERATIONS[n].group for n in _ops.GROUPS[group]))
    return np.concatenate([counting(ref, cols(_ops.GROUPS[b])) for b in bases], axis=1)


def continuous(stats, kind: str) -> np.ndarray:
    """The continuous feature ``kind`` of :data:`CONTINUOUS_KINDS` from ``stats`` (N, n_ops, 2):
    float64 (N, n_ops) for ``prob`` / ``shift``, (N, 2 * n_ops) op-major for ``prob+shift``."""
    arr = stats.detach().cpu().numpy() if isinstance(stats, torch.Tensor) else np.asarray(stats)
    if arr.ndim != 3 or arr.shape[2] != len(STATS):
        raise ValueError(f"stats must be (N, n_ops, {len(STATS)}), got {arr.shape}")
    if kind not in CONTINUOUS_KINDS:
        raise ValueError(f"kind must be one of {CONTINUOUS_KINDS}, got {kind!r}")
    cols = [STATS.index(k) for k in kind.split("+")]
    return arr[:, :, cols].reshape(len(arr), -1).astype(np.float64)


def subset_features(top5, stats, kind: str, cols: list[int]) -> np.ndarray:
    """Feature ``kind`` (``count``, ``diff`` or one of :data:`CONTINUOUS_KINDS`) of the
    operations at indices ``cols`` (into the operation axis: ``top5[:, 1 + c]``, ``stats[:, c]``).
    ``count`` counts over the chosen operations together (5 numbers); ``diff`` has 5 bits per
    operation; ``stats`` may be None for ``count`` / ``diff``."""
    cols = list(cols)
    if not cols:
        raise ValueError("subset_features needs at least one operation")
    if kind in FEATURE_KINDS:
        arr = label_array(top5, "top5", 3, TOPK)
        after = arr[:, [1 + c for c in cols]]
        return differences(arr[:, 0], after) if kind == "diff" else counting(arr[:, 0], after)
    if stats is None:
        raise ValueError(f"feature {kind!r} needs the stats of outputs_under_ops(..., stats=True)")
    return continuous(np.asarray(stats)[:, cols], kind)
