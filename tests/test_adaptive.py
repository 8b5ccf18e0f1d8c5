"""Adaptive attacks (advlib.adaptive) on real photos and the real efficientnet_lite0, on the CPU.

Small on purpose (2-4 photos, 10-12 steps, 3 EOT draws): the whole module runs in about two
minutes on one thread. The measured numbers are printed (run with ``-s`` to see them).
"""

import numpy as np
import pytest
import torch

import advlib
from advlib import models, ops
from advlib.attacks import adaptive
from advlib.attacks.pgd import top5_margin
from advlib.detect import differentiable
from advlib.detect import detector_scores

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPS = 8 / 255


@pytest.fixture(scope="module")
def photos(imagenet_samples):
    """Twelve real photos (uint8 (12, 3, 224, 224))."""
    return imagenet_samples[0][:12]


@pytest.fixture(scope="module")
def top1(classifier, photos):
    """The classifier's top-1 label of each photo: the reference label the attacks push out."""
    return models.predict_topk(classifier, photos)[:, 0]


@pytest.fixture(scope="module")
def training(classifier, photos):
    """Photos 0-7 and their FGSM adversarials that succeed after saving (advlib.attack), with
    is_adversarial flags: the data the test detectors are fitted on."""
    normal = photos[:8]
    fgsm = advlib.attack("fgsm", classifier, normal)
    adv = fgsm.adversarial[fgsm.success_saved]
    assert len(adv) >= 4, "FGSM should fool the classifier on most photos"
    return torch.cat([normal, adv]), np.r_[np.zeros(len(normal), bool), np.ones(len(adv), bool)]


DET_OPS = ["jpeg_90", "jpeg_70", "scale_0.80"]


def _detector(classifier, training, feature: str) -> advlib.Detector:
    images, flags = training
    return advlib.Detector(classifier, feature=feature, ops=DET_OPS, estimator="svm").fit(images, flags)


# --------------------------------------------------------------------------- differentiable operations

EXACT_OPS = ["jpeg_100", "jpeg_90", "jpeg_40", "scale_0.75", "scale_0.80", "scale_1.25", "rotate_3", "blur_2"]


def test_diff_ops_forward_equals_exact_ops(photos):
    u8 = photos[:2]
    x = u8.float() / 255
    for name in EXACT_OPS:
        exact = ops.apply(name, u8)
        modes = ("bpda", "kornia_st") if name.startswith("jpeg") else ("bpda",)
        for mode in modes:
            y = ops.diff_op(name, x, jpeg=mode)
            assert y.shape == exact.shape and y.dtype == torch.float32
            assert torch.equal((y * 255).round().to(torch.uint8), exact), f"{name} [{mode}]"
            assert (y * 255 - exact.float()).abs().max() < 1e-3, f"{name} [{mode}]: not on the 8-bit grid"


def test_kornia_jpeg_close_to_exact(photos):
    """kornia's differentiable JPEG is an approximation of Pillow's: within the tolerance the
    module docstring documents, and much closer to the exact result than the input is."""
    u8 = photos[:1]
    x = u8.float() / 255
    for q in (100, 90, 75, 50, 25):
        name = ops.jpeg_name(q)
        exact = ops.apply(name, u8).float()
        approx = ops.diff_op(name, x, jpeg="kornia") * 255
        mad = (approx - exact).abs().mean().item()
        effect = (exact - u8.float()).abs().mean().item()
        print(f"kornia vs exact JPEG, quality {q}: mean |diff| {mad:.2f} levels (max "
              f"{(approx - exact).abs().max().item():.0f}); the exact op moves the photo {effect:.2f}")
        assert mad < 2.5
        if q <= 90:
            assert mad < 0.5 * effect


def test_gradients_finite_through_every_op_and_mode(classifier, photos, top1):
    x = (photos[:1].float() / 255).requires_grad_(True)
    for name in ["jpeg_50", "scale_0.80", "scale_1.20", "rotate_5", "blur_3"]:
        for mode in ops.JPEG_GRADIENTS:
            loss = top5_margin(classifier(ops.diff_op(name, x, jpeg=mode)), top1[:1])
            (g,) = torch.autograd.grad(loss.sum(), x)
            assert torch.isfinite(g).all() and g.abs().sum() > 0, f"{name} [{mode}]"


def test_eot_loss_decreases_on_a_real_photo(classifier, photos, top1):
    out = adaptive.attack_correction(classifier, photos[:1], top1[:1], EPS, steps=6, eot=2, kappa=20.0, seed=1)
    h = out.loss_history
    print(f"EOT-PGD loss per step on one photo: {np.round(h[:, 0], 2).tolist()}")
    assert h.shape == (7, 1) and np.isfinite(h).all()  # every step's iterate and the last
    assert h[-1, 0] < h[0, 0] - 1.0
    assert out.adversarial.dtype == torch.uint8 and out.adversarial.shape == (1, 3, 224, 224)
    assert out.saved.shape == out.adversarial.shape and out.success_saved.dtype == bool
    assert out.linf[0] <= 8 and 0 < out.l2[0] and out.params["eot"] == 2


# --------------------------------------------------------------------------- the detector in torch

@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the MLP on 32 points
def test_torch_svc_equals_sklearn(classifier, training):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    det = _detector(classifier, training, "shift")
    X = det.features(training[0])
    rng = np.random.default_rng(0)
    X = np.r_[X, X + rng.normal(scale=0.2, size=X.shape)]
    for est in (det.estimator_, SVC(gamma="scale").fit(X, np.arange(len(X)) % 2),
                advlib.detect.make_detector("lda").fit(X, np.arange(len(X)) % 2),
                LogisticRegression().fit(X, np.arange(len(X)) % 2),
                advlib.detect.make_detector("mlp").fit(X, np.arange(len(X)) % 2)):
        head = differentiable.torch_estimator(est)
        Xt = torch.from_numpy(X)
        if hasattr(est, "decision_function"):
            np.testing.assert_allclose(head.decision(Xt).numpy(), est.decision_function(X), atol=1e-6, rtol=0)
        np.testing.assert_allclose(head.score(Xt).numpy(), detector_scores(est, X), atol=1e-6, rtol=0)
    with pytest.raises(TypeError, match="RandomForestClassifier"):
        differentiable.torch_estimator(advlib.detect.make_detector("random_forest").fit(X, np.arange(len(X)) % 2))


def test_surrogate_tracks_real_features(classifier, training):
    images = training[0]
    for feature in ("count", "diff", "shift"):
        det = _detector(classifier, training, feature)
        corr = differentiable.surrogate_correlation(classifier, images, det)
        print(f"surrogate vs real {feature} features on {len(images)} photos and FGSM versions: "
              f"Pearson {corr['pearson']:.3f}, Spearman {corr['spearman']:.3f}, "
              f"mean |diff| {corr['mean_abs_diff']:.3g} over {corr['n_values']} values")
        assert corr["pearson"] > 0 and corr["spearman"] > 0
        if feature == "shift":  # continuous features are computed exactly, not approximated
            assert corr["mean_abs_diff"] < 1e-4
        else:  # the hard features of the same differentiable passes are the real ones
            with torch.no_grad():
                _, hard = differentiable.detector_features(det, images[:6].float() / 255)
            np.testing.assert_array_equal(hard.numpy(), det.features(images[:6]))


# --------------------------------------------------------------------------- the attacks

def _defeated(classifier, saved: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """bool (N,): the reference label is out of the top-5 voted by label correction."""
    voted = advlib.correct_labels(classifier, saved)
    return ~(voted == labels.numpy()[:, None]).any(1)


def test_eot_defeats_label_correction_at_least_as_often_as_pgd(classifier, photos, top1):
    x, y = photos[:3], top1[:3]
    budget = dict(steps=10, kappa=5.0, seed=0)
    plain = adaptive.attack_pgd(classifier, x, y, EPS, **budget)
    eot = adaptive.attack_correction(classifier, x, y, EPS, eot=3, **budget)
    high = adaptive.attack_high_confidence(classifier, x, y, EPS, steps=10)
    rates = {}
    for name, out in (("plain PGD", plain), ("EOT-PGD", eot), ("high-confidence PGD", high)):
        assert (out.linf <= 8).all()
        rates[name] = _defeated(classifier, out.saved, y)
        print(f"{name} at eps 8/255, 10 steps: success after saving {out.success_saved.mean():.2f}, "
              f"label correction defeated {rates[name].mean():.2f} (n={len(y)}), "
              f"{out.seconds / len(y):.1f} s per image")
    assert rates["EOT-PGD"].sum() >= rates["plain PGD"].sum()
    assert rates["EOT-PGD"].sum() >= 2


def test_detector_attack_lowers_the_score(classifier, training, photos, top1):
    det = _detector(classifier, training, "shift")
    x, y = photos[8:11], top1[8:11]  # photos the detector was not fitted on
    plain = adaptive.attack_pgd(classifier, x, y, EPS, steps=12)
    adapt = adaptive.attack_detector(classifier, det, x, y, EPS, steps=12, lam=1.0)
    plain_score = det.score(plain.saved)
    print(f"detector score (P(adversarial)) of the saved adversarials: plain PGD {np.round(plain_score, 3).tolist()}, "
          f"detector attack {np.round(adapt.detector_score, 3).tolist()}; fooled the classifier "
          f"{adapt.success_saved.tolist()}, evaded {adapt.evaded.tolist()}; {adapt.seconds / len(y):.1f} s per image")
    np.testing.assert_allclose(adapt.detector_score, det.score(adapt.saved))
    assert adapt.detector_score.mean() < plain_score.mean()
    assert adapt.loss_history.shape == (13, 3) and (adapt.linf <= 8).all()


def test_l2_budget_and_estimator_free_detector_loss(classifier, training, photos, top1):
    x, y = photos[8:9], top1[8:9]
    out = adaptive.attack_pgd(classifier, x, y, 2.0, steps=3, norm="l2")
    assert out.l2[0] <= 2.0 + 0.05 and out.loss_history.shape == (4, 1)  # + 8-bit rounding
    images, flags = training
    forest = advlib.Detector(classifier, feature="count", ops=DET_OPS, estimator="random_forest").fit(images, flags)
    adv = adaptive.attack_detector(classifier, forest, x, y, EPS, steps=2)
    assert adv.params["detector_loss"] == "features" and adv.params["surrogate"] == "rank"
    assert adv.detector_score.shape == (1,) and np.isfinite(adv.loss_history).all()
    with pytest.raises(TypeError, match="RandomForestClassifier"):
        adaptive.attack_detector(classifier, forest, x, y, EPS, steps=1, detector_loss="estimator")


def test_bad_arguments_name_the_parameter(classifier, photos, top1):
    x, y = photos[:1], top1[:1]
    with pytest.raises(ValueError, match="jpeg"):
        ops.diff_op("jpeg_90", x.float() / 255, jpeg="exact")
    with pytest.raises(ValueError, match="x must be a float tensor"):
        ops.diff_op("jpeg_90", x)
    with pytest.raises(KeyError, match="unknown operation"):
        ops.diff_op("jpeg_91", x.float() / 255)
    with pytest.raises(ValueError, match="norm"):
        adaptive.attack_pgd(classifier, x, y, EPS, steps=1, norm="l1")
    with pytest.raises(ValueError, match="eps"):
        adaptive.attack_pgd(classifier, x, y, -1.0, steps=1)
    with pytest.raises(ValueError, match="ops"):
        adaptive.attack_correction(classifier, x, y, EPS, steps=1, ops=["jpeg_91"])
    with pytest.raises(ValueError, match="labels"):
        adaptive.attack_pgd(classifier, x, torch.tensor([1, 2]), EPS, steps=1)
    with pytest.raises(ValueError, match="restarts"):
        adaptive.attack_pgd(classifier, x, y, EPS, steps=1, restarts=0)
    with pytest.raises(ValueError, match="queries"):
        adaptive.attack_square(classifier, x, y, EPS, queries=0)


def test_restarts_keep_the_best_start_per_image(classifier, photos, top1):
    x, y = photos[:2], top1[:2]
    one = adaptive.attack_pgd(classifier, x, y, 1 / 255, steps=3, kappa=50.0, seed=3)
    three = adaptive.attack_pgd(classifier, x, y, 1 / 255, steps=3, kappa=50.0, seed=3, restarts=3)
    # the first restart is the single run (same seed); a later one replaces it only where its final loss is lower
    assert three.params["restarts"] == 3 and three.loss_history.shape == (4, 2)
    assert (three.loss_history[-1] <= one.loss_history[-1] + 1e-6).all()


def test_lam_search_reattacks_only_the_flagged(classifier, training, photos, top1):
    det = _detector(classifier, training, "shift")
    x, y = photos[8:11], top1[8:11]
    out = adaptive.attack_detector(classifier, det, x, y, 2 / 255, steps=4, lam=(0.01, 100.0))
    used = np.asarray(out.params["lam_used"])
    print(f"lam per image {used.tolist()}, evaded {out.evaded.tolist()}")
    first = adaptive.attack_detector(classifier, det, x, y, 2 / 255, steps=4, lam=0.01)
    # images that evaded with the first value keep it and its result; the others were attacked again
    np.testing.assert_array_equal(used == 0.01, first.evaded)
    np.testing.assert_array_equal(out.adversarial[torch.from_numpy(first.evaded)],
                                  first.adversarial[torch.from_numpy(first.evaded)])
    np.testing.assert_allclose(out.detector_score, det.score(out.saved))


def test_squeezing_attack_lowers_the_squeezing_score(classifier, photos, top1):
    squeezer = advlib.detect.FeatureSqueezing(classifier, fpr=0.25, batch_size=4).fit(photos[:8])
    x, y = photos[8:10], top1[8:10]
    plain = adaptive.attack_pgd(classifier, x, y, EPS, steps=6)
    adapt = adaptive.attack_squeezing(classifier, squeezer, x, y, EPS, steps=6, lam=10.0)
    plain_score = squeezer.decision_function(plain.saved)
    print(f"squeezing score: plain PGD {np.round(plain_score, 3).tolist()}, squeezing attack "
          f"{np.round(adapt.detector_score, 3).tolist()} (threshold {squeezer.threshold_used():.3f})")
    np.testing.assert_allclose(adapt.detector_score, squeezer.decision_function(adapt.saved))
    assert adapt.detector_score.mean() < plain_score.mean()


def test_pipeline_attack_needs_both_levels(classifier, training, photos, top1):
    det = _detector(classifier, training, "shift")
    x, y = photos[8:10], top1[8:10]
    out = adaptive.attack_pipeline(classifier, det, x, y, EPS, steps=4, eot=2, lam=1.0)
    assert out.params["eot"] == 2 and len(out.params["ops"]) == 26 and out.detected is not None
    assert out.loss_history.shape == (5, 2) and (out.linf <= 8).all()


def test_square_attack_is_gradient_free_and_monotone(classifier, photos, top1):
    x, y = photos[:2], top1[:2]
    out = adaptive.attack_square(classifier, x, y, EPS, queries=200, seed=0)
    h = out.loss_history
    print(f"Square attack, 200 queries at 8/255: success {out.success_saved.tolist()}, final margins {h[-1].tolist()}")
    assert h.shape == (201, 2) and (np.diff(h, axis=0) <= 1e-6).all()  # only improvements are kept
    assert (out.linf <= 8).all() and out.success_saved.any()
    # the loss at the end is the saved file's: a success is a success on the re-checked file
    assert (out.success_saved == (h[-1] <= 0)).all()
