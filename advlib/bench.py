"""Speed figures: ``advlib bench {ops,features,pipeline,scan,all} [--device cpu|cuda] [--n N]``.

All figures are measured in one run on the same real photos (:func:`advlib.corpora.demo_items`)
with efficientnet_lite0, and written to BENCHMARKS.md (one row per date, device, threads and
figure; a rerun replaces its rows). The last line of each benchmark is ``RESULT name=value``.
Each side of a ratio is timed ``--repeat`` times, interleaved with its baseline, and the best
time of each side is kept. :func:`advlib.runtime.tune_allocator` is applied first, so baselines
and ours run under the same allocator settings.

- ``ops``: images per second for all 38 operations, a single-threaded Pillow loop (the
  authors' way) vs :func:`advlib.ops.apply_many` on the batch -> ``ops_speedup``.
- ``features``: images per second of :func:`advlib.features.top5_under_ops` vs the classifier
  alone doing the same 39 forward passes on precomputed inputs (the limit) ->
  ``feature_efficiency``.
- ``pipeline``: the authors' pipeline (per image: a Pillow operation, then a batch-1 forward,
  38 times, plus the original) vs ours -> ``pipeline_speedup``.
- ``scan``: images per second of the shipped cheap detector (:meth:`advlib.Detector.pretrained`:
  features and score) vs the paper's all-38 detector (SVM on the differences feature, fitted
  here on the photos and their FGSM versions) vs feature squeezing (4 passes) ->
  ``scan_speedup`` (cheap / all-38).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

from . import features, ops, runtime
from .api import attack
from .corpora import demo_items, read_images
from .detect import FeatureSqueezing
from .detect.pipeline import Detector
from .models import load_classifier, predict_topk
from .paths import ROOT
from .runtime import auto_batch_size, tune_allocator
from .store import atomic_write_bytes, to_pil

BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADER = ("| date | device | torch threads | figure | value |\n"
          "|------|--------|---------------|--------|-------|\n")


REPEAT = 3


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best_of(*fns, repeat: int = REPEAT) -> list[float]:
    """Best (minimum) wall time of each function over ``repeat`` rounds, run interleaved
    (a, b, a, b, ...) so that both sides see the same machine state; the minimum is the
    least disturbed run (``timeit``'s convention) on a shared machine."""
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            ts.append(_timed(fn))
    return [min(ts) for ts in times]


def _ours(model, images: torch.Tensor, device: torch.device, workers: int, batch_size: int):
    """Our feature extraction of ``images``, as a function of no arguments to time."""
    return lambda: features.top5_under_ops(model, images, batch_size=batch_size, device=device,
                                           workers=workers, progress=False)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def bench_ops(images: torch.Tensor, device: torch.device, workers: int, repeat: int = REPEAT) -> dict[str, float]:
    """Images per second for all 38 operations: Pillow loop (1 thread) vs batched."""
    names = list(ops.OPERATIONS)

    def pillow() -> None:
        for im in images:
            pil = to_pil(im)
            for name in names:
                np.asarray(ops.apply_pil(name, pil))

    def batched() -> None:
        ops.apply_many(names, images.to(device), workers=workers)
        if device.type == "cuda":
            torch.cuda.synchronize()

    ops.check_exactness(images[0], device=device)  # also warms up caches and lazy imports
    t_pil, t_ours = _best_of(pillow, batched, repeat=repeat)
    return {"pillow_ips": len(images) / t_pil, "batched_ips": len(images) / t_ours, "ops_speedup": t_pil / t_ours}


def bench_features(model, images: torch.Tensor, device: torch.device, workers: int,
                   batch_size: int, repeat: int = REPEAT) -> dict[str, float]:
    """Images per second of top5_under_ops vs its forward passes alone on precomputed inputs."""
    names = list(ops.OPERATIONS)
    features.top5_under_ops(model, images[:2], batch_size=batch_size, workers=workers, progress=False)  # warm-up
    chunks = [features.versions_by_size(images[s:s + batch_size], names, device, workers)
              for s in range(0, len(images), batch_size)]

    def forward_only() -> None:
        for s, groups in zip(range(0, len(images), batch_size), chunks):
            features.classify_groups(model, groups, len(images[s:s + batch_size]), 1 + len(names), batch_size)

    t_ours, t_limit = _best_of(_ours(model, images, device, workers, batch_size), forward_only, repeat=repeat)
    return {"features_ips": len(images) / t_ours, "limit_ips": len(images) / t_limit,
            "feature_efficiency": t_limit / t_ours}


def bench_pipeline(model, images: torch.Tensor, device: torch.device, workers: int,
                   batch_size: int, repeat: int = REPEAT) -> dict[str, float]:
    """The authors' per-image pipeline (Pillow op, batch-1 forward, x38 + original) vs ours."""
    names = list(ops.OPERATIONS)

    def authors() -> None:
        with torch.no_grad():
            for im in images:
                pil = to_pil(im)
                for version in [pil] + [ops.apply_pil(name, pil) for name in names]:
                    x = torch.from_numpy(np.asarray(version).copy()).permute(2, 0, 1)[None].float() / 255
                    model(x.to(device)).topk(5, dim=1).indices.cpu()

    t_authors, t_ours = _best_of(authors, _ours(model, images, device, workers, batch_size), repeat=repeat)
    return {"authors_ips": len(images) / t_authors, "ours_ips": len(images) / t_ours,
            "pipeline_speedup": t_authors / t_ours}


def bench_scan(model, images: torch.Tensor, device: torch.device, workers: int, batch_size: int,
               classifier: str, repeat: int = REPEAT) -> dict[str, float]:
    """Scoring speed of the shipped cheap detector vs the all-38 SVM-diff detector vs feature
    squeezing, on the same images (no cache)."""
    kw = dict(batch_size=batch_size, device=device, workers=workers)
    cheap = Detector.pretrained(model, **kw)
    adv = attack("fgsm", model, images, device=device, batch_size=batch_size)
    x = torch.cat([images, adv.adversarial])
    y = [False] * len(images) + [True] * len(images)
    all38 = Detector(model, feature="diff", ops="all", estimator="svm", **kw).fit(x, y)
    squeeze = FeatureSqueezing(model, device=device, batch_size=batch_size)
    t_cheap, t_all, t_sq = _best_of(lambda: cheap.score(images), lambda: all38.score(images),
                                    lambda: squeeze.decision_function(images), repeat=repeat)
    n = len(images)
    return {"cheap_ips": n / t_cheap, "all38_ips": n / t_all, "squeeze_ips": n / t_sq,
            "cheap_passes": cheap.passes, "scan_speedup": t_all / t_cheap, "squeeze_vs_cheap": t_cheap / t_sq}


#: What one numerics process times: the attacks' unit of work (a forward and backward pass of the
#: classifier on a batch of 4 photos) and notebook 02's (top5_under_ops, 39 forward passes).
_NUMERICS_SCRIPT = """
import json, sys, time
import torch
from advlib import corpora, features, models, runtime
n, steps, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
images, _, _ = corpora.read_images(corpora.demo_items(1)[:n])
clf = models.load_classifier("efficientnet_lite0")
x = (images[:4].float() / 255).requires_grad_(True)
clf(x).sum().backward()  # warm-up
t = time.perf_counter()
for _ in range(steps):
    torch.autograd.grad(clf(x).logsumexp(1).sum(), x)
fb = (time.perf_counter() - t) / (steps * len(x))
t = time.perf_counter()
features.top5_under_ops(clf, images, batch_size=4, workers=threads, progress=False)
feat = (time.perf_counter() - t) / len(images)
print(json.dumps({"numerics": runtime.numerics_id(), "isa": runtime.torch_capability(), "fb": fb, "features": feat}))
"""


def bench_numerics(n: int, threads: int, repeat: int = REPEAT) -> dict[str, float]:
    """Seconds per image of the attacks' unit of work and of the 39-pass features, pinned
    (:data:`advlib.runtime.PINNED_ENV`) against native numerics, each in a fresh process (the pin
    must be set before torch loads), ``repeat`` rounds interleaved, best kept."""
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for mode in ("native", "pinned"):
            env = {k: v for k, v in os.environ.items() if k not in runtime.PINNED_ENV}
            env.update(runtime.environment(mode, threads), ADVLIB_NUMERICS=mode, OMP_WAIT_POLICY="PASSIVE")
            out = subprocess.run([sys.executable, "-c", _NUMERICS_SCRIPT, str(n), "8", str(threads)], env=env,
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            b = best.setdefault(mode, {"fb": np.inf, "features": np.inf})
            b["fb"], b["features"] = min(b["fb"], r["fb"]), min(b["features"], r["features"])
            b["isa"] = r["isa"]
    return {"native_fb": best["native"]["fb"], "pinned_fb": best["pinned"]["fb"],
            "native_features": best["native"]["features"], "pinned_features": best["pinned"]["features"],
            "pin_cost_fb": best["pinned"]["fb"] / best["native"]["fb"],
            "pin_cost_features": best["pinned"]["features"] / best["native"]["features"],
            "native_isa": best["native"]["isa"], "pinned_isa": best["pinned"]["isa"]}


#: The four classifiers of the paper profile, timed by :func:`bench_cost` (torchvision architectures).
PAPER_CLASSIFIERS = ("vgg16", "vgg19", "resnet18", "resnet50")


def _pass_times(model: torch.nn.Module, x: torch.Tensor, repeat: int) -> tuple[float, float]:
    """Seconds per image of a forward pass (a feature pass: no gradient) and of a forward+backward
    pass to the input (an attack's gradient step) of ``model`` on the batch ``x``, best of ``repeat``."""
    x = x.detach()
    with torch.no_grad():
        model(x)  # warm-up
    fwd, fb = np.inf, np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        with torch.no_grad():
            model(x)
        fwd = min(fwd, time.perf_counter() - t)
        xg = x.clone().requires_grad_(True)
        t = time.perf_counter()
        torch.autograd.grad(model(xg).logsumexp(1).sum(), xg)
        fb = min(fb, time.perf_counter() - t)
    return fwd / len(x), fb / len(x)


def bench_cost(images: torch.Tensor, labels: torch.Tensor, device: torch.device, batch_size: int,
               attack_names: list[str], measured: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite1"),
               repeat: int = REPEAT) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """The paper profile's cost on this machine: ``(passes, attacks)``.

    ``passes``: per classifier (the ``measured`` ones with their shipped weights, the paper's
    four as torchvision architectures: timing only, no results come from them), seconds per
    image of a forward pass and of a forward+backward pass, batch ``batch_size``.
    ``attacks``: seconds per image of each attack (the profile's options, advlib's criteria,
    the save-and-recheck included) run on ``images`` for each ``measured`` classifier."""
    import pandas as pd
    import torchvision

    from .attacks import run_attack

    x = images[:batch_size].float().div(255).to(device)
    rows = []
    for name in (*measured, *PAPER_CLASSIFIERS):
        model = (load_classifier(name, device) if name in measured
                 else getattr(torchvision.models, name)(weights=None).eval().to(device))
        fwd, fb = _pass_times(model, x, repeat)
        print(f"{name}: forward {1000 * fwd:.1f} ms, forward+backward {1000 * fb:.1f} ms per image", flush=True)
        rows.append({"classifier": name, "weights": "shipped" if name in measured else "none (timing only)",
                     "forward_s": fwd, "forward_backward_s": fb})
    passes = pd.DataFrame(rows)
    attack_rows = []
    for name in measured:
        model = load_classifier(name, device)
        top1 = predict_topk(model, images, 1, batch_size)[:, 0]
        for a in attack_names:
            t = time.perf_counter()
            run_attack(a, model, images, top1, device=device, batch_size=batch_size, reference=labels)
            attack_rows.append({"classifier": name, "attack": a, "n": len(images),
                                "seconds_per_image": (time.perf_counter() - t) / len(images)})
            print(f"{name} {a}: {attack_rows[-1]['seconds_per_image']:.2f} s per image", flush=True)
    return passes, pd.DataFrame(attack_rows)


def paper_cost(passes: "pd.DataFrame", attack_times: "pd.DataFrame", base: str = "efficientnet_lite0",
               n_candidates: int = 1500, n_normal: int = 1000, n_passes: int = 39) -> "pd.DataFrame":
    """The paper profile's work in hours on this machine, per paper classifier and stage, from the
    measured times: the attacks (every attack on ``n_normal`` images: ``base``'s seconds per image
    of each attack, scaled by the classifier's forward+backward time over ``base``'s), the normal
    selection (``n_candidates`` forward passes) and the feature passes (``n_normal`` plus the
    paper's Table 1 adversarial images of the classifier, ``n_passes`` forward passes each). A
    model: the attacks' iteration counts are taken to be the same on every classifier (checked
    on efficientnet_lite1 by :func:`cost_check`)."""
    import pandas as pd

    from . import paper

    p = passes.set_index("classifier")
    per_attack = attack_times[attack_times.classifier == base].set_index("attack")["seconds_per_image"]
    rows = []
    for clf in PAPER_CLASSIFIERS:
        scale = p.loc[clf, "forward_backward_s"] / p.loc[base, "forward_backward_s"]
        n_adv = int(paper.TABLE1[clf].sum())
        attacks_h = n_normal * float(per_attack.sum()) * scale / 3600
        select_h = n_candidates * p.loc[clf, "forward_s"] / 3600
        features_h = (n_normal + n_adv) * n_passes * p.loc[clf, "forward_s"] / 3600
        rows.append({"classifier": clf, "attack_runs": n_normal * len(per_attack), "images_in_dataset": n_normal + n_adv,
                     "forward_backward_vs_base": scale, "attacks_h": attacks_h, "normal_selection_h": select_h,
                     "feature_passes_h": features_h, "total_h": attacks_h + select_h + features_h})
    out = pd.DataFrame(rows)
    total = out.drop(columns=["classifier", "forward_backward_vs_base"]).sum().to_dict()
    return pd.concat([out, pd.DataFrame([{"classifier": "all four", **total}])], ignore_index=True)


def cost_check(passes: "pd.DataFrame", attack_times: "pd.DataFrame", base: str = "efficientnet_lite0",
               other: str = "efficientnet_lite1") -> dict[str, float]:
    """The scaling of :func:`paper_cost` checked where both sides are measured: ``other``'s total
    attack seconds per image, predicted from ``base``'s by the forward+backward ratio, against measured."""
    p = passes.set_index("classifier")["forward_backward_s"]
    t = attack_times.groupby("classifier")["seconds_per_image"].sum()
    predicted = float(t[base] * p[other] / p[base])
    return {"predicted_s": predicted, "measured_s": float(t[other]), "ratio": float(t[other]) / predicted}


def write_rows(rows: list[tuple[str, str]], device: str, threads: int, path=BENCHMARKS) -> None:
    """Add ``(figure, value)`` rows to the BENCHMARKS.md table, replacing a row of the same
    date, device, threads and figure."""
    date = _dt.date.today().isoformat()
    text = path.read_text() if path.exists() else ""
    if HEADER not in text:
        text = (text.rstrip() + "\n\n" if text.strip() else
                "# Benchmarks\n\nWritten by `python -m advlib.bench` (`make bench`); one row per figure.\n\n") + HEADER
    head, _, table = text.partition(HEADER)
    lines = [ln for ln in table.splitlines() if ln.startswith("|")]
    rest = "\n".join(ln for ln in table.splitlines() if not ln.startswith("|"))
    for figure, value in rows:
        key = f"| {date} | {device} | {threads} | {figure} |"
        lines = [ln for ln in lines if not ln.startswith(key)] + [f"{key} {value} |"]
    atomic_write_bytes(path, (head + HEADER + "\n".join(lines) + "\n" + rest).encode())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="advlib bench", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["ops", "features", "pipeline", "scan", "numerics", "cost", "all"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--batch-size", type=int, default=0, help="classifier batch size (0 = auto: 4 on CPU, 128 on GPU)")
    parser.add_argument("--classifier", default="efficientnet_lite0")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="timed rounds per side, best kept (default 3)")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    if args.batch_size <= 0:
        args.batch_size = auto_batch_size(args.device)
    tuned = tune_allocator()
    threads = torch.get_num_threads()
    workers = threads if device.type == "cpu" else max(threads, 4)
    items = demo_items(8)
    images, _, _ = read_images(items[::max(1, len(items) // args.n)][:args.n])
    print(f"{len(images)} photos, {_device_name(device)}, torch threads {threads}, operation workers {workers}, "
          f"malloc thresholds {'raised' if tuned else 'default'}, best of {args.repeat}")

    results: dict[str, float] = {}
    rows: list[tuple[str, str]] = []
    if args.what in ("ops", "all"):
        r = bench_ops(images, device, workers, repeat=args.repeat)
        results.update(r)
        rows.append(("ops_speedup", f"{r['ops_speedup']:.2f} (batched {r['batched_ips']:.1f} img/s vs "
                                    f"Pillow loop {r['pillow_ips']:.1f} img/s, 38 ops, n={len(images)})"))
    if args.what != "ops":
        model = load_classifier(args.classifier, device)
    if args.what in ("features", "all"):
        r = bench_features(model, images, device, workers, args.batch_size, repeat=args.repeat)
        results.update(r)
        rows.append(("feature_efficiency", f"{r['feature_efficiency']:.3f} (top5_under_ops {r['features_ips']:.2f}"
                                           f" img/s vs forward passes alone {r['limit_ips']:.2f} img/s, "
                                           f"{args.classifier}, n={len(images)})"))
    if args.what in ("pipeline", "all"):
        r = bench_pipeline(model, images, device, workers, args.batch_size, repeat=args.repeat)
        results.update(r)
        rows.append(("pipeline_speedup", f"{r['pipeline_speedup']:.2f} (ours {r['ours_ips']:.2f} img/s vs "
                                         f"authors' per-image loop {r['authors_ips']:.2f} img/s, "
                                         f"{args.classifier}, n={len(images)})"))
    if args.what in ("numerics", "all") and device.type == "cpu":
        r = bench_numerics(len(images), threads, repeat=args.repeat)
        results.update({k: v for k, v in r.items() if isinstance(v, float)})
        rows.append(("pin_cost", f"{r['pin_cost_fb']:.2f} attacks' forward+backward, {r['pin_cost_features']:.2f} "
                                 f"features (pinned {r['pinned_isa']} {1000 * r['pinned_fb']:.0f} / "
                                 f"{1000 * r['pinned_features']:.0f} ms per image vs native {r['native_isa']} "
                                 f"{1000 * r['native_fb']:.0f} / {1000 * r['native_features']:.0f} ms; "
                                 f"{runtime.cpu_name()}, n={len(images)})"))
    if args.what in ("scan", "all"):
        r = bench_scan(model, images, device, workers, args.batch_size, args.classifier, repeat=args.repeat)
        results.update(r)
        rows.append(("scan_speedup", f"{r['scan_speedup']:.2f} (shipped cheap detector, {int(r['cheap_passes'])} passes, "
                                     f"{r['cheap_ips']:.2f} img/s vs all-38 SVM-diff {r['all38_ips']:.2f} img/s; "
                                     f"feature squeezing {r['squeeze_ips']:.2f} img/s; {args.classifier}, n={len(images)})"))
    if args.what == "cost":  # not part of "all": minutes of attacks
        r = _cost(device, args.batch_size, args.n, threads)
        results.update(r["results"])
        rows += r["rows"]
    for k, v in results.items():
        print(f"{k}: {v:.3f}")
    if not args.no_write:
        write_rows(rows, _device_name(device), threads)
    for figure, _ in rows:
        print(f"RESULT {figure}={results[figure]:.3f}")
    return results


def _cost(device: torch.device, batch_size: int, n: int, threads: int) -> dict:
    """``advlib bench cost``: :func:`bench_cost` on ``n`` labelled ImageNet photos (foolbox's),
    :func:`paper_cost`, written to ``tables/cost/`` (``passes.csv``, ``attacks.csv``,
    ``paper_cost.csv``) and as BENCHMARKS.md rows."""
    from . import attacks, paths
    from .store import write_csv

    items = [it for it in demo_items(1) if it.label_source == "imagenet"][:n]
    images, ok, _ = read_images(items)
    labels = torch.tensor([it.label for it in ok])
    names = list(attacks.ATTACKS)
    passes, times = bench_cost(images, labels, device, batch_size, names)
    cost = paper_cost(passes, times)
    check = cost_check(passes, times)
    out = paths.ROOT / "tables" / "cost"
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    write_csv(passes, out / f"passes{suffix}.csv")
    write_csv(times, out / f"attacks{suffix}.csv")
    write_csv(cost, out / f"paper_cost{suffix}.csv")
    print(passes.to_string(index=False))
    print(times.pivot(index="attack", columns="classifier", values="seconds_per_image").round(3).to_string())
    print(cost.round(2).to_string(index=False))
    print(f"scaling check on efficientnet_lite1: predicted {check['predicted_s']:.1f} s, measured "
          f"{check['measured_s']:.1f} s per image for the 12 attacks (measured / predicted {check['ratio']:.2f})")
    total = cost[cost.classifier == "all four"].iloc[0]
    row = (f"{total['total_h']:.0f} h for the paper profile's notebooks 01-02 (attacks {total['attacks_h']:.0f} h, "
           f"feature passes {total['feature_passes_h']:.0f} h; model from efficientnet_lite0's measured attacks, "
           f"n={len(images)}, scaled by forward+backward time; scaling checked on lite1: measured/predicted "
           f"{check['ratio']:.2f}; {runtime.cpu_name()})")
    return {"results": {"paper_cost": float(total["total_h"]), "cost_check_ratio": check["ratio"]},
            "rows": [("paper_cost", row)]}


if __name__ == "__main__":
    main()
