"""Label and image correction (paper Sect. 5) on a real classifier, real photos and real attacks."""

import foolbox as fb
import numpy as np
import pytest
import torch

from advlib import correct, models, ops
from advlib.correct import (QF_STRATEGIES, choose_qf, heuristic_correct, heuristic_qf_set, jpeg_correct,
                            label_correction, label_correction_success, top5_correct)
from advlib.features import top5_under_ops
from advlib.store import decode_image, encode_image

N_IMAGES = 5
VOTERS = ops.GROUPS["jpeg+scaling"]  # the paper's 26 ops


@pytest.fixture(scope="session")
def sets(classifier, imagenet_samples):
    """Normal photos the classifier gets right (top-5), their real BIM adversarials (Linf 4/255, 5 steps,
    rounded to uint8, kept when the normal top-1 left the top-5), and top-5 lists under 26 ops."""
    images, labels, _ = imagenet_samples
    images, labels = images[:N_IMAGES + 3], labels[:N_IMAGES + 3]
    top5 = models.predict_topk(classifier, images, batch_size=16)
    keep = (top5 == labels[:, None]).any(1)
    images, labels, top1 = images[keep][:N_IMAGES], labels[keep][:N_IMAGES], top5[keep][:N_IMAGES, 0]
    attack = fb.attacks.LinfBasicIterativeAttack(steps=5, rel_stepsize=0.4)
    _, adv, _ = attack(fb.PyTorchModel(classifier, bounds=(0, 1)), images.float() / 255, top1, epsilons=4 / 255)
    adv = (adv * 255).round().clamp(0, 255).to(torch.uint8)
    top5 = top5_under_ops(classifier, torch.cat([images, adv]), VOTERS, batch_size=16, progress=False).numpy()
    is_adv = ~(top5[len(images):, 0] == top1.numpy()[:, None]).any(1)
    assert is_adv.sum() >= 3, "the attack should fool the classifier on most photos"
    return {
        "normal": images, "labels": labels.numpy(), "after_normal": top5[:len(images), 1:],
        "adv": adv[is_adv], "adv_labels": top1[is_adv].numpy(), "after_adv": top5[len(images):, 1:][is_adv],
    }


# ----------------------------------------------------------------------------- label correction

def test_label_correction_on_real_images(sets):
    corr_n = label_correction(sets["after_normal"], VOTERS)
    corr_a = label_correction(sets["after_adv"], VOTERS)
    assert corr_n.shape == (len(sets["normal"]), 5) and corr_n.dtype == np.int64
    assert corr_a.shape == (len(sets["adv"]), 5)
    assert (corr_n >= 0).all()  # 130 votes always give 5 distinct labels here
    kept = label_correction_success(corr_n, sets["labels"])
    corrected = label_correction_success(corr_a, sets["adv_labels"])
    print(f"label correction: normal kept {kept.mean():.2f}, adversarial corrected {corrected.mean():.2f} "
          f"(n={len(kept)}, {len(corrected)}); paper 98.12 / 89.91 %")
    assert kept.mean() > 0.5
    assert corrected.mean() >= 0.25  # adversarial noise does not survive most of the 26 ops
    # voting only JPEG or only scaling works too and differs from the combination somewhere
    only_jpeg = label_correction(sets["after_adv"], VOTERS, groups=("jpeg",))
    assert only_jpeg.shape == corr_a.shape


def test_label_correction_ties_hand_checked():
    names = ["jpeg_100", "jpeg_90", "scale_0.75", "blur_2"]
    after = np.array([[[1, 2, 3, 4, 5],
                       [2, 1, 3, 6, 7],
                       [1, 3, 2, 8, 9],
                       [9, 9, 9, 9, 9]]])  # blur_2 does not vote by default
    # counts: 1, 2, 3 three times (rank sums 1, 3, 5); 4..9 once; among those 4, 6, 8 sit at rank 3
    # (sum 3) and 4 appears first, then 6
    assert label_correction(after, names).tolist() == [[1, 2, 3, 4, 6]]
    # JPEG only: 1 and 2 twice with rank sum 1 each -> first appearance decides (1 at position 0)
    assert label_correction(after, names, groups=("jpeg",)).tolist() == [[1, 2, 3, 4, 6]]
    swapped = after[:, [1, 0, 2, 3]]
    assert label_correction(swapped, [names[i] for i in (1, 0, 2, 3)], groups=("jpeg",)).tolist() == [[2, 1, 3, 6, 4]]
    # explicit op names; fewer than 5 distinct labels -> -1 padding
    assert label_correction(after, names, groups=("blur_2",)).tolist() == [[9, -1, -1, -1, -1]]
    # several images at once give the same rows as one at a time, in any order
    rng = np.random.default_rng(0)
    many = rng.integers(0, 6, size=(40, 4, 5))
    rows = np.stack([label_correction(many[i:i + 1], names)[0] for i in range(40)])
    assert (label_correction(many, names) == rows).all()
    assert (label_correction(many[::-1], names) == rows[::-1]).all()


def _reference_vote(lists: np.ndarray) -> list[int]:
    """The documented rule, written the slow way: count, then rank sum, then first position."""
    stats = {}
    for pos, label in enumerate(lists.ravel()):
        count, rank_sum, first = stats.get(label, (0, 0, pos))
        stats[label] = (count + 1, rank_sum + pos % 5, first)
    best = sorted(stats, key=lambda lab: (-stats[lab][0], stats[lab][1], stats[lab][2], lab))[:5]
    return best + [-1] * (5 - len(best))


def test_label_correction_matches_reference_rule():
    rng = np.random.default_rng(1)
    after = rng.integers(0, 12, size=(200, len(VOTERS), 5))
    got = label_correction(after, VOTERS)
    assert all(got[i].tolist() == _reference_vote(after[i]) for i in range(len(after)))


def test_label_correction_bad_input():
    with pytest.raises(ValueError, match=r"after\[:, 1:\]"):
        label_correction(np.zeros((2, 27, 5), dtype=int), VOTERS)
    with pytest.raises(ValueError, match="groups"):
        label_correction(np.zeros((2, 26, 5), dtype=int), VOTERS, groups=("sharpen",))
    with pytest.raises(ValueError, match="after"):
        label_correction(np.zeros((2, 26, 5)), VOTERS)  # float labels


def test_top5_correct():
    top5 = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    assert top5_correct(top5, [5, 5]).tolist() == [True, False]
    assert top5_correct(torch.tensor(top5), torch.tensor([6, 10])).tolist() == [False, True]
    with pytest.raises(ValueError, match="labels"):
        top5_correct(top5, [1, 2, 3])


# ----------------------------------------------------------------------------- heuristic

QFS = (100, 80, 60, 40)
HNAMES = ["jpeg_100", "jpeg_80", "jpeg_60", "jpeg_40", "scale_0.75"]


def _lists(top1s):
    """after (N, 5, 5) whose rank-0 labels are ``top1s`` (N, 5); ranks 1..4 hold labels 901..904."""
    top1s = np.asarray(top1s)
    after = np.tile(np.arange(900, 905), (*top1s.shape, 1))
    after[..., 0] = top1s
    return after


def test_heuristic_qf_set_and_strategies_hand_checked():
    # top-1 under jpeg_100, 80, 60, 40, scale_0.75
    after = _lists([[7, 7, 3, 3, 3],    # S_QF: 3 -> 60, 7 -> 100
                    [5, 6, 7, 8, 1],    # four labels at four QFs
                    [9, 9, 9, 9, 9],    # one label
                    [2, 2, 2, 2, 2]])   # no voted label is ever top-1 -> fallback
    corrected = np.array([[3, 7, 900, 901, -1],
                          [1, 5, 6, 7, 8],
                          [9, 900, 901, 902, 903],
                          [11, 12, 13, 14, 15]])
    s = heuristic_qf_set(after, HNAMES, corrected, QFS, rank=1)
    expect = np.array([[60, 100, np.nan, np.nan, np.nan],
                       [np.nan, 100, 80, 60, 40],   # label 1 is top-1 only under scaling
                       [100, np.nan, np.nan, np.nan, np.nan],
                       [np.nan] * 5])
    np.testing.assert_array_equal(s, expect)
    assert choose_qf(s, "max").tolist() == [100, 100, 100, 40]
    assert choose_qf(s, "min").tolist() == [60, 40, 100, 40]
    assert choose_qf(s, "2ndmin").tolist() == [100, 60, 100, 40]  # one value: that value
    assert choose_qf(s, "median").tolist() == [60, 60, 100, 40]   # even count: the lower middle
    assert choose_qf(s, "median", fallback_qf=25).tolist()[3] == 25
    # a label anywhere in the top-5 (the authors' code) instead of top-1 only
    s5 = heuristic_qf_set(after, HNAMES, corrected, QFS, rank=5)
    np.testing.assert_array_equal(s5[[0, 2]], [[60, 100, np.nan, 100, np.nan], [100, np.nan, 100, 100, 100]])
    with pytest.raises(ValueError, match="strategy"):
        choose_qf(s, "mean")
    with pytest.raises(ValueError, match="qfs"):
        heuristic_qf_set(after, HNAMES, corrected, (100, 90))


def test_heuristic_correct_on_real_images(classifier, sets):
    x = torch.cat([sets["normal"], sets["adv"]])
    after = np.concatenate([sets["after_normal"], sets["after_adv"]])
    labels = np.concatenate([sets["labels"], sets["adv_labels"]])
    n = len(sets["normal"])
    runs = {(s, 1): s for s in QF_STRATEGIES} | {("min", 5): "min"}  # rank 5: the authors' code
    res = {}
    for (strategy, rank) in runs:
        images, qf, fell_back = heuristic_correct(x, after, VOTERS, strategy, rank=rank)
        assert images.dtype == torch.uint8 and images.shape == x.shape
        assert qf.shape == fell_back.shape == (len(x),) and fell_back.dtype == bool
        assert set(qf.tolist()) <= set(correct.HEURISTIC_QFS)
        assert (qf[fell_back] == 40).all()
        ok = top5_correct(models.predict_topk(classifier, images, batch_size=16), labels)
        print(f"heuristic-{strategy} (rank {rank}): normal {ok[:n].mean():.2f}, adversarial {ok[n:].mean():.2f}, "
              f"QFs {qf.tolist()}")
        res[strategy, rank] = images, qf, ok
    qf = {s: res[s, 1][1] for s in QF_STRATEGIES}
    assert (qf["min"] <= qf["2ndmin"]).all() and (qf["2ndmin"] <= qf["max"]).all()
    assert (qf["min"] <= qf["median"]).all() and (qf["median"] <= qf["max"]).all()
    # normal images keep their label with max(S_QF), which is mostly QF 100
    assert res["max", 1][2][:n].mean() > 0.5
    # the corrected image is the Pillow JPEG of the input at the chosen QF
    images, qfs, _ = res["min", 5]
    for i in (0, len(x) - 1):
        assert torch.equal(images[i], decode_image(encode_image(x[i], "jpeg", int(qfs[i]))))


def test_jpeg_correct_equals_pillow(sets):
    x = sets["normal"][:4]
    out = jpeg_correct(x, 60)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    for i in range(len(x)):
        assert torch.equal(out[i], decode_image(encode_image(x[i], "jpeg", 60)))
    per_image = jpeg_correct(x, np.array([90, 40, 90, 60]))
    for i, q in enumerate((90, 40, 90, 60)):
        assert torch.equal(per_image[i], decode_image(encode_image(x[i], "jpeg", q)))
    with pytest.raises(ValueError, match="qf"):
        jpeg_correct(x, 20)
    with pytest.raises(ValueError, match="qf"):
        jpeg_correct(x, [90, 80])
    with pytest.raises(ValueError, match="images"):
        jpeg_correct(x.float(), 60)


# ----------------------------------------------------------------------------- denoising autoencoder

def test_dae_trains_saves_and_loads(sets, tmp_path):
    x = sets["normal"][:4, :, :96, :96]  # real photo crops, 96x96, to keep the test fast
    model = correct.train_dae(x, sigma=0.1, epochs=3, batch_size=2, seed=0, progress=False, channels=(8, 16, 32))
    assert len(model.losses) == 6 and all(np.isfinite(model.losses))
    per_epoch = np.reshape(model.losses, (3, 2)).mean(1)
    assert per_epoch[-1] < per_epoch[0]  # training reduces the denoising loss
    out = correct.denoise(model, x, batch_size=3)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    odd = correct.denoise(model, sets["normal"][:1, :, :50, :70])  # sizes not a multiple of 8
    assert odd.shape == (1, 3, 50, 70)
    again = correct.train_dae(x, sigma=0.1, epochs=1, batch_size=2, seed=0, progress=False, channels=(8, 16, 32))
    assert again.losses == model.losses[:2]  # seeded: same init, order and noise

    path = correct.save_dae(model, tmp_path / "dae.pt", {"sigma": 0.1, "epochs": 3, "classifier": "efficientnet_lite0"})
    loaded = correct.load_dae(path, expect={"sigma": 0.1, "epochs": 3})
    assert loaded.meta["classifier"] == "efficientnet_lite0" and loaded.channels == (8, 16, 32)
    assert torch.equal(correct.denoise(loaded, x), out)
    with pytest.raises(ValueError, match="'sigma'"):
        correct.load_dae(path, expect={"sigma": 0.2})
    with pytest.raises(ValueError, match="'seed'"):
        correct.load_dae(path, expect={"seed": 0})
    with pytest.raises(ValueError, match="images_uint8"):
        correct.train_dae(x.float(), epochs=1)


def test_one_reading_of_step2_everywhere(sets):
    """heuristic_steps is Steps 1-2 with the primary reading (top-5, the authors' code) by default,
    and heuristic_correct uses it."""
    after = np.concatenate([sets["after_normal"], sets["after_adv"]])
    x = torch.cat([sets["normal"], sets["adv"]])
    assert correct.HEURISTIC_RANK == 5 and set(correct.HEURISTIC_READINGS) == {1, 5}
    voted, s_qf, fell_back = correct.heuristic_steps(after, VOTERS)
    assert np.array_equal(voted, correct.label_correction(after, VOTERS))
    assert np.array_equal(s_qf, heuristic_qf_set(after, VOTERS, voted, rank=5), equal_nan=True)
    assert np.array_equal(fell_back, ~np.isfinite(s_qf).any(axis=1))
    _, qf, fb = heuristic_correct(x, after, VOTERS, "min")
    assert np.array_equal(qf, choose_qf(s_qf, "min")) and np.array_equal(fb, fell_back)
    # the top-5 reading finds a QF at least as high as the top-1 reading for every voted label
    s1 = correct.heuristic_steps(after, VOTERS, rank=1)[1]
    both = np.isfinite(s1)
    assert np.isfinite(s_qf)[both].all() and (s_qf[both] >= s1[both]).all()
