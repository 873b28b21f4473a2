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
