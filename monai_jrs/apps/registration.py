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
"""Register follow-up chest X-rays onto an annotated reference and segment their lungs, from files to files.

:class:`JRSRegistrar` loads a bundle (configs + ``models/model.pt``) once; :meth:`JRSRegistrar.register` reads a
reference radiograph, its lung mask and any number of floating (follow-up) radiographs (DICOM file or folder,
PNG/JPEG/TIFF, NIfTI, NumPy), runs the generator on the network grid and maps every result back to the full
resolution of the input images. :func:`register` is the one-call form, used by the ``monai-jrs register`` command.

Convention of the outputs (``OUT_DIR/<floating file stem>/``):
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

Nothing is ever written inside an input folder (a DICOM folder given as input, or the folder holding an input file
itself; a new sub-folder next to the input files is fine), and existing outputs are never replaced unless ``overwrite``.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import deprecated
from PIL import Image

from monai_jrs._version import __version__
from monai_jrs.data.dicom import list_dicom_images, write_dicom_seg
from monai_jrs.data.io import (
    NIFTI_EXTENSIONS,
    PIL_EXTENSIONS,
    from_collatable_meta,
    load_mask,
    load_xray,
    save_nifti,
)
from monai_jrs.data.preprocessing import GridInfo, keep_largest_components, restore_to_original
from monai_jrs.inferers import JRSInferer, JRSResult, NetworkGridImage, carry_mask_back, stacked_to_dict
from monai_jrs.metrics import compute_dice_score, folding_percentage
from monai_jrs.utils.enums import JRSKeys
from monai_jrs.visualize.overlay import GREEN, RED, overlay_contours

__all__ = [
    "JRSRegistrar",
    "register",
    "save_registration_result",
    "write_registration_outputs",
    "SaveRegistrationOutputsd",
    "followup_items",
    "floating_mask_from_output",
    "default_bundle_dir",
    "expand_inputs",
    "OUTPUT_FILES",
]

logger = logging.getLogger(__name__)

#: files written for every floating image (plus ``floating_mask_seg.dcm`` for DICOM inputs).
OUTPUT_FILES = (
    "registered.nii.gz",
    "ddf.nii.gz",
    "floating_mask.nii.gz",
    "registered_mask.nii.gz",
    "overlay.png",
    "metrics.json",
)


def default_bundle_dir() -> Path:
    """The MONAI bundle shipped with monai_jrs (configs, ``models/model.pt``, docs), as a folder.

    Found with :mod:`importlib.resources` as package data ``monai_jrs/bundle``: inside an installed wheel it is a
    folder of the package; in a source checkout (plain or editable install) it is a link to ``bundle/`` at the
    repository root, the one copy of the bundle.

    Raises:
        FileNotFoundError: the installation lacks the bundle (e.g. a wheel built without its package data).
    """
    root = Path(str(importlib.resources.files("monai_jrs").joinpath("bundle")))
    for rel in ("configs/inference.json", "models/model.pt"):
        if not (root / rel).is_file():
            raise FileNotFoundError(
                f"the bundle shipped with monai_jrs must hold {rel} under {root}, but it does not: the installation "
                "is incomplete (reinstall monai_jrs) or pass a bundle folder explicitly (--bundle DIR)."
            )
    return root


def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Floating inputs as files: a DICOM folder becomes its images (one per file, sorted); files stay.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a folder holds no DICOM image.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"floating input {p} does not exist.")
        if p.is_dir():
            files = list_dicom_images(p)
            if not files:
                raise ValueError(f"floating input folder {p} holds no DICOM image.")
            out.extend(files)
        else:
            out.append(p)
    return out


class JRSRegistrar:
    """A loaded JRS generator that registers full-resolution radiographs.

    Args:
        bundle_dir: bundle folder (``configs/inference.json`` + ``models/model.pt``); default: the shipped bundle.
        device: ``"cpu"``, ``"cuda"`` or a :class:`torch.device`.
        size: network grid size (default: the bundle's ``image_size``).
        config_overrides: overrides of ``configs/inference.json`` ids (e.g. ``{"preset": "paper"}`` for the paper
            preset).
        refine: refine each field by instance optimisation on the network grid
            (:class:`~monai_jrs.networks.blocks.InstanceOptimization`): ``True`` for its defaults, or an instance.
            About 0.8 s more per pair on 2 CPU cores; in ``docs/evaluation.md`` it brings the lung TRE from 1.6 to
            0.3 px on follow-ups. The registered mask is then the reference mask, and the floating mask is the
            reference mask carried back through the refined field (the segmentation head saw the unrefined image).

    Raises:
        FileNotFoundError: the bundle has no ``configs/inference.json`` or ``models/model.pt``.
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        size: int | None = None,
        config_overrides: dict[str, Any] | None = None,
        refine: bool | Callable[..., torch.Tensor] = False,
    ) -> None:
        from monai.bundle import ConfigParser

        from monai_jrs.networks.blocks import InstanceOptimization

        root = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
        config, weights = root / "configs" / "inference.json", root / "models" / "model.pt"
        for f in (config, weights):
            if not f.is_file():
                raise FileNotFoundError(f"bundle {root} has no {f.relative_to(root)}; expected a monai_jrs bundle.")
        parser = ConfigParser()
        parser.read_config(str(config))
        for k, v in (config_overrides or {}).items():
            parser[k] = v
        self.size = int(size if size is not None else parser["image_size"])
        if self.size < 32:
            raise ValueError(f"`size` must be >= 32 pixels, got {self.size}.")
        self.device = torch.device(device)
        net = parser.get_parsed_content("network_def")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        self.network = net.to(self.device).eval()
        self.bundle_dir = root
        self.refine = InstanceOptimization() if refine is True else (refine or None)
        #: the one pipeline (network grid, network, refinement, exact mapping back) that every entry point uses.
        self.inferer = JRSInferer(self.size, refine=self.refine, device=self.device)

    @torch.no_grad()
    def register(
        self,
        reference: str | os.PathLike,
        reference_mask: str | os.PathLike,
        floating: Sequence[str | os.PathLike],
        output_dir: str | os.PathLike,
        overwrite: bool = False,
        progress: bool = True,
    ) -> list[dict[str, Any]]:
        """Register every floating image onto the reference; write the outputs (see the module docstring).

        Args:
            reference: reference radiograph (file or a folder with one DICOM image).
            reference_mask: its lung mask (PNG/NIfTI/NumPy/DICOM SEG) on the reference grid.
            floating: follow-up radiographs: files and/or DICOM folders (every image in a folder is one follow-up).
            output_dir: output root; ``<output_dir>/<floating stem>/`` per floating image.
            overwrite: replace existing output files.
            progress: show a progress bar over the floating images.

        Returns:
            one ``metrics.json`` dict per floating image (with ``output_dir``).

        Raises:
            FileNotFoundError, ValueError: unreadable inputs (the message names the file).
            FileExistsError: an output exists and ``overwrite`` is False (checked before anything is written).
        """
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        ref_img, ref_meta = load_xray(reference)
        ref_mask, _ = load_mask(reference_mask, reference_meta=ref_meta)
        flt_paths = expand_inputs(floating)
        out_root = Path(output_dir).absolute()
        given = [Path(reference), Path(reference_mask), *map(Path, floating)]
        for src in (p.absolute() for p in given):
            # never inside an input folder (a DICOM folder), never the very folder that holds an input file
            if (src.is_dir() and (out_root == src or src in out_root.parents)) or (src.is_file() and out_root == src.parent):
                raise ValueError(f"output folder {out_root} lies inside the input folder {src if src.is_dir() else src.parent}; "
                                 "choose another.")
        folders = [out_root / _stem(p) for p in flt_paths]
        if len(set(folders)) != len(folders):
            raise ValueError(f"two floating inputs share a file stem; outputs would collide: {[str(p) for p in flt_paths]}.")
        if not overwrite:
            existing = [str(f / n) for f in folders for n in OUTPUT_FILES if (f / n).exists()]
            if existing:
                raise FileExistsError(f"outputs exist (pass overwrite=True / --overwrite to replace): {existing[:3]}.")
        reference_net = self.inferer.prepare_reference(ref_img, ref_mask, spacing=ref_meta.get("spacing"))
        load_ref_s = time.perf_counter() - t0
        results = []
        for path, folder in tqdm(list(zip(flt_paths, folders)), desc="registering", unit="image", disable=not progress):
            results.append(self._one(path, folder, ref_img, ref_mask, ref_meta, reference_net, overwrite, load_ref_s))
        return results

    def _one(
        self,
        path: Path,
        folder: Path,
        ref_img: torch.Tensor,
        ref_mask: torch.Tensor,
        ref_meta: dict[str, Any],
        reference_net: tuple[NetworkGridImage, NetworkGridImage],
        overwrite: bool,
        load_ref_s: float,
    ) -> dict[str, Any]:
        t = time.perf_counter()
        flt_img, flt_meta = load_xray(path)
        load_floating_s = time.perf_counter() - t
        result = self.inferer(*reference_net, flt_img, self.network, floating_spacing=flt_meta.get("spacing"))
        timings = {"load_reference_s": load_ref_s, "load_floating_s": load_floating_s, **result.timings}
        metrics = save_registration_result(
            result, path, folder, ref_img, ref_mask, ref_meta, flt_img, flt_meta, overwrite, timings
        )
        logger.info("registered %s -> %s (Dice %.3f)", path, folder, metrics["dice_reference_vs_registered_mask"])
        return metrics


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
) -> dict[str, Any]:
    """Write every output file of one registered pair (see the module docstring) and return ``metrics.json``.

    Shared by :class:`JRSRegistrar` (command line, Python API) and the bundle's ``inference.json``
    (:class:`SaveRegistrationOutputsd`), so both write the same files.

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
        "max_displacement_px": float(ddf.norm(dim=1).max()),
        "dicom_seg": None if seg_path is None else str(seg_path),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
    metrics["timings_s"]["total_s"] = round(sum(v for k, v in timings.items() if k != "load_reference_s"), 4)
    path_json = folder / "metrics.json"
    if path_json.exists() and not overwrite:
        raise FileExistsError(f"{path_json} exists; pass overwrite=True to replace it.")
    path_json.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


@deprecated(since="0.1.0", removed="0.2.0", version_val=__version__,
            msg_suffix="use monai_jrs.inferers.JRSInferer(...).to_full_resolution(...).floating_mask instead.")
def floating_mask_from_output(out_net: torch.Tensor, flt_info: GridInfo | dict[str, Any]) -> torch.Tensor:
    """Deprecated: the floating image's lung mask from a stacked ``(1, 5, h, w)`` output; ``(1, Hf, Wf)`` {0, 1}."""
    outputs = stacked_to_dict(out_net)
    mask_net = carry_mask_back(outputs[JRSKeys.REGISTERED_MASK_PROB.value], outputs[JRSKeys.DDF.value])
    mask = restore_to_original(mask_net, GridInfo.from_dict(flt_info))[0] > 0.5
    return torch.from_numpy(keep_largest_components(mask[0].numpy(), 2).astype(np.float32))[None]


@deprecated(since="0.1.0", removed="0.2.0", version_val=__version__,
            msg_suffix="use monai_jrs.inferers.JRSInferer(...).to_full_resolution(...) and save_registration_result.")
def write_registration_outputs(
    out_net: torch.Tensor,
    floating_path: str | os.PathLike,
    folder: str | os.PathLike,
    ref_img: torch.Tensor,
    ref_mask: torch.Tensor,
    ref_meta: dict[str, Any],
    ref_info: GridInfo | dict[str, Any],
    flt_img: torch.Tensor,
    flt_meta: dict[str, Any],
    flt_info: GridInfo | dict[str, Any],
    overwrite: bool = False,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Deprecated: :func:`save_registration_result` of a stacked ``(1, 5, h, w)`` network output."""
    ref_info = GridInfo.from_dict(ref_info)
    result = JRSInferer(ref_info.network_shape).to_full_resolution(
        stacked_to_dict(out_net), flt_img, ref_info, flt_info, timings=dict(timings or {})
    )
    return save_registration_result(result, floating_path, folder, ref_img, ref_mask, ref_meta, flt_img, flt_meta,
                                    overwrite)


def register(
    reference: str | os.PathLike,
    reference_mask: str | os.PathLike,
    floating: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    bundle_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    refine: bool = False,
) -> list[dict[str, Any]]:
    """One-call registration of follow-ups onto an annotated reference (see :class:`JRSRegistrar`).

    Example::

        from monai_jrs.apps import register
        results = register("ref.dcm", "ref_lungs.png", ["followups/"], "out/")
        print(results[0]["dice_reference_vs_registered_mask"])
    """
    registrar = JRSRegistrar(bundle_dir=bundle_dir, device=device, size=size, refine=refine)
    return registrar.register(reference, reference_mask, floating, output_dir, overwrite=overwrite, progress=progress)


def followup_items(
    reference: str | os.PathLike, reference_mask: str | os.PathLike, floating: Sequence[str | os.PathLike]
) -> list[dict[str, str]]:
    """Datalist pair items for the bundle's ``inference.json``: one per floating image, DICOM folders expanded.

    Example (bundle override): ``--data "$monai_jrs.apps.registration.followup_items('ref.dcm', 'ref_lungs.png',
    ['followups/'])"``.
    """
    return [
        {"reference": str(reference), "reference_mask": str(reference_mask), "floating": str(p)}
        for p in expand_inputs(floating)
    ]


class SaveRegistrationOutputsd(MapTransform):
    """Bundle post-processing: write the same full-resolution files as ``monai-jrs register`` for one pair.

    Expects a decollated item holding the network output under ``keys`` (``(5, h, w)``,
    :class:`~monai_jrs.networks.nets.JRSStackedGenerator`), the network-grid MetaTensors of the reference and floating
    images (with ``meta["grid_info"]`` from :class:`~monai_jrs.data.preprocessing.ResizeToNetworkd`) and copies of
    the full-resolution reference, reference mask and floating image under the same keys plus ``full_postfix``
    (``CopyItemsd`` before resizing). Calls :func:`write_registration_outputs` into ``output_dir/<floating stem>/``
    and stores the ``metrics.json`` content under ``f"{key}_metrics"``.

    Args:
        keys: the prediction key.
        output_dir: output root.
        reference_key, reference_mask_key, floating_key: keys of the network-grid images.
        full_postfix: postfix of the full-resolution copies.
        overwrite: replace existing outputs.
        allow_missing_keys: skip items without ``keys``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        reference_key: str = "reference",
        reference_mask_key: str = "reference_mask",
        floating_key: str = "floating",
        full_postfix: str = "_full",
        overwrite: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.reference_key, self.reference_mask_key, self.floating_key = reference_key, reference_mask_key, floating_key
        self.full_postfix = full_postfix
        self.overwrite = bool(overwrite)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            pred = pred.as_tensor() if isinstance(pred, MetaTensor) else torch.as_tensor(pred)
            if pred.ndim != 3 or pred.shape[0] != 5:
                raise ValueError(f"`{key}` must have shape (5, h, w) (JRSStackedGenerator output), got {tuple(pred.shape)}.")
            ref_full = d[self.reference_key + self.full_postfix]
            mask_full = d[self.reference_mask_key + self.full_postfix]
            flt_full = d[self.floating_key + self.full_postfix]
            ref_meta, flt_meta = from_collatable_meta(ref_full.meta), from_collatable_meta(flt_full.meta)
            flt_path = Path(str(flt_meta.get("filename_or_obj") or flt_meta.get("filename")))
            ref_info = GridInfo.from_dict(d[self.reference_key].meta["grid_info"])
            flt_img = flt_full.as_tensor().float()
            result = JRSInferer(ref_info.network_shape).to_full_resolution(
                stacked_to_dict(pred[None].float()), flt_img, ref_info, d[self.floating_key].meta["grid_info"]
            )
            metrics = save_registration_result(
                result, flt_path, self.output_dir / _stem(flt_path), ref_full.as_tensor().float(),
                mask_full.as_tensor().float(), ref_meta, flt_img, flt_meta, overwrite=self.overwrite,
            )
            d[f"{key}_metrics"] = metrics
        return d


def _stem(path: Path) -> str:
    name = path.name
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
