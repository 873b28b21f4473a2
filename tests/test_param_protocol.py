"""The basis protocol: a basis written outside featvis, given to ``param.image`` as a class or as a
module, renders like a built-in one; ``image`` passes ``sd``/``decay`` only to classes that take
them, and says what is wrong with anything else."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import featvis
from featvis import param
from featvis.param import Basis, FourierImage, InterpolationImage, LaplacianPyramidImage, LowResImage, MacoImage


class ColourAndGrating(nn.Module):
    """A basis of our own: one learnable colour per image plus a vertical sine grating of learnable strength."""

    grating: Tensor

    def __init__(self, batch: int, channels: int, height: int, width: int) -> None:
        super().__init__()
        self.colour = nn.Parameter(torch.zeros(batch, channels, 1, 1))
        self.strength = nn.Parameter(torch.full((batch, channels, 1, 1), 0.5))
        x = torch.arange(width, dtype=torch.float32)
        self.register_buffer("grating", torch.sin(2 * math.pi * x / 4).expand(height, width).clone())

    def forward(self) -> Tensor:
        return self.colour + self.strength * self.grating


class Recorder(nn.Module):
    """A pixel basis that keeps the keyword arguments it was made with."""

    def __init__(self, batch: int, channels: int, height: int, width: int, sd: float = 0.0) -> None:
        super().__init__()
        self.made_with = {"sd": sd}
        self.pixels = nn.Parameter(torch.randn(batch, channels, height, width) * sd)

    def forward(self) -> Tensor:
        return self.pixels

    @torch.no_grad()
    def set_raw(self, raw: Tensor) -> None:
        self.pixels.copy_(raw)


class TakesAnything(Recorder):
    def __init__(self, batch: int, channels: int, height: int, width: int, **options: float) -> None:
        super().__init__(batch, channels, height, width, sd=options.get("sd", 0.0))
        self.made_with = dict(options)


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()


def test_a_basis_class_of_our_own_renders():
    torch.manual_seed(0)
    p = param.image(16, basis=ColourAndGrating)
    assert type(p.basis) is ColourAndGrating and p.shape == (1, 3, 16, 16)
    start = [t.detach().clone() for t in p.basis.parameters()]
    result = featvis.render_vis(tiny_model(), "0:1", p, steps=2, progress=False)
    assert result.images.shape == (1, 3, 16, 16)
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1
    assert any(not torch.equal(a, b.detach()) for a, b in zip(start, p.basis.parameters())), "nothing was learnt"


def test_a_basis_module_of_our_own_is_used_as_it_is_and_renders():
    basis = ColourAndGrating(2, 3, 12, 16)
    p = param.image(16, 12, batch=2, basis=basis)
    assert p.basis is basis and p.shape == (2, 3, 12, 16)
    result = featvis.render_vis(tiny_model(), "0:1", p, steps=2, progress=False)
    assert result.images.shape == (2, 3, 12, 16)


def test_the_built_in_bases_and_ours_follow_the_protocol():
    for basis in [
        param.PixelImage(1, 3, 8, 8),
        FourierImage(1, 3, 8, 8),
        LaplacianPyramidImage(1, 3, 8, 8),
        LowResImage(1, 3, 8, 8),
        MacoImage(1, 3, 8, 8),
        InterpolationImage(2, 3, 8, 8),
        ColourAndGrating(1, 3, 8, 8),
    ]:
        assert isinstance(basis, Basis)
    assert not isinstance(object(), Basis)
    assert "Basis" in param.__all__


def test_image_passes_sd_and_decay_only_to_classes_that_take_them():
    assert param.image(8, basis=Recorder, sd=0.25).basis.made_with == {"sd": 0.25}
    assert param.image(8, basis=TakesAnything, sd=0.5, decay=2.0).basis.made_with == {"sd": 0.5, "decay": 2.0}
    assert param.image(8, basis=FourierImage, decay=0.5).basis.decay == 0.5
    made = param.image(8, 6, batch=2, channels=1, basis=LowResImage)
    assert type(made.basis) is LowResImage and made().shape == (2, 1, 6, 8)


def test_a_basis_of_our_own_starts_from_an_image_if_it_has_set_raw():
    target = torch.rand(1, 3, 8, 8) * 0.8 + 0.1
    p = param.image(8, basis=Recorder, init=target)
    assert torch.allclose(p(), target, atol=1e-3)
    with pytest.raises(TypeError, match="ColourAndGrating has no set_raw"):
        param.image(8, basis=ColourAndGrating, init=target)


def test_a_module_of_the_wrong_size_is_refused_saying_which_size_differs():
    with pytest.raises(
        ValueError, match=r"ColourAndGrating does not make the images asked for: it makes 2 images but batch=1"
    ):
        param.image(16, basis=ColourAndGrating(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"it has 1 channels but channels=3"):
        param.image(16, basis=ColourAndGrating(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"it is 12 pixels high but h=16; it is 10 pixels wide but w=16"):
        param.image(16, basis=ColourAndGrating(1, 3, 12, 10))
    with pytest.raises(ValueError, match=r"give image\(\) the basis's sizes"):
        param.image(16, basis=FourierImage(1, 3, 16, 8))


def test_a_class_that_makes_the_wrong_size_or_takes_other_arguments_is_refused():
    class Squared(ColourAndGrating):
        def __init__(self, batch: int, channels: int, height: int, width: int) -> None:
            super().__init__(batch, channels, height, height)

    class NoSizes(nn.Module):
        def __init__(self, colour: float) -> None:
            super().__init__()

    with pytest.raises(ValueError, match="it is 8 pixels wide but w=16"):
        param.image(16, 8, basis=Squared)
    with pytest.raises(TypeError, match=r"a basis class is called as cls\(batch, channels, height, width\).*NoSizes"):
        param.image(16, basis=NoSizes)
    with pytest.raises(TypeError, match=r"a basis class must be a subclass of torch\.nn\.Module, got dict"):
        param.image(16, basis=dict)  # type: ignore[arg-type]


def test_anything_else_is_refused_naming_what_is_accepted():
    accepted = r"basis must be 'fourier', 'pixel', 'laplacian', 'lowres' or 'maco', a basis class .* or a basis module"
    with pytest.raises(ValueError, match=accepted + r".*got 'wavelet'"):
        param.image(16, basis="wavelet")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=accepted + r".*of type function"):
        param.image(16, basis=lambda: torch.zeros(1, 3, 16, 16))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=accepted + r".*got 3 of type int"):
        param.image(16, basis=3)  # type: ignore[arg-type]

    class Flat(ColourAndGrating):
        def forward(self) -> Tensor:
            return super().forward()[0]

    with pytest.raises(ValueError, match=r"must return \(N, C, H, W\) images, got shape \(3, 16, 16\)"):
        param.image(16, basis=Flat(1, 3, 16, 16))
