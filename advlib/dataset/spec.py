"""What the dataset depends on (:class:`DatasetSpec`, the profile keys of notebook 01), the keys of
its cached artefacts, and its (classifier, attack, chunk) shards."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import corpora, paths, profiles, runtime

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
    imagenet_build: str | None = None
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
