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
"""Small PIL/numpy renderers for registration results: contour overlays, DDF colour maps, image grids."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = ["mask_contour", "overlay_contours", "ddf_to_rgb", "to_uint8_gray", "make_grid"]

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
