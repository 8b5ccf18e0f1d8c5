"""Issue 24, item 9: what a researcher looks for in ``advlib scan``: --threshold, --fpr with a calibration
folder, JSON reports with the CSV's columns, the score histogram, the shipped all-38 paper detector
(--detector paper), a classifier without a shipped detector, and a help that says what the detector is.
Real photos and FGSM files (the ``corpus`` fixture), the real classifier."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import advlib
from advlib import cli, detect
from advlib.scan import report as scan_report, shipped
from test_cli import _rows, _scan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder(corpus, tmp_path_factory):
    """Two photos and two FGSM files of the corpus: flagged and not."""
    f = tmp_path_factory.mktemp("options") / "photos"
    f.mkdir()
    for p in [*corpus["originals"][:2], *corpus["adversarial"][:2]]:
        shutil.copy(p, f / p.name)
    return f


def test_threshold_sets_the_flags_and_a_rerun_reuses_the_scores(corpus, folder, tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert _scan(folder, "--threshold", "0", out=out, detector=corpus["detector"]) == 0
    rows = _rows(out)
    assert all(r["flag"] == "True" and r["threshold"] == "0.0" for r in rows)
    assert "4 flagged as adversarial (score >= 0, --threshold)" in capsys.readouterr().out
    assert _scan(folder, "--threshold", "1", out=out, detector=corpus["detector"]) == 0
    assert "4 already in the report (skipped)" in capsys.readouterr().out  # nothing classified again
    again = _rows(out)
    assert [r["score"] for r in again] == [r["score"] for r in rows]
    assert all(r["flag"] == "False" and r["threshold"] == "1.0" for r in again)
    assert _scan(folder, "--threshold", "1.5", out=out, detector=corpus["detector"]) == 2


def test_fpr_sets_the_threshold_on_a_calibration_folder(corpus, folder, tmp_path, capsys):
    calibration = tmp_path / "normal"
    calibration.mkdir()
    normal = [p for p in corpus["folder"].rglob("*") if p.name.startswith("imagenet_") or p.suffix == ".png"]
    for p in normal:
        shutil.copy(p, calibration / p.name)
    out = tmp_path / "r.csv"
    assert _scan(folder, "--fpr", "0.25", "--calibration", calibration, out=out, detector=corpus["detector"]) == 0
    scores = corpus["det"].score(advlib.load_images(sorted(str(p) for p in calibration.iterdir())))
    expected = detect.calibrate_threshold(scores, 0.25)
    assert {float(r["threshold"]) for r in _rows(out)} == {expected}
    text = capsys.readouterr().out
    assert (f"set at 25.0% false positives on {len(normal)} normal image(s) of {calibration}: "
            f"{int(np.sum(scores >= expected))} of them flagged") in text
    assert all(r["flag"] == str(float(r["score"]) >= expected) for r in _rows(out))
    for bad in (["--fpr", "0.05"], ["--calibration", str(calibration)], ["--fpr", "0", "--calibration", str(calibration)],
                ["--fpr", "0.05", "--calibration", str(calibration), "--threshold", "0.5"]):
        assert _scan(folder, *bad, out=tmp_path / "x.csv", detector=corpus["detector"]) == 2, bad
    assert not (tmp_path / "x.csv").exists()


def test_json_report_has_the_csv_columns_and_resumes(corpus, folder, tmp_path, capsys):
    assert _scan(folder, "--format", "csv", out=tmp_path / "r.csv", detector=corpus["detector"]) == 0
    assert _scan(folder, "--format", "json", out=tmp_path / "r.json", detector=corpus["detector"]) == 0
    rows, data = _rows(tmp_path / "r.csv"), json.loads((tmp_path / "r.json").read_text())
    assert [list(r) for r in data] == [list(r) for r in rows] == [scan_report.report_columns(False)] * 4
    for r, d in zip(rows, data):
        assert isinstance(d["top1"], int) and isinstance(d["flag"], bool) and d["error"] is None
        assert d["score"] == float(r["score"]) and d["flag"] == (r["flag"] == "True") and d["path"] == r["path"]
        assert abs(d["top1_prob"] - float(r["top1_prob"])) < 1e-6
    capsys.readouterr()
    assert _scan(folder, out=tmp_path / "r.json", detector=corpus["detector"]) == 0  # format from the suffix
    assert "4 already in the report (skipped)" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert _scan(folder, "--format", "json", out=tmp_path / "r.csv", detector=corpus["detector"]) == 2


def test_plot_saves_the_score_histogram(corpus, folder, tmp_path, capsys):
    assert _scan(folder, "--plot", tmp_path / "scores.png", out=tmp_path / "r.csv", detector=corpus["detector"]) == 0
    assert f"score histogram: {tmp_path / 'scores.png'}" in capsys.readouterr().out
    with Image.open(tmp_path / "scores.png") as im:
        assert im.format == "PNG" and im.size == (768, 432)
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    red = (pixels[:, 0] > 150) & (pixels[:, 1] < 80) & (pixels[:, 2] < 80)  # the flagged bars are drawn
    assert red.sum() > 100


def test_detector_paper_is_the_shipped_all_38_detector(corpus, classifier, tmp_path, monkeypatch, capsys):
    folder = corpus["folder"]
    monkeypatch.setattr(shipped, "PRETRAINED_DIR", tmp_path / "pretrained")
    monkeypatch.setattr(advlib.pretrained, "DIR", tmp_path / "pretrained")  # where the shipped folder's functions look
    assert cli.main(["scan", str(folder), "--detector", "paper", "--out", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert "no paper (all-38) detector ships with this advlib for classifier 'efficientnet_lite0'" in err
    assert "ship_detector" in err
    x = advlib.load_images([str(p) for p in [*corpus["originals"][:2], *corpus["adversarial"][:2]]])
    det = advlib.Detector(classifier, feature="diff", ops="all", estimator="svm", batch_size=4)
    det.fit(x, [False, False, True, True]).save(tmp_path / "saved")
    with pytest.raises(ValueError, match="not the paper's detector"):
        shipped.ship_detector(corpus["detector"])  # 16 JPEG operations only
    dst = shipped.ship_detector(tmp_path / "saved")
    assert dst == tmp_path / "pretrained" / "efficientnet_lite0.paper"
    assert sorted(f.name for f in dst.iterdir()) == ["detector.json", "model.skops"]
    out = tmp_path / "paper.csv"
    assert cli.main(["scan", *map(str, corpus["originals"][:2]), "--detector", "paper", "--out", str(out),
                     "--device", "cpu", "--quiet"]) == 0
    np.testing.assert_allclose([float(r["score"]) for r in _rows(out)], det.score(x[:2]), rtol=0, atol=1e-12)
    assert "efficientnet_lite0 --detector paper: diff features of 38 operation(s)" in \
        "".join(shipped.describe_shipped(n, m) for n, m in shipped.shipped_detectors().items())


def test_a_classifier_without_a_shipped_detector_says_how_to_get_one(corpus, tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert cli.main(["scan", str(corpus["folder"]), "--classifier", "resnet50", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no detector ships with this advlib for classifier 'resnet50'" in err
    assert "advlib reproduce demo --set classifiers=[resnet50]" in err and "--detector DIR" in err
    assert not out.exists()


def test_help_documents_every_option_and_the_detector():
    text = subprocess.run([sys.executable, "-m", "advlib", "scan", "--help"], capture_output=True, text=True).stdout
    for option in ("--threshold", "--fpr", "--calibration", "--format", "--plot", "--threads", "--shards", "--shard",
                   "--merge", "--executor", "--jobs-folder", "--cpus-per-job", "--job-option", "--detector DIR|paper"):
        assert option in text, option
    assert "not the paper's" in " ".join(text.split())  # the shipped default uses prob+shift of 5 operations
    assert "The detector is the paper's" not in text
    assert "top1_prob" in text and "threshold (the one this scan used)" in " ".join(text.split())
