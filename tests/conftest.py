"""Shared fixtures: trained CIFAR-10 ResNets from ../shared, loaded through torch.hub's cache.

The tests run torch on one thread: the models and images here are small, so more threads buy little and
on a busy machine with few cores cost a lot. ``OMP_NUM_THREADS`` is set (unless the environment has it)
before torch is imported, so that the subprocesses the tests start (the console script, the notebook's
kernel) get it too.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import featvis

torch.set_num_threads(1)

#: the folder of the trained CIFAR-10 weights: FEATVIS_SHARED_WEIGHTS, else ../shared/models/cifar10
#: beside the repository; read it through the ``shared_weights`` fixture, which fails when they are missing
SHARED_WEIGHTS = Path(
    os.environ.get("FEATVIS_SHARED_WEIGHTS", Path(__file__).resolve().parents[2] / "shared/models/cifar10")
)


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    """The folder holding the trained CIFAR-10 weights files (``resnet20-12fca82f.th``, ...):
    ``FEATVIS_SHARED_WEIGHTS``, else ``../shared/models/cifar10`` beside the repository."""
    if not (SHARED_WEIGHTS / "resnet20-12fca82f.th").exists():
        pytest.fail(f"the pretrained CIFAR-10 weights are missing from {SHARED_WEIGHTS} (set FEATVIS_SHARED_WEIGHTS)")
    return SHARED_WEIGHTS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are skipped on a machine without CUDA."""
    if not torch.cuda.is_available():
        for item in items:
            if item.get_closest_marker("cuda") is not None:
                item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is downloaded by the tests: a download attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def hub_cache(tmp_path: Path, shared_weights: Path) -> Path:
    """A temporary torch hub folder whose checkpoints/ holds the shared weights files."""
    source = shared_weights
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for file in source.glob("*.th"):
        shutil.copy(file, checkpoints / file.name)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield checkpoints
    torch.hub.set_dir(old)


@pytest.fixture(scope="session")
def resnet20(shared_weights: Path) -> torch.nn.Module:
    """The trained ResNet-20 (shared by tests that do not change it)."""
    return featvis.models.cifar10_resnet20(model_dir=shared_weights)


@pytest.fixture(scope="session")
def resnet32(shared_weights: Path) -> torch.nn.Module:
    return featvis.models.cifar10_resnet32(model_dir=shared_weights)


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


# ---- a real browser for the HTML pages -------------------------------------------------------
def _browser_or_skip() -> Any:
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None)
        pytest.skip(f"{missing} not installed (Debian: apt-get install -y chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("the selenium package is not installed (pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(argument)
    options.add_argument("--force-device-scale-factor=1")
    options.add_argument("--log-level=3")  # errors only
    # chromium's own lines (dbus, GPU probing) go nowhere instead of into the test log
    service = Service(executable_path=driver, log_output=subprocess.DEVNULL, service_args=["--silent"])
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = _browser_or_skip()
    try:
        yield driver
    finally:
        driver.quit()
