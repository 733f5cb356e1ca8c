# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Small PIL/numpy renderers for registration results: contour overlays, DDF colour maps, image grids.

A picture meant for people is a :func:`make_grid` of tiles with a title strip above it (:func:`add_titles`, one
title per column) and a legend strip below it (:func:`add_legend`: contour colours and, when the grid shows a DDF,
the colour wheel of :func:`ddf_color_wheel` with the magnitude the DDF tiles are scaled to). Text uses Pillow's
built-in font (:func:`PIL.ImageFont.load_default`), nothing is downloaded, and nothing is rendered at import time.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

__all__ = [
    "mask_contour",
    "overlay_contours",
    "ddf_to_rgb",
    "to_uint8_gray",
    "make_grid",
    "ddf_color_wheel",
    "default_font_size",
    "title_strip",
    "add_titles",
    "legend_strip",
    "add_legend",
]

#: colours used for contours, RGB.
RED, GREEN, YELLOW, CYAN = (255, 40, 40), (40, 255, 40), (255, 230, 0), (0, 220, 255)


def _as_2d(x: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise ValueError(f"expected a single 2-D image (H, W) (leading singleton dims allowed), got shape {arr.shape}.")
    return arr


def to_uint8_gray(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Scale an ``(H, W)`` image in [0, 1] (values outside are clipped) to ``uint8`` RGB ``(H, W, 3)``."""
    arr = np.clip(np.nan_to_num(_as_2d(image)), 0.0, 1.0)
    g = (arr * 255.0 + 0.5).astype(np.uint8)
    return np.stack([g, g, g], axis=-1)


def mask_contour(mask: torch.Tensor | np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boolean (H, W) contour of a binary mask (mask minus its erosion)."""
    m = torch.as_tensor(_as_2d(mask) > 0.5, dtype=torch.float32)[None, None]
    k = 2 * thickness + 1
    eroded = -F.max_pool2d(-m, k, stride=1, padding=thickness)
    return ((m - eroded) > 0.5)[0, 0].numpy()


def overlay_contours(
    image: torch.Tensor | np.ndarray,
    masks: Sequence[torch.Tensor | np.ndarray],
    colors: Sequence[tuple[int, int, int]] = (RED, GREEN, YELLOW, CYAN),
    thickness: int = 1,
) -> np.ndarray:
    """Draw the contours of masks on a grey (H, W) image; returns uint8 (H, W, 3)."""
    rgb = to_uint8_gray(image)
    for mask, color in zip(masks, colors):
        rgb[mask_contour(mask, thickness)] = color
    return rgb


def ddf_to_rgb(ddf: torch.Tensor | np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a ``(2, H, W)`` DDF: hue = direction, value = magnitude; returns ``uint8`` ``(H, W, 3)``."""
    d = ddf.detach().float().cpu().numpy() if isinstance(ddf, torch.Tensor) else np.asarray(ddf, dtype=np.float32)
    d = np.squeeze(d)
    if d.ndim != 3 or d.shape[0] != 2:
        raise ValueError(f"`ddf` must have shape (2, H, W), got {d.shape}.")
    mag = np.hypot(d[0], d[1])
    vmax = float(max_magnitude) if max_magnitude else float(max(mag.max(), 1e-6))
    hue = (np.arctan2(d[0], d[1]) + np.pi) / (2 * np.pi)
    val = np.clip(mag / vmax, 0, 1)
    # HSV (s = 1) to RGB
    h6 = hue * 6.0
    i = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    p, q, t = np.zeros_like(val), val * (1 - f), val * f
    lut = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)]
    rgb = np.zeros((*val.shape, 3), dtype=np.float32)
    for k, (r, g, b) in enumerate(lut):
        sel = i == k
        rgb[sel, 0], rgb[sel, 1], rgb[sel, 2] = r[sel], g[sel], b[sel]
    return (rgb * 255 + 0.5).astype(np.uint8)


def make_grid(tiles: Sequence[Sequence[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Assemble rows of equally sized ``uint8`` ``(H, W, 3)`` tiles into one image with ``pad`` px white gaps."""
    if not tiles or not tiles[0]:
        raise ValueError("`tiles` must be a non-empty list of non-empty rows.")
    h, w = tiles[0][0].shape[:2]
    ncols = max(len(r) for r in tiles)
    out = np.full((len(tiles) * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            if tile.shape[:2] != (h, w):
                raise ValueError(f"all tiles must be {(h, w)}, got {tile.shape[:2]} at row {r}, column {c}.")
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y : y + h, x : x + w] = tile
    return out


def ddf_color_wheel(size: int, max_magnitude: float) -> np.ndarray:
    """The colour key of :func:`ddf_to_rgb`: a disc whose pixel at offset ``v`` from the centre shows a DDF ``v``.

    The wheel is drawn by :func:`ddf_to_rgb` itself, with the same ``max_magnitude`` as the DDF tiles it explains:
    the pixel at ``(row, col)`` gets the colour of the displacement ``((row - c), (col - c)) * max_magnitude / r``
    (``c = r = (size - 1) / 2``; channel 0 along rows, i.e. down, channel 1 along columns, i.e. right, as in
    :mod:`monai_jrs.utils.conventions`). So the rim right of the centre has the colour of a field pointing right
    (``ddf = (0, +m)``), the rim below the centre that of a field pointing down (``ddf = (+m, 0)``), the centre is
    black (no displacement) and the rim is fully bright (``|ddf| >= max_magnitude``). Pixels outside the disc are
    white.

    Args:
        size: side of the square image in pixels (odd sizes put a pixel exactly on the centre), ``>= 3``.
        max_magnitude: displacement in pixels shown at full brightness, ``> 0``; pass the value given to
            :func:`ddf_to_rgb` for the tiles.

    Returns:
        ``uint8`` ``(size, size, 3)``.

    Raises:
        ValueError: for ``size < 3`` or a ``max_magnitude`` that is not a positive finite number.

    Example::

        >>> wheel = ddf_color_wheel(9, max_magnitude=2.0)
        >>> field = np.zeros((2, 2, 2)); field[1] = 2.0  # 2 px to the right (channel 1: along columns)
        >>> right = ddf_to_rgb(field, max_magnitude=2.0)[0, 0]
        >>> bool((wheel[4, 8] == right).all()), wheel[4, 4].tolist(), wheel[0, 0].tolist()
        (True, [0, 0, 0], [255, 255, 255])
    """
    if int(size) != size or size < 3:
        raise ValueError(f"`size` must be an integer >= 3 (pixels), got {size!r}.")
    _check_magnitude(max_magnitude)
    size, m = int(size), float(max_magnitude)
    r = (size - 1) / 2.0
    off = np.arange(size, dtype=np.float32) - r
    rows, cols = np.meshgrid(off, off, indexing="ij")
    rgb = ddf_to_rgb(np.stack([rows, cols]) * (m / r), max_magnitude=m)
    rgb[np.hypot(rows, cols) > r + 0.5] = 255
    return rgb


def default_font_size(tile_width: int) -> int:
    """Text height in pixels used for annotations of tiles ``tile_width`` px wide: ``tile_width / 20``, 11 to 128.

    Example::

        >>> default_font_size(64), default_font_size(256), default_font_size(2048)
        (11, 13, 102)
    """
    return int(min(max(round(tile_width / 20), 11), 128))


def title_strip(
    titles: Sequence[str], tile_width: int | Sequence[int], pad: int = 2, font_size: int | None = None
) -> np.ndarray:
    """A white strip with black titles, each centred over its column of a :func:`make_grid` layout.

    The columns are laid out like :func:`make_grid`: ``pad`` px, column 0, ``pad`` px, column 1, ..., ``pad`` px. A
    title wider than its column is wrapped at spaces; a single word still wider is cut at the column border.

    Args:
        titles: one title per column.
        tile_width: width of every column in pixels, or one width per column.
        pad: gap between (and around) the columns, as given to :func:`make_grid`.
        font_size: text height in pixels; default :func:`default_font_size` of the narrowest column.

    Returns:
        ``uint8`` ``(h, sum(widths) + (len(titles) + 1) * pad, 3)``; ``h`` is about ``1.2 * font_size`` per line
        of the longest title plus ``font_size / 2`` of margins.

    Raises:
        ValueError: for no titles, a number of widths different from the number of titles, or a width, pad or
            font size out of range.
    """
    widths = _column_widths(titles, tile_width, pad)
    size = _font_size(font_size, default_font_size(min(widths)))
    margin = max(2, size // 4)
    blocks = [_text_block(_wrap(str(t), size, max(1, w - 4)), size, align="center") for t, w in zip(titles, widths)]
    height = max(b.shape[0] for b in blocks) + 2 * margin
    out = np.full((height, sum(widths) + (len(widths) + 1) * pad), 255, dtype=np.uint8)
    x = pad
    for block, w in zip(blocks, widths):
        bh, bw = block.shape
        y0, x0 = (height - bh) // 2, x + (w - min(bw, w)) // 2
        out[y0 : y0 + bh, x0 : x0 + min(bw, w)] = block[:, (bw - min(bw, w)) // 2 :][:, : min(bw, w)]
        x += w + pad
    return np.repeat(out[..., None], 3, axis=-1)


def add_titles(
    grid: np.ndarray,
    titles: Sequence[str],
    tile_width: int | Sequence[int],
    pad: int = 2,
    font_size: int | None = None,
) -> np.ndarray:
    """Put a :func:`title_strip` above a :func:`make_grid` image: one title per column, centred over it.

    Args:
        grid: ``uint8`` ``(H, W, 3)`` image from :func:`make_grid` (or laid out the same way).
        titles: one title per column; the same titles serve every row.
        tile_width: width of every column in pixels, or one width per column.
        pad: the ``pad`` given to :func:`make_grid`.
        font_size: text height in pixels; default :func:`default_font_size` of the narrowest column.

    Returns:
        ``uint8`` ``(h + H, W, 3)``: the title strip (``h`` px) on top of ``grid``; the width is unchanged.

    Raises:
        ValueError: when ``grid`` is not ``uint8`` ``(H, W, 3)`` or is not ``sum(widths) + (n + 1) * pad`` wide for
            ``n = len(titles)`` columns (for example a title count different from the number of columns).

    Example::

        >>> tile = np.zeros((32, 48, 3), dtype=np.uint8)
        >>> grid = make_grid([[tile, tile, tile]])
        >>> out = add_titles(grid, ["reference", "floating", "registered"], tile_width=48)
        >>> out.shape[1] == grid.shape[1], out.shape[0] > grid.shape[0], bool((out[-grid.shape[0]:] == grid).all())
        (True, True, True)
    """
    _check_rgb(grid, "grid")
    widths = _column_widths(titles, tile_width, pad)
    expected = sum(widths) + (len(widths) + 1) * pad
    if grid.shape[1] != expected:
        raise ValueError(
            f"{len(widths)} titles over columns {widths} px wide with pad={pad} need a grid {expected} px wide "
            f"(pad + n * (tile_width + pad)), got a grid {grid.shape[1]} px wide; give one title per column."
        )
    return np.concatenate([title_strip(titles, widths, pad, font_size), grid], axis=0)


def legend_strip(
    width: int,
    entries: Sequence[tuple[tuple[int, int, int], str]] = (),
    ddf_max_magnitude: float | None = None,
    font_size: int | None = None,
) -> np.ndarray:
    """A white strip explaining a picture: contour swatches with labels and, optionally, the DDF colour wheel.

    Items are placed left to right and wrap onto a new line when the strip is too narrow:

    - one per entry: a hollow square (a contour) drawn in exactly the entry's colour, then its label in black;
    - with ``ddf_max_magnitude``: the :func:`ddf_color_wheel` rendered with that magnitude, labelled ``up``,
      ``down``, ``left``, ``right`` (the direction of the displacement a hue stands for), and a caption giving the
      magnitude in pixels shown at full brightness. Pass the ``max_magnitude`` given to :func:`ddf_to_rgb` for the
      DDF tiles, so that the wheel and the tiles share one colour scale.

    Text pixels are grey (``r == g == b``), so only the swatches and the wheel are coloured.

    Args:
        width: width of the strip in pixels (that of the grid it goes under).
        entries: ``(rgb colour, label)`` pairs, e.g. ``[(RED, "reference mask"), (GREEN, "predicted mask")]``.
        ddf_max_magnitude: draw the DDF wheel for tiles scaled to this magnitude (pixels, ``> 0``); ``None``: no
            wheel.
        font_size: text height in pixels; default ``default_font_size(width // 5)`` (matches titles over a
            five-column grid).

    Returns:
        ``uint8`` ``(h, width, 3)``; ``h = 0`` when there are neither entries nor a wheel.

    Raises:
        ValueError: for a non-positive width, an entry that is not ``((r, g, b), label)`` with 0-255 integer
            channels, a ``ddf_max_magnitude`` that is not a positive finite number, or a bad font size.

    Example::

        >>> strip = legend_strip(300, [(RED, "reference mask")], ddf_max_magnitude=4.0, font_size=12)
        >>> strip.shape[1], bool(np.all(strip == RED, axis=-1).any())
        (300, True)
    """
    if int(width) != width or width < 1:
        raise ValueError(f"`width` must be a positive integer (pixels), got {width!r}.")
    width = int(width)
    size = _font_size(font_size, default_font_size(width // 5))
    boxes = [_swatch_box(_check_color(c, i), str(label), size) for i, (c, label) in enumerate(_entries(entries))]
    if ddf_max_magnitude is not None:
        _check_magnitude(ddf_max_magnitude, "ddf_max_magnitude")
        boxes += [_wheel_box(float(ddf_max_magnitude), size), _rgb(_text_block(_ddf_caption(ddf_max_magnitude), size))]
    if not boxes:
        return np.full((0, width, 3), 255, dtype=np.uint8)
    return _flow(boxes, width, gap=max(4, size), line_gap=max(2, size // 3), margin=max(2, size // 3))


def add_legend(
    grid: np.ndarray,
    entries: Sequence[tuple[tuple[int, int, int], str]] = (),
    ddf_max_magnitude: float | None = None,
    font_size: int | None = None,
) -> np.ndarray:
    """Put a :func:`legend_strip` below an image.

    Args:
        grid: ``uint8`` ``(H, W, 3)`` image (a :func:`make_grid`, possibly with :func:`add_titles`).
        entries: ``(rgb colour, label)`` pairs for the contour colours used in ``grid``.
        ddf_max_magnitude: the ``max_magnitude`` the DDF tiles of ``grid`` were drawn with by :func:`ddf_to_rgb`
            (pixels); draws the colour wheel with the same scale. ``None``: the grid has no DDF tile, no wheel.
        font_size: text height in pixels; default ``default_font_size(W // 5)``.

    Returns:
        ``uint8`` ``(H + h, W, 3)``: ``grid`` on top of the legend strip (``h`` px, 0 when there is nothing to
        explain); the width is unchanged.

    Raises:
        ValueError: when ``grid`` is not ``uint8`` ``(H, W, 3)``, or see :func:`legend_strip`.

    Example::

        >>> grid = np.zeros((20, 200, 3), dtype=np.uint8)
        >>> out = add_legend(grid, [(GREEN, "predicted mask")], font_size=11)
        >>> out.shape[1], out.shape[0] > 20, bool((out[:20] == grid).all())
        (200, True, True)
    """
    _check_rgb(grid, "grid")
    return np.concatenate([grid, legend_strip(grid.shape[1], entries, ddf_max_magnitude, font_size)], axis=0)


# ---------------------------------------------------------------------------------------------------------------------
# text helpers (Pillow's built-in font; loaded on first use and cached)


@functools.lru_cache(maxsize=16)
def _font(size: int) -> tuple[ImageFont.ImageFont | ImageFont.FreeTypeFont, int]:
    """Pillow's built-in font at ``size`` px, and the integer factor its renderings must be enlarged by.

    Pillow >= 10.1 with FreeType scales its built-in font (``load_default(size=...)``); older Pillow or Pillow
    without FreeType only has a fixed ~11 px bitmap font, which is rendered as is and enlarged by pixel repetition.
    """
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no size argument
        font = ImageFont.load_default()
    if isinstance(font, ImageFont.FreeTypeFont):
        return font, 1
    return font, max(1, round(size / 11))


@functools.lru_cache(maxsize=16)
def _line_height(size: int) -> int:
    """Height in pixels of one rendered text line at ``size`` (after enlarging), including the descenders."""
    font, scale = _font(size)
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return (ascent + descent) * scale
    return (_measure().textbbox((0, 0), "Agjy|", font=font)[3] + 1) * scale


@functools.lru_cache(maxsize=1)
def _measure() -> ImageDraw.ImageDraw:
    """A drawing context on a 1-pixel image, only used to measure text."""
    return ImageDraw.Draw(Image.new("L", (1, 1)))


def _text_width(text: str, size: int) -> int:
    font, scale = _font(size)
    return int(math.ceil(_measure().textlength(text, font=font))) * scale


def _wrap(text: str, size: int, max_width: int) -> list[str]:
    """Greedy word wrap of ``text`` into lines at most ``max_width`` px wide (a longer single word stays whole)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and _text_width(candidate, size) > max_width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _text_block(lines: Sequence[str] | str, size: int, align: str = "left") -> np.ndarray:
    """Black text on white, ``uint8`` ``(n_lines * line_height, max_line_width)``; lines left-aligned or centred."""
    lines = [lines] if isinstance(lines, str) else list(lines)
    font, scale = _font(size)
    lh = _line_height(size) // scale
    widths = [_text_width(line, size) // scale for line in lines]
    img = Image.new("L", (max(max(widths), 1), lh * len(lines)), 255)
    draw = ImageDraw.Draw(img)
    for i, (line, w) in enumerate(zip(lines, widths)):
        draw.text(((img.width - w) // 2 if align == "center" else 0, i * lh), line, fill=0, font=font)
    arr = np.asarray(img)
    if scale > 1:
        arr = np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1)
    return arr


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def _swatch_box(color: tuple[int, int, int], label: str, size: int) -> np.ndarray:
    """A hollow square in exactly ``color`` (a contour sample), followed by ``label``."""
    text = _text_block(label, size)
    side = max(7, round(size * 0.9))
    thick = max(2, side // 6)
    gap = max(3, size // 3)
    h = max(side, text.shape[0])
    box = np.full((h, side + gap + text.shape[1], 3), 255, dtype=np.uint8)
    y0 = (h - side) // 2
    square = box[y0 : y0 + side, :side]
    square[:] = color
    square[thick:-thick, thick:-thick] = 255
    ty = (h - text.shape[0]) // 2
    box[ty : ty + text.shape[0], side + gap :] = text[..., None]
    return box


def _wheel_box(max_magnitude: float, size: int) -> np.ndarray:
    """:func:`ddf_color_wheel` with the directions ``up``/``down``/``left``/``right`` written around it."""
    lh = _line_height(size)
    diameter = max(21, round(2.5 * lh)) | 1  # odd: one pixel row and column through the centre
    wheel = ddf_color_wheel(diameter, max_magnitude)
    up, down, left, right = (_text_block(t, size) for t in ("up", "down", "left", "right"))
    gap = max(2, size // 4)
    h = up.shape[0] + down.shape[0] + diameter + 2 * gap
    w = left.shape[1] + right.shape[1] + diameter + 2 * gap
    box = np.full((h, w, 3), 255, dtype=np.uint8)
    x0, y0 = left.shape[1] + gap, up.shape[0] + gap
    box[y0 : y0 + diameter, x0 : x0 + diameter] = wheel
    cx, cy = x0 + diameter // 2, y0 + diameter // 2
    for text, (ty, tx) in (
        (up, (0, cx - up.shape[1] // 2)),
        (down, (y0 + diameter + gap, cx - down.shape[1] // 2)),
        (left, (cy - left.shape[0] // 2, 0)),
        (right, (cy - right.shape[0] // 2, x0 + diameter + gap)),
    ):
        box[ty : ty + text.shape[0], tx : tx + text.shape[1]] = text[..., None]
    return box


def _ddf_caption(max_magnitude: float) -> list[str]:
    """Caption of the DDF wheel: what hue and brightness mean, and the magnitude shown at full brightness."""
    return [
        "field (DDF) colour:",
        "hue = direction of the displacement,",
        f"brightness = length (full: {max_magnitude:.3g} px)",
    ]


def _flow(boxes: Sequence[np.ndarray], width: int, gap: int, line_gap: int, margin: int) -> np.ndarray:
    """Place RGB boxes left to right on white (``gap`` px apart), wrapping to a new line (``line_gap`` px below).

    Boxes wider than the strip are cut at its right border.
    """
    lines: list[list[np.ndarray]] = [[]]
    x = margin
    for box in boxes:
        if lines[-1] and x + box.shape[1] > width - margin:
            lines.append([])
            x = margin
        lines[-1].append(box)
        x += box.shape[1] + gap
    heights = [max(b.shape[0] for b in line) for line in lines]
    out = np.full((sum(heights) + line_gap * (len(lines) - 1) + 2 * margin, width, 3), 255, dtype=np.uint8)
    y = margin
    for line, lh in zip(lines, heights):
        x = margin
        for box in line:
            w = min(box.shape[1], width - x)
            if w > 0:
                y0 = y + (lh - box.shape[0]) // 2
                out[y0 : y0 + box.shape[0], x : x + w] = box[:, :w]
            x += box.shape[1] + gap
        y += lh + line_gap
    return out


# ---------------------------------------------------------------------------------------------------------------------
# argument checks


def _check_rgb(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"`{name}` must be a uint8 RGB array of shape (H, W, 3), got {got}.")


def _check_magnitude(value: float, name: str = "max_magnitude") -> None:
    try:
        ok = math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be a positive finite number of pixels, got {value!r}.")


def _font_size(value: int | None, default: int) -> int:
    if value is None:
        return default
    if int(value) != value or not 6 <= value <= 512:
        raise ValueError(f"`font_size` must be an integer number of pixels in [6, 512] or None, got {value!r}.")
    return int(value)


def _column_widths(titles: Sequence[str], tile_width: int | Sequence[int], pad: int) -> list[int]:
    if isinstance(titles, str) or len(titles) == 0:
        raise ValueError(f"`titles` must be a non-empty sequence of strings, one per column, got {titles!r}.")
    widths = [tile_width] * len(titles) if np.ndim(tile_width) == 0 else list(tile_width)  # type: ignore[arg-type]
    if len(widths) != len(titles):
        raise ValueError(f"got {len(titles)} titles but {len(widths)} column widths {widths}; give one per column.")
    if any(int(w) != w or w < 1 for w in widths):
        raise ValueError(f"`tile_width` must be positive integers (pixels), got {widths}.")
    if int(pad) != pad or pad < 0:
        raise ValueError(f"`pad` must be a non-negative integer (pixels), got {pad!r}.")
    return [int(w) for w in widths]


def _entries(entries: Sequence[tuple[tuple[int, int, int], str]]) -> list[tuple[tuple[int, int, int], str]]:
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str) or len(entry) != 2 or not isinstance(entry[1], str):
            raise ValueError(f"legend entry {i} must be ((r, g, b), label), got {entry!r}.")
        out.append((entry[0], entry[1]))
    return out


def _check_color(color: tuple[int, int, int], index: int) -> tuple[int, int, int]:
    if np.ndim(color) != 1 or len(color) != 3 or any(int(c) != c or not 0 <= c <= 255 for c in color):
        raise ValueError(f"legend entry {index}: the colour must be (r, g, b) integers in [0, 255], got {color!r}.")
    return tuple(int(c) for c in color)  # type: ignore[return-value]
