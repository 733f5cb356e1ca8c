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
"""DICOM input and output for chest radiographs (DX/CR), read one image per file with pydicom.

Convention:
    Arrays are ``(rows, cols)`` exactly as ``Dataset.pixel_array`` returns them, i.e. as a viewer shows the image.
    MONAI's ``LoadImage`` readers (ITK and pydicom) return ``(cols, rows)``; these functions do not.

Reading applies, in order: the Modality LUT (RescaleSlope/Intercept), the VOI LUT or window
(``pydicom.pixels.apply_voi_lut``), then inverts MONOCHROME1 so that air is always dark. Spacing is taken from
ImagerPixelSpacing (0018,1164), as ITK/GDCM do for DX/CR, falling back to PixelSpacing (0028,0030); the order can
be changed with ``spacing_preference``.

pydicom and highdicom are imported lazily (the ``dicom`` extra).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "SPACING_TAGS",
    "NON_IMAGE_MODALITIES",
    "SEG_SOP_CLASS_UIDS",
    "is_dicom_file",
    "read_dicom_xray",
    "scan_dicom_folder",
    "list_dicom_images",
    "read_dicom_seg",
    "write_dicom_seg",
]

#: Tags that can hold the in-plane spacing of a projection radiograph, in default order of preference.
SPACING_TAGS: tuple[str, str] = ("ImagerPixelSpacing", "PixelSpacing")

#: Modalities of DICOM objects that are never radiographs to register (skipped by the folder listing).
NON_IMAGE_MODALITIES: frozenset[str] = frozenset(
    {"SR", "SEG", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "REG", "DOC", "AU", "ECG", "PLAN", "FID", "RWV"}
)

#: Segmentation Storage and Label Map Segmentation Storage.
SEG_SOP_CLASS_UIDS: frozenset[str] = frozenset({"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"})

_META_TAGS = (
    "PatientID",
    "StudyDate",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "InstanceNumber",
    "SeriesNumber",
    "ViewPosition",
)


def is_dicom_file(path: str | PathLike) -> bool:
    """Whether ``path`` is a file carrying the DICOM Part 10 preamble (``"DICM"`` at byte 128).

    Args:
        path: file to test.

    Returns:
        True for a DICOM Part 10 file; False for folders, missing, short or other files.
    """
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with open(p, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom_xray(
    path: str | PathLike,
    apply_voi: bool = True,
    voi_index: int = 0,
    spacing_preference: Sequence[str] = SPACING_TAGS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a single-frame projection radiograph (DX, CR, or any single-frame greyscale image) with pydicom.

    Args:
        path: a DICOM file.
        apply_voi: apply the VOI LUT / window (the first one, or ``voi_index``) when the file has one.
        voi_index: which of several VOI LUTs / windows to apply.
        spacing_preference: spacing tags in order of preference, a subset of :data:`SPACING_TAGS`.

    Returns:
        ``(array, meta)``: ``array`` ``(H, W)`` float64 with MONOCHROME1 inverted (not normalised); ``meta`` with
        ``spacing`` ``(row_mm, col_mm)`` or None, ``spacing_source``, ``original_shape``, ``filename``,
        ``photometric``, ``dtype_in``, ``voi_applied``, ``format`` and the DICOM attributes PatientID, StudyDate,
        StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID, Modality, InstanceNumber,
        SeriesNumber, ViewPosition (None when absent).

    Raises:
        ValueError: for an empty, unreadable or non-DICOM file, a non-image object (SR, SEG, PR, ...), a multi-frame
            image, pixel data that cannot be decoded, or non-finite pixel values; the message names the file.

    Warns:
        UserWarning: when no valid spacing tag is present (``spacing`` is then None and results are in pixels).
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    p = Path(path)
    _check_file(p)
    for tag in spacing_preference:
        if tag not in SPACING_TAGS:
            raise ValueError(f"`spacing_preference` entries must be in {SPACING_TAGS}, got {tag!r}.")
    try:
        ds = pydicom.dcmread(p)
    except Exception as e:  # pydicom raises InvalidDicomError, EOFError, struct errors, ...
        raise ValueError(f"{p}: not a readable DICOM file ({type(e).__name__}: {e}).") from e
    reason = _non_image_reason(ds)
    if reason is not None:
        raise ValueError(f"{p}: {reason}; expected a single-frame X-ray image (DX/CR).")
    try:
        raw = ds.pixel_array
    except Exception as e:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ValueError(
            f"{p}: cannot decode the pixel data (transfer syntax {ts}; compressed data may need pylibjpeg or "
            f"python-gdcm): {type(e).__name__}: {e}"
        ) from e
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if raw.ndim == 3 and int(getattr(ds, "SamplesPerPixel", 1)) == 3:
        # pydicom converts YBR to RGB by default; reduce colour to luminance (ITU-R BT.601)
        arr = _luminance(raw.astype(np.float64))
        voi = False
    elif raw.ndim == 2:
        arr = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
        voi = False
        if apply_voi and _has_voi(ds):
            voi_in = arr
            if "VOILUTSequence" in ds:  # a LUT is indexed by integers (pydicom warns and truncates floats)
                voi_in = np.rint(arr).astype(np.int64)
            try:
                arr = np.asarray(apply_voi_lut(voi_in, ds, index=voi_index), dtype=np.float64)
                voi = True
            except Exception as e:
                raise ValueError(f"{p}: cannot apply VOI LUT/window {voi_index}: {type(e).__name__}: {e}") from e
    else:
        raise ValueError(f"{p}: expected a single-frame greyscale image, got pixel array of shape {raw.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{p}: pixel values contain NaN or infinity.")
    if photometric == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr
    spacing, source = _dicom_spacing(ds, p, spacing_preference)
    meta: dict[str, Any] = {
        "filename": str(p),
        "format": "dicom",
        "original_shape": (int(arr.shape[0]), int(arr.shape[1])),
        "spacing": spacing,
        "spacing_source": source,
        "photometric": photometric,
        "dtype_in": str(raw.dtype),
        "voi_applied": voi,
    }
    meta.update(_dicom_attributes(ds))
    return arr, meta


def scan_dicom_folder(folder: str | PathLike, recursive: bool = True) -> list[dict[str, Any]]:
    """Find every single-frame DICOM image under ``folder``, without reading pixel data or writing anything.

    Non-DICOM files are ignored silently; non-image DICOM objects (SR, SEG, PR, KO, ...), files without pixel
    data and multi-frame images are skipped with an INFO log line giving the reason.

    Args:
        folder: folder to scan.
        recursive: also scan sub-folders.

    Returns:
        one dict per image with ``path`` (:class:`pathlib.Path`) and the attributes PatientID, StudyDate,
        StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID, Modality, InstanceNumber, SeriesNumber,
        ViewPosition, sorted by (PatientID, StudyDate, SeriesInstanceUID, InstanceNumber, path).

    Raises:
        ValueError: when ``folder`` is not a folder.
    """
    import pydicom

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"`folder` must be an existing folder, got {root}.")
    files = sorted(root.rglob("*") if recursive else root.iterdir())
    found = []
    for f in files:
        if not f.is_file() or f.name == "DICOMDIR" or not is_dicom_file(f):
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception as e:
            logger.info("skipping %s: unreadable DICOM (%s: %s)", f, type(e).__name__, e)
            continue
        reason = _non_image_reason(ds, pixels_read=False)
        if reason is not None:
            logger.info("skipping %s: %s", f, reason)
            continue
        info = {"path": f}
        info.update(_dicom_attributes(ds))
        found.append(info)
    found.sort(key=_sort_key)
    return found


def list_dicom_images(folder: str | PathLike, recursive: bool = True) -> list[Path]:
    """List the single-frame DICOM images under ``folder``, one image per file.

    Several patients, studies and series may share the folder; the result is grouped and ordered by
    (PatientID, StudyDate, SeriesInstanceUID, InstanceNumber). See :func:`scan_dicom_folder` for what is skipped.

    Args:
        folder: folder to scan (never modified).
        recursive: also scan sub-folders.

    Returns:
        the image files.
    """
    return [info["path"] for info in scan_dicom_folder(folder, recursive=recursive)]


def read_dicom_seg(
    path: str | PathLike, segment_numbers: Sequence[int] | None = None, source_sop_instance_uid: str | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a DICOM SEG (BINARY, FRACTIONAL or LABELMAP) of a single 2-D image with highdicom.

    Args:
        path: the SEG file.
        segment_numbers: segments to union; None unions all segments.
        source_sop_instance_uid: the referenced image to read when the SEG references several; default: the only one.

    Returns:
        ``(mask, meta)``: ``mask`` ``(H, W)`` uint8 in {0, 1}; ``meta`` with ``filename``, ``format``
        (``"dicom_seg"``), ``original_shape``, ``spacing`` (from the shared PixelMeasuresSequence) or None,
        ``spacing_source``, ``segment_numbers`` and ``source_sop_instance_uid``.

    Raises:
        ValueError: for an unreadable file, a DICOM that is not a SEG, unknown segment numbers, or an ambiguous
            source image; the message names the file.
    """
    import highdicom as hd
    import pydicom

    p = Path(path)
    _check_file(p)
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
    except Exception as e:
        raise ValueError(f"{p}: not a readable DICOM file ({type(e).__name__}: {e}).") from e
    if str(getattr(ds, "SOPClassUID", "")) not in SEG_SOP_CLASS_UIDS:
        raise ValueError(
            f"{p}: expected a DICOM SEG (SOP class {sorted(SEG_SOP_CLASS_UIDS)}), got SOP class "
            f"{getattr(ds, 'SOPClassUID', None)} / Modality {getattr(ds, 'Modality', None)}."
        )
    try:
        seg = hd.seg.segread(p)
    except Exception as e:
        raise ValueError(f"{p}: highdicom cannot read this SEG ({type(e).__name__}: {e}).") from e
    available = [int(n) for n in seg.get_segment_numbers()]
    wanted = available if segment_numbers is None else [int(n) for n in segment_numbers]
    missing = sorted(set(wanted) - set(available))
    if missing or not wanted:
        raise ValueError(f"{p}: segment numbers {wanted} requested, the SEG has segments {available}.")
    sources = [uids[2] for uids in seg.get_source_image_uids()]
    if source_sop_instance_uid is None:
        if len(sources) != 1:
            raise ValueError(
                f"{p}: the SEG references {len(sources)} source images; pass `source_sop_instance_uid` "
                f"(one of {sources})."
            )
        source_sop_instance_uid = sources[0]
    elif source_sop_instance_uid not in sources:
        raise ValueError(f"{p}: source image {source_sop_instance_uid} is not referenced; the SEG references {sources}.")
    try:
        px = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[source_sop_instance_uid], segment_numbers=wanted, combine_segments=False
        )
    except Exception as e:
        raise ValueError(f"{p}: cannot extract segments {wanted} ({type(e).__name__}: {e}).") from e
    mask = (np.asarray(px)[0] > 0).any(axis=-1).astype(np.uint8)
    spacing = None
    try:
        pm = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        spacing = _valid_spacing(pm.PixelSpacing)
    except (AttributeError, IndexError):
        pass
    meta = {
        "filename": str(p),
        "format": "dicom_seg",
        "original_shape": (int(mask.shape[0]), int(mask.shape[1])),
        "spacing": spacing,
        "spacing_source": "PixelMeasuresSequence" if spacing is not None else None,
        "segment_numbers": wanted,
        "source_sop_instance_uid": source_sop_instance_uid,
    }
    return mask, meta


def write_dicom_seg(
    mask: np.ndarray | Any,
    source_dicom_path: str | PathLike,
    out_path: str | PathLike,
    segmentation_type: str = "BINARY",
    segment_label: str = "Lung",
    series_number: int = 100,
    series_description: str = "monai_jrs lung segmentation",
    manufacturer: str = "monai_jrs",
    software_version: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a lung mask as a DICOM SEG referencing its source radiograph (highdicom).

    Args:
        mask: ``(H, W)`` (or ``(1, H, W)``) array or tensor in {0, 1} on the source image grid, ``(rows, cols)``.
        source_dicom_path: the DX/CR file the mask was computed on (read, never modified).
        out_path: the SEG file to write; parent folders are created.
        segmentation_type: {``"BINARY"``, ``"LABELMAP"``}.
        segment_label: the segment's label (property: SCT Organ / Lung).
        series_number: SeriesNumber of the new series.
        series_description: SeriesDescription of the new series.
        manufacturer: Manufacturer of the new object.
        software_version: SoftwareVersions; default: the monai_jrs version.
        overwrite: replace an existing ``out_path``.

    Returns:
        the path written.

    Raises:
        FileExistsError: when ``out_path`` exists and ``overwrite`` is False.
        ValueError: when the mask is not binary, does not match the source image size, or the source is not an image.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    src = Path(source_dicom_path)
    out = Path(out_path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it.")
    arr = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"`mask` must have shape (H, W) or (1, H, W), got {arr.shape}.")
    if not np.all(np.isin(arr, (0, 1))):
        raise ValueError(f"`mask` must hold only 0 and 1, got values {np.unique(arr)[:10].tolist()}.")
    _check_file(src)
    try:
        ds = pydicom.dcmread(src)
    except Exception as e:
        raise ValueError(f"{src}: not a readable DICOM file ({type(e).__name__}: {e}).") from e
    reason = _non_image_reason(ds)
    if reason is not None:
        raise ValueError(f"{src}: {reason}; the SEG source must be a single-frame image.")
    if arr.shape != (int(ds.Rows), int(ds.Columns)):
        raise ValueError(
            f"`mask` shape {arr.shape} must equal the source image (Rows, Columns) = ({ds.Rows}, {ds.Columns}) of {src}."
        )
    seg_type = segmentation_type.upper()
    if seg_type not in ("BINARY", "LABELMAP"):
        raise ValueError(f"`segmentation_type` must be 'BINARY' or 'LABELMAP', got {segmentation_type!r}.")
    spacing, _ = _dicom_spacing(ds, src, ("PixelSpacing", "ImagerPixelSpacing"), warn=False)
    if spacing is None:
        logger.warning("%s has no pixel spacing; writing PixelSpacing 1.0 mm in the SEG.", src)
        spacing = (1.0, 1.0)
    if software_version is None:
        from monai_jrs import __version__ as software_version  # noqa: N811
    algorithm = hd.AlgorithmIdentificationSequence(
        name="monai_jrs", version=str(software_version), family=codes.DCM.ArtificialIntelligence
    )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_label,
        segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Lung,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=[ds],
        pixel_array=arr.astype(bool) if seg_type == "BINARY" else arr.astype(np.uint8),
        segmentation_type=seg_type,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=int(series_number),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name="monai_jrs",
        software_versions=str(software_version),
        device_serial_number="0",
        series_description=series_description,
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=list(spacing), slice_thickness=1.0),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out)
    return out


def _check_file(p: Path) -> None:
    if p.is_dir():
        raise ValueError(f"{p}: expected a file, got a folder.")
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file.")
    if p.stat().st_size == 0:
        raise ValueError(f"{p}: the file is empty.")


def _non_image_reason(ds: Any, pixels_read: bool = True) -> str | None:
    """Why ``ds`` is not a single-frame image, or None when it is one."""
    modality = str(getattr(ds, "Modality", "")).upper()
    sop_class = str(getattr(ds, "SOPClassUID", ""))
    if sop_class in SEG_SOP_CLASS_UIDS or modality == "SEG":
        return "a DICOM SEG (segmentation), not an image; read it with load_mask"
    if modality in NON_IMAGE_MODALITIES:
        return f"a non-image DICOM object (Modality {modality})"
    has_pixels = "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
    if pixels_read and not has_pixels:
        return f"a DICOM object without pixel data (Modality {modality or 'unknown'}, SOP class {sop_class})"
    if not pixels_read and "Rows" not in ds:
        return f"a DICOM object without an image (Modality {modality or 'unknown'}, SOP class {sop_class})"
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        return f"a multi-frame image ({frames} frames); monai_jrs reads one single-frame radiograph per file"
    return None


def _has_voi(ds: Any) -> bool:
    return "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)


def _valid_spacing(value: Any) -> tuple[float, float] | None:
    try:
        sp = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(sp) != 2 or not all(math.isfinite(s) and s > 0 for s in sp):
        return None
    return sp  # type: ignore[return-value]


def _dicom_spacing(
    ds: Any, p: Path, preference: Sequence[str], warn: bool = True
) -> tuple[tuple[float, float] | None, str | None]:
    for tag in preference:
        if tag in ds:
            sp = _valid_spacing(ds.data_element(tag).value)
            if sp is not None:
                return sp, tag
            logger.warning("%s: ignoring invalid %s %r", p, tag, ds.data_element(tag).value)
    if warn:
        warnings.warn(
            f"{p}: no valid {' or '.join(preference)}; spacing is unknown and distances will be in pixels.",
            stacklevel=3,
        )
    return None, None


def _dicom_attributes(ds: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in _META_TAGS:
        v = getattr(ds, tag, None)
        if v is None or v == "":
            out[tag] = None
        elif tag in ("InstanceNumber", "SeriesNumber"):
            try:
                out[tag] = int(v)
            except (TypeError, ValueError):
                out[tag] = None
        else:
            out[tag] = str(v)
    return out


def _sort_key(info: dict[str, Any]) -> tuple:
    inst = info.get("InstanceNumber")
    return (
        info.get("PatientID") or "",
        info.get("StudyDate") or "",
        info.get("SeriesInstanceUID") or "",
        inst if inst is not None else -1,
        str(info["path"]),
    )


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an ``(H, W, 3+)`` array (extra channels such as alpha are ignored)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
