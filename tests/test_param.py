"""Image parameterisations against NumPy references, round trips and error messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from featvis import param
from featvis.param import (
    IMAGENET_COLOR_CORRELATION,
    IMAGENET_COLOR_MEAN,
    ColorDecorrelation,
    FourierImage,
    Image,
    PixelImage,
    fourier_frequencies,
)

SIZES = [(8, 8), (7, 9), (5, 12), (12, 5), (1, 1), (2, 3), (16, 1)]
LUCID_MATRIX = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


def numpy_frequencies(h, w):
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx**2 + fy**2)


def numpy_fourier_image(spectrum, h, w, decay):
    """The image a FourierImage with this ``spectrum`` parameter should return, in float64."""
    freqs = numpy_frequencies(h, w)
    longest = max(h, w)
    scale = longest / np.maximum(freqs * longest, 1.0) ** decay
    coefficients = (spectrum[..., 0] + 1j * spectrum[..., 1]) * scale
    return np.fft.irfft2(coefficients, s=(h, w), norm="ortho")


def smooth_images(n, c, h, w, seed=0):
    """Images with values inside (0.05, 0.95)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=gen, dtype=torch.float64).float() * 0.9 + 0.05


# ---------------------------------------------------------------------------
# fourier_frequencies and FourierImage


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_fourier_frequencies_match_numpy(h, w):
    freqs = fourier_frequencies(h, w)
    assert freqs.shape == (h, w // 2 + 1)
    np.testing.assert_allclose(freqs.numpy(), numpy_frequencies(h, w), rtol=1e-6, atol=1e-7)


def test_fourier_frequencies_known_values():
    # 5 rows: fftfreq = 0, .2, .4, -.4, -.2 ; 4 columns -> rfftfreq = 0, .25, .5
    freqs = fourier_frequencies(5, 4)
    assert freqs[0].tolist() == pytest.approx([0.0, 0.25, 0.5])
    assert freqs[:, 0].tolist() == pytest.approx([0.0, 0.2, 0.4, 0.4, 0.2])
    assert float(freqs[2, 1]) == pytest.approx(np.hypot(0.4, 0.25))


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_fourier_image_matches_numpy_reference(h, w, decay):
    torch.manual_seed(h * 100 + w)
    basis = FourierImage(2, 3, h, w, decay=decay, sd=1.0)
    spectrum = basis.spectrum.detach().double().numpy()
    assert spectrum.shape == (2, 3, h, w // 2 + 1, 2)
    expected = numpy_fourier_image(spectrum, h, w, decay)
    out = basis()
    assert out.shape == (2, 3, h, w)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_fourier_scale_buffer_matches_formula():
    basis = FourierImage(1, 1, 6, 10, decay=1.5)
    freqs = numpy_frequencies(6, 10)
    expected = 10.0 / np.maximum(freqs * 10, 1.0) ** 1.5
    np.testing.assert_allclose(basis.scale.numpy(), expected, rtol=1e-5)
    # the DC bin and the one-cycle-per-image bins have gain max(h, w), whatever the decay
    for decay in (0.0, 1.0, 1.25, 2.0):
        scale = FourierImage(1, 1, 6, 10, decay=decay).scale
        assert float(scale[0, 0]) == pytest.approx(10.0) and float(scale[0, 1]) == pytest.approx(10.0)


def test_fourier_decay_one_is_lucids_scaling_without_the_division_by_four():
    for h, w in [(32, 32), (224, 224), (5, 9)]:
        freqs = numpy_frequencies(h, w)
        lucid = 1.0 / np.maximum(freqs, 1.0 / max(h, w))
        np.testing.assert_allclose(FourierImage(1, 1, h, w, decay=1.0).scale.numpy(), lucid, rtol=1e-5)


def test_fourier_decay_zero_is_a_plain_inverse_fft_with_gain_max_side():
    torch.manual_seed(3)
    basis = FourierImage(1, 2, 6, 7, decay=0.0, sd=1.0)
    spectrum = torch.view_as_complex(basis.spectrum.detach())
    expected = torch.fft.irfft2(spectrum * 7, s=(6, 7), norm="ortho")
    torch.testing.assert_close(basis(), expected)


def test_fourier_image_initial_sd():
    torch.manual_seed(0)
    basis = FourierImage(4, 3, 10, 10, sd=0.05)
    assert float(basis.spectrum.detach().std()) == pytest.approx(0.05, rel=0.1)


@pytest.mark.parametrize(("h", "w"), [(8, 8), (7, 9), (5, 12), (9, 4), (1, 1), (3, 1), (1, 6)])
@pytest.mark.parametrize("decay", [0.0, 1.0, 2.0])
def test_fourier_set_raw_round_trip(h, w, decay):
    target = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    basis = FourierImage(2, 3, h, w, decay=decay)
    basis.set_raw(target)
    torch.testing.assert_close(basis(), target, atol=2e-5, rtol=1e-4)
    # the spectrum really changed to represent the target (not a cached value)
    expected = numpy_fourier_image(basis.spectrum.detach().double().numpy(), h, w, decay)
    np.testing.assert_allclose(expected, target.double().numpy(), atol=2e-5)


def test_fourier_set_raw_broadcasts_one_image():
    target = torch.randn(1, 1, 6, 5, generator=torch.Generator().manual_seed(2))
    basis = FourierImage(3, 1, 6, 5)
    basis.set_raw(target)
    torch.testing.assert_close(basis(), target.expand(3, 1, 6, 5), atol=2e-5, rtol=1e-4)


def test_pixel_image_forward_and_set_raw():
    torch.manual_seed(0)
    basis = PixelImage(2, 3, 5, 7, sd=0.1)
    assert basis().shape == (2, 3, 5, 7)
    assert basis() is basis.pixels
    assert float(basis.pixels.detach().std()) == pytest.approx(0.1, rel=0.3)
    target = torch.randn(2, 3, 5, 7)
    basis.set_raw(target)
    assert torch.equal(basis(), target)
    assert isinstance(basis.pixels, torch.nn.Parameter)
    assert basis.pixels.requires_grad


@pytest.mark.parametrize("cls", [PixelImage, FourierImage])
@pytest.mark.parametrize(
    ("args", "name"),
    [((0, 3, 4, 4), "batch"), ((1, 0, 4, 4), "channels"), ((1, 3, -1, 4), "height"), ((1, 3, 4, 2.0), "width")],
)
def test_basis_rejects_bad_sizes(cls, args, name):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        cls(*args)


def test_basis_rejects_bool_size():
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        PixelImage(True, 3, 4, 4)


# ---------------------------------------------------------------------------
# ColorDecorrelation


def test_default_matrix_is_normalised_lucid_matrix():
    d = ColorDecorrelation()
    assert d.channels == 3
    np.testing.assert_allclose(np.array(IMAGENET_COLOR_CORRELATION), LUCID_MATRIX)
    # Lucid: divide by the largest column norm (first column: sqrt(.26^2 + .27^2 + .27^2))
    max_norm = np.sqrt(0.26**2 + 0.27**2 + 0.27**2)
    assert np.linalg.norm(LUCID_MATRIX, axis=0).max() == pytest.approx(max_norm)
    np.testing.assert_allclose(d.matrix.numpy(), LUCID_MATRIX / max_norm, rtol=1e-6, atol=1e-7)
    assert float(d.matrix[0, 0]) == pytest.approx(0.26 / 0.4619523, rel=1e-5)
    norms = np.linalg.norm(d.matrix.numpy(), axis=0)
    assert norms.max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(d.mean.numpy(), IMAGENET_COLOR_MEAN)


def test_forward_is_matrix_times_channels():
    d = ColorDecorrelation()
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    expected = np.einsum("ck,bkhw->bchw", d.matrix.double().numpy(), x.double().numpy())
    np.testing.assert_allclose(d(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    # one pixel by hand: colour = matrix @ value
    pixel = x[1, :, 2, 3].double().numpy()
    np.testing.assert_allclose(d(x)[1, :, 2, 3].numpy(), d.matrix.double().numpy() @ pixel, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("matrix", [None, "random4"])
def test_inverse_undoes_forward(matrix):
    gen = torch.Generator().manual_seed(5)
    if matrix == "random4":
        d = ColorDecorrelation(torch.randn(4, 4, generator=gen) + 3 * torch.eye(4))
    else:
        d = ColorDecorrelation()
    x = torch.randn(2, d.channels, 6, 7, generator=gen)
    torch.testing.assert_close(d.inverse(d(x)), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d(d.inverse(x)), x, atol=1e-5, rtol=1e-5)


def test_custom_matrix_is_scale_free():
    m = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    a, b = ColorDecorrelation(m), ColorDecorrelation(10 * m)
    torch.testing.assert_close(a.matrix, b.matrix)
    np.testing.assert_allclose(a.matrix.numpy(), m.numpy() / np.sqrt(10.0), rtol=1e-6)
    assert a.mean.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("channels", [1, 2, 3, 5])
def test_identity(channels):
    d = ColorDecorrelation.identity(channels)
    assert torch.equal(d.matrix, torch.eye(channels))
    assert d.channels == channels
    x = torch.randn(2, channels, 3, 3)
    assert torch.equal(d(x), x)
    assert torch.equal(d.inverse(x), x)
    # the mean colour defaults to ImageNet's for 3 channels, grey otherwise
    expected_mean = list(IMAGENET_COLOR_MEAN) if channels == 3 else [0.5] * channels
    np.testing.assert_allclose(d.mean.numpy(), expected_mean, rtol=1e-6)


def correlated_images(a, n=4, h=32, w=32, seed=0):
    """Pixels = a @ white noise + offset, so that their covariance is about a @ a.T."""
    rng = np.random.default_rng(seed)
    c = a.shape[0]
    noise = rng.standard_normal((c, n * h * w))
    pixels = a @ noise + 0.5
    return pixels.reshape(c, n, h, w).transpose(1, 0, 2, 3).copy()


def sample_covariance(images):
    c = images.shape[1]
    return np.cov(images.transpose(1, 0, 2, 3).reshape(c, -1))


@pytest.mark.parametrize("method", ["svd", "cholesky"])
@pytest.mark.parametrize(
    "a",
    [
        np.array([[0.3, 0.0, 0.0], [0.2, 0.1, 0.0], [0.1, -0.05, 0.05]]),
        np.array([[0.2, 0.05], [0.05, 0.1]]),
        np.diag([0.1, 0.2, 0.3, 0.05]),
    ],
    ids=["rgb", "two", "diag4"],
)
def test_from_images_matrix_is_square_root_of_covariance(method, a):
    images = correlated_images(a)
    cov = sample_covariance(images)
    d = ColorDecorrelation.from_images(torch.tensor(images), method=method)
    m = d.matrix.double().numpy()
    product = m @ m.T
    # M M^T equals the sample covariance up to the column-norm normalisation
    ratio = np.trace(product) / np.trace(cov)
    np.testing.assert_allclose(product, cov * ratio, atol=2e-6, rtol=1e-4)
    assert np.linalg.norm(m, axis=0).max() == pytest.approx(1.0, abs=1e-6)
    # with that normalisation, the scale is exactly the largest column norm of the raw square root
    raw = np.linalg.cholesky(cov) if method == "cholesky" else None
    if raw is not None:
        assert ratio == pytest.approx(1.0 / np.linalg.norm(raw, axis=0).max() ** 2, rel=1e-4)
        assert np.allclose(np.triu(m, 1), 0.0)
        np.testing.assert_allclose(m, raw / np.linalg.norm(raw, axis=0).max(), atol=1e-6)
    else:
        # svd: columns are orthogonal, the largest has norm sqrt(largest eigenvalue)
        assert ratio == pytest.approx(1.0 / np.linalg.eigvalsh(cov).max(), rel=1e-4)
        gram = m.T @ m
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-6)
    # the sample covariance itself is near a a^T (sanity of the synthetic data)
    np.testing.assert_allclose(cov, a @ a.T, atol=0.01)
    # mean is the per-channel pixel mean
    np.testing.assert_allclose(d.mean.numpy(), images.mean(axis=(0, 2, 3)), atol=1e-6)


def test_from_images_accepts_single_image_and_decorrelates():
    a = np.array([[0.3, 0.0, 0.0], [0.25, 0.1, 0.0], [0.2, 0.05, 0.08]])
    images = correlated_images(a, n=1, h=64, w=64, seed=1)
    d = ColorDecorrelation.from_images(torch.tensor(images[0]))  # (C, H, W)
    # the inverse map makes the channels uncorrelated with equal variance
    white = d.inverse(torch.tensor(images, dtype=torch.float32)).double().numpy()
    cov = sample_covariance(white)
    np.testing.assert_allclose(cov / cov[0, 0], np.eye(3), atol=1e-3)


def test_from_images_bad_method():
    with pytest.raises(ValueError, match="method must be 'svd' or 'cholesky'"):
        ColorDecorrelation.from_images(torch.rand(2, 3, 4, 4), method="qr")


@pytest.mark.parametrize("shape", [(3, 4), (1, 2, 3, 4, 5), (7,)])
def test_from_images_bad_shape(shape):
    with pytest.raises(ValueError, match=r"images must have shape \(N, C, H, W\)"):
        ColorDecorrelation.from_images(torch.rand(*shape))


def test_from_images_needs_two_pixels():
    with pytest.raises(ValueError, match="at least two pixels"):
        ColorDecorrelation.from_images(torch.rand(1, 3, 1, 1))


@pytest.mark.parametrize(
    ("matrix", "words"),
    [
        (torch.ones(2, 3), r"must be square \(C, C\), got shape \(2, 3\)"),
        (torch.ones(3), "must be square"),
        (torch.ones(2, 2), "finite and invertible"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "finite and invertible"),
    ],
)
def test_bad_matrix(matrix, words):
    with pytest.raises(ValueError, match=words):
        ColorDecorrelation(matrix)


def test_bad_mean():
    with pytest.raises(ValueError, match=r"mean must have 3 values, got shape \(2,\)"):
        ColorDecorrelation(mean=torch.tensor([0.1, 0.2]))


# ---------------------------------------------------------------------------
# Image


def make_image(kind, decorrelate, output, channels, batch=2, h=9, w=8):
    torch.manual_seed(0)
    if kind == "fft":
        basis = FourierImage(batch, channels, h, w)
    else:
        basis = PixelImage(batch, channels, h, w)
    decorrelation = None
    if decorrelate:
        decorrelation = ColorDecorrelation() if channels == 3 else ColorDecorrelation.identity(channels)
    return Image(basis, decorrelation, output=output)


@pytest.mark.parametrize("output", ["sigmoid", "clamp"])
@pytest.mark.parametrize("kind", ["fft", "pixel"])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_image_output_in_unit_interval(output, kind, decorrelate):
    p = make_image(kind, decorrelate, output, 3)
    # push the raw values far outside, so that the output function has to bound them
    with torch.no_grad():
        for parameter in p.parameters():
            parameter.normal_(0, 50.0)
    out = p().detach()
    assert out.shape == (2, 3, 9, 8)
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    if output == "clamp":
        # large values are clamped to exactly 0 and 1
        assert float(out.min()) == 0.0 and float(out.max()) == 1.0


@pytest.mark.parametrize("kind", ["fft", "pixel"])
@pytest.mark.parametrize("decorrelate", [True, False])
@pytest.mark.parametrize("output", ["sigmoid", "clamp"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_set_image_round_trip(kind, decorrelate, output, channels):
    p = make_image(kind, decorrelate, output, channels, h=7, w=10)
    target = smooth_images(2, channels, 7, 10, seed=channels)
    p.set_image(target)
    torch.testing.assert_close(p(), target, atol=1e-4, rtol=0)


def test_output_functions_by_hand():
    basis = PixelImage(1, 3, 2, 2)
    raw = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    basis.set_raw(raw)
    d = ColorDecorrelation()
    colours = torch.einsum("ck,bkhw->bchw", d.matrix, raw)
    torch.testing.assert_close(Image(basis, d)(), torch.sigmoid(colours))
    mean = torch.tensor(IMAGENET_COLOR_MEAN)[None, :, None, None]
    torch.testing.assert_close(Image(basis, d, output="clamp")(), (colours + mean).clamp(0, 1))
    # without decorrelation the clamp centre is 0.5
    torch.testing.assert_close(Image(basis, None, output="clamp")(), (raw + 0.5).clamp(0, 1))


@pytest.mark.parametrize("kind", ["fft", "pixel"])
def test_set_image_broadcasts_single_image(kind):
    p = make_image(kind, True, "sigmoid", 3, batch=3, h=6, w=6)
    target = smooth_images(1, 3, 6, 6)[0]
    p.set_image(target)
    out = p()
    assert out.shape == (3, 3, 6, 6)
    for i in range(3):
        torch.testing.assert_close(out[i], target, atol=1e-4, rtol=0)


def test_set_image_clips_extremes_for_sigmoid():
    p = make_image("pixel", False, "sigmoid", 1, batch=1, h=2, w=2)
    p.set_image(torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]]))
    out = p()
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, torch.tensor([[[[1e-3, 1 - 1e-3], [0.5, 0.25]]]]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(2, 3, 9, 9), (2, 1, 9, 8), (3, 9, 7), (9, 8)])
def test_set_image_wrong_shape(shape):
    p = make_image("fft", True, "sigmoid", 3)
    with pytest.raises(ValueError, match=r"must have shape \(2, 3, 9, 8\) or \(3, 9, 8\)"):
        p.set_image(torch.rand(*shape))


def test_set_image_needs_set_raw():
    class NoSetRaw(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.x = torch.nn.Parameter(torch.zeros(1, 1, 2, 2))

        def forward(self):
            return self.x

    p = Image(NoSetRaw())
    with pytest.raises(TypeError, match="no set_raw"):
        p.set_image(torch.rand(1, 1, 2, 2))


def test_decorrelation_channel_mismatch():
    with pytest.raises(ValueError, match="works on 3 channels but the image has 4"):
        Image(PixelImage(1, 4, 5, 5), ColorDecorrelation())
    with pytest.raises(ValueError, match="works on 2 channels but the image has 3"):
        Image(FourierImage(1, 3, 5, 5), ColorDecorrelation.identity(2))


def test_bad_output_and_bad_basis_shape():
    with pytest.raises(ValueError, match="output must be 'sigmoid' or 'clamp'"):
        Image(PixelImage(1, 3, 4, 4), output="tanh")

    class ThreeD(torch.nn.Module):
        def forward(self):
            return torch.zeros(3, 4, 4)

    with pytest.raises(ValueError, match=r"\(N, C, H, W\) images, got shape \(3, 4, 4\)"):
        Image(ThreeD())


def test_image_properties():
    p = Image(FourierImage(2, 5, 7, 11), ColorDecorrelation.identity(5))
    assert (p.batch, p.channels, p.height, p.width) == (2, 5, 7, 11)
    assert p.shape == (2, 5, 7, 11)


def test_clamp_is_straight_through():
    basis = PixelImage(1, 3, 4, 4)
    basis.set_raw(torch.linspace(-3, 3, 48).reshape(1, 3, 4, 4))
    p = Image(basis, None, output="clamp")
    out = p()
    # some pixels are clamped on each side
    assert out.requires_grad
    assert int((out.detach() == 0).sum()) > 0 and int((out.detach() == 1).sum()) > 0
    out.sum().backward()
    assert torch.equal(basis.pixels.grad, torch.ones(1, 3, 4, 4))


def test_clamp_straight_through_with_decorrelation():
    basis = PixelImage(1, 3, 3, 3)
    basis.set_raw(torch.randn(1, 3, 3, 3, generator=torch.Generator().manual_seed(0)) * 10)
    d = ColorDecorrelation()
    p = Image(basis, d, output="clamp")
    weights = torch.rand(1, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    (p() * weights).sum().backward()
    # gradient through the linear map only: matrix^T @ weights, clamping ignored
    expected = torch.einsum("ck,bchw->bkhw", d.matrix, weights)
    torch.testing.assert_close(basis.pixels.grad, expected)


def test_sigmoid_gradient():
    basis = PixelImage(1, 1, 2, 2)
    raw = torch.tensor([[[[-2.0, 0.0], [1.0, 20.0]]]])
    basis.set_raw(raw)
    Image(basis)().sum().backward()
    s = torch.sigmoid(raw)
    torch.testing.assert_close(basis.pixels.grad, s * (1 - s))


# ---------------------------------------------------------------------------
# the image() helper


def test_image_helper_shape_and_order():
    p = param.image(64, 48)
    assert p().shape == (1, 3, 48, 64)
    assert (p.height, p.width) == (48, 64)
    assert param.image(20)().shape == (1, 3, 20, 20)
    assert param.image(5, 7, batch=4, channels=2)().shape == (4, 2, 7, 5)


def test_image_helper_parts():
    p = param.image(10, 12, fft=True, decorrelate=True, decay=1.5, sd=0.02)
    assert isinstance(p.basis, FourierImage)
    assert p.basis.decay == 1.5
    assert (p.basis.height, p.basis.width) == (12, 10)
    torch.testing.assert_close(p.decorrelation.matrix, ColorDecorrelation().matrix)
    assert p.output == "sigmoid"
    q = param.image(10, fft=False, decorrelate=False, output="clamp")
    assert isinstance(q.basis, PixelImage)
    assert q.decorrelation is None
    assert q.output == "clamp"


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_image_helper_non_rgb_gets_identity(channels):
    p = param.image(8, channels=channels)
    assert torch.equal(p.decorrelation.matrix, torch.eye(channels))
    assert p.decorrelation.mean.tolist() == [0.5] * channels


def test_image_helper_starts_near_grey():
    torch.manual_seed(0)
    out = param.image(32, batch=2)().detach()
    assert float((out - 0.5).abs().max()) < 0.05


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((0,), {}, "height"),
        ((-1, 5), {}, "width"),
        ((5, 0), {}, "height"),
        ((5,), {"batch": 0}, "batch"),
        ((5,), {"channels": -1}, "channels"),
        ((5.5,), {}, "height"),
    ],
)
def test_image_helper_invalid_sizes(args, kwargs, name):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        param.image(*args, **kwargs)


@pytest.mark.parametrize("fft", [True, False])
def test_image_helper_init(fft):
    target = smooth_images(1, 3, 12, 10)[0]
    p = param.image(10, 12, batch=2, fft=fft, init=target)
    torch.testing.assert_close(p(), target.expand(2, -1, -1, -1), atol=1e-4, rtol=0)


def test_image_helper_init_wrong_shape():
    with pytest.raises(ValueError, match=r"must have shape \(1, 3, 12, 10\) or \(3, 12, 10\).*got \(3, 10, 12\)"):
        param.image(10, 12, init=torch.rand(3, 10, 12))


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 5),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    fft=st.booleans(),
    decorrelate=st.booleans(),
    output=st.sampled_from(["sigmoid", "clamp"]),
    sd=st.sampled_from([0.01, 1.0, 100.0]),
)
def test_image_property(batch, channels, h, w, fft, decorrelate, output, sd):
    p = param.image(w, h, batch=batch, channels=channels, fft=fft, decorrelate=decorrelate, output=output, sd=sd)
    out = p().detach()
    assert out.shape == (batch, channels, h, w)
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_from_images_singular_covariance_is_a_clear_error():
    grey = torch.rand(2, 1, 8, 8).expand(2, 3, 8, 8)  # three identical channels
    with pytest.raises(ValueError, match="singular"):
        param.ColorDecorrelation.from_images(grey, method="cholesky")
