"""What every operation family shares: the :class:`Operation` and :class:`OperationGroup`
records and the straight-through gradient of the differentiable versions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from PIL import Image

from ..store import quantize


@dataclass(frozen=True)
class Operation:
    """One operation: ``group`` is jpeg / blur / rotation / scaling; ``value`` its parameter
    (JPEG quality, blur radius in pixels, rotation angle in degrees counter-clockwise, scale)."""

    name: str
    group: str
    value: float

    def __repr__(self) -> str:
        return f"Operation({self.name!r}, group={self.group!r}, value={self.value!r})"


@dataclass(frozen=True)
class OperationGroup:
    """What the operations of one group do, dispatched by :func:`advlib.ops.apply_pil`,
    :func:`~advlib.ops.apply`, :func:`~advlib.ops.apply_many`, :func:`~advlib.ops.diff_op` and
    :func:`~advlib.ops.output_size` (no ``if group == ...`` chains). Each family module
    (:mod:`.jpeg`, :mod:`.blur`, :mod:`.geometry`) defines its groups.

    ``pil(image, value)``: the reference, the authors' Pillow call on one ``PIL.Image``.
    ``batched(images, op, workers)``: the same pixels on a uint8 batch, any device.
    ``differentiable(x, value, jpeg)``: float [0, 1] (N, 3, H, W) -> the same values on 8-bit
    input, with a gradient (``jpeg``: the JPEG gradient of :data:`advlib.ops.JPEG_GRADIENTS`,
    ignored by the other groups). ``one_cpu(chw, value)``: optional faster exact path for one
    CPU image inside :func:`~advlib.ops.apply_many`'s workers (else ``pil``). ``resizes``: the
    output is ``value`` times the input size. ``title``: the figures' axis title.
    """

    name: str
    title: str
    pil: Callable[[Image.Image, float], Image.Image]
    batched: Callable[[torch.Tensor, "Operation", int], torch.Tensor]
    differentiable: Callable[[torch.Tensor, float, str], torch.Tensor]
    one_cpu: Callable[[torch.Tensor, float], torch.Tensor] | None = None
    resizes: bool = False

    def size(self, height: int, width: int, value: float) -> tuple[int, int]:
        return (int(height * value), int(width * value)) if self.resizes else (height, width)


def straight_through(surrogate: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """The value of ``exact`` with the gradient of ``surrogate`` (same shape)."""
    return surrogate + (exact.detach() - surrogate.detach())


def exact_float(batched: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """An exact uint8 operation ``batched`` on the 8-bit rounding of float [0, 1] ``x``, as float
    [0, 1] on ``x``'s device and dtype (no gradient)."""
    return batched(quantize(x)).to(device=x.device, dtype=x.dtype).div(255)
