"""Notebook 05's reading of the attacked images' rows (fixed before the results: see
:mod:`advlib.experiments.adaptive_sweep`): defeat rates with Clopper-Pearson intervals, the
breaking budget by the lower bound, the gradient-masking checks, the convergence table and
curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...stats import clopper_pearson
from .sweep import ATTACKS, CORRECTIONS, DEFENCE_NAMES, DEFENCES, DETECTORS

#: The share of attacked images an adaptive attack must defeat (by its interval's lower bound)
#: for a defence to count as broken.
BREAK_LEVEL = 50.0


def loss_history(rows: pd.DataFrame, folder: Path) -> np.ndarray | None:
    """The loss histories (steps + 1, n) saved beside the shards of ``rows``' images (None if any
    is missing), in ``rows``' order of shards."""
    parts = []
    for path in dict.fromkeys(rows["shard"]):
        npy = (Path(folder) / path).with_suffix(".npy")
        if not npy.exists():
            return None
        parts.append(np.load(npy))
    return np.concatenate(parts, axis=1) if parts else None


def _rate(k: int, n: int) -> tuple[float, float, float]:
    lo, hi = clopper_pearson(k, n)
    return (100 * k / n if n else np.nan), 100 * lo, 100 * hi


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (attack, budget, strength): success after saving and, per defence
    (:data:`DEFENCES`), the share of attacked images it lets through (``defeats_*_pct`` with
    Clopper-Pearson 95% bounds ``defeats_*_ci_low`` / ``_ci_high`` and the count
    ``defeats_*_n``); detectors' flag rates (of all images: false positives for ``none``) and
    detection rates among the successful adversarials; corrections' accuracy; median
    perturbation; ``n_images`` (of distinct photos, so ``n_photos`` equals it) and what differs
    from the baseline. The attacks' wall times stay in ``rows`` (``seconds_per_image``): a
    recomputed table is the same file on any machine."""
    out = []
    for (name, eps, steps, restarts), g in rows.groupby(["attack", "eps_levels", "steps", "restarts"], sort=False):
        s = g["success_saved"].astype(bool).to_numpy()
        n = len(g)
        spec = ATTACKS.get(name)
        r = {"attack": name, "adaptive": bool(g["adaptive"].iloc[0]), "kind": g["kind"].iloc[0],
             "target": ", ".join(spec.target) if spec else "-", "eps_levels": eps, "steps": steps,
             "restarts": restarts, "n_images": n, "n_photos": int(g["image_id"].nunique()),
             "n_folds": int(g["fold"].nunique())}
        r["success_saved_pct"], r["success_saved_ci_low"], r["success_saved_ci_high"] = _rate(int(s.sum()), n)
        r["median_linf"], r["median_l2"] = float(g["linf"].median()), float(g["l2"].median())
        for col in DEFENCES:
            ok = g[col].astype(bool).to_numpy()
            if col in DETECTORS:
                r[f"{col}_flagged_pct"] = 100 * ok.mean()
                r[f"{col}_detects_pct"] = 100 * ok[s].mean() if s.any() else np.nan
                defeated = s & ~ok
            elif col in CORRECTIONS:
                r[f"{col}_accuracy_pct"] = 100 * ok.mean()
                defeated = s & ~ok
            else:  # a pipeline: its final answer is wrong
                r[f"{col}_accuracy_pct"] = 100 * ok.mean()
                defeated = ~ok
            k = int(defeated.sum())
            r[f"defeats_{col}_n"] = k
            r[f"defeats_{col}_pct"], r[f"defeats_{col}_ci_low"], r[f"defeats_{col}_ci_high"] = _rate(k, n)
        r["differs_from_pgd"] = spec.differs if spec else "- (no attack)"
        out.append(r)
    return pd.DataFrame(out)


def breaking_budget(table: pd.DataFrame, defence: str, attacks: list[str], level: float = BREAK_LEVEL) -> dict | None:
    """The smallest budget (8-bit levels) at which one of ``attacks`` defeats ``defence`` with the
    lower bound of its 95% interval at ``level`` % or more; the row's attack, count and interval
    (None if no budget does)."""
    col = f"defeats_{defence}"
    hit = table[table["attack"].isin(attacks) & (table[f"{col}_ci_low"] >= level)]
    if not len(hit):
        return None
    r = hit.sort_values(["eps_levels", f"{col}_ci_low"], ascending=[True, False]).iloc[0]
    return {"eps": float(r.eps_levels), "attack": r.attack, "k": int(r[f"{col}_n"]), "n": int(r.n_images),
            "pct": float(r[f"{col}_pct"]), "low": float(r[f"{col}_ci_low"]), "high": float(r[f"{col}_ci_high"])}


def breaking_table(table: pd.DataFrame, level: float = BREAK_LEVEL, baseline: str = "pgd") -> pd.DataFrame:
    """Per defence (:data:`DEFENCES`): where an adaptive attack breaks it (:func:`breaking_budget`
    over the adaptive attacks of ``table``), where the non-adaptive ``baseline`` does, and, at
    the smallest budget tried, the strongest adaptive attack with its interval. ``not shown``:
    no budget's interval clears ``level``."""
    adaptive_names = sorted(set(table.loc[table["adaptive"].astype(bool), "attack"]))
    fmt = lambda b: "not shown" if b is None else f"{b['eps']:g}/255"
    lines = []
    smallest = table[table.attack != "none"].eps_levels.min()
    for defence in DEFENCES:
        a, b = breaking_budget(table, defence, adaptive_names, level), breaking_budget(table, defence, [baseline], level)
        at = table[table.attack.isin(adaptive_names) & (table.eps_levels == smallest)]
        best = at.sort_values(f"defeats_{defence}_ci_low").iloc[-1] if len(at) else None
        lines.append({"defence": defence, "what": DEFENCE_NAMES[defence], "level_pct": level,
                      "breaks_adaptive": fmt(a), "by": a["attack"] if a else "",
                      "defeated": f"{a['k']}/{a['n']}" if a else "",
                      "ci_low": round(a["low"], 1) if a else np.nan, "ci_high": round(a["high"], 1) if a else np.nan,
                      "breaks_non_adaptive": fmt(b),
                      "non_adaptive_defeated": f"{b['k']}/{b['n']}" if b else "",
                      "at_smallest_eps": f"{smallest:g}/255",
                      "strongest_at_smallest": best.attack if best is not None else "",
                      "strongest_defeated": (f"{int(best[f'defeats_{defence}_n'])}/{int(best.n_images)}"
                                             if best is not None else ""),
                      "strongest_ci": (f"[{best[f'defeats_{defence}_ci_low']:.1f}, "
                                       f"{best[f'defeats_{defence}_ci_high']:.1f}]" if best is not None else "")})
    return pd.DataFrame(lines)


#: Columns of :func:`masking_checks`.
MASKING_COLUMNS = ["defence", "eps_levels", "check", "gradient_attack", "gradient_pct", "gradient_ci_low",
                   "gradient_ci_high", "other_attack", "other_pct", "other_ci_low", "other_ci_high", "higher_rate",
                   "beats_gradient", "n_images"]


def masking_checks(table: pd.DataFrame) -> pd.DataFrame:
    """The gradient-masking checks: per defence and budget, the best gradient attack against the
    best gradient-free and the best transfer attack (defeat rates with intervals), and whether
    either beats the gradient attack (its interval's lower bound above the gradient attack's
    upper bound: ``beats_gradient``) or merely exceeds its rate (``higher_rate``)."""
    lines = []
    t = table[table.attack != "none"]
    for defence in DEFENCES:
        col = f"defeats_{defence}"
        for eps, g in t.groupby("eps_levels"):
            grad = g[(g.kind == "gradient") & g.adaptive.astype(bool)]
            if not len(grad):
                continue
            best = grad.sort_values(f"{col}_pct").iloc[-1]
            for kind in ("gradient-free", "transfer"):
                other = g[g.kind == kind]
                if not len(other):
                    continue
                o = other.sort_values(f"{col}_pct").iloc[-1]
                lines.append({"defence": defence, "eps_levels": eps, "check": kind, "gradient_attack": best.attack,
                              "gradient_pct": best[f"{col}_pct"], "gradient_ci_low": best[f"{col}_ci_low"],
                              "gradient_ci_high": best[f"{col}_ci_high"], "other_attack": o.attack,
                              "other_pct": o[f"{col}_pct"], "other_ci_low": o[f"{col}_ci_low"],
                              "other_ci_high": o[f"{col}_ci_high"],
                              "higher_rate": bool(o[f"{col}_pct"] > best[f"{col}_pct"]),
                              "beats_gradient": bool(o[f"{col}_ci_low"] > best[f"{col}_ci_high"]),
                              "n_images": int(o.n_images)})
    return pd.DataFrame(lines, columns=MASKING_COLUMNS)  # the columns also when no check ran


#: The attack whose success each convergence run is judged by: its target defence column
#: (``success``: fooled the classifier after saving).
CONVERGENCE_TARGET = {"pgd": "success", "high_confidence": "label_correction", "eot_correction": "label_correction",
                      "detector_cheap": "cheap_detector", "squeezing": "feature_squeezing",
                      "pipeline": "pipeline_cheap", "detector_paper": "paper_detector"}


def convergence_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (attack, budget, steps, restarts) of :func:`convergence`: the rate at which the
    attack defeats its target (:data:`CONVERGENCE_TARGET`) with its interval, and success after
    saving."""
    out = []
    for (name, eps, steps, restarts), g in rows.groupby(["attack", "eps_levels", "steps", "restarts"], sort=False):
        s = g["success_saved"].astype(bool).to_numpy()
        target = CONVERGENCE_TARGET.get(name, "success")
        if target == "success":
            defeated = s
        elif target.startswith("pipeline"):
            defeated = ~g[target].astype(bool).to_numpy()
        else:
            defeated = s & ~g[target].astype(bool).to_numpy()
        pct, lo, hi = _rate(int(defeated.sum()), len(g))
        out.append({"attack": name, "eps_levels": eps, "steps": steps, "restarts": restarts, "target": target,
                    "n_images": len(g), "defeated": int(defeated.sum()), "defeated_pct": pct, "ci_low": lo,
                    "ci_high": hi, "success_saved_pct": 100 * s.mean()})
    return pd.DataFrame(out)


def convergence_curves(rows: pd.DataFrame, folder: Path) -> dict[tuple[str, float], np.ndarray]:
    """The loss histories (steps + 1, n) of the longest single-start run of each (attack, budget)."""
    out = {}
    single = rows[rows.restarts == 1]
    for (name, eps), g in single.groupby(["attack", "eps_levels"], sort=False):
        longest = g[g.steps == g.steps.max()]
        h = loss_history(longest, folder)
        if h is not None:
            out[(name, float(eps))] = h
    return out
