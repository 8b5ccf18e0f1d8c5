"""The traditional classifiers of Sect. 4.3 on the counting / differences features, with
scikit-learn 0.21.3's defaults as the paper (no scaler in front, as the authors' code)."""

from __future__ import annotations

from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

# --------------------------------------------------------------------------- traditional classifiers

def svm(**params) -> SVC:
    """``SVC(gamma="auto", probability=True)`` as the paper (scikit-learn 0.21 otherwise)."""
    return SVC(gamma="auto", probability=True, random_state=0).set_params(**params)


def random_forest(**params) -> RandomForestClassifier:
    """``RandomForestClassifier(n_estimators=100, max_depth=2)`` as the paper."""
    return RandomForestClassifier(n_estimators=100, max_depth=2, random_state=0).set_params(**params)


def lda(**params) -> LinearDiscriminantAnalysis:
    """``LinearDiscriminantAnalysis()`` with scikit-learn defaults, as the paper."""
    return LinearDiscriminantAnalysis().set_params(**params)


def mlp(**params) -> MLPClassifier:
    """``MLPClassifier()`` with scikit-learn defaults (one hidden layer of 100, adam, alpha 1e-4).

    ``max_iter`` is raised from 200 to 2000 so that training converges rather than stopping
    with a warning; the stopping rule (``tol`` over ``n_iter_no_change`` epochs) is unchanged.
    """
    return MLPClassifier(max_iter=2000, random_state=0).set_params(**params)
