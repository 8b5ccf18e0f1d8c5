"""The README's statements about the demo results, as checks that a rerun can confirm or refute.

Each :class:`Claim` is one sentence of the README's "Results" section (the statement, not its
digits) and a check on the tables of a run. ``make reproduce`` evaluates them on the freshly
written tables at its end (:func:`check_run`, ``tables/<run>/claims.csv``), and
``tests/test_demo_results.py`` on the committed ones, where every claim must hold.

A check compares numbers that carry the run-to-run drift of their table
(:func:`advlib.reproducibility.allowed_images`): a statement "A is larger than B" **holds** when
it does on the new tables, is **within tolerance** when it fails by less than the drift the two
numbers may show between CPUs (the data cannot decide it), and **fails** otherwise. Only a
failure contradicts the README.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import profiles
from .reproducibility import allowed_images
from .store import write_csv

HOLDS, WITHIN, FAILS = "holds", "within tolerance", "fails"

#: The profiles whose results the README quotes.
PROFILES = ("demo",)


class Tables:
    """The CSV and JSON tables of one run folder, read on first use, with the profile's drift."""

    def __init__(self, folder: str | Path, profile: str = "demo"):
        self.folder, self.profile = Path(folder), profile
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._cache:
            self._cache[name] = pd.read_csv(self.folder / f"{name}.csv")
        return self._cache[name]

    def json(self, name: str) -> dict:
        return json.loads((self.folder / f"{name}.json").read_text())

    def tol(self, table: str, n: float) -> float:
        """The points a percentage of ``n`` images of ``table`` may move between CPUs."""
        return 100.0 * allowed_images(self.profile, table)[0] / n

    def images(self, table: str) -> int:
        """The images a count of ``table`` may move between CPUs."""
        return allowed_images(self.profile, table)[0]

    def auc_tol(self, table: str) -> float:
        return allowed_images(self.profile, table)[1]


@dataclass(frozen=True)
class Claim:
    """``id``, the README ``section`` it is in, its ``text`` (as the README says it), and
    ``check(tables) -> (state, what was measured)``."""

    id: str
    section: str
    text: str
    check: Callable[[Tables], tuple[str, str]]


def above(a: float, b: float, tol: float) -> str:
    """``a > b``: holds, within tolerance (``a > b - tol``), or fails."""
    return HOLDS if a > b else (WITHIN if a > b - tol else FAILS)


def at_least(a: float, bound: float, tol: float) -> str:
    """``a >= bound``: holds, within tolerance, or fails."""
    return HOLDS if a >= bound else (WITHIN if a >= bound - tol else FAILS)


def all_of(*states: str) -> str:
    return FAILS if FAILS in states else (WITHIN if WITHIN in states else HOLDS)


def _kind_pct(t3: pd.DataFrame) -> pd.DataFrame:
    """Table 3 pooled per type (normal, adversarial) and operation: % misclassified and n."""
    t = t3.assign(type=np.where(t3.kind == "normal", "normal", "adversarial"))
    g = t.groupby(["type", "op"])[["misclassified", "n"]].sum()
    return g.assign(pct=100 * g.misclassified / g.n)


def _label_pct(t: Tables) -> pd.DataFrame:
    s = t["fig6_label_correction"].groupby(["op_set", "type"])[["correct", "n"]].sum()
    return s.assign(pct=100 * s.correct / s.n)


# --------------------------------------------------------------------------- the statements

def _t1_saving(t: Tables) -> tuple[str, str]:
    t1 = t["table1_attack_success"].set_index("attack")
    lost = int(t1.loc["deepfool", "success_raw"] - t1.loc["deepfool", "success_saved"])
    return at_least(lost, 3, 2 * t.images("table1_attack_success")), f"DeepFool loses {lost} images to saving"


def _t1_jsma(t: Tables) -> tuple[str, str]:
    t1 = t["table1_attack_success"].set_index("attack")
    others = t1.drop(index=["jsma", "adef"]).success_saved_pct
    gap = others.min() - t1.loc["jsma", "success_saved_pct"]
    tol = t.tol("table1_attack_success", t1.loc["jsma", "attacked"]) * 2
    return above(gap, 0, tol), f"JSMA {t1.loc['jsma', 'success_saved_pct']:.1f}%, the next lowest {others.min():.1f}%"


def _t1_adef(t: Tables) -> tuple[str, str]:
    t1 = t["table1_attack_success"].set_index("attack")
    pct = t1.loc["adef", "success_saved_pct"]
    return at_least(pct, 90, t.tol("table1_attack_success", t1.loc["adef", "attacked"])), f"ADef {pct:.1f}% (paper <= 0.4%)"


def _t1_linf(t: Tables) -> tuple[str, str]:
    t1 = t["table1_attack_success"].set_index("attack")
    jsma, others = t1.loc["jsma", "median_linf"], t1.drop(index="jsma").median_linf
    ok = HOLDS if jsma > 100 and others.max() <= 30 else FAILS
    return ok, f"JSMA median L-inf {jsma:g} levels, the others {others.min():g}-{others.max():g}"


def _t3_jpeg100(t: Tables) -> tuple[str, str]:
    g = _kind_pct(t["table3_operation_effects"])
    r = g.loc[("adversarial", "jpeg_100")]
    return at_least(r.pct, 85, t.tol("table3_operation_effects", r.n)), f"{r.pct:.1f}% still misclassified"


def _t3_restore(t: Tables) -> tuple[str, str]:
    g = _kind_pct(t["table3_operation_effects"]).loc["adversarial"]
    ops = ["jpeg_80", "jpeg_60", "jpeg_40"] + [o for o in g.index if o.startswith("scale_")]
    worst = g.loc[ops].pct.max()
    return at_least(50 - worst, 0, t.tol("table3_operation_effects", g.loc[ops].n.min())), \
        f"at most {worst:.1f}% still misclassified under JPEG 80-40 and scaling"


def _t3_blur(t: Tables) -> tuple[str, str]:
    g = _kind_pct(t["table3_operation_effects"])
    n, a = g.loc[("normal", "blur_3")], g.loc[("adversarial", "blur_3")]
    tol = t.tol("table3_operation_effects", n.n)
    return at_least(n.pct, a.pct / 2, tol), f"blur 3: {n.pct:.1f}% of normal, {a.pct:.1f}% of adversarial images"


def _t3_normal_moved(t: Tables) -> tuple[str, str]:
    g = _kind_pct(t["table3_operation_effects"])
    a, b = g.loc[("normal", "jpeg_40")], g.loc[("normal", "scale_1.25")]
    tol = t.tol("table3_operation_effects", a.n)
    return all_of(above(a.pct, 4.6, tol), above(b.pct, 2.9, tol)), \
        f"normal images misclassified: {a.pct:.1f}% at JPEG 40 (paper 4.6%), {b.pct:.1f}% at scale 1.25 (paper 2.9%)"


def _t4_below(t: Tables) -> tuple[str, str]:
    t4 = t["table4_detection_features"]
    gap = (t4.paper_accuracy_pct - t4.accuracy_pct).min()
    return above(gap, 0, t.tol("table4_detection_features", t4.n_images.min())), \
        f"{int((t4.accuracy_pct < t4.paper_accuracy_pct).sum())} of {len(t4)} cells below the paper's"


def _t5_unseen(t: Tables) -> tuple[str, str]:
    t5 = t["table5_detection_comparison"]
    by = t5.set_index(["scenario", "detector"])
    feats = [d for d in t5.detector.unique() if d.split(" - ")[0] in ("MLP", "SVM", "CNN")]
    states, worst = [], np.inf
    for d in feats:
        a, b = by.loc[("non-targeted -> targeted", d)], by.loc[("targeted -> non-targeted", d)]
        worst = min(worst, a.accuracy_pct - b.accuracy_pct)
        states.append(above(a.accuracy_pct, b.accuracy_pct,
                            t.tol("table5_detection_comparison", min(a.n_images, b.n_images)) * 2))
    return all_of(*states), f"non-targeted -> targeted minus the reverse: at least {worst:+.1f} points"


def _t5_squeezing(t: Tables) -> tuple[str, str]:
    t5 = t["table5_detection_comparison"]
    tol = t.auc_tol("table5_detection_comparison")
    nt = t5[t5.scenario == "non-targeted -> targeted"].set_index("detector").auc
    tn = t5[t5.scenario == "targeted -> non-targeted"].set_index("detector").auc
    fs_nt = nt[nt.index.str.startswith("Feature squeezing")].max()
    fs_tn = tn[tn.index.str.startswith("Feature squeezing")].min()
    best_other = nt[~nt.index.str.startswith("Feature squeezing")].max()
    worst_other = tn[~tn.index.str.startswith("Feature squeezing")].min()
    return all_of(above(fs_nt, best_other, 2 * tol), above(worst_other, fs_tn, 2 * tol)), \
        f"feature squeezing AUC {fs_nt:.3f} on targeted (best other {best_other:.3f}), {fs_tn:.3f} on non-targeted (worst other {worst_other:.3f})"


def _lc_most(t: Tables) -> tuple[str, str]:
    p = _label_pct(t)
    a, n = p.loc[("JPEG+scaling", "adversarial")], p.loc[("JPEG+scaling", "normal")]
    return all_of(at_least(a.pct, 50, t.tol("fig6_label_correction", a.n)),
                  at_least(10, 100 - n.pct, t.tol("fig6_label_correction", n.n))), \
        f"JPEG+scaling voting restores {a.pct:.1f}% of adversarial labels, harms {100 - n.pct:.1f}% of normal images"


def _lc_scaling(t: Tables) -> tuple[str, str]:
    p = _label_pct(t)
    sn, jn = p.loc[("scaling", "normal")], p.loc[("JPEG+scaling", "normal")]
    sa, ja = p.loc[("scaling", "adversarial")], p.loc[("JPEG+scaling", "adversarial")]
    tol_n, tol_a = t.tol("fig6_label_correction", sn.n), t.tol("fig6_label_correction", sa.n)
    return all_of(above(sn.pct, jn.pct, 2 * tol_n), above(ja.pct, sa.pct, 2 * tol_a)), \
        f"scaling alone: normal {sn.pct:.1f}% vs {jn.pct:.1f}%, adversarial {sa.pct:.1f}% vs {ja.pct:.1f}%"


def _t6_min_best(t: Tables) -> tuple[str, str]:
    t6 = t["table6_image_correction"]
    h = t6[t6.method.str.match(r"Heuristic - \w+$")].set_index("method")
    best = h.drop(index="Heuristic - min").adversarial_pct.max()
    m = h.loc["Heuristic - min"]
    return above(m.adversarial_pct, best, 2 * t.tol("table6_image_correction", m.n_adversarial)), \
        f"heuristic-min {m.adversarial_pct:.1f}%, the next best variant {best:.1f}%"


def _t6_qf50(t: Tables) -> tuple[str, str]:
    t6 = t["table6_image_correction"].set_index("method")
    q, m = t6.loc["QF 50"], t6.loc["Heuristic - min"]
    return above(q.adversarial_pct, m.adversarial_pct, 2 * t.tol("table6_image_correction", q.n_adversarial)), \
        f"QF 50 {q.adversarial_pct:.1f}%, heuristic-min {m.adversarial_pct:.1f}% of adversarial images"


def _t6_dae(t: Tables) -> tuple[str, str]:
    d = t["table6_image_correction"].set_index("method").loc["Denoising autoencoder"]
    worst = max(d.adversarial_pct, d.normal_pct)
    return at_least(20 - worst, 0, t.tol("table6_image_correction", d.n_normal)), \
        f"DAE: {d.adversarial_pct:.1f}% adversarial, {d.normal_pct:.1f}% normal correctly classified"


def _fig8(t: Tables) -> tuple[str, str]:
    q = t["fig8_corrected_quality"].groupby("method")[["psnr", "ssim"]].mean()
    a, b = q.loc["QF 90", "psnr"], q.loc["Heuristic - min", "psnr"]
    return above(a, b, 0.2), f"PSNR: QF 90 {a:.1f} dB, heuristic-min {b:.1f} dB"


def _pipeline(t: Tables) -> tuple[str, str]:
    p = t["correction_pipeline"].set_index("pipeline")
    a = p.loc["detector + label correction", "adversarial_pct"]
    b = p.loc["label correction on every image", "adversarial_pct"]
    return above(b, a, 2 * t.tol("fig6_label_correction", p.n_adversarial.iloc[0])), \
        f"detector + label correction recovers {a:.1f}%, voting on every image {b:.1f}%"


#: The README's statements, in its order.
CLAIMS: list[Claim] = [
    Claim("t1_saving", "Where the demo agrees with the paper", "Saving matters: minimum-norm attacks lose images to "
          "8-bit rounding and JPEG-100 (DeepFool loses several)", _t1_saving),
    Claim("t1_jsma_weakest", "Where the demo agrees with the paper", "JSMA is the weakest of the attacks the paper also "
          "ran with success", _t1_jsma),
    Claim("t1_linf", "Table 1", "JSMA changes few pixels by a lot, the others spread small changes", _t1_linf),
    Claim("t3_jpeg100", "Where the demo agrees with the paper", "JPEG at quality 100 barely changes the adversarial "
          "images", _t3_jpeg100),
    Claim("t3_restore", "Where the demo agrees with the paper", "lower qualities and scaling restore many of them", _t3_restore),
    Claim("t3_blur", "Where the demo agrees with the paper", "Gaussian blur hurts normal images almost as much as "
          "adversarial ones", _t3_blur),
    Claim("t5_unseen", "Where the demo agrees with the paper", "training on non-targeted attacks generalises to "
          "targeted ones better than the reverse, for every feature detector", _t5_unseen),
    Claim("lc_most", "Where the demo agrees with the paper", "voting over JPEG+scaling restores most adversarial labels "
          "and harms few normal ones", _lc_most),
    Claim("t6_min_best", "Where the demo agrees with the paper", "heuristic-min is the best of the four heuristic "
          "variants on adversarial images", _t6_min_best),
    Claim("t1_adef", "Where it does not", "ADef succeeds here (on almost every image), on 0.1-0.4% in the paper", _t1_adef),
    Claim("t3_normal_moved", "Where it does not", "the operations move normal images more than in the paper",
          _t3_normal_moved),
    Claim("t4_below", "Where it does not", "detection is weaker: every cell of Table 4 is below the paper's", _t4_below),
    Claim("t5_squeezing", "Where it does not", "feature squeezing has the best AUC on targeted attacks and the worst "
          "on non-targeted ones", _t5_squeezing),
    Claim("t6_qf50", "Where it does not", "a fixed QF (50) corrects more adversarial images than heuristic-min", _t6_qf50),
    Claim("fig8", "Where it does not", "image quality: QF 90 is above heuristic-min in PSNR", _fig8),
    Claim("lc_scaling", "Where it does not", "label correction by scaling alone harms fewer normal images than "
          "JPEG+scaling but restores fewer adversarial ones", _lc_scaling),
    Claim("t6_dae", "Where it does not", "the denoising autoencoder is useless here", _t6_dae),
    Claim("pipeline", "Where it does not", "detect-then-correct recovers fewer adversarial images than voting on every "
          "image", _pipeline),
]


def evaluate(folder: str | Path, profile: str = "demo") -> pd.DataFrame:
    """Every claim on the tables in ``folder``: id, section, text, state (holds / within
    tolerance / fails / error: a table it needs is missing), measured."""
    t = Tables(folder, profile)
    rows = []
    for c in CLAIMS:
        try:
            state, measured = c.check(t)
        except (OSError, KeyError, IndexError, ValueError) as e:
            state, measured = "error", f"{type(e).__name__}: {e}"
        rows.append({"id": c.id, "section": c.section, "text": c.text, "state": state, "measured": measured})
    return pd.DataFrame(rows)


def check_run(params: dict[str, Any]) -> tuple[list[str], bool]:
    """Evaluate the claims on a run's tables (profiles of :data:`PROFILES` only: the README
    quotes the demo) and write ``tables/<run>/claims.csv``. Returns (summary lines, whether none
    fails)."""
    if params["profile"] not in PROFILES:
        return [f"README statements: they are about the {', '.join(PROFILES)} profile, not checked on "
                f"{params['profile']}"], True

    folder = profiles.out_dirs(params)["tables"]
    df = evaluate(folder, params["profile"])
    write_csv(df, folder / "claims.csv")
    counts = df.state.value_counts()
    line = (f"README statements: {counts.get(HOLDS, 0)} of {len(df)} hold on the new tables, "
            f"{counts.get(WITHIN, 0)} within tolerance (undecided), {counts.get(FAILS, 0)} fail"
            + (f", {counts.get('error', 0)} not checked (a table is missing)" if counts.get("error") else ""))
    lines = [line] + [f"  {r.state}: {r.text} ({r.measured})" for r in df.itertuples() if r.state != HOLDS]
    return lines, not (df.state == FAILS).any()
