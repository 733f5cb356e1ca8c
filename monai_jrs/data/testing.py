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
"""Small synthetic chest X-ray files for tests, examples and smoke runs (no patient data involved).

:func:`make_dx_dicom` writes a valid single-frame DX/CR file with the Patient, General Study, General Series,
General Equipment, General Image, Image Pixel, DX Image and SOP Common attributes that pydicom, ITK and highdicom
(DICOM SEG writing) need. :func:`make_sr_dicom` writes a non-image DICOM (Basic Text SR).
:func:`make_chest_phantom` draws the one chest phantom of the tests (hard or smooth edges, noise, an asymmetric
variant) with its lung mask, and :func:`make_synthetic_xray` stores it as integer pixel values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "DX_SOP_CLASS_UID",
    "CR_SOP_CLASS_UID",
    "make_dx_dicom",
    "make_sr_dicom",
    "make_chest_phantom",
    "make_synthetic_xray",
]

#: Digital X-Ray Image Storage - For Presentation.
DX_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.1.1"
#: Computed Radiography Image Storage.
CR_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.1"
_BASIC_TEXT_SR_UID = "1.2.840.10008.5.1.4.1.1.88.11"


def make_dx_dicom(
    path: str | PathLike,
    array: np.ndarray,
    photometric: str = "MONOCHROME2",
    imager_spacing: Sequence[float] | None = (0.14, 0.14),
    pixel_spacing: Sequence[float] | None = None,
    bits: int = 12,
    window: tuple[float, float] | None = None,
    patient_id: str = "JRS0001",
    study_date: str = "20240101",
    series_uid: str | None = None,
    modality: str = "DX",
    study_uid: str | None = None,
    sop_uid: str | None = None,
    series_number: int = 1,
    instance_number: int = 1,
    rescale: tuple[float, float] | None = None,
    view_position: str = "PA",
) -> Path:
    """Write a synthetic single-frame (or, for tests of error paths, multi-frame) DX or CR DICOM file.

    Args:
        path: output file; parent folders are created.
        array: ``(H, W)`` stored pixel values (rows, cols as a viewer shows them), integers in
            ``[0, 2**bits - 1]``. A ``(F, H, W)`` array writes a multi-frame file (``NumberOfFrames = F``), which
            monai_jrs readers reject; it exists to test that.
        photometric: {``"MONOCHROME2"``, ``"MONOCHROME1"``}. The values are written as given: pass an already
            inverted array to simulate a MONOCHROME1 detector.
        imager_spacing: ImagerPixelSpacing (0018,1164) ``(row_mm, col_mm)``, or None to omit it.
        pixel_spacing: PixelSpacing (0028,0030) ``(row_mm, col_mm)``, or None to omit it.
        bits: BitsStored, one of {12, 16} (BitsAllocated is always 16, unsigned).
        window: ``(WindowCenter, WindowWidth)`` or None.
        patient_id: PatientID.
        study_date: StudyDate ``YYYYMMDD``.
        series_uid: SeriesInstanceUID; default: derived deterministically from the study UID and ``series_number``.
        modality: {``"DX"``, ``"CR"``}; picks the SOP class too.
        study_uid: StudyInstanceUID; default: derived deterministically from ``patient_id`` and ``study_date``.
        sop_uid: SOPInstanceUID; default: a new UID.
        series_number: SeriesNumber.
        instance_number: InstanceNumber.
        rescale: ``(RescaleSlope, RescaleIntercept)``; default ``(1, 0)``.
        view_position: ViewPosition (0018,5101), e.g. ``"PA"`` or ``"AP"``.

    Returns:
        the path written.

    Raises:
        ValueError: for a bad array, bit depth, photometric interpretation or modality.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    arr = np.asarray(array)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ValueError(f"`array` must have shape (H, W) or (F, H, W), got {arr.shape}.")
    if bits not in (12, 16):
        raise ValueError(f"`bits` must be 12 or 16, got {bits}.")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"`photometric` must be 'MONOCHROME1' or 'MONOCHROME2', got {photometric!r}.")
    if modality not in ("DX", "CR"):
        raise ValueError(f"`modality` must be 'DX' or 'CR', got {modality!r}.")
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise ValueError("`array` must hold integer values.")
    if arr.min() < 0 or arr.max() > 2**bits - 1:
        raise ValueError(f"`array` values must lie in [0, {2 ** bits - 1}] for bits={bits}, got [{arr.min()}, {arr.max()}].")
    arr = arr.astype(np.uint16)

    study_uid = study_uid or generate_uid(entropy_srcs=["monai_jrs", patient_id, study_date])
    series_uid = series_uid or generate_uid(entropy_srcs=[study_uid, str(series_number), modality])
    sop_uid = sop_uid or generate_uid()
    sop_class = DX_SOP_CLASS_UID if modality == "DX" else CR_SOP_CLASS_UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    # SOP Common
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    # Patient
    ds.PatientName = f"Synthetic^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    # General Study
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.StudyDescription = "synthetic chest X-ray"
    # General Series
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate = study_date
    ds.SeriesTime = "120000"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view_position
    ds.Laterality = ""
    # General Equipment
    ds.Manufacturer = "monai_jrs synthetic"
    ds.ManufacturerModelName = "make_dx_dicom"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = "0"
    # General Image / DX Image
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ["P", "F"]
    ds.ContentDate = study_date
    ds.ContentTime = "120000"
    ds.AcquisitionDate = study_date
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BurnedInAnnotation = "NO"
    slope, intercept = rescale if rescale is not None else (1.0, 0.0)
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.RescaleType = "US"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1 if photometric == "MONOCHROME1" else 1
    if imager_spacing is not None:
        ds.ImagerPixelSpacing = [f"{float(s):g}" for s in imager_spacing]
    if pixel_spacing is not None:
        ds.PixelSpacing = [f"{float(s):g}" for s in pixel_spacing]
    if window is not None:
        ds.WindowCenter = f"{float(window[0]):g}"
        ds.WindowWidth = f"{float(window[1]):g}"
        ds.VOILUTFunction = "LINEAR"
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
    if arr.ndim == 3:
        ds.NumberOfFrames = int(arr.shape[0])
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = arr.astype("<u2").tobytes()

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out


def make_sr_dicom(
    path: str | PathLike, patient_id: str = "JRS0001", study_date: str = "20240101", study_uid: str | None = None
) -> Path:
    """Write a minimal Basic Text SR (a non-image DICOM object without pixel data).

    Args:
        path: output file; parent folders are created.
        patient_id: PatientID.
        study_date: StudyDate ``YYYYMMDD``.
        study_uid: StudyInstanceUID; default: the same derivation as :func:`make_dx_dicom`.

    Returns:
        the path written.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _BASIC_TEXT_SR_UID
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = _BASIC_TEXT_SR_UID
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = f"Synthetic^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid or generate_uid(entropy_srcs=["monai_jrs", patient_id, study_date])
    ds.StudyDate = study_date
    ds.StudyTime = "120000"
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 99
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out


def make_chest_phantom(
    shape: Sequence[int] = (64, 64),
    *,
    body: Sequence[float] = (0.0, 0.0, 0.95, 0.85),
    lungs: Sequence[Sequence[float]] = ((-0.05, -0.4, 0.6, 0.28), (-0.05, 0.4, 0.6, 0.28)),
    contrast: Sequence[float] = (0.05, 0.65, 0.35),
    ripple: float = 0.05,
    edge_softness: float | None = None,
    asymmetric: bool = False,
    smooth: bool = False,
    noise: float = 0.02,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The chest phantom of monai_jrs's tests: a bright body, two dark lung fields, and its lung mask.

    Drawn on the image grid normalised to ``[-1, 1]`` (rows top to bottom, columns left to right; ellipses are
    ``(row centre, col centre, row semi-axis, col semi-axis)`` in these units), in this order:

    1. ``background + body_gain * body - lung_gain * (left lung + right lung)``, where each shape is 1 inside its
       ellipse and 0 outside (``edge_softness=None``), or ``sigmoid(edge_softness * (1 - e))`` of the ellipse's
       ``e = (dr / a) ** 2 + (dc / b) ** 2`` (smooth edges, over about ``H / edge_softness`` pixels);
    2. ``+ ripple * cos(6 r)`` (rib-like rows);
    3. ``asymmetric``: a heart (also cut out of the lung mask), a spine, one clavicle and an "L" marker in a corner,
       painted over the image, so that no rotation or mirror maps the image onto itself;
    4. ``smooth``: a 3x3 binomial blur (zero padding), so that area downsampling does not alias;
    5. ``+ noise`` times standard normal noise (``numpy.random.default_rng(seed)``), then clipping to ``[0, 1]``.

    The defaults are the phantom of :func:`make_synthetic_xray`.

    Args:
        shape: ``(H, W)``, at least 8 pixels each.
        body: body ellipse.
        lungs: lung ellipses (the lung mask is their union).
        contrast: ``(background, body_gain, lung_gain)``.
        ripple: amplitude of the rib-like ripple (0: none).
        edge_softness: None for hard edges, else the slope of the smooth edges.
        asymmetric: add the structures that break every symmetry.
        smooth: blur with a 3x3 binomial kernel.
        noise: standard deviation of the noise (0: none).
        seed: seed of the noise.

    Returns:
        ``image`` ``(H, W)`` float64 in ``[0, 1]`` (MONOCHROME2: air dark, bone bright) and ``mask`` ``(H, W)`` bool.

    Example::

        >>> image, mask = make_chest_phantom((32, 40), noise=0.0)
        >>> image.shape, mask.dtype.name, bool(image[mask].mean() < image[~mask].mean())
        ((32, 40), 'bool', True)
    """
    h, w = int(shape[0]), int(shape[1])
    if h < 8 or w < 8:
        raise ValueError(f"`shape` must be at least (8, 8), got {tuple(shape)}.")
    r = torch.from_numpy(np.linspace(-1, 1, h))[:, None]
    c = torch.from_numpy(np.linspace(-1, 1, w))[None, :]

    def ellipse(e: Sequence[float]) -> torch.Tensor:
        r0, c0, a, b = e
        return ((r - r0) / a) ** 2 + ((c - c0) / b) ** 2

    def shape_of(e: torch.Tensor) -> torch.Tensor:
        return (e < 1.0).double() if edge_softness is None else torch.sigmoid(edge_softness * (1.0 - e))

    lung_e = [ellipse(e) for e in lungs]
    mask = torch.zeros(h, w, dtype=torch.bool)
    for e in lung_e:
        mask = mask | (e < 1.0)
    background, body_gain, lung_gain = contrast
    body_e = ellipse(body)
    img = background + body_gain * shape_of(body_e) - lung_gain * sum(shape_of(e) for e in lung_e)
    if ripple:
        img = img + ripple * torch.cos(6 * r)
    if asymmetric:
        inside = body_e <= 1.0
        heart = ellipse((0.36, 0.16, 0.24, 0.2)) <= 1.0
        clavicle = ((r + 0.6 - 0.15 * (c + 0.5)).abs() < 0.05) & (c > -0.8) & (c < -0.1)
        spine = (c.abs() < 0.07) & inside
        marker = ((c > 0.7) & (c < 0.76) & (r > -0.88) & (r < -0.6)) | ((r > -0.66) & (r < -0.6) & (c > 0.7) & (c < 0.88))
        for where, value in ((heart & inside, 0.75), (spine, 0.85), (clavicle, 0.95), (marker, 1.0)):
            img = torch.where(where, torch.full_like(img, value), img)
        mask = mask & ~heart
    if smooth:
        k = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
        img = F.conv2d(img[None, None], (k[:, None] * k[None, :] / 16.0).view(1, 1, 3, 3), padding=1)[0, 0]
    out = img.numpy()
    if noise:
        out = out + noise * np.random.default_rng(seed).standard_normal((h, w))
    return np.clip(out, 0.0, 1.0), mask.numpy()


def make_synthetic_xray(
    shape: Sequence[int] = (64, 64), max_value: int = 4095, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a chest-like radiograph (bright body, two dark lung fields, noise) and its lung mask, as stored values.

    :func:`make_chest_phantom` with its defaults, scaled to ``[0, max_value]`` and rounded.

    Args:
        shape: ``(H, W)``, at least 8 pixels each.
        max_value: largest stored value (4095 for 12-bit, 65535 for 16-bit, 255 for 8-bit).
        seed: seed of the noise.

    Returns:
        ``image`` ``(H, W)`` uint16 (MONOCHROME2: air dark, bone bright) and ``mask`` ``(H, W)`` uint8 in {0, 1}.
    """
    img, mask = make_chest_phantom(shape, seed=seed)
    return np.round(img * max_value).astype(np.uint16), mask.astype(np.uint8)
