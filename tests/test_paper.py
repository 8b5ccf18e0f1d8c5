"""The paper's published numbers (advlib.paper) agree with the totals the paper states."""

import numpy as np
import pytest

from advlib import attacks, correct, detect, experiments, models, ops, paper


def test_table1_totals():
    t = paper.TABLE1
    assert list(t.columns) == ["vgg16", "vgg19", "resnet18", "resnet50"]
    assert set(t.columns) <= set(models.CLASSIFIERS)
    assert list(t.index) == list(attacks.ATTACKS)
    assert len(t) == 12 and t.values.sum() == 22326  # "22,326 misclassified adversarial images in total"
    assert t.loc["l2_iterative", "vgg16"] == 820 and t.loc["adef", "vgg19"] == 4 and t.loc["jsma", "resnet50"] == 71
    assert (t.values <= 1000).all()


def test_table2_totals_and_settings():
    t = paper.TABLE2
    assert (t["total"] == t["normal"] + t["adversarial"]).all()
    # printed to 2 decimals, not always rounded: 7718/2800 = 2.756 is printed "1:2.75"
    assert np.allclose(t["ratio"], t["adversarial"] / t["normal"], atol=0.01)
    by = t.set_index(["setting", "split"])
    for split in ("train", "dev", "eval"):
        assert by.loc[("combination", split), "adversarial"] == (
            by.loc[("targeted", split), "adversarial"] + by.loc[("non-targeted", split), "adversarial"])
    sums = t.groupby("setting")[["normal", "adversarial"]].sum()
    assert (sums["normal"] == 4000).all()
    # Table 1 per attack family == Table 2 per setting, and 22,326 overall
    assert sums.loc["targeted", "adversarial"] == paper.TABLE1.loc[list(paper.TARGETED)].values.sum()
    assert sums.loc["non-targeted", "adversarial"] == paper.TABLE1.loc[list(paper.NON_TARGETED)].values.sum()
    assert sums.loc["combination", "adversarial"] == 22326


def test_table3_matches_table1_and_op_names():
    t = paper.TABLE3_RESNET50
    assert t.shape == (13, 15)
    assert (t["original"].drop("normal") == paper.TABLE1["resnet50"]).all()
    assert t.loc["normal", "original"] == 0 and t.loc["normal", "blur_3x3"] == 259
    assert t.loc["fgsm", "rotate_5"] == 158 and t.loc["cw", "jpeg_20"] == 60
    ours = set(t.columns) - {"original", "jpeg_20", "blur_3x3"}
    assert ours <= set(ops.OPERATIONS), ours - set(ops.OPERATIONS)


def test_table4_table5_consistent():
    t4, t5 = paper.TABLE4, paper.TABLE5
    assert len(t4) == 4 * 6 * 2
    assert set(t4["group"]) <= set(ops.GROUPS) and set(t4["detector"]) <= set(detect.DETECTORS)
    acc = t4.set_index(["detector", "group", "feature"])["accuracy"]
    # the two detectors Table 5 picks from Table 4 (Sect. 4.3)
    assert acc[("mlp", "jpeg+scaling", "count")] == t4[t4.feature == "count"]["accuracy"].max() == 93.56
    assert acc[("svm", "all", "diff")] == t4[t4.feature == "diff"]["accuracy"].max() == 94.20
    seen = t5[t5.scenario == "seen (combination)"].set_index("detector")
    assert seen.loc["MLP - counting feature", "accuracy"] == 93.56
    assert seen.loc["SVM - differences feature", "accuracy"] == 94.20
    assert len(t5) == 27 and t5.groupby("scenario").size().eq(9).all()
    assert list(t5["scenario"].unique()) == [name for name, _, _ in experiments.SCENARIOS]
    assert set(paper.TABLE2["setting"]) == set(experiments.SETTINGS)
    assert t5["eer"].isna().sum() == 3 and t5[t5["eer"].isna()]["detector"].eq("Feature squeezing").all()
    by = t5.set_index(["scenario", "detector"])
    assert by.loc[("non-targeted -> targeted", "XceptionNet (training)"), "accuracy"] == 100.0


def test_table6_and_label_correction():
    t6 = paper.TABLE6.set_index("method")
    assert len(t6) == 11
    heur = t6.loc[[f"Heuristic - {s}" for s in ("max", "median", "2ndmin", "min")]]
    # stronger compression: more adversarial images corrected, fewer normal ones kept
    assert heur["adversarial"].is_monotonic_increasing and heur["normal"].is_monotonic_decreasing
    assert t6.loc["Heuristic - min"].tolist() == [97.52, 88.98]
    assert t6.loc["Denoising autoencoder"].tolist() == [57.77, 49.81]
    # method names as advlib.experiments.table6 writes them, so the two tables join on "method"
    assert {f"QF {q}" for q in correct.FIXED_QFS} | {f"Heuristic - {s}" for s in correct.QF_STRATEGIES} < set(t6.index)
    assert paper.LABEL_CORRECTION == {"adversarial_corrected": 89.91, "normal_harmed": 1.88}
    assert pytest.approx(100 - paper.LABEL_CORRECTION["normal_harmed"]) == 98.12  # "about 98.12%" (Sect. 5.3.1)


def test_paper_beside_our_tables_in_the_same_units():
    import pandas as pd

    # Table 1: our success rate beside the paper's range over its four classifiers (of 1,000 images)
    t1 = pd.DataFrame({"classifier": "x", "kind": "targeted", "attack": ["lbfgs", "adef"], "attacked": [20, 10],
                       "success_raw": [10, 1], "success_rounded": [9, 1], "success_saved": [9, 0],
                       "median_l2": [1.0, np.nan], "median_linf": [3.0, np.nan], "median_psnr": [40.0, np.nan]})
    b1 = paper.beside_table1(t1).set_index("attack")
    assert b1.loc["lbfgs", "success_saved_pct"] == 45.0
    assert (b1.loc["lbfgs", "paper_success_pct_min"], b1.loc["lbfgs", "paper_success_pct_max"]) == (22.9, 62.3)
    assert b1.loc["adef", "paper_success_pct_max"] == 0.4 and b1["attacked"].dtype == np.int64
    # Table 4/5: fractions become percent with _pct names, CI bounds stay two numeric columns
    t4 = pd.DataFrame({"detector": ["svm", "svm"], "group": ["all", "blur"], "feature": ["diff", "count"],
                       "accuracy": [0.845, 0.5], "accuracy_ci_low": [0.8, 0.4], "accuracy_ci_high": [0.9, 0.6],
                       "auc": [0.87, 0.5], "n_images": [284.0, 284.0], "n_photos": [83.0, 83.0]})
    b4 = paper.beside_table4(t4)
    assert list(b4.columns) == ["detector", "group", "feature", "accuracy_pct", "accuracy_pct_ci_low",
                                "accuracy_pct_ci_high", "auc", "n_images", "n_photos", "paper_accuracy_pct",
                                "paper_constant_accuracy_pct"]
    assert b4.accuracy_pct.tolist() == pytest.approx([84.5, 50.0]) and b4.auc.tolist() == [0.87, 0.5]
    assert b4.paper_accuracy_pct.tolist() == [94.20, 87.35] and b4.n_photos.dtype == np.int64
    assert b4.paper_constant_accuracy_pct.tolist() == pytest.approx([100 * 3124 / 3724] * 2, abs=0.05)  # 83.9%
    t5 = pd.DataFrame({"scenario": "seen (combination)", "accuracy": [0.8, 0.7, 0.6], "eer": [0.2, 0.3, np.nan],
                       "detector": ["SVM - differences feature", "Feature squeezing (paper threshold 1.2128)",
                                    "EfficientNet-Lite0 (fine-tuning)"]})
    b5 = paper.beside_table5(t5)
    assert b5.paper_accuracy_pct.tolist()[:2] == [94.20, 83.97] and np.isnan(b5.paper_accuracy_pct.iloc[2])
    assert b5.paper_eer_pct.iloc[0] == 9.67 and b5.eer_pct.iloc[0] == pytest.approx(20.0)
    # Table 3: the paper's ResNet-50 counts as percent of its sets (1,000 normal; an attack's successes)
    t3 = pd.DataFrame({"classifier": "x", "set": ["normal", "bim", "bim"], "kind": ["normal", "targeted", "targeted"],
                       "op": ["jpeg_40", "jpeg_80", "blur_3"], "n": [10, 5, 5], "misclassified": [1, 2, 3]})
    b3 = paper.beside_table3(t3)
    assert b3.paper_n.tolist() == [1000, 431, 431]
    assert b3.paper_misclassified_pct.tolist() == pytest.approx([4.6, 100 * 47 / 431, 100 * 65 / 431])
    # Table 6: percent columns named as such, the paper's beside
    t6 = pd.DataFrame({"method": ["Heuristic - min", "Heuristic - min (top-1 match)"], "normal": [98.8, 92.8],
                       "adversarial": [75.1, 67.7], "n_normal": [83, 83]})
    b6 = paper.beside_table6(t6)
    assert b6.paper_adversarial_pct.iloc[0] == 88.98 and np.isnan(b6.paper_adversarial_pct.iloc[1])
    assert {"normal_pct", "adversarial_pct", "paper_normal_pct"} <= set(b6.columns)
