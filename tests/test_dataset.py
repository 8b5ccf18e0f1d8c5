"""The dataset pipeline of notebook 01: shards, resume, failures, splits (real attacks, real photos)."""

import pandas as pd
import pytest

from advlib import config, dataset


@pytest.fixture()
def params(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "ROOT", tmp_path)
    p = config.load_profile("smoke")
    p.update(profile="pytest", n_candidates=4, n_normal=2, attacks=["fgsm", "bim"], attacks_per_image=0,
             shard_size=1, device="cpu", batch_size=8)
    return p


def test_build_resume_and_failures(params, tmp_path):
    out = dataset.build(params, progress=False)
    m, attempts = out["manifest"], out["attempts"]
    root = tmp_path / "data" / "pytest"
    assert (m.kind == "normal").sum() == 2
    assert len(attempts) == 4 and set(attempts.attack) == {"fgsm", "bim"}
    assert out["failures"].empty
    # every kept adversarial image is adversarial when read back from its file
    from advlib import attacks, data, models
    model = models.load_classifier("efficientnet_lite0")
    adv = m[m.kind != "normal"]
    assert len(adv) >= 1
    for _, r in adv.iterrows():
        x = data.load_image(root / r.path)[None]
        import torch
        tgt = torch.tensor([r.target]) if r.kind == "targeted" else None
        assert attacks.is_adversarial(model, x, torch.tensor([r.top1]), tgt)[0]
        assert r.path.endswith(".jpg")
    # splits: no source photo in two splits
    assert m.groupby("source").split.nunique().max() == 1
    # resume: drop one shard and the manifest, rebuild -> same manifest
    shard = next((root / "shards").rglob("*.csv"))
    shard.unlink()
    (root / "manifest.csv").unlink()
    again = dataset.build(params, progress=False)["manifest"]
    pd.testing.assert_frame_equal(m.reset_index(drop=True), again.reset_index(drop=True))


def test_failed_shard_is_reported_and_others_go_on(params):
    params["attack_options"] = {"fgsm": {"no_such_option": 1}}
    out = dataset.build(params, progress=False)
    assert len(out["failures"]) == 2  # both fgsm shards
    assert all("fgsm" in s for s in out["failures"].shard)
    assert set(out["attempts"].attack) == {"bim"}


def test_assign_splits_disjoint_and_seeded():
    sources = [f"photo{i}" for i in range(50)] * 3
    a = dataset.assign_splits(sources, [0.7, 0.15, 0.15], seed=0)
    assert a == dataset.assign_splits(sources, [0.7, 0.15, 0.15], seed=0)
    counts = pd.Series(a).value_counts()
    assert counts["train"] == 35 and counts["dev"] == 8 and counts["eval"] == 7


def test_rotating_assignment_covers_every_attack():
    attacks = ["a", "b", "c", "d", "e"]
    plan = dataset.assign_attacks(10, attacks, 2)
    assert all(len(p) == 2 and len(set(p)) == 2 for p in plan)
    assert {a for p in plan for a in p} == set(attacks)
    assert dataset.assign_attacks(3, attacks, 0) == [attacks] * 3
