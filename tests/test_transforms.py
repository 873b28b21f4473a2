"""Random transforms against pixel-exact references (NumPy, SciPy, torch.rot90) and error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from featvis import transforms as T
from featvis.transforms import geometry

SIZES = [(16, 16), (12, 20), (21, 9), (7, 7)]


def random_transforms():
    return {
        "affine": T.RandomAffine(translate=0.1, scale=(0.8, 1.2), degrees=20),
        "jitter": T.Jitter(2),
        "rotate": T.RandomRotate(30),
        "scale": T.RandomScale((0.7, 1.3)),
        "standard": T.standard(),
    }


def smooth_image(h, w, c=1):
    """A smooth image with values in [0, 1] (bilinear interpolation is accurate on it)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    channels = []
    for k in range(c):
        img = np.sin(xx / (5.0 + k)) + np.cos(yy / 7.0) + 0.3 * np.sin((xx + yy) / (4.0 + k))
        channels.append((img - img.min()) / (img.max() - img.min()))
    return np.stack(channels)


def batch_of(image, n):
    """n copies of one (C, H, W) numpy image, as a float32 tensor."""
    return torch.tensor(image, dtype=torch.float32)[None].repeat(n, 1, 1, 1)


def zeros_like_shape(*shape):
    """A tensor that has ``shape`` but no memory, for sampling many matrices cheaply."""
    return torch.zeros(1, 1, 1, 1).expand(*shape)


def fixed_rand(monkeypatch, value):
    """Make torch.rand return ``value``: 1.0 gives the largest positive shift and angle and the largest zoom,
    0.0 the largest negative shift and angle and the smallest zoom."""

    def rand(*size, generator=None, **kwargs):
        return torch.full(size, float(value), **kwargs)

    monkeypatch.setattr(torch, "rand", rand)


def decompose(matrices, height, width):
    """Shift (pixels), zoom and angle (radians) of each sampling matrix, from the (N, 2, 3) layout."""
    m = matrices.double()
    aspect = height / width
    shift_x = m[:, 0, 2] * width / 2
    shift_y = m[:, 1, 2] * height / 2
    # the 2x2 part is R(angle) / zoom in pixel units, written in normalised coordinates
    zoom = 1 / torch.sqrt(m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0])
    angle = torch.atan2(m[:, 1, 0] * aspect, m[:, 0, 0])
    return shift_x, shift_y, zoom, angle


def shift_reference(image, sx, sy, fill):
    """out[i, j] = image[i + sy, j + sx], ``fill`` where that is outside (numpy, (C, H, W))."""
    h, w = image.shape[1:]
    out = np.full_like(image, fill)
    for i in range(h):
        for j in range(w):
            if 0 <= i + sy < h and 0 <= j + sx < w:
                out[:, i, j] = image[:, i + sy, j + sx]
    return out


# ---------------------------------------------------------------------------
# shapes and gradients


@pytest.mark.parametrize("name", sorted(random_transforms()))
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_random_transforms_keep_shape_and_pass_gradient(name, h, w):
    torch.manual_seed(0)
    t = random_transforms()[name]
    x = torch.rand(3, 2, h, w, requires_grad=True)
    out = t(x)
    assert out.shape == (3, 2, h, w)
    assert out.dtype == x.dtype
    assert bool(torch.isfinite(out).all())
    out.sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    assert float(x.grad.abs().sum()) > 0
    # every image of the batch receives gradient
    assert bool((x.grad.abs().sum(dim=(1, 2, 3)) > 0).all())


def test_float64_images():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 10, 10, dtype=torch.float64)
    out = T.standard()(x)
    assert out.dtype == torch.float64
    assert out.shape == x.shape


@pytest.mark.parametrize("t", [T.RandomAffine(translate=2), T.Pad(2)])
def test_transforms_need_a_batch(t):
    with pytest.raises(ValueError, match=r"image batches of shape \(N, C, H, W\), got \(3, 8, 8\)"):
        t(torch.rand(3, 8, 8))


def test_identity_affine_returns_input():
    x = torch.rand(2, 3, 9, 13)
    torch.testing.assert_close(T.RandomAffine()(x), x, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------
# per-element independence and repeatability


@pytest.mark.parametrize(
    "t",
    [
        T.RandomAffine(translate=0.2, scale=(0.8, 1.2), degrees=30),
        T.Jitter(4),
        T.RandomRotate(30),
        T.RandomScale((0.7, 1.3)),
    ],
    ids=["affine", "jitter", "rotate", "scale"],
)
def test_each_image_gets_its_own_transform(t):
    torch.manual_seed(1)
    x = batch_of(smooth_image(16, 16, 3), 8)
    out = t(x)
    flat = out.reshape(8, -1)
    differences = torch.cdist(flat, flat)
    pairs = differences[torch.triu_indices(8, 8, 1).unbind()]
    # most pairs of outputs differ (identical inputs, independent transforms)
    assert int((pairs > 1e-3).sum()) >= 20
    matrices_differ = 0
    torch.manual_seed(1)
    m = t.sample_matrices(x)
    for i in range(8):
        for j in range(i + 1, 8):
            matrices_differ += not torch.equal(m[i], m[j])
    assert matrices_differ >= 20


def test_sample_matrices_shape_and_distinct_rows():
    torch.manual_seed(0)
    t = T.RandomAffine(translate=0.1, scale=(0.8, 1.2), degrees=20)
    m = t.sample_matrices(torch.zeros(6, 3, 10, 14))
    assert m.shape == (6, 2, 3)
    assert m.dtype == torch.float32
    rows = m.reshape(6, -1)
    assert torch.unique(rows, dim=0).shape[0] == 6
    # each of translation x, translation y, zoom and angle varies along the batch
    sx, sy, zoom, angle = decompose(m, 10, 14)
    for values in (sx, sy, zoom, angle):
        assert torch.unique(values).numel() == 6


@pytest.mark.parametrize("name", sorted(random_transforms()))
def test_seeded_calls_repeat(name):
    t = random_transforms()[name]
    x = torch.rand(4, 3, 15, 17, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    first = t(x)
    torch.manual_seed(123)
    second = t(x)
    assert torch.equal(first, second)
    torch.manual_seed(124)
    third = t(x)
    assert not torch.equal(first, third)


# ---------------------------------------------------------------------------
# exact geometry


@pytest.mark.parametrize(("h", "w"), [(10, 10), (9, 14), (13, 6)])
@pytest.mark.parametrize("fill", [0.5, 0.0])
def test_jitter_is_an_exact_pixel_shift(h, w, fill):
    image = np.random.default_rng(0).random((2, h, w))
    x = batch_of(image, 16)
    t = T.Jitter(3, fill=fill)
    torch.manual_seed(7)
    m = t.sample_matrices(x)
    torch.manual_seed(7)
    out = t(x).numpy()
    sx, sy, zoom, angle = decompose(m, h, w)
    torch.testing.assert_close(zoom, torch.ones_like(zoom, dtype=torch.float64))
    assert torch.equal(angle, torch.zeros_like(angle))
    shifts = set()
    for k in range(16):
        px, py = float(sx[k]), float(sy[k])
        assert px == pytest.approx(round(px), abs=1e-5) and py == pytest.approx(round(py), abs=1e-5)
        px, py = round(px), round(py)
        assert abs(px) <= 3 and abs(py) <= 3
        shifts.add((px, py))
        np.testing.assert_allclose(out[k], shift_reference(image, px, py, fill), atol=1e-5)
    assert len(shifts) > 4


def test_positive_shift_moves_content_left_and_up(monkeypatch):
    # with torch.rand == 1 the shift is +translate pixels on both axes
    fixed_rand(monkeypatch, 1.0)
    image = np.arange(30, dtype=np.float64).reshape(1, 5, 6)
    out = T.RandomAffine(translate=2, fill=-1.0)(batch_of(image, 1))[0].numpy()
    np.testing.assert_allclose(out, shift_reference(image, 2, 2, -1.0), atol=1e-5)
    np.testing.assert_allclose(out[0, 0, :4], [14, 15, 16, 17], atol=1e-5)


@pytest.mark.parametrize("size", [8, 9])
def test_rotate_90_is_rot90(monkeypatch, size):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    fixed_rand(monkeypatch, 1.0)  # angle = +degrees
    plus = T.RandomAffine(degrees=90)(x)
    fixed_rand(monkeypatch, 0.0)  # angle = -degrees
    minus = T.RandomAffine(degrees=90)(x)
    # a positive angle turns the image like torch.rot90(k=1) over (H, W): counter-clockwise on screen
    torch.testing.assert_close(plus, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(minus, torch.rot90(x, -1, dims=(2, 3)), atol=1e-5, rtol=0)
    # so that the top-right corner goes to the top-left
    torch.testing.assert_close(plus[:, :, 0, 0], x[:, :, 0, -1], atol=1e-5, rtol=0)


def test_rotate_180_of_non_square_is_flip(monkeypatch):
    x = torch.rand(1, 2, 6, 11, generator=torch.Generator().manual_seed(0))
    fixed_rand(monkeypatch, 1.0)
    out = T.RandomRotate(180)(x)
    torch.testing.assert_close(out, torch.flip(x, dims=(2, 3)), atol=1e-5, rtol=0)


def test_rotate_90_of_non_square_has_no_shear(monkeypatch):
    x = torch.rand(1, 1, 6, 10, generator=torch.Generator().manual_seed(0))
    fixed_rand(monkeypatch, 1.0)
    out = T.RandomRotate(90, fill=0.25)(x)
    # in pixel units the central 6x6 square turns onto itself, the rest is uncovered
    torch.testing.assert_close(out[..., 2:8], torch.rot90(x[..., 2:8], 1, dims=(2, 3)), atol=1e-5, rtol=0)
    assert torch.allclose(out[..., :2], torch.tensor(0.25)) and torch.allclose(out[..., 8:], torch.tensor(0.25))


@pytest.mark.parametrize(("h", "w"), [(33, 33), (31, 45), (40, 26)])
@pytest.mark.parametrize("seed", [0, 3])
def test_small_rotation_matches_scipy(h, w, seed):
    image = smooth_image(h, w)
    t = T.RandomRotate(25, fill=0.3)
    torch.manual_seed(seed)
    m = t.sample_matrices(torch.zeros(1, 1, h, w))
    _, _, zoom, angle = decompose(m, h, w)
    assert float(zoom[0]) == pytest.approx(1.0, abs=1e-6)
    degrees = math.degrees(float(angle[0]))
    assert 1 < abs(degrees) <= 25
    torch.manual_seed(seed)
    out = t(batch_of(image, 1))[0, 0].numpy()
    # same sign convention as scipy: positive = counter-clockwise on screen
    ref = ndi.rotate(image[0], degrees, reshape=False, order=1, mode="grid-constant", cval=0.3)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    # the opposite direction is clearly different
    wrong = ndi.rotate(image[0], -degrees, reshape=False, order=1, mode="grid-constant", cval=0.3)
    assert np.abs(out - wrong)[h // 4 : -h // 4, w // 4 : -w // 4].max() > 1e-2


@pytest.mark.parametrize(("h", "w"), [(16, 16), (12, 21)])
def test_affine_on_linear_ramp_matches_formula(h, w):
    # bilinear interpolation reproduces a linear image exactly wherever the sample point is inside
    a, b, c = 0.03, -0.02, 0.4
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    image = (a * xx + b * yy + c)[None]
    t = T.RandomAffine(translate=2, scale=(1.5, 2.5), degrees=40)
    torch.manual_seed(11)
    m = t.sample_matrices(torch.zeros(6, 1, h, w))
    torch.manual_seed(11)
    out = t(batch_of(image, 6)).double().numpy()
    sx, sy, zoom, angle = decompose(m, h, w)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    inside_total = 0
    for k in range(6):
        z, th = float(zoom[k]), float(angle[k])
        assert 1.5 <= z <= 2.5 and abs(th) <= math.radians(40) + 1e-6
        x_in = cx + (math.cos(th) * (xx - cx) - math.sin(th) * (yy - cy)) / z + float(sx[k])
        y_in = cy + (math.sin(th) * (xx - cx) + math.cos(th) * (yy - cy)) / z + float(sy[k])
        inside = (x_in >= 0) & (x_in <= w - 1) & (y_in >= 0) & (y_in <= h - 1)
        inside_total += int(inside.sum())
        np.testing.assert_allclose(out[k, 0][inside], (a * x_in + b * y_in + c)[inside], atol=1e-5)
    assert inside_total > 0.5 * 6 * h * w


def test_zoom_above_one_magnifies(monkeypatch):
    fixed_rand(monkeypatch, 1.0)  # zoom = high
    image = np.zeros((1, 8, 8))
    image[0, 3:5, 3:5] = 1.0  # a 2x2 square in the centre
    out = T.RandomScale((1.0, 2.0))(batch_of(image, 1))[0, 0].numpy()
    # twice as large: the 4x4 centre is (mostly) covered by the square
    assert out[2:6, 2:6].mean() > 0.5
    assert float(out.sum()) == pytest.approx(4 * float(image.sum()), rel=1e-5)


# ---------------------------------------------------------------------------
# fill


@pytest.mark.parametrize("fill", [0.0, 0.5, 0.9])
def test_constant_fill_in_uncovered_corner(monkeypatch, fill):
    fixed_rand(monkeypatch, 1.0)  # shift +5 pixels right and down in sampling space
    x = torch.full((2, 3, 12, 12), 0.2)
    out = T.RandomAffine(translate=5, fill=fill)(x)
    corner = out[:, :, 7:, 7:]
    torch.testing.assert_close(corner, torch.full_like(corner, fill), atol=1e-6, rtol=0)
    covered = out[:, :, :7, :7]
    torch.testing.assert_close(covered, torch.full_like(covered, 0.2), atol=1e-6, rtol=0)


def test_fill_after_random_large_shift():
    torch.manual_seed(0)
    x = torch.full((8, 1, 10, 10), 0.1)
    out = T.Jitter(8, fill=0.7)(x)
    # every image is shifted by at least one pixel somewhere, leaving fill-coloured pixels
    assert bool(((out - 0.7).abs() < 1e-6).flatten(1).any(dim=1).all())
    assert bool((((out - 0.1).abs() < 1e-6) | ((out - 0.7).abs() < 1e-6)).all())


@pytest.mark.parametrize(("fill", "np_mode"), [("border", "edge"), ("reflection", "symmetric")])
def test_border_and_reflection_fill(monkeypatch, fill, np_mode):
    fixed_rand(monkeypatch, 1.0)
    image = np.random.default_rng(0).random((2, 6, 8))
    out = T.RandomAffine(translate=3, fill=fill)(batch_of(image, 1))[0].numpy()
    ref = np.pad(image, ((0, 0), (0, 3), (0, 3)), mode=np_mode)[:, 3:, 3:]
    np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"fill": "zeros"}, "fill must be a number, 'border' or 'reflection', got 'zeros'"),
        ({"scale": (1.2, 0.8)}, r"scale must be a positive \(low, high\) range"),
        ({"scale": 0.0}, "scale must be a positive"),
        ({"scale": -1.0}, "scale must be a positive"),
        ({"scale": (0.0, 1.0)}, "scale must be a positive"),
        ({"degrees": -1.0}, "degrees must be non-negative, got -1.0"),
        ({"translate": -1}, "non-negative int or float, got -1"),
        ({"translate": -0.1}, "non-negative int or float"),
        ({"translate": True}, "non-negative int or float, got True"),
    ],
)
def test_invalid_affine_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        T.RandomAffine(**kwargs)


def test_invalid_subclass_arguments():
    with pytest.raises(ValueError, match="non-negative"):
        T.Jitter(-2)
    with pytest.raises(ValueError, match="degrees must be non-negative"):
        T.RandomRotate(-5)
    with pytest.raises(ValueError, match="scale must be a positive"):
        T.RandomScale((1.1, 0.9))
    with pytest.raises(ValueError, match="fill must be"):
        T.RandomRotate(5, fill="wrap")


# ---------------------------------------------------------------------------
# Pad


@pytest.mark.parametrize(
    ("amount", "h", "w", "pixels"), [(2, 5, 7, 2), (0.1, 20, 50, 2), (0.1, 50, 20, 2), (0.2, 16, 16, 3)]
)
def test_pad_constant(amount, h, w, pixels):
    x = torch.rand(2, 3, h, w)
    out = T.Pad(amount)(x)
    assert out.shape == (2, 3, h + 2 * pixels, w + 2 * pixels)
    torch.testing.assert_close(out[:, :, pixels:-pixels, pixels:-pixels], x)
    border = torch.ones_like(out, dtype=torch.bool)
    border[:, :, pixels:-pixels, pixels:-pixels] = False
    assert bool((out[border] == 0.5).all())


def test_pad_value_and_modes():
    image = np.random.default_rng(1).random((2, 6, 7))
    x = batch_of(image, 1)
    np.testing.assert_allclose(T.Pad(2, value=0.0)(x)[0].numpy(), np.pad(image, ((0, 0), (2, 2), (2, 2))), atol=1e-7)
    for mode, np_mode in (("reflect", "reflect"), ("replicate", "edge")):
        out = T.Pad(3, mode=mode)(x)[0].numpy()
        np.testing.assert_allclose(out, np.pad(image, ((0, 0), (3, 3), (3, 3)), mode=np_mode), atol=1e-7)


def test_pad_zero_is_identity_and_negative_raises():
    x = torch.rand(1, 3, 4, 4)
    assert T.Pad(0)(x) is x
    assert T.Pad(0.01)(x) is x  # rounds to 0 pixels
    with pytest.raises(ValueError, match="non-negative int or float"):
        T.Pad(-1)


# ---------------------------------------------------------------------------
# Normalize


def test_normalize_matches_hand_computation():
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    out = T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)(x).numpy()
    mean = np.array([0.485, 0.456, 0.406])[None, :, None, None]
    std = np.array([0.229, 0.224, 0.225])[None, :, None, None]
    np.testing.assert_allclose(out, (x.double().numpy() - mean) / std, rtol=1e-5, atol=1e-6)
    assert float(T.Normalize([0.5], [0.25])(torch.full((1, 1, 1, 1), 1.0))) == 2.0


def test_normalize_gradient():
    x = torch.rand(1, 2, 3, 3, requires_grad=True)
    T.Normalize([0.1, 0.2], [0.5, 4.0])(x).sum().backward()
    torch.testing.assert_close(x.grad[0, 0], torch.full((3, 3), 2.0))
    torch.testing.assert_close(x.grad[0, 1], torch.full((3, 3), 0.25))


def test_normalize_errors():
    normalize = T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)
    with pytest.raises(ValueError, match=r"expects images with 3 channels, got shape \(1, 1, 4, 4\)"):
        normalize(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="expects images with 3 channels"):
        normalize(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="same number of channels, got 3 and 2"):
        T.Normalize([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="std must be positive"):
        T.Normalize([0.1, 0.2], [0.1, 0.0])


# ---------------------------------------------------------------------------
# Compose and standard


def test_compose_applies_in_order():
    x = torch.rand(1, 1, 4, 4)
    normalize = T.Normalize([0.5], [0.5])
    pad = T.Pad(1, value=0.5)
    pad_then_normalize = T.Compose(pad, normalize)(x)
    normalize_then_pad = T.Compose(normalize, pad)(x)
    torch.testing.assert_close(pad_then_normalize, normalize(pad(x)))
    torch.testing.assert_close(normalize_then_pad, pad(normalize(x)))
    # padding 0.5 then normalising gives a border of 0; the other order keeps 0.5
    assert float(pad_then_normalize[0, 0, 0, 0]) == 0.0
    assert float(normalize_then_pad[0, 0, 0, 0]) == 0.5
    assert len(T.Compose(pad, normalize)) == 2


@pytest.mark.parametrize("size", [32, 224])
def test_standard_keeps_shape(size):
    torch.manual_seed(0)
    x = torch.rand(2, 3, size, size)
    out = T.standard()(x)
    assert out.shape == (2, 3, size, size)
    assert not torch.equal(out, x)


def test_standard_parameters_at_224():
    torch.manual_seed(0)
    t = T.standard()
    assert len(t) == 2 and isinstance(t[0], T.RandomAffine) and isinstance(t[1], T.RandomBlur)
    assert (t[1].low, t[1].high) == (0.0, 0.5)
    assert len(T.standard(blur=0)) == 1
    m = t[0].sample_matrices(zeros_like_shape(4000, 3, 224, 224))
    sx, sy, zoom, angle = decompose(m, 224, 224)
    shifts = torch.cat([sx, sy]).abs()
    assert float(shifts.max()) <= 0.06 * 224 + 1e-3
    assert float(shifts.max()) >= 0.98 * 0.06 * 224
    assert 0.9 - 1e-5 <= float(zoom.min()) < 0.91 and 1.09 < float(zoom.max()) <= 1.1 + 1e-5
    assert float(angle.abs().max()) <= math.radians(10) + 1e-6
    assert float(angle.abs().max()) >= math.radians(9.8)
    # zoom and angle are uniform on their ranges
    assert float(zoom.mean()) == pytest.approx(1.0, abs=0.005)
    assert float(zoom.std()) == pytest.approx(0.2 / math.sqrt(12), rel=0.05)
    assert float(angle.mean()) == pytest.approx(0.0, abs=math.radians(0.5))
    assert float(angle.std()) == pytest.approx(math.radians(10) / math.sqrt(3), rel=0.05)


def test_standard_scales_with_image_size():
    torch.manual_seed(0)
    m = T.standard()[0].sample_matrices(zeros_like_shape(4000, 3, 32, 32))
    sx, sy, _, _ = decompose(m, 32, 32)
    assert float(torch.cat([sx, sy]).abs().max()) == pytest.approx(0.06 * 32, rel=0.02)


# ---------------------------------------------------------------------------
# amounts: int = pixels, float = fraction of the smaller side


@pytest.mark.parametrize(
    ("translate", "h", "w", "pixels"),
    [
        (1, 20, 40, 1.0),
        (1.0, 20, 40, 20.0),
        (5, 40, 20, 5.0),
        (0.25, 20, 40, 5.0),
        (0.25, 40, 20, 5.0),
        (0.1, 7, 9, 0.7),
    ],
)
def test_amount_convention(translate, h, w, pixels):
    torch.manual_seed(0)
    m = T.RandomAffine(translate=translate).sample_matrices(zeros_like_shape(5000, 1, h, w))
    sx, sy, _, _ = decompose(m, h, w)
    for shifts in (sx, sy):  # the same bound on both axes
        assert float(shifts.abs().max()) <= pixels * (1 + 1e-5)
        assert float(shifts.abs().max()) >= 0.99 * pixels
        # uniform on [-pixels, pixels]: mean 0, standard deviation pixels / sqrt(3)
        assert float(shifts.mean()) == pytest.approx(0.0, abs=0.05 * pixels)
        assert float(shifts.std()) == pytest.approx(pixels / math.sqrt(3), rel=0.05)


def test_jitter_int_shift_values():
    torch.manual_seed(0)
    m = T.Jitter(2).sample_matrices(zeros_like_shape(2000, 1, 10, 16))
    sx, sy, _, _ = decompose(m, 10, 16)
    values = torch.cat([sx, sy])
    assert torch.allclose(values, values.round(), atol=1e-5)
    assert set(values.round().long().tolist()) == {-2, -1, 0, 1, 2}
    counts = torch.bincount(values.round().long() + 2).float()
    assert float(counts.min() / counts.max()) > 0.8  # every whole shift about equally likely


def test_jitter_float_shift_stays_within_bound():
    # Jitter(0.03) at 224 pixels: at most 0.03 * 224 = 6.72 pixels, so whole shifts of at most 6
    torch.manual_seed(0)
    m = T.Jitter(0.03).sample_matrices(zeros_like_shape(4000, 3, 224, 224))
    sx, sy, _, _ = decompose(m, 224, 224)
    assert float(torch.cat([sx, sy]).abs().max()) <= 0.03 * 224


# ---------------------------------------------------------------------------
# property test


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 4),
    c=st.integers(1, 4),
    h=st.integers(2, 40),
    w=st.integers(2, 40),
    seed=st.integers(0, 2**16),
)
def test_affine_property(n, c, h, w, seed):
    torch.manual_seed(seed)
    x = torch.rand(n, c, h, w, requires_grad=True)
    out = T.RandomAffine(translate=0.1, scale=(0.8, 1.2), degrees=20)(x)
    assert out.shape == x.shape
    assert bool(torch.isfinite(out).all())
    # bilinear mixing of values in [0, 1] and the 0.5 fill stays in [0, 1]
    assert float(out.detach().min()) >= -1e-6 and float(out.detach().max()) <= 1 + 1e-6
    out.sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    assert float(x.grad.abs().sum()) > 0


# 3 and 5 taps run as one 2-D convolution, 7 taps as two 1-D ones
@pytest.mark.parametrize(("sigma", "radius"), [(0.4, 1), (0.8, 2), (1.5, 3)])
def test_random_blur_matches_scipy_for_a_fixed_sigma(sigma: float, radius: int):
    x = torch.rand(2, 3, 12, 15, dtype=torch.float64)
    blur = T.RandomBlur(sigma)
    assert blur.radius == radius  # ceil(2 * sigma)
    out = blur(x).numpy()
    expected = np.stack(
        [
            [ndi.gaussian_filter(x[i, j].numpy(), sigma, mode="nearest", truncate=radius / sigma) for j in range(3)]
            for i in range(2)
        ]
    )
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_random_blur_draws_sigma_per_image_and_passes_gradients():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 16, 16).expand(64, 1, 16, 16).clone().requires_grad_(True)
    out = T.RandomBlur((0.0, 1.0))(x)
    roughness = (out[..., 1:, :] - out[..., :-1, :]).abs().mean(dim=(1, 2, 3)).detach()
    assert roughness.std() > 0.01 * roughness.mean()  # different images, different blur
    assert float(roughness.max()) <= float((x[0, :, 1:] - x[0, :, :-1]).abs().mean().detach()) + 1e-6
    out.sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    assert torch.equal(T.RandomBlur(0.0)(x), x)
    with pytest.raises(ValueError, match="0 <= low <= high"):
        T.RandomBlur((1.0, 0.5))
    assert len(T.standard(blur=0)) == 1 and isinstance(T.standard()[1], T.RandomBlur)
    assert T.standard()[1].high == 0.5


@pytest.mark.parametrize(
    ("n", "height", "width", "dtype"), [(1, 5, 7, torch.float32), (6, 32, 32, torch.float32), (3, 9, 4, torch.float64)]
)
def test_the_affine_grid_is_torchs(n: int, height: int, width: int, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    matrices = T.RandomAffine(translate=0.2, scale=(0.7, 1.3), degrees=40).sample_matrices(
        torch.zeros(n, 3, height, width)
    )
    matrices = matrices.to(dtype)
    expected = torch.nn.functional.affine_grid(matrices, [n, 3, height, width], align_corners=False)
    grid = geometry._affine_grid(matrices, height, width)
    assert grid.shape == expected.shape and grid.dtype == dtype
    assert torch.allclose(grid, expected, atol=1e-6 if dtype == torch.float32 else 1e-12)


def test_the_affine_grid_cache_keeps_few_small_ordinary_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geometry, "_CENTRES", {})
    matrices = torch.eye(2, 3, dtype=torch.float64)[None].repeat(2, 1, 1).requires_grad_()
    with torch.inference_mode():  # first seen inside inference mode ...
        geometry._affine_grid(matrices.detach(), 6, 5)
    grid = geometry._affine_grid(matrices, 6, 5)  # ... still usable with autograd afterwards
    kept = geometry._CENTRES[(6, 5, torch.device("cpu"), torch.float64)]
    assert torch.equal(kept, geometry._pixel_centres(6, 5, "cpu", torch.float64))
    assert torch.autograd.gradcheck(lambda m: geometry._affine_grid(m, 3, 4), (matrices,))
    grid.sum().backward()
    for size in range(1, geometry._KEPT + 2):  # more sizes than it keeps: cleared, then filled again
        geometry._affine_grid(matrices.detach(), size, 2)
        assert len(geometry._CENTRES) <= geometry._KEPT
    geometry._CENTRES.clear()
    side = int(geometry._CENTRES_LARGEST**0.5) + 1
    geometry._affine_grid(torch.eye(2, 3)[None], side, side)  # a large image's centres are not kept
    assert not geometry._CENTRES


def test_random_affine_follows_its_settings_when_they_change() -> None:
    affine = T.RandomAffine(degrees=1)
    images = torch.zeros(500, 3, 16, 16)
    small = decompose(affine.sample_matrices(images), 16, 16)[3].abs().max()
    affine.degrees = 30.0  # a changed setting is not hidden by the ranges kept for this size
    large = decompose(affine.sample_matrices(images), 16, 16)[3].abs().max()
    assert float(small) <= math.radians(1) + 1e-6 and float(large) > math.radians(25)


def test_random_affine_copies_leave_their_kept_ranges_behind() -> None:
    import copy
    import io

    affine = T.RandomAffine(degrees=10)
    affine(torch.rand(2, 3, 8, 8))
    assert affine._range_cache
    assert copy.deepcopy(affine)._range_cache == {}
    buffer = io.BytesIO()
    torch.save(affine, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded._range_cache == {}
    del loaded.__dict__["_range_cache"]  # as an object saved before the cache existed
    assert loaded(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


# --- transforms that change over a run -------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    low=st.floats(0.05, 1.0),
    final_low=st.floats(0.05, 1.0),
    final_step=st.integers(1, 300),
    step=st.integers(1, 400),
)
def test_a_widening_crop_moves_in_a_straight_line_and_then_stays(
    low: float, final_low: float, final_step: int, step: int
) -> None:
    crop = T.RandomCrop(size=(low, 1.0), final_size=(final_low, 1.0), final_step=final_step)
    assert crop.size_at(1) == pytest.approx((low, 1.0)) or final_step == 1
    assert crop.size_at(final_step) == pytest.approx((final_low, 1.0))
    along = 1.0 if final_step == 1 else min(1.0, (step - 1) / (final_step - 1))
    assert crop.size_at(step) == pytest.approx((low + (final_low - low) * along, 1.0))
    # the range only moves one way
    a, b = sorted((step, step + 1))
    assert (crop.size_at(b)[0] - crop.size_at(a)[0]) * (final_low - low) >= -1e-12


def test_a_crop_draws_its_sides_from_the_range_of_the_step_it_was_told() -> None:
    crop = T.RandomCrop(size=(0.2, 0.3), final_size=(0.8, 0.9), final_step=11)
    images = torch.zeros(4000, 3, 8, 8)
    torch.manual_seed(0)
    sides = crop.sample_matrices(images)[:, 0, 0]  # not told: step 1
    assert 0.2 <= sides.min() and sides.max() <= 0.3
    T.set_step(T.Compose(T.RandomBlur(0.5), crop), 6)  # found inside a Compose
    sides = crop.sample_matrices(images)[:, 0, 0]
    assert 0.5 <= sides.min() < 0.51 and 0.59 < sides.max() <= 0.6
    T.set_step(crop, 50)
    sides = crop.sample_matrices(images)[:, 0, 0]
    assert 0.8 <= sides.min() and sides.max() <= 0.9


def test_a_crop_without_a_final_size_ignores_the_step() -> None:
    crop = T.RandomCrop(size=(0.5, 0.5))
    T.set_step(crop, 99)
    assert crop.size_at(99) == (0.5, 0.5)
    assert "final_size" not in repr(crop)


def test_crop_schedules_are_checked_with_their_names() -> None:
    with pytest.raises(ValueError, match=r"final_size must be a \(low, high\) range"):
        T.RandomCrop(size=(0.5, 1.0), final_size=(0.0, 1.0))
    with pytest.raises(ValueError, match="final_step must be a whole number from 1, got 0"):
        T.RandomCrop(final_size=(1.0, 1.0), final_step=0)
    with pytest.raises(ValueError, match="step must be a whole number from 1, got 0"):
        T.set_step(T.RandomCrop(), 0)


def test_set_step_leaves_transforms_without_the_method_alone_and_reaches_plain_callables() -> None:
    told: list[int] = []

    class Told:
        def set_step(self, step: int) -> None:
            told.append(step)

        def __call__(self, images: torch.Tensor) -> torch.Tensor:
            return images

    T.set_step(T.Compose(T.Jitter(1), T.Pad(1)), 3)  # nothing to tell: no error
    T.set_step(Told(), 4)
    assert told == [4]


def test_render_vis_tells_the_transforms_each_step_from_one() -> None:
    import featvis

    seen: list[int] = []

    class Recording(torch.nn.Module):
        step = 0

        def set_step(self, step: int) -> None:
            self.step = step

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            seen.append(self.step)
            return images

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU()).eval()
    featvis.render_vis(model, "1:0", size=16, steps=5, transforms=[Recording()], progress=False)
    assert seen[-5:] == [1, 2, 3, 4, 5]
    assert set(seen[:-5]) <= {1}  # a probe before the first step sees step 1


def test_widening_crops_reach_the_whole_image_and_the_defaults_do_not_change() -> None:
    crop = T.crops(size=(0.25, 1.0), final_size=(1.0, 1.0))[1]
    assert isinstance(crop, T.RandomCrop)
    assert crop.size_at(1) == (0.25, 1.0) and crop.size_at(128) == crop.size_at(1000) == (1.0, 1.0)
    assert crop.size_at(64)[0] == pytest.approx(0.25 + 0.75 * 63 / 127)
    default = T.for_size(224)[1]
    assert default.size_at(1) == default.size_at(500) == (0.5, 1.0)


def test_a_compiled_widening_crop_is_compiled_once() -> None:
    crop = T.RandomCrop(size=(0.25, 1.0), final_size=(1.0, 1.0), final_step=8)
    images = torch.rand(2, 3, 16, 16)
    torch._dynamo.reset()
    compiled = torch.compile(crop.sample_matrices, backend="eager")
    sides = []
    with torch._dynamo.config.patch(error_on_recompile=True):  # a step's range is read, not compiled in
        for step in (1, 4, 8):
            T.set_step(crop, step)
            sides.append(compiled(images)[:, 0, 0])
    torch._dynamo.reset()
    assert bool((sides[0] >= 0.25).all()) and bool((sides[2] == 1.0).all())
    assert 0.25 + 0.75 * 3 / 7 <= float(sides[1].min())
