"""One figure from a benchmark run's grids: each method's row of pictures, its name on the left.

``benchmarks/imagenet.py --out DIR`` writes each method's pictures as a labelled grid per step count
(``DIR/featvis-classes-128.png``, ``DIR/lucent-classes-128.png``, ...). This stacks chosen grids into
one PNG for the docs, scaled to ``--width`` pixels, with the captions of the first grid only::

    python benchmarks/figure.py -o docs/images/imagenet-peers.png --width 1432 \\
        featvis=/tmp/bench/featvis-classes-128.png "Lucent 0.1.8=/tmp/bench/lucent-classes-128.png"
"""

from __future__ import annotations

import argparse

from PIL import Image, ImageDraw

from featvis.grid import caption_font

#: the width of the column of method names, as a share of the figure's width
LABEL_SHARE = 0.09


def caption_height(grid: Image.Image, tiles: int) -> int:
    """The height of the caption strip under a one-row grid of ``tiles`` square tiles (2 px padding)."""
    tile = (grid.width - 2) // tiles - 2
    return grid.height - tile - 4


def figure(rows: list[tuple[str, Image.Image]], width: int, tiles: int, columns: slice = slice(None)) -> Image.Image:
    """``rows`` of (name, one-row grid of ``tiles`` tiles) stacked, the first with its captions; the tiles in
    ``columns`` only."""
    label_width = round(width * LABEL_SHARE)
    parts = []
    for number, (_, grid) in enumerate(rows):
        tile = (grid.width - 2) // tiles
        first, last, _ = columns.indices(tiles)
        cut = grid.crop((first * tile, 0, last * tile + 2, grid.height))
        if number:  # the captions once, under the first row
            cut = cut.crop((0, 0, cut.width, cut.height - caption_height(grid, tiles)))
        scale = (width - label_width) / cut.width
        parts.append(cut.resize((width - label_width, round(cut.height * scale)), Image.LANCZOS))
    canvas = Image.new("RGB", (width, sum(p.height for p in parts)), "white")
    draw = ImageDraw.Draw(canvas)
    font, _ = caption_font(label_width)
    top = 0
    for (name, _), part in zip(rows, parts):
        canvas.paste(part, (label_width, top))
        draw.text((6, top + part.height // 2), name, fill="black", font=font, anchor="lm")
        top += part.height
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="+", metavar="NAME=GRID", help="a row's name and its grid PNG")
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--width", type=int, default=1432)
    parser.add_argument("--tiles", type=int, default=10, help="tiles in each grid's one row")
    parser.add_argument("--columns", default=":", help="which tiles, as a Python slice (e.g. 0:5)")
    args = parser.parse_args()
    rows = [(name, Image.open(path).convert("RGB")) for name, _, path in (row.rpartition("=") for row in args.rows)]
    first, _, last = args.columns.partition(":")
    columns = slice(int(first) if first else None, int(last) if last else None)
    figure(rows, args.width, args.tiles, columns).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
