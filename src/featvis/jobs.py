"""A whole-model job on disk: which layers and units, in which chunks, and what is done.

A job renders every unit of some layers. Its plan is deterministic: each layer's units are cut into
chunks of ``batch_size`` (units ``0..B-1``, ``B..2B-1``, ...), and each chunk's seed comes from the
job's seed, the layer's name and the chunk's first unit (:func:`chunk_seed`), never from which
process renders it; so a unit's picture is the same whether one process or a hundred rendered the
job. A :class:`JobFolder` keeps the job on disk:

- ``manifest.json``: the job's settings and layers; a rerun with other settings is refused;
- ``layers/<layer>/unit-0005.png`` and ``unit-0005.json``: a unit's picture and its record (written
  through a temporary file and a rename, the record last: a unit is done when its record exists);
- ``logs/rank-0.log``, ...: one log per process.

Example:
    >>> chunks = plan_chunks({"conv1": 5, "fc": 2}, batch_size=2, seed=0)
    >>> [(c.layer, c.units) for c in chunks]
    [('conv1', (0, 1)), ('conv1', (2, 3)), ('conv1', (4,)), ('fc', (0, 1))]
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .layers import layer_names

__all__ = [
    "Chunk",
    "JobFolder",
    "SettingsChangedError",
    "chunk_seed",
    "layer_folder_name",
    "plan_chunks",
    "select_layers",
]

#: the layers a job renders when none are named: every convolution and linear layer
RENDERED_BY_DEFAULT = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def select_layers(model: nn.Module, patterns: Sequence[str] | None = None) -> list[str]:
    """The layers of ``model`` a job renders, in the model's order.

    ``None``: every convolution and linear layer. Otherwise each pattern is a layer's name, or a
    shell-style pattern (``layer*.conv2``, ``features.?``) matched against the names of the
    convolution and linear layers. A pattern that matches nothing is an error naming close names.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(64, 2))
        >>> select_layers(model), select_layers(model, ["?"]), select_layers(model, ["1", "4"])
        (['0', '2', '4'], ['0', '2', '4'], ['1', '4'])
    """
    modules = dict(model.named_modules())
    renderable = [name for name in layer_names(model) if isinstance(modules[name], RENDERED_BY_DEFAULT)]
    if patterns is None:
        if not renderable:
            raise ValueError("the model has no convolution or linear layer to render: name the layers to render")
        return renderable
    chosen: set[str] = set()
    for pattern in patterns:
        if pattern in modules and pattern:
            chosen.add(pattern)
            continue
        matched = fnmatch.filter(renderable, pattern)
        if not matched:
            close = [name for name in renderable if pattern.strip("*?[]") and pattern.strip("*?[]") in name][:5]
            hint = f"; close names: {', '.join(close)}" if close else "; `featvis layers MODEL` lists them"
            raise ValueError(f"no convolution or linear layer matches {pattern!r}{hint}")
        chosen.update(matched)
    return [name for name in layer_names(model) if name in chosen]


def chunk_seed(seed: int, layer: str, first_unit: int) -> int:
    """The seed of the chunk of ``layer`` that starts at ``first_unit``: from the job's ``seed`` and the
    chunk's identity only (a SHA-256 of the three, 63 bits).

    Example:
        >>> chunk_seed(0, "conv1", 0) == chunk_seed(0, "conv1", 0) != chunk_seed(0, "conv1", 8)
        True
    """
    digest = hashlib.sha256(f"{seed}/{layer}/{first_unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class Chunk:
    """Units of one layer rendered together, as one batch, from one seed.

    Example:
        >>> Chunk("conv1", (0, 1), 7).first
        0
    """

    layer: str
    units: tuple[int, ...]
    seed: int

    @property
    def first(self) -> int:
        """The chunk's first unit, which names it."""
        return self.units[0]


def plan_chunks(widths: Mapping[str, int], batch_size: int, seed: int) -> list[Chunk]:
    """Every chunk of the job, layer by layer in the order of ``widths`` (layer -> number of units).

    Example:
        >>> [c.units for c in plan_chunks({"a": 3}, batch_size=2, seed=0)]
        [(0, 1), (2,)]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return [
        Chunk(layer, tuple(range(first, min(first + batch_size, count))), chunk_seed(seed, layer, first))
        for layer, count in widths.items()
        for first in range(0, count, batch_size)
    ]


def layer_folder_name(layer: str) -> str:
    """A layer's folder name in a job: its name with anything but letters, digits, ``_ . -`` replaced.

    Example:
        >>> layer_folder_name("layer1.0.conv2"), layer_folder_name("blocks/3"), layer_folder_name("")
        ('layer1.0.conv2', 'blocks_3', 'output')
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", layer).strip("_") or "output"


class SettingsChangedError(ValueError):
    """A rerun of a job in a folder whose manifest has other settings.

    Example:
        >>> issubclass(SettingsChangedError, ValueError)
        True
    """


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it to ``path``: a reader sees all or nothing."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class JobFolder:
    """A job's folder: its manifest, each unit's picture and record, each process's log.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as root:
        ...     folder = JobFolder(root)
        ...     folder.write_manifest({"steps": 8}, {"conv1": 2})
        ...     folder.write_record("conv1", 0, {"unit": 0})
        ...     folder.is_done("conv1", 0), folder.is_done("conv1", 1), folder.count_done()
        (True, False, 1)
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        """``manifest.json``."""
        return self.root / "manifest.json"

    def layer_folder(self, layer: str) -> Path:
        """``layers/<layer>/``.

        Example:
            >>> JobFolder("job").layer_folder("layer1.conv").as_posix()
            'job/layers/layer1.conv'
        """
        return self.root / "layers" / layer_folder_name(layer)

    def picture_path(self, layer: str, unit: int) -> Path:
        """``layers/<layer>/unit-0005.png``.

        Example:
            >>> JobFolder("job").picture_path("fc", 5).name
            'unit-0005.png'
        """
        return self.layer_folder(layer) / f"unit-{unit:04d}.png"

    def record_path(self, layer: str, unit: int) -> Path:
        """``layers/<layer>/unit-0005.json``: the unit is done when it exists.

        Example:
            >>> JobFolder("job").record_path("fc", 5).name
            'unit-0005.json'
        """
        return self.layer_folder(layer) / f"unit-{unit:04d}.json"

    def log_path(self, rank: int) -> Path:
        """``logs/rank-<rank>.log``.

        Example:
            >>> JobFolder("job").log_path(3).name
            'rank-3.log'
        """
        return self.root / "logs" / f"rank-{rank}.log"

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or ``None`` when the folder has none yet.

        Example:
            >>> JobFolder("/nonexistent").read_manifest() is None
            True
        """
        if not self.manifest_path.exists():
            return None
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_manifest(self, settings: Mapping[str, Any], widths: Mapping[str, int], **extra: Any) -> None:
        """Write the manifest: the job's ``settings``, its layers and their widths, and ``extra`` (not compared).

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as root:
            ...     JobFolder(root).write_manifest({"steps": 8}, {"fc": 2})
            ...     JobFolder(root).read_manifest()["layers"]
            {'fc': 2}
        """
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = {"settings": dict(settings), "layers": dict(widths), **extra}
        _write_atomically(self.manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())

    def check_manifest(self, settings: Mapping[str, Any], widths: Mapping[str, int]) -> None:
        """Raise :class:`SettingsChangedError`, naming what differs, if the manifest's settings or layers are
        not these (a missing manifest is also an error: the main process writes it first).

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as root:
            ...     JobFolder(root).write_manifest({"steps": 8}, {"fc": 2})
            ...     try:
            ...         JobFolder(root).check_manifest({"steps": 16}, {"fc": 2})
            ...     except SettingsChangedError as error:
            ...         print(str(error).split("(")[1].split(")")[0])
            steps: 8 in the folder, 16 now
        """
        manifest = self.read_manifest()
        if manifest is None:
            raise FileNotFoundError(f"{self.manifest_path} is missing: the job's main process writes it first")
        old = {**manifest["settings"], "layers": manifest["layers"]}
        new = json.loads(json.dumps({**settings, "layers": dict(widths)}))  # as JSON reads it back
        differences = [
            f"{key}: {_short(old.get(key))} in the folder, {_short(new.get(key))} now"
            for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)
        ]
        if differences:
            raise SettingsChangedError(
                f"{self.root} holds a job with other settings ({'; '.join(differences)}): its pictures would not "
                "match. Give a new output folder, or the same settings to resume that job"
            )

    def is_done(self, layer: str, unit: int) -> bool:
        """Whether the unit's record exists.

        Example:
            >>> JobFolder("/nonexistent").is_done("fc", 0)
            False
        """
        return self.record_path(layer, unit).exists()

    def chunk_done(self, chunk: Chunk) -> bool:
        """Whether every unit of ``chunk`` is done.

        Example:
            >>> JobFolder("/nonexistent").chunk_done(Chunk("fc", (0, 1), 0))
            False
        """
        return all(self.is_done(chunk.layer, unit) for unit in chunk.units)

    def write_picture(self, layer: str, unit: int, png: bytes) -> None:
        """Write a unit's PNG (its bytes), atomically.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as root:
            ...     JobFolder(root).write_picture("fc", 1, b"png")
            ...     JobFolder(root).picture_path("fc", 1).read_bytes()
            b'png'
        """
        self.layer_folder(layer).mkdir(parents=True, exist_ok=True)
        _write_atomically(self.picture_path(layer, unit), png)

    def write_file(self, layer: str, name: str, data: bytes) -> None:
        """Write another file of a unit beside its picture, atomically (e.g. its top examples).

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as root:
            ...     JobFolder(root).write_file("fc", "unit-0001-examples.png", b"png")
            ...     (JobFolder(root).layer_folder("fc") / "unit-0001-examples.png").read_bytes()
            b'png'
        """
        self.layer_folder(layer).mkdir(parents=True, exist_ok=True)
        _write_atomically(self.layer_folder(layer) / name, data)

    def write_record(self, layer: str, unit: int, record: Mapping[str, Any]) -> None:
        """Write a unit's record, atomically; the unit is done from then on.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as root:
            ...     JobFolder(root).write_record("fc", 1, {"unit": 1})
            ...     JobFolder(root).read_record("fc", 1)
            {'unit': 1}
        """
        self.layer_folder(layer).mkdir(parents=True, exist_ok=True)
        _write_atomically(self.record_path(layer, unit), (json.dumps(dict(record)) + "\n").encode())

    def read_record(self, layer: str, unit: int) -> dict[str, Any] | None:
        """A unit's record, or ``None`` when it is not done.

        Example:
            >>> JobFolder("/nonexistent").read_record("fc", 0) is None
            True
        """
        path = self.record_path(layer, unit)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def count_done(self) -> int:
        """How many units have a record, over all layers (a scan of the folders).

        Example:
            >>> JobFolder("/nonexistent").count_done()
            0
        """
        layers = self.root / "layers"
        if not layers.exists():
            return 0
        return sum(
            1
            for folder in layers.iterdir()
            if folder.is_dir()
            for entry in os.scandir(folder)
            if entry.name.startswith("unit-") and entry.name.endswith(".json")
        )

    def log(self, rank: int, line: str) -> None:
        """Append ``line`` to this process's log.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as root:
            ...     JobFolder(root).log(0, "started")
            ...     JobFolder(root).log_path(0).read_text().splitlines()
            ['started']
        """
        path = self.log_path(rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(line.rstrip("\n") + "\n")

    def records(self) -> Iterator[tuple[str, int, dict[str, Any] | None]]:
        """``(layer, unit, record or None)`` for every unit of the manifest, in order.

        Example:
            >>> list(JobFolder("/nonexistent").records())
            []
        """
        manifest = self.read_manifest()
        if manifest is None:
            return
        for layer, count in manifest["layers"].items():
            for unit in range(count):
                yield layer, unit, self.read_record(layer, unit)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
