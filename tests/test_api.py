"""The public API (``import advlib``) on real photos and the real default classifier, through
public names only: the README's snippets run as they are written."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import advlib
from advlib import paths
from advlib.images import load_image

README = paths.ROOT / "README.md"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _snippet(heading: str) -> str:
    """The first python code block after ``heading`` in the README."""
    text = README.read_text()
    start = text.index(heading)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


@pytest.fixture(scope="module")
def paths():
    """Eight real photos as files: the labelled ImageNet samples shipped in the foolbox wheel."""
    from advlib import corpora

    photos = [p for p in corpora.demo_photos() if p.package == "foolbox" and "imagenet" in str(p.path)]
    return [str(p.path) for p in photos[:8]]


def test_import_changes_no_global_state():
    code = ("import sys, matplotlib; rc = dict(matplotlib.rcParams); import advlib; "
            "assert 'torch' not in sys.modules, 'import advlib loaded torch'; "
            "import advlib.report; assert dict(matplotlib.rcParams) == rc, 'rcParams changed'; "
            "assert advlib.__all__ and all(getattr(advlib, n).__doc__ for n in advlib.__all__)")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})


@pytest.mark.slow
def test_readme_snippet_runs_on_real_photos(paths, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = {"paths": paths}
    exec(_snippet("## Use it on your own images and classifier"), ns)
    images, kept, x, det = ns["images"], ns["kept"], ns["x"], ns["det"]
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 224, 224)
    assert 2 <= len(kept) <= 8  # PGD succeeds after saving on most confident photos
    y = np.array(ns["is_adversarial"])
    scores, flags = ns["scores"], ns["flags"]
    assert scores.shape == (len(x),) and ((scores >= 0) & (scores <= 1)).all() and flags.dtype == bool
    assert scores[y].mean() > scores[~y].mean()  # on its training images the detector separates the classes
    np.testing.assert_allclose(det.score(x), scores)  # the reloaded detector scores the same
    meta = json.loads((tmp_path / "my_detector" / "detector.json").read_text())["meta"]
    assert meta["classifier"] == "efficientnet_lite0" and len(meta["ops"]) == 38 and meta["n_train"] == len(x)
    assert len(meta["training_data_sha256"]) == 64
    # label correction: the voted top-5 of the adversarial images holds their original top-1 for most
    labels, fixed, qf = ns["labels"], ns["fixed"], ns["qf"]
    top1 = advlib.predict_top5(ns["clf"], images)[:, 0][ns["adv"].success_saved]
    assert labels.shape == (len(kept), 5) and (labels == top1[:, None]).any(1).mean() >= 0.5
    assert fixed.dtype == torch.uint8 and fixed.shape == kept.shape
    assert set(qf.tolist()) <= set(range(40, 101, 5))


def test_detector_refuses_another_classifier_or_op_set(paths, tmp_path):
    clf = advlib.load_classifier("efficientnet_lite0")
    images = advlib.load_images(paths[:4])
    noisy = images.clone()
    noisy[:, :, ::2, ::2] = 255 - noisy[:, :, ::2, ::2]  # a stand-in second class: enough to fit and save
    det = advlib.Detector(clf, feature="count", ops="jpeg", estimator="lda")
    det.fit(torch.cat([images, noisy]), [False] * 4 + [True] * 4).save(tmp_path / "d")
    other = advlib.wrap(clf.net, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), name="my_net")
    with pytest.raises(ValueError, match="trained for classifier 'efficientnet_lite0', not 'my_net'"):
        advlib.Detector.load(tmp_path / "d", other)
    cfg = json.loads((tmp_path / "d" / "detector.json").read_text())
    cfg["meta"]["ops"] = cfg["meta"]["ops"][:-1]
    (tmp_path / "d" / "detector.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="operations"):
        advlib.Detector.load(tmp_path / "d", clf)
    with pytest.raises(ValueError, match="estimator"):
        advlib.Detector(clf, estimator="raw_resnet50")
    with pytest.raises(ValueError, match="both normal"):
        advlib.Detector(clf, ops="jpeg").fit(images, [False] * 4)
    with pytest.raises(RuntimeError, match="not fitted"):
        advlib.Detector(clf, ops="jpeg").score(images)


def test_detector_on_an_operation_list_with_a_continuous_feature(paths, tmp_path):
    """A cheap detector: three operations (4 passes), the prob+shift feature; saved and reloaded
    with its operation list; an unknown operation or feature is refused."""
    clf = advlib.load_classifier("efficientnet_lite0")
    images = advlib.load_images(paths[:4])
    noisy = images.clone()
    noisy[:, :, ::2, ::2] = 255 - noisy[:, :, ::2, ::2]
    x, y = torch.cat([images, noisy]), [False] * 4 + [True] * 4
    ops = ["jpeg_60", "scale_0.80", "blur_3"]
    det = advlib.Detector(clf, feature="prob+shift", ops=ops, estimator="lda").fit(x, y)
    assert det.passes == 4 and det.features(x).shape == (8, 6) and det.features(x).dtype == np.float64
    det.save(tmp_path / "cheap")
    back = advlib.Detector.load(tmp_path / "cheap", clf)
    assert back.op_names == ops and back.group is None and back.feature == "prob+shift" and back.passes == 4
    np.testing.assert_allclose(back.score(x), det.score(x))
    meta = json.loads((tmp_path / "cheap" / "detector.json").read_text())["meta"]
    assert meta["ops"] == ops and meta["group"] is None and meta["passes"] == 4
    with pytest.raises(ValueError, match="unknown"):
        advlib.Detector(clf, ops=["jpeg_60", "jpeg_7"])
    with pytest.raises(ValueError, match="feature"):
        advlib.Detector(clf, feature="probability", ops=ops)


def test_calibrate_sets_the_threshold_for_a_false_positive_rate(paths):
    from sklearn.linear_model import LogisticRegression

    clf = advlib.load_classifier("efficientnet_lite0")
    images = advlib.load_images(paths)
    noisy = images.clone()
    noisy[:, :, ::2, ::2] = 255 - noisy[:, :, ::2, ::2]
    det = advlib.Detector(clf, feature="count", ops="scaling", estimator=LogisticRegression(max_iter=1000))
    det.fit(torch.cat([images[:4], noisy[:4]]), [False] * 4 + [True] * 4)
    t = det.calibrate(images[4:], fpr=0.25)
    assert det.threshold == t and (det.score(images[4:]) >= t).mean() <= 0.25
    assert det.meta["calibration_n"] == 4


def test_wrap_gives_the_same_predictions(paths):
    clf = advlib.load_classifier("efficientnet_lite0")
    wrapped = advlib.wrap(clf.net, clf.mean.flatten().tolist(), clf.std.flatten().tolist(), name="again")
    images = advlib.load_images(paths[:3])
    np.testing.assert_array_equal(advlib.predict_top5(wrapped, images), advlib.predict_top5(clf, images))
    with pytest.raises(ValueError, match="3 values"):
        advlib.wrap(clf.net, (0.5,), (0.5,))


def test_extending_advlib(paths, tmp_path, monkeypatch):
    from advlib import attacks, corpora, detect, models

    from advlib import ops

    registries = ((attacks.ATTACKS, "l2_pgd"), (detect.DETECTORS, "logreg"), (detect.PARAM_GRIDS, "logreg"),
                  (detect.TAKES, "logreg"),
                  (ops.OPERATIONS, "jpeg_20"), (models.CLASSIFIERS, "mobilenet_v3_large"),
                  (models.CLASSIFIERS, "my_lite0"), (corpora.CORPORA, "my_photos"))
    assert not any(key in reg for reg, key in registries)
    (tmp_path / "my_photos" / "sub").mkdir(parents=True)  # the snippet's corpus folder: two real photos
    shutil.copy(paths[0], tmp_path / "my_photos" / "a.jpg")
    shutil.copy(paths[1], tmp_path / "my_photos" / "sub" / "b.jpg")
    monkeypatch.chdir(tmp_path)
    try:
        exec(_snippet("## Extending advlib"), {})
        assert "jpeg_20" in ops.GROUPS["jpeg"] and "jpeg_20" in ops.GROUPS["all"] and 20 in ops.jpeg_qualities()
        ops.check_exactness(advlib.load_images(paths[:1])[0], ["jpeg_20"])  # batched == Pillow
        _use_the_new_entries(paths)
        _use_the_new_classifier_and_corpus(paths)
    finally:
        for reg, key in registries:
            reg.pop(key, None)
        for names in ops.GROUPS.values():
            if "jpeg_20" in names:
                names.remove("jpeg_20")


def _use_the_new_classifier_and_corpus(paths):
    from advlib import dataset, models, profiles

    p = profiles.load_profile("smoke", classifiers=["mobilenet_v3_large"], corpus="my_photos")  # names accepted
    weights = models.weights_file("mobilenet_v3_large")
    assert weights.name == "mobilenet_v3_large-8738ca79.pth" and "~" not in str(weights)
    if not weights.exists():  # nothing is downloaded: the message names the file to provide
        with pytest.raises(models.MissingWeightsError, match="mobilenet_v3_large-8738ca79.pth"):
            models.load_classifier("mobilenet_v3_large")
    items = dataset.candidate_items(dataset.DatasetSpec.from_profile(p))
    assert sorted(it.image_id for it in items) == ["a", "sub_b"]
    assert {it.label_source for it in items} == {"top1"} and len({it.source for it in items}) == 2
    assert torch.equal(load_image(items[0].path), advlib.load_images([items[0].path])[0])
    # a registered classifier with real weights: the shipped EfficientNet-Lite0 under another name
    lite = models.CLASSIFIERS["efficientnet_lite0"]
    models.register_classifier("my_lite0", lite.build, models.weights_file("efficientnet_lite0"),
                               mean=models.TFLITE_MEAN, std=models.TFLITE_STD)
    x = advlib.load_images(paths[:2]).float() / 255
    assert torch.equal(models.load_classifier("my_lite0")(x), models.load_classifier("efficientnet_lite0")(x))


def _use_the_new_entries(paths):
    from advlib import attacks, detect

    clf = advlib.load_classifier("efficientnet_lite0")
    images = advlib.load_images(paths[:4])
    out = advlib.attack("l2_pgd", clf, images)
    assert out.adversarial.shape == images.shape and out.success_saved.any()
    assert attacks.ATTACKS["l2_pgd"].library.startswith("foolbox")
    x = torch.cat([images, out.adversarial[torch.from_numpy(out.success_saved)]])
    y = [False] * 4 + [True] * int(out.success_saved.sum())
    det = advlib.Detector(clf, feature="count", ops="jpeg", estimator="logreg").fit(x, y)
    assert type(det.estimator_).__name__ == "LogisticRegression"
    fitted, params, _ = detect.select_on_dev("logreg", det.features(x), y, det.features(x), y)
    assert params["C"] in (1.0, 0.1)
