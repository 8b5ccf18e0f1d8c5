"""Detection experiments of Sect. 4.5: Table 4, Table 5, per-attack detection rates, the saved
detector, the format-robustness check and the false-positive investigation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from .. import detect, features, folds, pretrained
from ..detect.pipeline import Detector
from ..runtime import progress as tqdm
from ..store import decode_image, encode_image, write_csv
from .protocol import (
    MAIN_FEATURE_DETECTORS,
    OOF,
    SCENARIOS,
    Data,
    Fitted,
    cross_validate,
    feature_fitter,
    metric_row,
)


def _fitter(d: Data, name: str, kind: str, group: str, grids: dict | None, options: dict | None, **fixed):
    return feature_fitter(d, name, kind, group, grid=(grids or {}).get(name), options=(options or {}).get(name),
                          **fixed)


def table4(d: Data, detectors: list[str], groups: list[str], *, grids: dict | None = None,
           options: dict | None = None, progress: bool = True) -> tuple[pd.DataFrame, dict[tuple[str, str, str], OOF]]:
    """Table 4: out-of-fold accuracy of each traditional detector (names of
    :data:`advlib.detect.DETECTORS`) x feature x operation group of ``groups`` (combination
    setting), with cluster-bootstrap CIs, ``n_images``, ``n_photos``, ``degenerate``.
    ``grids``: dev-set grid per detector name (default :data:`advlib.detect.PARAM_GRIDS`);
    ``options``: constructor keywords per detector name. Returns the table and the :class:`OOF`
    of each ``(detector, group, feature)`` cell."""
    rows, oofs = [], {}
    jobs = [(n, k, g) for g in groups for k in ("count", "diff") for n in detectors]
    for name, kind, group in tqdm(jobs, desc="Table 4", disable=not progress):
        o = cross_validate(d, _fitter(d, name, kind, group, grids, options), "combination", "combination")
        oofs[(name, group, kind)] = o
        chosen = [m.info for m in o.models if m is not None]
        row = metric_row(o, d.bootstrap, d.seed, cis=("accuracy", "auc", "eer"))
        rows.append({"detector": name, "group": group, "feature": kind, "params": str(chosen), **row})
    return pd.DataFrame(rows), oofs


def table5(d: Data, image_detectors: dict[str, Callable], *, grids: dict | None = None,
           options: dict | None = None, progress: bool = True) -> tuple[pd.DataFrame, dict[str, OOF]]:
    """Table 5: the main detectors under seen and unseen attacks, out of fold.

    ``image_detectors`` maps a row label to a ``fit(train_mask, dev_mask) -> Fitted`` for
    detectors on raw images (see :func:`raw_cnn` and :func:`squeezing`). A detector that cannot
    be built (e.g. missing pretrained weights) is reported as skipped with the reason.
    ``grids``, ``options``: as :func:`table4`, for the feature detectors. Returns the table and
    the seen-scenario :class:`OOF` results per detector label.
    """
    rows, seen = [], {}
    fitters = {label: _fitter(d, name, kind, group, grids, options)
               for label, name, kind, group in MAIN_FEATURE_DETECTORS}
    fitters.update(image_detectors)
    for scenario, train_setting, test_setting in tqdm(SCENARIOS, desc="Table 5", disable=not progress):
        for label, fit in fitters.items():
            try:
                o = cross_validate(d, fit, train_setting, test_setting)
            except (FileNotFoundError, ImportError) as e:  # e.g. pretrained weights not on this machine
                rows.append({"scenario": scenario, "detector": label, "skipped": str(e).split(". ")[0]})
                continue
            rows.append({"scenario": scenario, "detector": label, **metric_row(o, d.bootstrap, d.seed)})
            if scenario.startswith("seen"):
                seen[label] = o
    return pd.DataFrame(rows), seen


def detection_rate_per_attack(d: Data, seen: dict[str, OOF]) -> pd.DataFrame:
    """Seen scenario, out of fold: % of each attack's images flagged, per detector, at the
    detector's own threshold and at its calibrated one (``attack`` 'none': normal images, i.e.
    the false-positive rate)."""
    attack = d.manifest["attack"].to_numpy()
    rows = []
    for label, o in seen.items():
        a = attack[o.rows]
        for name in pd.unique(a):
            m = a == name
            rows.append({"detector": label, "attack": name, "n": int(m.sum()), "n_photos": int(len(np.unique(o.groups[m]))),
                         "flagged_pct": 100 * o.flag_rate(m), "flagged_calibrated_pct": 100 * o.flag_rate(m, calibrated=True)})
    return pd.DataFrame(rows)


def raw_cnn(d: Data, load: Callable, arch: str, pretrained: bool, *, epochs: int, batch_size: int,
            device: str) -> Callable:
    """``fit(tr, dv)`` for a raw-image CNN trained on the images (``load(mask)``: uint8 pixels of
    those manifest rows): ResNet-50 / Xception from scratch or fine-tuned (paper profile), or
    the fine-tuned EfficientNet-Lite0 (``arch`` ``efficientnet_lite0``, the demo's offline
    stand-in for the paper's fine-tuned CNNs); the best of ``epochs`` is chosen on the dev part."""
    def fit(tr: np.ndarray, dv: np.ndarray) -> Fitted:
        kw = dict(epochs=epochs, batch_size=batch_size, device=device, random_state=d.seed, progress=False)
        if arch != "efficientnet_lite0":
            kw["pretrained"] = pretrained
        det = detect.make_detector(f"raw_{arch}", **kw)
        det.fit(load(tr), d.y[tr], X_dev=load(dv) if dv.any() else None, y_dev=d.y[dv] if dv.any() else None)
        return Fitted(lambda m: detect.detector_scores(det, load(m)), 0.5, {"best_epoch": det.best_epoch_}, det)
    return fit


def squeezing(d: Data, load: Callable, classifiers: dict, paper_threshold: bool, device: str,
              batch_size: int, target_fpr: float = 0.05) -> Callable:
    """``fit(tr, dv)`` for feature squeezing: one squeezer per classifier (each image is scored
    by the classifier it was made for), threshold at ``target_fpr`` on the normal training
    images (EvadeML-Zoo's rule) or the paper's fixed 1.2128. Each image's raw score is computed
    once and reused by every partition. Scores are shifted so that the threshold used is 0."""
    clf_of = d.manifest["classifier"].to_numpy()
    raw = np.full(len(d.manifest), np.nan)
    squeezers = {name: detect.FeatureSqueezing(model, device=device, batch_size=batch_size, fpr=target_fpr)
                 for name, model in classifiers.items()}

    def raw_scores(m: np.ndarray) -> np.ndarray:
        for name, det in squeezers.items():
            todo = m & (clf_of == name) & np.isnan(raw)
            if todo.any():
                raw[todo] = det.decision_function(load(todo))
        return raw[m]

    def fit(tr: np.ndarray, dv: np.ndarray) -> Fitted:
        thr = {}
        for name in squeezers:
            normal = tr & (d.y == 0) & (clf_of == name)
            thr[name] = detect.PAPER_THRESHOLD if paper_threshold else detect.fpr_threshold(raw_scores(normal), target_fpr)

        def score(m: np.ndarray) -> np.ndarray:
            return raw_scores(m) - np.array([thr.get(c, np.nan) for c in clf_of[m]])
        return Fitted(score, 0.0, {"threshold": thr})
    return fit


def final_feature_detector(d: Data, name: str, kind: str, group: str, o: OOF):
    """The detector to save: the paper's recipe refitted on every image of the combination
    setting (K-fold protocol) with the hyper-parameters chosen most often across folds, or the
    split's model (fixed split). Its threshold is calibrated to ``target_fpr`` on the pooled
    out-of-fold scores of normal images (photos the fold models never saw). Returns
    ``(model, threshold, meta)`` where ``meta`` holds the out-of-fold metrics users should expect.
    """
    fitted = [m for m in o.models if m is not None]
    if d.cv_folds == 0:
        model, info = fitted[0].model, fitted[0].info
    else:
        infos = [str(m.info) for m in fitted]
        info = fitted[infos.index(max(set(infos), key=infos.count))].info
        model = detect.make_detector(name, **info)
        if "random_state" in model.get_params():
            model.set_params(random_state=d.seed)
        X, m = d.features(kind, group), d.in_setting("combination")
        model.fit(X[m], d.y[m])
    threshold = detect.calibrate_threshold(o.scores[o.y == 0], d.target_fpr)
    row = metric_row(o, 0, d.seed)
    meta = {"params": info, "threshold": threshold, "target_fpr": d.target_fpr, "protocol": d.protocol,
            "oof": {k: row[k] for k in ("accuracy", "auc", "eer", "fpr_calibrated", "detection_rate_calibrated",
                                        "fpr", "detection_rate", "n_images", "n_photos")}}
    return model, threshold, meta


def format_robustness(d: Data, o: OOF, load: Callable, model, classifier: str, *, n_per_class: int = 0,
                      batch_size: int = 16, workers: int = 0, device: str = "cpu", cache_dir=None,
                      kind: str = "diff", group: str = "all", progress: bool = True) -> pd.DataFrame:
    """Flag rates of a feature detector on images re-encoded as PNG and JPEG at typical qualities.

    Out of fold: each image is scored by the model of the fold that did not train on it, at
    that fold's calibrated threshold and at 0.5. A subset of at most ``n_per_class`` normal
    and as many adversarial images (seeded) is used (``0``: all). ``model``: the classifier,
    named ``classifier`` in the top-5 cache (``cache_dir``).
    """
    rng = np.random.default_rng(d.seed)
    pick = []
    for cls in (0, 1):
        idx = np.flatnonzero(o.y == cls)
        n = n_per_class or len(idx)
        pick.append(np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False)))
    pick = np.concatenate(pick)
    rows_m = o.rows[pick]
    mask = np.zeros(len(d.manifest), bool)
    mask[rows_m] = True
    images = load(mask)[np.searchsorted(np.sort(rows_m), rows_m)]  # load() gives manifest order
    out = []
    formats = [("as saved", None, None)] + [("png", "png", 100)] + [(f"jpeg {q}", "jpeg", q) for q in (100, 95, 90, 75)]
    for label, fmt, q in tqdm(formats, desc="format robustness", disable=not progress):
        x = images if fmt is None else torch.stack([decode_image(encode_image(im, fmt, quality=q)) for im in images])
        t5 = features.top5_under_ops(model, x, list(d.op_names), batch_size=batch_size, device=device,
                                     cache_dir=cache_dir, classifier=classifier, workers=workers, progress=False)
        X = features.feature_matrix(np.asarray(t5), kind, group, ops=d.op_names)
        s = np.zeros(len(pick))
        for k in np.unique(o.fold[pick]):
            sel = o.fold[pick] == k
            s[sel] = detect.detector_scores(o.models[k].model, X[sel])
        y = o.y[pick]
        flag05, flagcal = s >= o.threshold[pick], s >= o.calibrated[pick]
        for cls, typ in ((0, "normal"), (1, "adversarial")):
            m = y == cls
            out.append({"format": label, "type": typ, "n_images": int(m.sum()),
                        "n_photos": int(len(np.unique(o.groups[pick][m]))),
                        "flagged_calibrated_pct": 100 * float(flagcal[m].mean()),
                        "flagged_05_pct": 100 * float(flag05[m].mean())})
    return pd.DataFrame(out)


def half_photo_partitions(d: Data, seed: int) -> list:
    """The partitions of ``d`` with the training part cut to half of its source photos (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for p in d.parts:
        photos = np.unique(d.groups[p.train])
        keep = rng.choice(photos, size=max(1, len(photos) // 2), replace=False)
        out.append(folds.Partition(p.name, p.train & np.isin(d.groups, keep), p.dev, p.eval))
    return out


def fpr_investigation(d: Data, top1_prob: np.ndarray, name: str = "svm", kind: str = "diff",
                      group: str = "all", *, grid: dict | None = None, subsets: dict[str, np.ndarray] | None = None,
                      base: OOF | None = None) -> tuple[pd.DataFrame, OOF]:
    """What makes normal photos look adversarial to a feature detector (out of fold, combination).

    Rows: the paper's recipe; the same with class weights balancing normal and adversarial
    images (``class_weight="balanced"``); the same trained on half of each training part's
    photos (does the false-positive rate fall with more photos?); and the paper's recipe split
    by the classifier's confidence on the normal image (``top1_prob`` (N,), softmax probability
    of its top-1: below vs at-or-above the median of the normal images) and by ``subsets``
    (label -> (N,) mask over the manifest rows, e.g. low-resolution source photos). ``base``:
    the recipe's out-of-fold results on the combination setting when already computed (Table 5's
    seen scenario), else they are computed here. ``grid``: the detector's dev-set grid (default
    :data:`advlib.detect.PARAM_GRIDS`). Returns the table and the recipe's :class:`OOF`.
    """
    runs = {"paper recipe": (feature_fitter(d, name, kind, group, grid=grid), None),
            "class_weight balanced": (feature_fitter(d, name, kind, group, grid=grid, class_weight="balanced"), None),
            "half the training photos": (feature_fitter(d, name, kind, group, grid=grid),
                                         half_photo_partitions(d, d.seed))}
    rows = []
    for label, (fit, parts) in runs.items():
        if label == "paper recipe" and base is not None:
            o = base
        else:
            o = cross_validate(d, fit, "combination", "combination", partitions=parts)
        base = o if base is None else base
        r = metric_row(o, d.bootstrap, d.seed)
        n_train = [int(len(np.unique(d.groups[p.train]))) for p in (parts or d.parts)]
        rows.append({"lever": label, "subset": "all normal images", "n_train_photos_mean": float(np.mean(n_train)),
                     **{k: r.get(k, np.nan) for k in ("fpr", "fpr_ci_low", "fpr_ci_high", "fpr_calibrated",
                                                     "fpr_calibrated_ci_low", "fpr_calibrated_ci_high",
                                                     "detection_rate_calibrated", "auc", "n_images", "n_photos")}})
    normal = base.y == 0
    prob = top1_prob[base.rows]
    med = float(np.median(prob[normal]))
    splits = [(f"top-1 probability < {med:.2f}", normal & (prob < med)),
              (f"top-1 probability >= {med:.2f}", normal & (prob >= med))]
    splits += [(label, normal & mask[base.rows]) for label, mask in (subsets or {}).items()]
    for label, m in splits:
        if not m.any():
            continue
        rows.append({"lever": "paper recipe", "subset": label, "n_images": int(m.sum()),
                     "n_photos": int(len(np.unique(base.groups[m]))), "fpr": base.flag_rate(m),
                     "fpr_calibrated": base.flag_rate(m, calibrated=True)})

    rho = spearmanr(prob[normal], base.scores[normal]).statistic if normal.sum() > 2 else np.nan
    rows.append({"lever": "paper recipe", "subset": "Spearman rho(top-1 probability, score), normal images",
                 "n_images": int(normal.sum()), "auc": np.nan, "fpr": np.nan, "rho": float(rho)})
    return pd.DataFrame(rows), base


#: Titles of the raw-image CNN baselines in Table 5.
RAW_CNN_TITLES = {"resnet50": "ResNet-50", "xception": "XceptionNet", "efficientnet_lite0": "EfficientNet-Lite0"}

#: How each baseline is fine-tuned, in its Table 5 row label: the paper fine-tunes all of
#: ResNet-50 / Xception for 150 epochs on 18,910 images; the demo's EfficientNet-Lite0 only its
#: last MBConv block and head (batch norm frozen) for a few epochs on about 170 images per fold,
#: a much weaker baseline (:mod:`advlib.detect.finetune`).
FINE_TUNING = {"resnet50": "fine-tuning", "xception": "fine-tuning",
               "efficientnet_lite0": "partial fine-tuning: last block and head"}


def image_detectors(d: Data, load: Callable, classifiers: dict, *, raw_cnn_archs: list[str], epochs: int,
                    cnn_batch_size: int, batch_size: int, device: str) -> dict[str, Callable]:
    """Table 5's detectors on images, by their row label: each raw-image CNN of
    ``raw_cnn_archs`` trained from scratch (ResNet-50, Xception) and fine-tuned from ImageNet
    weights (all three; :func:`raw_cnn`), and feature squeezing at its 5%-FPR threshold and at
    the paper's fixed one (:func:`squeezing`). ``classifiers``: name -> loaded classifier."""
    out: dict[str, Callable] = {}
    for arch in raw_cnn_archs:
        if arch != "efficientnet_lite0":
            out[f"{RAW_CNN_TITLES[arch]} (training)"] = raw_cnn(d, load, arch, False, epochs=epochs,
                                                               batch_size=cnn_batch_size, device=device)
        out[f"{RAW_CNN_TITLES[arch]} ({FINE_TUNING[arch]})"] = raw_cnn(d, load, arch, True, epochs=epochs,
                                                              batch_size=cnn_batch_size, device=device)
    out["Feature squeezing (5% FPR threshold)"] = squeezing(d, load, classifiers, False, device, batch_size,
                                                             d.target_fpr)
    out["Feature squeezing (paper threshold 1.2128)"] = squeezing(d, load, classifiers, True, device, batch_size,
                                                                   d.target_fpr)
    return out


def save_feature_detector(d: Data, o: OOF, name: str, kind: str, group: str, folder: Path,
                          meta: dict) -> dict:
    """Refit detector ``name`` on ``kind`` features of ``group`` on every image
    (:func:`final_feature_detector`), save it to ``folder`` with ``meta`` and its out-of-fold
    scores (``oof_scores.csv``: what notebook 04's detect-then-correct reads); returns what it
    measured (the metadata written with it)."""
    det, threshold, info = final_feature_detector(d, name, kind, group, o)
    detect.save_detector(det, folder, {**meta, "feature": kind, "group": group, **info})
    oof = pd.DataFrame({"image_id": d.manifest["image_id"].to_numpy()[o.rows], "fold": o.fold, "score": o.scores,
                        "threshold": o.threshold, "calibrated_threshold": o.calibrated})
    write_csv(oof, folder / "oof_scores.csv")
    return info


def ship_paper_detector(folder: Path, classifier: Any, run: str) -> Path | None:
    """The paper's detector that :func:`save_feature_detector` saved in ``folder`` (the all-38
    SVM, refitted on every image), as an :class:`advlib.Detector` of ``classifier``, shipped
    inside the package (:func:`advlib.pretrained.ship_detector`: ``advlib scan --detector
    paper``) by the demo run of efficientnet_lite0 only; returns the shipped folder (None for
    other runs)."""
    name = getattr(classifier, "name", "")
    if run != "demo" or name != "efficientnet_lite0":
        return None
    meta = detect.read_meta(folder)
    keep = {k: meta[k] for k in ("params", "target_fpr", "protocol", "oof", "run", "params_hash") if k in meta}
    det = Detector.from_estimator(classifier, detect.load_detector(folder), feature=meta["feature"], ops=meta["group"],
                                  threshold=meta["threshold"], meta=keep)
    det.save(Path(folder) / "as_detector")
    return pretrained.ship_detector(Path(folder) / "as_detector")
