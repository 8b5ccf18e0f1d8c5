"""Issue 25, the paper's run rehearsed: ``params/rehearsal.yaml`` differs from ``params/paper.yaml``
only where this machine forces it, the ImageNet folder it reads is written in both layouts the README
promises, and the paper path's dataset stage and feature passes run as real submitit jobs (local
executor: subprocesses) with two classifiers in one dataset, giving the tables of the in-process run."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from advlib import cluster, corpora, dataset, paths, profiles, report

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: The keys where the rehearsal may differ from the paper profile, and why (the machine: CPU, offline).
FORCED = {
    "profile": "its own name",
    "classifiers": "ImageNet weights that ship in PyPI wheels (torchvision's are downloaded)",
    "imagenet_dir": "no ImageNet here: a folder written from the labelled validation photos shipped in packages",
    "imagenet_build": "that folder is written by the run",
    "workers": "2 cores",
    "raw_cnn_archs": "no ResNet-50 / Xception ImageNet weights offline",
    "raw_cnn_epochs": "CPU",
}


def _raw(name: str) -> dict:
    return yaml.safe_load((paths.PARAMS_DIR / f"{name}.yaml").read_text())


def test_rehearsal_differs_from_the_paper_profile_only_where_the_machine_forces_it():
    paper, rehearsal = _raw("paper"), _raw("rehearsal")
    differ = {k for k in set(paper) | set(rehearsal) if paper.get(k) != rehearsal.get(k)}
    assert differ - set(FORCED) - {k for k in differ if k.startswith("adaptive_")} == set()
    # what makes it the paper's run: every attack on every image, the fixed split, no cross-validation
    for key in ("attacks", "attacks_per_image", "split", "cv_folds", "corpus", "n_normal", "crops_per_photo", "ops",
                "detectors", "feature_groups", "save_format", "target_fpr", "bootstrap"):
        assert rehearsal[key] == paper[key], key
    assert rehearsal["attacks_per_image"] == 0 and rehearsal["cv_folds"] == 0 and len(rehearsal["attacks"]) == 12
    assert len(rehearsal["classifiers"]) >= 2
    p = profiles.load_profile("rehearsal")  # it validates, and its named components exist
    assert p["imagenet_build"] == "classes" and profiles.run_name(p) == "rehearsal"


def test_imagenet_folder_in_both_layouts_gives_the_same_labelled_photos(tmp_path):
    classes = corpora.write_imagenet_folder(tmp_path / "classes", "classes")
    flat = corpora.write_imagenet_folder(tmp_path / "flat", "flat")
    wnids = corpora.imagenet_wnids()
    assert sorted(p.name for p in classes.iterdir() if p.is_dir()) == wnids  # 1,000 class folders
    assert (flat / "val.txt").exists() and not any(p.is_dir() for p in flat.iterdir())
    a, b = corpora.imagenet_items(classes), corpora.imagenet_items(flat)
    shipped = {p.source_id: p.label for p in corpora.demo_photos() if p.label >= 0}
    assert len(a) == len(b) == len(shipped) == 20
    assert {i.source: i.label for i in a} == {i.source: i.label for i in b} == shipped
    # a folder's label is the index of its WordNet id among the 1,000
    assert all(Path(i.path).parent.name == wnids[i.label] for i in a)
    # copies of the shipped files, byte for byte; written again, nothing changes
    src = {p.source_id: p.path for p in corpora.demo_photos()}
    assert all(Path(i.path).read_bytes() == Path(src[i.source]).read_bytes() for i in b)
    before = sorted((p, p.stat().st_mtime_ns) for p in flat.iterdir())
    corpora.write_imagenet_folder(flat, "flat")
    assert sorted((p, p.stat().st_mtime_ns) for p in flat.iterdir()) == before
    with pytest.raises(ValueError, match="layout"):
        corpora.write_imagenet_folder(tmp_path / "x", "tree")


def test_profile_paths_are_relative_to_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    assert paths.resolve("data/x") == tmp_path / "data" / "x"
    assert paths.resolve(tmp_path / "y") == tmp_path / "y"
    with pytest.raises(profiles.ProfileError, match="executor"):
        profiles.validate({**profiles.load_profile("rehearsal", check=False), "executor": "pbs"})
    # where the work runs is not part of the run's name
    p = profiles.load_profile("rehearsal", check=False, executor="local", executor_options={"timeout_min": 5})
    assert profiles.run_name(p) == "rehearsal"
    assert profiles.params_hash(p) == profiles.params_hash(profiles.load_profile("rehearsal", check=False))


def _spec(name: str, folder: Path) -> dataset.DatasetSpec:
    p = profiles.load_profile("rehearsal", check=False)
    p.update(profile=name, imagenet_dir=str(folder), imagenet_build="flat", n_candidates=3, n_normal=2,
             attacks=["fgsm", "bim"], attack_options={}, shard_size=2, device="cpu", batch_size=2, workers=1,
             attack_threads=1, ops=["jpeg_80", "scale_0.75", "blur_3", "rotate_5"])
    return dataset.DatasetSpec.from_profile(p)


@pytest.mark.slow
def test_dataset_stage_and_feature_passes_as_submitit_jobs_equal_the_in_process_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_ROOT", str(tmp_path))  # the jobs' processes write under it too
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    folder = tmp_path / "imagenet-flat"  # written by the dataset stage (imagenet_build)
    here, jobs = _spec("reh-here", folder), _spec("reh-jobs", folder)
    assert here.classifiers == ["efficientnet_lite0", "efficientnet_lite1"]

    a = dataset.build(here, progress=False)
    b = dataset.build(jobs, executor=cluster.make_executor("local", tmp_path / "jobs" / "attacks",
                                                           {"timeout_min": 20}), progress=False)
    assert (folder / "val.txt").exists()
    assert a["failures"].empty and b["failures"].empty
    assert list(tmp_path.glob("jobs/attacks/*_result.pkl")), "no job ran as a subprocess"
    assert set(a["manifest"].classifier) == {"efficientnet_lite0", "efficientnet_lite1"}
    for key in ("manifest", "attacked"):
        pd.testing.assert_frame_equal(a[key], b[key], check_exact=False, rtol=1e-6)
    t1 = dataset.table1(a["attacked"], here.attacks)
    pd.testing.assert_frame_equal(t1, dataset.table1(b["attacked"], jobs.attacks))
    wide = dataset.table1_by_classifier(t1)
    assert list(wide.columns) == ["attack", "efficientnet_lite0", "efficientnet_lite0_attacked",
                                  "efficientnet_lite1", "efficientnet_lite1_attacked"]
    assert (wide.efficientnet_lite0_attacked == 2).all() and (wide.efficientnet_lite1_attacked == 2).all()

    top5_a, stats_a, names = dataset.under_ops(here, a["manifest"], stats=True, progress=False)
    executor = cluster.make_executor("local", tmp_path / "jobs" / "features", {"timeout_min": 20})
    top5_b, stats_b, _ = dataset.under_ops(jobs, b["manifest"], stats=True, progress=False, executor=executor)
    assert list(tmp_path.glob("jobs/features/*_result.pkl")), "no feature job ran"
    assert names == here.ops and top5_a.shape == (len(a["manifest"]), 1 + len(names), 5)
    np.testing.assert_array_equal(top5_a, top5_b)  # the same batches on the same thread count: the same bits
    np.testing.assert_array_equal(stats_a, stats_b)
    # Table 3 per classifier and pooled
    effects = report.operation_effects(a["manifest"], top5_a, names)
    t3 = report.table3_by_classifier(effects, ["original"] + names)
    assert set(t3.classifier) == {"efficientnet_lite0", "efficientnet_lite1", "all"}
    pooled = t3[(t3.classifier == "all") & (t3.set == "normal")]
    assert int(pooled.n.iloc[0]) == int((a["manifest"].kind == "normal").sum())
    # a rerun submits nothing: every image is in the cache
    assert features_missing(jobs, b["manifest"], names) == 0


def features_missing(spec: dataset.DatasetSpec, manifest: pd.DataFrame, names: list[str]) -> int:
    from advlib import features, store

    def hashes(c):  # from the files' own pixels, not the manifest's column
        return [store.pixel_sha256(im) for im in dataset.load_images(spec.store, manifest.path[manifest.classifier == c])]

    return sum(len(features.missing_from_cache(hashes(c), names, spec.store / "cache", c, spec.batch_size, True))
               for c in spec.classifiers)
