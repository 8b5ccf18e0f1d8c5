"""The 12 attacks on real photos with efficientnet_lite0: success after JPEG-100 saving, the
reference-label test, the attempt log and the seed."""

import foolbox as fb
import numpy as np
import pytest
import torch

from advlib.attacks import (ATTACKS, AttackSpec, TargetedProbability, TopKMisclassification, is_adversarial,
                            perturbation_norms, run_attack, save_roundtrip, target_labels)
from advlib.attacks.criteria import success
from advlib.attacks.saving import Tracker
from advlib.corpora import demo_items, read_images
from advlib.images import load_image
from advlib.models import load_classifier, predict_topk
from advlib.store import save_image

TARGETED = {"lbfgs", "bim", "pgd", "l1_iterative", "l2_iterative"}
NON_TARGETED = {"gradient", "fgsm", "deepfool", "newtonfool", "adef", "jsma", "cw"}
N_IMAGES = 3  # photos 0-2: JSMA (paper: ~10% success) fools only the third of these


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return load_classifier("efficientnet_lite0")


def check_attempts(out, images: torch.Tensor) -> None:
    """The attempt log of ``out`` agrees with its per-image results: rungs 0, 1, ... per image,
    every image tried, nothing tried after a saved success, and the per-image values are those
    of the last attempt (its final setting), with L2/L-inf of the rounded image."""
    B = len(images)
    assert {a["index"] for a in out.attempts} == set(range(B))
    l2, linf = perturbation_norms(out.adversarial, images)
    for i in range(B):
        mine = [a for a in out.attempts if a["index"] == i]
        assert [a["rung"] for a in mine] == list(range(len(mine)))
        assert not any(a["success_saved"] for a in mine[:-1])  # a success is not attacked again
        last = mine[-1]
        assert (last["success_raw"], last["success_rounded"], last["success_saved"]) == \
            (out.success_raw[i], out.success_rounded[i], out.success_saved[i])
        assert (out.strength[i] == last["strength"]) if out.success_saved[i] else out.strength[i] is None
        assert last["l2"] == pytest.approx(l2[i]) and last["linf"] == linf[i]
        assert all(isinstance(a["linf"], int) and 0 <= a["linf"] <= 255 and a["l2"] >= 0 for a in mine)


@pytest.fixture(scope="module")
def photos(model):
    """The first foolbox ImageNet sample photos (uint8 (N, 3, 224, 224)) and the model's top-1."""
    items = [it for it in demo_items(1) if it.label_source == "imagenet"][:N_IMAGES]
    images, items, failures = read_images(items)
    assert not failures and len(images) == N_IMAGES
    return images, predict_topk(model, images, k=1)[:, 0]


def test_registry_names_and_targeted_flags():
    assert set(ATTACKS) == TARGETED | NON_TARGETED and len(ATTACKS) == 12
    for name, spec in ATTACKS.items():
        assert spec.name == name
        assert spec.targeted == (name in TARGETED)
        assert spec.library and spec.options


def test_option_override_and_repr():
    spec = ATTACKS["fgsm"].with_options(epsilons=[8 / 255])
    assert spec.options["epsilons"] == (8 / 255,)
    assert ATTACKS["fgsm"].options["epsilons"] != spec.options["epsilons"]  # the registry is untouched
    text = repr(ATTACKS["cw"])
    assert text.startswith("AttackSpec('cw', targeted=False") and "confidences=" in text
    with pytest.raises(ValueError, match="unknown option"):
        ATTACKS["fgsm"].with_options(confidence=3)
    with pytest.raises(ValueError, match="epsilons"):
        ATTACKS["fgsm"].with_options(epsilons=[])
    with pytest.raises(ValueError, match="steps"):
        ATTACKS["bim"].with_options(steps="ten")
    assert ATTACKS["bim"].with_options(steps=3, random_start=True).options["steps"] == 3
    assert isinstance(spec, AttackSpec)


def test_bad_inputs(model, photos):
    images, labels = photos
    with pytest.raises(KeyError, match="unknown attack 'nope'"):
        run_attack("nope", model, images, labels)
    with pytest.raises(ValueError, match="images"):
        run_attack("fgsm", model, images.float() / 255, labels)
    with pytest.raises(ValueError, match="labels"):
        run_attack("fgsm", model, images, labels[:1])
    with pytest.raises(ValueError, match="reference"):
        run_attack("fgsm", model, images, labels, reference=labels[:1])
    with pytest.raises(ValueError, match="reference"):
        run_attack("fgsm", model, images, labels, reference=labels + 1000)
    with pytest.raises(ValueError, match="save_format"):
        run_attack("fgsm", model, images, labels, save_format="gif")
    with pytest.raises(ValueError, match="unknown option"):
        run_attack("fgsm", model, images, labels, steps=3)


def test_criteria_on_clean_photos(model, photos):
    images, labels = photos
    assert not is_adversarial(model, images, labels).any()  # the top-1 is in the top-5
    assert not is_adversarial(model, images, labels, target_labels(labels)).any()
    assert issubclass(TopKMisclassification, fb.criteria.Misclassification)
    assert issubclass(TargetedProbability, fb.criteria.TargetedMisclassification)
    logits = model(images.float() / 255)
    other = logits.argsort(1)[:, 0]  # the least likely class
    assert TopKMisclassification(other)(None, logits).all()
    assert not TopKMisclassification(labels)(None, logits).any()
    assert not TargetedProbability(labels, threshold=1.01)(None, logits).any()
    assert TargetedProbability(labels, threshold=0.0)(None, logits).all()
    assert torch.equal(target_labels(torch.tensor([0, 950])), torch.tensor([100, 50]))


def test_success_needs_the_reference_out_of_the_top5():
    """The combined test on made-up logits: the attack's criterion AND the reference out of the top-5."""
    logits = torch.full((4, 1000), -20.0)
    logits[:, 10:15] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])  # top-5: 10..14 for every image
    logits[:, 10] = 20.0  # p(10) >= 0.99
    labels = torch.tensor([50, 50, 12, 50])
    ref = torch.tensor([50, 13, 50, 10])
    assert success(logits, labels, None).tolist() == [True, True, False, True]
    assert success(logits, labels, None, ref).tolist() == [True, False, False, False]
    targets = torch.tensor([10, 10, 10, 11])
    assert success(logits, labels, targets).tolist() == [True, True, True, False]
    assert success(logits, labels, targets, ref).tolist() == [True, False, True, False]


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_survives_jpeg_saving(name, model, photos, tmp_path):
    images, labels = photos
    out = run_attack(name, model, images, labels, save_format="jpeg")
    B = len(images)
    assert out.adversarial.dtype == torch.uint8 and out.adversarial.shape == images.shape
    for flags in (out.success_raw, out.success_rounded, out.success_saved):
        assert flags.dtype == bool and flags.shape == (B,)
    assert out.success_saved.any(), f"{name}: no adversarial image survived JPEG-100 saving"
    assert [s is not None for s in out.strength] == list(out.success_saved)
    # independent re-check: write each returned image as a JPEG-100 file, read it back, classify
    paths = [save_image(im, tmp_path / f"{name}_{i}.jpg", quality=100) for i, im in enumerate(out.adversarial)]
    decoded = torch.stack([load_image(p) for p in paths])
    targets = target_labels(labels) if ATTACKS[name].targeted else None
    np.testing.assert_array_equal(is_adversarial(model, decoded, labels, targets), out.success_saved)
    np.testing.assert_array_equal(is_adversarial(model, out.adversarial, labels, targets), out.success_rounded)
    ok = out.success_saved
    probs = model(decoded.float() / 255).softmax(1)
    if targets is not None:
        assert (out.target == targets.numpy()).all()
        assert (probs[ok].gather(1, targets[ok, None]) >= 0.99).all()
    else:
        assert (out.target == -1).all()
        top5 = probs.topk(5, dim=1).indices
        assert not (top5[ok] == labels[ok, None]).any()
    changed = (out.adversarial.int() - images.int()).abs().flatten(1).amax(1)
    assert (changed[ok] > 0).all()  # successful images differ from the inputs
    check_attempts(out, images)


def test_png_saving_equals_rounding(model, photos):
    images, labels = photos
    out = run_attack("fgsm", model, images, labels, save_format="png", epsilons=[4 / 255, 16 / 255])
    np.testing.assert_array_equal(out.success_saved, out.success_rounded)
    assert torch.equal(save_roundtrip(out.adversarial, "png"), out.adversarial)


def test_successes_are_not_attacked_again(model, photos):
    images, labels = photos
    first = run_attack("fgsm", model, images, labels, epsilons=[1 / 255])
    ladder = run_attack("fgsm", model, images, labels, epsilons=[1 / 255, 16 / 255])
    done = first.success_saved
    assert done.any() and not done.all()  # the photos need different strengths
    assert torch.equal(ladder.adversarial[done], first.adversarial[done])
    assert [ladder.strength[i] for i in np.flatnonzero(done)] == [1 / 255] * int(done.sum())
    assert ladder.success_saved.sum() > done.sum()
    # the attempt log: one row per image at 1/255, one more per image not done there
    assert len(ladder.attempts) == len(images) + int((~done).sum())
    assert all(a["linf"] <= round(a["strength"] * 255) for a in ladder.attempts)  # FGSM is an Linf step
    check_attempts(ladder, images)


@pytest.mark.parametrize("name, epsilons", [("fgsm", [16 / 255, 32 / 255]), ("bim", [8 / 255, 16 / 255])])
def test_reference_label_in_top5_is_not_asuccess(name, epsilons, model, photos):
    """An image whose reference label stays in its top-5 is not counted (raw, rounded or saved),
    and the strength search goes on to the next setting for it."""
    images, labels = photos
    first = run_attack(name, model, images, labels, epsilons=epsilons[:1])
    ok = first.success_saved
    assert ok.any()
    decoded = save_roundtrip(first.adversarial)
    top5 = predict_topk(model, decoded, 5)
    ref = labels.clone()
    ref[ok] = top5[ok, 1]  # a reference label inside the attacked image's top-5
    targets = target_labels(labels) if ATTACKS[name].targeted else None
    assert is_adversarial(model, decoded, labels, targets)[ok].all()
    assert not is_adversarial(model, decoded, labels, targets, reference=ref)[ok].any()
    second = run_attack(name, model, images, labels, epsilons=epsilons, reference=ref)
    rung0 = {a["index"]: a for a in second.attempts if a["rung"] == 0}
    for i in np.flatnonzero(ok):  # same image as before (deterministic attack), no longer a success
        assert not rung0[i]["success_saved"]
        assert any(a["index"] == i and a["rung"] == 1 for a in second.attempts)  # searched further
    check_attempts(second, images)
    final = save_roundtrip(second.adversarial)
    np.testing.assert_array_equal(is_adversarial(model, final, labels, targets, reference=ref), second.success_saved)
    np.testing.assert_array_equal(is_adversarial(model, second.adversarial, labels, targets, reference=ref),
                                  second.success_rounded)
    top5_final = predict_topk(model, final, 5)
    assert not (top5_final[second.success_saved] == ref[second.success_saved, None]).any()


def test_tracker_keeps_the_values_of_the_successful_setting(model, photos):
    """A check after an image's saved success is logged but does not replace its final values."""
    images, labels = photos
    out = run_attack("fgsm", model, images, labels, epsilons=[16 / 255])
    assert out.success_saved.any()
    x0 = images.float() / 255
    tracker = Tracker(model, x0, labels, None, labels, "jpeg")
    idx = torch.arange(len(images))
    first = tracker.check(idx, out.adversarial.float() / 255, 16 / 255).numpy()
    tracker.check(idx, x0, 0.0)  # the clean images: never adversarial
    np.testing.assert_array_equal(first, out.success_saved)
    assert len(tracker.attempts) == 2 * len(images)
    assert not any(a["success_saved"] for a in tracker.attempts[len(images):])
    np.testing.assert_array_equal(tracker.saved, out.success_saved)
    done = out.success_saved
    assert torch.equal(tracker.adv[done], out.adversarial[done])
    assert torch.equal(tracker.adv[~done], images[~done])  # the last setting tried: 0
    assert [tracker.strength[i] for i in np.flatnonzero(done)] == [16 / 255] * int(done.sum())


def test_seed_fixes_pgd_random_start(model, photos):
    images, labels = photos
    one = [run_attack("pgd", model, images[:1], labels[:1], epsilons=[8 / 255], steps=2, seed=s).adversarial
           for s in (1, 1, 2)]
    assert torch.equal(one[0], one[1])
    assert not torch.equal(one[0], one[2])
