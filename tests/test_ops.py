"""The 38 batched operations against Pillow, on real photos: zero differing pixels."""

import pytest
import torch

from advlib import ops
from advlib.store import from_pil, to_pil
from advlib.corpora import demo_items, read_images


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Three different real photos (224x224 centre crops)."""
    items = demo_items(1)
    chosen = [items[0], items[7], next(i for i in items if i.source == "skimage_astronaut")]
    images, ok, failures = read_images(chosen)
    assert not failures and len(images) == 3
    return images


def _pillow(name: str, images: torch.Tensor) -> list[torch.Tensor]:
    return [from_pil(ops.apply_pil(name, to_pil(im))) for im in images]


def test_registry_order_and_groups():
    names = list(ops.OPERATIONS)
    assert len(names) == 38
    assert names[:2] == ["jpeg_100", "jpeg_95"] and names[15] == "jpeg_25"
    assert names[16:20] == ["blur_2", "blur_3", "blur_4", "blur_5"]
    assert names[20:28] == [f"rotate_{a}" for a in range(1, 9)]
    assert names[28:] == ["scale_0.75", "scale_0.80", "scale_0.85", "scale_0.90", "scale_0.95",
                          "scale_1.05", "scale_1.10", "scale_1.15", "scale_1.20", "scale_1.25"]
    assert list(ops.GROUPS) == ["jpeg", "scaling", "blur", "rotation", "jpeg+scaling", "all"]
    sizes = {g: len(v) for g, v in ops.GROUPS.items()}
    assert sizes == {"jpeg": 16, "scaling": 10, "blur": 4, "rotation": 8, "jpeg+scaling": 26, "all": 38}
    assert ops.OPERATIONS["scale_0.80"].value == 0.8 and ops.OPERATIONS["jpeg_25"].group == "jpeg"
    assert "scale_0.80" in repr(ops.OPERATIONS["scale_0.80"])


@pytest.mark.numerics
@pytest.mark.parametrize("backend", ["torch", "pillow"])
@pytest.mark.parametrize("group", ["jpeg", "blur", "rotation", "scaling"])
def test_batched_equals_pillow(photos, group, backend):
    for name in ops.GROUPS[group]:
        out = ops.apply(name, photos, backend=backend, workers=2)
        ref = _pillow(name, photos)
        for k in range(len(photos)):
            assert out[k].shape == ref[k].shape, name
            assert int((out[k] != ref[k]).sum()) == 0, f"{name}: image {k} differs from Pillow"


@pytest.mark.numerics
@pytest.mark.parametrize("size", [(101, 67), (67, 130), (9, 5)])
def test_odd_sizes_equal_pillow(photos, size):
    h, w = size
    image = photos[1, :, 20:20 + h, 30:30 + w].contiguous()
    ops.check_exactness(image, ops.GROUPS["blur"] + ops.GROUPS["rotation"] + ops.GROUPS["scaling"])


def test_shapes_dtypes_and_device(photos):
    for name in ["jpeg_50", "blur_4", "rotate_7", "scale_0.75", "scale_1.25"]:
        out = ops.apply(name, photos)
        s = ops.OPERATIONS[name].value if name.startswith("scale") else 1
        assert out.dtype == torch.uint8 and out.device == photos.device
        assert out.shape == (3, 3, int(224 * s), int(224 * s))
        assert ops.output_size(name, 224, 224) == tuple(out.shape[2:])
    assert ops.apply("blur_2", photos[:0]).shape == (0, 3, 224, 224)
    assert ops.apply("scale_0.75", photos[:0]).shape == (0, 3, 168, 168)


@pytest.mark.numerics
def test_thread_pool_same_pixels(photos):
    for name in ("jpeg_30", "blur_3", "rotate_4", "scale_0.85"):
        assert torch.equal(ops.apply(name, photos, workers=2), ops.apply(name, photos, backend="torch")), name


def test_apply_many_writes_into_out(photos):
    names = ["jpeg_75", "blur_2", "rotate_3", "scale_1.10"]
    expected = [ops.apply(name, photos, backend="torch") for name in names]
    new = ops.apply_many(names, photos, workers=2)
    assert all(o.is_contiguous(memory_format=torch.channels_last) for o in new)  # what the CPU classifier wants
    out = [torch.zeros(3, 3, *ops.output_size(n, 224, 224), dtype=torch.uint8) for n in names]  # NCHW buffers
    returned = ops.apply_many(names, photos, workers=2, out=out)
    for name, e, n, o, r in zip(names, expected, new, out, returned):
        assert r is o and torch.equal(o, e) and torch.equal(n, e), name
    out = [torch.zeros_like(o) for o in out]  # the GPU path (per-operation torch code), on the CPU
    assert all(torch.equal(r, e) for r, e in zip(ops.apply_many(names, photos, backend="torch", out=out), expected))
    with pytest.raises(ValueError, match="out for scale_1.10 must be uint8"):
        ops.apply_many(names, photos, out=out[:3] + [torch.zeros(3, 3, 224, 224, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="out has 1 tensors for 4 operations"):
        ops.apply_many(names, photos, out=out[:1])


def test_bad_input_messages(photos):
    with pytest.raises(KeyError, match="jpeg_100"):
        ops.apply("jpeg_101", photos)
    with pytest.raises(ValueError, match="uint8"):
        ops.apply("blur_2", photos.float())
    with pytest.raises(ValueError, match=r"uint8 tensor \(N, 3, H, W\), got torch.uint8 \(3, 224, 224\)"):
        ops.apply("blur_2", photos[0])


def test_check_exactness_passes_and_catches_inexact_blur(photos, monkeypatch):
    ops.check_exactness(photos[2])
    import torchvision.transforms.v2.functional as F

    # torchvision's Gaussian blur is not Pillow's: the check must name the blur operations.
    monkeypatch.setattr(ops.blur, "gaussian_blur", lambda x, r: F.gaussian_blur(x, [2 * int(3 * r) + 1] * 2, [r, r]))
    with pytest.raises(RuntimeError, match="blur_2 .*blur_5"):
        ops.check_exactness(photos[2])
    # a codec that drifts (here: one quality step off) is caught on both paths
    encode, decode = ops.jpeg.jpeg_codec()
    monkeypatch.setattr(ops.jpeg, "jpeg_codec", lambda: (lambda x, quality: encode(x, quality - 1), decode))
    with pytest.raises(RuntimeError, match=r"jpeg_50 \[torch\].*jpeg_50 \[default\]"):
        ops.check_exactness(photos[2], ["jpeg_50"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu(photos):
    for name in ops.OPERATIONS:
        out = ops.apply(name, photos.cuda())
        assert out.device.type == "cuda"
        assert torch.equal(out.cpu(), ops.apply(name, photos)), name
