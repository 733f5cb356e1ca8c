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
    - ``subtraction.nii.gz``: float ``(rows, cols)`` temporal subtraction on the reference grid (same geometry as
      ``registered.nii.gz``): the registered image with its intensities matched to the reference's inside the
      reference lungs, minus the reference (:func:`monai_jrs.transforms.temporal_subtraction`). Positive = the
      follow-up is denser; 0 outside the follow-up's field of view (reference pixels ``p`` whose ``p + ddf(p)`` lies
      outside the floating image, :func:`monai_jrs.transforms.field_of_view_mask`).
    - ``subtraction.png``: its 8-bit display (:func:`monai_jrs.transforms.subtraction_to_display`): no change is mid
      grey (128), a denser follow-up is brighter; the window (``|difference|`` shown at white/black) is the 99th
      percentile of ``|difference|`` in the reference lungs.
    - ``metrics.json``: timings per stage, Dice(reference mask, registered mask), folding %, spacings, inputs, and
      under ``subtraction`` what was matched (method, fitted line, region), the display window and the percentage of
      the reference grid inside the follow-up's field of view.
    - ``floating_mask_seg.dcm``: DICOM SEG of ``floating_mask`` referencing the floating image, when it is DICOM.

For a PACS, :func:`write_secondary_capture` stores such images (a :func:`contour_overlay`, a subtraction display) as
DICOM Secondary Capture in the study of their source images.

The NIfTI files are written with :func:`monai_jrs.data.io.save_nifti`, so that :func:`monai_jrs.data.io.load_xray`
reads them back as ``(rows, cols)``. Existing files are never replaced unless ``overwrite``.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import math
import os
import time
from collections.abc import Sequence
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
    from pydicom.dataset import Dataset

    from monai_jrs.inferers import JRSResult

logger = logging.getLogger(__name__)

__all__ = [
    "OUTPUT_FILES",
    "SC_COPIED_ATTRIBUTES",
    "save_registration_result",
    "image_stem",
    "contour_overlay",
    "write_secondary_capture",
]

#: files written for every floating image (plus ``floating_mask_seg.dcm`` for DICOM inputs).
OUTPUT_FILES = (
    "registered.nii.gz",
    "ddf.nii.gz",
    "floating_mask.nii.gz",
    "registered_mask.nii.gz",
    "overlay.png",
    "subtraction.nii.gz",
    "subtraction.png",
    "metrics.json",
)

#: patient and study attributes a Secondary Capture copies from its first source image (when present there).
SC_COPIED_ATTRIBUTES = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "BodyPartExamined",
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
    subtraction: bool = True,
    dicom_seg: dict[str, Any] | None = None,
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
        subtraction: write ``subtraction.nii.gz`` and ``subtraction.png`` (``metrics.json["subtraction"]`` is None
            without them).
        dicom_seg: keyword arguments of :func:`~monai_jrs.data.dicom.write_dicom_seg` for ``floating_mask_seg.dcm``
            (``series_instance_uid``, ``sop_instance_uid``, ``content_datetime``: deterministic SEGs of a batch run).

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
    sub_info = None
    if subtraction:
        sub_info = _write_subtraction(folder, result, ref_img, ref_mask, flt_shape, ref_sp, overwrite)
    seg_path = None
    if flt_meta.get("format") == "dicom":
        seg_path = write_dicom_seg(flt_mask[0].to(torch.uint8).numpy(), path, folder / "floating_mask_seg.dcm",
                                   overwrite=overwrite, **(dicom_seg or {}))
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
        "subtraction": sub_info,
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


def contour_overlay(
    image: torch.Tensor | np.ndarray,
    masks: Sequence[tuple[torch.Tensor | np.ndarray, tuple[int, int, int]]],
    thickness: int = 2,
) -> np.ndarray:
    """A grey image with the contours of masks drawn in their colours (the tiles of ``overlay.png``).

    The contour of a mask is the mask minus its erosion by a ``(2 * thickness + 1)`` square
    (:func:`monai_jrs.visualize.overlay.mask_contour`), so it lies inside the mask; later masks are drawn over
    earlier ones.

    Args:
        image: ``(H, W)`` (or ``(1, H, W)``) float image in [0, 1] (values outside are clipped), shown in grey.
        masks: ``(mask, (r, g, b))`` pairs: an ``(H, W)`` (or ``(1, H, W)``) {0, 1} or bool mask and its colour,
            integers in [0, 255].
        thickness: contour width in pixels, 1 or 2 (or more).

    Returns:
        ``uint8`` ``(H, W, 3)`` RGB, e.g. for :func:`write_secondary_capture` with ``photometric="RGB"``.

    Raises:
        ValueError: for a mask of another size than the image, a bad colour or thickness.

    Example::

        >>> mask = np.zeros((6, 6), dtype=bool); mask[1:5, 1:5] = True
        >>> rgb = contour_overlay(np.full((6, 6), 0.5), [(mask, (255, 0, 0))], thickness=1)
        >>> rgb.shape, rgb[1, 1].tolist(), rgb[2, 2].tolist(), rgb[0, 0].tolist()
        ((6, 6, 3), [255, 0, 0], [128, 128, 128], [128, 128, 128])
    """
    if isinstance(thickness, bool) or int(thickness) != thickness or thickness < 1:
        raise ValueError(f"`thickness` must be an integer number of pixels >= 1, got {thickness!r}.")
    shape = tuple(np.shape(image)[-2:])
    pairs = list(masks)
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"`masks[{i}]` must be a (mask, (r, g, b)) pair, got {type(pair).__name__}.")
        mask, color = pair
        if tuple(np.shape(mask)[-2:]) != shape or int(np.prod(np.shape(mask))) != int(np.prod(shape)):
            raise ValueError(
                f"`masks[{i}]` must have the image's shape {shape} (or (1, H, W)), got {tuple(np.shape(mask))}."
            )
        if np.ndim(color) != 1 or len(color) != 3 or any(int(c) != c or not 0 <= c <= 255 for c in color):
            raise ValueError(f"`masks[{i}]`: the colour must be (r, g, b) integers in [0, 255], got {color!r}.")
    return overlay_contours(
        image, [m for m, _ in pairs], colors=[tuple(int(c) for c in col) for _, col in pairs], thickness=int(thickness)
    )


def write_secondary_capture(
    pixel_array: np.ndarray,
    source_datasets: Sequence[Dataset | str | os.PathLike],
    out_path: str | os.PathLike,
    *,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_number: int = 300,
    series_description: str = "monai_jrs",
    photometric: str | None = None,
    derivation_description: str | None = None,
    instance_number: int = 1,
    grid_source: int | None = None,
    window: tuple[float, float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an image derived from radiographs (overlay, subtraction) as a DICOM Secondary Capture (highdicom).

    The SC joins the patient and study of the **first** source (:data:`SC_COPIED_ATTRIBUTES` are copied from it as
    they are; pass the follow-up first to file a subtraction in the follow-up's study) and references every source
    in SourceImageSequence (purpose: source image for image processing operation) and ReferencedImageSequence (SOP
    class and instance UIDs). It is a derived image of this software: Manufacturer and ManufacturerModelName
    ``monai_jrs``, SoftwareVersions the monai_jrs version, ImageType ``DERIVED\\SECONDARY``, ConversionType ``WSD``
    (workstation), BurnedInAnnotation ``NO``, Modality ``OT``, ContentDate/Time and SeriesDate/Time now; explicit VR
    little endian, uncompressed.

    Args:
        pixel_array: ``uint8`` ``(H, W, 3)`` for ``"RGB"``; ``uint8`` or ``uint16`` ``(H, W)`` for ``"MONOCHROME2"``
            (e.g. :func:`monai_jrs.transforms.subtraction_to_display`). Row 0 is the top row, as displayed.
        source_datasets: the images it was derived from: pydicom Datasets or DICOM files (read without pixels).
        out_path: the file to write; parent folders are created.
        series_instance_uid: SeriesInstanceUID of the new series; None: a new random UID (pass deterministic UIDs to
            make a re-run store the same objects).
        sop_instance_uid: SOPInstanceUID; None: a new random UID.
        series_number: SeriesNumber.
        series_description: SeriesDescription.
        photometric: ``"RGB"`` or ``"MONOCHROME2"``; None: from the array (3-D: RGB).
        derivation_description: DerivationDescription (what was computed), or None.
        instance_number: InstanceNumber.
        grid_source: index in ``source_datasets`` of the image whose pixel grid ``pixel_array`` is on (same Rows and
            Columns): its PixelSpacing, ImagerPixelSpacing and PatientOrientation are copied. None: no spacing is
            written, PatientOrientation is the first source's.
        window: ``(WindowCenter, WindowWidth)`` of a MONOCHROME2 image; None: the full range of the dtype (128/256
            for uint8, 32768/65536 for uint16), so viewers show the values as stored (0 difference at mid grey).
        overwrite: replace an existing ``out_path``.

    Returns:
        the path written.

    Raises:
        FileExistsError: when ``out_path`` exists and ``overwrite`` is False.
        ValueError: for a pixel array that does not fit the photometric interpretation, no or unreadable sources, a
            source without SOPClassUID/SOPInstanceUID (or a first source without StudyInstanceUID), an invalid UID,
            or a ``grid_source`` out of range or of another size than the array.

    Example::

        >>> import tempfile, pydicom
        >>> from monai_jrs.data.testing import make_dx_dicom
        >>> tmp = tempfile.TemporaryDirectory()
        >>> dx = make_dx_dicom(Path(tmp.name) / "dx.dcm", np.zeros((4, 6), dtype=np.uint16))
        >>> sc = write_secondary_capture(np.full((4, 6), 128, dtype=np.uint8), [dx], Path(tmp.name) / "sc.dcm",
        ...                              sop_instance_uid="1.2.826.0.1.3680043.8.498.1", grid_source=0)
        >>> ds = pydicom.dcmread(sc)
        >>> ds.SOPInstanceUID, ds.PatientID, list(ds.ImageType), [float(v) for v in ds.ImagerPixelSpacing]
        ('1.2.826.0.1.3680043.8.498.1', 'JRS0001', ['DERIVED', 'SECONDARY'], [0.14, 0.14])
        >>> tmp.cleanup()
    """
    import highdicom as hd
    from pydicom.uid import RE_VALID_UID

    out = Path(out_path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it.")
    arr, photometric = _sc_pixels(pixel_array, photometric)
    sources = _sc_sources(source_datasets)
    first = sources[0]
    if "StudyInstanceUID" not in first:
        raise ValueError("the first source dataset has no StudyInstanceUID; the Secondary Capture needs its study.")
    ids = {str(getattr(ds, "PatientID", "")) for ds in sources}
    if len(ids) > 1:
        logger.warning("the Secondary Capture's source images have different PatientIDs %s; it files under %r.",
                       sorted(ids), str(getattr(first, "PatientID", "")))
    uids = {"series_instance_uid": series_instance_uid, "sop_instance_uid": sop_instance_uid}
    for name, uid in uids.items():
        if uid is None:
            uids[name] = hd.UID()
        elif not (isinstance(uid, str) and len(uid) <= 64 and RE_VALID_UID.match(uid)):
            raise ValueError(f"`{name}` must be a valid DICOM UID (digits and dots, <= 64 characters), got {uid!r}.")
    grid = None
    if grid_source is not None:
        if isinstance(grid_source, bool) or int(grid_source) != grid_source or not 0 <= grid_source < len(sources):
            raise ValueError(f"`grid_source` must be an index in [0, {len(sources) - 1}] of `source_datasets`, "
                             f"got {grid_source!r}.")
        grid = sources[int(grid_source)]
        size = (int(getattr(grid, "Rows", -1)), int(getattr(grid, "Columns", -1)))
        if size != tuple(arr.shape[:2]):
            raise ValueError(f"`grid_source` {grid_source} has (Rows, Columns) = {size}, but the pixel array is "
                             f"{tuple(arr.shape[:2])}: the image is not on that source's grid.")
    now = datetime.datetime.now()
    sc = hd.sc.SCImage(
        pixel_array=arr,
        photometric_interpretation=photometric,
        bits_allocated=8 * arr.dtype.itemsize,
        coordinate_system="PATIENT",
        study_instance_uid=str(first.StudyInstanceUID),
        series_instance_uid=str(uids["series_instance_uid"]),
        series_number=int(series_number),
        sop_instance_uid=str(uids["sop_instance_uid"]),
        instance_number=int(instance_number),
        manufacturer="monai_jrs",
        patient_orientation=("L", "F"),  # replaced below by the source's (highdicom requires one here)
        manufacturer_model_name="monai_jrs",
        software_versions=str(__version__),
        series_description=str(series_description),
        content_date=now.date(),
        content_time=now.time(),
        series_date=now.date(),
        series_time=now.time(),
    )
    for keyword in SC_COPIED_ATTRIBUTES:
        if keyword in first:
            sc[keyword] = copy.deepcopy(first[keyword])
    orientation_from = grid if grid is not None else first
    # Type 2: empty when the source has none
    sc.PatientOrientation = copy.deepcopy(getattr(orientation_from, "PatientOrientation", None))
    if grid is not None:
        for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
            if keyword in grid:
                sc[keyword] = copy.deepcopy(grid[keyword])
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ConversionType = "WSD"
    sc.BurnedInAnnotation = "NO"
    if derivation_description:
        sc.DerivationDescription = str(derivation_description)[:1024]
    sc.SourceImageSequence = [_sc_reference(ds, purpose=True) for ds in sources]
    sc.ReferencedImageSequence = [_sc_reference(ds, purpose=False) for ds in sources]
    if photometric == "MONOCHROME2":
        full = 2 ** (8 * arr.dtype.itemsize)
        center, width = (full / 2, full) if window is None else window
        if not (math.isfinite(center) and math.isfinite(width) and width >= 1):
            raise ValueError(f"`window` must be (center, width) with a finite center and width >= 1, got {window!r}.")
        sc.WindowCenter, sc.WindowWidth = f"{float(center):g}", f"{float(width):g}"
        sc.VOILUTFunction = "LINEAR"
    out.parent.mkdir(parents=True, exist_ok=True)
    sc.save_as(out, enforce_file_format=True, overwrite=overwrite)
    return out


def _sc_pixels(pixel_array: Any, photometric: str | None) -> tuple[np.ndarray, str]:
    arr = np.asarray(pixel_array.detach().cpu().numpy() if isinstance(pixel_array, torch.Tensor) else pixel_array)
    kind = (photometric or ("RGB" if arr.ndim == 3 else "MONOCHROME2")).upper()
    got = f"{arr.dtype} array of shape {tuple(arr.shape)}"
    if kind == "RGB":
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
            raise ValueError(f"an RGB Secondary Capture needs a uint8 (H, W, 3) pixel array, got a {got}.")
    elif kind == "MONOCHROME2":
        if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16) or 0 in arr.shape:
            raise ValueError(
                f"a MONOCHROME2 Secondary Capture needs a uint8 or uint16 (H, W) pixel array, got a {got}."
            )
    else:
        raise ValueError(f"`photometric` must be 'RGB' or 'MONOCHROME2', got {photometric!r}.")
    return np.ascontiguousarray(arr), kind


def _sc_sources(source_datasets: Any) -> list[Dataset]:
    import pydicom
    from pydicom.dataset import Dataset

    if isinstance(source_datasets, (str, os.PathLike, Dataset)):
        source_datasets = [source_datasets]
    sources = []
    for i, src in enumerate(source_datasets):
        if isinstance(src, Dataset):
            ds = src
        else:
            try:
                ds = pydicom.dcmread(src, stop_before_pixels=True)
            except Exception as e:
                raise ValueError(f"source {i} ({src}): not a readable DICOM file ({type(e).__name__}: {e}).") from e
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            raise ValueError(f"source {i} has no SOPClassUID/SOPInstanceUID; a Secondary Capture references its "
                             "sources by these UIDs.")
        sources.append(ds)
    if not sources:
        raise ValueError("`source_datasets` is empty; a Secondary Capture needs at least one source image.")
    return sources


def _sc_reference(ds: Dataset, purpose: bool) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    if purpose:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator = "121322", "DCM"
        code.CodeMeaning = "Source image for image processing operation"
        item.PurposeOfReferenceCodeSequence = [code]
    return item


def _write_subtraction(
    folder: Path,
    result: JRSResult,
    ref_img: torch.Tensor,
    ref_mask: torch.Tensor,
    flt_shape: tuple[int, ...],
    spacing: Any,
    overwrite: bool,
) -> dict[str, Any]:
    """Write ``subtraction.nii.gz`` and ``subtraction.png``; return the ``metrics.json["subtraction"]`` entry."""
    # imported here: monai_jrs.transforms imports its io transforms, which import this module
    from monai_jrs.transforms.subtraction import subtraction_of

    png = folder / "subtraction.png"
    if png.exists() and not overwrite:
        raise FileExistsError(f"{png} exists; pass overwrite=True to replace it.")
    diff, display, info = subtraction_of(result, ref_img, ref_mask, flt_shape)
    save_nifti(diff[0], folder / "subtraction.nii.gz", spacing=spacing, overwrite=overwrite)
    Image.fromarray(display).save(png, compress_level=1)
    return info


def _write_overlay(path, ref_img, ref_mask, reg_mask, flt_img, flt_mask, overwrite) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    from monai_jrs.visualize.overlay import default_font_size, legend_strip, title_strip

    left = contour_overlay(ref_img[0], [(ref_mask[0], RED), (reg_mask[0], GREEN)], thickness=2)
    right = contour_overlay(flt_img[0], [(flt_mask[0], GREEN)], thickness=2)
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
