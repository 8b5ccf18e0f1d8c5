"""Speed of ``advlib scan`` as a command (``python -m advlib.scan.measure threads|shards``): each figure
is a whole ``advlib scan`` run in a fresh process with the shipped detector on real photos (224x224
crops of the demo photos), timed against its baseline in the same run, interleaved, every time kept.

- ``threads``: images per second of the classifying (the scan's own time, without the start) at 1
  and 2 torch threads, alone and beside a competing process (a 2-thread torch convolution loop,
  OpenMP's default waiting), with ``OMP_WAIT_POLICY=PASSIVE`` and with OpenMP's default.
- ``shards``: images per second of the whole command (start, classifier loads, merge) of one
  process vs ``--executor local`` with 1, 2 and 4 jobs; and of the classifying alone (one
  process: its own time; jobs: the longest job's own time, from the jobs' logs).

Each result line is ``RESULT name=value``; the load average and the busiest other processes are
printed first, because the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: A competing process: another torch job, 2 threads, OpenMP's default waiting.
COMPETITOR = ("import torch\ntorch.set_num_threads(2)\nconv = torch.nn.Conv2d(32, 64, 3)\n"
              "x = torch.randn(8, 32, 64, 64)\nwhile True:\n    conv(x)\n")


def machine_load() -> str:
    """The 1-minute load average and the three busiest processes (``ps``), for the record."""
    top = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    busy = [" ".join(line.split()[:3])[:70] for line in top.splitlines()[1:4]]
    return f"load average {os.getloadavg()[0]:.2f}; busiest: " + " | ".join(busy)


def make_folder(root: Path, n: int) -> Path:
    """``n`` distinct 224x224 PNG crops of the demo photos (:func:`advlib.corpora.demo_items`)."""
    from ..corpora import demo_items
    from ..images import load_image
    from ..store import save_image

    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(demo_items(4)[:n]):
        save_image(load_image(item.path, item.crop), folder / f"{i:03d}.png")
    return folder


#: The scan's own time in its summary line ("...; 12.3 s").
OWN_TIME = re.compile(r"already in the report \(skipped\); ([0-9.]+) s\n")


def run_scan(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds of the command, the scan's own seconds from its summary) of ``advlib scan args``."""
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "advlib", "scan", *args, "--quiet"], capture_output=True, text=True,
                       env={**os.environ, **env})
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise RuntimeError(f"advlib scan {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return wall, float(OWN_TIME.search(r.stdout).group(1))


def jobs_own_time(jobs_folder: Path) -> float:
    """The longest classifying time of the jobs whose logs are in ``jobs_folder`` (their summaries)."""
    return max(float(m.group(1)) for f in jobs_folder.glob("*_log.out") for m in OWN_TIME.finditer(f.read_text()))


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} img/s (runs {', '.join(f'{v:.2f}' for v in values)})"


def threads(n: int, repeat: int) -> dict[str, list[float]]:
    """Images per second of the scan's classifying, by condition (see the module docstring)."""
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp), n)
        for competing in (False, True):
            competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR]) if competing else None
            try:
                time.sleep(3 if competing else 0)
                print(machine_load(), flush=True)
                for _ in range(repeat):
                    for policy in ("PASSIVE", ""):  # "": OpenMP's default (the value is ignored)
                        for t in (1, 2):
                            out = Path(tmp) / f"r{time.time_ns()}.csv"
                            _, own = run_scan([str(folder), "--out", str(out), "--threads", str(t)],
                                              {"OMP_WAIT_POLICY": policy})
                            key = f"{'busy' if competing else 'alone'}_{policy.lower() or 'default'}_t{t}"
                            results.setdefault(key, []).append(n / own)
                            print(f"  {key}: {n / own:.2f} img/s", flush=True)
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()
    return results


def shards(n: int, repeat: int, jobs: tuple[int, ...] = (1, 2, 4)) -> dict[str, list[float]]:
    """Images per second of the whole command: one process (1 and 2 threads) vs local jobs."""
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp), n)
        print(machine_load(), flush=True)
        for _ in range(repeat):
            runs = [("one_t1", ["--threads", "1"]), ("one_t2", ["--threads", "2"])]
            runs += [(f"jobs{k}", ["--shards", str(k), "--executor", "local"]) for k in jobs]
            for key, extra in runs:
                out = Path(tmp) / f"r{time.time_ns()}.csv"
                wall, own = run_scan([str(folder), "--out", str(out), *extra], {})
                own = jobs_own_time(Path(f"{out}.jobs")) if key.startswith("jobs") else own
                results.setdefault(key, []).append(n / wall)
                results.setdefault(f"{key}_classifying", []).append(n / own)
                print(f"  {key}: {n / wall:.2f} img/s, classifying {n / own:.2f} img/s", flush=True)
    return results


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    p = argparse.ArgumentParser(prog="python -m advlib.scan.measure", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["threads", "shards"])
    p.add_argument("--n", type=int, default=0, help="photos (default 16 for threads, 48 for shards)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    n = args.n or (16 if args.what == "threads" else 48)
    results = threads(n, args.repeat) if args.what == "threads" else shards(n, args.repeat)
    print(machine_load())
    for key, values in results.items():
        print(f"RESULT {key}={_spread(values)}")
    if args.what == "shards":
        for key, values in results.items():
            base = statistics.median(results["one_t1_classifying" if key.endswith("_classifying") else "one_t1"])
            print(f"RESULT {key}_vs_one_t1={statistics.median(values) / base:.2f}")
    return results


if __name__ == "__main__":
    main()
