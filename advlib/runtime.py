"""Where and how a run computes: device, torch threads, and pinned CPU numerics.

**Pinned numerics.** On a CPU, the float32 results of the classifier (and so an image just
across the top-5 boundary after 8-bit rounding and JPEG) depend on the code path each library
picks for the CPU: oneDNN's convolution kernels (AVX2 / AVX-512 / AMX), ATen's vectorised
kernels, MKL's matrix product (the classifier's last layer), numpy's and OpenBLAS's SIMD loops
(scikit-learn's detectors), and on the number of threads that split the reductions. Measured on
the demo (README, "Reproducibility"): an Intel Xeon with AVX-512 and the AMD EPYC that made the
committed tables differ in 10 of 48 Table 1 counts; the same Xeon restricted to the AVX2 code
paths reproduces the EPYC's Table 1 exactly.

``numerics: pinned`` (every profile's default) therefore restricts every library to its AVX2
code path, which every x86-64 CPU since 2013 (Intel Haswell) / 2017 (AMD Zen) has, through the
environment variables of :data:`PINNED_ENV`, and runs on a fixed number of threads
(``threads``). They must be set before the libraries initialise, which happens at the first
convolution, matrix product or ``import numpy``: :func:`pin_numerics` sets them and then checks
that they are in effect, so it is called first, by :func:`advlib.notebook.setup` in every
notebook and by ``advlib reproduce`` for the kernels it starts. ``numerics: native`` (or
``ADVLIB_NUMERICS=native``) leaves every library its fastest path: on an AVX-512 CPU the
attacks run about 1.3x faster and the numbers move within the stated tolerances.

On other processors (ARM: Apple silicon, Graviton) there is nothing to pin: the run is
``native`` and the tables differ from the committed ones within the tolerances.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata

# torch, numpy, threadpoolctl and tqdm are imported inside the functions that need them: the
# numerics must be pinned (pin_numerics) before torch and numpy load.
from typing import Any

#: ``numerics`` values: ``pinned`` (the AVX2 code paths of every library, on x86-64) or ``native``.
NUMERICS = ("pinned", "native")

#: Environment variable that overrides the profile's ``numerics`` (the CI's second pass uses it).
NUMERICS_ENV = "ADVLIB_NUMERICS"

#: Environment variable that overrides the profile's ``threads``.
THREADS_ENV = "ADVLIB_THREADS"


def _numpy_avx512_features() -> str:
    """numpy's names of its AVX-512 dispatch targets, for ``NPY_DISABLE_CPU_FEATURES`` (the names
    changed in numpy 2.3: one ``X86_V4`` group); read from the installed version, numpy is not imported."""
    try:
        major, minor = (int(p) for p in metadata.version("numpy").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return ""
    if (major, minor) >= (2, 3):
        return "X86_V4 AVX512_ICL AVX512_SPR"
    return "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"


#: The environment of ``numerics: pinned`` on x86-64: each library's AVX2 code path.
PINNED_ENV: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",         # oneDNN: the classifier's convolutions
    "ATEN_CPU_CAPABILITY": "avx2",        # ATen's vectorised kernels (batch norm, activations, pooling)
    "MKL_CBWR": "COMPATIBLE,STRICT",      # MKL's sgemm (the classifier's last layer): its one branch that
                                          # gives the same bits on Intel and AMD CPUs (SSE2; the layer is small)
    "OPENBLAS_CORETYPE": "Haswell",       # numpy's and scipy's OpenBLAS: its AVX2 kernels (scikit-learn)
    "NPY_DISABLE_CPU_FEATURES": _numpy_avx512_features(),  # numpy's own SIMD loops: at most AVX2
}

#: Torch threads of the profiles that ship (``threads: 2``): the numbers do not depend on the core count.
DEFAULT_THREADS = 2


def is_x86() -> bool:
    """Whether this is an x86-64 machine (where :data:`PINNED_ENV` applies)."""
    return platform.machine().lower() in ("x86_64", "amd64")


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class Numerics:
    """What :func:`pin_numerics` did: the mode asked for, the mode in effect, and why they differ.

    ``mode``: ``pinned`` or ``native`` as asked; ``in_effect``: what the libraries actually run
    (``pinned`` only when every check passed); ``problems``: one line per library that was
    initialised before the pin (restart the kernel or process and call it first);
    ``threads``: torch threads set (None: left as they were).
    """

    mode: str
    in_effect: str
    threads: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """A short name of the numerics, part of every cache key and of the reproducibility report:
        ``pinned-avx2`` or ``native-<machine>-<torch CPU capability>``."""
        if self.in_effect == "pinned":
            return "pinned-avx2"
        return f"native-{platform.machine().lower()}-{torch_capability().lower()}"

    def describe(self) -> str:
        """One line for a notebook's first output and the report: mode, CPU, threads, problems."""
        what = ("pinned (AVX2 code paths)" if self.in_effect == "pinned"
                else f"native ({torch_capability()} code paths)")
        text = f"numerics {what} on {cpu_name()}, {self.threads or 'default'} torch thread(s)"
        return text + ("; " + "; ".join(self.problems) if self.problems else "")


def torch_capability() -> str:
    """ATen's CPU capability (``AVX2``, ``AVX512``, ``DEFAULT``...); imports torch."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def _check_pinned() -> list[str]:
    """Libraries that do not run their AVX2 path although :data:`PINNED_ENV` is set (they were
    initialised before it): one line each."""
    problems = []
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    if cap != "AVX2":
        problems.append(f"torch runs its {cap} kernels (torch computed its CPU capability before the pin)")
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_info

            archs = {i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"}
            archs.discard(None)
            if archs - {"Haswell"}:
                problems.append(f"OpenBLAS runs its {', '.join(sorted(archs))} kernels (numpy was imported before the pin)")
        except ImportError:
            pass
    return problems


def resolve_numerics(mode: str | None = None) -> str:
    """The numerics mode to use: ``ADVLIB_NUMERICS`` if set, else ``mode``, else ``pinned``;
    ``ValueError`` naming the value otherwise."""
    value = os.environ.get(NUMERICS_ENV) or mode or "pinned"
    if value not in NUMERICS:
        where = NUMERICS_ENV if os.environ.get(NUMERICS_ENV) else "numerics"
        raise ValueError(f"{where} must be one of {', '.join(NUMERICS)}, got {value!r}")
    return value


def resolve_threads(threads: int | None = None) -> int | None:
    """Torch threads to use: ``ADVLIB_THREADS`` if set, else ``threads``; 0 or None: torch's
    default (one per core). ``ValueError`` naming the value when it is not an integer >= 0."""
    raw = os.environ.get(THREADS_ENV)
    value: object = raw if raw not in (None, "") else threads
    try:
        n = int(value) if value is not None else 0
    except (TypeError, ValueError):
        n = -1
    if n < 0 or isinstance(value, bool):
        where = THREADS_ENV if raw not in (None, "") else "threads"
        raise ValueError(f"{where} must be an integer >= 0 (0 = one per core), got {value!r}")
    return n or None


def environment(mode: str | None = "pinned", threads: int | None = None) -> dict[str, str]:
    """The environment variables a child process (a notebook kernel, a submitit job) needs to start
    with ``mode``'s numerics and ``threads``: :data:`PINNED_ENV` for ``pinned`` on x86-64, and
    the thread counts; {} for ``native`` with default threads. Changes nothing."""
    env = {k: v for k, v in PINNED_ENV.items() if v} if resolve_numerics(mode) == "pinned" and is_x86() else {}
    n = resolve_threads(threads)
    if n is not None:
        env.update({"OPENBLAS_NUM_THREADS": str(n), THREADS_ENV: str(n)})
    return env


def pin_numerics(mode: str | None = "pinned", threads: int | None = None, *, quiet: bool = False) -> Numerics:
    """Apply a numerics mode (:data:`NUMERICS`; ``ADVLIB_NUMERICS`` overrides it) and a torch
    thread count (``ADVLIB_THREADS`` overrides it; 0/None: unchanged) to this process.

    ``pinned`` on x86-64 sets :data:`PINNED_ENV` (overriding what the environment had: the pin
    is the point) and checks that torch (and OpenBLAS, if numpy is loaded) now run their AVX2
    paths; a library initialised earlier is reported in ``problems`` and, unless ``quiet``, in a
    warning. ``native`` changes nothing. Child processes started afterwards (papermill's
    kernels, submitit's local jobs) inherit the environment. Returns :class:`Numerics`.
    """
    asked = resolve_numerics(mode)
    n = resolve_threads(threads)
    result = Numerics(asked, "native", n)
    if asked == "pinned":
        if not is_x86():
            result.problems.append(f"nothing to pin on {platform.machine()} (the pin is x86-64's AVX2 paths)")
        else:
            os.environ.update({k: v for k, v in PINNED_ENV.items() if v})
            result.problems += _check_pinned()
            result.in_effect = "pinned" if not result.problems else "native"
    if n is not None:
        if result.in_effect == "pinned" or asked == "pinned":
            os.environ["OPENBLAS_NUM_THREADS"] = str(n)  # numpy's BLAS, read when numpy loads
        import torch

        torch.set_num_threads(n)
    if result.problems and not quiet:
        warnings.warn("advlib numerics: " + "; ".join(result.problems)
                      + " (restart the kernel and run the setup cell first)", RuntimeWarning, stacklevel=2)
    return result


def numerics_id() -> str:
    """:attr:`Numerics.id` of this process as it is now (without changing anything): part of
    every cache key, so that results computed with other numerics are never mixed in."""
    pinned = is_x86() and all(os.environ.get(k) == v for k, v in PINNED_ENV.items() if v) and \
        torch_capability() == "AVX2"
    return Numerics("pinned" if pinned else "native", "pinned" if pinned else "native").id


# --------------------------------------------------------------------------- device, threads, allocator


#: Classifier batch sizes of ``batch_size: 0``. On a 2-core CPU efficientnet-lite0 runs about
#: 3x faster at batch 4 than at batch 64 (cache effects; BENCHMARKS.md), on a GPU large batches win.
CPU_BATCH, GPU_BATCH = 4, 128


def auto_batch_size(device: str) -> int:
    """The batch size ``0`` stands for on ``device`` ('cpu', 'cuda' or 'auto')."""
    return CPU_BATCH if resolve_device(device) == "cpu" else GPU_BATCH


_ALLOCATOR_TUNED = False


def tune_allocator() -> bool:
    """Keep large freed blocks in the process for CPU inference (glibc only, once per process).

    glibc maps every allocation above its (dynamic) mmap threshold afresh and returns freed heap
    above its trim threshold to the OS, so the classifier's activations and the operations'
    buffers page-fault again batch after batch until the dynamic thresholds settle. Raising
    both thresholds (``mallopt``: mmap 32 MiB, trim 256 MiB) made a first
    :func:`advlib.features.top5_under_ops` pass over 32 photos 2-6% faster on 2 CPU cores,
    later passes 1-2% (BENCHMARKS.md). Skipped when ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` or
    ``ADVLIB_NO_MALLOPT`` are set, or off glibc. Returns whether the thresholds were set.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "ADVLIB_NO_MALLOPT")):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1 and libc.mallopt(m_trim_threshold, 256 << 20) == 1
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok


@contextlib.contextmanager
def torch_threads(n: int | None):
    """``torch.set_num_threads(n)`` for a block (None: unchanged), restored after.

    Small networks trained on the CPU (the stats-CNN, the fine-tuned head of the raw-image
    baseline) run faster on one intra-op thread: OpenMP's second thread mostly waits.
    """
    import numpy as np
    import torch

    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"num_threads must be None or an integer >= 1, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; 'cuda' without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU")
    return device


# --------------------------------------------------------------------------- progress of long loops

#: Environment variable naming a JSON file where :func:`progress` bars report (``advlib
#: reproduce`` sets it for its kernels and shows the current loop beside the notebook's cells).
PROGRESS_ENV = "ADVLIB_PROGRESS"

_REPORTING: dict[type, type] = {}


def _write_progress(bar: Any, final: bool = False) -> None:
    path = os.environ.get(PROGRESS_ENV)
    if not path or getattr(bar, "disable", False):  # a disabled bar has no desc, counts or clock
        return
    now = time.time()
    if not final and now - getattr(bar, "_advlib_written", 0.0) < 1.0:
        return
    bar._advlib_written = now
    state = {"stage": str(bar.desc or ""), "done": int(bar.n), "total": int(bar.total) if bar.total else None,
             "elapsed": float(now - bar.start_t), "time": now, "closed": final}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, path)
    except OSError:
        pass


def progress(iterable: Any = None, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` progress bar (same arguments) that also reports its state to the file named
    by ``ADVLIB_PROGRESS`` (at most once a second), so that ``advlib reproduce`` can show the
    shards, images or folds of the current notebook and the time left. The library's long loops
    use it; with the variable unset it is plain tqdm."""
    from tqdm.auto import tqdm

    cls = _REPORTING.get(tqdm)
    if cls is None:
        class Reporting(tqdm):  # type: ignore[misc, valid-type]
            def update(self, n=1):
                out = super().update(n)
                _write_progress(self)
                return out

            def close(self):
                if not getattr(self, "_advlib_closed", False):
                    self._advlib_closed = True
                    if getattr(self, "total", None) is not None:
                        _write_progress(self, final=True)
                super().close()

        cls = _REPORTING[tqdm] = Reporting
    bar = cls(iterable, **kwargs)
    _write_progress(bar, final=True)
    return bar
