"""Layer names, forward hooks and early-stopping forward passes.

Layers are named as ``model.named_modules()`` names them (``"layer3.1.conv2"``,
``"features.12"``; ``""`` is the model itself) or passed as the module object.
A layer whose output is a tuple, list or dict is targeted with a selector written
like Python indexing: ``"encoder.attn[0]"`` or ``"backbone['out']"``, or with
:class:`LayerRef` (``LayerRef(model.attn, select=0)``).

:class:`ActivationCapture` puts forward hooks on the needed modules only, removes
them on leaving its ``with`` block whatever happens, and stops the forward pass as
soon as every needed module has produced its output, so later layers never run.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> layer_names(model)
    ['0', '1', '2']
    >>> with ActivationCapture(model, ["1"]) as capture:
    ...     acts = capture.run(torch.ones(1, 4))
    >>> acts["1"].shape
    torch.Size([1, 3])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .backward_hooks import MovedBackwardHooks
from .layers import INPUT, LayerRef, LayerSpec, layer_names, resolve_layer

__all__ = [
    "INPUT",
    "SIGNAL_LAYERS",
    "ActivationCapture",
    "Activations",
    "LayerNotReachedError",
    "LayerRef",
    "LayerSpec",
    "layer_names",
    "model_device_dtype",
    "resolve_layer",
    "token_grid",
]


class LayerNotReachedError(RuntimeError):
    """A targeted layer did not run during the model's forward pass.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class SkipsHead(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body, self.head = nn.Linear(2, 2), nn.Linear(2, 2)
        ...     def forward(self, x):
        ...         return self.body(x)  # self.head is never called
        >>> with ActivationCapture(SkipsHead(), ["head"]) as capture:
        ...     try:
        ...         capture.run(torch.ones(1, 2))
        ...     except LayerNotReachedError as error:
        ...         print(str(error).split(" during")[0])
        layer(s) 'head' did not run
    """


class _StopForward(BaseException):
    """Raised by a hook once every needed output is captured.

    It derives from BaseException so that a model's own ``except Exception``
    cannot swallow it.
    """


def _select(output: Any, ref: LayerRef, name: str) -> Tensor:
    keys = () if ref.select is None else ref.select if isinstance(ref.select, tuple) else (ref.select,)
    for key in keys:
        try:
            output = output[key]
        except (KeyError, IndexError, TypeError) as error:
            raise ValueError(
                f"cannot select [{key!r}] from the output of layer {name!r} ({_describe(output)}): {error}"
            ) from None
    if not isinstance(output, Tensor):
        raise ValueError(
            f"layer {name!r} outputs {_describe(output)}, not a tensor; choose a part of it with a "
            f"selector such as {name + '[0]'!r} (index) or {name + chr(91) + repr('key') + chr(93)!r} (key)"
        )
    return output


def _describe(output: Any) -> str:
    if isinstance(output, Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, dict):
        return f"a dict with keys {list(output)}"
    if isinstance(output, (tuple, list)):
        return f"a {type(output).__name__} of {len(output)} items"
    return f"a {type(output).__name__}"


def _clone_tensors(output: Any) -> Any:
    if isinstance(output, Tensor):
        return output.clone()
    if isinstance(output, list):
        return [_clone_tensors(item) for item in output]
    if isinstance(output, tuple):
        return tuple(_clone_tensors(item) for item in output)
    if isinstance(output, dict):
        return {key: _clone_tensors(value) for key, value in output.items()}
    return output


class Activations:
    """What a forward pass captured: layer outputs, and the image as ``"input"``.

    Index it with anything that names a layer: a name, a name with a selector,
    a module of the model, or a :class:`LayerRef`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 3))
        >>> with ActivationCapture(model, ["0"]) as capture:
        ...     acts = capture.run(torch.zeros(1, 2), image=torch.zeros(1, 2))
        >>> acts["0"].shape, acts["input"].shape
        (torch.Size([1, 3]), torch.Size([1, 2]))
    """

    def __init__(
        self,
        model: nn.Module,
        outputs: dict[nn.Module, Any],
        image: Tensor | None,
        resolved: dict[LayerRef, tuple[str, nn.Module]] | None = None,
    ) -> None:
        self.model = model
        self.outputs = outputs
        self.image = image
        # layer names already looked up (kept by ActivationCapture from one forward pass to the next)
        self._resolved = {} if resolved is None else resolved

    def __getitem__(self, spec: LayerSpec) -> Tensor:
        ref = LayerRef.parse(spec)
        if ref.layer == INPUT and ref.select is None:
            if self.image is None:
                raise KeyError("no input image was recorded for this forward pass")
            return self.image
        found = self._resolved.get(ref)
        if found is None:
            found = self._resolved[ref] = resolve_layer(self.model, ref)
        name, module = found
        if module not in self.outputs:
            raise MissingLayer(ref, name, module)
        return _select(self.outputs[module], ref, name)

    def channels_first(self, layer: LayerSpec) -> Tensor:
        """A layer's activations as ``(N, C, *positions)`` (:func:`channels_first`). A 3-d output
        is read as ``(N, C, L)`` signals when the images are 1-d signals ``(N, C, L)`` or the layer
        is a 1-d convolution, pooling or normalisation (:data:`SIGNAL_LAYERS`), else as
        ``(N, tokens, C)`` token sequences (a transformer's).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU())
            >>> signals = torch.zeros(1, 2, 10)
            >>> with ActivationCapture(model, ["1"]) as capture:
            ...     acts = capture.run(signals, image=signals)
            >>> acts.channels_first("1").shape  # 4 channels, 8 positions
            torch.Size([1, 4, 8])
        """
        ref = LayerRef.parse(layer)
        tensor = self[ref]
        return channels_first(tensor, ref, tokens=self._holds_tokens(ref, tensor))

    def tokens(self, layer: LayerSpec) -> bool:
        """Whether the layer's output is ``(N, tokens, C)`` token sequences (a 3-d output of an image
        model, not of a 1-d layer: see :meth:`channels_first`).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> model = nn.Sequential(nn.Linear(4, 6))
            >>> images = torch.zeros(1, 3, 4, 4)
            >>> with ActivationCapture(model, ["0"]) as capture:
            ...     acts = capture.run(torch.zeros(1, 5, 4), image=images)  # 5 tokens of 4 features
            >>> acts.tokens("0")
            True
        """
        ref = LayerRef.parse(layer)
        return self._holds_tokens(ref, self[ref])

    def _holds_tokens(self, ref: LayerRef, tensor: Tensor) -> bool:
        if str(ref) == INPUT or tensor.ndim != 3:
            return False
        module = self._resolved[ref][1] if ref in self._resolved else None
        return not ((self.image is not None and self.image.ndim == 3) or isinstance(module, SIGNAL_LAYERS))

    def units(self, layer: LayerSpec, batch: int | None = None, channel: int | None = None) -> Tensor:
        """A layer's activations read channels-first, with featvis's checks and messages.

        ``(N, C, H, W)`` and ``(N, C)`` outputs as they are, ``(N, T, C)`` token sequences as
        ``(N, C, T)``; ``batch=i`` keeps image ``i`` only (``(1, C, ...)``); ``channel=c`` then
        keeps channel ``c`` (``(N, ...)``). A batch or channel out of range raises an
        ``IndexError`` that names the layer and the valid range, as the built-in objectives do.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> model = nn.Sequential(nn.Conv2d(3, 4, 3))
            >>> with ActivationCapture(model, ["0"]) as capture:
            ...     acts = capture.run(torch.zeros(2, 3, 8, 8))
            >>> acts.units("0", batch=1).shape, acts.units("0", channel=3).shape
            (torch.Size([1, 4, 6, 6]), torch.Size([2, 6, 6]))
            >>> acts.units("0", channel=4)
            Traceback (most recent call last):
            ...
            IndexError: channel 4 is out of range for layer '0', which has 4 channels (valid: 0 to 3)
        """
        ref = LayerRef.parse(layer)
        tensor = pick_batch(self.channels_first(ref), batch, ref)
        if channel is None:
            return tensor
        check_index(tensor, channel, ref)
        return tensor[:, channel]

    def __contains__(self, spec: object) -> bool:
        try:
            self[spec]  # type: ignore[index]
        except (LookupError, ValueError, TypeError):
            return False
        return True


def token_grid(count: int) -> tuple[int, int] | None:
    """``(first, side)`` when ``count`` tokens are a square grid of ``side x side`` patches in
    row-major order after ``first`` leading tokens: 1 + k * k tokens (a ViT's class token, then its
    patches) or k * k (patches alone), k >= 2; ``None`` otherwise.

    Example:
        >>> token_grid(197), token_grid(16), token_grid(12)
        ((1, 14), (0, 4), None)
    """
    for first in (1, 0):
        side = math.isqrt(max(count - first, 0))
        if side >= 2 and side * side == count - first:
            return first, side
    return None


def layer_label(ref: LayerRef) -> str:
    """How a message names a layer: ``layer 'layer3'``, or ``the model's output`` for ``""``.

    Example:
        >>> layer_label(LayerRef("layer3")), layer_label(LayerRef(""))
        ("layer 'layer3'", "the model's output")
    """
    return "the model's output" if str(ref) == "" else f"layer {str(ref)!r}"


#: layers whose 3-d outputs are ``(N, C, L)`` signals, channels first (not ``(N, tokens, C)``)
SIGNAL_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.ConvTranspose1d,
    nn.MaxPool1d,
    nn.AvgPool1d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool1d,
    nn.BatchNorm1d,
    nn.InstanceNorm1d,
)


def channels_first(tensor: Tensor, ref: LayerRef, tokens: bool = True) -> Tensor:
    """View an activation as ``(N, C, *positions)``. A 3-d one is ``(N, T, C)`` token sequences,
    transposed, with ``tokens``, and ``(N, C, L)`` signals, as they are, without;
    ``(N, C)``, ``(N, C, H, W)`` and ``(N, C, T, H, W)`` ones are channels-first already.
    :meth:`Activations.channels_first` knows which a layer's is.

    Example:
        >>> channels_first(torch.zeros(2, 5, 8), LayerRef("blocks.0")).shape
        torch.Size([2, 8, 5])
        >>> channels_first(torch.zeros(2, 5, 8), LayerRef("conv1d"), tokens=False).shape
        torch.Size([2, 5, 8])
    """
    if tensor.ndim in (2, 4, 5):
        return tensor
    if tensor.ndim == 3:  # (N, tokens, features) or (N, channels, length)
        return tensor.transpose(1, 2) if tokens else tensor
    raise ValueError(
        f"layer {str(ref)!r} outputs a tensor of shape {tuple(tensor.shape)}; featvis reads "
        "(N, C), (N, tokens, C), (N, C, L), (N, C, H, W) or (N, C, T, H, W) activations. Write a custom "
        "objective for other shapes."
    )


def pick_batch(tensor: Tensor, batch: int | None, ref: LayerRef) -> Tensor:
    """Batch element ``batch`` of ``tensor`` (keeping the batch dimension), or all of it for ``None``.

    Example:
        >>> pick_batch(torch.zeros(3, 2), 1, LayerRef("fc")).shape
        torch.Size([1, 2])
        >>> pick_batch(torch.zeros(3, 2), 3, LayerRef("fc"))
        Traceback (most recent call last):
        ...
        IndexError: batch=3 is out of range for layer 'fc': the batch has 3 images
    """
    if batch is None:
        return tensor
    if not -tensor.shape[0] <= batch < tensor.shape[0]:
        raise IndexError(
            f"batch={batch} is out of range for {layer_label(ref)}: the batch has {tensor.shape[0]} images"
        )
    return tensor[batch : batch + 1] if batch != -1 else tensor[-1:]


def check_index(tensor: Tensor, index: int, ref: LayerRef, what: str = "channel") -> None:
    """Raise a clear error unless ``index`` is a valid index along dimension 1 of ``tensor``.

    Example:
        >>> check_index(torch.zeros(1, 10), 10, LayerRef("fc"), what="class")
        Traceback (most recent call last):
        ...
        IndexError: class 10 is out of range for layer 'fc', which has 10 classes (valid: 0 to 9)
    """
    size = tensor.shape[1]
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError(f"the {what} index must be an int, got {type(index).__name__}")
    if not 0 <= index < size:
        raise IndexError(
            f"{what} {index} is out of range for {layer_label(ref)}, which has {size} "
            f"{what}{'es' if what.endswith('s') else 's'} "
            f"(valid: 0 to {size - 1})"
        )


class MissingLayer(LookupError):
    """An objective asked for a layer that was not hooked (the render loop catches it to find the
    layers that a plain function reads, and hooks them).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> try:
        ...     Activations(model, {}, None)["0"]
        ... except MissingLayer as missing:
        ...     print(missing.name)
        0
    """

    def __init__(self, ref: LayerRef, name: str, module: nn.Module) -> None:
        super().__init__(f"layer {name!r} was not captured")
        self.ref, self.name, self.module = ref, name, module


class ActivationCapture:
    """Forward hooks on the given layers of a model, removed on exit.

    Inside the ``with`` block, :meth:`run` calls the model and returns the
    captured :class:`Activations`. With ``stop_early`` (the default), the forward
    pass is cut as soon as every hooked layer has produced its output. A module
    that runs more than once in one forward pass is captured at its first call.

    Args:
        model: the network.
        layers: the layers to capture (names, modules or :class:`LayerRef`).
        stop_early: stop the forward pass once all layers are captured.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
        >>> with ActivationCapture(model, ["0"]) as capture:
        ...     out = capture.run(torch.ones(1, 2))["0"]
        >>> len(model[0]._forward_hooks)
        0
    """

    def __init__(self, model: nn.Module, layers: Iterable[LayerSpec], stop_early: bool = True) -> None:
        self.model = model
        self.stop_early = stop_early
        self.names: dict[nn.Module, str] = {}
        # the layers found here, handed on to each forward pass's Activations
        self._resolved: dict[LayerRef, tuple[str, nn.Module]] = {}
        for spec in layers:
            ref = LayerRef.parse(spec)
            if ref.layer == INPUT:
                continue
            name, module = resolve_layer(model, ref)
            self.names.setdefault(module, name)
            self._resolved[ref] = (name, module)
        self._outputs: dict[nn.Module, Any] = {}
        self._handles: list[RemovableHandle] = []
        self._moved: dict[nn.Module, MovedBackwardHooks] = {}  # your full backward hooks, run by featvis
        self._active = False

    @property
    def modules(self) -> list[nn.Module]:
        """The hooked modules."""
        return list(self.names)

    def add(self, module: nn.Module, name: str) -> None:
        """Hook one more module (also while inside the ``with`` block).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
            >>> with ActivationCapture(model, ["0"]) as capture:
            ...     capture.add(model[1], "1")
            ...     acts = capture.run(-torch.ones(1, 2))
            >>> sorted(capture.names.values()), acts["1"].shape
            (['0', '1'], torch.Size([1, 2]))
        """
        if module in self.names:
            return
        self.names[module] = name
        if self._active:
            self._hook_module(module)

    def _hook_module(self, module: nn.Module) -> None:
        moved = MovedBackwardHooks.take(module)
        if moved is not None:
            self._moved[module] = moved
        self._handles.append(module.register_forward_hook(self._hook))

    def _hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        moved = self._moved.get(module)
        if moved is not None:  # the output your full backward hooks see, read here so that they fire
            output = moved.wrap_output(output)
        if module in self._outputs:
            return output if moved is not None else None
        remaining = len(self.names) - len(self._outputs) - 1
        # A later in-place operation would overwrite a captured tensor if the
        # forward pass goes on; keep a copy in that case only.
        self._outputs[module] = _clone_tensors(output) if (remaining or not self.stop_early) else output
        if self.stop_early and remaining == 0:
            raise _StopForward
        return output if moved is not None else None

    def __enter__(self) -> ActivationCapture:
        try:
            for module in self.names:
                self._hook_module(module)
            self._active = True
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._remove()

    def _remove(self) -> None:
        self._active = False
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for moved in self._moved.values():
            moved.restore()
        self._moved.clear()

    def run(self, inputs: Tensor, image: Tensor | None = None) -> Activations:
        """Run the model on ``inputs`` and return what the hooks captured.

        ``image`` is recorded as the ``"input"`` entry (the untransformed image).
        Raises :class:`LayerNotReachedError` if a hooked layer did not run.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
            >>> image = torch.ones(1, 2)
            >>> with ActivationCapture(model, ["0"]) as capture:
            ...     acts = capture.run(image, image=image)
            >>> acts["0"].shape, acts["input"] is image
            (torch.Size([1, 3]), True)
        """
        if not self._active and self.names:
            raise RuntimeError("ActivationCapture.run must be called inside its `with` block")
        self._outputs = {}
        try:
            self.model(inputs)
        except _StopForward:
            pass
        missing = [name for module, name in self.names.items() if module not in self._outputs]
        if missing:
            layers = f"layer(s) {', '.join(repr(n) for n in missing)}"
            if isinstance(self.model, torch.jit.ScriptModule):
                raise LayerNotReachedError(
                    f"{layers} of {type(self.model).__name__} ran inside its TorchScript graph: a model made by "
                    "torch.jit.trace or torch.jit.script runs its compiled graph, not its layers' forward(), so no "
                    "hook on a layer inside it can see their outputs. Render the nn.Module you traced or scripted."
                )
            raise LayerNotReachedError(
                f"{layers} did not run during the forward pass of "
                f"{type(self.model).__name__}: the model's forward() never calls them (for this input). "
                "Target a layer that the forward pass uses. featvis runs the model in eval mode: a layer that "
                "forward() uses only in training (behind `if self.training`) does not run."
            )
        return Activations(self.model, self._outputs, image, self._resolved)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.names)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating-point dtype of a model's first parameter or buffer.

    A model with neither gives CPU and ``torch.float32``.

    Example:
        >>> from torch import nn
        >>> model_device_dtype(nn.Linear(2, 2).double())
        (device(type='cpu'), torch.float64)
    """
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device, torch.float32
    return torch.device("cpu"), torch.float32
