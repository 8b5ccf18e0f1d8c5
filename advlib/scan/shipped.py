"""The detectors shipped inside advlib and what their metadata states: read as JSON, without torch,
so that ``advlib scan --help`` stays fast; :func:`ship_detector` puts a saved detector there.

Layout (:data:`PRETRAINED_DIR`, ``advlib/pretrained/``): ``<classifier>/`` the default detector of
a classifier (the cheap one notebook 03 writes, :meth:`advlib.Detector.pretrained`),
``<classifier>.paper/`` its all-38 paper detector (``advlib scan --detector paper``). Each is a
folder written by :meth:`advlib.Detector.save` (``detector.json`` and the estimator's file), one
level deep so that the package data patterns of pyproject.toml ship it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..pretrained import DIR, PAPER, ship_detector, shipped_detectors, shipped_folder
from . import UsageError

__all__ = ["PAPER", "PRETRAINED_DIR", "describe_shipped", "detector_folder", "ship_detector",
           "shipped_detectors", "shipped_folder"]  # the shipped folder's functions live in advlib.pretrained

#: Detectors shipped inside the package (:data:`advlib.pretrained.DIR`; reading it loads no torch).
PRETRAINED_DIR = DIR


def detector_folder(classifier: str, detector: str | None) -> Path:
    """The detector folder of ``advlib scan --detector``: ``None`` the shipped default of
    ``classifier``, ``"paper"`` its shipped all-38 paper detector, else a folder written by
    :meth:`advlib.Detector.save`. :class:`UsageError` saying how to get one when it is missing."""
    if detector not in (None, PAPER):
        folder = Path(detector)
        if not (folder / "detector.json").exists():
            raise UsageError(f"--detector {folder}: no detector.json there (give a folder written by "
                             "advlib.Detector.save(), or 'paper')")
        return folder
    folder = shipped_folder(classifier, detector)
    if (folder / "detector.json").exists():
        return folder
    shipped = ", ".join(shipped_detectors()) or "none"
    if detector == PAPER:
        how = ("notebook 03 of the demo run (`make reproduce`) ships it with advlib.scan.shipped.ship_detector(); "
               "or pass --detector DIR, a folder written by advlib.Detector.save()")
    elif classifier == "efficientnet_lite0":
        how = ("run `make reproduce` (demo) to train the shipped one, or pass --detector DIR, a folder written by "
               "advlib.Detector.save()")
    else:
        how = (f"train one for {classifier}: `advlib reproduce demo --set classifiers=[{classifier}]` writes "
               f"data/<run>/models/detector_cheap, or in Python advlib.Detector(advlib.load_classifier("
               f"'{classifier}'), feature='prob+shift', ops=[...]).fit(images, is_adversarial).save(DIR) "
               "(README, \"Scan a folder\"); then pass --detector DIR")
    what = "no paper (all-38) detector" if detector == PAPER else "no detector"
    raise UsageError(f"{what} ships with this advlib for classifier {classifier!r} ({folder}/detector.json missing; "
                     f"shipped: {shipped}). To get one: {how}")


def _number(where: Any, key: str) -> float | None:
    """``where[key]`` as a float when ``where`` is a mapping holding a number there, else None."""
    v = where.get(key) if isinstance(where, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def describe_shipped(name: str, meta: dict[str, Any]) -> str:
    """One paragraph on a shipped detector (``name``: its folder's): operations, feature,
    estimator, threshold, and the out-of-fold false-positive and detection rates its metadata
    states (tolerant: what is missing is left out, or said to be missing)."""
    ops = meta.get("ops") if isinstance(meta.get("ops"), list) else None
    label = name.replace(f".{PAPER}", f" --detector {PAPER}")
    parts = [f"{label}: {meta.get('feature', '?')} features"]
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
    nested = meta.get("oof_calibration_photos")
    if isinstance(nested, dict) and "fpr" in nested:  # the shipped detector: its nested evaluation
        return text + " " + _nested_rates(meta, nested)
    oof = meta.get("oof") if isinstance(meta.get("oof"), dict) else {}
    # the rates at the calibrated threshold, as advlib.experiments.final_feature_detector writes them
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


def _interval(where: dict, key: str) -> str:
    lo, hi = _number(where, f"{key}_ci_low"), _number(where, f"{key}_ci_high")
    return f" [{lo:.1%}, {hi:.1%}]" if lo is not None and hi is not None else ""


def _nested_rates(meta: dict[str, Any], cal: dict[str, Any]) -> str:
    """The rates of :func:`advlib.experiments.shipped_detector`'s metadata: its whole procedure
    evaluated in nested cross-validation, on the photos its threshold is set for (and on all)."""
    every = meta.get("oof") if isinstance(meta.get("oof"), dict) else {}
    fpr, rate = _number(cal, "fpr"), _number(cal, "detection_rate")
    n = f"{cal.get('n_normal', '?')} normal and {cal.get('n_adversarial', '?')} adversarial images of " \
        f"{cal.get('n_photos', '?')} photos"
    text = (f"Its whole procedure, evaluated in nested cross-validation ({meta.get('protocol', 'outer folds')}), on "
            f"{meta.get('calibration', 'the calibration photos')} ({n}): false-positive rate "
            f"{fpr:.1%}{_interval(cal, 'fpr')}, detection rate {rate:.1%}{_interval(cal, 'detection_rate')} "
            "(95% photo-bootstrap intervals)")
    if _number(every, "fpr") is not None:
        text += f"; on every photo, thumbnails included: false-positive rate {_number(every, 'fpr'):.1%}" \
                f"{_interval(every, 'fpr')}"
    return text + ". Expect about these rates on camera photos of the same kinds."
