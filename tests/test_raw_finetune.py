"""The fine-tuned EfficientNet-Lite0 raw-image detector (advlib.detect.finetune) on real photos.

12 demo photos (one crop each) and their FGSM versions (Linf, eps 8/255, advlib.attacks) on the
efficientnet_lite0 classifier; 2 epochs of fine-tuning, photos split 8 train / 4 dev.
"""

import io
import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

from advlib import attacks, corpora
from advlib.detect import finetune as raw_finetune
from advlib.models import predict_topk
from advlib.detect.finetune import ACTIVATION_CACHE, ActivationCache, FineTunedEfficientNet

N_PHOTOS, N_TRAIN = 12, 8

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def real_pairs(classifier):
    """(train images, train labels, dev images, dev labels): normal photos and their FGSM versions."""
    normal, ok, failures = corpora.read_images(corpora.demo_items(1)[:N_PHOTOS])
    assert not failures and len(ok) == N_PHOTOS
    top1 = predict_topk(classifier, normal, 5, 4)[:, 0]
    adv = attacks.run_attack("fgsm", classifier, normal, top1, epsilons=(8 / 255,)).adversarial
    assert adv.dtype == torch.uint8 and not torch.equal(adv, normal)

    def pairs(idx):
        return torch.cat([normal[idx], adv[idx]]), np.r_[np.zeros(len(idx)), np.ones(len(idx))].astype(int)

    return (*pairs(list(range(N_TRAIN))), *pairs(list(range(N_TRAIN, N_PHOTOS))))


@pytest.fixture(scope="module")
def fitted(real_pairs):
    X, y, X_dev, y_dev = real_pairs
    ACTIVATION_CACHE.clear()
    det = FineTunedEfficientNet(epochs=2, batch_size=8, progress=False)
    return det.fit(X, y, X_dev=X_dev, y_dev=y_dev)


def test_fit_and_predict_proba(fitted, real_pairs):
    X, _, X_dev, y_dev = real_pairs
    p = fitted.predict_proba(X_dev)
    assert p.shape == (len(X_dev), 2) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(fitted.predict(X_dev), (p[:, 1] >= 0.5).astype(int))
    assert list(fitted.classes_) == [0, 1]
    assert len(fitted.history_) == 2 and fitted.best_epoch_ in (1, 2)
    assert fitted.dev_accuracy_ == fitted.history_[fitted.best_epoch_ - 1]["dev_accuracy"]
    assert fitted.dev_accuracy_ == pytest.approx(float((fitted.predict(X_dev) == y_dev).mean()))
    assert fitted.class_weights_ == [1.0, 1.0]  # balanced classes
    assert clone(fitted).get_params() == fitted.get_params()


def test_second_fit_reuses_cached_activations(real_pairs, monkeypatch):
    X, y, X_dev, y_dev = real_pairs
    ACTIVATION_CACHE.clear()
    calls = []
    frozen = raw_finetune._frozen_features
    monkeypatch.setattr(raw_finetune, "_frozen_features", lambda *a: calls.append(len(a[1])) or frozen(*a))
    det = FineTunedEfficientNet(epochs=1, batch_size=8, progress=False)
    det.fit(X, y, X_dev=X_dev, y_dev=y_dev)
    n_images = len(X) + len(X_dev)
    assert sum(calls) == n_images and det.n_computed_ == n_images and len(ACTIVATION_CACHE) == n_images
    assert max(calls) <= raw_finetune.FROZEN_BATCH_CPU
    calls.clear()
    det.fit(X, y, X_dev=X_dev, y_dev=y_dev)  # a refit on the same pixels: no frozen forward at all
    det.predict_proba(X_dev)
    assert calls == [] and det.n_computed_ == 0 and len(ACTIVATION_CACHE) == n_images


def test_cache_is_bounded_lru():
    cache = ActivationCache(max_bytes=3 * 16)
    for i in range(3):
        cache.put(("a", i), torch.zeros(4))
    assert cache.get(("a", 0)) is not None  # 0 is now the most recent
    cache.put(("a", 3), torch.zeros(4))
    assert ("a", 1) not in cache and ("a", 0) in cache and len(cache) == 3 and cache.nbytes == 48
    cache.put(("big",), torch.zeros(100))  # larger than the bound: not stored
    assert ("big",) not in cache


def test_bad_input_raises(real_pairs):
    X, y, _, _ = real_pairs
    det = FineTunedEfficientNet(epochs=1, progress=False)
    with pytest.raises(ValueError, match="uint8"):
        det.fit(X.float() / 255, y)
    with pytest.raises(ValueError, match=r"shape \(N, 3, H, W\)"):
        det.fit(X.permute(0, 2, 3, 1), y)
    with pytest.raises(ValueError, match="224 x 224"):
        det.fit(X[:, :, :200, :200], y)
    with pytest.raises(ValueError, match="labels"):
        det.fit(X, y + 1)
    with pytest.raises(ValueError, match="labels"):
        det.fit(X, y[:-1])
    with pytest.raises(ValueError, match="both classes"):
        det.fit(X[:4], np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="trainable_blocks"):
        FineTunedEfficientNet(trainable_blocks=99, progress=False).fit(X, y)
    with pytest.raises(ValueError, match="class_weight"):
        FineTunedEfficientNet(class_weight="auto", progress=False).fit(X, y)
    with pytest.raises(ValueError, match="num_threads"):
        FineTunedEfficientNet(num_threads=0, progress=False).fit(X, y)
    with pytest.raises(RuntimeError, match="not fitted"):
        det.predict_proba(X)


def test_trained_state_round_trips(fitted, real_pairs):
    _, _, X_dev, _ = real_pairs
    state = fitted.state_dict_trainable()
    assert not any(k.startswith(("_conv_stem", "_bn0")) for k in state)  # no frozen tensors
    assert sum(v.numel() for v in state.values()) < 1_500_000  # last block + head conv + BN + Linear(1280, 2)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    params = json.loads(json.dumps(fitted.get_params()))
    attrs = json.loads(json.dumps(fitted.fitted_attributes()))
    again = FineTunedEfficientNet.from_saved(params, loaded, attrs)
    np.testing.assert_allclose(again.predict_proba(X_dev), fitted.predict_proba(X_dev), atol=1e-6)
    assert again.best_epoch_ == fitted.best_epoch_ and again.history_ == fitted.history_
