"""Evaluation protocols over source photos: grouped K-fold cross-validation or the paper's fixed split.

Crops of one photo, and a normal image with its adversarial versions, are correlated samples:
they always fall in the same part. Two protocols give the same shape of result, a list of
:class:`Partition` (train, dev, eval masks over the manifest rows):

- ``cv_folds: 0`` (paper profile): the fixed train/dev/eval split of the manifest's ``split``
  column (paper Table 2), one partition.
- ``cv_folds: K >= 2`` (demo and smoke profiles, where the data is small): the source photos are
  dealt into K folds (seeded); partition k evaluates fold k, chooses hyper-parameters (and the
  decision threshold) on fold k+1 (mod K) and trains on the other K-2 folds. Every photo is
  evaluated exactly once, by a model that never saw it; the out-of-fold predictions are pooled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Partition:
    """Boolean masks (N,) over the manifest rows; ``name`` is ``split`` or ``fold<k>``."""

    name: str
    train: np.ndarray
    dev: np.ndarray
    eval: np.ndarray


def photo_folds(sources, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) of each row: source photos dealt round-robin in a seeded order.

    ``sources``: (N,) source photo of each row. Folds differ in size by at most one photo.
    """
    sources = np.asarray(sources, dtype=object)
    uniq = sorted(set(sources.tolist()))
    if k < 2 or k > len(uniq):
        raise ValueError(f"cv_folds must be between 2 and the number of source photos ({len(uniq)}), got {k}")
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[i]: rank % k for rank, i in enumerate(order)}
    return np.array([fold_of[s] for s in sources], dtype=np.int64)


def partitions(manifest: pd.DataFrame, cv_folds: int, seed: int) -> list[Partition]:
    """The partitions of a profile's protocol (see the module docstring)."""
    if cv_folds == 0:
        split = manifest["split"].to_numpy()
        return [Partition("split", split == "train", split == "dev", split == "eval")]
    folds = photo_folds(manifest["source"].to_numpy(), cv_folds, seed)
    parts = []
    for k in range(cv_folds):
        ev, dv = folds == k, folds == (k + 1) % cv_folds
        parts.append(Partition(f"fold{k}", ~(ev | dv), dv, ev))
    return parts


def fold_table(manifest: pd.DataFrame, cv_folds: int, seed: int) -> pd.DataFrame:
    """Table 2 for a cross-validated profile: photos, normal and adversarial images per fold."""
    folds = photo_folds(manifest["source"].to_numpy(), cv_folds, seed)
    m = manifest.assign(fold=folds)
    rows = []
    for k, g in m.groupby("fold"):
        rows.append({"fold": int(k), "n_photos": int(g["source"].nunique()),
                     "normal": int((g["kind"] == "normal").sum()),
                     "targeted": int((g["kind"] == "targeted").sum()),
                     "non-targeted": int((g["kind"] == "non-targeted").sum())})
    return pd.DataFrame(rows)
