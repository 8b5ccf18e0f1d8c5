"""Shared fixtures: the real default classifier and real photos shipped in installed packages."""

import os
import shutil
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import math

import numpy as np
import pytest
import torch

import advlib
from advlib import corpora, models, store

N_TRAIN = 8  # normal photos the corpus detector is fitted on, with their FGSM versions (three of each in the folder)
N_ADV = 3  # adversarial files in the corpus folder


#: How far a float32 output of order 1 (a probability, an L1 distance between softmax vectors, a
#: detector's score) may move when the same image is classified in a batch of another
#: composition, on another thread count or CPU code path: the reductions run in another order.
#: A reduction of n terms reordered differs by about sqrt(n) float32 epsilons (Higham), and the
#: classifier chains about 50 layers whose reductions have at most 1,280 terms (its last layer),
#: so 50 * sqrt(1280) * eps = 2.1e-4 bounds it; differences of 2e-6 were seen between CPUs, a bug
#: moves scores by 1e-2 or more.
FLOAT32_ATOL = 50 * math.sqrt(1280) * float(np.finfo(np.float32).eps)


@pytest.fixture(scope="session")
def classifier():
    torch.manual_seed(0)
    return models.load_classifier("efficientnet_lite0")


@pytest.fixture(scope="session")
def imagenet_samples():
    """The 20 labelled ImageNet validation samples of the foolbox wheel: (images, labels, items)."""
    items = [it for it in corpora.demo_items(1) if it.label_source == "imagenet"]
    images, ok, failures = corpora.read_images(items)
    assert not failures
    return images, torch.tensor([it.label for it in ok]), ok


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: on 2 busy shared cores, OpenMP's second thread made small
    ops up to 100x slower (test_attacks: 824 s vs 47 s). Use with ``pytestmark``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, classifier):
    """The scanned folder of tests/test_cli.py, the fitted detector's folder, and what the tests need
    to check them (the scan tests of other modules reuse the detector)."""
    root = tmp_path_factory.mktemp("cli")
    folder = root / "photos"
    (folder / "sub" / "deeper").mkdir(parents=True)
    photos = [p for p in corpora.demo_photos() if p.package == "foolbox" and "imagenet" in str(p.path)][:N_TRAIN]
    x = advlib.load_images([str(p.path) for p in photos])
    out = advlib.attack("fgsm", classifier, x)  # adversarial versions of all 8 to fit on, 3 of them in the folder
    assert out.success_saved.all(), "FGSM failed on a confident ImageNet sample"
    suffix, quality = store.image_format("jpeg")  # notebook 01's save path: JPEG quality 100
    originals = [folder / "imagenet_00.jpg", folder / "imagenet_01.jpg", folder / "sub" / "imagenet_02.jpg"]
    adversarial = [folder / f"adv_00{suffix}", folder / "sub" / f"adv_01{suffix}",
                   folder / "sub" / "deeper" / f"adv_02{suffix}"]
    for i in range(N_ADV):
        shutil.copy(photos[i].path, originals[i])
        store.save_image(out.adversarial[i], adversarial[i], quality=quality)
    skimage = {p.source_id: p.path for p in corpora.demo_photos() if p.package == "scikit-image"}
    shutil.copy(skimage["skimage_chelsea"], folder / "chelsea.png")  # not 224x224: resized and cropped
    shutil.copy(skimage["skimage_coffee"], folder / "sub" / "deeper" / "coffee.png")
    jpeg = Path(photos[3].path).read_bytes()
    (folder / "corrupt.jpg").write_bytes(jpeg[:len(jpeg) // 3])  # truncated JPEG
    (folder / "x.jpg").write_text("not an image\n")
    (folder / "notes.txt").write_text("no image suffix: not scanned\n")
    (folder / ".partial.jpg").write_bytes(jpeg)  # hidden: not scanned

    adv_saved = torch.stack([store.as_saved(a, "jpeg") for a in out.adversarial])  # as the files read back
    assert torch.equal(advlib.load_images([str(p) for p in adversarial]), adv_saved[:N_ADV])
    train = torch.cat([x, adv_saved])
    # 16 JPEG operations (17 classifier passes per image); on 16 training images the random forest
    # separates the classes, and the threshold is calibrated on the normal ones (none flagged)
    det = advlib.Detector(classifier, feature="diff", ops="jpeg", estimator="random_forest", batch_size=4,
                          cache_dir=root / "cache").fit(train, [False] * N_TRAIN + [True] * N_TRAIN)
    det.calibrate(x, fpr=0.01)  # under 1 in 8: just above the highest normal score
    det.save(root / "detector")
    scores = det.score(train)  # from the top-5 cache: no second pass
    expected = {**{str(p): scores[i] for i, p in enumerate(originals)},
                **{str(p): scores[N_TRAIN + i] for i, p in enumerate(adversarial)}}
    return {"root": root, "folder": folder, "detector": root / "detector", "det": det, "scores": expected,
            "originals": originals, "adversarial": adversarial, "bad": [folder / "corrupt.jpg", folder / "x.jpg"]}


def pytest_collection_modifyitems(config, items):
    """Tests marked ``after_notebooks`` (tests/test_smoke_outputs.py) check what the smoke
    notebooks wrote: they run after the notebooks, and only in a session that runs them."""
    after = [it for it in items if it.get_closest_marker("after_notebooks")]
    if not after:
        return
    rest = [it for it in items if not it.get_closest_marker("after_notebooks")]
    if any(str(it.fspath).endswith(".ipynb") for it in rest):
        items[:] = rest + after
    else:
        config.hook.pytest_deselected(items=after)
        items[:] = rest
