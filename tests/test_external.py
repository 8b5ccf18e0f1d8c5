"""advlib.external without a download: the check on a folder of demo photos with a detector
trained here on other demo photos and their Foolbox FGSM versions; reading photo files."""

import bz2
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from advlib import Detector, corpora, external, predict_top5
from advlib.images import load_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Demo photos of the check folder (the detector is trained on others).
CHECK = ("skimage_chelsea", "sklearn_china", "skimage_coffee")
TRAIN = ("skimage_astronaut", "skimage_rocket", "matplotlib_grace_hopper", "sklearn_flower", "sporco_monarch")
STATED = {"fpr_calibrated": 0.1, "fpr_calibrated_ci_low": 0.0, "fpr_calibrated_ci_high": 0.3,
          "detection_rate_calibrated": 0.7, "detection_rate_calibrated_ci_low": 0.6,
          "detection_rate_calibrated_ci_high": 0.8}


def _photos(ids):
    by_id = {p.source_id: p for p in corpora.demo_photos()}
    return [by_id[i] for i in ids]


@pytest.fixture(scope="module")
def detector_dir(classifier, tmp_path_factory):
    """A small detector (one JPEG operation, SVM) on 5 photos and their FGSM (8/255) versions,
    saved with stated rates in its metadata as the shipped one has."""
    x = torch.stack([load_image(p.path) for p in _photos(TRAIN)])
    labels = torch.as_tensor(predict_top5(classifier, x)[:, 0])
    adv = external.foolbox_attack(classifier, x, labels, "fgsm", [8 / 255], show=False)[8 / 255]
    det = Detector(classifier, feature="prob+shift", ops=["jpeg_90"], estimator="svm")
    det.fit(torch.cat([x, adv]), [False] * len(x) + [True] * len(adv))
    det.meta["oof"] = STATED
    return det.save(tmp_path_factory.mktemp("detector") / "det")


@pytest.fixture(scope="module")
def checked(detector_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for p in _photos(CHECK):
        shutil.copy(p.path, folder / f"{p.source_id}{p.path.suffix}")
    rows, summary = external.check(folder, detector_dir, crops=2, epsilons=(0, 8 / 255), pgd_steps=1, show=False)
    return folder, rows, summary


def test_check_rows(checked):
    folder, rows, summary = checked
    assert list(rows.columns) == ["photo", "crop", "kind", "attack", "epsilon_255", "file", "seen_by_project", "label",
                                  "top1", "kept", "linf", "score", "flagged"]
    normal, adv = rows[rows["kind"] == "normal"], rows[rows["kind"] == "adversarial"]
    assert len(normal) == 2 * len(CHECK) and set(normal["photo"]) == set(CHECK)
    assert normal["kept"].all() and (normal["label"] == normal["top1"]).all()
    # every normal crop attacked by each attack at each budget; kept exactly when the file fools
    assert len(adv) == 2 * 2 * len(normal)
    assert (adv["kept"] == (adv["top1"] != adv["label"])).all()
    assert all(str(folder / "check_files") in f for f in rows["file"])
    assert (rows["flagged"] == (rows["score"] >= summary["threshold"].iloc[0])).all()
    assert rows["seen_by_project"].all()  # the demo corpus's own photos, recognised as such


def test_check_summary(checked):
    _, rows, summary = checked
    assert list(summary.columns) == [
        "set", "attack", "epsilon_255", "n_attacked", "n_excluded_not_fooled", "n", "n_photos", "k_flagged", "rate",
        "boot_low", "boot_high", "cp_low", "cp_high", "stated", "stated_low", "stated_high", "inside_stated",
        "target", "meets_target", "threshold", "n_photos_seen_by_project", "foolbox"]
    assert list(summary["set"]) == ["normal", "fgsm eps=0/255", "fgsm eps=8/255", "pgd eps=0/255", "pgd eps=8/255",
                                    "adversarial (all)"]
    s = summary.set_index("set")
    normal = rows[rows["kind"] == "normal"]
    # the FPR is the share of normal crops flagged, nothing else
    assert s.loc["normal", "n"] == len(normal) and s.loc["normal", "rate"] == normal["flagged"].mean()
    assert s.loc["normal", "stated"] == 0.1
    assert s.loc["normal", "inside_stated"] == (s.loc["normal", "rate"] <= 0.3)
    assert s.loc["normal", "meets_target"] == (s.loc["normal", "rate"] <= 0.1)
    for name in summary["set"][1:]:
        g = rows[rows["kind"] == "adversarial"]
        if name != "adversarial (all)":
            g = g[(g["attack"] == s.loc[name, "attack"]) & (g["epsilon_255"] == s.loc[name, "epsilon_255"])]
        kept = g[g["kept"]]
        assert s.loc[name, "n_attacked"] == len(g)
        assert s.loc[name, "n_excluded_not_fooled"] == (~g["kept"]).sum()
        assert s.loc[name, "n"] == len(kept) and s.loc[name, "k_flagged"] == kept["flagged"].sum()
        assert s.loc[name, "stated"] == 0.7
    # the unperturbed "attack" at budget 0 leaves (almost) every label as it was: excluded
    assert s.loc["fgsm eps=0/255", "n_excluded_not_fooled"] >= 1
    assert s.loc["pgd eps=8/255", "n"] >= 1
    for r in summary.itertuples():
        if r.n:
            assert r.boot_low <= r.rate <= r.boot_high and r.cp_low <= r.rate <= r.cp_high
            assert 0 <= r.cp_low and r.cp_high <= 1
            assert r.n_photos <= len(CHECK)
    assert (summary["n_photos_seen_by_project"] == len(CHECK)).all()
    assert "photo bootstrap" in external.format_summary(summary)


def test_rate_summary_clusters():
    """Crops of one photo move together: the cluster interval is wider than one over files."""
    flags = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    photos = np.repeat(["a", "b", "c", "d"], 3)
    r = external.rate_summary(flags, photos, adversarial=False, n_boot=2000)
    assert (r["n"], r["n_photos"], r["k_flagged"], r["rate"]) == (12, 4, 3, 0.25)
    assert r["boot_low"] == 0 and r["boot_high"] >= 0.75 - 1e-12
    assert math.isclose(r["cp_low"], 0.0549, abs_tol=1e-4) and math.isclose(r["cp_high"], 0.5719, abs_tol=1e-4)


def test_read_photos_manifest(tmp_path):
    src = _photos(["skimage_chelsea"])[0].path
    shutil.copy(src, tmp_path / "a.png")
    manifest = pd.DataFrame([{"photo_id": "a", "package": "p", "version": "1", "path": "x/a.png", "licence": "l",
                              "sha256": "0" * 64, "file": "a.png", "decode": "pillow"}])
    manifest.to_csv(tmp_path / external.MANIFEST, index=False)
    with pytest.raises(ValueError, match="a.png"):
        external.read_photos(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        external.read_photos(tmp_path / "nowhere")


def test_photo_crops_decoders(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (300, 400), dtype=np.uint8)
    np.savez(tmp_path / "g.npz", data=grey)
    colour = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    (tmp_path / "c.dat").write_bytes(bz2.compress(colour.tobytes()))
    x, names = external.photo_crops(tmp_path / "g.npz", "npz", crops=3)
    assert x.shape == (3, 3, 224, 224) and x.dtype == torch.uint8 and names == ["center256", "tl256", "br256"]
    assert (x[:, 0] == x[:, 1]).all()  # a grey photo, read as RGB
    y, _ = external.photo_crops(tmp_path / "c.dat", "bz2-raw-240x320x3", crops=2)
    assert y.shape == (2, 3, 224, 224) and not torch.equal(y[0], y[1])
    with pytest.raises(ValueError, match="decode"):
        external.photo_crops(tmp_path / "g.npz", "tiff")
    with pytest.raises(ValueError, match="crops"):
        external.photo_crops(tmp_path / "g.npz", "npz", crops=0)


def test_photo_list_is_pinned_and_new():
    ids = [p.photo_id for p in external.PHOTOS]
    assert len(ids) >= 16 and len(set(ids)) == len(ids)
    assert all(len(p.sha256) == 64 and p.version and p.licence for p in external.PHOTOS)
    demo = {external.file_sha256(p.path) for p in corpora.demo_photos()}
    assert not demo & {p.sha256 for p in external.PHOTOS}


def test_stated_rates_read_the_nested_evaluation_and_older_metadata():
    from advlib.external import stated_rates

    nested = {"oof": {"fpr": 0.2, "detection_rate": 0.5}, "oof_calibration_photos": {
        "fpr": 0.07, "fpr_ci_low": 0.02, "fpr_ci_high": 0.12, "detection_rate": 0.7, "detection_rate_ci_low": 0.6,
        "detection_rate_ci_high": 0.8}}
    s = stated_rates(nested)  # the full-size photos' rates: what photos from elsewhere are
    assert (s["fpr_calibrated"], s["fpr_calibrated_ci_high"], s["detection_rate_calibrated_ci_low"]) == (0.07, 0.12, 0.6)
    old = stated_rates({"oof": {"fpr_calibrated": 0.1, "detection_rate_calibrated": 0.4}})
    assert old["fpr_calibrated"] == 0.1 and old["detection_rate_calibrated"] == 0.4
    assert all(v != v for v in stated_rates({}).values())  # NaN: nothing stated
