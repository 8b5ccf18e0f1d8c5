"""The paper's 38 image processing operations (Section 3), batched and exact to Pillow.

Each operation exists twice:

- :func:`apply_pil` is the reference: one ``PIL.Image``, exactly the Pillow calls of the
  authors' code (JPEG save/decode, ``ImageFilter.GaussianBlur``, ``Image.rotate``,
  ``Image.resize(..., NEAREST)``, the scaled image is not resized back).
- :func:`apply` takes a uint8 batch (B, 3, H, W) on any device and returns the same pixels as
  Pillow, bit for bit:

  * JPEG: torchvision's libjpeg-turbo codec (same quantisation tables and 4:2:0 subsampling as
    Pillow, byte-identical files) on the CPU, optionally in a thread pool;
  * Gaussian blur: Pillow's three-pass extended box blur (``libImaging/BoxBlur.c``) in integer
    arithmetic (cumulative sums on int64, the same 8.24 fixed-point weights and rounding);
  * rotation and scaling: Pillow's nearest-neighbour affine sampling (16.16 fixed point for
    rotations, ``ImagingScaleAffine``'s accumulated double coordinates for scaling,
    ``libImaging/Geometry.c``) precomputed as an index table per (H, W, operation) and applied
    with one gather per batch.

:func:`check_exactness` compares both paths on one image and fails loudly if a library
upgrade breaks the equality.
"""

from __future__ import annotations

import io
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter

from .store import check_images, from_pil as _from_pil, to_pil as _to_pil

__all__ = ["Operation", "OperationGroup", "OPERATION_GROUPS", "OPERATIONS", "GROUPS", "apply", "apply_many",
           "apply_pil", "check_exactness", "output_size", "register", "jpeg_name", "jpeg_qualities", "names_of"]


@dataclass(frozen=True)
class Operation:
    """One operation: ``group`` is jpeg / blur / rotation / scaling; ``value`` its parameter
    (JPEG quality, blur radius in pixels, rotation angle in degrees counter-clockwise, scale)."""

    name: str
    group: str
    value: float

    @property
    def kind(self) -> "OperationGroup":
        """Its :class:`OperationGroup` (what the operation does), from :data:`OPERATION_GROUPS`."""
        return OPERATION_GROUPS[self.group]

    def __repr__(self) -> str:
        return f"Operation({self.name!r}, group={self.group!r}, value={self.value!r})"


@dataclass(frozen=True)
class OperationGroup:
    """What the operations of one group do, dispatched by :func:`apply_pil`, :func:`apply`,
    :func:`apply_many` and :func:`output_size` (no ``if group == ...`` chains).

    ``pil(image, value)``: the reference, the authors' Pillow call on one ``PIL.Image``.
    ``batched(images, op, workers)``: the same pixels on a uint8 batch, any device.
    ``one_cpu(chw, value)``: optional faster exact path for one CPU image inside
    :func:`apply_many`'s workers (else ``pil``). ``resizes``: the output is ``value`` times the
    input size. ``title``: the figures' axis title.
    """

    name: str
    title: str
    pil: Callable[[Image.Image, float], Image.Image]
    batched: Callable[[torch.Tensor, "Operation", int], torch.Tensor]
    one_cpu: Callable[[torch.Tensor, float], torch.Tensor] | None = None
    resizes: bool = False

    def size(self, height: int, width: int, value: float) -> tuple[int, int]:
        return (int(height * value), int(width * value)) if self.resizes else (height, width)


#: Version of the operations' code, part of the top-5 cache key (:mod:`advlib.features`): bump it
#: when a change can alter an operation's output pixels.
VERSION = 1

JPEG_QUALITIES = tuple(range(100, 24, -5))  # 100, 95, ..., 25 (16 ops)
BLUR_RADII = (2, 3, 4, 5)
ROTATION_ANGLES = tuple(range(1, 9))
SCALES = (0.75, 0.8, 0.85, 0.9, 0.95, 1.05, 1.1, 1.15, 1.2, 1.25)

#: The 38 operations in the paper's order: name -> :class:`Operation`.
OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        [Operation(f"jpeg_{q}", "jpeg", q) for q in JPEG_QUALITIES]
        + [Operation(f"blur_{r}", "blur", r) for r in BLUR_RADII]
        + [Operation(f"rotate_{a}", "rotation", a) for a in ROTATION_ANGLES]
        + [Operation(f"scale_{s:.2f}", "scaling", s) for s in SCALES]
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


def _op(name: str) -> Operation:
    if name not in OPERATIONS:
        raise KeyError(f"unknown operation {name!r} (known: {', '.join(OPERATIONS)})")
    return OPERATIONS[name]


def output_size(name: str, height: int, width: int) -> tuple[int, int]:
    """(H', W') of operation ``name`` applied to an H x W image (only scaling changes it)."""
    op = _op(name)
    return op.kind.size(height, width, op.value)


# --------------------------------------------------------------------------- reference (Pillow)

def apply_pil(name: str, image: Image.Image) -> Image.Image:
    """Operation ``name`` on one RGB ``PIL.Image``, exactly as the authors' code does it."""
    op = _op(name)
    return op.kind.pil(image, op.value)


def _pil_jpeg(image: Image.Image, quality: float) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def _pil_blur(image: Image.Image, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def _pil_rotate(image: Image.Image, angle: float) -> Image.Image:
    return image.rotate(angle)


def _pil_scale(image: Image.Image, scale: float) -> Image.Image:
    w, h = image.size
    return image.resize((int(w * scale), int(h * scale)), Image.NEAREST)


# --------------------------------------------------------------------------- batched, exact

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
    op = _op(name)
    check_images(images)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if images.shape[0] == 0:
        h, w = output_size(name, images.shape[2], images.shape[3])
        return images.new_empty(0, 3, h, w)
    if backend == "pillow" or (backend == "auto" and images.device.type == "cpu"):
        return apply_many([name], images, workers=workers, backend="pillow")[0]
    return op.kind.batched(images, op, workers)


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
        _op(name)
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
            if op.kind.one_cpu is not None:
                np.copyto(view[i], op.kind.one_cpu(chw, op.value).permute(1, 2, 0).numpy())
            else:
                np.copyto(view[i], np.asarray(op.kind.pil(pil, op.value)))

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


# ---- JPEG

# torchvision 0.29 marks its codec deprecated (in favour of TorchCodec); it still is libjpeg-turbo.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


@lru_cache(maxsize=None)
def _jpeg_codec():
    """(encode(chw, quality) -> bytes tensor, decode(bytes tensor) -> chw) with torchvision's
    libjpeg-turbo ops, called directly (no per-call deprecation warning or Python wrapper
    overhead inside the worker threads); None when torchvision has no codec."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg
    except ImportError:
        return None
    image_ops = getattr(torch.ops, "image", None)
    try:
        enc, dec = image_ops.encode_jpeg, image_ops.decode_jpeg
    except (AttributeError, RuntimeError):  # a torchvision without the registered ops
        return (lambda x, quality: encode_jpeg(x, quality=quality)), decode_jpeg
    unchanged = ImageReadMode.UNCHANGED.value
    return (lambda x, quality: enc(x, quality)), (lambda data: dec(data, unchanged, False))


def _jpeg_round_trip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of one CPU uint8 (3, H, W) image with torchvision's codec (the same
    libjpeg-turbo through Pillow if torchvision has none)."""
    codec = _jpeg_codec()
    if codec is None:
        return _from_pil(apply_pil(jpeg_name(quality), _to_pil(image)))
    encode, decode = codec
    return decode(encode(image, quality=quality))


def _jpeg_cpu(images: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of a CPU uint8 batch, one image at a time."""
    return torch.stack([_jpeg_round_trip(im, quality) for im in images])


def _jpeg(images: torch.Tensor, quality: int, workers: int) -> torch.Tensor:
    cpu = images.cpu()
    if workers > 1 and len(cpu) > 1:  # the codec releases the GIL: one image per task
        with ThreadPoolExecutor(workers) as pool:
            out = torch.stack(list(pool.map(lambda im: _jpeg_cpu(im[None], quality)[0], cpu)))
    else:
        out = _jpeg_cpu(cpu, quality)
    return out.to(images.device)


# ---- Gaussian blur (Pillow's extended box blur, BoxBlur.c)

def _box_radius(radius: float, passes: int = 3) -> float:
    """Pillow's ``_gaussian_blur_radius``: the extended-box radius, in C float32 arithmetic."""
    f = np.float32
    sigma2 = f(radius) * f(radius) / f(passes)
    big_l = f(math.sqrt(12.0 * float(sigma2) + 1.0))
    small_l = f(math.floor((float(big_l) - 1.0) / 2.0))
    a = (f(2) * small_l + f(1)) * (small_l * (small_l + f(1)) - f(3) * sigma2)
    a = a / (f(6) * (sigma2 - (small_l + f(1)) * (small_l + f(1))))
    return float(small_l + a)


@lru_cache(maxsize=None)
def _box_weights(radius: float) -> tuple[int, int, int]:
    """(integer radius, inner weight ww, far weight fw) of one pass, 8.24 fixed point."""
    f = np.float32
    r = int(radius)
    ww = int(f(1 << 24) / (f(radius) * f(2) + f(1)))
    fw = ((1 << 24) - (2 * r + 1) * ww) // 2
    return r, ww, fw


def _box_pass(x: torch.Tensor, r: int, ww: int, fw: int) -> torch.Tensor:
    """One ``ImagingLineBoxBlur`` pass along the last dim of ``x`` (N, M, L) -> float64 (N, M, L).

    out[i] = round((ww * (x[i-r] + ... + x[i+r]) + fw * (x[i-r-1] + x[i+r+1])) / 2**24), edge
    pixels repeated, written with the cumulative sum c of the padded row as
    fw * (c[i+2r+2] - c[i-1]) + (ww - fw) * (c[i+2r+1] - c[i]). The weights are scaled by
    2**-24 (a power of two); every intermediate needs < 53 bits, so float64 is exact.
    """
    n = x.shape[-1]
    edge = (*x.shape[:-1], r + 1)  # the first and last pixels, repeated r + 1 times
    padded = torch.cat([x[..., :1].expand(edge), x, x[..., -1:].expand(edge)], -1)
    c = padded.cumsum(-1, dtype=torch.float64)
    a, b = fw * 2.0 ** -24, (ww - fw) * 2.0 ** -24
    bulk = torch.mul(c[..., 2 * r + 2:], a)
    bulk.add_(c[..., 2 * r + 1:-1], alpha=b).sub_(c[..., :n], alpha=b)
    bulk[..., 1:].sub_(c[..., :n - 1], alpha=a)
    return bulk.add_(0.5).floor_()


def _gaussian_blur(images: torch.Tensor, radius: float, passes: int = 3, chunk: int | None = None) -> torch.Tensor:
    """``ImageFilter.GaussianBlur(radius)``: ``passes`` horizontal then vertical box passes,
    each rounded to 8 bits, on ``chunk`` images at a time (default: 4 on the CPU, small enough
    to stay in cache; 64 on a GPU, large enough to fill it)."""
    chunk = chunk or (4 if images.device.type == "cpu" else 64)
    r, ww, fw = _box_weights(_box_radius(radius, passes))
    b, ch, h, w = images.shape
    out = torch.empty_like(images)
    for start in range(0, b, chunk):
        x = images[start:start + chunk].reshape(-1, h, w)
        for _ in range(passes):
            x = _box_pass(x, r, ww, fw)
        x = x.to(torch.uint8).transpose(1, 2).contiguous()
        for _ in range(passes):
            x = _box_pass(x, r, ww, fw)
        out[start:start + chunk] = x.to(torch.uint8).transpose(1, 2).reshape(-1, ch, h, w)
    return out


# ---- rotation and scaling (Pillow's nearest-neighbour affine sampling, Geometry.c)

def _rotation_table(angle: float, height: int, width: int) -> np.ndarray:
    """Source pixel (flat index, -1 = black) of each output pixel of ``Image.rotate(angle)``."""
    # Image.rotate: the inverse matrix, rounded to 15 decimals, about the centre (w/2, h/2).
    cx, cy = width / 2, height / 2
    t = -math.radians(angle % 360.0)
    a, b, d, e = round(math.cos(t), 15), round(math.sin(t), 15), round(-math.sin(t), 15), round(math.cos(t), 15)
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    corners = [(0, 0), (width, height), (0, height), (width, 0)]
    if not all(abs(x * a + y * b + c) < 32768.0 and abs(x * d + y * e + f) < 32768.0 for x, y in corners):
        raise ValueError(f"rotation of a {height}x{width} image exceeds Pillow's fixed-point range")

    def fix(v: float) -> int:  # 16.16 fixed point, FLOOR(v * 65536 + 0.5)
        return math.floor(v * 65536.0 + 0.5)

    a0, a1, a3, a4 = fix(a), fix(b), fix(d), fix(e)
    a2, a5 = fix(c + a * 0.5 + b * 0.5), fix(f + d * 0.5 + e * 0.5)
    ys, xs = np.meshgrid(np.arange(height, dtype=np.int64), np.arange(width, dtype=np.int64), indexing="ij")
    xin = (a2 + ys * a1 + xs * a0) >> 16
    yin = (a5 + ys * a4 + xs * a3) >> 16
    valid = (xin >= 0) & (xin < width) & (yin >= 0) & (yin < height)
    return np.where(valid, yin * width + xin, -1)


def _scale_axis(size_in: int, size_out: int) -> np.ndarray:
    """Source coordinate (-1 = outside) of each output coordinate, as ImagingScaleAffine."""
    step = float(np.float32(size_in)) / size_out  # (double)(box extent, a float) / size
    pos = 0.0 + step * 0.5
    out = np.empty(size_out, dtype=np.int64)
    for i in range(size_out):  # coordinates are accumulated in double, as in C
        k = -1 if pos < 0.0 else int(pos)
        out[i] = k if 0 <= k < size_in else -1
        pos += step
    return out


def _scale_table(scale: float, height: int, width: int) -> np.ndarray:
    """Source pixel (flat index, -1 = black) of each output pixel of ``resize(..., NEAREST)``."""
    h2, w2 = int(height * scale), int(width * scale)
    if (h2, w2) == (height, width):
        return np.arange(height * width, dtype=np.int64).reshape(height, width)
    ys, xs = _scale_axis(height, h2), _scale_axis(width, w2)
    valid = (ys[:, None] >= 0) & (xs[None, :] >= 0)
    return np.where(valid, ys[:, None] * width + xs[None, :], -1)


@lru_cache(maxsize=256)
def _index_table(kind: str, value: float, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Flat source index per output pixel (H', W') of a rotation (``kind`` "rotation") or a
    scaling by ``value``; -1 (outside the source) maps to H*W, the extra black pixel."""
    table = {"rotation": _rotation_table, "scaling": _scale_table}[kind](value, height, width)
    table = np.where(table < 0, height * width, table)
    return torch.from_numpy(table).to(device)


def _gather_op(images: torch.Tensor, op: Operation, workers: int = 0) -> torch.Tensor:
    """A rotation or scaling on a batch: one gather through its index table."""
    return _gather(images, _index_table(op.group, op.value, images.shape[2], images.shape[3], images.device))


def _gather(images: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    b, ch, h, w = images.shape
    flat = torch.cat([images.reshape(b, ch, h * w), images.new_zeros(b, ch, 1)], dim=2)
    return flat.index_select(2, table.reshape(-1)).reshape(b, ch, *table.shape)


#: The four kinds of operation by group name: what each does, on Pillow images and batches.
OPERATION_GROUPS: dict[str, OperationGroup] = {g.name: g for g in (
    OperationGroup("jpeg", "JPEG quality", _pil_jpeg, lambda x, op, workers: _jpeg(x, int(op.value), workers),
                   one_cpu=lambda chw, q: _jpeg_round_trip(chw, int(q))),
    OperationGroup("blur", "Gaussian blur radius", _pil_blur,
                   lambda x, op, workers: _gaussian_blur(x, float(op.value))),
    OperationGroup("rotation", "rotation (degrees)", _pil_rotate, _gather_op),
    OperationGroup("scaling", "scale factor", _pil_scale, _gather_op, resizes=True),
)}


# --------------------------------------------------------------------------- exactness check



def check_exactness(image: torch.Tensor, ops: list[str] | None = None, *,
                    device: str | torch.device = "cpu") -> None:
    """Run one uint8 (3, H, W) image through :func:`apply` (on ``device``) and :func:`apply_pil`.

    Checks both batched paths, the exact torch code (``backend="torch"``) and what
    :func:`apply_many` runs by default on ``device``. Raises ``RuntimeError`` naming every
    operation whose pixels differ (e.g. after a Pillow or torchvision upgrade), with the number
    of differing values.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError("image must be a uint8 tensor (3, H, W)")
    names = ops or list(OPERATIONS)
    pil = _to_pil(image)
    batch = image.unsqueeze(0).to(device)
    paths = {"torch": apply_many(names, batch, backend="torch")}
    if batch.device.type == "cpu":  # on a GPU the default path is the torch one
        paths["default"] = apply_many(names, batch)
    bad = []
    for k, name in enumerate(names):
        ref = _from_pil(apply_pil(name, pil))
        for path, outputs in paths.items():
            ours = outputs[k][0].cpu()
            if ours.shape != ref.shape:
                bad.append(f"{name} [{path}] (shape {tuple(ours.shape)} vs Pillow {tuple(ref.shape)})")
            elif not torch.equal(ours, ref):
                bad.append(f"{name} [{path}] ({int((ours != ref).sum())} values differ)")
    if bad:
        raise RuntimeError("batched operations differ from Pillow: " + ", ".join(bad))
