"""The paper's 38 image processing operations (Section 3), batched and exact to Pillow.

Each operation exists three times, side by side in its family's module (:mod:`.jpeg`,
:mod:`.blur`, :mod:`.geometry`; :mod:`.registry` names them, :mod:`.exactness` checks them):

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

- :func:`diff_op` takes float [0, 1] pixels and is differentiable (the adaptive attacks):
  the same values on 8-bit input, with JPEG's gradient one of :data:`JPEG_GRADIENTS`.

:func:`check_exactness` compares both paths on one image and fails loudly if a library
upgrade breaks the equality.
"""

from .base import Operation, OperationGroup
from .exactness import check_exactness
from .jpeg import JPEG_GRADIENTS
from .jpeg import check_gradient as check_jpeg_gradient
from .registry import (
                       BACKENDS,
                       GROUPS,
                       OPERATION_GROUPS,
                       OPERATIONS,
                       VERSION,
                       apply,
                       apply_many,
                       apply_pil,
                       diff_op,
                       get,
                       jpeg_name,
                       jpeg_qualities,
                       names_of,
                       output_size,
                       register,
)

__all__ = ["Operation", "OperationGroup", "OPERATION_GROUPS", "OPERATIONS", "GROUPS", "VERSION", "BACKENDS",
           "JPEG_GRADIENTS", "apply", "check_jpeg_gradient", "apply_many", "apply_pil", "check_exactness", "diff_op", "get", "output_size",
           "register", "jpeg_name", "jpeg_qualities", "names_of"]
