"""Top-5 under operations (real efficientnet_lite0, real photos), features, cache and resume."""

import numpy as np
import pytest
import torch

from advlib import features, ops
from advlib.corpora import demo_items, read_images
from advlib.models import predict_topk

PAPER_L = [100, 105, 198, 213, 479]
PAPER_LI = [[100, 97, 198, 220, 221], [101, 80, 201, 119, 212], [100, 89, 213, 117, 304]]


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    images, _, failures = read_images(demo_items(1)[2:5])
    assert not failures
    return images


@pytest.fixture(scope="module")
def top5_all(classifier, photos) -> torch.Tensor:
    return features.top5_under_ops(classifier, photos[:2], batch_size=16, progress=False)


class ForwardCounter:
    """Counts the classifier's forward calls; optionally raises at call ``fail_at`` (an interruption)."""

    def __init__(self, model, fail_at=None):
        self.calls, self.fail_at = 0, fail_at
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")

    def remove(self):
        self.handle.remove()


@pytest.mark.numerics
def test_top5_matches_one_op_at_a_time(classifier, photos, top5_all):
    assert top5_all.shape == (2, 39, 5) and top5_all.dtype == torch.long
    assert torch.equal(top5_all[:, 0], predict_topk(classifier, photos[:2]))
    names = list(ops.OPERATIONS)
    for name in ["jpeg_100", "jpeg_25", "blur_5", "rotate_8", "scale_0.75", "scale_1.25"]:
        expected = predict_topk(classifier, ops.apply(name, photos[:2]))
        assert torch.equal(top5_all[:, 1 + names.index(name)], expected), name
    # JPEG quality 100 barely changes the pixels: the top-1 stays
    assert (top5_all[:, 1 + names.index("jpeg_100"), 0] == top5_all[:, 0, 0]).all()


@pytest.mark.slow
@pytest.mark.numerics
def test_chunks_reuse_buffers_same_labels(classifier, photos):
    # 3 images in chunks of 2: one full chunk (buffers reused) and a partial one (own buffers)
    chunked = features.top5_under_ops(classifier, photos, batch_size=2, progress=False)
    # the GPU schedule (next chunk's JPEG computed in a thread during the forward passes), on the CPU
    assert torch.equal(chunked, features.top5_under_ops(classifier, photos, batch_size=2, progress=False,
                                                        overlap=True, workers=2))
    assert torch.equal(chunked[:2], features.top5_under_ops(classifier, photos[:2], batch_size=16,
                                                               progress=False))
    assert torch.equal(chunked[2:], features.top5_under_ops(classifier, photos[2:], batch_size=16, progress=False))


def test_paper_examples():
    count = features.counting(np.array([PAPER_L]), np.array([PAPER_LI]))
    assert count.tolist() == [[2, 0, 1, 0, 0]]
    diff = features.differences(torch.tensor([PAPER_L]), torch.tensor([PAPER_LI]))
    assert diff.tolist() == [[0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1]]


def test_feature_sizes_per_group(top5_all):
    expected = {"jpeg": (5, 80), "scaling": (5, 50), "blur": (5, 20), "rotation": (5, 40),
                "jpeg+scaling": (10, 130), "all": (20, 190)}
    for group, (n_count, n_diff) in expected.items():
        assert features.feature_matrix(top5_all, "count", group).shape == (2, n_count)
        assert features.feature_matrix(top5_all.numpy(), "diff", group).shape == (2, n_diff)
    count = features.feature_matrix(top5_all, "count", "all")
    # per base group, in the paper's order: jpeg (16 ops), blur (4), rotation (8), scaling (10)
    assert count[:, 0].max() <= 16 and count[:, 5].max() <= 4 and count[:, 10].max() <= 8
    assert np.array_equal(count[:, 15:], features.feature_matrix(top5_all, "count", "scaling"))
    diff = features.feature_matrix(top5_all, "diff", "all")
    assert set(np.unique(diff)) <= {0, 1}
    assert np.array_equal(diff[:, :5], (top5_all[:, 1] != top5_all[:, 0]).numpy().astype(int))
    with pytest.raises(ValueError, match="kind"):
        features.feature_matrix(top5_all, "counts", "all")
    with pytest.raises(KeyError, match="jpeg\\+scaling"):
        features.feature_matrix(top5_all, "count", "colour")


def test_cache_hit_computes_nothing(classifier, photos, tmp_path):
    subset = ["jpeg_50", "blur_3", "scale_0.80"]
    counter = ForwardCounter(classifier)
    try:
        first = features.top5_under_ops(classifier, photos, subset, batch_size=8, cache_dir=tmp_path, progress=False)
        assert counter.calls > 0
        counter.calls = 0
        second = features.top5_under_ops(classifier, photos, subset, batch_size=8, cache_dir=tmp_path,
                                         classifier="efficientnet_lite0", progress=False)
        assert counter.calls == 0
    finally:
        counter.remove()
    assert torch.equal(first, second)
    # another operation list is another cache entry
    third = features.top5_under_ops(classifier, photos[:1], ["jpeg_50"], cache_dir=tmp_path, progress=False)
    assert torch.equal(third[:, 1], first[:1, 1])


def test_interrupted_run_resumes(classifier, photos, tmp_path):
    subset = ["jpeg_50", "scale_0.80"]
    # batch_size 1: a chunk is one image = 3 forward calls (original, jpeg, scaled)
    reference = features.top5_under_ops(classifier, photos, subset, batch_size=1, progress=False)
    counter = ForwardCounter(classifier, fail_at=4)
    try:
        with pytest.raises(KeyboardInterrupt):
            features.top5_under_ops(classifier, photos, subset, batch_size=1, cache_dir=tmp_path, progress=False)
    finally:
        counter.remove()
    assert len(list(tmp_path.rglob("chunk-*.pt"))) == 1
    counter = ForwardCounter(classifier)
    try:
        resumed = features.top5_under_ops(classifier, photos, subset, batch_size=1, cache_dir=tmp_path, progress=False)
    finally:
        counter.remove()
    assert counter.calls == 6  # only the two missing images
    assert torch.equal(resumed, reference)


def test_bad_inputs(classifier, photos, tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        features.top5_under_ops(classifier, photos.float(), progress=False)
    with pytest.raises(KeyError, match="jpeg_100"):
        features.top5_under_ops(classifier, photos, ["jpeg_7"], progress=False)
    with pytest.raises(ValueError, match="classifier"):
        features.top5_under_ops(torch.nn.Identity(), photos, ["jpeg_50"], cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="after has"):
        features.counting(np.zeros((2, 5), int), np.zeros((3, 4, 5), int))
    with pytest.raises(ValueError, match="ref must be an integer array with 2 dims with last dim 5"):
        features.counting(np.zeros((2, 5)), np.zeros((2, 4, 5), int))


def test_stats_of_the_same_passes(classifier, photos, tmp_path):
    """prob / shift come from the forward passes that give the top-5: checked against the
    classifier run on each operation's output directly; cached chunks without stats are
    recomputed once when stats are asked for, then served from the cache."""
    subset = ["jpeg_50", "scale_0.80", "rotate_5"]
    counter = ForwardCounter(classifier)
    try:
        plain = features.top5_under_ops(classifier, photos, subset, batch_size=2, cache_dir=tmp_path, progress=False)
        counter.calls = 0
        top5, stats = features.outputs_under_ops(classifier, photos, subset, batch_size=2, cache_dir=tmp_path,
                                                 progress=False, stats=True)
        assert counter.calls > 0  # the old chunks had no stats
        counter.calls = 0
        again, stats2 = features.outputs_under_ops(classifier, photos, subset, batch_size=2, cache_dir=tmp_path,
                                                   progress=False, stats=True)
        assert counter.calls == 0 and torch.equal(stats, stats2)
    finally:
        counter.remove()
    assert torch.equal(top5, plain) and torch.equal(again, plain)
    assert stats.shape == (len(photos), 3, 2) and stats.dtype == torch.float32
    with torch.no_grad():
        ref = classifier(photos.float() / 255).softmax(1)
        for j, name in enumerate(subset):
            after = classifier(ops.apply(name, photos).float() / 255).softmax(1)
            own = after[torch.arange(len(photos)), top5[:, 0, 0]]
            assert torch.allclose(stats[:, j, 0], own, atol=1e-5)
            assert torch.allclose(stats[:, j, 1], (after - ref).abs().sum(1), atol=1e-4)
    # the features of operation subsets
    X = features.subset_features(top5, stats, "prob+shift", [2, 0])
    assert X.shape == (len(photos), 4) and np.allclose(X[:, 0], stats[:, 2, 0].numpy())
    assert features.subset_features(top5, None, "diff", [1]).shape == (len(photos), 5)
    assert np.array_equal(features.subset_features(top5, None, "count", [0, 1, 2]),
                          features.counting(top5[:, 0], top5[:, 1:]))
    with pytest.raises(ValueError, match="stats"):
        features.subset_features(top5, None, "prob", [0])
    with pytest.raises(ValueError, match="kind"):
        features.continuous(stats, "probability")
