"""Issue 24, item 5: the classifier's output is checked in one place (:func:`advlib.models.check_logits`)
wherever the library classifies: ``predict_top5``/``predict_topk``, ``top1_probability`` and the
Detector's feature passes. The broken classifiers here are the real efficientnet-lite0 behind an
interface that returns the wrong thing (a tuple, numpy, the first 10 logits, NaN, one number)."""

import numpy as np
import pytest
from torch import nn

import advlib
from advlib import models

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Broken(nn.Module):
    """The real classifier, its output passed through ``change``."""

    def __init__(self, classifier, change, name):
        super().__init__()
        self.inner, self.change, self.name = classifier, change, name

    def forward(self, x):
        return self.change(self.inner(x))


def _nan_first(out):
    out = out.clone()
    out[0, 3] = float("nan")
    return out


BROKEN = {
    "tuple": (lambda out: (out, out), "returned a tuple"),
    "numpy": (lambda out: out.numpy(), "returned a ndarray"),
    "ten_classes": (lambda out: out[:, :10], "shape (2, 10)"),
    "one_number": (lambda out: out[:, 0], "shape (2,)"),
    "nan": (_nan_first, "NaN or infinite logits for 1 of 2 image(s)"),
    "integer": (lambda out: out.long(), "int64"),
}


@pytest.fixture(scope="module")
def two_images(imagenet_samples):
    return imagenet_samples[0][:2]


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_predict_top5_names_the_classifier_and_what_is_wrong(classifier, two_images, kind):
    change, message = BROKEN[kind]
    clf = Broken(classifier, change, f"broken_{kind}")
    with pytest.raises(ValueError, match=f"broken_{kind}") as e:
        advlib.predict_top5(clf, two_images)
    assert message in str(e.value)
    with pytest.raises(ValueError, match=f"broken_{kind}"):
        models.top1_probability(clf, two_images)


@pytest.mark.parametrize("kind", ["ten_classes", "nan", "tuple"])
def test_detector_feature_passes_check_the_output(classifier, two_images, kind):
    change, message = BROKEN[kind]
    det = advlib.Detector(Broken(classifier, change, f"broken_{kind}"), feature="prob", ops=["jpeg_90"],
                          estimator="svm", batch_size=2)
    with pytest.raises(ValueError, match=f"broken_{kind}") as e:
        det.fit(two_images, [False, True])
    assert message in str(e.value)


def test_a_classifier_without_parameters_runs_on_the_cpu_and_a_non_module_is_named(classifier, two_images):
    class NoParameters(nn.Module):
        def __init__(self):
            super().__init__()
            object.__setattr__(self, "f", classifier)  # not registered: no parameters, no buffers

        def forward(self, x):
            return self.f(x)

    clf = NoParameters()
    assert not list(clf.parameters()) and not list(clf.buffers())
    np.testing.assert_array_equal(advlib.predict_top5(clf, two_images), advlib.predict_top5(classifier, two_images))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        advlib.predict_top5(lambda x: classifier(x), two_images)


def test_detector_on_an_empty_batch_returns_empty_arrays(classifier, imagenet_samples):
    x = imagenet_samples[0][:4]
    det = advlib.Detector(classifier, feature="prob", ops=["jpeg_90"], estimator="svm", batch_size=4)
    det.fit(x, [False, True, False, True])
    scores, flags = det.score(x[:0]), det.detect(x[:0])
    assert scores.shape == flags.shape == (0,) and scores.dtype == np.float64 and flags.dtype == bool
    s, top5 = det.score_top5(x[:0])
    assert s.shape == (0,) and top5.shape == (0, 5)
    assert det.score([]).shape == (0,)  # no paths: the same
    assert advlib.predict_top5(classifier, x[:0]).shape == (0, 5)
