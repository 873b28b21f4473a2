"""The layer gallery: per-unit curves and activations against references, the files and page it writes,
the model left as it was, and the page in a real browser (headless Chromium through Selenium).

The browser test needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``) and the ``selenium`` package; it is skipped, saying which is missing, without them.
``FEATVIS_GALLERY=DIR`` makes it check an existing gallery instead of rendering a small one, and
``FEATVIS_SCREENSHOT=FILE.png`` saves its screenshot there too (it always saves one in tmp_path).
"""

from __future__ import annotations

import base64
import fnmatch
import html.parser
import importlib.resources
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import featvis
from featvis.gallery import CurveRecorder, render_gallery, unit_activations, unit_filename, write_gallery
from featvis.render import RenderResult

if TYPE_CHECKING:
    from conftest import ModelState


def tiny_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU()).eval()


class PageParser(html.parser.HTMLParser):
    """The parts of a gallery page the tests read: figures with their data, images, SVG polylines, title."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict[str, str]] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.polylines: list[str] = []
        self.title = ""
        self._in_title = False
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "figure" and "unit" in values.get("class", "").split():
            self.figures.append(values)
        elif tag == "img":
            self.images.append(values)
        elif tag == "a":
            self.links.append(values.get("href", ""))
        elif tag == "polyline":
            self.polylines.append(values["points"])
        elif tag == "title" and not self.title:
            self._in_title = True
        for key in ("src", "href"):
            if "://" in values.get(key, "") or values.get(key, "").startswith("//"):
                self.external.append(values[key])
        if tag in ("link", "iframe", "object", "embed") or (tag == "script" and "src" in values):
            self.external.append(f"<{tag}>")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


# ---- the numbers -----------------------------------------------------------------------
def test_unit_curves_add_up_to_each_chunks_loss_and_are_recorded_once_per_step() -> None:
    model = tiny_model()
    recorder = CurveRecorder()
    result = featvis.render_channels(
        model, "0", [4, 0, 2, 1, 3], batch_size=2, size=12, steps=6, seed=1, progress=False, unit=recorder
    )
    curves = recorder.curves(result.steps)
    assert curves.shape == (5, 6)
    chunks = [[0, 1], [2, 3], [4]]  # positions of the units rendered together
    assert result.losses.shape == (3, 6)
    for chunk, losses in zip(chunks, result.losses):
        torch.testing.assert_close(curves[chunk].sum(dim=0), -losses, rtol=1e-5, atol=1e-6)
    # each unit's value is its own channel of its own image: it rises as its image is optimised (the
    # convolution, before the ReLU, can always be raised)
    assert bool((curves[:, -1] > curves[:, 0]).all()), curves


def test_unit_activations_match_a_numpy_convolution() -> None:
    conv = nn.Conv2d(3, 2, 3)
    model = nn.Sequential(conv).eval()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((3, 3, 7, 6)).astype(np.float32))
    units = [1, 0, 1]
    weight, bias = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    windows = np.lib.stride_tricks.sliding_window_view(images.numpy(), (3, 3), axis=(2, 3))  # N,C,5,4,3,3
    expected = [
        (np.einsum("chwij,cij->hw", windows[i], weight[unit]) + bias[unit]).mean() for i, unit in enumerate(units)
    ]
    found = unit_activations(model, "0", images, units, preprocess=False, batch_size=2)
    np.testing.assert_allclose(found.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_unit_activations_use_the_models_preprocessing(resnet20: nn.Module, model_state: type[ModelState]) -> None:
    before = model_state(resnet20)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(featvis.models.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(featvis.models.CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():  # the forward pass written out by hand, up to layer2
        x = F.relu(resnet20.bn1(resnet20.conv1((images - mean) / std)))
        layer2 = resnet20.layer2(resnet20.layer1(x))
    expected = torch.stack([layer2[0, 7].mean(), layer2[1, 30].mean()])
    torch.testing.assert_close(unit_activations(resnet20, "layer2", images, [7, 30]), expected)
    before.assert_unchanged()


# ---- the files -------------------------------------------------------------------------
def test_render_gallery_writes_one_png_per_unit_and_a_page_that_shows_exactly_them(
    tmp_path: Path, model_state: type[ModelState]
) -> None:
    model = tiny_model()
    before = model_state(model)
    gallery = render_gallery(model, "1", tmp_path / "out", [3, 0, 4], size=10, steps=5, seed=0, model_name="tiny")
    before.assert_unchanged()

    assert [p.name for p in gallery.images] == ["unit-003.png", "unit-000.png", "unit-004.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "index.html", "unit-000.png", "unit-003.png", "unit-004.png",
    ]  # fmt: skip
    for path, image in zip(gallery.images, gallery.result.images):
        saved = np.asarray(Image.open(path))
        assert saved.shape == (10, 10, 3)
        np.testing.assert_array_equal(saved, (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))

    page = parse_page(gallery.index)
    assert page.title == "featvis gallery: tiny · 1 · 5 steps"
    assert [f["data-unit"] for f in page.figures] == ["3", "0", "4"]
    thumbnails = [img["src"] for img in page.images if img.get("id") != "viewer-image"]
    assert thumbnails == [p.name for p in gallery.images]
    assert {img["src"] for img in page.images} == {p.name for p in gallery.images}
    assert [link for link in page.links] == [p.name for p in gallery.images]
    assert page.external == []  # nothing from the network: no URLs, stylesheets or script files
    # captions show each unit's final activation, measured again here
    activations = unit_activations(model, "1", gallery.result.images, [3, 0, 4])
    torch.testing.assert_close(gallery.activations, activations)
    assert [f["data-activation"] for f in page.figures] == [f"{a:.3g}" for a in activations.tolist()]
    # one curve per unit, one point per step, from left (x=0) to right (x=100)
    assert len(page.polylines) == 3
    for points in page.polylines:
        xs = [float(pair.split(",")[0]) for pair in points.split()]
        assert len(xs) == 5 and xs[0] == 0 and xs[-1] == 100


def test_a_curve_rises_where_the_objective_rises() -> None:
    result = RenderResult(torch.rand(1, 3, 4, 4), {}, torch.zeros(4), "x", 4, units=[0])
    curves = torch.tensor([[0.0, 1.0, 3.0, 2.0]])
    folder_page = write_gallery_to_temp(result, curves)
    (points,) = folder_page.polylines
    ys = [float(pair.split(",")[1]) for pair in points.split()]
    # SVG y grows downwards: the largest value (3 at step 3) is highest, the smallest (step 1) lowest
    assert ys.index(min(ys)) == 2 and ys.index(max(ys)) == 0


def write_gallery_to_temp(result: RenderResult, curves: torch.Tensor) -> PageParser:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        write_gallery(folder, result, curves=curves)
        return parse_page(Path(folder) / "index.html")


def test_the_page_inlines_the_stylesheet_and_script_shipped_as_package_data(tmp_path: Path) -> None:
    assets = importlib.resources.files("featvis") / "gallery_assets"
    css = (assets / "gallery.css").read_text(encoding="utf-8")
    script = (assets / "gallery.js").read_text(encoding="utf-8")
    result = RenderResult(torch.rand(2, 3, 8, 8), {}, torch.zeros(2, 5), "demo", 5, units=[4, 9])
    write_gallery(tmp_path, result)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert page.count("<style>") == 1 and f"<style>\n{css}</style>" in page
    assert page.count("<script>") == 1 and f"<script>\n{script}</script>" in page
    # they are the page's own: the stylesheet styles its grid and viewer, the script drives the viewer
    assert ".grid {" in css and "#viewer {" in css and 'document.getElementById("viewer")' in script
    # and pyproject.toml ships every file of the folder in the wheel
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["featvis"]
    shipped = sorted(p.name for p in (root / "src/featvis/gallery_assets").iterdir() if p.is_file())
    assert shipped == ["gallery.css", "gallery.js", "model_index.css"]
    assert [name for name in shipped if not any(fnmatch.fnmatch(f"gallery_assets/{name}", p) for p in patterns)] == []


def test_unit_file_names() -> None:
    assert [unit_filename(u) for u in (0, 7, 63, 1000)] == [
        "unit-000.png",
        "unit-007.png",
        "unit-063.png",
        "unit-1000.png",
    ]


def test_write_gallery_refuses_what_does_not_fit(tmp_path: Path) -> None:
    result = RenderResult(torch.rand(2, 3, 4, 4), {}, torch.zeros(1, 3), "x", 3, units=[5, 5])
    with pytest.raises(ValueError, match="each unit can appear once in a gallery"):
        write_gallery(tmp_path, result)
    result.units = [1, 2]
    with pytest.raises(ValueError, match=r"curves must be \(units, steps\) with one row per image \(2\)"):
        write_gallery(tmp_path, result, curves=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="got 1 activations for 2 images; give one per image"):
        write_gallery(tmp_path, result, activations=[1.0])
    with pytest.raises(TypeError, match="takes no unit="):
        render_gallery(tiny_model(), "1", tmp_path, unit=lambda *a: None)
    with pytest.raises(ValueError, match="got 1 units for 2 images; give one unit per image"):
        unit_activations(tiny_model(), "1", torch.rand(2, 3, 8, 8), [0])


# ---- the page in a browser (the browser fixture is in conftest.py) ----------------------------
def save_full_page(browser: Any, path: Path) -> None:
    """A PNG of the whole page, beyond the window's height (Chrome DevTools' captureBeyondViewport)."""
    width, height = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    assert Image.open(path).size == (width, height)


@pytest.fixture
def gallery_folder(tmp_path: Path, resnet20: nn.Module) -> Path:
    """FEATVIS_GALLERY, or a small gallery of the trained ResNet-20's layer3 (6 units, 16 steps)."""
    given = os.environ.get("FEATVIS_GALLERY")
    if given:
        return Path(given)
    gallery = render_gallery(
        resnet20, "layer3", tmp_path / "gallery", range(6), steps=16, seed=0, model_name="cifar10-resnet20"
    )
    return gallery.directory


@pytest.mark.slow
def test_the_gallery_page_works_in_a_real_browser(browser: Any, gallery_folder: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    pngs = sorted(p.name for p in gallery_folder.glob("unit-*.png"))
    browser.get((gallery_folder / "index.html").resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.title.startswith("featvis gallery:")

    # every image has loaded, and the grid shows exactly the PNGs of the folder
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    assert all(complete and width > 0 for _, complete, width in images), [i for i in images if not i[2]]
    units = browser.find_elements(By.CSS_SELECTOR, "figure.unit")
    assert sorted(u.find_element(By.TAG_NAME, "img").get_attribute("src").rsplit("/", 1)[1] for u in units) == pngs
    # (that the page names no URL, stylesheet or script file is checked on its HTML above)

    shots = [tmp_path / "gallery.png"]
    if os.environ.get("FEATVIS_SCREENSHOT"):
        shots.append(Path(os.environ["FEATVIS_SCREENSHOT"]))
    for shot in shots:
        save_full_page(browser, shot)

    viewer = browser.find_element(By.ID, "viewer")
    enlarged = browser.find_element(By.ID, "viewer-image")
    assert viewer.get_attribute("open") is None
    # clicking a unit opens the enlarged view with that unit's image, larger than its thumbnail
    target = units[min(2, len(units) - 1)]
    thumbnail = target.find_element(By.TAG_NAME, "img")
    thumbnail.click()
    assert viewer.get_attribute("open") is not None
    assert viewer.get_attribute("data-unit") == target.get_attribute("data-unit")
    assert enlarged.get_attribute("src") == thumbnail.get_attribute("src")
    assert browser.execute_script("return arguments[0].naturalWidth", enlarged) > 0
    assert enlarged.size["width"] > 1.5 * thumbnail.size["width"], (enlarged.size, thumbnail.size)
    caption = browser.find_element(By.ID, "viewer-caption").text
    assert caption.startswith(f"unit {target.get_attribute('data-unit')}"), caption
    browser.save_screenshot(str(tmp_path / "enlarged.png"))
    # the right arrow shows the next unit; Escape closes the view
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    following = units[(units.index(target) + 1) % len(units)]
    assert viewer.get_attribute("data-unit") == following.get_attribute("data-unit")
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    assert viewer.get_attribute("open") is None
    # a click on the enlarged view closes it too
    units[0].find_element(By.TAG_NAME, "img").click()
    assert viewer.get_attribute("open") is not None
    enlarged.click()
    assert viewer.get_attribute("open") is None
    # a link to index.html#unit-NNN opens the page on that unit
    last = units[-1]
    browser.get((gallery_folder / "index.html").resolve().as_uri() + "#" + last.get_attribute("id"))
    viewer = browser.find_element(By.ID, "viewer")
    assert viewer.get_attribute("open") is not None
    assert viewer.get_attribute("data-unit") == browser.find_elements(By.CSS_SELECTOR, "figure.unit")[-1].get_attribute(
        "data-unit"
    )
