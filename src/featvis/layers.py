"""Naming layers: :class:`LayerRef` (a layer and, optionally, which part of its output),
:func:`layer_names` and :func:`resolve_layer`, which finds a named layer in a model (through the
wrappers of ``torch.compile`` and ``nn.DataParallel`` too) or says which names come close.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    >>> resolve_layer(model, LayerRef.parse("1"))[0], layer_names(model)
    ('1', ['0', '1'])
"""

from __future__ import annotations

import difflib
import re
import weakref
from dataclasses import dataclass
from typing import Union

from torch import nn

__all__ = ["INPUT", "LayerRef", "LayerSpec", "layer_names", "resolve_layer"]

#: The reserved layer name for the image itself (before transforms).
INPUT = "input"


@dataclass(frozen=True)
class LayerRef:
    """A layer, and optionally which part of its output to use.

    Args:
        layer: the module's name (as in ``model.named_modules()``) or the module.
        select: an index or key into the layer's output when it is a tuple, list
            or dict, or a tuple of them for nested outputs (``(1, "neg")`` reads
            ``output[1]["neg"]``); ``None`` uses the output as it is.

    Example:
        >>> LayerRef.parse("blocks.0.attn[0]")
        LayerRef(layer='blocks.0.attn', select=0)
        >>> LayerRef.parse("head[1]['logits']").select
        (1, 'logits')
        >>> str(LayerRef("head", select="logits"))
        "head['logits']"
    """

    layer: str | nn.Module
    select: int | str | tuple[int | str, ...] | None = None

    _SELECTOR = re.compile(r"^(?P<name>.*?)\[(?P<key>-?\d+|'[^']*'|\"[^\"]*\")\]$")

    @classmethod
    def parse(cls, spec: LayerSpec) -> LayerRef:
        """Turn a name, a module, or a name with ``[selector]`` into a :class:`LayerRef`.

        Example:
            >>> LayerRef.parse("backbone['out']")
            LayerRef(layer='backbone', select='out')
            >>> LayerRef.parse("layer3.1.conv2").select is None
            True
        """
        if isinstance(spec, LayerRef):
            return spec
        if isinstance(spec, nn.Module):
            return cls(spec)
        if not isinstance(spec, str):
            raise TypeError(f"a layer is a name (str), a torch.nn.Module or a LayerRef, got {type(spec).__name__}")
        keys: list[int | str] = []
        name = spec
        while (match := cls._SELECTOR.match(name)) is not None:
            key = match["key"]
            keys.insert(0, key[1:-1] if key[0] in "'\"" else int(key))
            name = match["name"]
        if not keys:
            return cls(spec)
        return cls(name, keys[0] if len(keys) == 1 else tuple(keys))

    def __str__(self) -> str:
        if isinstance(self.layer, str):
            name = self.layer
        else:
            name = f"<{type(self.layer).__name__}>"
        keys = () if self.select is None else self.select if isinstance(self.select, tuple) else (self.select,)
        return name + "".join(f"[{key!r}]" for key in keys)


LayerSpec = Union[str, nn.Module, LayerRef]


def layer_names(model: nn.Module) -> list[str]:
    """All layer names of ``model`` that featvis accepts, in definition order.

    These are the names of ``model.named_modules()``, without the empty name of
    the model itself.

    Example:
        >>> from torch import nn
        >>> layer_names(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Sequential(nn.ReLU())))
        ['0', '1', '1.0']
    """
    return [name for name, _ in model.named_modules() if name]


#: where wrappers keep the wrapped model: torch.compile's OptimizedModule, (Distributed)DataParallel
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def _strip_wrapper(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


#: layers found so far, per model: checked on reuse (the module must still be at that name), so that a
#: layer named again by the steps of one run costs a walk down its path, not a walk of the whole model
_FOUND: weakref.WeakKeyDictionary[nn.Module, dict[LayerRef, tuple[str, nn.Module]]] = weakref.WeakKeyDictionary()


def resolve_layer(model: nn.Module, ref: LayerRef) -> tuple[str, nn.Module]:
    """Find the module a :class:`LayerRef` points at, and its name.

    Raises a ``ValueError`` naming the closest valid layer names when the name is
    unknown, or when a module object is not part of ``model``. On a model wrapped by
    ``torch.compile`` or ``nn.DataParallel``, the inner model's names work as well.
    A layer found once is remembered for that model, and checked to be still
    there when asked for again.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> resolve_layer(model, LayerRef("0"))[0]
        '0'
    """
    known = _FOUND.get(model)
    found = None if known is None else known.get(ref)
    if found is not None:
        try:
            if model.get_submodule(found[0]) is found[1]:
                return found
        except AttributeError:  # the module was removed or replaced: look again
            pass
    found = _search_layer(model, ref)
    _FOUND.setdefault(model, {})[ref] = found
    return found


def _search_layer(model: nn.Module, ref: LayerRef) -> tuple[str, nn.Module]:
    if isinstance(ref.layer, nn.Module):
        for name, module in model.named_modules():
            if module is ref.layer:
                return name, module
        raise ValueError(
            f"the module {type(ref.layer).__name__} passed as a layer is not part of the model "
            f"{type(model).__name__}; pass one of its submodules or a name from featvis.layer_names(model)"
        )
    modules = dict(model.named_modules())
    if ref.layer in modules:
        return ref.layer, modules[ref.layer]
    # the names of the model inside torch.compile's or DataParallel's wrapper work on the wrapper too
    for prefix in _WRAPPER_PREFIXES:
        if isinstance(modules.get(prefix.rstrip(".")), nn.Module) and prefix + ref.layer in modules:
            return prefix + ref.layer, modules[prefix + ref.layer]
    names = [name for name in modules if name]
    # compare against the names without a wrapper's prefix, and report the full names
    short = {_strip_wrapper(name): name for name in reversed(names)}
    close = [short[n] for n in difflib.get_close_matches(_strip_wrapper(ref.layer), list(short), n=5, cutoff=0.5)]
    if not close:
        close = [name for name in names if ref.layer.split(".")[-1] in name][:5]
    hint = f" Closest names: {', '.join(repr(n) for n in close)}." if close else ""
    raise ValueError(
        f"unknown layer {ref.layer!r} in {type(model).__name__}.{hint} "
        f"featvis.layer_names(model) lists all {len(names)} valid names."
    )
