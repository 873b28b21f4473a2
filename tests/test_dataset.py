"""Dataset examples: the right images, scores, positions and crops; receptive fields; state; errors."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import featvis
from featvis.dataset import Box, DatasetExamples, examples_figure, receptive_field, top_activating

if TYPE_CHECKING:
    from conftest import ModelState

# a plus sign: what channel 0 of the detector below looks for
PLUS = np.array([[-1, 1, -1], [1, 1, 1], [-1, 1, -1]], dtype=np.float32)


def detector() -> nn.Sequential:
    """conv (3 -> 2 channels, 3x3, no padding) + ReLU; channel 0 is PLUS on every colour, channel 1 its negative."""
    conv = nn.Conv2d(3, 2, 3, bias=False)
    with torch.no_grad():
        conv.weight[0] = torch.from_numpy(PLUS)
        conv.weight[1] = -torch.from_numpy(PLUS)
    return nn.Sequential(conv, nn.ReLU()).eval()


def numpy_plus_response(images: np.ndarray) -> np.ndarray:
    """ReLU(correlation of the colour-summed images with PLUS), (N, H-2, W-2), computed with NumPy only."""
    windows = np.lib.stride_tricks.sliding_window_view(images.sum(axis=1), (3, 3), axis=(1, 2))
    return np.maximum((windows * PLUS).sum(axis=(-1, -2)), 0)


def planted_dataset(seed: int = 0) -> tuple[torch.Tensor, dict[int, tuple[float, int, int]]]:
    """40 dim noise images (3x16x16) and a bright plus planted in six of them: {index: (strength, y, x)}."""
    rng = np.random.default_rng(seed)
    images = (0.1 * rng.random((40, 3, 16, 16))).astype(np.float32)
    planted = {3: (0.55, 0, 0), 11: (0.9, 6, 7), 17: (0.7, 13, 2), 24: (1.0, 9, 13), 30: (0.6, 4, 4), 38: (0.8, 13, 13)}
    for index, (strength, y, x) in planted.items():
        images[index, :, y : y + 3, x : x + 3] = strength * (PLUS > 0)
    return torch.from_numpy(images), planted


def batches(images: torch.Tensor, size: int) -> list[torch.Tensor]:
    return list(images.split(size))


# ---- what it is for ----------------------------------------------------------------------
def test_planted_patterns_are_found_in_order_with_scores_positions_and_crops() -> None:
    images, planted = planted_dataset()
    examples = top_activating(detector(), DataLoader(images, batch_size=7), ("1", 0), k=6, progress=False)

    by_strength = sorted(planted, key=lambda i: -planted[i][0])
    assert examples.indices.tolist() == by_strength
    reference = numpy_plus_response(images.numpy()).reshape(40, -1).max(axis=1)
    np.testing.assert_allclose(examples.scores.numpy(), reference[by_strength], rtol=1e-5)
    # a plus of strength s on black scores 5 cells x 3 colours x s
    np.testing.assert_allclose(examples.scores.numpy(), [15 * planted[i][0] for i in by_strength], rtol=1e-5)
    assert examples.positions == [planted[i][1:] for i in by_strength]
    assert examples.boxes == [Box(y, x, y + 3, x + 3) for _, y, x in (planted[i] for i in by_strength)]
    for crop, index in zip(examples.crops, by_strength):
        torch.testing.assert_close(crop, torch.from_numpy(planted[index][0] * (PLUS > 0)).expand(3, 3, 3).float())
    torch.testing.assert_close(examples.images, images[by_strength])
    assert examples.seen == 40 and examples.unit == "1:0"


def test_any_batch_size_and_a_reversed_order_give_the_same_top_images() -> None:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(60, 3, 12, 12, generator=generator)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
    with torch.no_grad():
        every = model(images)[:, 2].reshape(60, -1).amax(dim=1).numpy()
    expected = np.lexsort((np.arange(60), -every))[:7]  # by score, then by data order

    results = [top_activating(model, batches(images, size), ("2", 2), k=7, progress=False) for size in (1, 7, 60)]
    for result in results:
        assert result.indices.tolist() == expected.tolist()
        np.testing.assert_allclose(result.scores.numpy(), every[expected], rtol=1e-5)
        torch.testing.assert_close(result.images, images[expected])
        assert result.positions == results[0].positions and result.boxes == results[0].boxes

    backwards = top_activating(model, batches(images.flip(0), 9), ("2", 2), k=7, progress=False)
    assert (59 - backwards.indices).tolist() == expected.tolist()
    torch.testing.assert_close(backwards.images, results[0].images)


def test_equal_scores_go_to_the_earlier_image_whatever_the_batches() -> None:
    images = torch.zeros(10, 3, 8, 8)
    images[[2, 5, 7], :, 2:5, 2:5] = torch.from_numpy(0.5 * (PLUS > 0)).float()  # three identical best images
    images[4, :, 3:6, 3:6] = torch.from_numpy(0.3 * (PLUS > 0)).float()
    for size in (1, 2, 3, 10):
        examples = top_activating(detector(), batches(images, size), ("1", 0), k=4, progress=False)
        assert examples.indices.tolist() == [2, 5, 7, 4]
        cut = top_activating(detector(), batches(images, size), ("1", 0), k=2, progress=False)
        assert cut.indices.tolist() == [2, 5]


def test_memory_holds_the_top_k_not_the_dataset() -> None:
    alive: list[weakref.ref[torch.Tensor]] = []
    most_alive_at_once = 0

    def stream() -> Iterator[torch.Tensor]:
        nonlocal most_alive_at_once
        generator = torch.Generator().manual_seed(2)
        for _ in range(12):
            most_alive_at_once = max(most_alive_at_once, sum(ref() is not None for ref in alive))
            batch = torch.rand(16, 3, 10, 10, generator=generator)
            alive.append(weakref.ref(batch))
            yield batch

    examples = top_activating(detector(), stream(), ("1", 0), k=5, progress=False)
    gc.collect()
    assert most_alive_at_once <= 1  # at most the batch being scored when the next one is made
    assert sum(ref() is not None for ref in alive) == 0  # the top images are copies
    assert examples.images.shape == (5, 3, 10, 10) and examples.seen == 192


# ---- receptive fields ----------------------------------------------------------------------
def analytic_box(layers: list[tuple[int, int, int]], position: tuple[int, int], size: int) -> Box:
    """The receptive field of ``position`` after convolutions ``(kernel, stride, padding)``, by hand."""
    sizes = [size]
    for kernel, stride, padding in layers:
        sizes.append((sizes[-1] + 2 * padding - kernel) // stride + 1)
    ranges = []
    for at in position:
        low, high = at, at
        for (kernel, stride, padding), size_in in zip(reversed(layers), reversed(sizes[:-1])):
            low, high = max(low * stride - padding, 0), min(high * stride - padding + kernel - 1, size_in - 1)
        ranges.append((low, high + 1))
    (top, bottom), (left, right) = ranges
    return Box(top, left, bottom, right)


@pytest.mark.parametrize(
    "layers",
    [
        [(3, 1, 1), (3, 1, 1)],  # two 3x3 convolutions: 5x5
        [(3, 2, 1), (3, 1, 1)],  # stride 2 first: 3 + 2 * 2 = 7
        [(5, 1, 0), (3, 2, 1), (3, 2, 1)],  # 5 + 2 + 2 * 2 = 11
        [(1, 1, 2), (3, 1, 0)],  # padding that only adds zeros
    ],
)
def test_receptive_field_equals_the_analytic_one_everywhere(layers: list[tuple[int, int, int]]) -> None:
    torch.manual_seed(0)
    modules: list[nn.Module] = []
    for kernel, stride, padding in layers:
        modules += [nn.Conv2d(2, 2, kernel, stride=stride, padding=padding), nn.ReLU()]
    model = nn.Sequential(*modules).eval()
    with torch.no_grad():
        height, width = model(torch.zeros(1, 2, 13, 13)).shape[-2:]
    last = str(len(modules) - 1)
    for y in range(height):
        for x in range(width):
            found = receptive_field(model, last, (y, x), 13, image_channels=2)
            assert found == analytic_box(layers, (y, x), 13), (y, x)
    interior = analytic_box(layers, (height // 2, width // 2), 13)
    if layers[:2] == [(3, 1, 1), (3, 1, 1)]:
        assert (interior.height, interior.width) == (5, 5)
        assert receptive_field(model, last, (0, 0), 13, image_channels=2) == Box(0, 0, 3, 3)


def test_receptive_field_sees_through_dead_relus_and_max_pooling() -> None:
    first = nn.Conv2d(1, 1, 3)
    with torch.no_grad():
        first.bias.fill_(-100.0)  # the ReLU after it is zero for every image in [0, 1]
    model = nn.Sequential(first, nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3)).eval()
    # conv 3 -> max pool 2 -> conv 3: position y sees pool rows y..y+2, conv rows 2y..2y+5, image rows 2y..2y+7
    assert receptive_field(model, "3", (1, 2), 20, image_channels=1) == Box(2, 4, 10, 12)
    assert receptive_field(model, "2", (0, 0), 20, image_channels=1) == Box(0, 0, 4, 4)


def test_resnet20_receptive_fields_and_crops(resnet20: nn.Module, model_state: type[ModelState]) -> None:
    before = model_state(resnet20)
    # the stem and layer1 are seven 3x3 convolutions with stride 1: 15x15, clipped at the borders
    assert receptive_field(resnet20, "layer1", (16, 16), 32) == Box(9, 9, 24, 24)
    assert receptive_field(resnet20, "layer1", (0, 31), 32) == Box(0, 24, 8, 32)
    # layer2's first block adds a stride-2 3x3 (2 pixels) and a 3x3 at stride 2 (4 pixels): 21
    assert receptive_field(resnet20, "layer2.0", (8, 8), 32) == Box(6, 6, 27, 27)
    before.assert_unchanged()


# ---- a trained model --------------------------------------------------------------------
def test_resnet20_top_images_match_a_direct_forward_pass(resnet20: nn.Module, model_state: type[ModelState]) -> None:
    generator = torch.Generator().manual_seed(3)
    # smooth random pictures (blurred noise, upsampled) rather than white noise
    images = torch.nn.functional.interpolate(torch.rand(48, 3, 8, 8, generator=generator), size=32, mode="bilinear")
    before = model_state(resnet20)
    pre = featvis.models.default_preprocess(resnet20)
    with torch.no_grad():
        layer1 = resnet20.layer1(torch.relu(resnet20.bn1(resnet20.conv1(pre(images)))))
    peaks = layer1.reshape(48, 16, -1).amax(dim=2)
    channel = int(peaks.var(dim=0).argmax())  # the channel that tells these images apart best
    expected = np.lexsort((np.arange(48), -peaks[:, channel].numpy()))[:5]

    examples = top_activating(resnet20, DataLoader(images, batch_size=10), ("layer1", channel), k=5, progress=False)
    before.assert_unchanged()
    assert examples.indices.tolist() == expected.tolist()
    np.testing.assert_allclose(examples.scores.numpy(), peaks[expected, channel].numpy(), rtol=1e-4, atol=1e-5)
    for image, (y, x), box, crop in zip(images[expected], examples.positions, examples.boxes, examples.crops):
        assert float(layer1[expected][0, channel, y, x]) <= float(examples.scores[0]) + 1e-5
        assert box == Box(max(y - 7, 0), max(x - 7, 0), min(y + 8, 32), min(x + 8, 32))
        torch.testing.assert_close(crop, image[:, box.top : box.bottom, box.left : box.right])
    for number, (y, x) in enumerate(examples.positions):
        assert float(layer1[expected[number], channel, y, x]) == pytest.approx(float(examples.scores[number]), 1e-4)


# ---- other units, formats -------------------------------------------------------------------
def test_a_neuron_a_string_and_a_function_rank_by_what_they_say() -> None:
    images, _ = planted_dataset(seed=4)
    response = numpy_plus_response(images.numpy())  # (40, 14, 14)
    model = detector()

    neuron = top_activating(model, batches(images, 8), ("1", 0, 6, 7), k=3, progress=False)
    expected = np.lexsort((np.arange(40), -response[:, 6, 7]))[:3]
    assert neuron.indices.tolist() == expected.tolist() and neuron.indices[0] == 11
    assert neuron.positions == [(6, 7)] * 3 and neuron.boxes == [Box(6, 7, 9, 10)] * 3

    as_string = top_activating(model, batches(images, 8), "1:0", k=3, progress=False)
    as_tuple = top_activating(model, batches(images, 8), ("1", 0), k=3, progress=False)
    assert as_string.indices.tolist() == as_tuple.indices.tolist()

    def mean_plus(acts: featvis.hooks.Activations) -> torch.Tensor:
        return acts["1"][:, 0].mean(dim=(1, 2))

    by_mean = top_activating(model, batches(images, 8), mean_plus, k=4, progress=False)
    means = response.mean(axis=(1, 2))
    assert by_mean.indices.tolist() == np.lexsort((np.arange(40), -means))[:4].tolist()
    np.testing.assert_allclose(by_mean.scores.numpy(), np.sort(means)[::-1][:4], rtol=1e-5)
    assert by_mean.positions is None and by_mean.crops is None and by_mean.unit == "mean_plus"


def test_a_list_of_units_is_ranked_in_one_pass_like_one_at_a_time() -> None:
    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.relu = nn.ReLU()
            self.head = nn.Conv2d(4, 2, 3)
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.head(self.relu(self.conv(x)))

    torch.manual_seed(6)
    model = Counting().eval()
    images = torch.rand(30, 3, 10, 10)
    units = [("relu", 1), ("head", 0), ("relu", 3, 2, 2), lambda acts: acts["conv"][:, 0].mean(dim=(1, 2))]
    together = top_activating(model, batches(images, 8), units, k=3, progress=False)
    # one forward pass per batch, one to find the function's layers, one per layer for the receptive fields
    assert model.calls == 4 + 1 + 2
    for unit, combined in zip(units, together):
        alone = top_activating(model, batches(images, 8), unit, k=3, progress=False)
        assert combined.indices.tolist() == alone.indices.tolist() and combined.unit == alone.unit
        torch.testing.assert_close(combined.scores, alone.scores)
        assert combined.boxes == alone.boxes


def test_a_layer_without_positions_crops_the_whole_image() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()
    images = torch.rand(12, 3, 8, 8)
    examples = top_activating(model, batches(images, 5), ("3", 1), k=2, progress=False)
    with torch.no_grad():
        logits = model(images)[:, 1]
    assert examples.indices.tolist() == logits.argsort(descending=True)[:2].tolist()
    assert examples.positions == [(), ()] and examples.boxes == [Box(0, 0, 8, 8)] * 2


def test_labels_dicts_and_uint8_batches() -> None:
    images, _ = planted_dataset()
    labels = torch.arange(100, 140)
    with pytest.warns(UserWarning, match="shuffle=False"):
        top_activating(detector(), DataLoader(TensorDataset(images, labels), shuffle=True), ("1", 0), progress=False)
    loader = DataLoader(TensorDataset(images, labels), batch_size=9)
    examples = top_activating(detector(), loader, ("1", 0), k=3, progress=False)
    assert examples.labels == [100 + int(i) for i in examples.indices]

    dicts = [
        {"image": chunk, "label": list(range(8 * n, 8 * n + len(chunk)))} for n, chunk in enumerate(images.split(8))
    ]
    from_dicts = top_activating(detector(), dicts, ("1", 0), k=3, progress=False)
    assert from_dicts.indices.tolist() == examples.indices.tolist() == from_dicts.labels

    quantised = (images * 255).round().to(torch.uint8)
    from_bytes = top_activating(detector(), batches(quantised, 16), ("1", 0), k=3, progress=False)
    assert from_bytes.indices.tolist() == examples.indices.tolist()
    torch.testing.assert_close(from_bytes.images, quantised[from_bytes.indices].float() / 255)


# ---- state and errors --------------------------------------------------------------------------
def test_the_model_comes_back_untouched_also_after_an_error(model_state: type[ModelState]) -> None:
    model = detector().train()
    model[0].weight.requires_grad_(True)
    before = model_state(model)
    images, _ = planted_dataset()
    with pytest.warns(UserWarning, match="training mode"):
        top_activating(model, batches(images, 8), ("1", 0), k=2, progress=False)
    before.assert_unchanged()
    bad = [images[:8], "not a batch"]
    with pytest.warns(UserWarning, match="training mode"), pytest.raises(TypeError):
        top_activating(model, bad, ("1", 0), progress=False)
    before.assert_unchanged()


def test_errors_say_what_is_wrong() -> None:
    model = detector()
    images, _ = planted_dataset()
    data = batches(images, 8)
    with pytest.raises(ValueError, match=r"unknown layer '2' in Sequential.*layer_names"):
        top_activating(model, data, ("2", 0), progress=False)
    with pytest.raises(
        ValueError, match=r"channel 2 is out of range for layer '1', which has 2 channels \(valid: 0 to 1\)"
    ):
        top_activating(model, data, ("1", 2), progress=False)
    with pytest.raises(
        ValueError, match=r"position \(14, 0\) is out of range for layer '1', whose activation map is 14x14"
    ):
        top_activating(model, data, ("1", 0, 14, 0), progress=False)
    for k in (0, -3, 2.5):
        with pytest.raises(ValueError, match="k must be a whole number of at least 1"):
            top_activating(model, data, ("1", 0), k=k, progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"batch 0 is a list of 2 items starting with a str; each batch must be"):
        top_activating(model, [["a", "b"]], ("1", 0), progress=False)
    with pytest.raises(TypeError, match=r"a Dataset gives one image at a time; wrap it in .*DataLoader"):
        top_activating(model, TensorDataset(images), ("1", 0), progress=False)
    with pytest.raises(ValueError, match=r"shape \(3, 16, 16\), not a batch .*wrap it in a DataLoader"):
        top_activating(model, iter(images), ("1", 0), progress=False)
    with pytest.raises(TypeError, match=r"use images\.split"):
        top_activating(model, images, ("1", 0), progress=False)
    with pytest.raises(ValueError, match=r"values from -2 to .* give images in \[0, 1\].*preprocess=False"):
        top_activating(model, [images * 4 - 2], ("1", 0), progress=False)
    with pytest.raises(ValueError, match="all images must have one size"):
        top_activating(model, [images[:4], torch.rand(4, 3, 12, 12)], ("1", 0), progress=False)
    with pytest.raises(ValueError, match="data gave no images"):
        top_activating(model, [], ("1", 0), progress=False)
    with pytest.raises(ValueError, match=r"must return one score per image, a tensor of shape \(8,\).*got \(\)"):
        top_activating(model, data, featvis.objectives.channel("1", 0), progress=False)
    with pytest.raises(TypeError, match=r"unit must be \(layer, channel\)"):
        top_activating(model, data, 3, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a unit string is 'layer:channel'"):
        top_activating(model, data, "1", progress=False)
    with pytest.raises(ValueError, match=r"position \(1,\) does not fit layer '1'.*give \(y, x\)"):
        receptive_field(model, "1", (1,), 16)
    # the model is not moved: a device it is not on is refused before any batch is read (it used to fail
    # inside the model's forward pass); the model's own device is fine
    with pytest.raises(ValueError, match=r"device='meta' but the model is on 'cpu'.*call model\.to\('meta'\) first"):
        top_activating(model, data, ("1", 0), device="meta", progress=False)
    assert len(top_activating(model, data, ("1", 0), k=2, device="cpu", progress=False)) == 2


# ---- pictures --------------------------------------------------------------------------------
def test_figure_rows_hold_the_visualisation_images_and_crops_in_place() -> None:
    images, _ = planted_dataset()
    examples = top_activating(detector(), batches(images, 8), ("1", 0), k=3, progress=False)
    tiles = examples.crop_tiles()
    # 3x3 crops on 16x16 tiles: enlarged 5 times, centred ((16 - 15) // 2 = 0 left over on top)
    torch.testing.assert_close(tiles[0, :, :15, :15], examples.crops[0].repeat_interleave(5, 1).repeat_interleave(5, 2))
    assert bool((tiles[0, :, 15, :] == 1).all())

    visualisation = torch.zeros(2, 3, 32, 32)
    visualisation[1] = 1.0
    scale = 2
    figure = examples_figure([examples, examples], visualisation, labels=["plus", "again"], scale=scale)
    tile = 16 * scale
    assert figure.width == 2 + 7 * (tile + 2)  # visualisation, 3 images, 3 crops
    assert figure.height % 2 == 0
    pixels = np.asarray(figure.convert("RGB")).astype(np.float32) / 255
    row = figure.height // 2
    assert np.allclose(pixels[2 : 2 + tile, 2 : 2 + tile], 0.0)  # row 1 starts with the black visualisation
    assert np.allclose(pixels[row + 2 : row + 2 + tile, 2 : 2 + tile], 1.0)  # row 2 with the white one
    first = examples.images[0].permute(1, 2, 0).repeat_interleave(scale, 0).repeat_interleave(scale, 1).numpy()
    np.testing.assert_allclose(pixels[2 : 2 + tile, 4 + tile : 4 + 2 * tile], first, atol=1 / 255)
    # the first crop (3x3) enlarged 10 times (the most that fits 32 pixels), centred: rows and columns 1 to 30
    crop_left = 2 + 4 * (tile + 2)
    enlarged = examples.crops[0].permute(1, 2, 0).repeat_interleave(10, 0).repeat_interleave(10, 1).numpy()
    np.testing.assert_allclose(pixels[3 : 3 + 30, crop_left + 1 : crop_left + 31], enlarged, atol=1 / 255)
    assert np.allclose(pixels[2, crop_left : crop_left + tile], 1.0)  # white around it
    with pytest.raises(ValueError, match="got 1 visualisations for 2 units"):
        examples_figure([examples, examples], visualisation[:1])


def test_grid_captions_and_a_result_without_crops() -> None:
    examples = DatasetExamples("u", torch.rand(4, 3, 8, 8), torch.tensor([4.0, 3, 2, 1]), torch.arange(4))
    assert examples.grid(scale=2, nrow=2).width == 2 + 2 * 18
    with pytest.raises(ValueError, match="no crops"):
        examples.crop_tiles()
