"""A compositional pattern-producing network (CPPN): an image drawn by a small network of the pixel
coordinates, and so at any resolution.

Each image of the batch has its own network: ``layers`` 1x1 layers of ``hidden`` units with
Lucid's composite activation (``atan(x)`` and ``atan(x)**2``, scaled to unit variance), from each
pixel's ``(x, y)`` in [-sqrt(3), sqrt(3)] to its raw colour. Optimised at 64x64, the same weights
draw it at 512x512 (:meth:`CPPNImage.at_size`, or :meth:`featvis.param.Image.at_size` on the whole
parameterisation).

Example:
    >>> basis = CPPNImage(2, 3, 16, 16)
    >>> basis().shape, basis.at_size(64, 48)().shape
    (torch.Size([2, 3, 16, 16]), torch.Size([2, 3, 64, 48]))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..state import check_seed
from .basis import check_size
from .compose import Image

__all__ = ["CPPN_LEARNING_RATE", "CPPNImage", "composite_activation", "cppn"]

#: the default optimiser's learning rate for a CPPN (the Fourier basis's 0.1 makes it diverge)
CPPN_LEARNING_RATE = 0.003


def composite_activation(values: Tensor) -> Tensor:
    """``atan(x)`` and ``atan(x)**2`` side by side (the feature axis doubles), each scaled to about unit
    variance for unit-normal ``x``: the CPPN's non-linearity (from Lucid).

    Example:
        >>> composite_activation(torch.zeros(5, 4)).shape
        torch.Size([5, 8])
    """
    squashed = torch.atan(values)
    return torch.cat([squashed / 0.67, squashed.square() / 0.6], dim=-1)


class CPPNImage(nn.Module):
    """One small coordinate network per image: ``(N, C, H, W)`` raw colours (for a sigmoid after).

    Args:
        batch, channels, height, width: the images' shape.
        layers: hidden layers.
        hidden: units of each hidden layer (the composite activation doubles them).

    Example:
        >>> CPPNImage(1, 3, 8, 8, layers=2, hidden=4)().shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self, batch: int, channels: int, height: int, width: int, layers: int = 8, hidden: int = 24) -> None:
        super().__init__()
        check_size(batch, channels, height, width)
        if not isinstance(layers, int) or layers < 1 or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"layers and hidden must be whole numbers >= 1, got {layers!r} and {hidden!r}")
        self.height, self.width, self.layers_count, self.hidden = height, width, layers, hidden
        sizes = [2] + [2 * hidden] * layers
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(batch, a, hidden)) for a in sizes)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(batch, 1, hidden)) for _ in sizes)
        self.output = nn.Parameter(torch.zeros(batch, 2 * hidden, channels))  # zero: a grey start, as Lucid's
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw each hidden layer's weights anew, normal with variance 1 / fan-in, from ``generator``
        (``None``: torch's global one), on the CPU; the biases and the output layer start at zero.

        Example:
            >>> basis = CPPNImage(1, 3, 8, 8)
            >>> basis.reset_parameters(torch.Generator().manual_seed(0)); float(basis.output.abs().sum())
            0.0
        """
        with torch.no_grad():
            for weight in self.weights:
                fan_in = weight.shape[1]
                weight.copy_(torch.randn(weight.shape, generator=generator) / math.sqrt(fan_in))
            for bias in self.biases:
                bias.zero_()
            self.output.zero_()

    def coordinates(self, height: int, width: int) -> Tensor:
        """Each pixel's ``(x, y)``, ``(height * width, 2)``, both in [-sqrt(3), sqrt(3)] (unit variance).

        Example:
            >>> CPPNImage(1, 3, 4, 4).coordinates(2, 3).tolist()[0]
            [-1.7320507764816284, -1.7320507764816284]
        """
        device = self.output.device
        ys = torch.linspace(-math.sqrt(3), math.sqrt(3), height, device=device)
        xs = torch.linspace(-math.sqrt(3), math.sqrt(3), width, device=device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)

    def draw(self, height: int, width: int) -> Tensor:
        """The raw images at ``height x width``, from the same weights.

        Example:
            >>> CPPNImage(1, 3, 8, 8).draw(20, 10).shape
            torch.Size([1, 3, 20, 10])
        """
        values = self.coordinates(height, width).expand(self.output.shape[0], -1, -1)
        for weight, bias in zip(self.weights, self.biases):
            values = composite_activation(torch.baddbmm(bias, values, weight))
        raw = torch.bmm(values, self.output)  # (N, H*W, C)
        return raw.transpose(1, 2).reshape(self.output.shape[0], -1, height, width)

    def forward(self) -> Tensor:
        return self.draw(self.height, self.width)

    def at_size(self, height: int, width: int) -> CPPNImage:
        """The same networks (their parameters shared, not copied), drawing at ``height x width``.

        Example:
            >>> basis = CPPNImage(1, 3, 8, 8)
            >>> basis.at_size(32, 32).output is basis.output
            True
        """
        check_size(1, 1, height, width)
        resized = CPPNImage.__new__(CPPNImage)
        nn.Module.__init__(resized)
        resized.height, resized.width = height, width
        resized.layers_count, resized.hidden = self.layers_count, self.hidden
        resized.weights, resized.biases, resized.output = self.weights, self.biases, self.output
        return resized


def cppn(
    w: int,
    h: int | None = None,
    batch: int = 1,
    channels: int = 3,
    *,
    layers: int = 8,
    hidden: int = 24,
    seed: int | None = None,
) -> Image:
    """A CPPN parameterisation (:class:`CPPNImage`, then a sigmoid; no colour decorrelation): a picture
    that is a smooth function of the coordinates, drawn again at any size with
    :meth:`~featvis.param.Image.at_size`. Its weights want a smaller step than a Fourier spectrum:
    its ``learning_rate`` (:data:`CPPN_LEARNING_RATE`) is what ``render_vis``'s default optimiser uses,
    constant (the default schedule is the Fourier basis's). A CPPN's colours can saturate, a unit's
    picture then staying flat: try another seed, or more steps.

    Args:
        w, h, batch, channels: as in :func:`~featvis.param.image`.
        layers, hidden: the networks' depth and width.
        seed: draw the networks' weights from a generator seeded with this (``None``: torch's global one).

    Example:
        >>> p = cppn(32, batch=2, seed=0)
        >>> p().shape, p.at_size(128)().shape
        (torch.Size([2, 3, 32, 32]), torch.Size([2, 3, 128, 128]))
    """
    h = w if h is None else h
    made = Image(CPPNImage(batch, channels, h, w, layers=layers, hidden=hidden), None, output="sigmoid")
    made.learning_rate = CPPN_LEARNING_RATE
    if check_seed(seed) is not None:
        made.draw_start(seed)
    return made
