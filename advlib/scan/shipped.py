"""What the shipped detectors' metadata states, in words (``advlib scan --help``; no torch)."""

from __future__ import annotations

from typing import Any


def _number(where: Any, key: str) -> float | None:
    """``where[key]`` as a float when ``where`` is a mapping holding a number there, else None."""
    v = where.get(key) if isinstance(where, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def describe_shipped(name: str, meta: dict[str, Any]) -> str:
    """One paragraph on a shipped detector: operations, feature, estimator, threshold, and the
    out-of-fold false-positive and detection rates its metadata states (tolerant: what is
    missing is left out, or said to be missing)."""
    ops = meta.get("ops") if isinstance(meta.get("ops"), list) else None
    parts = [f"{name}: {meta.get('feature', '?')} features"]
    passes = meta.get("passes", 1 + len(ops) if ops is not None else None)
    if ops is not None:
        parts[0] += f" of {len(ops)} operation(s)"
    if isinstance(passes, int):
        parts[0] += f" ({passes} classifier passes per image)"
    if meta.get("estimator"):
        parts.append(f"estimator {meta['estimator']}")
    thr = meta.get("threshold")
    target = _number(meta, "target_fpr") or _number(meta, "calibrated_fpr_target")
    if isinstance(thr, (int, float)):
        parts.append(f"threshold {thr:.3g}" + (f" (calibrated to {target:.0%} false positives)" if target else ""))
    text = ", ".join(parts) + "."
    oof = meta.get("oof") if isinstance(meta.get("oof"), dict) else {}
    # the rates at the shipped (calibrated) threshold, as advlib.experiments.final_feature_detector writes them
    fpr, rate = _number(oof, "fpr_calibrated"), _number(oof, "detection_rate_calibrated")
    if fpr is None and rate is None:
        return text + " Its metadata states no out-of-fold rates."
    how = ", ".join(str(v) for v in (meta.get("protocol"),
                                     f"{oof['n_images']} images" if "n_images" in oof else None,
                                     f"{oof['n_photos']} photos" if "n_photos" in oof else None) if v)
    rates = [f"false-positive rate {fpr:.1%} on normal photos" if fpr is not None else None,
             f"detection rate {rate:.1%} on adversarial images" if rate is not None else None]
    at5 = _number(oof, "tpr_at_5fpr")
    extra = f" (detection rate {at5:.1%} at 5% false positives on the pooled out-of-fold scores)" if at5 is not None else ""
    return text + f" Out of fold{' (' + how + ')' if how else ''}: " + ", ".join(r for r in rates if r) + extra + \
        ". Expect about these rates on photos like its training photos."
