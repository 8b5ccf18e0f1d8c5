"""The README's claims about the demo results, checked against the committed demo CSVs.

Each test reads ``tables/demo/`` (written by ``make reproduce``) and asserts what the README's
"Results" section says, so a regenerated table that contradicts the README fails CI. When the
demo is regenerated and a number moves, update the README and the number here together.
"""

import json

import numpy as np
import pandas as pd
import pytest

from advlib import paths

T = paths.ROOT / "tables" / "demo"


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(T / f"{name}.csv")


def _pct(x) -> float:
    """A fraction in [0, 1] as a percent with one decimal (the JSON metadata holds fractions)."""
    return round(100 * float(x), 1)


def _r(x) -> float:
    """A percent of the CSVs (``*_pct`` columns) with one decimal."""
    return round(float(x), 1)


def test_table1_saving_claims():
    t = _csv("table1_attack_success").set_index("attack")
    assert (t.loc["deepfool", ["attacked", "success_raw", "success_saved"]].tolist() == [21, 21, 14])
    for a in ("bim", "l2_iterative"):  # JPEG tipped one image over
        assert t.loc[a, "success_saved"] == t.loc[a, "success_rounded"] + 1
    assert t.loc["jsma", "median_linf"] > 200
    others = t.drop(index="jsma").median_linf
    assert others.min() >= 5 and others.max() <= 18


def test_table3_every_kept_adversarial_is_misclassified():
    t = _csv("table3_operation_effects")
    orig = t[t.op == "original"]
    adv, normal = orig[orig.kind != "normal"], orig[orig.kind == "normal"]
    assert (adv.misclassified == adv.n).all() and adv.n.sum() == 199
    assert (normal.misclassified == 0).all() and normal.n.sum() == 83
    # README: operations move normal images (13% at JPEG 40, 16% at scale 1.25) and leave 23-41%
    # of the adversarial images misclassified under JPEG 80-40 and scaling
    t = t.assign(type=np.where(t.kind == "normal", "normal", "adversarial"))
    g = t.groupby(["type", "op"])[["misclassified", "n"]].sum()
    pct = (100 * g.misclassified / g.n).round(1)
    assert (pct["normal", "jpeg_40"], pct["normal", "scale_1.25"]) == (13.3, 15.7)
    shown = ["jpeg_80", "jpeg_60", "jpeg_40"] + [f"scale_{s}" for s in ("0.75", "0.85", "0.95", "1.05", "1.15", "1.25")]
    adv = pct["adversarial"][shown]
    assert adv.min() == 23.1 and adv.max() == 40.7


def test_table4_range_and_constant_predictor():
    t = _csv("table4_detection_features")
    assert (t.n_images == 282).all() and (t.n_photos == 83).all()
    assert (_r(t.constant_accuracy_pct.iloc[0]), _pct(199 / 282)) == (70.6, 70.6)
    assert _r(t.paper_constant_accuracy_pct.iloc[0]) == 83.9  # 3,124 of 3,724
    assert _r(t.accuracy_pct.min()) == 64.2 and _r(t.accuracy_pct.max()) == 85.1
    assert round(t.auc.max(), 3) == 0.879
    below = t[t.accuracy_pct < t.constant_accuracy_pct]  # below the constant answer
    assert sorted(zip(below.detector, below.group, below.feature)) == [("lda", "all", "diff"),
                                                                       ("lda", "jpeg+scaling", "diff")]


def test_table5_claims():
    t = _csv("table5_detection_comparison")
    seen = t[t.scenario.str.startswith("seen")].set_index("detector")
    feature = ["MLP - counting feature", "SVM - differences feature", "CNN - counting feature",
               "CNN - differences feature"]
    acc = seen.loc[feature, "accuracy_pct"]
    assert _r(acc.min()) == 80.1 and _r(acc.max()) == 84.4
    assert seen.loc[feature, "auc"].idxmax() == "SVM - differences feature"
    assert round(seen.loc["SVM - differences feature", "auc"], 3) == 0.879
    svm = seen.loc["SVM - differences feature"]
    assert (_r(svm.eer_pct), svm.paper_eer_pct) == (20.5, 9.67)  # the README reads detection through EER
    ft = seen.loc["EfficientNet-Lite0 (partial fine-tuning: last block and head)"]
    assert (_r(ft.accuracy_pct), round(ft.auc, 3)) == (69.9, 0.757)
    assert not seen.degenerate.any()
    # non-targeted -> targeted generalises better than the reverse, for every feature detector
    by = t.set_index(["scenario", "detector"]).accuracy_pct
    for d in feature:
        assert by["non-targeted -> targeted", d] > by["targeted -> non-targeted", d]
    # feature squeezing: best AUC on targeted attacks, worst on non-targeted ones
    fs = "Feature squeezing (5% FPR threshold)"
    nt, tn = t[t.scenario == "non-targeted -> targeted"], t[t.scenario == "targeted -> non-targeted"]
    assert nt.set_index("detector").auc.idxmax().startswith("Feature squeezing")
    assert tn.set_index("detector").auc.idxmin() == fs
    # at 0.5, 35-47% of unseen normal photos are flagged
    assert all(34.9 <= seen.loc[d, "fpr_pct"] <= 47.0 for d in feature)


def test_saved_detector_metadata():
    meta = json.loads((T / "detector_svm_diff_all.json").read_text())
    o = meta["oof"]
    assert meta["target_fpr"] == 0.05 and round(meta["threshold"], 3) == 0.892
    assert (_pct(o["fpr_calibrated"]), _pct(o["detection_rate_calibrated"])) == (3.6, 44.2)
    assert (_pct(o["fpr"]), _pct(o["detection_rate"])) == (37.3, 93.5)
    assert (o["n_images"], o["n_photos"]) == (282, 83)


def test_format_robustness_claims():
    t = _csv("detection_format_robustness")
    normal = t[t.type == "normal"].set_index("format")
    assert (normal.n_images == 20).all()
    assert normal.flagged_calibrated_pct.max() <= 5.0  # at most 1 of 20, whatever the format
    adv = t[t.type == "adversarial"].set_index("format").flagged_calibrated_pct
    assert adv["jpeg 95"] < adv["as saved"] and adv["jpeg 75"] <= adv["jpeg 90"] <= adv["jpeg 95"]


def test_fpr_investigation_claims():
    t = _csv("detection_fpr_investigation")
    allrows = t[t.subset == "all normal images"].set_index("lever")
    assert _r(allrows.loc["paper recipe", "fpr_pct"]) == 37.3
    assert _r(allrows.loc["class_weight balanced", "fpr_pct"]) == 38.6
    assert round(allrows.loc["class_weight balanced", "auc"], 3) == 0.853
    assert _r(allrows.loc["half the training photos", "fpr_pct"]) == 39.8
    sub = t[t.lever == "paper recipe"].set_index("subset")
    low = [s for s in sub.index if s.startswith("top-1 probability <")][0]
    high = [s for s in sub.index if s.startswith("top-1 probability >=")][0]
    assert low.endswith("0.32") and _r(sub.loc[low, "fpr_pct"]) == 68.3 and _r(sub.loc[high, "fpr_pct"]) == 7.1
    assert _r(sub.loc["upscaled thumbnails (smaller than 224 px)", "fpr_pct"]) == 53.7
    assert _r(sub.loc["full-size photos (224 px or more)", "fpr_pct"]) == 21.4
    rho = t.dropna(subset=["rho"]).rho.iloc[0]
    assert round(rho, 2) == -0.73


def test_correction_claims():
    lc = _csv("fig6_label_correction")
    s = lc.groupby(["op_set", "type"])[["correct", "n"]].sum()
    pct = (100 * s.correct / s.n).round(1)
    assert pct["JPEG+scaling", "adversarial"] == 77.4 and pct["JPEG+scaling", "normal"] == 96.4
    t6 = _csv("table6_image_correction").set_index("method")
    assert t6.loc["Heuristic - min", "reading"].startswith("top-5 match")
    assert round(t6.loc["Heuristic - min", "adversarial_pct"], 1) == 74.9
    assert round(t6.loc["Heuristic - min", "normal_pct"], 1) == 98.8
    top1 = t6.loc["Heuristic - min (top-1 match, paper's text (sensitivity))"]
    assert (round(top1.adversarial_pct, 1), round(top1.normal_pct, 1)) == (66.3, 92.8)
    assert t6.loc["QF 50", "adversarial_pct"] > t6.loc["Heuristic - min", "adversarial_pct"]  # unlike the paper
    assert t6.loc["QF 50", "paper_adversarial_pct"] < t6.loc["Heuristic - min", "paper_adversarial_pct"]
    assert round(100 - t6.loc["QF 50", "normal_pct"]) == 12
    assert (t6[["fallback_normal", "fallback_adversarial"]] == 0).all().all()
    dae = t6.loc["Denoising autoencoder"]
    assert (round(dae.adversarial_pct, 1), round(dae.normal_pct, 1)) == (6.0, 8.4)
    assert (dae.paper_adversarial_pct, dae.paper_normal_pct) == (49.81, 57.77)


def test_pipeline_claims():
    p = _csv("correction_pipeline").set_index("pipeline")
    assert round(p.flagged_pct.iloc[0], 1) == pytest.approx(32.3)
    assert 34 <= p.loc["detector + label correction", "adversarial_pct"] <= 35.5
    assert 33.5 <= p.loc["detector + image correction (heuristic-min)", "adversarial_pct"] <= 35
    every = p.loc["label correction on every image"]
    assert (round(every.adversarial_pct, 1), round(100 - every.normal_pct, 1)) == (77.4, 3.6)
    assert np.isclose(p.loc["no defence", "adversarial_pct"], 0)


def test_the_paper_beside_ours_in_every_table_with_a_counterpart():
    paper_cols = {"table1_attack_success": ["paper_success_pct_min", "paper_success_pct_max"],
                  "table3_operation_effects": ["paper_n", "paper_misclassified", "paper_misclassified_pct"],
                  "table4_detection_features": ["paper_accuracy_pct"],
                  "table5_detection_comparison": ["paper_accuracy_pct", "paper_eer_pct"],
                  "table6_image_correction": ["paper_normal_pct", "paper_adversarial_pct"]}
    for name, cols in paper_cols.items():
        t = _csv(name)
        for c in cols:
            assert c in t and t[c].notna().any(), f"{name}: no paper column {c}"
    # Table 4: every cell of ours is below the paper's (83 demo photos vs 4,000 ImageNet images)
    t4 = _csv("table4_detection_features")
    assert t4.paper_accuracy_pct.notna().all() and (t4.accuracy_pct < t4.paper_accuracy_pct).all()
    # Table 1: ADef succeeds here (our own implementation), almost never in the paper (Foolbox 1.8)
    t1 = _csv("table1_attack_success").set_index("attack")
    assert t1.loc["adef", "success_saved_pct"] > 90 and t1.loc["adef", "paper_success_pct_max"] < 1


def test_what_disagrees_with_the_paper():
    # Fig. 8: the paper has heuristic-min above every fixed QF in PSNR and SSIM; here QF 90 is above it
    q = _csv("fig8_corrected_quality").groupby("method")[["psnr", "ssim"]].mean()
    assert q.loc["QF 90", "psnr"] > q.loc["Heuristic - min", "psnr"] > q.loc["QF 80", "psnr"]
    assert q.loc["QF 90", "ssim"] > q.loc["Heuristic - min", "ssim"]
    assert (round(q.loc["QF 90", "psnr"], 1), round(q.loc["Heuristic - min", "psnr"], 1)) == (39.6, 38.4)
    # label correction: scaling alone corrects fewer adversarial images (McNemar p < 0.05); that it harms
    # fewer normal ones is not significant (README says so)
    lc = _csv("fig6_label_correction")
    s = lc.groupby(["op_set", "type"])[["correct", "n"]].sum()
    pct = (100 * s.correct / s.n).round(1)
    assert pct["scaling", "normal"] == 97.6 > pct["JPEG+scaling", "normal"]
    assert pct["scaling", "adversarial"] == 70.9 < pct["JPEG+scaling", "adversarial"]
    tests = _csv("paired_tests").set_index("claim")
    assert tests.loc["label correction restores adversarial images", "p"] < 0.05
    assert tests.loc["label correction keeps normal images (harm = 100 - rate)", "p"] > 0.5
    assert tests.loc["image correction of adversarial images (Table 6)", "p"] > 0.5  # QF 50 vs heuristic-min


def test_tables_keep_one_unit_per_column():
    from advlib import paper

    for path in sorted(T.glob("*.csv")):
        t = pd.read_csv(path)
        bare = [c for c in t.columns if c in paper.FRACTION_METRICS or c.removesuffix("_ci_low").removesuffix("_ci_high")
                in paper.FRACTION_METRICS]
        assert not bare, f"{path.name}: fraction metrics not in percent: {bare}"
        for c in t.columns:
            if c.endswith("_pct") or "_pct_ci_" in c:
                v = t[c].dropna()
                if c == "paper_misclassified_pct":  # the paper's Table 3 has JSMA 72 of 71 at JPEG 100 (its typo)
                    v = v[~((t.set == "jsma") & (t.op == "jpeg_100"))]
                assert ((v >= 0) & (v <= 100)).all(), f"{path.name}: {c} outside 0-100"
            if c in paper.COUNT_COLUMNS:  # written as integers ("83", not "83.0"); empty where missing
                raw = pd.read_csv(path, dtype=str, keep_default_na=False)[c]
                assert raw[raw != ""].str.fullmatch(r"-?\d+").all(), f"{path.name}: count column {c} is not integer"
        text = path.read_text()
        assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text, f"{path.name}: a machine's path"


def test_every_readme_statement_holds_on_the_committed_tables():
    """advlib.claims (what make reproduce checks on a rerun's tables) on the committed demo: every
    statement holds outright, none only within tolerance."""
    from advlib import claims

    df = claims.evaluate(T, "demo")
    assert (df.state == claims.HOLDS).all(), df[df.state != claims.HOLDS][["id", "state", "measured"]].to_string()


def test_what_agrees_with_the_paper():
    t1 = _csv("table1_attack_success").set_index("attack")
    assert t1.drop(index="adef").success_saved_pct.idxmin() == "jsma"
    assert (t1.loc["jsma", "success_saved"], t1.loc["jsma", "attacked"]) == (13, 20)
    assert (t1.loc["adef", "success_saved"], t1.loc["adef", "attacked"]) == (19, 20)
    assert (round(t1.loc["jsma", "paper_success_pct_min"]), round(t1.loc["jsma", "paper_success_pct_max"])) == (7, 11)
    # Table 3, ours and the paper's ResNet-50 (its sets: 1,000 normal images; all attacks' successes together)
    t3 = _csv("table3_operation_effects")
    t3["type"] = np.where(t3.kind == "normal", "normal", "adversarial")
    g = t3.groupby(["type", "op"])[["misclassified", "n"]].sum()
    ours = (100 * g.misclassified / g.n).round(1)
    p = t3.drop_duplicates(["set", "op"]).dropna(subset=["paper_n"])
    p = p.assign(type=np.where(p.set == "normal", "normal", "adversarial"))
    pg = p.groupby(["type", "op"])[["paper_misclassified", "paper_n"]].sum()
    theirs = (100 * pg.paper_misclassified / pg.paper_n).round(1)
    assert (ours["adversarial", "jpeg_100"], theirs["adversarial", "jpeg_100"]) == (94.0, 98.2)
    assert (ours["normal", "blur_3"], theirs["normal", "blur_3"]) == (27.7, 25.9)
    assert (theirs["normal", "jpeg_40"], theirs["normal", "scale_1.25"]) == (4.6, 2.9)
    shown = ["jpeg_80", "jpeg_60", "jpeg_40"] + [f"scale_{s}" for s in ("0.75", "0.85", "0.95", "1.05", "1.15", "1.25")]
    assert theirs["adversarial"][shown].min() >= 9.5 and theirs["adversarial"][shown].max() <= 16
    # Table 6: heuristic-min is the best heuristic variant on adversarial images, as in the paper
    t6 = _csv("table6_image_correction")
    h = t6[t6.method.str.match(r"Heuristic - \w+$")].set_index("method")
    assert h.adversarial_pct.idxmax() == h.paper_adversarial_pct.idxmax() == "Heuristic - min"
    # Table 5: the paper's fine-tuned raw-image CNNs, seen attacks
    t5 = _csv("table5_detection_comparison")
    from advlib import paper

    ft = paper.TABLE5[paper.TABLE5.detector.str.contains("fine-tuning") & paper.TABLE5.scenario.str.startswith("seen")]
    assert (ft.accuracy.min(), ft.accuracy.max()) == (99.49, 99.60)
    assert t5[t5.detector.str.startswith("EfficientNet-Lite0")].paper_accuracy_pct.isna().all()  # no counterpart


def test_cheap_detection_claims():
    """README "Cheap detection" and "The shipped detector": the target met by 2 of 25; continuous
    features above the paper's at every number of passes; dev-calibrated thresholds miss 5%; the
    shipped detector is the demo's and states its nested-evaluation rates."""
    t = _csv("detection_cost")
    sel = t[t.selected.astype(bool)]
    assert sel.passes.max() <= 8 and len(sel) == 25
    met = t[t.meets_target.eq(True)]
    assert sorted(zip(met.feature, met.passes)) == [("shift", 6), ("shift", 8)]
    all38 = t[(t.feature == "diff") & (t.passes == 39)].iloc[0]
    assert _r(all38.accuracy_pct) == 84.4 and round(all38.auc, 3) == 0.879
    for kind in ("shift", "prob+shift"):  # higher AUC than the paper's diff feature at every size
        for passes, g in t[t.feature == kind].groupby("passes"):
            assert g.auc.iloc[0] > t[(t.feature == "diff") & (t.passes == passes)].auc.iloc[0], (kind, passes)
    assert t.loc[t.auc.idxmax(), ["feature", "passes"]].tolist() == ["shift", 39]
    assert (sel.fpr_calibrated_pct > 5).sum() == 22 and _r(sel.fpr_calibrated_pct.max()) == 21.7
    squeeze = t[t.feature.str.startswith("feature squeezing")].iloc[0]
    assert squeeze.passes == 4 and round(squeeze.auc, 3) == 0.794
    shipped_dir = paths.ROOT / "advlib" / "pretrained" / "efficientnet_lite0"
    meta = json.loads((shipped_dir / "detector.json").read_text())["meta"]
    assert meta == json.loads((T / "detector_cheap.json").read_text())  # the committed detector is the demo run's
    assert (meta["feature"], meta["passes"], meta["run"], meta["calibration"]) == ("shift", 8, "demo", "full-size photos")
    assert round(meta["threshold"], 3) == 0.761
    o, full = meta["oof"], meta["oof_calibration_photos"]
    assert (_pct(o["fpr"]), _pct(o["fpr_cp_low"]), _pct(o["fpr_cp_high"])) == (3.6, 0.8, 10.2)
    assert (_pct(o["detection_rate"]), _pct(o["detection_rate_cp_low"]), _pct(o["detection_rate_cp_high"])) == \
        (58.3, 51.1, 65.2)
    assert (_pct(full["fpr"]), _pct(full["fpr_cp_high"]), _pct(full["detection_rate"])) == (4.8, 16.2, 72.5)
    assert (o["n_photos"], full["n_photos"]) == (83, 42)
    nested = _csv("detection_shipped_nested")
    folds = nested[nested.scope.str.startswith("outer fold")]
    assert len(folds) == 5 and folds.ops.nunique() == 5
    assert (_r(folds.detection_rate_pct.min()), _r(folds.detection_rate_pct.max())) == (22.9, 76.9)


def test_adaptive_attack_claims():
    """README "Adaptive attacks" (demo): 24 images of distinct full-size photos per configuration,
    judged by their outer fold's detectors; where the corrections and the cheap detector break, by
    the lower bound of the Clopper-Pearson interval."""
    t = _csv("table_adaptive").set_index(["attack", "eps_levels"])
    assert (t.n_images == 24).all() and (t.n_photos == 24).all() and (t.n_folds == 5).all()
    assert (t.steps == 10).all() and (t.restarts == 1).all()
    defeat = lambda a, e, d: _r(t.loc[(a, float(e)), f"defeats_{d}_pct"])  # noqa: E731
    ci = lambda a, e, d: (_r(t.loc[(a, float(e)), f"defeats_{d}_ci_low"]),  # noqa: E731
                          _r(t.loc[(a, float(e)), f"defeats_{d}_ci_high"]))
    # label correction: plain PGD 0 and 2 of 24, EOT 10 and 23 of 24
    assert [defeat("pgd", e, "label_correction") for e in (1, 4)] == [0.0, 8.3]
    assert [defeat("eot_correction", e, "label_correction") for e in (1, 4)] == [41.7, 95.8]
    assert ci("eot_correction", 4, "label_correction") == (78.9, 99.9)
    # the cheap detector: plain PGD defeats it on 9 and 8 of 24, the attack through it on 18 and 23
    assert [defeat("pgd", e, "cheap_detector") for e in (1, 4)] == [37.5, 33.3]
    assert [defeat("detector_cheap", e, "cheap_detector") for e in (1, 4)] == [75.0, 95.8]
    assert ci("detector_cheap", 1, "cheap_detector") == (53.3, 90.2)
    assert _r(t.loc[("none", 0.0), "cheap_detector_flagged_pct"]) == 8.3  # 2 of 24 normal images
    # the paper's detector and feature squeezing are defeated without adaptation on most images
    assert defeat("pgd", 1, "paper_detector") == 62.5 and defeat("pgd", 1, "feature_squeezing") == 75.0
    b = _csv("table_adaptive_breaking").set_index("defence")
    assert tuple(b.loc["cheap_detector", ["breaks_adaptive", "by", "breaks_non_adaptive"]]) == \
        ("1/255", "detector_cheap", "not shown")
    assert tuple(b.loc["label_correction", ["breaks_adaptive", "breaks_non_adaptive"]]) == ("4/255", "not shown")
    assert b.loc["feature_squeezing", "breaks_non_adaptive"] == "1/255"
    corr = json.loads((T / "adaptive_surrogate_correlation.json").read_text())
    assert (round(corr["normal images"]["pearson"], 2), round(corr["pgd adversarials, 4/255"]["pearson"], 2)) == \
        (0.86, 0.79)


def test_adaptive_study_claims():
    """README "The full adaptive study" (tables/adaptive/, params/adaptive.yaml)."""
    A = paths.ROOT / "tables" / "adaptive"
    t = pd.read_csv(A / "table_adaptive.csv").set_index(["attack", "eps_levels"])
    assert (t.drop(index=[("detector_paper", 4.0)]).n_images == 24).all()
    assert t.loc[("detector_paper", 4.0), "n_images"] == 5
    b = pd.read_csv(A / "table_adaptive_breaking.csv").set_index("defence")
    assert b.breaks_adaptive.isin(["1/255", "4/255"]).all()
    assert tuple(b.loc[["label_correction", "image_correction"], "breaks_adaptive"]) == ("4/255", "4/255")
    assert b.loc["cheap_detector", "breaks_non_adaptive"] == "not shown"
    assert b.loc["feature_squeezing", "breaks_non_adaptive"] == "1/255"
    # the sanity budget: every attack wins on its own target
    assert t.loc[("pgd", 32.0), "success_saved_pct"] == 100
    assert t.loc[("eot_correction", 32.0), "defeats_label_correction_pct"] == 100
    assert t.loc[("detector_cheap", 32.0), "defeats_cheap_detector_pct"] == 100
    # no check for masked gradients beats the best gradient attack
    m = pd.read_csv(A / "table_adaptive_masking.csv")
    assert len(m) and not m.beats_gradient.any() and not m.higher_rate.any()
    c = pd.read_csv(A / "table_adaptive_convergence.csv").set_index(["attack", "eps_levels", "steps", "restarts"])
    assert [int(c.loc[("eot_correction", 1.0, s, 1), "defeated"]) for s in (10, 50, 200)] == [1, 2, 2]
    assert (c.xs(4.0, level="eps_levels").defeated == 4).all()
