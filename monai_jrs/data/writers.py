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
"""Writing registration results: the full-resolution output files of one registered pair.

Files written into the pair's output folder (``OUT_DIR/<floating file stem>/``, see :func:`image_stem`):
    - ``registered.nii.gz``: the floating image warped onto the reference grid, reference resolution, ``(rows, cols)``.
    - ``ddf.nii.gz``: ``(2, H, W)`` on the reference grid, **pixels**: ``registered(p) = floating(p + ddf(p))`` where
      ``p`` is a reference pixel ``(row, col)`` and ``p + ddf(p)`` the floating pixel it samples (in the floating
      image's own pixel frame; when both images have the same size this is exactly the
      :mod:`monai_jrs.utils.conventions` DDF). Channel 0 along rows, channel 1 along columns.
    - ``registered_mask.nii.gz``: the lung mask predicted for the registered image (reference grid).
    - ``floating_mask.nii.gz``: the lung mask of the floating image on its own grid (the registered mask carried
      back through the inverse field).
    - ``overlay.png``: reference with the reference-mask (red) and registered-mask (green) contours, and the floating
      image with its mask (green), under column titles and above a legend of the contour colours.
    - ``metrics.json``: timings per stage, Dice(reference mask, registered mask), folding %, spacings, inputs.
    - ``floating_mask_seg.dcm``: DICOM SEG of ``floating_mask`` referencing the floating image, when it is DICOM.

The NIfTI files are written with :func:`monai_jrs.data.io.save_nifti`, so that :func:`monai_jrs.data.io.load_xray`
reads them back as ``(rows, cols)``. Existing files are never replaced unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from monai_jrs._version import __version__
from monai_jrs.data.dicom import write_dicom_seg
from monai_jrs.data.io import NIFTI_EXTENSIONS, PIL_EXTENSIONS, save_nifti
from monai_jrs.metrics import compute_dice_score, folding_percentage
from monai_jrs.visualize.overlay import GREEN, RED, overlay_contours

if TYPE_CHECKING:  # monai_jrs.inferers imports monai_jrs.transforms, whose io transforms import this module
    from monai_jrs.inferers import JRSResult

__all__ = ["OUTPUT_FILES", "save_registration_result", "image_stem"]

#: files written for every floating image (plus ``floating_mask_seg.dcm`` for DICOM inputs).
OUTPUT_FILES = (
    "registered.nii.gz",
    "ddf.nii.gz",
    "floating_mask.nii.gz",
    "registered_mask.nii.gz",
    "overlay.png",
    "metrics.json",
)


def save_registration_result(
    result: JRSResult,
    floating_path: str | os.PathLike,
    folder: str | os.PathLike,
    ref_img: torch.Tensor,
    ref_mask: torch.Tensor,
    ref_meta: dict[str, Any],
    flt_img: torch.Tensor,
    flt_meta: dict[str, Any],
    overwrite: bool = False,
    timings: dict[str, float] | None = None,
    overlay: bool = True,
) -> dict[str, Any]:
    """Write every output file of one registered pair (see the module docstring) and return ``metrics.json``.

    Shared by :class:`~monai_jrs.apps.JRSRegistrar` (command line, Python API) and the bundle's ``inference.json``
    (:class:`~monai_jrs.transforms.SaveRegistrationOutputsd`), so both write the same files.

    Args:
        result: the full-resolution :class:`~monai_jrs.inferers.JRSResult` of :class:`~monai_jrs.inferers.JRSInferer`.
        floating_path: the floating input file (named in ``metrics.json``; the DICOM SEG references it).
        folder: output folder of this floating image (created).
        ref_img: ``(1, H, W)`` reference image; ``ref_mask``: its ``(1, H, W)`` lung mask.
        ref_meta: loader metadata of the reference (``spacing``, ``filename``); ``flt_meta`` likewise (``format``).
        flt_img: ``(1, Hf, Wf)`` floating image on its own grid.
        overwrite: replace existing files.
        timings: stage timings (default: ``result.timings``); completed with ``write_s`` and stored in
            ``metrics.json``.
        overlay: write ``overlay.png`` (a preview with contours; skip it for speed).

    Returns:
        the ``metrics.json`` content.
    """
    timings = dict(result.timings if timings is None else timings)
    path, folder = Path(floating_path), Path(folder)
    ddf, registered = result.ddf, result.registered
    reg_mask, flt_mask = result.registered_mask[0], result.floating_mask[0]
    ref_shape, flt_shape = tuple(result.reference_info.original_shape), tuple(result.floating_info.original_shape)
    t = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    ref_sp, flt_sp = ref_meta.get("spacing"), flt_meta.get("spacing")
    save_nifti(registered[0, 0], folder / "registered.nii.gz", spacing=ref_sp, overwrite=overwrite)
    save_nifti(ddf[0], folder / "ddf.nii.gz", spacing=ref_sp, overwrite=overwrite)
    save_nifti(reg_mask[0].to(torch.uint8), folder / "registered_mask.nii.gz", spacing=ref_sp, overwrite=overwrite)
    save_nifti(flt_mask[0].to(torch.uint8), folder / "floating_mask.nii.gz", spacing=flt_sp, overwrite=overwrite)
    if overlay:  # a preview: about a quarter of the writing time at 512 px
        _write_overlay(folder / "overlay.png", ref_img, ref_mask, reg_mask, flt_img, flt_mask, overwrite)
    seg_path = None
    if flt_meta.get("format") == "dicom":
        seg_path = write_dicom_seg(flt_mask[0].to(torch.uint8).numpy(), path, folder / "floating_mask_seg.dcm",
                                   overwrite=overwrite)
    timings["write_s"] = time.perf_counter() - t
    metrics = {
        "monai_jrs_version": __version__,
        "reference": str(ref_meta.get("filename")),
        "floating": str(path),
        "output_dir": str(folder),
        "network_size": list(result.reference_info.network_shape),
        "reference_shape": list(ref_shape),
        "floating_shape": list(flt_shape),
        "spacing_reference_mm": None if ref_sp is None else list(ref_sp),
        "spacing_floating_mm": None if flt_sp is None else list(flt_sp),
        "dice_reference_vs_registered_mask": float(compute_dice_score(reg_mask[None], ref_mask[None])[0]),
        "dice_reference_vs_floating_mask": _dice_before(ref_mask, flt_mask),
        "folding_percent": float(folding_percentage(ddf)[0]),
        "max_displacement_px": float(ddf.pow(2).sum(dim=1).max().sqrt()),  # vector_norm is 50x slower here
        "refined": bool(result.refined),
        "quality": dict(result.quality),
        "dicom_seg": None if seg_path is None else str(seg_path),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
    metrics["timings_s"]["total_s"] = round(sum(v for k, v in timings.items() if k != "load_reference_s"), 4)
    path_json = folder / "metrics.json"
    if path_json.exists() and not overwrite:
        raise FileExistsError(f"{path_json} exists; pass overwrite=True to replace it.")
    path_json.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def image_stem(path: str | os.PathLike) -> str:
    """The file name of an input image without its image extension (``.nii.gz``, ``.png``, ``.dcm``, ...): the name
    of its output folder (``OUT_DIR/<floating file stem>/``)."""
    name = Path(path).name
    for ext in (*NIFTI_EXTENSIONS[::-1], *PIL_EXTENSIONS, ".npy", ".dcm", ".dicom"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _dice_before(ref_mask: torch.Tensor, flt_mask: torch.Tensor) -> float | None:
    if tuple(ref_mask.shape) != tuple(flt_mask.shape):
        return None  # different grids: no pixel-wise comparison before registration
    return float(compute_dice_score(flt_mask[None], ref_mask[None])[0])


def _write_overlay(path, ref_img, ref_mask, reg_mask, flt_img, flt_mask, overwrite) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    from monai_jrs.visualize.overlay import default_font_size, legend_strip, title_strip

    left = overlay_contours(ref_img[0], [ref_mask[0], reg_mask[0]], colors=(RED, GREEN), thickness=2)
    right = overlay_contours(flt_img[0], [flt_mask[0]], colors=(GREEN,), thickness=2)
    h = max(left.shape[0], right.shape[0])
    tiles = [_pad_to(left, h, left.shape[1]), _pad_to(right, h, right.shape[1])]
    widths, gap = [tiles[0].shape[1], tiles[1].shape[1]], 4
    # titles and legend scale with the image (full resolution, up to 2048 px): legible when the PNG is viewed whole
    size = default_font_size(max(widths))
    titles = title_strip(["reference", "floating"], widths, pad=gap, font_size=size)[:, gap:-gap]  # no outer border
    legend = legend_strip(
        sum(widths) + gap,
        [(RED, "reference mask"), (GREEN, "predicted lung mask (left: registered onto the reference; right: floating)")],
        font_size=size,
    )
    canvas = np.full((titles.shape[0] + h + legend.shape[0], sum(widths) + gap, 3), 255, dtype=np.uint8)
    canvas[: titles.shape[0]] = titles
    canvas[titles.shape[0] : titles.shape[0] + h, : widths[0]] = tiles[0]
    canvas[titles.shape[0] : titles.shape[0] + h, widths[0] + gap :] = tiles[1]
    canvas[titles.shape[0] + h :] = legend
    Image.fromarray(canvas).save(path, compress_level=1)  # fast: the overlay is a preview


def _pad_to(tile: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.full((h, w, 3), 255, dtype=np.uint8)
    out[: tile.shape[0], : tile.shape[1]] = tile
    return out
