"""Models of 1-d signals and 3-d volumes: a clear message with featvis's 2-d images, and channels read on
the right axis when the user brings a parameterisation of the model's input shape."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import featvis
from featvis import objectives as O
from featvis.hooks import ActivationCapture


class Signal(nn.Module):
    """A learnable batch of 1-d signals (N, C, L) in [0, 1]: a parameterisation of the model's input."""

    def __init__(self, batch: int, channels: int, length: int) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.randn(batch, channels, length) * 0.01)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.raw)


def audio_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 6, 3), nn.ReLU()).eval()


@pytest.mark.parametrize(
    ("model", "takes"),
    [
        (audio_model(), "Conv1d: it takes 1-d signals (N, C, L)"),
        (nn.Sequential(nn.Conv3d(3, 4, 3), nn.ReLU()).eval(), "Conv3d: it takes 3-d volumes (N, C, T, H, W)"),
    ],
)
def test_a_1d_or_3d_model_with_2d_images_says_what_it_takes(model: nn.Module, takes: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"this model's first convolution is a {takes}")) as raised:
        featvis.render_vis(model, "1:0", size=16, steps=2, progress=False)
    assert "pass param= a module whose forward() returns tensors of the model's input shape" in str(raised.value)


def test_channels_of_a_1d_model_are_read_on_the_channel_axis() -> None:
    model = audio_model()
    signals = torch.rand(2, 2, 20)
    with ActivationCapture(model, ["1", "3"]) as capture:
        acts = capture.run(signals, image=signals)
    # (N, C, L): channel 3 of layer 1 is acts[:, 3], not position 3
    assert torch.equal(acts.units("1", channel=3), acts["1"][:, 3])
    assert torch.equal(O.channel("3", 5)(acts), acts["3"][:, 5].mean())
    with pytest.raises(IndexError, match="channel 100 is out of range for layer '3', which has 6 channels"):
        O.channel("3", 100)(acts)


def test_a_1d_model_renders_with_a_signal_parameterisation() -> None:
    model = audio_model()
    result = featvis.render_vis(model, "3:4", Signal(1, 2, 32), transforms=[], steps=24, seed=0, progress=False)
    assert result.images.shape == (1, 2, 32)
    assert float(result.losses[-1]) < float(result.losses[0])  # the channel rose
    assert repr(result).startswith("RenderResult(1 image 2x32, 24 steps")
    assert result._repr_png_() is None and result._repr_html_() is None  # a notebook shows the text
    with pytest.raises(IndexError, match="which has 6 channels"):
        featvis.render_vis(model, "3:100", Signal(1, 2, 32), transforms=[], steps=2, progress=False)


def test_token_sequences_of_an_image_model_stay_tokens() -> None:
    class Tokens(nn.Module):  # (N, C, H, W) -> (N, tokens, features), as a ViT's patch embedding
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.mlp = nn.Conv2d(3, 5, 4, stride=4), nn.Linear(5, 7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mlp(self.embed(x).flatten(2).transpose(1, 2))

    model = Tokens().eval()
    images = torch.rand(1, 3, 8, 8)
    with ActivationCapture(model, ["mlp"]) as capture:
        acts = capture.run(images, image=images)
    assert acts.channels_first("mlp").shape == (1, 7, 4)  # 7 features over 4 tokens


def test_a_1d_model_with_1d_signals_of_the_wrong_width_gets_the_usual_message() -> None:
    model = audio_model()  # takes 2 channels
    with pytest.raises(ValueError) as raised:
        featvis.render_vis(model, "3:0", Signal(1, 3, 32), transforms=[], steps=2, progress=False)
    assert "first convolution is a Conv1d" not in str(raised.value)
    assert "in_channels" in str(raised.value) or "channels" in str(raised.value)


def test_a_neuron_of_a_vit_is_at_the_centre_patch_not_the_middle_token() -> None:
    class PatchTokens(nn.Module):  # a class token and a 4x4 grid of patches: 17 tokens, as a ViT's
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 6, 4, stride=4)
            self.cls = nn.Parameter(torch.zeros(1, 1, 6))
            self.block = nn.Linear(6, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            patches = self.embed(x).flatten(2).transpose(1, 2)
            return self.block(torch.cat([self.cls.expand(len(x), -1, -1), patches], dim=1))

    model = PatchTokens().eval()
    images = torch.rand(1, 3, 16, 16)
    with ActivationCapture(model, ["block"]) as capture:
        acts = capture.run(images, image=images)
    tokens = acts["block"]  # (1, 17, 6)
    # the centre of the 4x4 grid is row 2, column 2: token 1 + 2 * 4 + 2 = 11 (not 17 // 2 = 8)
    assert torch.equal(O.neuron("block", 3)(acts), tokens[:, 11, 3].mean())
    assert torch.equal(O.neuron("block", 3, x=8)(acts), tokens[:, 8, 3].mean())
    # a channel is its mean over the 16 patches: the class token is no position of the picture
    assert torch.allclose(O.channel("block", 3)(acts), tokens[:, 1:, 3].mean())
    # with y, (y, x) is a patch's row and column in the grid, after the class token
    assert torch.equal(O.neuron("block", 3, x=0, y=3)(acts), tokens[:, 1 + 3 * 4 + 0, 3].mean())
    assert torch.equal(O.neuron("block", 3, y=1)(acts), tokens[:, 1 + 1 * 4 + 2, 3].mean())  # centre column
    vector = torch.tensor([1.0, 0, 0, 0, 0, -1])
    expected = (tokens[:, 1 + 2 * 4 + 1] * vector).sum(1).mean()
    assert torch.allclose(O.direction_neuron("block", vector, x=1, y=2)(acts), expected)
    with pytest.raises(
        IndexError, match=r"y=4 is out of range for the 4x4 grid of patches of layer 'block' \(0 to 3\)"
    ):
        O.neuron("block", 3, x=0, y=4)(acts)
    # a 1-d model's signals keep the middle position
    signals_model = audio_model()
    signals = torch.rand(1, 2, 17)
    with ActivationCapture(signals_model, ["1"]) as capture:
        signal_acts = capture.run(signals, image=signals)
    assert torch.equal(O.neuron("1", 2)(signal_acts), signal_acts["1"][:, 2, 17 // 2].mean())
    with pytest.raises(ValueError, match=r"y=1 has no meaning for layer '1': .* \(N, C, L\); give the position as x="):
        O.neuron("1", 2, x=3, y=1)(signal_acts)


def test_a_patch_of_tokens_that_are_not_a_grid_is_refused_by_name() -> None:
    class Tokens(nn.Module):  # 6 tokens: neither k*k nor 1+k*k
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(x.flatten(1)[:, :24].reshape(len(x), 6, 4))

    model = Tokens().eval()
    images = torch.rand(1, 3, 4, 4)
    with ActivationCapture(model, ["block"]) as capture:
        acts = capture.run(images, image=images)
    assert torch.equal(O.neuron("block", 1, x=5)(acts), acts["block"][:, 5, 1].mean())
    with pytest.raises(ValueError, match=r"has 6 tokens .* give the token's index as x= alone"):
        O.neuron("block", 1, x=0, y=0)(acts)
