"""Shared fixtures: trained CIFAR-10 ResNets from ../shared, loaded through torch.hub's cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import featvis

SHARED_WEIGHTS = Path(
    os.environ.get("FEATVIS_SHARED_WEIGHTS", Path(__file__).resolve().parents[2] / "shared/models/cifar10")
)


def _require_weights() -> Path:
    if not (SHARED_WEIGHTS / "resnet20-12fca82f.th").exists():
        pytest.fail(f"the pretrained CIFAR-10 weights are missing from {SHARED_WEIGHTS} (set FEATVIS_SHARED_WEIGHTS)")
    return SHARED_WEIGHTS


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is downloaded by the tests: a download attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary torch hub folder whose checkpoints/ holds the shared weights files."""
    source = _require_weights()
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for file in source.glob("*.th"):
        shutil.copy(file, checkpoints / file.name)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield checkpoints
    torch.hub.set_dir(old)


@pytest.fixture(scope="session")
def resnet20() -> torch.nn.Module:
    """The trained ResNet-20 (shared by tests that do not change it)."""
    return featvis.models.cifar10_resnet20(model_dir=_require_weights())


@pytest.fixture(scope="session")
def resnet32() -> torch.nn.Module:
    return featvis.models.cifar10_resnet32(model_dir=_require_weights())


class ModelState:
    """What a render must leave as it was: weights and buffers, every module's train/eval flag,
    every parameter's ``requires_grad``, and no hooks of any kind."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.modes = [(name, m.training) for name, m in model.named_modules()]
        self.grads = [(name, p.requires_grad) for name, p in model.named_parameters()]

    def hooks_left(self) -> list[str]:
        return [
            name
            for name, m in self.model.named_modules()
            if m._forward_hooks or m._forward_pre_hooks or m._forward_hooks_with_kwargs or m._backward_hooks
        ]

    def assert_unchanged(self) -> None:
        assert [(name, m.training) for name, m in self.model.named_modules()] == self.modes
        assert [(name, p.requires_grad) for name, p in self.model.named_parameters()] == self.grads
        assert self.hooks_left() == []
        after = self.model.state_dict()
        assert after.keys() == self.weights.keys()
        for key, value in self.weights.items():
            assert torch.equal(value, after[key]), key


@pytest.fixture
def model_state() -> type[ModelState]:
    """``before = model_state(model)`` ... ``before.assert_unchanged()``."""
    return ModelState
