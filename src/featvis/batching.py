"""How many images to optimise together: :func:`auto_batch_size`, from probe forward passes and
the memory free on the model's device.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
    >>> auto_batch_size(model, "1", size=32, memory=2**30)
    16
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .hooks import ActivationCapture, LayerSpec, model_device_dtype
from .models import default_input_channels, default_input_size, resolve_preprocess
from .sizes import Size, size_pair
from .state import rendering_state

__all__ = [
    "ACCELERATOR_BATCH_LIMIT",
    "CPU_BATCH_LIMIT",
    "auto_batch_size",
    "check_memory",
    "free_memory",
    "saved_bytes",
]

#: auto_batch_size's ceiling on a CPU, where larger batches no longer speed up each image
CPU_BATCH_LIMIT = 16
#: ... and on an accelerator
ACCELERATOR_BATCH_LIMIT = 512
#: what one image costs, as a multiple of the activations the forward pass saves for the backward
#: pass (gradients as large as the activations, transient outputs, the image, Adam's state)
MEMORY_PER_SAVED_BYTE = 3.0
#: check_memory measures a run only when its images, times this, could be more than half the free
#: memory (a generous bound on what a network's activations cost per byte of image)
ROUGH_BYTES_PER_IMAGE_BYTE = 1000


def saved_bytes(
    model: nn.Module,
    layer: LayerSpec | Sequence[LayerSpec],
    batch: int,
    channels: int,
    size: tuple[int, int],
    prepare: Any,
) -> int:
    """Bytes of the distinct tensors one forward pass of ``batch`` grey images, up to ``layer`` (or
    the deepest of several), saves for backward.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> saved_bytes(model, "1", 1, 3, (10, 10), lambda images: images) > 0
        True
    """
    device, dtype = model_device_dtype(model)
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    image = torch.full((batch, channels, *size), 0.5, device=device, requires_grad=True)
    with (
        torch.enable_grad(),
        ActivationCapture(model, list(layer) if isinstance(layer, (list, tuple)) else [layer]) as capture,
        torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
    ):
        capture.run(prepare(image).to(dtype))
    return sum(storages.values())


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: the CUDA allocator's view, or the system's available memory.

    Example:
        >>> free_memory(torch.device("cpu")) > 0
        True
    """
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return 4 << 30


def auto_batch_size(
    model: nn.Module,
    layer: LayerSpec,
    size: Size | None = None,
    *,
    image_channels: int | None = None,
    preprocess: Callable[[Tensor], Tensor] | bool | None = None,
    memory: int | None = None,
) -> int:
    """How many images to optimise together when rendering units of ``layer``.

    One probe forward pass with one image and one with two give what an image adds
    to the tensors kept for the backward pass; the batch is the number of images
    whose estimated cost (:data:`MEMORY_PER_SAVED_BYTE` times that) fits in half
    of ``memory``, at most :data:`CPU_BATCH_LIMIT` on a CPU (larger batches no
    longer make each image cheaper there) and :data:`ACCELERATOR_BATCH_LIMIT`
    elsewhere, and at least 1.

    Args:
        model: the network.
        layer: the layer whose units will be rendered (the probes stop there).
        size: image size (default: the model's usual input size, or 224).
        image_channels: channels of the images (default: what the model takes).
        preprocess: as in :func:`~featvis.render.render_vis`.
        memory: bytes to plan with (default: what is free on the model's device).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
        >>> auto_batch_size(model, "1", size=32, memory=2**30)
        16
        >>> auto_batch_size(model, "1", size=32, memory=600_000)
        2
    """
    device = model_device_dtype(model)[0]
    height, width = size_pair(size if size is not None else default_input_size(model))
    channels = image_channels if image_channels is not None else default_input_channels(model)
    prepare = resolve_preprocess(preprocess, model, device)
    with rendering_state(model):
        one, two = (saved_bytes(model, layer, n, channels, (height, width), prepare) for n in (1, 2))
    per_image = MEMORY_PER_SAVED_BYTE * max(two - one, 1)  # what does not grow with the batch cancels
    available = free_memory(device) if memory is None else memory
    limit = CPU_BATCH_LIMIT if device.type == "cpu" else ACCELERATOR_BATCH_LIMIT
    return max(1, min(limit, int(available / 2 // per_image)))


def check_memory(
    model: nn.Module,
    layers: Sequence[LayerSpec],
    image_shape: tuple[int, ...],
    prepare: Callable[[Tensor], Tensor],
    memory: int | None = None,
) -> float | None:
    """Before a run, raise a ``MemoryError`` when its estimated peak memory does not fit in ``memory``
    (default: what is free on the model's device), saying how many images would fit.

    The estimate is :data:`MEMORY_PER_SAVED_BYTE` times what forward passes of one and of two images
    up to ``layers`` save for the backward pass (:func:`saved_bytes`), grown to the batch. Runs whose
    images are small beside the free memory (less than half of it at
    :data:`ROUGH_BYTES_PER_IMAGE_BYTE` times their own bytes) are not measured: ``None``. Otherwise
    returns the estimate in bytes.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
        >>> check_memory(model, ["1"], (2, 3, 16, 16), lambda images: images) is None  # small: not measured
        True
        >>> try:
        ...     check_memory(model, ["1"], (64, 3, 64, 64), lambda images: images, memory=2_000_000)
        ... except MemoryError as error:
        ...     print(str(error).split(": ")[1].split(".")[0])
        a batch of 3 fits
    """
    if not layers or len(image_shape) != 4:
        return None
    device = model_device_dtype(model)[0]
    available = free_memory(device) if memory is None else memory
    batch, channels, height, width = image_shape
    if batch * channels * height * width * 4 * ROUGH_BYTES_PER_IMAGE_BYTE < available / 2:
        return None
    with rendering_state(model, warn=False):
        one, two = (saved_bytes(model, list(layers), n, channels, (height, width), prepare) for n in (1, 2))
    per_image = MEMORY_PER_SAVED_BYTE * max(two - one, 1)
    needed = MEMORY_PER_SAVED_BYTE * one + per_image * (batch - 1)
    if needed > available:
        fits = max(0, int((available - MEMORY_PER_SAVED_BYTE * one) // per_image) + 1)
        where = ", ".join(repr(str(layer)) for layer in layers)
        raise MemoryError(
            f"this run needs about {_amount(needed)} ({batch} images of {channels}x{height}x{width}, up to "
            f"layer {where}), and {_amount(available)} is free: a batch of {fits} fits. Render fewer images "
            f"at a time (a smaller batch in featvis.param.image, or render_channels(..., batch_size={max(fits, 1)})) "
            "or smaller ones"
        )
    return needed


def _amount(count: float) -> str:
    return f"{count / 2**30:.2f} GB" if count >= 2**30 else f"{count / 2**20:.1f} MB"
