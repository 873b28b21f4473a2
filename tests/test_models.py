"""CIFAR-10 ResNets: the real torch.hub loading path, offline, with the hash check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import featvis
from featvis import models


def test_weights_load_through_the_hub_cache(hub_cache: Path) -> None:
    model = models.cifar10_resnet20()  # no model_dir: torch.hub's own cache folder
    checkpoint = torch.load(hub_cache / "resnet20-12fca82f.th", map_location="cpu", weights_only=True)
    expected = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}
    state = model.state_dict()
    assert len(expected) > 90
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    assert not model.training


def test_architecture_depths_and_layer_names() -> None:
    for depth, factory in [(20, models.cifar10_resnet20), (32, models.cifar10_resnet32),
                           (44, models.cifar10_resnet44), (56, models.cifar10_resnet56)]:  # fmt: skip
        model = factory(pretrained=False)
        convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        assert convs + 1 == depth  # convolutions plus the linear layer
    names = featvis.layer_names(models.cifar10_resnet20(pretrained=False))
    assert {"conv1", "layer1.0.conv1", "layer3.2.bn2", "linear"} <= set(names)


def test_a_tampered_weights_file_is_refused(hub_cache: Path) -> None:
    path = hub_cache / "resnet20-12fca82f.th"
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="damaged or not the published one: its SHA-256 starts with"):
        models.cifar10_resnet20()


def test_a_truncated_weights_file_is_refused(tmp_path: Path, shared_weights: Path) -> None:
    shutil.copy(shared_weights / "resnet32-d509ac18.th", tmp_path)
    path = tmp_path / "resnet32-d509ac18.th"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(RuntimeError, match="damaged"):
        models.cifar10_resnet32(model_dir=tmp_path)


def test_a_missing_file_without_network_says_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match=r"could not download the weights resnet44-014dd654.th .* put the file in"):
        models.cifar10_resnet44(model_dir=tmp_path)


def test_the_model_knows_its_input() -> None:
    model = models.cifar10_resnet20(pretrained=False)
    assert models.default_input_size(model) == 32
    assert models.default_input_size(torch.nn.DataParallel(model)) == 32
    assert torch.allclose(models.default_preprocess(model).std.flatten(), torch.tensor(models.CIFAR10_STD))
    assert len(models.CIFAR10_CLASSES) == 10
