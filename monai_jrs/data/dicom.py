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
    """Read a DICOM SEG (BINARY, FRACTIONAL or LABELMAP) of a single 2-D image (DX/CR radiograph).

    Writers verified by the tests (``tests/data/test_dicom_seg_compat.py``): highdicom 0.28 (:func:`write_dicom_seg`,
    BINARY, LABELMAP and FRACTIONAL, one or several segments) and dcmqi 1.5.7 ``itkimage2segimage`` (BINARY and
    ``--segmentationType labelmap``, one or several labels), which 3D Slicer's DICOM SEG export and MONAI Label's
    DICOMweb datastore use. Frames are found in two ways:

    * frames that reference their source image (DerivationImageSequence): read with highdicom. dcmqi omits
      SpatialLocationsPreserved (0028,135A), which highdicom then refuses to index by source image; an absent value
      is taken as "YES" (the SEG of a 2-D image lies on its source's grid, and :func:`~monai_jrs.data.io.load_mask`
      checks the size against the image), while "NO" or "REORIENTED_ONLY" is an error.
    * frames without per-frame references, when the SEG references exactly one source image (ReferencedSeriesSequence
      or SourceImageSequence) or none: every frame belongs to that image. The frames are decoded with pydicom and
      mapped to segments by PerFrameFunctionalGroupsSequence[i] (or the shared group)
      SegmentIdentificationSequence[0].ReferencedSegmentNumber; a LABELMAP has one frame whose values are segment
      numbers. This path is also taken when highdicom fails on a SEG that references one image.

    dcmqi needs ImagePositionPatient (0020,0032) in the source image: on a DX or CR without it (the usual case),
    ``itkimage2segimage`` stops with ``Condition failed: Tag not found in .../ConverterBase.h:363`` (it maps each
    source image to a label slice through that position). It works with ImagePositionPatient alone (DX, CR or
    Secondary Capture; ImageOrientationPatient, PixelSpacing and FrameOfReferenceUID are optional) when the label
    carries the geometry ITK reads from the image. With ``--referencesGeometryCheck 0``, or a label whose origin does
    not match the image position ("0 of 1 slices mapped"), dcmqi writes a SEG that references no image at all: such a
    SEG is read (when ``source_sop_instance_uid`` is None) with a logged warning, and ``source_sop_instance_uid`` is
    then None in ``meta``.

    A pixel is inside a BINARY or LABELMAP segment when it belongs to it, and inside a FRACTIONAL segment when its
    stored value exceeds half the MaximumFractionalValue (probability or occupancy > 0.5). A requested segment without
    a frame (highdicom omits empty frames) or without a foreground pixel is read as all zeros, with a logged warning;
    with every requested segment empty the mask is all zeros. (dcmqi leaves a label absent from the label image out
    of the SegmentSequence, so requesting it is an error, and refuses an all-empty label image.)

    Args:
        path: the SEG file.
        segment_numbers: segments to union; None unions all segments (for LABELMAP, all but the background, the
            PixelPaddingValue).
        source_sop_instance_uid: the referenced image to read when the SEG references several; default: the only one.

    Returns:
        ``(mask, meta)``: ``mask`` ``(H, W)`` uint8 in {0, 1}, ``(H, W) = (Rows, Columns)`` of the SEG; ``meta`` with
        ``filename``, ``format`` (``"dicom_seg"``), ``original_shape``, ``spacing`` (from the shared, else the first
        frame's, PixelMeasuresSequence) or None, ``spacing_source``, ``segment_numbers``, ``source_sop_instance_uid``
        (None for a SEG that references no image) and ``writer`` (Manufacturer / ManufacturerModelName /
        SoftwareVersions of the SEG, e.g. ``"QIICR / https://github.com/QIICR/dcmqi / 506306a"``, or None).

    Raises:
        ValueError: for an unreadable file, a DICOM that is not a SEG, unknown segment numbers, an ambiguous or
            unreferenced source image, frames whose spatial locations are not preserved, a frame count or pixel data
            size that does not match NumberOfFrames x Rows x Columns, a segment with several frames, frames without
            segment identification, or pixel data that cannot be decoded; the message names the file.

    Example::

        >>> import tempfile
        >>> from monai_jrs.data.testing import make_dx_dicom
        >>> mask = np.zeros((6, 8), np.uint8)
        >>> mask[1:4, 2:7] = 1
        >>> with tempfile.TemporaryDirectory() as d:
        ...     src = make_dx_dicom(Path(d) / "img.dcm", mask * 1000)
        ...     read, meta = read_dicom_seg(write_dicom_seg(mask, src, Path(d) / "seg.dcm"))
        >>> bool((read == mask).all()), meta["segment_numbers"], meta["writer"].split(" / ")[0]
        (True, [1], 'monai_jrs')
    """
    import pydicom

    p = Path(path)
    _check_file(p)
    try:
        ds = pydicom.dcmread(p, defer_size="1 MB")  # the pixel data of an image passed by mistake is not read
    except Exception as e:
        raise ValueError(f"{p}: not a readable DICOM file ({type(e).__name__}: {e}).") from e
    if str(getattr(ds, "SOPClassUID", "")) not in SEG_SOP_CLASS_UIDS:
        raise ValueError(
            f"{p}: expected a DICOM SEG (SOP class {sorted(SEG_SOP_CLASS_UIDS)}), got SOP class "
            f"{getattr(ds, 'SOPClassUID', None)} / Modality {getattr(ds, 'Modality', None)}."
        )
    seg_type = str(getattr(ds, "SegmentationType", "")).upper()
    if seg_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise ValueError(f"{p}: expected SegmentationType BINARY, FRACTIONAL or LABELMAP, got {seg_type or None!r}.")
    n_frames, shape = _check_seg_frames(ds, p)
    available = _seg_segment_numbers(ds, seg_type)
    wanted = available if segment_numbers is None else [int(n) for n in segment_numbers]
    missing = sorted(set(wanted) - set(available))
    if missing or not wanted:
        raise ValueError(f"{p}: segment numbers {wanted} requested, the SEG has segments {available}.")
    per_frame = [_seg_frame_sources(ds, i) for i in range(n_frames)]
    sources = _seg_source_uids(ds, per_frame)
    if source_sop_instance_uid is None:
        if len(sources) > 1:
            raise ValueError(
                f"{p}: the SEG references {len(sources)} source images; pass `source_sop_instance_uid` "
                f"(one of {sources})."
            )
        if not sources:
            logger.warning(
                "%s: the SEG references no source image (dcmqi writes such SEGs for images without "
                "ImagePositionPatient or with --referencesGeometryCheck 0); reading its frames as the image's.",
                p,
            )
        source_sop_instance_uid = sources[0] if sources else None
    elif source_sop_instance_uid not in sources:
        raise ValueError(f"{p}: source image {source_sop_instance_uid} is not referenced; the SEG references {sources}.")
    max_value = _seg_max_fractional(ds, p) if seg_type == "FRACTIONAL" else 1
    indexed = [i for i, refs in enumerate(per_frame) if any(uid == source_sop_instance_uid for uid, _ in refs)]
    stacked = None
    if indexed:
        preserved = {flag for i in indexed for uid, flag in per_frame[i] if uid == source_sop_instance_uid}
        bad = sorted(str(v) for v in preserved - {None, "YES"})
        if bad:
            raise ValueError(
                f"{p}: the frames of source image {source_sop_instance_uid} have SpatialLocationsPreserved {bad}; "
                "expected 'YES' (or absent): their pixels are not on the source image grid."
            )
        try:
            stacked = _seg_pixels_highdicom(p, source_sop_instance_uid, wanted, ignore_spatial=None in preserved)
        except Exception as e:
            if len(sources) != 1:
                raise ValueError(f"{p}: cannot extract segments {wanted} ({type(e).__name__}: {e}).") from e
            logger.info(
                "%s: highdicom cannot index the frames (%s: %s); decoding them with pydicom.", p, type(e).__name__, e
            )
    elif any(per_frame):
        raise ValueError(
            f"{p}: no frame references source image {source_sop_instance_uid}; the frames reference "
            f"{sorted({uid for refs in per_frame for uid, _ in refs})}."
        )
    elif len(sources) > 1:
        raise ValueError(
            f"{p}: the frames carry no per-frame source reference (DerivationImageSequence) and the SEG references "
            f"{len(sources)} images; expected exactly one to assign the frames to."
        )
    if stacked is None:
        stacked = _seg_pixels_pydicom(ds, p, seg_type, wanted, n_frames, shape)
    if seg_type == "FRACTIONAL":
        inside = stacked.astype(np.float64) > max_value / 2.0
    else:
        inside = stacked > 0
    for k, n in enumerate(wanted):
        if not inside[..., k].any():
            logger.warning("%s: segment %d is empty (no frame or no foreground pixel); it adds nothing.", p, n)
    mask = inside.any(axis=-1).astype(np.uint8)
    spacing = _seg_spacing(ds)
    meta = {
        "filename": str(p),
        "format": "dicom_seg",
        "original_shape": (int(mask.shape[0]), int(mask.shape[1])),
        "spacing": spacing,
        "spacing_source": "PixelMeasuresSequence" if spacing is not None else None,
        "segment_numbers": wanted,
        "source_sop_instance_uid": source_sop_instance_uid,
        "writer": _seg_writer(ds),
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
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    content_datetime: Any = None,
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
        series_instance_uid: SeriesInstanceUID of the SEG; default: a new UID. Deterministic UIDs
            (:func:`monai_jrs.data.dicomweb.derived_uid`) make a PACS recognise a SEG it already stores.
        sop_instance_uid: SOPInstanceUID of the SEG; default: a new UID. When given, the DimensionOrganizationUID
            (random in highdicom) derives from it too, so equal inputs write byte-identical files.
        content_datetime: a :class:`datetime.datetime` for the SEG's content, series and instance-creation dates and
            times; default: now (highdicom's). A batch run passes its start time, so a resumed run writes the same
            bytes.

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
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=int(series_number),
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name="monai_jrs",
        software_versions=str(software_version),
        device_serial_number="0",
        series_description=series_description,
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=list(spacing), slice_thickness=1.0),
    )
    if sop_instance_uid:
        from monai_jrs.data.dicomweb import derived_uid

        _replace_uid(seg, str(seg.DimensionOrganizationSequence[0].DimensionOrganizationUID),
                     derived_uid("dimension-organization", sop_instance_uid))
    if content_datetime is not None:
        day, clock = content_datetime.strftime("%Y%m%d"), content_datetime.strftime("%H%M%S")
        for prefix in ("Content", "Series", "InstanceCreation"):
            setattr(seg, f"{prefix}Date", day)
            setattr(seg, f"{prefix}Time", clock)
        for elem in seg.iterall():  # ContributionDateTime of the equipment that contributed
            if elem.keyword == "ContributionDateTime":
                elem.value = f"{day}{clock}"
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out)
    return out


def _replace_uid(ds: Any, old: str, new: str) -> None:
    """Replace every UI element of ``ds`` (nested sequences too) whose value is ``old`` by ``new``."""
    for elem in ds.iterall():
        if elem.VR == "UI" and elem.value == old:
            elem.value = new


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


def _check_seg_frames(ds: Any, p: Path) -> tuple[int, tuple[int, int]]:
    """Check that NumberOfFrames, the per-frame functional groups and the pixel data agree; return ``(F, (H, W))``."""
    try:
        shape = (int(ds.Rows), int(ds.Columns))
        n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"{p}: the SEG lacks a valid Rows, Columns, NumberOfFrames or BitsAllocated ({e}).") from e
    if min(shape) <= 0 or n_frames <= 0:
        raise ValueError(f"{p}: expected a positive frame size and count, got {shape} x {n_frames} frame(s).")
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    if groups is None and n_frames > 1:
        raise ValueError(f"{p}: NumberOfFrames is {n_frames} but the SEG has no PerFrameFunctionalGroupsSequence.")
    if groups is not None and len(groups) != n_frames:
        raise ValueError(
            f"{p}: NumberOfFrames is {n_frames} but PerFrameFunctionalGroupsSequence has {len(groups)} item(s); "
            "expected one item per frame."
        )
    if "PixelData" not in ds:
        raise ValueError(f"{p}: the SEG has no pixel data.")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and not ts.is_encapsulated:
        expected = -(-n_frames * shape[0] * shape[1] * bits // 8)
        got = len(ds.PixelData)
        if got not in (expected, expected + 1):  # + 1: padding to an even length
            raise ValueError(
                f"{p}: the pixel data holds {got} bytes; {n_frames} frame(s) of {shape[0]} x {shape[1]} pixels at "
                f"{bits} bit(s) need {expected}."
            )
    return n_frames, shape


def _seg_segment_numbers(ds: Any, seg_type: str) -> list[int]:
    """Segment numbers of the SegmentSequence, without a LABELMAP's background (its PixelPaddingValue)."""
    numbers = [int(item.SegmentNumber) for item in ds.get("SegmentSequence", []) if "SegmentNumber" in item]
    if seg_type == "LABELMAP" and "PixelPaddingValue" in ds:
        numbers = [n for n in numbers if n != int(ds.PixelPaddingValue)]
    return numbers


def _seg_frame_sources(ds: Any, index: int) -> list[tuple[str, str | None]]:
    """``(ReferencedSOPInstanceUID, SpatialLocationsPreserved or None)`` of the per-frame source references."""
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    if groups is None:
        return []
    refs = []
    for derivation in groups[index].get("DerivationImageSequence", []):
        for src in derivation.get("SourceImageSequence", []):
            if "ReferencedSOPInstanceUID" in src:
                flag = src.get("SpatialLocationsPreserved")
                refs.append((str(src.ReferencedSOPInstanceUID), None if flag in (None, "") else str(flag).upper()))
    return refs


def _seg_source_uids(ds: Any, per_frame: Sequence[Sequence[tuple[str, str | None]]]) -> list[str]:
    """SOP instance UIDs of the referenced source images, in order of first mention and without repetition."""
    uids = [
        str(inst.ReferencedSOPInstanceUID)
        for series in ds.get("ReferencedSeriesSequence", [])
        for inst in series.get("ReferencedInstanceSequence", [])
        if "ReferencedSOPInstanceUID" in inst
    ]
    for src in ds.get("SourceImageSequence", []):
        if "ReferencedSOPInstanceUID" in src:
            uids.append(str(src.ReferencedSOPInstanceUID))
    uids += [uid for refs in per_frame for uid, _ in refs]
    return list(dict.fromkeys(uids))


def _seg_max_fractional(ds: Any, p: Path) -> int:
    if "MaximumFractionalValue" in ds and int(ds.MaximumFractionalValue) > 0:
        return int(ds.MaximumFractionalValue)
    value = 2 ** int(ds.BitsAllocated) - 1
    logger.warning("%s: FRACTIONAL SEG without a valid MaximumFractionalValue; assuming %d.", p, value)
    return value


def _seg_pixels_highdicom(p: Path, source_uid: str, wanted: Sequence[int], ignore_spatial: bool) -> np.ndarray:
    """``(H, W, S)`` stored values of segments ``wanted`` of the frames that reference ``source_uid`` (highdicom)."""
    import highdicom as hd

    seg = hd.seg.segread(p)
    px = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[source_uid],
        segment_numbers=list(wanted),
        combine_segments=False,
        ignore_spatial_locations=ignore_spatial,
        rescale_fractional=False,
    )
    return np.asarray(px)[0]


def _seg_pixels_pydicom(
    ds: Any, p: Path, seg_type: str, wanted: Sequence[int], n_frames: int, shape: tuple[int, int]
) -> np.ndarray:
    """``(H, W, S)`` stored values of segments ``wanted``, all frames belonging to one image (pydicom)."""
    try:
        frames = np.asarray(ds.pixel_array).reshape(n_frames, *shape)
    except Exception as e:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ValueError(
            f"{p}: cannot decode the SEG pixel data (transfer syntax {ts}): {type(e).__name__}: {e}"
        ) from e
    out = np.zeros((*shape, len(wanted)), dtype=frames.dtype)
    if seg_type == "LABELMAP":
        if n_frames != 1:
            raise ValueError(f"{p}: a LABELMAP SEG of one 2-D image must have one frame, got {n_frames}.")
        for k, n in enumerate(wanted):
            out[..., k] = frames[0] == n
        return out
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_id = shared[0].get("SegmentIdentificationSequence") if shared else None
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    defined = {int(item.SegmentNumber) for item in ds.get("SegmentSequence", []) if "SegmentNumber" in item}
    frame_segments = []
    for i in range(n_frames):
        ident = groups[i].get("SegmentIdentificationSequence") if groups is not None else None
        ident = ident or shared_id
        if not ident or "ReferencedSegmentNumber" not in ident[0]:
            raise ValueError(f"{p}: frame {i + 1} has no SegmentIdentificationSequence; cannot tell its segment.")
        number = int(ident[0].ReferencedSegmentNumber)
        if number not in defined:
            raise ValueError(
                f"{p}: frame {i + 1} belongs to segment {number}, which the SegmentSequence does not define."
            )
        frame_segments.append(number)
    for k, n in enumerate(wanted):
        idx = [i for i, s in enumerate(frame_segments) if s == n]
        if len(idx) > 1:
            raise ValueError(
                f"{p}: segment {n} has {len(idx)} frames ({[i + 1 for i in idx]}); a SEG of one 2-D image has at "
                "most one frame per segment."
            )
        if idx:
            out[..., k] = frames[idx[0]]
    return out


def _seg_spacing(ds: Any) -> tuple[float, float] | None:
    """PixelSpacing of the shared PixelMeasuresSequence, else of the first frame's, or None."""
    for name in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(name)
        if groups:
            measures = groups[0].get("PixelMeasuresSequence")
            if measures and "PixelSpacing" in measures[0]:
                return _valid_spacing(measures[0].PixelSpacing)
    return None


def _seg_writer(ds: Any) -> str | None:
    """``"Manufacturer / ManufacturerModelName / SoftwareVersions"`` of the present ones, or None."""
    parts = []
    for tag in ("Manufacturer", "ManufacturerModelName", "SoftwareVersions"):
        value = ds.get(tag)
        if value is None or value == "":
            continue
        text = str(value) if isinstance(value, str) or not isinstance(value, Sequence) else " ".join(map(str, value))
        if text.strip():
            parts.append(text.strip())
    return " / ".join(parts) or None
