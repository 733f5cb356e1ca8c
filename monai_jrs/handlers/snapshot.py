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
import os
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import
from PIL import Image

from monai_jrs.utils.conventions import warp
from monai_jrs.utils.enums import JRSKeys
from monai_jrs.visualize.overlay import GREEN, RED, YELLOW, ddf_to_rgb, make_grid, overlay_contours, to_uint8_gray

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

logger = logging.getLogger(__name__)

__all__ = ["RegistrationSnapshotHandler", "render_registration_grid"]


def render_registration_grid(output: dict[str, torch.Tensor], max_rows: int = 4) -> np.ndarray:
    """Render one row per batch item: reference+masks | floating(+mask) | registered+masks | |reg-ref| | DDF.

    Contours: red = reference mask, green = predicted registered mask, yellow = floating mask (ground truth) warped
    onto the reference grid when available.

    Args:
        output: dict with ``reference``, ``floating``, ``registered`` ``(B, 1, H, W)``, ``ddf`` ``(B, 2, H, W)``
            and optionally ``reference_mask``, ``registered_mask``, ``floating_mask``.
        max_rows: at most this many batch items are drawn.

    Returns:
        ``uint8`` RGB image.
    """
    for k in (JRSKeys.REFERENCE, JRSKeys.FLOATING, JRSKeys.REGISTERED, JRSKeys.DDF):
        if k not in output:
            raise ValueError(f"cannot render a registration grid without {k!r}; output has {sorted(output)}.")
    ref, flt, reg, ddf = (output[k].detach().float().cpu() for k in (JRSKeys.REFERENCE, JRSKeys.FLOATING,
                                                                     JRSKeys.REGISTERED, JRSKeys.DDF))
    ref_m = output.get(JRSKeys.REFERENCE_MASK)
    reg_m = output.get(JRSKeys.REGISTERED_MASK)
    flt_m = output.get(JRSKeys.FLOATING_MASK)
    warped_flt_m = warp(flt_m.float().cpu(), ddf, mode="nearest") if flt_m is not None else None
    rows = []
    for b in range(min(max_rows, ref.shape[0])):
        ref_masks = [m[b].cpu() for m in (ref_m,) if m is not None]
        reg_masks = [m[b].cpu() for m in (ref_m, reg_m, warped_flt_m) if m is not None]
        flt_tile = overlay_contours(flt[b], [flt_m[b].cpu()], colors=(YELLOW,)) if flt_m is not None else to_uint8_gray(flt[b])
        rows.append([
            overlay_contours(ref[b], ref_masks, colors=(RED,)),
            flt_tile,
            overlay_contours(reg[b], reg_masks, colors=(RED, GREEN, YELLOW)),
            to_uint8_gray((reg[b] - ref[b]).abs() * 2.0),
            ddf_to_rgb(ddf[b]),
        ])
    return make_grid(rows)


class RegistrationSnapshotHandler:
    """Write ``{output_dir}/{prefix}_epoch{NNNN}.png`` from the engine's last output after each epoch.

    Attach it to the validation evaluator (or the trainer) like any MONAI handler. Columns: reference with its mask
    (red), floating, registered with reference (red) / predicted (green) / warped ground-truth (yellow) masks,
    absolute difference, DDF colour map.

    Args:
        output_dir: folder for the PNG files (created).
        prefix: file-name prefix.
        max_rows: batch items per image.
        epoch_source: engine whose epoch numbers the files (e.g. the trainer for a validation evaluator); default the
            attached engine.
    """

    def __init__(self, output_dir: str, prefix: str = "snapshot", max_rows: int = 4, epoch_source: Engine | None = None):
        self.output_dir = output_dir
        self.prefix = prefix
        self.max_rows = max_rows
        self.epoch_source = epoch_source
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
        Image.fromarray(render_registration_grid(output, self.max_rows)).save(path)
        self.last_path = path
        logger.info("wrote registration snapshot %s", path)
