"""Profiles (``params/<name>.yaml``): validated run settings, and the name and folders of a run.

A profile is a flat mapping of parameter names to values. The notebooks' ``parameters`` cells
hold only ``profile`` (a name or a path) and ``overrides`` (a dict of keys to replace), and call
:func:`advlib.notebook.setup`, which calls :func:`load_profile` ``(profile, **overrides)``;
papermill injects both. :data:`SCHEMA` lists every allowed key with its type; loading a profile
checks it and stops with a message naming the key and the file. A run's name
(:func:`run_name`) is the profile's unless its parameters differ from the file's, and names its
folders (:func:`out_dirs`).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml

from . import cluster, paths
from .paths import IMAGENET_ENV, fingerprint
from .runtime import auto_batch_size

#: Every profile key: (type, description). ``None`` in a Union means the key may be null.
SCHEMA: dict[str, tuple[Any, str]] = {
    "profile": (str, "profile name; outputs go to data/<profile>, tables/<profile>, figures/<profile>"),
    "classifiers": (list[str], "names from advlib.models.CLASSIFIERS"),
    "corpus": (str, "'demo' (photos shipped in packages) or 'imagenet' (validation folder)"),
    "imagenet_dir": (Union[str, None], f"ImageNet validation folder (or env {IMAGENET_ENV})"),
    "imagenet_labels": (Union[str, None], "flat-folder label file 'filename index' (optional)"),
    "imagenet_build": (Union[str, None], "optional: 'classes' or 'flat': imagenet_dir is written (when missing) in that layout from the labelled ImageNet photos shipped in packages (advlib imagenet-folder; the rehearsal profile)"),
    "n_candidates": (int, "images read per classifier before the top-5 selection"),
    "n_normal": (int, "normal images kept per classifier"),
    "crops_per_photo": (int, "distinct 224x224 crops taken from each demo photo"),
    "attacks": (Union[list[str], dict], "names from advlib.attacks.ATTACKS, or a mapping name -> its options (null: defaults), e.g. {pgd: {epsilons: [4/255]}}"),
    "attacks_per_image": (int, "attacks run on each normal image (0 = all), rotating assignment"),
    "attack_options": (dict, "optional, per-attack keyword overrides {name: {key: value}} (or give them in 'attacks')"),
    "save_format": (str, "'jpeg' (quality 100, as the paper) or 'png' (lossless)"),
    "split": (list[float], "train/dev/eval fractions of the source photos"),
    "shard_size": (int, "images per (classifier, attack) shard"),
    "seed": (int, "random seed"),
    "device": (str, "'cpu', 'cuda' or 'auto'"),
    "batch_size": (int, "classifier batch size (0 = auto: 4 on CPU, where small batches run fastest, 128 on GPU)"),
    "workers": (int, "CPU worker threads for the 38 operations (0 = inline)"),
    "attack_threads": (int, "torch threads while building the dataset (0 = torch's default, one per core): fixed, the attacks' results do not depend on the machine's core count"),
    "threads": (int, "torch threads of every notebook (0 = one per core; env ADVLIB_THREADS overrides): fixed, the numbers do not depend on the core count"),
    "strict_reference": (bool, "optional: a table beyond the measured tolerance of tests/reference/<profile>/ fails the run (smoke: true; else reported; env ADVLIB_STRICT overrides)"),
    "numerics": (str, "'pinned' (every library's AVX2 code path on x86-64: the same numbers on any x86 CPU; advlib.runtime) or 'native' (fastest; env ADVLIB_NUMERICS overrides)"),
    "ops": (Union[list[str], None], "operation names (null = all 38)"),
    "detectors": (Union[list[str], dict], "names from advlib.detect.DETECTORS, or a mapping name -> {grid: {param: [values]}} (null: advlib.detect.PARAM_GRIDS)"),
    "detector_grids": (dict, "optional, dev-set grids {name: {param: [values]}} (or give them in 'detectors')"),
    "feature_groups": (list[str], "operation groups for Table 4"),
    "stats_cnn_epochs": (int, "stats-CNN training epochs (paper code: 100)"),
    "stats_cnn_batch_size": (int, "stats-CNN batch size (paper code: 64)"),
    "raw_cnn_archs": (list[str], "raw-image CNN baselines: 'resnet50', 'xception' (paper), 'efficientnet_lite0' (fine-tuned, offline)"),
    "raw_cnn_epochs": (int, "raw-image CNN epochs (paper: 150)"),
    "raw_cnn_batch_size": (int, "raw-image CNN batch size"),
    "bootstrap": (int, "cluster-bootstrap resamples (over source photos) for confidence intervals"),
    "cv_folds": (int, "0: the fixed train/dev/eval split (paper); K >= 2: grouped K-fold over source photos"),
    "target_fpr": (float, "false-positive rate on normal images that detector thresholds are calibrated to"),
    "format_check_n": (int, "images per class re-encoded for the detector's format-robustness check (0 = all)"),
    "correction_groups": (list[str], "operation groups voted by label correction (paper: jpeg, scaling)"),
    "fixed_qfs": (list[int], "fixed JPEG quality factors for image correction"),
    "heuristic_qfs": (list[int], "quality factors searched by the heuristic"),
    "dae_epochs": (int, "denoising autoencoder epochs"),
    "dae_sigma": (float, "denoising autoencoder training noise (paper: 0.1)"),
    "adaptive_n": (int, "notebook 05: normal images attacked (one per photo, from the outer folds' eval photos in turn)"),
    "adaptive_photos": (str, "notebook 05: 'full-size' (photos of 224 px or more: the shipped detector's domain) or 'all'"),
    "adaptive_eps": (list[float], "notebook 05: L-inf budgets in 8-bit levels (e.g. [1, 2, 4, 8]) of every attack without its own 'eps'"),
    "adaptive_attacks": (dict, "notebook 05: attacks of advlib.experiments.adaptive_sweep.ATTACKS -> null or options {eps: [budgets], steps: N, n: images per fold}"),
    "adaptive_steps": (int, "notebook 05: PGD steps of every gradient attack (chosen from the convergence study)"),
    "adaptive_restarts": (int, "notebook 05: random restarts of every gradient attack"),
    "adaptive_eot": (int, "notebook 05: correction operations drawn per step by the EOT attacks"),
    "adaptive_lam": (list[float], "notebook 05: detector-hinge weights searched per image by the detector attacks, in order"),
    "adaptive_queries": (int, "notebook 05: queries per image of the Square (gradient-free) attacks"),
    "adaptive_convergence": (dict, "notebook 05: the convergence study {n, eps, steps: [..], restarts, attacks: [..]} ({} = none)"),
    "extends": (Union[str, None], "optional: a profile whose keys this one takes (its own replace them) and whose run's data and models it reads (params/adaptive.yaml: the demo's)"),
    "executor": (Union[str, None], "optional: null (everything in this process), 'local' or 'slurm': notebook 01's attack shards and notebook 02's feature passes as submitit jobs (advlib reproduce --executor); not part of the run's name"),
    "executor_options": (dict, "optional: submitit parameters of those jobs, e.g. {timeout_min: 240, slurm_partition: gpu, gpus_per_node: 1, cpus_per_task: 8}"),
    "notebooks": (list[str], "optional: the notebooks 'advlib reproduce' runs for this profile (default: all five)"),
}

#: Keys a profile may leave out, with their defaults.
OPTIONAL: dict[str, Any] = {"attack_options": {}, "detector_grids": {}, "threads": 0, "numerics": "pinned",
                            "strict_reference": False, "imagenet_build": None,
                            "executor": None, "executor_options": {},
                            "extends": None, "notebooks": [],
                            "adaptive_n": 24, "adaptive_photos": "all", "adaptive_eps": [1, 2, 4, 8],
                            "adaptive_attacks": {"pgd": None, "eot_correction": None, "detector_cheap": None},
                            "adaptive_steps": 10, "adaptive_restarts": 1, "adaptive_eot": 3,
                            "adaptive_lam": [1.0, 10.0, 100.0], "adaptive_queries": 300, "adaptive_convergence": {}}

#: Keys whose value is a path that must exist when set.
PATH_KEYS = ("imagenet_dir", "imagenet_labels")


class ProfileError(ValueError):
    """A profile file has an unknown key, a wrong type or a missing path."""


_FRACTION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")


def _numbers(value: Any) -> Any:
    """Option values as YAML gives them, with fractions like ``"4/255"`` read as floats."""
    if isinstance(value, str) and (m := _FRACTION.match(value)):
        return float(m.group(1)) / float(m.group(2))
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


def _components(value: Any, extra: dict, key: str, extra_key: str, source: str) -> tuple[list[str], dict]:
    """A component list given as names or as a mapping name -> options: (names, {name: options}),
    merged with the ``extra_key`` mapping (an option given twice is an error)."""
    if isinstance(value, dict):
        names, opts = list(value), {}
        for name, o in value.items():
            if o is not None and not isinstance(o, dict):
                raise ProfileError(f"{source}: key '{key}': {name}: options must be a mapping or null, got {o!r}")
            if o:
                opts[name] = _numbers(o)
    else:
        names, opts = list(value), {}
    if not isinstance(extra, dict):
        raise ProfileError(f"{source}: key '{extra_key}' must be a mapping")
    for name, o in extra.items():
        if not isinstance(o, dict):
            raise ProfileError(f"{source}: key '{extra_key}': {name}: options must be a mapping, got {o!r}")
        both = set(o) & set(opts.get(name, {}))
        if both:
            raise ProfileError(f"{source}: {name}: option(s) {sorted(both)} given in both '{key}' and '{extra_key}'")
        opts[name] = {**opts.get(name, {}), **_numbers(o)}
    return names, opts


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_type(value: Any, tp: Any) -> bool:
    origin = get_origin(tp)
    if tp is Any:
        return True
    if tp is None or tp is type(None):
        return value is None
    if origin is Union:
        return any(_check_type(value, t) for t in get_args(tp))
    if origin is list:
        (inner,) = get_args(tp)
        return isinstance(value, list) and all(_check_type(v, inner) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def validate(params: dict[str, Any], source: str = "<parameters>") -> dict[str, Any]:
    """Check ``params`` against :data:`SCHEMA`; return it with paths resolved.

    Raises :class:`ProfileError` naming the key and ``source`` on the first problem found.
    """
    if not isinstance(params, dict):
        raise ProfileError(f"{source}: a profile must be a mapping of keys to values")
    for key, value in params.items():
        if key not in SCHEMA:
            raise ProfileError(f"{source}: unknown key '{key}' (allowed: {', '.join(SCHEMA)})")
        tp, _ = SCHEMA[key]
        if not _check_type(value, tp):
            raise ProfileError(
                f"{source}: key '{key}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}"
            )
    missing = [k for k in SCHEMA if k not in params and k not in OPTIONAL]
    if missing:
        raise ProfileError(f"{source}: missing keys: {', '.join(missing)}")
    out = {**OPTIONAL, **params}
    out["attacks"], out["attack_options"] = _components(out["attacks"], out["attack_options"], "attacks",
                                                        "attack_options", source)
    out["detectors"], grids = _components(out["detectors"], {}, "detectors", "detector_grids", source)
    for name, opts in grids.items():
        if set(opts) - {"grid"} or not isinstance(opts.get("grid", {}), dict):
            raise ProfileError(f"{source}: key 'detectors': {name}: only a 'grid' mapping may be given, got {opts!r}")
    out["detector_grids"] = {**out["detector_grids"], **{n: o["grid"] for n, o in grids.items() if "grid" in o}}
    if out["corpus"] == "imagenet" and not out.get("imagenet_dir"):
        out["imagenet_dir"] = os.environ.get(IMAGENET_ENV)
        if not out["imagenet_dir"]:
            raise ProfileError(
                f"{source}: key 'imagenet_dir' is empty and {IMAGENET_ENV} is not set: "
                "point it at an ImageNet validation folder (see README, 'Paper profile')"
            )
    if out["executor"] is not None and out["executor"] not in cluster.EXECUTORS:
        raise ProfileError(f"{source}: key 'executor' must be null or one of {', '.join(cluster.EXECUTORS)}, "
                           f"got {out['executor']!r}")
    if out["imagenet_build"] not in (None, "classes", "flat"):
        raise ProfileError(f"{source}: key 'imagenet_build' must be null, 'classes' or 'flat', got {out['imagenet_build']!r}")
    for key in PATH_KEYS:
        if key == "imagenet_dir" and out["imagenet_build"]:
            continue  # written by the dataset stage when missing
        if out.get(key) and not paths.resolve(out[key]).exists():
            raise ProfileError(f"{source}: key '{key}': path does not exist: {out[key]}")
    if out["save_format"] not in ("jpeg", "png"):
        raise ProfileError(f"{source}: key 'save_format' must be 'jpeg' or 'png'")
    if len(out["split"]) != 3 or abs(sum(out["split"]) - 1) > 1e-6:
        raise ProfileError(f"{source}: key 'split' must be three fractions summing to 1")
    if out["device"] not in ("cpu", "cuda", "auto"):
        raise ProfileError(f"{source}: key 'device' must be 'cpu', 'cuda' or 'auto'")
    if out["cv_folds"] == 1 or out["cv_folds"] < 0:
        raise ProfileError(f"{source}: key 'cv_folds' must be 0 (fixed split) or >= 2")
    if not 0 < out["target_fpr"] < 1:
        raise ProfileError(f"{source}: key 'target_fpr' must be in (0, 1)")
    if out["format_check_n"] < 0:
        raise ProfileError(f"{source}: key 'format_check_n' must be >= 0 (0 = all)")
    if out["numerics"] not in ("pinned", "native"):
        raise ProfileError(f"{source}: key 'numerics' must be 'pinned' or 'native', got {out['numerics']!r}")
    if out["threads"] < 0:
        raise ProfileError(f"{source}: key 'threads' must be >= 0 (0 = one per core)")
    if out["attack_threads"] < 0:
        raise ProfileError(f"{source}: key 'attack_threads' must be >= 0 (0 = torch's default)")
    if out["batch_size"] < 0:
        raise ProfileError(f"{source}: key 'batch_size' must be >= 0 (0 = auto)")
    if out["adaptive_photos"] not in ("all", "full-size"):
        raise ProfileError(f"{source}: key 'adaptive_photos' must be 'all' or 'full-size', got {out['adaptive_photos']!r}")
    for name, opts in (out["adaptive_attacks"] or {}).items():
        if opts is not None and (not isinstance(opts, dict) or set(opts) - {"eps", "steps", "n"}):
            raise ProfileError(f"{source}: key 'adaptive_attacks': {name}: options must be null or a mapping of "
                               f"eps, steps, n; got {opts!r}")
    conv = out["adaptive_convergence"] or {}
    if set(conv) - {"n", "eps", "steps", "restarts", "attacks"}:
        raise ProfileError(f"{source}: key 'adaptive_convergence' takes n, eps, steps, restarts, attacks; got "
                           f"{sorted(conv)}")
    if out["adaptive_restarts"] < 1 or out["adaptive_steps"] < 1 or out["adaptive_queries"] < 1:
        raise ProfileError(f"{source}: keys 'adaptive_steps', 'adaptive_restarts', 'adaptive_queries' must be >= 1")
    if out["batch_size"] == 0:
        out["batch_size"] = auto_batch_size(out["device"])
    return out


def profile_path(name_or_path: str | os.PathLike) -> Path:
    """``'demo'`` -> ``params/demo.yaml``; an existing path is returned as it is."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return paths.PARAMS_DIR / f"{name_or_path}.yaml"


def _extended(params: Any, source: str, seen: tuple[str, ...] = ()) -> Any:
    """``params`` on top of the keys of the profile it ``extends`` (recursively)."""
    if not isinstance(params, dict) or not params.get("extends"):
        return params
    base_name = params["extends"]
    if not isinstance(base_name, str) or base_name in seen:
        raise ProfileError(f"{source}: key 'extends' must name another profile, without a cycle (got {base_name!r})")
    path = profile_path(base_name)
    try:
        base = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ProfileError(f"{source}: key 'extends': cannot read profile {base_name!r} ({path}): {e}") from None
    base = _extended(base, str(path), seen + (base_name,))
    if not isinstance(base, dict):
        raise ProfileError(f"{source}: key 'extends': {path} is not a mapping")
    base = {k: v for k, v in base.items() if k not in ("extends", "notebooks")}
    return {**base, **params}


def read_raw(name_or_path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile file's mapping (on top of the profile it ``extends``) with ``overrides``
    applied, unvalidated and without importing anything ({} when the file is missing or not a
    mapping: :func:`load_profile` reports that)."""
    try:
        raw = _extended(yaml.safe_load(profile_path(name_or_path).read_text()), str(name_or_path))
    except (OSError, yaml.YAMLError, ProfileError):
        return {}
    return {**raw, **(overrides or {})} if isinstance(raw, dict) else {}


def input_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the run whose data and models a run reads: the profile it ``extends``
    (validated), else its own."""
    return load_profile(params["extends"], check=False) if params.get("extends") else params


def load_profile(name_or_path: str | os.PathLike, *, check: bool = True, **overrides: Any) -> dict[str, Any]:
    """Read and validate a profile by name (``smoke``, ``demo``, ``paper``) or path.

    ``overrides``: profile keys whose values replace the file's (``load_profile("demo",
    attacks_per_image=1)``); an unknown key stops with a :class:`ProfileError` naming it. A run
    with overrides writes its results under ``<profile>-<hash>`` (:func:`run_name`), never into
    the profile's own folders. ``check``: also check the named components against their
    registries (:func:`advlib.components.check`; imports torch and Foolbox).
    """
    path = profile_path(name_or_path)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in paths.PARAMS_DIR.glob("*.yaml")))
        raise ProfileError(f"{path}: no such profile (known: {known})")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML: {e}") from e
    source = str(path)
    params = _extended(params, source)
    if overrides:
        unknown = [k for k in overrides if k not in SCHEMA]
        if unknown:
            raise ProfileError(f"{path}: override of unknown key '{unknown[0]}' (allowed: {', '.join(SCHEMA)})")
        if isinstance(params, dict):
            params = {**params, **overrides}
        source += f" with overrides {', '.join(overrides)}"
    out = validate(params, source=source)
    if check:
        # local: the registries load torch and Foolbox, only when the check is asked for
        from . import components

        try:
            components.check(out, source)
        except components.ComponentError as e:
            raise ProfileError(str(e)) from None
    return out


def params_hash(params: dict[str, Any], ignore_prefix: str = "adaptive_") -> str:
    """:func:`fingerprint` of a run's parameters, saved with what the run trains (detectors), so
    that a saved model says which parameters made it. Keys starting with ``ignore_prefix`` (those
    of notebook 05, which runs after the training) are left out, and so are ``extends`` and
    ``notebooks`` (which say how a profile is run, not what it computes)."""
    return fingerprint({k: v for k, v in params.items()
                        if not k.startswith(ignore_prefix) and k not in ("extends", "notebooks") + HOW_KEYS})


#: Keys that say where the work runs, not what it computes: left out of :func:`params_hash` and
#: :func:`run_name` (a run through SLURM writes the same tables as one in this process).
HOW_KEYS = ("executor", "executor_options")


def run_name(params: dict[str, Any]) -> str:
    """Where a run's tables, figures and run files go: the profile's name when ``params`` equal
    ``params/<profile>.yaml`` (validated the same way), else ``<profile>-<hash>`` of the keys
    that differ, so a run with changed parameters never overwrites the profile's committed
    ``tables/<profile>/``. A profile without a file (a custom or test profile) keeps its name."""
    name = params["profile"]
    path = paths.PARAMS_DIR / f"{name}.yaml"
    if not path.exists():
        return name
    base = load_profile(path, check=False)
    diff = {k: params.get(k) for k in sorted(set(base) | set(params))
            if params.get(k) != base.get(k) and k not in HOW_KEYS}
    return name if not diff else f"{name}-{fingerprint(diff, length=8)}"


def out_dirs(params: dict[str, Any] | str) -> dict[str, Path]:
    """The folders of one run (created).

    ``store`` (= ``data/<profile>``) holds what is keyed by the parameters it depends on and is
    shared by every run of the profile: normal and adversarial images, attack shards, the top-5
    cache (``cache``). ``data`` (``data/<run>``), ``models``, ``tables`` and ``figures`` hold
    the run's own outputs, where ``<run>`` is :func:`run_name` (the profile's name unless the
    parameters differ from its file). ``params`` may be a profile name (then ``<run>`` is it).
    """
    run = params if isinstance(params, str) else run_name(params)
    store = paths.store_dir(params)
    dirs = {
        "store": store,
        "cache": store / "cache",
        "data": paths.ROOT / "data" / run,
        "models": paths.ROOT / "data" / run / "models",
        "tables": paths.ROOT / "tables" / run,
        "figures": paths.ROOT / "figures" / run,
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def main(argv: list[str] | None = None) -> int:
    """``python -m advlib.profiles PROFILE``: validate a profile, print it."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m advlib.profiles PROFILE_OR_YAML", file=sys.stderr)
        return 2
    try:
        params = load_profile(args[0])
    except ProfileError as e:
        print(f"profile error: {e}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(params, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
