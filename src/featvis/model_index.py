"""One static, offline ``index.html`` over a whole-model job (``featvis.jobs``).

:func:`write_model_index` reads a job's manifest and records and writes:

- ``index.html``: the model's layers, each with its number of units, how many are done, and a strip
  of its first pictures, linking to the layer's page;
- ``layers/<layer>/index.html``: the layer's grid of units, each picture captioned with its unit
  and final activation; the pictures load lazily (``loading="lazy"``), as the page is scrolled, so
  a layer of thousands of units opens at once;
- ``layers/<layer>/unit-0005.html``: one unit: its picture, its objective at every step, its top
  natural examples when the job was asked for them, its record (activation, steps, seed, chunk,
  process, time), and links to the previous and next units (also across layers; ``←`` and ``→``
  follow them).

The pages load nothing but the PNGs beside them (their CSS is inline), so they work from ``file://``.
``featvis index DIR`` writes them again for a folder, e.g. while a job is still running.

Example:
    >>> import tempfile
    >>> from torch import nn
    >>> from featvis.whole_model import render_model
    >>> model = nn.Sequential(nn.Conv2d(3, 2, 3)).eval()
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = render_model(model, folder, size=8, steps=2, progress=False, index=False)
    ...     write_model_index(folder).name
    'index.html'
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from .gallery import curve_svg, gallery_asset, short_number
from .jobs import JobFolder, layer_folder_name

__all__ = ["write_model_index"]

#: how many pictures of each layer the main index shows in its strip
STRIP = 12


def _page(title: str, body: str, extra_class: str = "", script: str = "") -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
{gallery_asset("model_index.css")}</style>
</head>
<body class="{extra_class}">
{body}
{f"<script>{script}</script>" if script else ""}
</body>
</html>
"""


#: the unit pages' keys: ← and → follow the previous and next links
_KEYS = (
    'document.addEventListener("keydown",function(e){var a=document.querySelector(e.key==="ArrowLeft"?'
    '"a[rel=prev]":e.key==="ArrowRight"?"a[rel=next]":null);if(a)location.href=a.href;});'
)


def _unit_page_name(unit: int) -> str:
    return f"unit-{unit:04d}.html"


def write_model_index(directory: str | os.PathLike[str]) -> Path:
    """Write the job's ``index.html``, each layer's page and each done unit's page; return ``index.html``.

    Units not done yet show as empty cells; write the index again when they are.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     try:
        ...         write_model_index(folder)
        ...     except FileNotFoundError as error:
        ...         print(str(error).split(": ")[1])
        it is not a featvis render-model folder (or the job has not started)
    """
    folder = JobFolder(directory)
    manifest = folder.read_manifest()
    if manifest is None:
        raise FileNotFoundError(
            f"{folder.root} has no manifest.json: it is not a featvis render-model folder (or the job has not started)"
        )
    settings = manifest["settings"]
    layers: dict[str, int] = manifest["layers"]
    records = {(layer, unit): record for layer, unit, record in folder.records()}
    height, width = settings["size"]
    pixelated = "pixelated" if width <= 128 else ""
    aspect = f"--aspect: {width} / {height}"
    done = [key for key, record in records.items() if record is not None]
    model = str(settings.get("model", "model"))

    sections = []
    names = list(layers)
    for number, (layer, count) in enumerate(layers.items()):
        link = f"layers/{html.escape(layer_folder_name(layer))}"
        finished = sum(1 for unit in range(count) if records[(layer, unit)] is not None)
        strip = "".join(
            f'<a href="{link}/{_unit_page_name(unit)}"><img class="unit" loading="lazy" '
            f'src="{link}/{html.escape(records[(layer, unit)]["picture"])}" alt="{html.escape(layer)} unit {unit}" '
            f'width="{width}" height="{height}"></a>'
            for unit in range(min(count, STRIP))
            if records[(layer, unit)] is not None
        )
        sections.append(
            f'<section class="layer" id="layer-{number}"><h2><a href="{link}/index.html">{html.escape(layer)}</a></h2>'
            f'<p class="muted">{count} units, {finished} done</p><div class="strip">{strip}</div></section>'
        )
        _write_layer_page(folder, layer, count, records, names, settings, model, pixelated, aspect)
    for index, (layer, unit) in enumerate(done):
        before = done[index - 1] if index > 0 else None
        after = done[index + 1] if index + 1 < len(done) else None
        _write_unit_page(folder, layer, unit, records[(layer, unit)], before, after, model, pixelated, aspect)
    total = sum(layers.values())
    about = (
        f"{total} units in {len(layers)} layers, {len(done)} done · {settings['steps']} steps, "
        f"{width}×{height} pixels, seed {settings['seed']}, batches of {settings['batch_size']}"
    )
    body = (
        f"<header><h1>{html.escape(model)}</h1><p>{html.escape(about)}</p></header>"
        f'<main class="{pixelated}" style="{aspect}">{"".join(sections)}</main>'
    )
    index = folder.root / "index.html"
    index.write_text(_page(f"featvis: {model}", body), encoding="utf-8")
    return index


def _write_layer_page(
    folder: JobFolder,
    layer: str,
    count: int,
    records: dict[tuple[str, int], dict[str, Any] | None],
    names: list[str],
    settings: dict[str, Any],
    model: str,
    pixelated: str,
    aspect: str,
) -> None:
    height, width = settings["size"]
    cells = []
    for unit in range(count):
        record = records[(layer, unit)]
        if record is None:
            cells.append(
                f'<figure class="cell" id="unit-{unit}"><div class="missing">not done</div>'
                f"<figcaption><span>unit {unit}</span></figcaption></figure>"
            )
            continue
        activation = short_number(float(record["activation"]))
        cells.append(
            f'<figure class="cell" id="unit-{unit}"><a href="{_unit_page_name(unit)}">'
            f'<img class="unit" loading="lazy" src="{html.escape(record["picture"])}" alt="unit {unit}" '
            f'width="{width}" height="{height}"></a><figcaption><span>unit {unit}</span>'
            f'<span class="activation" title="mean activation of the final image">{activation}</span>'
            "</figcaption></figure>"
        )
    number = names.index(layer)
    links = ['<a href="../../index.html">all layers</a>']
    if number > 0:
        links.append(
            f'<a rel="prev" href="../{html.escape(layer_folder_name(names[number - 1]))}/index.html">'
            f"← {html.escape(names[number - 1])}</a>"
        )
    if number + 1 < len(names):
        links.append(
            f'<a rel="next" href="../{html.escape(layer_folder_name(names[number + 1]))}/index.html">'
            f"{html.escape(names[number + 1])} →</a>"
        )
    thumb = min(160, max(72, 4 * int(width)))
    body = (
        f"<header><h1>{html.escape(model)} · {html.escape(layer)}</h1>"
        f"<p>{count} units · {settings['steps']} steps · under each picture its unit and the mean activation "
        f"of its final image; click one for its page</p><nav>{''.join(links)}</nav></header>"
        f'<main class="grid {pixelated}" style="--thumb: {thumb}px; {aspect}">{"".join(cells)}</main>'
    )
    target = folder.layer_folder(layer)
    target.mkdir(parents=True, exist_ok=True)
    (target / "index.html").write_text(_page(f"featvis: {model} · {layer}", body), encoding="utf-8")


def _unit_link(here: str, other: tuple[str, int], rel: str, label: str) -> str:
    layer, unit = other
    prefix = "" if layer == here else f"../{html.escape(layer_folder_name(layer))}/"
    return f'<a rel="{rel}" href="{prefix}{_unit_page_name(unit)}">{label} ({html.escape(layer)} unit {unit})</a>'


def _write_unit_page(
    folder: JobFolder,
    layer: str,
    unit: int,
    record: dict[str, Any],
    before: tuple[str, int] | None,
    after: tuple[str, int] | None,
    model: str,
    pixelated: str,
    aspect: str,
) -> None:
    height, width = record["settings"]["size"]
    curve = curve_svg([float(v) for v in record["objective"]])
    objective = record["objective"]
    rows = [
        ("final activation", short_number(float(record["activation"]))),
        (
            "objective",
            f"{short_number(objective[0])} at step 1 → {short_number(objective[-1])} at step {len(objective)}"
            if objective
            else "",
        ),
        ("steps", str(record["steps"])),
        (
            "seed",
            f"{record['seed']} (chunk of units {record['chunk'][0]}-{record['chunk'][-1]}, "
            f"image {record['batch_index']})",
        ),
        ("rendered by", f"process {record['rank']} of {record['world_size']}, {record['seconds']} s a unit"),
        ("featvis", str(record["featvis"])),
    ]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    examples = ""
    if record.get("diverse"):
        examples += (
            f'<h2>Diverse pictures</h2><img class="examples" src="{html.escape(record["diverse"])}" '
            'alt="other pictures of this unit, pushed apart from each other">'
        )
    if record.get("examples"):
        examples += (
            f'<h2>Top natural examples</h2><img class="examples" src="{html.escape(record["examples"])}" '
            'alt="the natural images that most activate this unit, as crops, with their scores">'
        )
    links = ['<a href="../../index.html">all layers</a>', f'<a href="index.html#unit-{unit}">{html.escape(layer)}</a>']
    if before is not None:
        links.append(_unit_link(layer, before, "prev", "← previous"))
    if after is not None:
        links.append(_unit_link(layer, after, "next", "next →"))
    body = (
        f"<header><h1>{html.escape(model)} · {html.escape(layer)} · unit {unit}</h1>"
        f"<nav>{''.join(links)}</nav></header>"
        f'<main class="{pixelated}" style="{aspect}"><img class="unit" src="{html.escape(record["picture"])}" '
        f'alt="{html.escape(layer)} unit {unit}" width="{width}" height="{height}">'
        f'{curve}{examples}<table class="record">{table}</table>'
        f"<details><summary>record</summary><pre>{html.escape(json.dumps(record, indent=1)[:4000])}</pre></details>"
        "</main>"
    )
    page = _page(f"featvis: {model} · {layer} · unit {unit}", body, "unit-page", _KEYS)
    (folder.layer_folder(layer) / _unit_page_name(unit)).write_text(page, encoding="utf-8")
