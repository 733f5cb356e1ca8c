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
"""Ignite handler that writes a PNG grid of registration results so a person can watch training progress."""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import
from PIL import Image

from monai_jrs.utils.conventions import warp
from monai_jrs.utils.enums import JRSKeys
from monai_jrs.visualize.overlay import (
    GREEN,
    RED,
    YELLOW,
    add_legend,
    add_titles,
    ddf_to_rgb,
    default_font_size,
    make_grid,
    overlay_contours,
    to_uint8_gray,
)

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

logger = logging.getLogger(__name__)

__all__ = ["RegistrationSnapshotHandler", "render_registration_grid", "GRID_TITLES"]


#: column titles of :func:`render_registration_grid`.
GRID_TITLES: tuple[str, ...] = ("reference", "floating", "registered", "difference |reg - ref|", "field (DDF)")


def render_registration_grid(
    output: dict[str, torch.Tensor],
    max_rows: int = 4,
    *,
    annotate: bool = True,
    ddf_max_magnitude: float | None = None,
    font_size: int | None = None,
) -> np.ndarray:
    """Render one row per batch item: reference+masks | floating(+mask) | registered+masks | |reg-ref| | DDF.

    Contours: red = reference mask (on the reference and registered tiles), green = predicted registered mask,
    yellow = ground-truth floating mask (on the floating tile, and warped onto the reference grid by the DDF on the
    registered tile), each when available. The difference tile shows ``2 * |registered - reference|`` (clipped to
    [0, 1]). The DDF tiles (:func:`~monai_jrs.visualize.overlay.ddf_to_rgb`: hue = direction, brightness = length)
    share one colour scale: full brightness at ``ddf_max_magnitude`` px, by default the largest ``|ddf|`` among
    the drawn rows.

    With ``annotate`` (the default) the grid gets :data:`GRID_TITLES` above its columns and a legend below: the
    contour colours present and the DDF colour wheel drawn at the same scale as the DDF tiles, captioned with that
    magnitude in pixels.

    Args:
        output: dict with ``reference``, ``floating``, ``registered`` ``(B, 1, H, W)``, ``ddf`` ``(B, 2, H, W)``
            and optionally ``reference_mask``, ``registered_mask``, ``floating_mask``.
        max_rows: at most this many batch items are drawn.
        annotate: add the column titles and the legend; ``False`` returns the bare :func:`make_grid`.
        ddf_max_magnitude: displacement in pixels shown at full brightness in the DDF tiles (and the wheel); fix it
            to compare snapshots of different epochs. Default: the largest ``|ddf|`` of the drawn rows.
        font_size: text height in pixels of titles and legend; default
            :func:`~monai_jrs.visualize.overlay.default_font_size` of the tile width.

    Returns:
        ``uint8`` RGB image: ``(rows * (H + 2) + 2, 5 * (W + 2) + 2, 3)`` without ``annotate``; with it, a title
        strip above and a legend strip below are added (same width).

    Raises:
        ValueError: when a required key is missing or ``ddf_max_magnitude`` is not a positive finite number.
    """
    for k in (JRSKeys.REFERENCE, JRSKeys.FLOATING, JRSKeys.REGISTERED, JRSKeys.DDF):
        if k not in output:
            raise ValueError(f"cannot render a registration grid without {k!r}; output has {sorted(output)}.")
    if ddf_max_magnitude is not None and not 0 < ddf_max_magnitude < math.inf:
        raise ValueError(
            f"`ddf_max_magnitude` must be a positive finite number of pixels or None, got {ddf_max_magnitude!r}."
        )
    ref, flt, reg, ddf = (output[k].detach().float().cpu() for k in (JRSKeys.REFERENCE, JRSKeys.FLOATING,
                                                                     JRSKeys.REGISTERED, JRSKeys.DDF))
    ref_m = output.get(JRSKeys.REFERENCE_MASK)
    reg_m = output.get(JRSKeys.REGISTERED_MASK)
    flt_m = output.get(JRSKeys.FLOATING_MASK)
    warped_flt_m = warp(flt_m.float().cpu(), ddf, mode="nearest") if flt_m is not None else None
    n_rows = min(max_rows, ref.shape[0])
    vmax = float(ddf_max_magnitude) if ddf_max_magnitude is not None else _max_magnitude(ddf[:n_rows])
    rows = []
    for b in range(n_rows):
        ref_masks = [m[b].cpu() for m in (ref_m,) if m is not None]
        reg_masks = [m[b].cpu() for m in (ref_m, reg_m, warped_flt_m) if m is not None]
        reg_colors = [c for m, c in ((ref_m, RED), (reg_m, GREEN), (warped_flt_m, YELLOW)) if m is not None]
        flt_tile = overlay_contours(flt[b], [flt_m[b].cpu()], colors=(YELLOW,)) if flt_m is not None else to_uint8_gray(flt[b])
        rows.append([
            overlay_contours(ref[b], ref_masks, colors=(RED,)),
            flt_tile,
            overlay_contours(reg[b], reg_masks, colors=reg_colors),
            to_uint8_gray((reg[b] - ref[b]).abs() * 2.0),
            ddf_to_rgb(ddf[b], max_magnitude=vmax),
        ])
    grid = make_grid(rows)
    if not annotate:
        return grid
    tile_w = rows[0][0].shape[1]
    size = font_size if font_size is not None else default_font_size(tile_w)
    entries = [(c, label) for m, c, label in (
        (ref_m, RED, "reference mask"),
        (reg_m, GREEN, "predicted registered mask"),
        (flt_m, YELLOW, "ground-truth floating mask (warped by the DDF on 'registered')"),
    ) if m is not None]
    grid = add_titles(grid, GRID_TITLES, tile_w, pad=2, font_size=size)
    return add_legend(grid, entries, ddf_max_magnitude=vmax, font_size=size)


def _max_magnitude(ddf: torch.Tensor) -> float:
    """Largest finite ``|ddf|`` of a ``(B, 2, H, W)`` field in pixels (at least 1e-6, so it can scale colours)."""
    d = ddf.numpy()
    mag = np.hypot(d[:, 0], d[:, 1])
    mag = mag[np.isfinite(mag)]
    return max(float(mag.max()), 1e-6) if mag.size else 1e-6


class RegistrationSnapshotHandler:
    """Write ``{output_dir}/{prefix}_epoch{NNNN}.png`` from the engine's last output after each epoch.

    Attach it to the validation evaluator (or the trainer) like any MONAI handler. The picture is
    :func:`render_registration_grid`: one row per batch item, columns titled "reference" (with its mask, red),
    "floating" (with its ground-truth mask, yellow), "registered" (reference mask red, predicted registered mask
    green, ground-truth floating mask warped yellow), "difference |reg - ref|" and "field (DDF)" (hue = direction,
    brightness = length), and a legend below with the contour colours and the DDF colour wheel, whose caption gives
    the displacement in pixels shown at full brightness.

    Args:
        output_dir: folder for the PNG files (created).
        prefix: file-name prefix.
        max_rows: batch items per image.
        epoch_source: engine whose epoch numbers the files (e.g. the trainer for a validation evaluator); default the
            attached engine.
        annotate: draw the column titles and the legend (``False``: the bare grid of tiles).
        ddf_max_magnitude: displacement in pixels shown at full brightness in the DDF tiles; a fixed value makes the
            colours of different epochs comparable. Default: the largest ``|ddf|`` of each picture.
    """

    def __init__(
        self,
        output_dir: str,
        prefix: str = "snapshot",
        max_rows: int = 4,
        epoch_source: Engine | None = None,
        annotate: bool = True,
        ddf_max_magnitude: float | None = None,
    ):
        self.output_dir = output_dir
        self.prefix = prefix
        self.max_rows = max_rows
        self.epoch_source = epoch_source
        self.annotate = annotate
        self.ddf_max_magnitude = ddf_max_magnitude
        self.last_path: str | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, list):  # decollated: re-batch
            output = {k: torch.stack([o[k] for o in output]) for k in output[0] if isinstance(output[0][k], torch.Tensor)}
        if not isinstance(output, dict):
            logger.warning("RegistrationSnapshotHandler: engine output is %s, nothing written.", type(output).__name__)
            return
        epoch = (self.epoch_source or engine).state.epoch
        os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, f"{self.prefix}_epoch{epoch:04d}.png")
        grid = render_registration_grid(
            output, self.max_rows, annotate=self.annotate, ddf_max_magnitude=self.ddf_max_magnitude
        )
        Image.fromarray(grid).save(path)
        self.last_path = path
        logger.info("wrote registration snapshot %s", path)
