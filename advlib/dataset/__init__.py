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

Modules: :mod:`.spec` (:class:`DatasetSpec`, keys, shards), :mod:`.builder` (normal images, attack
shards, the manifest, :func:`under_ops`), :mod:`.tables` (Tables 1 and 2).
"""

from .builder import (
                    ATTEMPT_COLUMNS,
                    assign_splits,
                    build,
                    build_normal,
                    load_images,
                    load_manifest,
                    run_shard,
                    save_dataset_image,
                    under_ops,
)
from .spec import (
                    NORMAL_KEYS,
                    SPLITS,
                    VERSION,
                    DatasetSpec,
                    Shard,
                    assign_attacks,
                    candidate_items,
                    normal_key,
                    normal_table_path,
                    plan_shards,
                    read_table,
                    shard_key,
                    shard_seed,
)
from .tables import TABLE1_COLUMNS, check_one_format, per_strength, splits_table, table1, table1_by_classifier, table2

__all__ = ["ATTEMPT_COLUMNS", "NORMAL_KEYS", "SPLITS", "TABLE1_COLUMNS", "VERSION", "DatasetSpec", "Shard",
           "assign_attacks", "assign_splits", "build", "build_normal", "candidate_items", "load_images",
           "load_manifest", "normal_key", "normal_table_path", "plan_shards", "read_table", "run_shard",
           "save_dataset_image", "shard_key", "shard_seed", "table1", "table1_by_classifier", "table2", "under_ops", "check_one_format",
           "per_strength", "splits_table"]
