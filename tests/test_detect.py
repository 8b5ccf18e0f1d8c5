"""Detectors and metrics (advlib.detect) on real features of real photos and real FGSM images.

The session fixture takes 16 demo photos, attacks them with foolbox's FGSM (Linf, eps 8/255) on
efficientnet_lite0, rounds to uint8 as the dataset does, and computes the top-5 labels under
three JPEG qualities and three rotations (advlib.features), then the paper's counting (2 groups x 5 = 10)
and differences (6 ops x 5 = 30) features. Splits are by photo: 8 train, 3 dev, 5 eval.
"""

import math

import numpy as np
import pytest
import torch

from conftest import FLOAT32_ATOL
from advlib import corpora, detect, features
from advlib.models import MissingWeightsError, predict_topk

JPEG_QUALITIES = (90, 60, 30)
ROTATIONS = (2, 5, 8)
N_PHOTOS, N_TRAIN, N_DEV = 16, 8, 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")  # computed once; module scope so that it runs with one thread
def real_set(classifier):
    """Images (N, 3, 224, 224) uint8, labels (1 = FGSM), photo index, counting and differences features."""
    import foolbox

    items = corpora.demo_items(1)[:N_PHOTOS]
    normal, ok, failures = corpora.read_images(items)
    assert not failures and len(ok) == N_PHOTOS
    x = normal.float() / 255
    top1 = predict_topk(classifier, normal, k=1, batch_size=16)[:, 0].clone()  # not an inference tensor
    fmodel = foolbox.PyTorchModel(classifier, bounds=(0, 1))
    _, adv, _ = foolbox.attacks.LinfFastGradientAttack()(fmodel, x, top1, epsilons=8 / 255)
    adv = (adv * 255).round().clamp(0, 255).to(torch.uint8)
    images = torch.cat([normal, adv])
    y = np.r_[np.zeros(N_PHOTOS), np.ones(N_PHOTOS)].astype(int)
    photo = np.r_[np.arange(N_PHOTOS), np.arange(N_PHOTOS)]
    ops = [f"jpeg_{q}" for q in JPEG_QUALITIES] + [f"rotate_{a}" for a in ROTATIONS]
    top5 = features.top5_under_ops(classifier, images, ops, batch_size=16, progress=False)
    ref, after = top5[:, 0], top5[:, 1:]
    n_jpeg = len(JPEG_QUALITIES)
    counting = np.concatenate([features.counting(ref, after[:, :n_jpeg]),
                               features.counting(ref, after[:, n_jpeg:])], 1).astype(np.float32)
    differences = features.differences(ref, after).astype(np.float32)
    split = np.where(photo < N_TRAIN, "train", np.where(photo < N_TRAIN + N_DEV, "dev", "eval"))
    return {"images": images, "y": y, "split": split, "count": counting, "diff": differences, "top5": top5,
            "ops": ops, "photo": photo}


def _part(real_set, kind, split):
    m = real_set["split"] == split
    return real_set[kind][m], real_set["y"][m]


# --------------------------------------------------------------------------- registry

def test_registry_and_factories():
    assert set(detect.DETECTORS) == {"svm", "random_forest", "lda", "mlp", "stats_cnn", "raw_resnet50",
                                     "raw_xception", "raw_efficientnet_lite0", "feature_squeezing"}
    assert detect.make_detector("raw_efficientnet_lite0", epochs=2).classifier == "efficientnet_lite0"
    svc = detect.make_detector("svm")
    assert svc.gamma == "auto" and svc.probability
    rf = detect.make_detector("random_forest")
    assert (rf.n_estimators, rf.max_depth) == (100, 2)
    assert detect.make_detector("svm", C=10).C == 10
    assert "StatsCNN(" in repr(detect.make_detector("stats_cnn", epochs=3))
    assert detect.make_detector("raw_xception", epochs=1).arch == "xception"
    with pytest.raises(KeyError, match="unknown detector 'knn'"):
        detect.make_detector("knn")
    with pytest.raises(ValueError, match="gamma_typo"):
        detect.make_detector("svm", gamma_typo=1)
    with pytest.raises(ValueError, match="arch"):
        detect.RawImageCNN("vgg")


# --------------------------------------------------------------------------- traditional classifiers

@pytest.mark.parametrize("kind", ["count", "diff"])
@pytest.mark.parametrize("name", ["svm", "random_forest", "lda", "mlp"])
def test_traditional_fit_predict_save_load(real_set, name, kind, tmp_path):
    X, y = _part(real_set, kind, "train")
    Xe, ye = _part(real_set, kind, "eval")
    det = detect.make_detector(name).fit(X, y)
    pred, proba = det.predict(Xe), det.predict_proba(Xe)
    assert pred.shape == (len(Xe),) and set(np.unique(pred)) <= {0, 1}
    assert proba.shape == (len(Xe), 2) and (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    meta = {"classifier": "efficientnet_lite0", "ops": "jpeg+rotation", "feature": kind, "detector": name}
    detect.save_detector(det, tmp_path / name, meta)
    assert (tmp_path / name / "model.skops").exists() and detect.read_meta(tmp_path / name) == meta
    back = detect.load_detector(tmp_path / name, expect={"feature": kind, "classifier": "efficientnet_lite0"})
    assert type(back) is type(det)
    np.testing.assert_array_equal(back.predict(Xe), pred)
    np.testing.assert_array_equal(back.predict_proba(Xe), proba)
    other = "diff" if kind == "count" else "count"
    with pytest.raises(ValueError, match=rf"'feature': expected '{other}', found '{kind}'"):
        detect.load_detector(tmp_path / name, expect={"feature": other})
    with pytest.raises(ValueError, match="'seed'.*<missing>"):
        detect.load_detector(tmp_path / name, expect={"seed": 0})


def test_features_separate_fgsm_from_normal(real_set):
    """Real signal: FGSM images change labels under JPEG/rotation far more than normal ones."""
    X, y = _part(real_set, "count", "train")
    Xe, ye = _part(real_set, "count", "eval")
    assert real_set["count"][real_set["y"] == 0].mean() > real_set["count"][real_set["y"] == 1].mean()
    aucs = {n: detect.evaluate(ye, detect.detector_scores(detect.make_detector(n).fit(X, y), Xe))["auc"]
            for n in ("svm", "random_forest", "lda", "mlp")}
    assert max(aucs.values()) >= 0.8, aucs


def test_select_on_dev(real_set):
    X, y = _part(real_set, "diff", "train")
    Xd, yd = _part(real_set, "diff", "dev")
    det, best, acc = detect.select_on_dev("svm", X, y, Xd, yd, seed=0)
    assert best["C"] in detect.PARAM_GRIDS["svm"]["C"] and det.C == best["C"]
    # the same decision rule as the evaluation: P(adversarial) >= 0.5, not SVC.predict
    assert acc == pytest.approx(((detect.detector_scores(det, Xd) >= 0.5) == yd).mean())
    for C in detect.PARAM_GRIDS["svm"]["C"]:  # nothing in the grid beats the choice on dev
        other = detect.make_detector("svm", C=C).fit(X, y)
        assert ((detect.detector_scores(other, Xd) >= 0.5) == yd).mean() <= acc
    det, best, _ = detect.select_on_dev("lda", X, y, Xd, yd, grid={"solver": ["svd", "svd"]})
    assert best == {"solver": "svd"}
    det, best, _ = detect.select_on_dev("random_forest", X, y, Xd, yd)
    assert best == {"max_depth": 2, "n_estimators": 100}


# --------------------------------------------------------------------------- stats-CNN

@pytest.mark.parametrize("kind,layout", [("count", "auto"), ("diff", "diff")])
def test_stats_cnn(real_set, kind, layout, tmp_path):
    X, y = _part(real_set, kind, "train")
    Xd, yd = _part(real_set, kind, "dev")
    Xe, _ = _part(real_set, kind, "eval")
    params = dict(epochs=8, batch_size=8, layout=layout, random_state=1, progress=False)
    det = detect.StatsCNN(**params).fit(X, y, X_dev=Xd, y_dev=yd)
    assert det.layout_ == ("count" if layout == "auto" else "diff")
    assert len(det.history_) == 8
    dev = [h["dev_accuracy"] for h in det.history_]
    assert det.best_epoch_ == int(np.argmax(dev)) + 1 and det.dev_accuracy_ == max(dev)
    # the kept checkpoint is the best epoch's: its dev accuracy is reproduced after fit
    assert (det.predict(Xd) == yd).mean() == pytest.approx(det.dev_accuracy_)
    proba = det.predict_proba(Xe)
    assert proba.shape == (len(Xe), 2) and ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_array_equal(det.predict(Xe), (proba[:, 1] >= 0.5).astype(int))
    again = detect.StatsCNN(**params).fit(X, y, X_dev=Xd, y_dev=yd)
    np.testing.assert_allclose(again.predict_proba(Xe), proba, atol=1e-6)  # seeded
    detect.save_detector(det, tmp_path / "cnn", {"feature": kind, "detector": "stats_cnn"})
    back = detect.load_detector(tmp_path / "cnn", expect={"feature": kind})
    assert back.best_epoch_ == det.best_epoch_ and back.get_params() == det.get_params()
    np.testing.assert_allclose(back.predict_proba(Xe), proba, atol=1e-6)
    with pytest.raises(ValueError, match="'detector': expected 'mlp', found 'stats_cnn'"):
        detect.load_detector(tmp_path / "cnn", expect={"detector": "mlp"})
    with pytest.raises(ValueError, match="features"):
        back.predict(Xe[:, :5])


# --------------------------------------------------------------------------- raw-image CNNs

@pytest.mark.parametrize("arch", ["resnet50", "xception"])
def test_raw_image_cnn_tiny(real_set, arch, tmp_path):
    images, y = real_set["images"], real_set["y"]
    tr = np.r_[0:2, N_PHOTOS:N_PHOTOS + 2]  # 2 normal photos + their FGSM versions
    dv = np.r_[2, N_PHOTOS + 2]
    det = detect.make_detector(f"raw_{arch}", epochs=1, batch_size=2, random_state=0, progress=False)
    det.fit(images[tr], y[tr], X_dev=images[dv], y_dev=y[dv])
    assert det.best_epoch_ == 1 and len(det.history_) == 1
    proba = det.predict_proba(images[dv])
    assert proba.shape == (len(dv), 2) and ((proba >= 0) & (proba <= 1)).all()
    assert det.dev_accuracy_ == np.mean((proba[:, 1] >= 0.5) == y[dv])
    detect.save_detector(det, tmp_path / arch, {"detector": f"raw_{arch}", "pretrained": False})
    back = detect.load_detector(tmp_path / arch, expect={"pretrained": False})
    assert back.arch == arch
    np.testing.assert_allclose(back.predict_proba(images[dv]), proba, atol=1e-5)
    with pytest.raises(ValueError, match="'pretrained': expected True, found False"):
        detect.load_detector(tmp_path / arch, expect={"pretrained": True})
    with pytest.raises(ValueError, match="uint8"):
        det.predict(images[dv].float())
    assert back.predict(images[dv][:0]).shape == (0,)


@pytest.mark.parametrize("arch", ["resnet50", "xception"])
def test_raw_image_cnn_missing_pretrained_weights(real_set, arch, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    det = detect.RawImageCNN(arch, pretrained=True, epochs=1, progress=False)
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "torch")) as err:
        det.fit(real_set["images"][:2], [0, 1])
    assert "Nothing is downloaded" in str(err.value)


# --------------------------------------------------------------------------- feature squeezing

def test_squeezers_match_evademl_references(real_set):
    from scipy.ndimage import median_filter

    x = real_set["images"][:2].float() / 255
    ref = np.stack([[median_filter(c, size=(2, 2), mode="reflect") for c in im] for im in x.numpy()])
    np.testing.assert_array_equal(detect.median_filter(x, 2).numpy(), ref)
    ref3 = np.stack([[median_filter(c, size=(3, 3), mode="reflect") for c in im] for im in x.numpy()])
    np.testing.assert_array_equal(detect.median_filter(x, 3).numpy(), ref3)
    np.testing.assert_allclose(detect.bit_depth(x, 5).numpy(), np.rint(x.numpy() * 31) / 31, atol=1e-7)
    nlm = detect.non_local_means(real_set["images"][:1])
    assert nlm.dtype == torch.uint8 and nlm.shape == (1, 3, 224, 224)
    assert 0 < (nlm.int() - real_set["images"][:1].int()).abs().float().mean() < 5


@pytest.mark.numerics
def test_feature_squeezing(real_set, classifier, tmp_path):
    images, y, split = real_set["images"], real_set["y"], real_set["split"]
    tr, te = split == "train", split == "eval"
    fs = detect.make_detector("feature_squeezing", model=classifier, batch_size=8)
    assert "efficientnet_lite0" in repr(fs)
    fs.fit(images[tr], y[tr])  # uses only the normal training images
    assert len(fs.train_scores_) == N_TRAIN and fs.threshold_used() == fs.threshold_ == fs.fpr_threshold_
    assert (fs.train_scores_ > fs.threshold_).mean() <= 0.05  # at most 5% false positives on training normals
    assert fs.threshold_ == np.sort(fs.train_scores_)[math.ceil(N_TRAIN * 0.95) - 1]
    by_squeezer = fs.squeezer_scores(images[te])
    assert by_squeezer.shape == (te.sum(), 3) and ((by_squeezer >= 0) & (by_squeezer <= 2)).all()
    scores = by_squeezer.max(1)
    m = detect.evaluate(y[te], scores, threshold=fs.threshold_)
    assert m["auc"] > 0.5, m  # FGSM at 8/255 moves the softmax under squeezing more than normal photos
    few = images[te][[0, -1]]  # one normal, one FGSM image
    # the same images in a batch of 2 instead of 8: float32 reordering only
    np.testing.assert_allclose(detect.detector_scores(fs, few), scores[[0, -1]], atol=FLOAT32_ATOL, rtol=0)
    pred = (scores[[0, -1]] > fs.threshold_).astype(int)
    paper = detect.FeatureSqueezing.paper_setting(classifier)
    assert paper.threshold_used() == detect.PAPER_THRESHOLD == 1.2128
    np.testing.assert_array_equal(paper.predict(few), (scores[[0, -1]] > 1.2128).astype(int))
    detect.save_detector(fs, tmp_path / "fs", {"classifier": "efficientnet_lite0", "detector": "feature_squeezing"})
    back = detect.load_detector(tmp_path / "fs", expect={"classifier": "efficientnet_lite0"}, model=classifier)
    assert back.threshold_ == fs.threshold_ and back.get_params()["nlm"] == (11, 3, 4)
    np.testing.assert_array_equal(back.predict(few), pred)
    with pytest.raises(ValueError, match="'classifier': expected 'resnet50'"):
        detect.load_detector(tmp_path / "fs", expect={"classifier": "resnet50"}, model=classifier)
    with pytest.raises(RuntimeError, match="threshold"):
        detect.FeatureSqueezing(classifier).predict(images[:1])


# --------------------------------------------------------------------------- metrics

def test_metrics_on_hand_checkable_inputs():
    y = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    m = detect.evaluate(y, perfect)
    assert (m["accuracy"], m["eer"], m["auc"], m["tpr_at_5fpr"]) == (1.0, 0.0, 1.0, 1.0)
    assert (m["n"], m["n_adversarial"]) == (6, 3)
    m = detect.evaluate(y, 1 - perfect)
    assert (m["accuracy"], m["eer"], m["auc"], m["tpr_at_5fpr"]) == (0.0, 1.0, 0.0, 0.0)
    m = detect.evaluate(y, np.full(6, 0.5))
    assert (m["eer"], m["auc"], m["accuracy"]) == (0.5, 0.5, 0.5)
    m = detect.evaluate([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert (m["accuracy"], m["eer"], m["auc"], m["tpr_at_5fpr"]) == (0.5, 0.5, 0.75, 0.5)
    m = detect.evaluate([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], y_pred=[0, 0, 1, 1])
    assert m["accuracy"] == 1.0
    assert math.isnan(detect.evaluate([1, 1], [0.2, 0.9])["eer"])
    with pytest.raises(ValueError, match="y_true"):
        detect.evaluate([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="shape"):
        detect.evaluate([0, 1], [0.1, 0.2, 0.3])


def test_eer_matches_the_authors_formula(real_set):
    """The authors' EER: brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1) on the ROC curve."""
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    X, y = _part(real_set, "diff", "train")
    Xe, ye = _part(real_set, "diff", "eval")
    for name in ("svm", "lda"):
        s = detect.detector_scores(detect.make_detector(name).fit(X, y), Xe)
        fpr, tpr, _ = roc_curve(ye, s)
        if len(np.unique(fpr)) < len(fpr):  # interp1d needs distinct fpr; perturb ties away
            continue
        assert detect.eer(ye, s) == pytest.approx(brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1), abs=1e-9)
    rng = np.random.default_rng(0)
    yy = np.r_[np.zeros(300), np.ones(300)].astype(int)
    ss = np.r_[rng.normal(0, 1, 300), rng.normal(1, 1, 300)]
    fpr, tpr, _ = roc_curve(yy, ss)
    ref = brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)
    assert detect.eer(yy, ss) == pytest.approx(ref, abs=1e-3)


def test_bootstrap_ci():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(100), np.ones(100)].astype(int)
    s = np.clip(np.r_[rng.normal(0.35, 0.2, 100), rng.normal(0.65, 0.2, 100)], 0, 1)
    point = detect.evaluate(y, s)
    for metric in ("accuracy", "eer", "auc"):
        lo, hi = detect.bootstrap_ci(y, s, metric=metric, n_boot=200, seed=0)
        assert lo <= point[metric] <= hi and hi - lo < 0.3
        assert (lo, hi) == detect.bootstrap_ci(y, s, metric=metric, n_boot=200, seed=0)
    assert detect.bootstrap_ci(y, np.r_[np.zeros(100), np.ones(100)], n_boot=50) == (1.0, 1.0)
    with pytest.raises(ValueError, match="metric"):
        detect.bootstrap_ci(y, s, metric="f1")


def test_cluster_bootstrap_resamples_whole_groups():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(20), 5)  # 20 photos, 5 correlated images each
    y = np.tile([0, 1, 1, 1, 1], 20)
    photo_effect = rng.normal(0, 0.3, 20)[groups]  # scores share a per-photo offset
    s = np.clip(0.3 + 0.4 * y + photo_effect, 0, 1)
    lo_i, hi_i = detect.bootstrap_ci(y, s, metric="accuracy", n_boot=300, seed=0)
    lo_c, hi_c = detect.bootstrap_ci(y, s, metric="accuracy", n_boot=300, seed=0, groups=groups)
    point = detect.evaluate(y, s)["accuracy"]
    assert lo_c <= point <= hi_c
    assert hi_c - lo_c > hi_i - lo_i  # correlated samples: the cluster interval is wider
    # per-image thresholds and the rates at them
    thr = np.where(groups < 10, 0.5, 0.6)
    lo, hi = detect.bootstrap_ci(y, s, metric="fpr", n_boot=100, seed=0, threshold=thr, groups=groups)
    fpr = float((s[y == 0] >= thr[y == 0]).mean())
    assert lo <= fpr <= hi
    with pytest.raises(ValueError, match="groups"):
        detect.bootstrap_ci(y, s, groups=groups[:-1])


def test_calibrate_threshold_and_degenerate():
    normal = np.linspace(0, 1, 100)
    t = detect.calibrate_threshold(normal, 0.05)
    assert (normal >= t).mean() <= 0.05 and (normal >= np.nextafter(t, -np.inf) - 1e-2).mean() > 0.05
    assert (np.r_[0.2, 0.2, 0.2] >= detect.calibrate_threshold([0.2, 0.2, 0.2], 0.05)).sum() == 0
    with pytest.raises(ValueError, match="fpr"):
        detect.calibrate_threshold(normal, 0)
    assert detect.is_degenerate(np.r_[np.ones(96), np.zeros(4)])
    assert detect.is_degenerate(np.zeros(10))
    assert not detect.is_degenerate(np.r_[np.ones(90), np.zeros(10)])


def test_cross_validation_evaluates_every_photo_once(real_set):
    """Out-of-fold protocol on real features: each photo is evaluated exactly once, by a model
    that did not train (or choose its threshold) on it."""
    import pandas as pd

    from advlib import experiments, folds

    y, photo = real_set["y"], real_set["photo"]
    manifest = pd.DataFrame({"kind": np.where(y == 1, "non-targeted", "normal"), "source": [f"p{i}" for i in photo],
                             "attack": np.where(y == 1, "fgsm", "none"), "classifier": "efficientnet_lite0",
                             "split": real_set["split"]})
    parts = folds.partitions(manifest, 4, seed=0)
    assert len(parts) == 4
    for p in parts:
        assert not (p.train & p.dev).any() and not (p.train & p.eval).any() and not (p.dev & p.eval).any()
        assert not set(photo[p.train]) & set(photo[p.eval]) and not set(photo[p.dev]) & set(photo[p.eval])
    assert (np.sum([p.eval for p in parts], axis=0) == 1).all()
    d = experiments.Data.split(manifest, np.asarray(real_set["top5"]), real_set["ops"], cv_folds=4, seed=0,
                               target_fpr=0.05, bootstrap=50)
    assert [(p.train == q.train).all() and (p.eval == q.eval).all() for p, q in zip(d.parts, parts)] == [True] * 4
    d.features = lambda kind, group: real_set[kind]  # the fixture's features of its 6 operations
    o = experiments.cross_validate(d, experiments.feature_fitter(d, "svm", "diff", "all"), "combination", "combination")
    assert sorted(o.rows.tolist()) == list(range(len(y)))  # every image once
    for k, p in enumerate(parts):  # each image scored by its own fold's model
        rows = o.rows[o.fold == k]
        assert p.eval[rows].all()
        assert np.allclose(o.scores[o.fold == k], detect.detector_scores(o.models[k].model, real_set["diff"][rows]))
    row = experiments.metric_row(o, 50, 0)
    assert row["n_images"] == len(y) and row["n_photos"] == N_PHOTOS
    assert row["accuracy_ci_low"] <= row["accuracy"] <= row["accuracy_ci_high"]
    assert isinstance(row["degenerate"], bool)
    with pytest.raises(ValueError, match="cv_folds"):
        folds.photo_folds(manifest["source"], 1, 0)


# --------------------------------------------------------------------------- cheap detection (experiments.cost)

def test_cheap_detection_selects_on_training_and_dev_only(real_set, classifier):
    import pandas as pd

    from advlib import experiments
    from advlib.experiments import cost
    from advlib.store import pixel_sha256

    top5, stats = features.outputs_under_ops(classifier, real_set["images"], real_set["ops"], batch_size=16,
                                             progress=False, stats=True)
    assert torch.equal(top5, real_set["top5"])  # the same passes
    out = experiments.OpOutputs(np.asarray(top5), stats.numpy(), real_set["ops"])
    y, split = real_set["y"], real_set["split"]
    tr, dv = split == "train", split == "dev"
    order, aucs = experiments.greedy_order(out, "prob+shift", y, tr, dv, 3)
    assert len(set(order)) == 3 and len(aucs) == 3 and all(0 <= a <= 1 for a in aucs)
    singles = [cost._selection_score(out.matrix("prob+shift", [j]), y, tr, dv, 0) for j in range(len(real_set["ops"]))]
    assert order[0] == int(np.argmax(singles)) and aucs[0] == max(singles)
    flipped = y.copy()
    flipped[split == "eval"] = 1 - flipped[split == "eval"]  # the eval part's labels play no part
    assert experiments.greedy_order(out, "prob+shift", flipped, tr, dv, 3)[0] == order

    manifest = pd.DataFrame({"kind": np.where(y == 1, "non-targeted", "normal"),
                             "source": [f"p{i}" for i in real_set["photo"]], "attack": np.where(y == 1, "fgsm", "none"),
                             "classifier": "efficientnet_lite0", "split": split,
                             "sha256": [pixel_sha256(im) for im in real_set["images"]]})
    d = experiments.Data.split(manifest, out.top5, out.op_names, cv_folds=4, seed=0, bootstrap=20)
    table, oofs = experiments.cost_curve(d, out, kinds=("diff", "prob"), steps=(1, 2), progress=False)
    assert len(table) == 6 and sorted(table.passes.unique()) == [2, 3, 1 + len(real_set["ops"])]
    for (kind, k), o in oofs.items():  # every fold chose its own operations, k of them
        chosen = [m.info["ops"] for m in o.models if m is not None]
        assert all(len(c) == (k or len(real_set["ops"])) for c in chosen)
        assert sorted(o.rows.tolist()) == list(range(len(y)))
    # the shipped file's procedure: selection, vote, C and threshold on the training photos alone
    photos = split != "eval"
    proc = experiments.run_procedure(d, out, photos, inner_folds=3, max_passes=3)
    assert proc.passes <= 3 and len(proc.ops) == proc.k and proc.n_calibration == int((photos & (y == 0)).sum())
    best = proc.inner.inner_auc_per_fold.max()
    assert proc.inner[proc.inner.chosen].inner_auc_per_fold.item() == best
    flipped = manifest.copy()
    ev = split == "eval"
    flipped.loc[ev, "kind"] = np.where(y[ev] == 1, "normal", "non-targeted")
    flipped.loc[ev, "attack"] = np.where(y[ev] == 1, "none", "fgsm")
    d_flip = experiments.Data.split(flipped, out.top5, out.op_names, cv_folds=4, seed=0, bootstrap=20)
    again = experiments.run_procedure(d_flip, out, photos, inner_folds=3, max_passes=3)
    assert (again.kind, again.ops, again.params, again.threshold) == (proc.kind, proc.ops, proc.params, proc.threshold)

    # nested evaluation: every image judged once, by the fold whose procedure never saw its photo
    nested = experiments.nested_evaluation(d, out, inner_folds=3, progress=False)
    assert sorted(nested.rows.row.tolist()) == list(range(len(y)))
    for k, part in enumerate(d.parts):
        r = nested.rows[nested.rows.fold == k]
        assert part.eval[r.row].all() and not (part.train | part.dev)[r.row].any()
        assert (r.flagged == (r.score >= r.threshold)).all()
    det = experiments.shipped_detector(d, out, classifier, nested, n_boot=50)
    assert det.passes == 1 + len(det.op_names) <= experiments.MAX_PASSES
    assert det.meta["oof"]["n_photos"] == N_PHOTOS and len(det.meta["training_data_sha256"]) == 64
    assert det.meta["oof"]["n_images"] == len(y) and 0 <= det.meta["oof"]["fpr"] <= 1
    # the refitted detector scores images through its own passes as the cached features say
    cols = [out.op_names.index(n) for n in det.op_names]
    cached = out.matrix(det.feature, cols)[:4]
    np.testing.assert_allclose(det.features(real_set["images"][:4]), cached, atol=FLOAT32_ATOL, rtol=0)
    np.testing.assert_allclose(det.score(real_set["images"][:4]), detect.detector_scores(det.estimator_, cached),
                               atol=1e-2, rtol=0)  # features within float32 reordering, a bug moves scores by more
