"""The ``advlib`` command line (also ``python -m advlib``): one way to do each thing.

- ``advlib scan PATH...``: find adversarial images in files and folders with a detector (the one
  shipped with advlib for the classifier, or ``--detector DIR``), one CSV row per file,
  optionally with corrected copies (the paper's heuristic JPEG, Sect. 5.2): :mod:`advlib.scan`;
- ``advlib reproduce [PROFILE]``: the five notebooks on a profile (:mod:`advlib.run`);
- ``advlib check-profile FILE_OR_NAME``: validate a profile and print its parameters;
- ``advlib bench ...``: the speed figures (:mod:`advlib.bench`).

:func:`main` takes the arguments and returns the exit status (0 fine, 1 some files unreadable
or a notebook failed, 2 bad arguments); it never calls ``sys.exit``. ``--help`` loads no torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

# Each command imports what it needs inside its function: ``advlib --help`` and ``advlib scan
# --help`` load no torch.


def cmd_scan(argv: Sequence[str]) -> int:
    """``advlib scan``: :func:`advlib.scan.app.main`."""
    from .scan.app import main as scan_main

    return scan_main(argv)


def cmd_reproduce(argv: Sequence[str]) -> int:
    """``advlib reproduce [PROFILE] [NOTEBOOK ...] [--set KEY=VALUE ...]`` (:func:`advlib.run.reproduce`)."""
    from . import run
    from .cluster import EXECUTORS

    p = argparse.ArgumentParser(
        prog="advlib reproduce", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the notebooks (papermill) on a profile: tables/<run>/, figures/<run>/, executed copies in "
                    "build/<run>/.\nBefore the first notebook the profile and its inputs (classifier weights, "
                    "ImageNet folder) are checked\nand everything missing is named; each notebook shows a progress "
                    "bar of its cells.",
        epilog="At the end every compared table is checked against tests/reference/<profile>/ (tables/<run>/"
               "reproducibility.csv) and the README's statements on the new tables (tables/<run>/claims.csv).\n"
               "exit status: 0 done, 1 a notebook failed (its cell's error is printed) or --strict and a table beyond "
               "its tolerance, 2 bad profile or missing inputs")
    p.add_argument("profile", nargs="?", default="demo", help="a name of params/ (smoke, demo, paper) or a YAML file "
                   "(default demo)")
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help=f"default: all ({', '.join(run.NOTEBOOKS)})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile key (value read as YAML), e.g. --set attacks_per_image=1")
    p.add_argument("--strict", action="store_true",
                   help="a table beyond the measured tolerance of its reference (tests/reference/<profile>/) fails "
                        "the run (default: reported in the end summary; the smoke profile is always strict)")
    p.add_argument("--numerics", choices=["pinned", "native"],
                   help="CPU numerics (default: the profile's, pinned: every library's AVX2 path, the same numbers on "
                        "any x86 CPU; native: fastest)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads of every notebook (default: the profile's "
                   "threads; 0 = one per core)")
    p.add_argument("--executor", choices=EXECUTORS,
                   help="notebook 01's attack shards and notebook 02's feature passes as submitit jobs: local "
                        "subprocesses or SLURM job arrays (profile key executor; submitit parameters: --set "
                        "executor_options='{timeout_min: 240, slurm_partition: gpu, gpus_per_node: 1}'); the "
                        "tables are the same and go to the same folders")
    p.add_argument("--no-progress", action="store_true", help="no status line")
    args = p.parse_intermixed_args(argv)
    try:
        overrides = dict(run.parse_set(kv) for kv in args.set)
    except ValueError as e:
        p.error(str(e))
    if args.executor:
        overrides["executor"] = args.executor
    from .runtime import NUMERICS_ENV, THREADS_ENV

    if args.numerics:
        os.environ[NUMERICS_ENV] = args.numerics
    if args.threads is not None:
        if args.threads < 0:
            p.error(f"--threads must be >= 0 (0 = one per core), got {args.threads}")
        os.environ[THREADS_ENV] = str(args.threads)
    return run.reproduce(args.profile, args.notebooks or None, overrides, progress=not args.no_progress,
                         strict=args.strict)


def cmd_check_profile(argv: Sequence[str]) -> int:
    """``advlib check-profile FILE_OR_NAME``: the normalised parameters (YAML), or the error and exit 2."""
    import yaml

    from . import profiles

    p = argparse.ArgumentParser(prog="advlib check-profile",
                                description="Validate a profile (keys, types, paths, component names) and print "
                                            "its normalised parameters.")
    p.add_argument("profile", metavar="FILE_OR_NAME", help="a name of params/ (smoke, demo, paper) or a YAML file")
    args = p.parse_args(argv)
    try:
        params = profiles.load_profile(args.profile)
    except profiles.ProfileError as e:
        print(f"profile error: {e}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(params, sort_keys=False), end="")
    return 0


def cmd_bench(argv: Sequence[str]) -> int:
    """``advlib bench ...``: :func:`advlib.bench.main` with the same arguments."""
    from . import bench

    bench.main(list(argv))
    return 0


#: command -> (function of the remaining arguments returning the exit status, one-line summary)
COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "scan": (cmd_scan, "find (and correct) adversarial images in files and folders; CSV report"),
    "reproduce": (cmd_reproduce, "run the five notebooks on a profile (make reproduce)"),
    "check-profile": (cmd_check_profile, "validate a profile and print its parameters"),
    "bench": (cmd_bench, "speed figures into BENCHMARKS.md (make bench)"),
}


def usage() -> str:
    """The top-level help."""
    from . import __version__

    cmds = "\n".join(f"  {name:<15} {summary_}" for name, (_, summary_) in COMMANDS.items())
    return (f"usage: advlib COMMAND [ARGS ...]   (also: python -m advlib)\n\n"
            f"advlib {__version__}: detecting and correcting adversarial images with image processing operations\n"
            f"(Nguyen et al., IEICE 2022), reproduced.\n\ncommands:\n{cmds}\n\n"
            f"'advlib COMMAND --help' describes a command.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``advlib`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        from . import __version__

        print(f"advlib {__version__}")
        return 0
    if args[0] not in COMMANDS:
        print(f"advlib: unknown command {args[0]!r} (commands: {', '.join(COMMANDS)}; see advlib --help)",
              file=sys.stderr)
        return 2
    try:
        return int(COMMANDS[args[0]][0](args[1:]) or 0)
    except SystemExit as e:  # argparse: --help (0) and usage errors (2), already printed
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


if __name__ == "__main__":
    sys.exit(main())
