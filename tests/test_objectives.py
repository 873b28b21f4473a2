"""Objectives against hand-computed values, and the objective algebra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from featvis import objectives as O
from featvis.hooks import Activations


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 5)


MODEL = TwoLayers()
GEN = torch.Generator().manual_seed(0)
CONV = torch.randn(3, 4, 5, 6, generator=GEN)  # (N, C, H, W)
LOGITS = torch.randn(3, 5, generator=GEN)
IMAGE = torch.rand(3, 3, 7, 8, generator=GEN)


def acts(conv: torch.Tensor = CONV, logits: torch.Tensor = LOGITS, image: torch.Tensor = IMAGE) -> Activations:
    return Activations(MODEL, {MODEL.conv: conv, MODEL.head: logits}, image)


def value(objective: O.Objective, **kwargs: torch.Tensor) -> float:
    return float(objective(acts(**kwargs)))


A = CONV.numpy().astype(np.float64)


def test_channel_is_the_mean_of_one_channel() -> None:
    assert value(O.channel("conv", 2)) == pytest.approx(A[:, 2].mean(), rel=1e-5)
    assert value(O.channel("conv", 2, batch=1)) == pytest.approx(A[1, 2].mean(), rel=1e-5)
    assert value(O.channel(MODEL.conv, 1)) == pytest.approx(A[:, 1].mean(), rel=1e-5)


def test_neuron_defaults_to_the_centre_and_takes_positions() -> None:
    assert value(O.neuron("conv", 3)) == pytest.approx(A[:, 3, 5 // 2, 6 // 2].mean(), rel=1e-5)
    assert value(O.neuron("conv", 3, x=1, y=4, batch=2)) == pytest.approx(A[2, 3, 4, 1], rel=1e-5)
    assert value(O.neuron("head", 4)) == pytest.approx(LOGITS[:, 4].mean().item(), rel=1e-5)


def test_neuron_on_tokens_reads_the_last_dimension_as_channels() -> None:
    tokens = torch.randn(2, 7, 4, generator=GEN)  # (N, T, D)
    assert value(O.neuron("conv", 1, x=5), conv=tokens) == pytest.approx(tokens[:, 5, 1].mean().item(), rel=1e-5)
    assert value(O.channel("conv", 2), conv=tokens) == pytest.approx(tokens[:, :, 2].mean().item(), rel=1e-5)


def test_layer_is_the_mean_square() -> None:
    assert value(O.layer("conv")) == pytest.approx((A**2).mean(), rel=1e-5)
    assert value(O.layer("conv", batch=0)) == pytest.approx((A[0] ** 2).mean(), rel=1e-5)


def test_class_logit_and_probability() -> None:
    logits = LOGITS.numpy().astype(np.float64)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert value(O.class_logit("head", 3)) == pytest.approx(logits[:, 3].mean(), rel=1e-5)
    assert value(O.class_logit("head", 3, batch=2)) == pytest.approx(logits[2, 3], rel=1e-5)
    assert value(O.class_prob("head", 1)) == pytest.approx(softmax[:, 1].mean(), rel=1e-5)


def test_direction_with_and_without_cosine() -> None:
    vector = np.array([1.0, -2.0, 0.5, 3.0])
    dot = np.einsum("nchw,c->nhw", A, vector)
    assert value(O.direction("conv", vector)) == pytest.approx(dot.mean(), rel=1e-5)
    cosine = dot / (np.linalg.norm(A, axis=1) * np.linalg.norm(vector) + 1e-8)
    expected = (dot * np.maximum(cosine, 0.1) ** 2).mean()
    assert value(O.direction("conv", vector, cossim_pow=2)) == pytest.approx(expected, rel=1e-4)


def test_direction_neuron_reads_one_position() -> None:
    vector = np.array([1.0, -2.0, 0.5, 3.0])
    centre = A[:, :, 5 // 2, 6 // 2]  # (N, C)
    assert value(O.direction_neuron("conv", vector)) == pytest.approx((centre @ vector).mean(), rel=1e-4, abs=1e-6)
    at = A[1, :, 4, 1]
    dot = at @ vector
    cosine = dot / (np.linalg.norm(at) * np.linalg.norm(vector) + 1e-8)
    expected = dot * max(cosine, 0.1) ** 3
    assert value(O.direction_neuron("conv", vector, x=1, y=4, batch=1, cossim_pow=3)) == pytest.approx(
        expected, rel=1e-4
    )
    with pytest.raises(IndexError, match="x=6 is out of range for layer 'conv', of size 6 there"):
        value(O.direction_neuron("conv", vector, x=6))
    with pytest.raises(ValueError, match="direction has 2 values but layer 'conv' has 4 channels"):
        value(O.direction_neuron("conv", [1.0, 2.0]))


def test_channel_interpolate_weights_run_across_the_batch() -> None:
    t = np.array([0.0, 0.5, 1.0])
    expected = ((1 - t) * A[:, 0].mean(axis=(1, 2)) + t * A[:, 3].mean(axis=(1, 2))).sum()
    assert value(O.channel_interpolate("conv", 0, "conv", 3)) == pytest.approx(expected, rel=1e-5)


def unit_grams(array: np.ndarray) -> list[np.ndarray]:
    """Each image's channel Gram matrix, scaled to unit Frobenius norm."""
    n, c = array.shape[:2]
    grams = []
    for i in range(n):
        flat = array[i].reshape(c, -1)
        gram = flat @ flat.T / flat.shape[1]
        grams.append(gram / np.linalg.norm(gram))
    return grams


def test_diversity_matches_a_pairwise_loop() -> None:
    n = A.shape[0]
    grams = unit_grams(A)
    expected = -sum((grams[i] * grams[j]).sum() for i in range(n) for j in range(n) if i != j) / n
    assert value(O.diversity("conv")) == pytest.approx(expected, rel=1e-5)
    assert value(O.diversity("conv"), conv=CONV[:1]) == 0.0


def test_grouped_diversity_only_compares_images_within_a_group() -> None:
    conv = torch.randn(6, 4, 5, 6, generator=GEN)
    array = conv.double().numpy()
    n = array.shape[0]
    grams = unit_grams(array)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and i // 3 == j // 3]
    expected = -sum((grams[i] * grams[j]).sum() for i, j in pairs) / n
    assert value(O.diversity("conv", group_size=3), conv=conv) == pytest.approx(expected, rel=1e-5)
    whole = value(O.diversity("conv"), conv=conv)
    assert whole != pytest.approx(expected, rel=1e-3)  # the groups really are kept apart
    assert value(O.diversity("conv", group_size=1), conv=conv) == 0.0


def test_grouped_diversity_names_a_batch_that_does_not_split() -> None:
    with pytest.raises(ValueError, match="batch of 3 images does not split into groups of 2"):
        value(O.diversity("conv", group_size=2))
    with pytest.raises(ValueError, match="group_size must be a positive whole number"):
        O.diversity("conv", group_size=0)


def test_alignment_matches_a_loop() -> None:
    conv = torch.randn(6, 2, 3, 3, generator=GEN)
    a = conv.numpy().astype(np.float64)
    expected = -sum(((a[i] - a[i + d]) ** 2).mean() / 2.0**d for d in range(1, 5) for i in range(6 - d))
    assert value(O.alignment("conv"), conv=conv) == pytest.approx(expected, rel=1e-5)


def test_penalties_on_the_input_image() -> None:
    image = IMAGE.numpy().astype(np.float64)
    tv = np.abs(np.diff(image, axis=2)).mean() + np.abs(np.diff(image, axis=3)).mean()
    assert value(O.total_variation()) == pytest.approx(tv, rel=1e-5)
    assert value(O.l1(constant=0.5)) == pytest.approx(np.abs(image - 0.5).mean(), rel=1e-5)
    assert value(O.l2()) == pytest.approx(np.sqrt((image**2).mean() + 1e-6), rel=1e-5)
    padded = np.pad(image, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ones = np.pad(np.ones_like(image), ((0, 0), (0, 0), (1, 1), (1, 1)))
    box = sum(padded[:, :, 1 + dy : 8 + dy, 1 + dx : 9 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    count = sum(ones[:, :, 1 + dy : 8 + dy, 1 + dx : 9 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert value(O.blur()) == pytest.approx(0.5 * ((image - box / count) ** 2).mean(), rel=1e-5)


def test_blur_gradient_points_towards_the_blurred_image() -> None:
    image = IMAGE.clone().requires_grad_(True)
    O.blur()(acts(image=image)).backward()
    with torch.no_grad():
        blurred = torch.nn.functional.avg_pool2d(IMAGE, 3, 1, 1, count_include_pad=False)
    expected = (IMAGE - blurred) / IMAGE.numel()
    assert torch.allclose(image.grad, expected, atol=1e-7)


def test_arithmetic_and_descriptions() -> None:
    a, b = O.channel("conv", 0), O.class_logit("head", 1)
    va, vb = value(a), value(b)
    assert value(a + b) == pytest.approx(va + vb, rel=1e-5)
    assert value(a - b) == pytest.approx(va - vb, rel=1e-5)
    assert value(-a) == pytest.approx(-va, rel=1e-5)
    assert value(2 * a / 4) == pytest.approx(va / 2, rel=1e-5)
    assert value(a * b) == pytest.approx(va * vb, rel=1e-5)
    assert value(a + 1.5) == pytest.approx(va + 1.5, rel=1e-5)
    assert value(1 - a) == pytest.approx(1 - va, rel=1e-5)
    assert value(sum([a, b, a])) == pytest.approx(2 * va + vb, rel=1e-5)
    assert str(2 * (a - b)) == "2 * (channel('conv', 0) - class_logit('head', 1))"
    assert str(a - (a + b)) == "channel('conv', 0) - (channel('conv', 0) + class_logit('head', 1))"
    assert str(-a) == "-channel('conv', 0)"
    assert (a + b).layers is not None and {str(r) for r in (a + b).layers} == {"conv", "head"}


def test_operands_are_not_changed() -> None:
    a, b = O.channel("conv", 0), O.channel("conv", 1)
    before = (a.description, a.function, a.layers, b.description, b.function)
    _ = a + b, a - b, -a, 3 * a, a / 2, a * b, sum([a, b])
    assert (a.description, a.function, a.layers, b.description, b.function) == before


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=6),
    units=st.lists(st.integers(0, 3), min_size=6, max_size=6),
)
def test_sum_of_scaled_objectives_is_the_scaled_sum(weights: list[float], units: list[int]) -> None:
    terms = [O.channel("conv", u) for u in units[: len(weights)]]
    combined = sum(w * t for w, t in zip(weights, terms))
    expected = sum(w * value(t) for w, t in zip(weights, terms))
    assert value(combined) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert value(O.Objective.sum(terms) / 2) == pytest.approx(sum(value(t) for t in terms) / 2, rel=1e-4, abs=1e-5)


def test_a_sum_of_single_units_is_read_in_one_gather_with_the_same_value_and_gradient() -> None:
    # Objective.sum evaluates channel(layer, c_i, batch=i) terms of one layer together (after a first,
    # term-by-term call that checks every index); value and gradient must not change
    units = [(0, 3), (1, 0), (2, 3), (-1, 1), (0, 2)]  # (batch, channel); -1 is the last image
    combined = sum(O.channel("conv", c, batch=b) for b, c in units) + O.class_logit("head", 4, batch=1) - O.l2()
    logits_terms = O.class_logit("head", 4, batch=1) + O.class_logit("head", 0, batch=2)
    expected = sum(A[b, c].mean() for b, c in units) + float(LOGITS[1, 4]) - float((IMAGE**2).mean() + 1e-6) ** 0.5
    for _ in range(3):  # the first call runs term by term, the next ones gather
        conv = CONV.clone().requires_grad_(True)
        total = combined(acts(conv=conv))
        assert total.item() == pytest.approx(expected, rel=1e-5)
        total.backward()
        grad = np.zeros_like(A)
        for b, c in units:
            grad[b, c] += 1 / (A.shape[2] * A.shape[3])
        np.testing.assert_allclose(conv.grad.numpy(), grad, rtol=1e-6, atol=1e-8)
        assert value(logits_terms) == pytest.approx(float(LOGITS[1, 4] + LOGITS[2, 0]), rel=1e-5)
    # a new shape is checked again, term by term, and a unit out of range there is named
    with pytest.raises(IndexError, match=r"batch=2 is out of range .* 2 images"):
        combined(acts(conv=CONV[:2]))
    with pytest.raises(IndexError, match=r"channel 3 is out of range for layer 'conv', which has 3 channels"):
        combined(acts(conv=CONV[:, :3]))


def test_sums_of_sums_are_flat() -> None:
    terms = [O.channel("conv", c % 4, batch=c % 3) for c in range(12)]
    total = sum(terms)
    assert total._terms is not None and len(total._terms) == 12
    assert str(total) == (
        "channel('conv', 0, batch=0) + channel('conv', 1, batch=1) + channel('conv', 2, batch=2) + "
        "... (12 terms) ... + channel('conv', 3, batch=2)"
    )
    assert value(total) == pytest.approx(sum(A[c % 3, c % 4].mean() for c in range(12)), rel=1e-5)
    assert str(O.channel("conv", 0) - (O.channel("conv", 1) + O.channel("conv", 2))) == (
        "channel('conv', 0) - (channel('conv', 1) + channel('conv', 2))"
    )


def test_strings_and_callables_become_objectives() -> None:
    objective = O.as_objective("conv:2")
    assert value(objective) == pytest.approx(A[:, 2].mean(), rel=1e-5)
    assert str(objective) == "channel('conv', 2)"

    def mine(activations: Activations) -> torch.Tensor:
        return activations["head"][:, 0].sum()

    wrapped = O.as_objective(mine)
    assert wrapped.layers is None and str(wrapped) == "mine"
    assert value(wrapped + O.channel("conv", 0)) == pytest.approx(LOGITS[:, 0].sum().item() + A[:, 0].mean(), rel=1e-5)
    with pytest.raises(ValueError, match="'layer:channel'"):
        O.as_objective("conv")
    with pytest.raises(TypeError, match="an objective is"):
        O.as_objective(3)  # type: ignore[arg-type]


def test_index_errors_name_the_layer_and_its_size() -> None:
    with pytest.raises(IndexError, match=r"channel 4 is out of range for layer 'conv', which has 4 channels"):
        value(O.channel("conv", 4))
    with pytest.raises(IndexError, match=r"class 9 is out of range for layer 'head', which has 5 classes"):
        value(O.class_logit("head", 9))
    with pytest.raises(IndexError, match=r"batch=3 is out of range .* 3 images"):
        value(O.channel("conv", 0, batch=3))
    with pytest.raises(IndexError, match=r"x=6 is out of range"):
        value(O.neuron("conv", 0, x=6))
    with pytest.raises(ValueError, match=r"class objectives need \(N, classes\) outputs"):
        value(O.class_logit("conv", 0))
    with pytest.raises(ValueError, match="direction has 3 values but layer 'conv' has 4 channels"):
        value(O.direction("conv", [1.0, 2.0, 3.0]))
