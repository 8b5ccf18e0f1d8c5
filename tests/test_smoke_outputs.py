"""The smoke run's own outputs, checked after `make test` has run the five notebooks under nbval
(PySDM-examples style: assertions on what the notebooks computed, not on typed numbers).

These tests read ``data/smoke/``, ``tables/smoke/`` and ``figures/smoke/``; conftest moves them
after the notebooks and leaves them out of a pytest session that does not run the notebooks
(``pytest tests`` alone: nothing to check yet)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from advlib import attacks, models, profiles, reproducibility
from advlib.dataset import DatasetSpec, load_images, load_manifest
from advlib.detect.persist import read_meta
from advlib.experiments import cheap_detector_dir

pytestmark = pytest.mark.after_notebooks


@pytest.fixture(scope="module")
def smoke():
    params = profiles.load_profile("smoke")
    assert profiles.run_name(params) == "smoke"  # the notebooks' parameters cells are params/smoke.yaml
    spec = DatasetSpec.from_profile(params)
    dirs = profiles.out_dirs(params)
    table = lambda name: pd.read_csv(dirs["tables"] / f"{name}.csv")
    return {"params": params, "spec": spec, "dirs": dirs, "manifest": load_manifest(spec), "table": table}


def test_every_adversarial_file_meets_its_criterion_as_saved(smoke):
    """Notebook 01's dataset: each adversarial image, read back from its file, has its reference
    label out of the top-5 (targeted: the target at p >= 0.99); each normal one keeps it in."""
    m, spec = smoke["manifest"], smoke["spec"]
    clf = models.load_classifier("efficientnet_lite0")
    for kind, g in m.groupby("kind"):
        images = load_images(spec.store, g["path"].tolist())
        labels = torch.tensor(g["top1"].to_numpy())
        reference = torch.tensor(g["label"].to_numpy())
        targets = torch.tensor(g["target"].to_numpy()) if kind == "targeted" else None
        ok = attacks.is_adversarial(clf, images, labels, targets, batch_size=8, reference=reference)
        if kind == "normal":
            assert not ok.any(), f"{int(ok.sum())} normal image(s) lost their label"
        else:
            assert ok.all(), f"{kind}: {int((~ok).sum())} of {len(g)} saved files are not adversarial"


def test_table1_counts_the_manifest(smoke):
    t1, m = smoke["table"]("table1_attack_success"), smoke["manifest"]
    adv = m[m.kind != "normal"].groupby("attack").size()
    assert set(t1.attack) == set(smoke["params"]["attacks"])
    for r in t1.itertuples():
        assert 0 <= r.success_saved <= r.attacked and r.success_saved == adv.get(r.attack, 0)


def test_table3_selection_holds_on_the_originals(smoke):
    """Normal images keep their reference label in the top-5 and every adversarial loses it: the
    row 'original' of Table 3, as the dataset was built."""
    t3 = smoke["table"]("table3_operation_effects")
    original = t3[t3.op == "original"].set_index("set")
    assert original.loc["normal", "misclassified"] == 0
    adv = original.drop(index="normal")
    assert (adv.misclassified == adv.n).all() and adv.n.sum() == (smoke["manifest"].kind != "normal").sum()


def test_detection_tables_are_out_of_fold_on_the_whole_dataset(smoke):
    m = smoke["manifest"]
    t4 = smoke["table"]("table4_detection_features")
    combination = m.kind.isin(["normal", "targeted", "non-targeted"])
    assert (t4.n_images == combination.sum()).all() and (t4.n_photos == m.source.nunique()).all()
    for col in ("accuracy_pct", "auc"):
        lo, hi = t4[f"{col}_ci_low"], t4[f"{col}_ci_high"]
        assert ((lo <= t4[col] + 1e-9) & (t4[col] <= hi + 1e-9)).all(), col
    constant = 100 * max(combination.sum() - (m.kind == "normal").sum(), (m.kind == "normal").sum()) / combination.sum()
    assert np.allclose(t4.constant_accuracy_pct, constant)


def test_correction_tables_count_the_dataset(smoke):
    m = smoke["manifest"]
    t6 = smoke["table"]("table6_image_correction")
    assert (t6.n_normal == (m.kind == "normal").sum()).all()
    assert (t6.n_adversarial == (m.kind != "normal").sum()).all()
    assert t6[["normal_pct", "adversarial_pct"]].apply(lambda c: c.between(0, 100)).all().all()


def test_the_run_compared_itself_with_the_reference(smoke):
    """The reproducibility report of the smoke run: every compared table is there, and strict
    (the smoke profile) means every number is within its measured tolerance."""
    rep = pd.read_csv(smoke["dirs"]["tables"] / "reproducibility.csv")
    assert set(rep.table) == set(reproducibility.COMPARED)
    assert rep.within.astype(bool).all(), rep[~rep.within.astype(bool)].head().to_dict("records")


def test_the_cheap_detector_states_its_nested_rates(smoke):
    """Notebook 03 saved the cheap detector with the nested evaluation's figures in its meta."""
    meta = read_meta(cheap_detector_dir("smoke", "efficientnet_lite0", smoke["dirs"]["models"]))
    assert "oof_calibration_photos" in meta and meta["oof"]["n_photos"] == smoke["manifest"].source.nunique()
    for key in ("fpr", "detection_rate"):
        v, lo, hi = meta["oof"][key], meta["oof"][f"{key}_cp_low"], meta["oof"][f"{key}_cp_high"]
        assert 0 <= lo <= v <= hi <= 1
