"""advlib.reproducibility: the comparison of a run's tables with the references, its tolerances
(from the measured drift) and strictness, on real tables (the committed demo's) and small edits."""

import pandas as pd
import pytest

from advlib import paths, profiles, reproducibility as rep

DEMO = paths.ROOT / "tables" / "demo"


def _t1() -> pd.DataFrame:
    return pd.read_csv(DEMO / "table1_attack_success.csv")


def test_the_committed_demo_tables_are_their_own_references():
    """The demo's reference copies are the committed tables, number for number."""
    for name in rep.COMPARED:
        ref = rep.reference_dir("demo") / f"{name}.csv"
        assert ref.exists(), f"no reference copy of {name}"
        rows = rep.compare(name, pd.read_csv(DEMO / f"{name}.csv"), pd.read_csv(ref), "demo")
        assert len(rows) and (rows["difference"] == 0).all(), name


def test_tolerance_is_the_measured_drift_with_a_margin():
    measured = rep.measured_drift()
    assert measured, f"no drift measurement in {rep.DRIFT_FILE}"
    for profile, tables in measured.items():
        for name, drift in tables.items():
            images, auc = rep.allowed_images(profile, name)
            assert images >= drift["images"] * rep.MARGIN - 1e-9 and images >= 1
            assert images < drift["images"] * rep.MARGIN + 1
            assert auc >= drift.get("auc", 0) * rep.MARGIN - 1e-9
    assert rep.allowed_images("paper", "table1_attack_success") == rep.allowed_images("demo", "table1_attack_success")


def test_counts_move_by_whole_images_within_the_allowance():
    ref = _t1()
    images, _ = rep.allowed_images("demo", "table1_attack_success")
    moved = ref.copy()
    moved.loc[moved.attack == "pgd", "success_saved"] += images  # at the limit: within
    rows = rep.compare("table1_attack_success", moved, ref, "demo")
    assert rows.within.all() and rows.difference.max() == images
    moved.loc[moved.attack == "bim", "success_raw"] -= images + 1  # one image beyond
    rows = rep.compare("table1_attack_success", moved, ref, "demo")
    bad = rows[~rows.within]
    assert bad[["row", "column", "difference"]].values.tolist() == [["efficientnet_lite0 / bim", "success_raw", images + 1]]
    line = rep.summary_line("table1_attack_success", rows)
    assert line.startswith("Table 1: 47 of 48 counts within tolerance") and "bim success_raw differs by" in line


def test_a_missing_row_is_never_within():
    ref = _t1()
    rows = rep.compare("table1_attack_success", ref[ref.attack != "jsma"], ref, "demo")
    jsma = rows[rows.row.str.endswith("jsma")]
    assert len(jsma) == 4 and not jsma.within.any()


def test_percentages_are_allowed_the_same_images_of_their_n():
    name = "table6_image_correction"
    ref = pd.read_csv(DEMO / f"{name}.csv")
    images, _ = rep.allowed_images("demo", name)
    rows = rep.compare(name, ref, ref, "demo").set_index(["row", "column"])
    qf90 = ref.set_index("method").loc["QF 90"]
    assert rows.loc[("QF 90", "normal_pct"), "allowed"] == pytest.approx(100 * images / qf90.n_normal)
    assert rows.loc[("QF 90", "adversarial_pct"), "allowed"] == pytest.approx(100 * images / qf90.n_adversarial)
    assert (qf90.n_normal, qf90.n_adversarial) == (83, 199)


def test_check_reports_and_strict_raises(tmp_path, monkeypatch):
    """check() writes reproducibility.csv for a run of the demo's parameters; beyond the tolerance
    it only reports unless strict (ADVLIB_STRICT or the profile's strict_reference)."""
    demo_yaml = (paths.PARAMS_DIR / "demo.yaml").read_text()
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "demo.yaml").write_text(demo_yaml)
    monkeypatch.setattr(paths, "PARAMS_DIR", tmp_path / "params")
    ref_dir = tmp_path / "tests" / "reference" / "demo"
    ref_dir.mkdir(parents=True)
    _t1().to_csv(ref_dir / "table1_attack_success.csv", index=False)
    params = profiles.load_profile("demo", check=False)
    tables = profiles.out_dirs(params)["tables"]
    far = _t1()
    far.loc[far.attack == "pgd", "success_saved"] += 10
    far.to_csv(tables / "table1_attack_success.csv", index=False)
    monkeypatch.delenv(rep.STRICT_ENV, raising=False)
    lines = rep.check(params, "table1_attack_success")
    assert lines[0].startswith("Table 1: 47 of 48 counts within tolerance")
    report = pd.read_csv(tables / "reproducibility.csv")
    assert list(report.columns) == rep.COLUMNS and len(report) == 48 and (~report.within).sum() == 1
    monkeypatch.setenv(rep.STRICT_ENV, "1")
    with pytest.raises(rep.DriftError, match="pgd success_saved differs by 10"):
        rep.check(params, "table1_attack_success")
    monkeypatch.setenv(rep.STRICT_ENV, "0")
    assert not rep.strict({**params, "strict_reference": True})
    monkeypatch.delenv(rep.STRICT_ENV)
    assert rep.strict({**params, "strict_reference": True}) and not rep.strict(params)
    other = {**params, "seed": 1}
    assert "nothing to compare with" in rep.check(other)[0]


def test_record_drift_adds_and_replaces_a_setting(tmp_path):
    ours, ref = tmp_path / "ours", tmp_path / "ref"
    ours.mkdir(), ref.mkdir()
    t1 = _t1()
    t1.to_csv(ref / "table1_attack_success.csv", index=False)
    moved = t1.copy()
    moved.loc[0, "success_saved"] += 2
    moved.to_csv(ours / "table1_attack_success.csv", index=False)
    drift = tmp_path / "drift.csv"
    rows = rep.record_drift("demo", "a CPU", ours, ref, drift)
    assert rows.iloc[0].max_images == 2 and rows.iloc[0].moved == 1
    t1.to_csv(ours / "table1_attack_success.csv", index=False)
    rep.record_drift("demo", "a CPU", ours, ref, drift)  # measured again: replaces the row
    rep.record_drift("demo", "another CPU", ours, ref, drift)
    table = pd.read_csv(drift)
    assert len(table) == 2 and (table.max_images == 0).all()
    assert rep.measured_drift(drift) == {"demo": {"table1_attack_success": {"images": 0.0, "auc": 0.0}}}
