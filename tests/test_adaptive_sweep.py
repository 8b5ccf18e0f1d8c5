"""The adaptive sweep's reading (advlib.experiments.adaptive_sweep): defeat rates and their exact
intervals, the breaking budget by the lower bound, the gradient-masking checks, the pipelines'
reading and the image pick over the outer folds. Per-image rows are built by hand: what is
tested is the arithmetic of the tables, the attacks themselves are tested in test_adaptive.py and
end to end by notebook 05 on the smoke profile."""

import numpy as np
import pandas as pd
import pytest

from advlib.experiments import adaptive_sweep as exp
from advlib.stats import clopper_pearson


def _rows(attack: str, eps: float, success, flags: dict[str, list], n: int, kind: str = "gradient",
          adaptive: bool = True) -> pd.DataFrame:
    base = {"image_id": [f"im{i}" for i in range(n)], "attack": attack, "adaptive": adaptive, "kind": kind,
            "eps_levels": eps, "fold": np.arange(n) % 5, "steps": 10, "restarts": 1, "linf": 1, "l2": 0.1,
            "success_saved": success}
    cols = {d: [False] * n for d in exp.DETECTORS} | {d: [True] * n for d in exp.CORRECTIONS + exp.PIPELINES}
    return pd.DataFrame({**base, **cols, **flags})


def test_summary_counts_and_exact_intervals():
    n = 24
    success = [True] * 20 + [False] * 4
    flagged = [True] * 5 + [False] * 19  # 5 flagged, of which all successful
    rows = _rows("detector_cheap", 2.0, success, {"cheap_detector": flagged}, n)
    t = exp.summary(rows).iloc[0]
    assert t.n_images == 24 and t.defeats_cheap_detector_n == 15  # successful and not flagged
    lo, hi = clopper_pearson(15, 24)
    assert t.defeats_cheap_detector_pct == pytest.approx(100 * 15 / 24)
    assert (t.defeats_cheap_detector_ci_low, t.defeats_cheap_detector_ci_high) == pytest.approx((100 * lo, 100 * hi))
    assert t.cheap_detector_detects_pct == pytest.approx(100 * 5 / 20)
    assert t.differs_from_pgd == exp.ATTACKS["detector_cheap"].differs


def test_pipeline_reading_is_the_final_answer():
    # image 0: adversarial, flagged, label correction restores -> right; image 1: adversarial, not
    # flagged -> wrong; image 2: not adversarial, flagged, correction fails -> wrong (the answer is)
    rows = _rows("pipeline", 4.0, [True, True, False], {"pipeline_cheap": [True, False, False]}, 3)
    t = exp.summary(rows).iloc[0]
    assert t.defeats_pipeline_cheap_n == 2 and t.pipeline_cheap_accuracy_pct == pytest.approx(100 / 3)


def test_breaking_budget_needs_the_lower_bound():
    n = 24
    # 15/24 = 62.5% but its lower bound is 40.6%: not a break at 50%; 19/24 (lower bound 57.8%) is
    at1 = _rows("eot_correction", 1.0, [True] * n, {"label_correction": [False] * 15 + [True] * 9}, n)
    at2 = _rows("eot_correction", 2.0, [True] * n, {"label_correction": [False] * 19 + [True] * 5}, n)
    base = _rows("pgd", 2.0, [True] * n, {}, n, adaptive=False)  # label correction restores every image
    table = exp.summary(pd.concat([at1, at2, base]))
    b = exp.breaking_budget(table, "label_correction", ["eot_correction"])
    assert b["eps"] == 2.0 and (b["k"], b["n"]) == (19, 24) and b["low"] >= 50
    assert exp.breaking_budget(table, "label_correction", ["pgd"]) is None
    bt = exp.breaking_table(table).set_index("defence")
    assert bt.loc["label_correction", "breaks_adaptive"] == "2/255"
    assert bt.loc["label_correction", "breaks_non_adaptive"] == "not shown"
    assert bt.loc["cheap_detector", "breaks_adaptive"] == "1/255"  # nothing flags, the attack succeeds: defeated


def test_masking_check_compares_intervals():
    n = 24
    grad = _rows("detector_cheap", 4.0, [True] * n, {"cheap_detector": [True] * 20 + [False] * 4}, n)
    free = _rows("square_detector", 4.0, [True] * n, {"cheap_detector": [True] * 2 + [False] * 22}, n,
                 kind="gradient-free")
    m = exp.masking_checks(exp.summary(pd.concat([grad, free])))
    row = m[(m.defence == "cheap_detector") & (m.check == "gradient-free")].iloc[0]
    assert row.higher_rate and row.beats_gradient  # 22/24 against 4/24: the gradient attack is masked here
    assert row.gradient_attack == "detector_cheap" and row.other_attack == "square_detector"


def test_pick_images_takes_the_folds_in_turn_one_per_photo():
    manifest = pd.DataFrame({"kind": ["normal"] * 9 + ["targeted"], "classifier": "efficientnet_lite0",
                             "source": [f"p{i}" for i in range(9)] + ["p0"], "image_id": [f"i{i}" for i in range(10)]})
    folds = {0: ["p0", "p1", "p2", "p3"], 1: ["p4", "p5"], 2: ["p6", "p7", "p8"]}
    pick = exp.pick_images(manifest, "efficientnet_lite0", 5, 0, folds)
    assert len(pick) == 5 and pick.source.is_unique and (pick.kind == "normal").all()
    assert sorted(pick.order) == list(range(5))
    assert pick.set_index("order").fold.loc[[0, 1, 2]].tolist() == [0, 1, 2]  # one of each fold first
    for _, r in pick.iterrows():
        assert r.source in folds[r.fold]
    with pytest.raises(ValueError, match="adaptive_photos"):
        exp.pick_images(manifest, "efficientnet_lite0", 5, 0, folds, photos="big")


def test_every_attack_says_what_differs_and_targets_known_defences():
    for name, spec in exp.ATTACKS.items():
        assert spec.differs and set(spec.target) <= set(exp.DEFENCES), name
        assert spec.kind in ("gradient", "gradient-free", "transfer"), name
    assert not exp.ATTACKS["pgd"].adaptive and exp.ATTACKS["pipeline"].adaptive


def test_masking_checks_without_a_check_keep_their_columns(tmp_path):
    """A profile without gradient-free or transfer attacks (the demo) writes a table that reads back."""
    grad = _rows("eot_correction", 4.0, [1, 1], {"label_correction": [0, 0]}, 2)
    m = exp.masking_checks(exp.summary(grad))
    assert m.empty and list(m.columns) == exp.tables.MASKING_COLUMNS
    m.to_csv(tmp_path / "m.csv", index=False)
    assert list(pd.read_csv(tmp_path / "m.csv").columns) == exp.tables.MASKING_COLUMNS
