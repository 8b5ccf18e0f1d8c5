"""The registry of operations (:data:`OPERATIONS`, :data:`GROUPS`, :data:`OPERATION_GROUPS`) and the
functions that apply them by name: the Pillow reference (:func:`apply_pil`), the batched exact
versions (:func:`apply`, :func:`apply_many`) and the differentiable ones (:func:`diff_op`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from ..store import check_images
from . import blur, geometry, jpeg
from .base import Operation, OperationGroup
from .jpeg import JPEG_GRADIENTS

#: Version of the operations' code, part of the top-5 cache key (:mod:`advlib.features`): bump it
#: when a change can alter an operation's output pixels.
VERSION = 1

#: The four kinds of operation by group name: what each does (:class:`OperationGroup`), from
#: the family modules.
OPERATION_GROUPS: dict[str, OperationGroup] = {g.name: g for g in (jpeg.GROUP, blur.GROUP, geometry.ROTATION,
                                                                   geometry.SCALING)}

#: The 38 operations in the paper's order: name -> :class:`Operation`.
OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        [Operation(f"jpeg_{q}", "jpeg", q) for q in jpeg.QUALITIES]
        + [Operation(f"blur_{r}", "blur", r) for r in blur.RADII]
        + [Operation(f"rotate_{a}", "rotation", a) for a in geometry.ANGLES]
        + [Operation(f"scale_{s:.2f}", "scaling", s) for s in geometry.SCALES]
    )
}

_BASE_GROUPS = ("jpeg", "scaling", "blur", "rotation")

#: Operation groups of Table 4 (in its order): group name -> operation names.
GROUPS: dict[str, list[str]] = {g: [n for n, op in OPERATIONS.items() if op.group == g] for g in _BASE_GROUPS}
GROUPS["jpeg+scaling"] = GROUPS["jpeg"] + GROUPS["scaling"]
GROUPS["all"] = list(OPERATIONS)


def register(op: Operation) -> Operation:
    """Add an operation of an existing group (:data:`OPERATION_GROUPS`): to :data:`OPERATIONS`,
    its group and ``all`` in :data:`GROUPS` (and ``jpeg+scaling`` for those two). Bump
    :data:`VERSION` if it changes what an existing name computes. Returns ``op``."""
    if op.group not in OPERATION_GROUPS:
        raise KeyError(f"unknown operation group {op.group!r} (known: {', '.join(OPERATION_GROUPS)})")
    if op.name in OPERATIONS:
        raise KeyError(f"operation {op.name!r} already exists")
    OPERATIONS[op.name] = op
    for g in (op.group, "all") + (("jpeg+scaling",) if op.group in ("jpeg", "scaling") else ()):
        GROUPS[g].append(op.name)
    return op


def jpeg_name(quality: int) -> str:
    """The name of the JPEG operation at ``quality`` (``75`` -> ``"jpeg_75"``); the one place
    such names are built. ``KeyError`` if the registry has no such operation."""
    name = f"jpeg_{int(quality)}"
    if name not in OPERATIONS:
        raise KeyError(f"no JPEG operation at quality {quality} (qualities: {', '.join(map(str, jpeg_qualities()))})")
    return name


def jpeg_qualities() -> list[int]:
    """The qualities of the registered JPEG operations (the paper's: 100, 95, ..., 25)."""
    return [int(OPERATIONS[n].value) for n in GROUPS["jpeg"]]


def names_of(groups: str | list[str] | tuple[str, ...]) -> list[str]:
    """Operation names of ``groups`` (group names of :data:`GROUPS` and/or operation names), in
    the registry's (the paper's) order, each once."""
    wanted: set[str] = set()
    for g in (groups,) if isinstance(groups, str) else groups:
        if g in GROUPS:
            wanted.update(GROUPS[g])
        elif g in OPERATIONS:
            wanted.add(g)
        else:
            raise KeyError(f"{g!r} is neither an operation group ({', '.join(GROUPS)}) nor an operation")
    return [n for n in OPERATIONS if n in wanted]


def get(name: str) -> Operation:
    """The :class:`Operation` named ``name``; ``KeyError`` listing the known names."""
    if name not in OPERATIONS:
        raise KeyError(f"unknown operation {name!r} (known: {', '.join(OPERATIONS)})")
    return OPERATIONS[name]


def output_size(name: str, height: int, width: int) -> tuple[int, int]:
    """(H', W') of operation ``name`` applied to an H x W image (only scaling changes it)."""
    op = get(name)
    return OPERATION_GROUPS[op.group].size(height, width, op.value)


def apply_pil(name: str, image: Image.Image) -> Image.Image:
    """Operation ``name`` on one RGB ``PIL.Image``, exactly as the authors' code does it."""
    op = get(name)
    return OPERATION_GROUPS[op.group].pil(image, op.value)


BACKENDS = ("auto", "torch", "pillow")


def apply(name: str, images: torch.Tensor, *, workers: int = 0, backend: str = "auto") -> torch.Tensor:
    """Operation ``name`` on a batch: uint8 (B, 3, H, W) -> uint8 (B, 3, H', W'), same device.

    Pixel-identical to :func:`apply_pil` on every image. JPEG always runs on the CPU
    (libjpeg-turbo through torchvision's ops; ``workers`` threads when > 1) and comes back to
    the input's device. Blur, rotation and scaling have two exact implementations: ``"torch"``
    (integer box blur and index-table gathers, any device) and ``"pillow"`` (Pillow's own C
    code over the images, ``workers`` threads; Pillow releases the GIL). ``"auto"`` takes torch
    on a GPU and Pillow on the CPU, where Pillow's C loops are the faster of the two.
    """
    op = get(name)
    check_images(images)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if images.shape[0] == 0:
        h, w = output_size(name, images.shape[2], images.shape[3])
        return images.new_empty(0, 3, h, w)
    if backend == "pillow" or (backend == "auto" and images.device.type == "cpu"):
        return apply_many([name], images, workers=workers, backend="pillow")[0]
    return OPERATION_GROUPS[op.group].batched(images, op, workers)


def apply_many(names: list[str], images: torch.Tensor, *, workers: int = 0, backend: str = "auto",
               out: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Several operations on one batch: ``[apply(name, images) for name in names]``, faster.

    On the CPU (``backend`` "auto" or "pillow") each image goes once through all the
    operations, images spread over ``workers`` threads: JPEG with torchvision's libjpeg-turbo
    codec, blur, rotation and scaling with Pillow's C code (both release the GIL). New outputs
    are channels-last uint8 tensors (the layout the CPU classifier wants). On a GPU ("auto") or
    with "torch", each operation runs batched with :func:`apply`.

    ``out``: one preallocated uint8 tensor (B, 3, H', W') per operation, any memory layout, on
    the input's device, written in place and returned (saves the allocation and the copy when
    the caller stacks the outputs anyway).
    """
    for name in names:
        get(name)
    check_images(images)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    b, _, h, w = images.shape
    if out is not None:
        if len(out) != len(names):
            raise ValueError(f"out has {len(out)} tensors for {len(names)} operations")
        for name, o in zip(names, out):
            want = (b, 3, *output_size(name, h, w))
            if not isinstance(o, torch.Tensor) or tuple(o.shape) != want or o.dtype != torch.uint8 \
                    or o.device != images.device:
                got = f"{o.dtype} {tuple(o.shape)} on {o.device}" if isinstance(o, torch.Tensor) else type(o).__name__
                raise ValueError(f"out for {name} must be uint8 {want} on {images.device}, got {got}")
    if backend == "torch" or (backend == "auto" and images.device.type != "cpu") or b == 0:
        results = [apply(name, images, workers=workers, backend="torch") for name in names]
        if out is None:
            return results
        for o, r in zip(out, results):
            o.copy_(r)
        return out

    cpu = images.cpu()
    targets = out if out is not None and images.device.type == "cpu" else [
        torch.empty(b, *output_size(name, h, w), 3, dtype=torch.uint8).permute(0, 3, 1, 2) for name in names]
    # Workers touch only numpy views: a torch copy in a worker thread would start an OpenMP team
    # of its own per thread, competing with the classifier's threads for the cores.
    views = [t.permute(0, 2, 3, 1).numpy() for t in targets]  # (B, H', W', 3) views of the targets
    pixels = cpu.permute(0, 2, 3, 1).numpy()

    def one(i: int) -> None:
        hwc = np.ascontiguousarray(pixels[i])
        pil = Image.fromarray(hwc)
        chw = torch.from_numpy(hwc).permute(2, 0, 1)  # encode_jpeg's own HWC copy is then a no-op
        for name, view in zip(names, views):
            op = OPERATIONS[name]
            kind = OPERATION_GROUPS[op.group]
            if kind.one_cpu is not None:
                np.copyto(view[i], kind.one_cpu(chw, op.value).permute(1, 2, 0).numpy())
            else:
                np.copyto(view[i], np.asarray(kind.pil(pil, op.value)))

    if workers > 1 and b > 1:
        with ThreadPoolExecutor(min(workers, b)) as pool:
            list(pool.map(one, range(b)))
    else:
        for i in range(b):
            one(i)
    if out is None:
        return [t.to(images.device) for t in targets]
    if targets is not out:  # Pillow on the CPU for a GPU batch
        for o, t in zip(out, targets):
            o.copy_(t)
    return out


def diff_op(name: str, x: torch.Tensor, jpeg: str = "bpda") -> torch.Tensor:
    """Operation ``name`` on float [0, 1] pixels (N, 3, H, W), differentiable; returns float
    (N, 3, H', W') on ``x``'s device (H', W' change for scaling).

    On an 8-bit input (``u8.float() / 255``) the forward pass equals ``apply(name, u8) / 255``
    exactly for every operation, except JPEG with ``jpeg="kornia"`` (an approximation, see
    :mod:`advlib.ops.jpeg`). ``jpeg``: the JPEG gradient, one of :data:`JPEG_GRADIENTS`.
    Scaling and rotation are exact gathers (exact gradient); blur has the gradient of its
    unrounded box passes (:mod:`advlib.ops.blur`).
    """
    op = get(name)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4 or x.shape[1] != 3:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a float tensor (N, 3, H, W) of [0, 1] pixels, got {got}")
    if jpeg not in JPEG_GRADIENTS:
        raise ValueError(f"jpeg must be one of {JPEG_GRADIENTS}, got {jpeg!r}")
    return OPERATION_GROUPS[op.group].differentiable(x, op.value, jpeg)
