"""``advlib scan --executor local|slurm``: the shards of a scan as jobs of submitit (SLURM job arrays,
or local subprocesses), then their reports merged. Each job is ``advlib scan ... --shards N --shard K``
with the same options, so a rerun of the same command resumes every shard from its report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from .. import cluster
from . import UsageError
from .merge import shard_report

#: ``--executor`` values.
EXECUTORS = cluster.EXECUTORS

#: Options of ``advlib scan`` passed on to every shard job as they are (attribute, flag).
_PASSED = (("classifier", "--classifier"), ("detector", "--detector"), ("format", "--format"),
           ("correct", "--correct"), ("threshold", "--threshold"), ("fpr", "--fpr"),
           ("calibration", "--calibration"), ("device", "--device"), ("batch_size", "--batch-size"),
           ("chunk", "--chunk"))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count`` where there is none)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def job_threads(args: argparse.Namespace) -> int:
    """Torch threads of each job: ``--threads`` / ``$ADVLIB_THREADS`` when given, else
    ``--cpus-per-job``, else on the local executor this machine's CPUs shared between the jobs
    (at least 1), on SLURM 1."""
    if args.threads_given:
        return args.threads
    if args.cpus_per_job:
        return args.cpus_per_job
    return max(1, usable_cpus() // args.shards) if args.executor == "local" else 1


def shard_argv(args: argparse.Namespace, shard: int) -> list[str]:
    """The ``advlib scan`` arguments of shard job ``shard``: the PATHs, the passed options,
    ``--shards N --shard K``, the merged report's ``--out``, the job's threads, ``--quiet``."""
    argv = [*args.paths]
    for attr, flag in _PASSED:
        value = getattr(args, attr)
        if value is not None and value is not False:
            argv += [flag, str(value)]
    return argv + ["--out", args.out, "--shards", str(args.shards), "--shard", str(shard),
                   "--threads", str(job_threads(args)), "--quiet"]


def run_shard(argv: list[str], cwd: str) -> int:
    """A job: ``advlib scan`` with ``argv`` in folder ``cwd`` (the submitting shell's, so that
    relative PATHs and report paths are the same); returns its exit status. Called by
    submitit in the job's process (LocalExecutor: a subprocess; SLURM: an array task)."""
    from .app import main

    os.chdir(cwd)
    return main(argv)


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    """submitit's ``update_parameters`` of ``--timeout-min``, ``--cpus-per-job``, ``--partition``
    and each ``--job-option KEY=VALUE`` (values read as int or float where they are)."""
    params: dict[str, Any] = {"timeout_min": args.timeout_min, "name": "advlib-scan"}
    if args.executor == "slurm":
        params["cpus_per_task"] = args.cpus_per_job or job_threads(args)
        if args.partition:
            params["slurm_partition"] = args.partition
    for item in args.job_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--job-option {item!r}: expected KEY=VALUE (a parameter of submitit's executor)")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        params[key] = value
    return params


def make_executor(args: argparse.Namespace) -> Any:
    """The submitit executor of ``--executor``, logs under ``--jobs-folder``. :class:`UsageError`
    when SLURM is asked for where there is none, or an option is not one of the executor's."""
    folder = Path(args.jobs_folder or f"{args.out}.jobs")
    try:
        return cluster.make_executor(args.executor, folder, _parameters(args), names=("--executor", "--job-option"))
    except cluster.ExecutorError as e:
        raise UsageError(str(e)) from e


def run_jobs(args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    """Submit the ``--shards`` jobs, wait for them (a line as each ends), and return the shard
    reports and one line per job that failed (its exit status or error, and its log folder)."""
    executor = make_executor(args)
    cwd = os.getcwd()
    jobs = executor.map_array(run_shard, [shard_argv(args, k) for k in range(args.shards)], [cwd] * args.shards)
    print(f"{args.shards} {args.executor} job(s) submitted ({job_threads(args)} torch thread(s) each; logs: "
          f"{executor.folder}); rerun the same command to resume", file=sys.stderr)
    failed, pending = [], dict(enumerate(jobs))
    while pending:
        for k, job in list(pending.items()):
            if not job.done():
                continue
            del pending[k]
            try:
                rc = job.result()
            except Exception as e:  # a job that died: its error, and where its log is
                failed.append(f"shard {k} (job {job.job_id}): {type(e).__name__}: {str(e).strip()[-500:]}")
                continue
            if rc not in (0, 1):
                failed.append(f"shard {k} (job {job.job_id}): exit status {rc}; log {job.paths.stderr}")
            print(f"shard {k} done (exit status {rc}); {args.shards - len(pending)} of {args.shards}", file=sys.stderr)
        if pending:
            time.sleep(1.0)
    return [shard_report(args.out, k, args.shards) for k in range(args.shards)], failed
