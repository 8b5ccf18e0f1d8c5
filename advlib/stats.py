"""Small-sample statistics for the claims the tables support: exact binomial intervals, paired
tests, and the paired cluster bootstrap over source photos.

- :func:`clopper_pearson`: the exact 95% interval of k successes in n trials (an attack that
  defeats a defence on 7 of 8 images: [47, 99.7]%).
- :func:`mcnemar`: the exact McNemar test of two methods judged on the same images (only the
  images where they disagree carry information).
- :func:`paired_bootstrap`: a difference of two statistics computed on the same images,
  resampling whole source photos (crops of one photo, and an image with its adversarial
  versions, are correlated), with its interval and a two-sided p-value.

Readings are fixed before the results: a difference is called significant when p < 0.05, and
a claim is worded by that result ("more than" only when significant, else "about the same").
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats as _stats

ALPHA = 0.05


def clopper_pearson(k: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The exact (Clopper-Pearson) ``1 - alpha`` interval of a proportion ``k / n``, as fractions
    in [0, 1]; (nan, nan) for ``n == 0``."""
    k, n = int(k), int(n)
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in 0..n, got k={k}, n={n}")
    lo = 0.0 if k == 0 else float(_stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(_stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def mcnemar(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """The exact McNemar test of two methods on the same images: ``a``, ``b`` bool (N,), whether
    each method got image i right. Returns ``n``, ``a_only`` (a right, b wrong), ``b_only``, the
    rates of both, and ``p`` (two-sided exact binomial test of ``a_only`` against
    ``a_only + b_only`` trials at 1/2; 1.0 when they never disagree)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be bool arrays of one shape (N,), got {a.shape} and {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if a_only + b_only == 0 else float(_stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return {"n": int(len(a)), "a_rate": float(a.mean()) if len(a) else np.nan,
            "b_rate": float(b.mean()) if len(b) else np.nan, "a_only": a_only, "b_only": b_only, "p": p}


def paired_bootstrap(statistic: Callable[[np.ndarray], float], groups: np.ndarray, *, n_boot: int = 2000,
                     seed: int = 0, alpha: float = ALPHA) -> dict[str, float]:
    """A statistic of the same images (``statistic(rows) -> float``, e.g. the difference between
    two detectors' detection rates on the images ``rows``), its ``1 - alpha`` interval and a
    two-sided p-value of "it is 0", resampling the source photos ``groups`` (N,) with
    replacement (every image of a drawn photo enters, once per draw). ``estimate`` is the
    statistic on every image; ``p`` is twice the smaller share of resamples on either side of 0
    (at least 1 / n_boot)."""
    groups = np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    estimate = float(statistic(np.arange(len(groups))))
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        v = statistic(np.concatenate([members[g] for g in pick]))
        if v == v:
            values.append(v)
    values = np.asarray(values)
    if not len(values):
        return {"estimate": estimate, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "n_boot": 0}
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, max(2 * min((values <= 0).mean(), (values >= 0).mean()), 1.0 / len(values)))
    return {"estimate": estimate, "ci_low": float(lo), "ci_high": float(hi), "p": float(p), "n_boot": int(len(values))}


def reading(p: float, larger: str, smaller: str, alpha: float = ALPHA) -> str:
    """The wording a paired test allows: ``"<larger> > <smaller> (p = ...)"`` when significant,
    else ``"<larger> and <smaller> about the same (p = ...)"``."""
    if p != p:
        return f"{larger} vs {smaller}: not testable"
    if p < alpha:
        return f"{larger} > {smaller} (p = {p:.3g})"
    return f"{larger} and {smaller} about the same (p = {p:.2g}, not significant)"
