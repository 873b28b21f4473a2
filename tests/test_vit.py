"""Vision transformers: a small torchvision ViT trained here on striped images must show the stripes'
orientation in its class pictures (the known feature comes out), and a timm ViT renders its MLP's
post-GELU units, a channel over its patches and a neuron at a patch."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import Tensor, nn

import featvis
from featvis import objectives as O
from featvis import transforms

SIZE = 16


def stripes(count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Grey 3-channel images: class 0 horizontal stripes (varying along y), class 1 vertical, with random
    period, phase and contrast and a little noise."""
    labels = torch.arange(count) % 2
    period = 3.0 + 4.0 * torch.rand(count, generator=generator)
    phase = 2 * math.pi * torch.rand(count, generator=generator)
    contrast = 0.2 + 0.3 * torch.rand(count, generator=generator)
    wave = torch.sin(2 * math.pi * torch.arange(SIZE.__float__())[None] / period[:, None] + phase[:, None])
    pattern = torch.where(
        labels[:, None, None] == 0, wave[:, :, None].expand(-1, SIZE, SIZE), wave[:, None, :].expand(-1, SIZE, SIZE)
    )
    grey = 0.5 + contrast[:, None, None] * pattern + 0.05 * torch.randn(count, SIZE, SIZE, generator=generator)
    return grey.clamp(0, 1)[:, None].expand(-1, 3, -1, -1).contiguous(), labels


def orientation(images: Tensor) -> Tensor:
    """Per image: the power at frequencies with |ky| > |kx| (horizontal stripes) over |kx| > |ky| (vertical)."""
    grey = images.mean(1)
    power = torch.fft.fft2(grey - grey.mean(dim=(1, 2), keepdim=True)).abs().square()
    k = torch.fft.fftfreq(SIZE).abs()
    ky, kx = k[:, None].expand(SIZE, SIZE), k[None, :].expand(SIZE, SIZE)
    return (power * (ky > kx)).sum(dim=(1, 2)) / (power * (kx > ky)).sum(dim=(1, 2))


def trained_vit() -> nn.Module:
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(
        image_size=SIZE, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=2
    )
    draw = torch.Generator().manual_seed(0)
    optimiser = torch.optim.Adam(vit.parameters(), lr=3e-3)
    vit.train()
    for _ in range(150):
        images, labels = stripes(64, draw)
        loss = nn.functional.cross_entropy(vit(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return vit.eval()


def test_a_vit_trained_on_stripes_draws_each_class_with_its_orientation() -> None:
    vit = trained_vit()
    held_out, labels = stripes(200, torch.Generator().manual_seed(1))
    with torch.no_grad():
        accuracy = float((vit(held_out).argmax(1) == labels).float().mean())
    assert accuracy >= 0.95, f"the ViT did not learn the task ({accuracy:.2f}): the check below would mean nothing"
    # the measure tells the classes apart on real images, and a random start has no orientation
    ratios = orientation(held_out)
    assert float(ratios[labels == 0].min()) > 4 and float(ratios[labels == 1].max()) < 0.25
    objective = O.class_logit("heads.head", 0, batch=0) + O.class_logit("heads.head", 1, batch=1)
    recipe = [transforms.ColorJitter(0.1, 0.1, 0.1), transforms.GaussianNoise(0.02), transforms.standard()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = featvis.render_vis(
            vit, objective, featvis.param.image(SIZE, batch=2, seed=0), steps=96, seed=0, progress=False,
            transforms=recipe, preprocess=False,
        )  # fmt: skip
    drawn = orientation(result.images)
    assert float(drawn[0]) > 2 and float(drawn[1]) < 0.5, drawn.tolist()
    with torch.no_grad():
        assert vit(result.images).argmax(1).tolist() == [0, 1]


def test_a_timm_vit_renders_post_gelu_units_over_its_patches() -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=10
    ).eval()
    layer = "blocks.1.mlp.act"  # timm's Mlp: fc1, then the GELU
    assert layer in featvis.layer_names(vit)
    captured: list[Tensor] = []
    handle = vit.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rising = featvis.render_vis(vit, O.channel(layer, 5), size=32, steps=24, seed=0, progress=False)
        one_step = {"size": 32, "steps": 1, "seed": 0, "progress": False, "transforms": [], "redirected_relu": 0}
        channel = featvis.render_vis(vit, O.channel(layer, 5), **one_step)
        channel_tokens = captured[-1]
        patch = featvis.render_vis(vit, O.neuron(layer, 5, x=0, y=3), **one_step)
        patch_tokens = captured[-1]
    handle.remove()
    assert float(rising.losses[-4:].mean()) < float(rising.losses[:2].mean())
    assert channel_tokens.shape[1] == 17  # a class token and 4 x 4 patches of 8 pixels
    # a channel is its mean over the 16 patches, not the class token; a neuron is at row 3, column 0
    assert float(-channel.losses[0]) == pytest.approx(float(channel_tokens[:, 1:, 5].mean()), abs=1e-5)
    assert float(-patch.losses[0]) == pytest.approx(float(patch_tokens[:, 1 + 3 * 4 + 0, 5].mean()), abs=1e-5)
