"""The dataset pipeline of notebook 01: shards, resume, failures, splits, file format and modes,
the reference-label re-check, the attempt logs and Table 1 (real attacks, real photos)."""

import os
import stat

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from advlib import attacks, dataset, models, paths, profiles, store
from advlib.dataset import builder as build_module
from advlib.images import load_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def params(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    p = profiles.load_profile("smoke")
    p.update(profile="pytest", n_candidates=4, n_normal=2, attacks=["fgsm", "bim"], attacks_per_image=0,
             shard_size=1, device="cpu", batch_size=8)
    return p


@pytest.fixture(scope="module")
def model():
    return models.load_classifier("efficientnet_lite0")


def _spec(params: dict) -> dataset.DatasetSpec:
    return dataset.DatasetSpec.from_profile(params)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def check_kept_images(model, root, manifest: pd.DataFrame) -> int:
    """Every adversarial image of ``manifest``, read back from its file, meets its attack's
    criterion and has its reference ``label`` out of the top-5; returns how many there are."""
    adv = manifest[manifest.kind != "normal"]
    x = dataset.load_images(root, adv.path.tolist())
    top5 = models.predict_topk(model, x, 5)
    labels = torch.tensor(adv.label.to_numpy())
    assert not (top5 == labels[:, None]).any(1).any(), "a kept image has its label in the top-5"
    targeted = (adv.kind == "targeted").to_numpy()
    for flag in (True, False):
        rows = np.flatnonzero(targeted == flag)
        if len(rows):
            tgt = torch.tensor(adv.target.to_numpy()[rows]) if flag else None
            assert attacks.is_adversarial(model, x[rows], torch.tensor(adv.top1.to_numpy()[rows]), tgt,
                                          reference=labels[rows]).all()
    return len(adv)


@pytest.mark.slow
def test_build_resume_and_failures(params, tmp_path, model, monkeypatch):
    seeds = {}
    run_attack = attacks.run_attack

    threads = []

    def spy(name, *args, **kwargs):  # record the seed each shard passes to the attack, and its threads
        seeds.setdefault(name, []).append(kwargs["seed"])
        threads.append(torch.get_num_threads())
        return run_attack(name, *args, **kwargs)

    monkeypatch.setattr(attacks, "run_attack", spy)
    out = dataset.build(_spec(params), progress=False)
    m, attacked, attempts = out["manifest"], out["attacked"], out["attempts"]
    root = tmp_path / "data" / "pytest"
    assert (m.kind == "normal").sum() == 2
    assert len(attacked) == 4 and set(attacked.attack) == {"fgsm", "bim"}
    assert out["failures"].empty
    # the per-shard seed reaches the attack
    shards = dataset.plan_shards(_spec(params), m[m.kind == "normal"], "efficientnet_lite0")
    for attack in ("fgsm", "bim"):
        assert seeds[attack] == [dataset.shard_seed(_spec(params), s) for s in shards if s.attack == attack]
    assert len(set(seeds["fgsm"] + seeds["bim"])) == 4
    # the attacks run on the profile's fixed thread count (this module's fixture sets 1), restored after
    assert params["attack_threads"] == 2 and threads == [2] * 4 and torch.get_num_threads() == 1
    # files: attacked.csv / attempts.csv next to the manifest, one attempt log per shard
    pd.testing.assert_frame_equal(dataset.read_table(root / "attacked.csv"), attacked)
    pd.testing.assert_frame_equal(dataset.read_table(root / "attempts.csv"), attempts)
    for s in shards:
        assert s.attempts_path(root).exists() and s.path(root).exists()
    # every kept adversarial image is adversarial, reference label out of the top-5, read back from its file
    assert check_kept_images(model, root, m) >= 1
    # normal images: selected and classified as read back from their files
    normal = m[m.kind == "normal"]
    top5 = models.predict_topk(model, dataset.load_images(root, normal.path.tolist()), 5)
    assert (top5[:, 0].numpy() == normal.top1.to_numpy()).all()
    assert (top5 == torch.tensor(normal.label.to_numpy())[:, None]).any(1).all()
    assert (normal.psnr == np.inf).all() and (normal.ssim == 1).all()
    assert (normal.l2 == 0).all() and (normal.linf == 0).all()
    # one file format for normal and adversarial images (JPEG q100 in the smoke profile)
    for path in m.path:
        assert path.endswith(".jpg")
        with Image.open(root / path) as im:
            assert im.format == "JPEG"
    for path, sha in zip(m.path, m.sha256):
        assert store.pixel_sha256(load_image(root / path)) == sha
    # per-image l2 / linf: saved adversarial file against the saved normal image
    src = m.set_index("image_id")
    for _, r in attacked.iterrows():
        adv_px = load_image(root / r.path)[None]
        norm_px = load_image(root / src.loc[r.source_id, "path"])[None]
        l2, linf = attacks.perturbation_norms(adv_px, norm_px)
        assert r.l2 == pytest.approx(l2[0]) and r.linf == linf[0]
    # the attempt log: the per-image values are those of each image's last attempt
    assert list(attempts.columns) == dataset.ATTEMPT_COLUMNS
    last = attempts.sort_values("rung").groupby("image_id").tail(1).set_index("image_id")
    assert set(last.index) == set(attacked.image_id)
    for _, r in attacked.iterrows():
        a = last.loc[r.image_id]
        assert (a.success_raw, a.success_rounded, a.success_saved) == \
            (r.success_raw, r.success_rounded, r.success_saved)
        if r.success_saved:
            assert a.strength == r.strength
    # Table 1: counts at the final strength, medians of the kept images
    t1 = dataset.table1(attacked, params["attacks"])
    assert list(t1.columns) == dataset.TABLE1_COLUMNS and len(t1) == 2
    assert (t1.attacked == 2).all()
    kept = t1[t1.success_saved > 0]
    assert len(kept) >= 1
    assert kept[["median_l2", "median_linf", "median_psnr"]].notna().all().all()
    assert ((kept.median_linf >= 1) & (kept.median_linf <= 255)).all() and np.isfinite(kept.median_psnr).all()
    assert t1[t1.success_saved == 0][["median_l2", "median_linf", "median_psnr"]].isna().all().all()
    # result files have the usual mode (0666 & ~umask), not mkstemp's 0600
    for path in [root / "manifest.csv", root / "attempts.csv", shards[0].path(root), root / m.path.iloc[0],
                 root / m.path.iloc[-1]]:
        assert _mode(path) == 0o666 & ~_umask()
    # splits: no source photo in two splits
    assert m.groupby("source").split.nunique().max() == 1
    # resume: drop one shard (its CSV: the attempt log stays and is rewritten) and the manifest
    shards[0].path(root).unlink()
    (root / "manifest.csv").unlink()
    again = dataset.build(_spec(params), progress=False)
    for key in ("manifest", "attacked", "attempts"):
        pd.testing.assert_frame_equal(out[key].reset_index(drop=True), again[key].reset_index(drop=True))


@pytest.mark.slow
def test_failed_shard_is_reported_and_others_go_on(params):
    params["attack_options"] = {"fgsm": {"no_such_option": 1}}
    out = dataset.build(_spec(params), progress=False)
    assert len(out["failures"]) == 2  # both fgsm shards
    assert all("fgsm" in s for s in out["failures"].shard)
    assert set(out["attacked"].attack) == {"bim"} and set(out["attempts"].attack) == {"bim"}


def test_stale_normal_table_is_refused(params, tmp_path, model):
    store.write_csv(pd.DataFrame({"image_id": ["a"], "path": ["normal/x/a.png"]}),
                    dataset.normal_table_path(_spec(params), "x"))
    with pytest.raises(ValueError, match="delete"):
        dataset.build_normal(_spec(params), "x", model, "cpu")


def _count_attacks(monkeypatch) -> list[str]:
    """Record the name of every attack run from now on."""
    calls: list[str] = []
    run_attack = attacks.run_attack

    def spy(name, *args, **kwargs):
        calls.append(name)
        return run_attack(name, *args, **kwargs)

    monkeypatch.setattr(attacks, "run_attack", spy)
    return calls


def _run_files(params) -> dict[str, bytes]:
    run = profiles.out_dirs(params)["data"]
    return {f: (run / f).read_bytes() for f in ("attacked.csv", "attempts.csv", "manifest.csv")}


@pytest.mark.slow
def test_caches_know_their_parameters(params, monkeypatch):
    calls = _count_attacks(monkeypatch)
    dataset.build(_spec(params), progress=False)
    assert sorted(calls) == ["bim", "bim", "fgsm", "fgsm"]
    first = _run_files(params)
    t1 = dataset.table1(dataset.read_table(profiles.out_dirs(params)["data"] / "attacked.csv"), params["attacks"])
    # an unchanged rerun recomputes nothing and writes the same bytes
    calls.clear()
    dataset.build(_spec(params), progress=False)
    assert calls == [] and _run_files(params) == first
    # one changed attack option recomputes that attack's shards only, and its Table 1 row changes
    params["attack_options"] = {"fgsm": {"epsilons": [1e-6]}}
    dataset.build(_spec(params), progress=False)
    assert calls == ["fgsm", "fgsm"]
    t1b = dataset.table1(dataset.read_table(profiles.out_dirs(params)["data"] / "attacked.csv"), params["attacks"])
    assert t1b.set_index("attack").loc["fgsm", "success_saved"] == 0 < t1.set_index("attack").loc["fgsm", "success_saved"]
    pd.testing.assert_series_equal(t1b.set_index("attack").loc["bim"], t1.set_index("attack").loc["bim"])
    # going back to the first parameters reuses the first shards (their images were not overwritten)
    calls.clear()
    params["attack_options"] = {}
    dataset.build(_spec(params), progress=False)
    assert calls == [] and _run_files(params) == first
    # fewer normal images: a new normal table; the first image is the same pixels, so its shards are reused
    params["n_normal"] = 1
    out = dataset.build(_spec(params), progress=False)
    assert calls == [] and (out["manifest"].kind == "normal").sum() == 1 and len(out["attacked"]) == 2
    # a larger shard size regroups the images: new shards
    params.update(n_normal=2, shard_size=2)
    out = dataset.build(_spec(params), progress=False)
    assert sorted(calls) == ["bim", "fgsm"] and len(out["attacked"]) == 4


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_bytes(params, tmp_path, monkeypatch):
    dataset.build(_spec(params), progress=False)
    reference = _run_files(params)
    monkeypatch.setattr(paths, "ROOT", tmp_path / "second")
    run_shard, done = dataset.run_shard, []

    def killed_after_two(*args, **kwargs):  # the process dies while running the third shard
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(run_shard(*args, **kwargs))
        return done[-1]

    monkeypatch.setattr(build_module, "run_shard", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        dataset.build(_spec(params), progress=False)
    monkeypatch.setattr(build_module, "run_shard", run_shard)
    calls = _count_attacks(monkeypatch)
    dataset.build(_spec(params), progress=False)
    assert len(calls) == 2  # only the two shards that had not finished
    assert _run_files(params) == reference


def test_run_name_keeps_changed_parameters_out_of_the_profile_folders(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    p = profiles.load_profile("smoke")
    assert profiles.run_name(p) == "smoke"
    assert profiles.out_dirs(p)["tables"] == tmp_path / "tables" / "smoke"
    changed = dict(p, attacks_per_image=p["attacks_per_image"] + 1)
    name = profiles.run_name(changed)
    assert name.startswith("smoke-") and name != "smoke" and profiles.run_name(dict(changed)) == name
    dirs = profiles.out_dirs(changed)
    assert dirs["tables"] == tmp_path / "tables" / name and dirs["figures"] == tmp_path / "figures" / name
    assert dirs["data"] == tmp_path / "data" / name
    assert dirs["store"] == tmp_path / "data" / "smoke"  # keyed artefacts are shared by the profile's runs


def test_atomic_writes_get_the_usual_mode(tmp_path):
    path = store.atomic_write_bytes(tmp_path / "sub" / "f.bin", b"abc")
    assert path.read_bytes() == b"abc"
    assert _mode(path) == store.FILE_MODE == 0o666 & ~_umask()
    assert not list(path.parent.glob(".*.tmp"))  # no temp file left behind


def test_image_format_is_one_helper():
    assert store.image_format("jpeg") == (".jpg", 100)
    assert store.image_format("png") == (".png", None)
    with pytest.raises(ValueError, match="save_format"):
        store.image_format("gif")


def test_png_profile_saves_both_kinds_losslessly(params, tmp_path, model):
    """save_format png: normal and adversarial images both PNG; the normal file is the input itself."""
    params.update(save_format="png", n_candidates=2, n_normal=1, attacks=["fgsm"])
    params["attack_options"] = {"fgsm": {"epsilons": [16 / 255]}}
    out = dataset.build(_spec(params), progress=False)
    root = tmp_path / "data" / "pytest"
    assert len(out["manifest"]) >= 1 and all(p.endswith(".png") for p in out["manifest"].path)
    assert len(out["attacked"]) == 1 and out["attacked"].path.iloc[0].endswith(".png")
    first = out["manifest"].image_id.iloc[0]
    item = next(it for it in dataset.candidate_items(_spec(params)) if f"efficientnet_lite0/{it.image_id}" == first)
    assert torch.equal(load_image(root / out["manifest"].path.iloc[0]), load_image(item.path, item.crop))


def test_assign_splits_disjoint_and_seeded():
    sources = [f"photo{i}" for i in range(50)] * 3
    a = dataset.assign_splits(sources, [0.7, 0.15, 0.15], seed=0)
    assert a == dataset.assign_splits(sources, [0.7, 0.15, 0.15], seed=0)
    counts = pd.Series(a).value_counts()
    assert counts["train"] == 35 and counts["dev"] == 8 and counts["eval"] == 7


def test_rotating_assignment_covers_every_attack():
    attacks_ = ["a", "b", "c", "d", "e"]
    plan = dataset.assign_attacks(10, attacks_, 2)
    assert all(len(p) == 2 and len(set(p)) == 2 for p in plan)
    assert {a for p in plan for a in p} == set(attacks_)
    assert dataset.assign_attacks(3, attacks_, 0) == [attacks_] * 3
