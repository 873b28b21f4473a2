"""Snapshots every k steps, GIF and MP4 animations of them, and how a result shows itself in Jupyter."""

from __future__ import annotations

import base64
import html
import importlib.util
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import featvis
from featvis import animation
from featvis import objectives as O
from featvis.render import RenderResult

if TYPE_CHECKING:
    from conftest import ModelState


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3)).eval()


def render(model: nn.Module, **kwargs: object) -> RenderResult:
    kwargs.setdefault("size", 12)
    kwargs.setdefault("seed", 0)
    return featvis.render_vis(model, "2:1", progress=False, **kwargs)


def few_colours(*shape: int, seed: int) -> torch.Tensor:
    """Images whose values are multiples of 1/3: 64 colours at most, which a GIF palette holds exactly."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, shape, generator=generator).float() / 3


def rgb(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB"), dtype=np.int16)


def gif_frames(path: Path | io.BytesIO) -> tuple[list[np.ndarray], list[int], dict]:
    """Every frame of a GIF as RGB arrays (composited, as a viewer shows them), their durations, the info."""
    gif = Image.open(path)
    info = dict(gif.info)
    arrays, durations = [], []
    for index in range(gif.n_frames):
        gif.seek(index)
        arrays.append(rgb(gif))
        durations.append(gif.info["duration"])
    return arrays, durations, info


# ---- snapshot_every ----------------------------------------------------------------------------
def test_snapshot_every_keeps_the_same_images_as_the_equivalent_thresholds() -> None:
    model = tiny_model()
    every = render(model, steps=10, snapshot_every=3)
    listed = render(model, steps=10, thresholds=[3, 6, 9])
    assert sorted(every.snapshots) == [3, 6, 9]
    for step in (3, 6, 9):
        assert torch.equal(every.snapshots[step], listed.snapshots[step])
    assert torch.equal(every.images, listed.images)
    assert not torch.equal(every.snapshots[3], every.snapshots[9])  # they are copies, taken at different steps
    both = render(model, steps=10, snapshot_every=4, thresholds=[1, 8])
    assert sorted(both.snapshots) == [1, 4, 8]
    assert render(model, steps=3, snapshot_every=5).snapshots == {}  # a period longer than the run


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4"])
def test_snapshot_every_must_be_a_positive_whole_number(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"snapshot_every must be a positive number of steps .*got {bad!r}"):
        render(tiny_model(), steps=4, snapshot_every=bad)


def test_render_channels_passes_snapshot_every_on(model_state: type[ModelState]) -> None:
    model = tiny_model()
    before = model_state(model)
    result = featvis.render_channels(model, "2", [0, 1, 3], batch_size=2, size=12, steps=6, snapshot_every=2)
    assert sorted(result.snapshots) == [2, 4, 6]
    assert result.snapshots[2].shape == (3, 3, 12, 12)
    assert torch.equal(result.snapshots[6], result.images)
    before.assert_unchanged()


# ---- frames ------------------------------------------------------------------------------------
def test_frames_are_the_grids_of_the_snapshots_then_the_final_images() -> None:
    snapshots = {step: few_colours(3, 3, 8, 8, seed=step) for step in (5, 2)}
    result = RenderResult(few_colours(3, 3, 8, 8, seed=9), snapshots, torch.zeros(7), "x", 7)
    pictures = animation.frames(result, nrow=3, scale=2, step_caption=False)
    assert [step for step, _ in pictures] == [2, 5, 7]
    expected = [snapshots[2], snapshots[5], result.images]
    for (_, picture), images in zip(pictures, expected):
        assert np.array_equal(rgb(picture), rgb(result.grid(nrow=3, images=images, scale=2)))
    # a snapshot at the last step is the final images already: not shown twice
    result.snapshots[7] = result.images
    assert [step for step, _ in animation.frames(result)] == [2, 5, 7]


def test_step_captions_go_under_the_grid_and_differ_between_frames() -> None:
    result = RenderResult(
        few_colours(1, 3, 8, 8, seed=0), {3: few_colours(1, 3, 8, 8, seed=1)}, torch.zeros(12), "x", 12
    )
    plain = animation.frames(result, scale=4, step_caption=False)
    captioned = animation.frames(result, scale=4)
    for (_, without), (_, with_caption) in zip(plain, captioned):
        assert with_caption.width == without.width and with_caption.height > without.height
        assert np.array_equal(rgb(with_caption)[: without.height], rgb(without))
        strip = rgb(with_caption)[without.height :]
        assert (strip < 128).any()  # some dark text on the white strip
    strips = [rgb(picture)[plain[0][1].height :] for _, picture in captioned]
    assert not np.array_equal(strips[0], strips[1])  # "step 3 of 12", then "step 12 of 12"


def test_snapshots_of_other_sizes_are_resized_to_the_final_size() -> None:
    small = torch.rand(2, 3, 4, 6)
    result = RenderResult(torch.rand(2, 3, 8, 12), {1: small}, torch.zeros(2), "x", 2)
    steps = animation.snapshot_steps(result)
    reference = torch.nn.functional.interpolate(small, size=(8, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(steps[0][1], reference)
    assert len({picture.size for _, picture in animation.frames(result)}) == 1


def test_a_result_without_snapshots_cannot_be_animated() -> None:
    result = RenderResult(torch.rand(1, 3, 8, 8), {}, torch.zeros(3), "x", 3)
    with pytest.raises(ValueError, match=r"no snapshots to animate; render with snapshot_every=k"):
        result.save_gif(io.BytesIO())


# ---- GIF -----------------------------------------------------------------------------------------
def test_gif_frames_sizes_durations_and_loop(tmp_path: Path) -> None:
    snapshots = {step: few_colours(4, 3, 8, 8, seed=step) for step in (2, 4, 6)}
    result = RenderResult(few_colours(4, 3, 8, 8, seed=0), snapshots, torch.zeros(8), "x", 8)
    labels = ["a", "b", "c", "d"]
    path = tmp_path / "run.gif"
    result.save_gif(path, fps=5, hold_last=0.75, nrow=2, scale=3, labels=labels)
    arrays, durations, info = gif_frames(path)
    expected = animation.frames(result, nrow=2, scale=3, labels=labels)
    assert len(arrays) == 4 == len(snapshots) + 1
    assert {array.shape[1::-1] for array in arrays} == {expected[0][1].size}
    assert durations == [200, 200, 200, 750]
    assert info["loop"] == 0
    for array, (step, picture) in zip(arrays, expected):
        assert np.array_equal(array, rgb(picture)), f"frame of step {step}"
        images = snapshots.get(step, result.images)
        grid = rgb(result.grid(nrow=2, images=images, labels=labels, scale=3))
        assert np.array_equal(array[: grid.shape[0]], grid), f"grid of step {step}"


def test_gif_loop_options_and_durations() -> None:
    result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
    buffer = io.BytesIO()
    result.save_gif(buffer, loop=None)
    assert "loop" not in Image.open(io.BytesIO(buffer.getvalue())).info  # played once
    _, durations, info = gif_frames(io.BytesIO(animation.gif_bytes(result, loop=3, fps=8, hold_last=0)))
    assert info["loop"] == 3
    assert durations == [120, 120]  # 1000 / 8 = 125 ms, in the hundredths of a second GIFs count in
    assert animation.gif_durations(4, fps=100, hold_last=0.5) == [20, 20, 20, 500]


def test_gif_of_a_real_render_follows_its_snapshots(tmp_path: Path) -> None:
    """Hundreds of colours: the per-frame palette is close, and each frame is nearest its own snapshot."""
    result = render(tiny_model(), steps=12, snapshot_every=3, size=16)
    path = tmp_path / "real.gif"
    result.save_animation(path, scale=2, step_caption=False)
    arrays, _, _ = gif_frames(path)
    grids = [rgb(result.grid(images=images, scale=2)) for _, images in animation.snapshot_steps(result)]
    assert len(arrays) == len(grids) == 4
    for index, array in enumerate(arrays):
        distances = [np.abs(array - grid).mean() for grid in grids]
        assert distances[index] < 2.0  # mean error under 2 of 255 levels
        assert int(np.argmin(distances)) == index


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fps": 0}, r"fps must be a number of frames per second in \(0, 100\], got 0"),
        ({"fps": 500}, r"fps must be .* got 500"),
        ({"hold_last": -1}, r"hold_last must be a number of seconds >= 0, got -1"),
        ({"loop": -1}, r"loop must be a number of repeats >= 0 \(0 loops forever\) or None \(play once\), got -1"),
        ({"scale": 0}, r"scale must be a positive whole number, got 0"),
        ({"labels": ["a", "b"]}, r"got 2 labels for 1 images"),
    ],
)
def test_gif_option_errors(options: dict, message: str) -> None:
    result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
    with pytest.raises(ValueError, match=message):
        result.save_gif(io.BytesIO(), **options)


def test_save_animation_chooses_by_suffix(tmp_path: Path) -> None:
    result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
    result.save_animation(tmp_path / "run.GIF")
    assert Image.open(tmp_path / "run.GIF").format == "GIF"
    with pytest.raises(ValueError, match=r"cannot tell the animation format from .*run.webm.*name the file \*.gif"):
        result.save_animation(tmp_path / "run.webm")


# ---- MP4 -----------------------------------------------------------------------------------------
def _read_mp4(path: Path) -> list[np.ndarray]:
    if importlib.util.find_spec("av") is not None:
        import av

        with av.open(str(path)) as container:
            return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return [np.asarray(frame) for frame in reader]


WRITERS = [
    pytest.param(
        "imageio",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("imageio_ffmpeg") is None, reason="pip install imageio imageio-ffmpeg"
        ),
    ),
    pytest.param("av", marks=pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="pip install av")),
]


def flat_colours(count: int, seed: int) -> torch.Tensor:
    """``count`` 8x8 images of one colour each: what H.264's colour subsampling keeps well."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, 1, 1, generator=generator).expand(count, 3, 8, 8).clone()


@pytest.mark.parametrize("writer", WRITERS)
def test_mp4_frames_and_size(tmp_path: Path, writer: str) -> None:
    snapshots = {step: flat_colours(3, seed=step) for step in (1, 2, 3)}
    result = RenderResult(flat_colours(3, seed=0), snapshots, torch.zeros(4), "x", 4)
    path = tmp_path / "run.mp4"
    animation.save_mp4(result, path, fps=10, hold_last=0.5, nrow=3, scale=5, writer=writer)
    frames = _read_mp4(path)
    pictures = [rgb(picture) for _, picture in animation.frames(result, nrow=3, scale=5)]
    assert len(frames) == len(pictures) + 4  # the final frame shown 5 times: 0.5 s at 10 frames a second
    height, width = pictures[0].shape[:2]
    assert frames[0].shape == (height + height % 2, width + width % 2, 3)  # padded to even sides for H.264
    for index, frame in enumerate(frames[: len(pictures)]):
        distances = [np.abs(frame[:height, :width].astype(np.int16) - picture).mean() for picture in pictures]
        assert distances[index] < 4  # lossy, but close
        assert int(np.argmin(distances)) == index  # and in order
    assert np.abs(frames[-1].astype(np.int16) - frames[len(pictures) - 1]).mean() < 2  # held still


def test_mp4_without_a_writer_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(animation.importlib.util, "find_spec", lambda name, *args: None)
    assert animation.video_writer() is None
    result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
    with pytest.raises(
        ImportError, match=r"none is installed: pip install imageio imageio-ffmpeg\s+\(or: pip install av\)"
    ):
        result.save_mp4(tmp_path / "run.mp4")
    with pytest.raises(ImportError, match="pip install"):
        result.save_animation(tmp_path / "run.mp4")
    with pytest.raises(ValueError, match=r"writer must be 'imageio', 'av' or None"):
        animation.save_mp4(result, tmp_path / "run.mp4", writer="ffmpeg")


# ---- Jupyter -------------------------------------------------------------------------------------
def test_repr_png_is_the_enlarged_grid_with_unit_captions() -> None:
    result = RenderResult(torch.rand(3, 3, 32, 32), {}, torch.zeros(2), "x", 2, units=[4, 7, 9])
    shown = Image.open(io.BytesIO(result._repr_png_()))
    assert np.array_equal(rgb(shown), rgb(result.grid(labels=[4, 7, 9], scale=4)))  # 32 pixels -> 128
    large = RenderResult(torch.rand(1, 3, 224, 224), {}, torch.zeros(2), "x", 2)
    assert Image.open(io.BytesIO(large._repr_png_())).size == (228, 228)  # large enough already
    tiny = RenderResult(torch.rand(1, 1, 4, 4), {}, torch.zeros(2), "x", 2)
    assert Image.open(io.BytesIO(tiny._repr_png_())).size == (36, 36)  # at most 8 times


def test_repr_html_shows_the_png_and_a_caption() -> None:
    losses = torch.tensor([3.0, 1.0, -2.5])
    result = RenderResult(torch.rand(2, 3, 8, 8), {2: torch.rand(2, 3, 8, 8)}, losses, "channel('a<b', 1)", 3)
    page = result._repr_html_()
    encoded = page.split("base64,")[1].split('"')[0]
    assert base64.b64decode(encoded) == result._repr_png_()
    caption = html.unescape(page.split("<figcaption")[1].split(">", 1)[1].split("</figcaption>")[0])
    assert caption == "2 images 3x8x8, 3 steps, final loss -2.5, 1 snapshot, objective=\"channel('a<b', 1)\""
    assert "a<b" not in page  # escaped


def test_repr_is_a_summary_not_a_tensor_dump() -> None:
    losses = torch.tensor([[1.0, -1.0], [2.0, -3.0]])  # two runs of render_channels: final losses -1 and -3
    result = RenderResult(torch.rand(2, 3, 32, 32), {}, losses, "o" * 80, 2, interrupted=True)
    text = repr(result)
    assert text == f"RenderResult(2 images 3x32x32, 2 steps, final loss -2, interrupted, objective='{'o' * 57}...')"


@pytest.mark.skipif(importlib.util.find_spec("IPython") is None, reason="pip install ipython")
def test_animation_is_an_ipython_gif_image() -> None:
    snapshots = {1: few_colours(1, 3, 8, 8, seed=1)}
    result = RenderResult(few_colours(1, 3, 8, 8, seed=2), snapshots, torch.zeros(2), "x", 2)
    shown = result.animation(scale=2, fps=4)
    assert shown.format == "gif"
    assert shown.data == animation.gif_bytes(result, scale=2, fps=4)
    from IPython.core.formatters import DisplayFormatter

    assert "image/gif" in DisplayFormatter().format(shown)[0]  # what a notebook receives


# ---- the trained ResNet-20 -------------------------------------------------------------------------
def test_a_class_forming_in_resnet20(resnet20: nn.Module, model_state: type[ModelState], tmp_path: Path) -> None:
    before = model_state(resnet20)
    result = featvis.render_vis(resnet20, O.class_logit("linear", 3), steps=8, snapshot_every=2, seed=0, progress=False)
    before.assert_unchanged()
    assert sorted(result.snapshots) == [2, 4, 6, 8]
    result.save_gif(tmp_path / "cat.gif", scale=2)
    arrays, durations, _ = gif_frames(tmp_path / "cat.gif")
    assert len(arrays) == 4 and durations[-1] == 1000
    first, last = (rgb(result.grid(images=result.snapshots[s], scale=2)) for s in (2, 8))
    height = first.shape[0]
    # the GIF follows the image as it changes
    assert np.abs(arrays[0][:height] - first).mean() < np.abs(arrays[0][:height] - last).mean()
    assert np.abs(arrays[-1][:height] - last).mean() < np.abs(arrays[-1][:height] - first).mean()
