"""The 12 attacks on real photos with efficientnet_lite0: success after JPEG-100 saving."""

import foolbox as fb
import numpy as np
import pytest
import torch

from advlib.attacks import (ATTACKS, AttackSpec, TargetedProbability, TopKMisclassification,
                            is_adversarial, run_attack, save_roundtrip, target_labels)
from advlib.data import demo_items, load_image, read_images
from advlib.models import load_classifier, predict_topk
from advlib.store import save_image

TARGETED = {"lbfgs", "bim", "pgd", "l1_iterative", "l2_iterative"}
NON_TARGETED = {"gradient", "fgsm", "deepfool", "newtonfool", "adef", "jsma", "cw"}
N_IMAGES = 3  # photos 0-2: JSMA (paper: ~10% success) fools only the third of these


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return load_classifier("efficientnet_lite0")


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
