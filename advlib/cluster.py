"""Jobs on a cluster or on this machine: the one place that makes a submitit executor.

``make_executor("local" | "slurm", folder, options)``: submitit's ``LocalExecutor`` (real
subprocess jobs here) or a SLURM ``AutoExecutor`` (job arrays; needs ``sbatch``), with
``options`` passed to ``update_parameters`` (``timeout_min``, ``slurm_partition``,
``gpus_per_node``, ``cpus_per_task``, ``mem_gb``, ...). Used by the dataset stage's attack shards
and notebook 02's feature passes (profile keys ``executor`` / ``executor_options``, or
``advlib reproduce --executor``) and by ``advlib scan --executor``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from . import paths
from .runtime import progress as progress_bar

#: The executors a profile's ``executor`` key (or ``--executor``) may name.
EXECUTORS = ("local", "slurm")


class ExecutorError(ValueError):
    """An executor that cannot be made here: unknown kind, no SLURM, a parameter submitit rejects."""


def make_executor(kind: str | None, folder: str | Path, options: dict[str, Any] | None = None,
                  names: tuple[str, str] = ("executor", "executor_options")) -> Any:
    """A submitit executor of ``kind`` (None: None, the work runs in this process) whose job logs
    and pickles go to ``folder``. ``names``: how the caller calls the kind and the options in
    its error messages (a profile's keys, or ``advlib scan``'s flags)."""
    if kind is None:
        return None
    if kind not in EXECUTORS:
        raise ExecutorError(f"{names[0]} must be one of {', '.join(EXECUTORS)} (or null), got {kind!r}")
    try:
        import submitit  # the "cluster" extra
    except ImportError as e:
        raise ExecutorError(f"{names[0]}: submitit is not installed (pip install -e '.[cluster]')") from e
    if kind == "slurm":
        if shutil.which("sbatch") is None:
            raise ExecutorError(f"{names[0]} slurm: no SLURM on this machine (sbatch not found); "
                                f"run it on a login node, or use {names[0]} local")
        executor = submitit.AutoExecutor(folder=Path(folder), cluster="slurm")
    else:
        executor = submitit.LocalExecutor(folder=Path(folder))
    try:
        executor.update_parameters(**(options or {}))
    except (ValueError, TypeError, NameError) as e:
        raise ExecutorError(f"{names[1]}: {e}") from e
    return executor


def for_run(params: dict[str, Any], stage: str) -> Any:
    """The executor of a run's profile (keys ``executor``, ``executor_options``) for ``stage``
    (``attacks``, ``features``), logs in ``data/<profile>/jobs/<stage>``; None without one."""
    kind = params.get("executor")
    return make_executor(kind, paths.store_dir(params) / "jobs" / stage, params.get("executor_options")) if kind else None


def wait(jobs: list[tuple[Any, Any]], progress: bool = True, desc: str = "jobs") -> list[dict[str, str]]:
    """Wait for ``jobs`` (``(what, job)`` pairs) in order; return one ``{"job", "error"}`` row per
    job that failed (the others' results are on disk). A failed job does not stop the others."""
    failures = []
    for what, job in progress_bar(jobs, desc=desc, disable=not progress):
        try:
            job.result()
        except Exception as e:  # noqa: BLE001 - a failed job must not stop the others
            failures.append({"job": str(what), "error": f"{type(e).__name__}: {str(e).strip()[-500:]}"})
    return failures
