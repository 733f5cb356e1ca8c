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
"""Loading chest X-rays and lung masks (PNG/JPEG/TIFF, NIfTI, NumPy, DICOM and DICOM SEG), and writing NIfTI.

The MONAI transforms around these loaders are in :mod:`monai_jrs.transforms.io`
(:class:`~monai_jrs.transforms.LoadXRayd`, :class:`~monai_jrs.transforms.LoadLungMaskd`).

Convention:
    Every loader returns ``(rows, cols)`` arrays exactly as a viewer shows the image, with a channel dimension
    in front: ``(1, H, W)``.

    - DICOM: ``Dataset.pixel_array`` order (see :mod:`monai_jrs.data.dicom`).
    - PNG/JPEG/TIFF/BMP: the order PIL shows (``np.asarray(PIL.Image.open(f))``); EXIF rotation is not applied.
    - NIfTI: the data array is read **as stored**, axis 0 = rows (H), axis 1 = cols (W), which is what
      :func:`save_nifti` writes, so monai_jrs outputs round-trip. Only ``pixdim`` (spacing) is read from the header;
      the affine's orientation is not applied. NIfTI files written by ITK / MONAI ``SaveImage`` from an image loaded by
      MONAI ``LoadImage`` usually store ``(cols, rows)``; load those with ``nifti_layout="cols_rows"``.
    - NumPy ``.npy``: ``(H, W)`` or ``(1, H, W)``, as stored.

    This differs from MONAI's ``LoadImage``, which returns ``(cols, rows)`` for PNG and DICOM.

Loading never writes anything; writers never overwrite unless asked (``overwrite=True``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_jrs.data.dicom import (
    SPACING_TAGS,
    _luminance,
    is_dicom_file,
    list_dicom_images,
    read_dicom_seg,
    read_dicom_xray,
)
from monai_jrs.utils.deprecate_utils import moved_names

logger = logging.getLogger(__name__)

__all__ = [
    "PIL_EXTENSIONS",
    "NIFTI_EXTENSIONS",
    "load_xray",
    "load_mask",
    "save_nifti",
    "to_collatable_meta",
    "from_collatable_meta",
]

#: the MONAI transforms of these loaders moved to monai_jrs.transforms.io (old paths deprecated, removed in 0.2.0).
__getattr__ = moved_names(
    __name__,
    {
        "monai_jrs.transforms.io": [
            "LoadXRay",
            "LoadXRayd",
            "LoadXRayD",
            "LoadXRayDict",
            "LoadLungMaskd",
            "LoadLungMaskD",
            "LoadLungMaskDict",
        ]
    },
)

#: file name endings read with PIL.
PIL_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: file name endings read with nibabel.
NIFTI_EXTENSIONS: tuple[str, ...] = (".nii", ".nii.gz")
_DICOM_EXTENSIONS = (".dcm", ".dicom", ".ima", "")
_NIFTI_LAYOUTS = ("rows_cols", "cols_rows")


def load_xray(
    path: str | PathLike,
    normalize: bool = True,
    lower: float = 0.5,
    upper: float = 99.5,
    apply_voi: bool = True,
    voi_index: int = 0,
    spacing_preference: Sequence[str] = SPACING_TAGS,
    nifti_layout: str = "rows_cols",
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Load a chest radiograph as a ``(1, H, W)`` float32 tensor in ``[0, 1]``.

    DICOM: Modality LUT, VOI LUT/window, MONOCHROME1 inversion (see :func:`monai_jrs.data.dicom.read_dicom_xray`).
    8/16-bit greyscale PNG/TIFF are read at full depth; RGB/RGBA/palette images are reduced to luminance (ITU-R
    BT.601, alpha ignored). Intensities are then clipped to the ``[lower, upper]`` percentiles and scaled to
    ``[0, 1]`` (:func:`monai_jrs.transforms.normalize_intensity`).

    Args:
        path: an image file, or a folder holding exactly one DICOM image.
        normalize: normalise to ``[0, 1]``; False returns the float32 values after LUTs/inversion/luminance.
        lower: lower clipping percentile.
        upper: upper clipping percentile.
        apply_voi: DICOM only: apply the VOI LUT / window when present.
        voi_index: DICOM only: which VOI LUT / window to apply.
        spacing_preference: DICOM only: spacing tags in order of preference.
        nifti_layout: NIfTI only: {``"rows_cols"``, ``"cols_rows"``}, how the stored array maps to the image.

    Returns:
        ``(image, meta)``. ``image`` is ``(1, H, W)`` float32. ``meta`` holds ``filename``, ``format``
        (``"dicom"``, ``"pil"``, ``"nifti"``, ``"numpy"``), ``original_shape`` ``(H, W)``, ``spacing``
        ``(row_mm, col_mm)`` or None, ``spacing_source`` (``"ImagerPixelSpacing"``, ``"PixelSpacing"``,
        ``"NIfTI header"`` or None), ``photometric``, ``dtype_in``, and for DICOM also ``voi_applied``, PatientID,
        StudyDate, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID, Modality, InstanceNumber,
        SeriesNumber and ViewPosition.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: for empty, corrupt, unsupported or non-image files, multi-frame images, NaN/inf values, a
            constant image, or a folder with zero or several images; the message names the file.
    """
    if nifti_layout not in _NIFTI_LAYOUTS:
        raise ValueError(f"`nifti_layout` must be one of {_NIFTI_LAYOUTS}, got {nifti_layout!r}.")
    p = _resolve_image_path(Path(path))
    fmt = _detect_format(p)
    if fmt == "dicom":
        arr, meta = read_dicom_xray(p, apply_voi=apply_voi, voi_index=voi_index, spacing_preference=spacing_preference)
    elif fmt == "pil":
        arr, meta = _read_pil(p, as_mask=False)
    elif fmt == "nifti":
        arr, meta = _read_nifti(p, nifti_layout)
    else:
        arr, meta = _read_numpy(p)
    _check_finite(arr, p)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ValueError(f"{p}: expected a 2-D image, got array of shape {arr.shape}.")
    if normalize:
        # imported here: monai_jrs.transforms (its io transforms) imports this module
        from monai_jrs.transforms.intensity.functional import normalize_intensity

        out = normalize_intensity(arr, lower, upper, name=str(p))
    else:
        out = arr.astype(np.float32)
    meta["original_shape"] = (int(arr.shape[0]), int(arr.shape[1]))
    return torch.from_numpy(np.ascontiguousarray(out))[None], meta


def load_mask(
    path: str | PathLike,
    reference_meta: Mapping[str, Any] | None = None,
    labels: Sequence[int] | None = None,
    allow_empty: bool = False,
    nifti_layout: str = "rows_cols",
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Load a lung mask as a ``(1, H, W)`` float32 tensor in {0, 1}.

    Args:
        path: PNG/TIFF/BMP (JPEG is accepted with a warning), NIfTI, ``.npy`` or DICOM SEG file.
        reference_meta: meta of the image the mask belongs to (from :func:`load_xray`); its ``original_shape`` must
            match the mask, and its ``spacing`` is used when the mask file has none. For a DICOM SEG, its
            ``SOPInstanceUID`` selects the referenced source image, and the image's spacing (possibly None) replaces
            the SEG's PixelMeasures.
        labels: values (segment numbers for DICOM SEG) that count as lung; None: any nonzero value (all segments).
            Palette PNGs use the palette index; RGB(A) PNGs use the largest colour channel (alpha is ignored).
        allow_empty: return an all-zero mask instead of raising.
        nifti_layout: NIfTI only: {``"rows_cols"``, ``"cols_rows"``}.

    Returns:
        ``(mask, meta)``: ``mask`` ``(1, H, W)`` float32 in {0, 1}; ``meta`` with ``filename``, ``format``,
        ``original_shape``, ``spacing``, ``spacing_source``, ``labels``, ``foreground_fraction`` and
        ``reference_filename``.

    Raises:
        ValueError: for unreadable or unsupported files, NaN values, a shape that differs from the reference image,
            or an empty mask (unless ``allow_empty``); the message names the file.
    """
    if nifti_layout not in _NIFTI_LAYOUTS:
        raise ValueError(f"`nifti_layout` must be one of {_NIFTI_LAYOUTS}, got {nifti_layout!r}.")
    p = Path(path)
    _check_file(p)
    fmt = _detect_format(p)
    ref_uid = reference_meta.get("SOPInstanceUID") if reference_meta is not None else None
    if fmt == "dicom":
        seg_labels = None if labels is None else [int(v) for v in labels]
        try:
            binary, meta = read_dicom_seg(p, segment_numbers=seg_labels, source_sop_instance_uid=ref_uid)
        except ValueError as e:
            if ref_uid is None or "is not referenced" not in str(e):
                raise
            warnings.warn(f"{p}: the SEG does not reference the image {ref_uid}; using its own source image.")
            binary, meta = read_dicom_seg(p, segment_numbers=seg_labels)
        values = binary
    else:
        if fmt == "pil":
            values, meta = _read_pil(p, as_mask=True)
        elif fmt == "nifti":
            values, meta = _read_nifti(p, nifti_layout)
        else:
            values, meta = _read_numpy(p)
        if values.ndim != 2:
            raise ValueError(f"{p}: expected a 2-D mask, got array of shape {values.shape}.")
        _check_finite(values, p)
        if p.suffix.lower() in (".jpg", ".jpeg"):
            warnings.warn(f"{p}: JPEG is lossy; the mask is thresholded at half its maximum.")
            values = (values > values.max() / 2.0).astype(np.uint8)
        binary = (values != 0) if labels is None else np.isin(values, np.asarray(list(labels)))
    binary = np.asarray(binary).astype(np.float32)
    shape = (int(binary.shape[0]), int(binary.shape[1]))
    meta["original_shape"] = shape
    meta["labels"] = None if labels is None else [int(v) for v in labels]
    meta["reference_filename"] = None
    if reference_meta is not None:
        ref_shape = tuple(int(s) for s in reference_meta.get("original_shape", shape))
        ref_name = reference_meta.get("filename")
        meta["reference_filename"] = ref_name
        if ref_shape != shape:
            raise ValueError(
                f"{p}: mask shape {shape} (rows, cols) does not match the image {ref_name} of shape {ref_shape}."
            )
        ref_sp = reference_meta.get("spacing")
        if fmt == "dicom" and ref_uid is not None:
            # a SEG lies on its DICOM source's grid, and its PixelMeasures may come from the other spacing tag or be the
            # 1 mm placeholder write_dicom_seg stores for images without spacing: the image's spacing (or None) wins
            meta["spacing"] = None if ref_sp is None else tuple(ref_sp)
            meta["spacing_source"] = None if ref_sp is None else "reference image"
        elif meta.get("spacing") is None and ref_sp is not None:
            meta["spacing"], meta["spacing_source"] = tuple(ref_sp), "reference image"
        elif meta.get("spacing") is not None and ref_sp is not None and not np.allclose(meta["spacing"], ref_sp, 1e-4):
            warnings.warn(f"{p}: mask spacing {meta['spacing']} differs from image spacing {tuple(ref_sp)}.")
    fraction = float(binary.mean())
    meta["foreground_fraction"] = fraction
    if fraction == 0.0 and not allow_empty:
        raise ValueError(
            f"{p}: the mask is empty (no pixel with {'a nonzero value' if labels is None else f'label in {labels}'}); "
            "pass allow_empty=True to accept it."
        )
    return torch.from_numpy(binary)[None], meta


def save_nifti(
    array: np.ndarray | torch.Tensor,
    path: str | PathLike,
    spacing: Sequence[float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an image, mask or field as NIfTI, storing ``(rows, cols)`` so that :func:`load_xray` round-trips.

    A ``(H, W)`` array (or ``(1, H, W)``) is stored as a 2-D ``(H, W)`` volume; a ``(C, H, W)`` array with ``C > 1``
    (e.g. a DDF, channel 0 along H) is stored as ``(H, W, 1, 1, C)`` with intent ``vector``, the NIfTI layout for
    vector fields. The affine is ``diag(row_mm, col_mm, 1, 1)`` and ``pixdim`` holds the spacing (units mm); with
    ``spacing=None`` the affine is the identity and units are left unknown. Bool arrays are stored as uint8.

    Args:
        array: ``(H, W)`` or ``(C, H, W)`` array or tensor.
        path: output file ending in ``.nii`` or ``.nii.gz``; parent folders are created.
        spacing: ``(row_mm, col_mm)`` or None.
        overwrite: replace an existing file.

    Returns:
        the path written.

    Raises:
        FileExistsError: when ``path`` exists and ``overwrite`` is False.
        ValueError: for a bad shape, spacing or file name.
    """
    import nibabel as nib

    p = Path(path)
    if not p.name.lower().endswith(NIFTI_EXTENSIONS):
        raise ValueError(f"`path` must end with .nii or .nii.gz, got {p.name}.")
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists; pass overwrite=True to replace it.")
    arr = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3:
        data = np.moveaxis(arr, 0, -1)[:, :, None, None, :]
    elif arr.ndim == 2:
        data = arr
    else:
        raise ValueError(f"`array` must have shape (H, W) or (C, H, W), got {arr.shape}.")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    affine = np.eye(4)
    if spacing is not None:
        sp = tuple(float(s) for s in spacing)
        if len(sp) != 2 or not all(math.isfinite(s) and s > 0 for s in sp):
            raise ValueError(f"`spacing` must be (row_mm, col_mm), positive and finite, got {spacing}.")
        affine[0, 0], affine[1, 1] = sp
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    if spacing is not None:
        img.header.set_xyzt_units("mm")
    if data.ndim == 5:
        img.header.set_intent("vector")
    p.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(p))
    return p


def to_collatable_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``meta`` that ``default_collate`` can batch: unknown spacing -> ``(nan, nan)``, other None -> ``""``.

    Args:
        meta: meta dict from :func:`load_xray` or :func:`load_mask`.

    Returns:
        the converted dict (tuples become lists).
    """
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if k == "spacing" and v is None:
            out[k] = [math.nan, math.nan]
        elif v is None:
            out[k] = ""
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = v
    return out


def from_collatable_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Invert :func:`to_collatable_meta` for one (decollated) item: ``(nan, nan)`` spacing and ``""`` -> None.

    Args:
        meta: a meta dict, e.g. ``MetaTensor.meta``.

    Returns:
        the converted dict; ``spacing`` and ``original_shape`` become tuples.
    """
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, torch.Tensor) and v.ndim <= 1 and k in ("spacing", "original_shape"):
            v = v.tolist()
        if isinstance(v, str) and v == "":
            out[k] = None
        elif k == "spacing" and v is not None:
            vals = [float(s) for s in v]
            out[k] = None if any(math.isnan(s) for s in vals) else tuple(vals)
        elif k == "original_shape" and v is not None:
            out[k] = tuple(int(s) for s in v)
        else:
            out[k] = v
    return out


def _check_file(p: Path) -> None:
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file.")
    if p.is_dir():
        raise ValueError(f"{p}: expected a file, got a folder.")
    if p.stat().st_size == 0:
        raise ValueError(f"{p}: the file is empty.")


def _resolve_image_path(p: Path) -> Path:
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder.")
    if p.is_dir():
        images = list_dicom_images(p)
        if len(images) == 1:
            logger.info("%s: folder with one DICOM image, loading %s", p, images[0])
            return images[0]
        if not images:
            raise ValueError(f"{p}: the folder holds no single-frame DICOM image; give an image file.")
        raise ValueError(
            f"{p}: the folder holds {len(images)} DICOM images (e.g. {images[0].name}, {images[1].name}); "
            "pick one file, or use monai_jrs.data.dicom.list_dicom_images(folder) to iterate over them."
        )
    _check_file(p)
    return p


def _detect_format(p: Path) -> str:
    name = p.name.lower()
    if name.endswith(NIFTI_EXTENSIONS):
        return "nifti"
    if name.endswith(".npy"):
        return "numpy"
    if name.endswith(PIL_EXTENSIONS):
        return "pil"
    if is_dicom_file(p) or p.suffix.lower() in _DICOM_EXTENSIONS:
        return "dicom"
    with open(p, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"):
        return "pil"
    raise ValueError(
        f"{p}: unsupported file type; expected DICOM, {', '.join(PIL_EXTENSIONS)}, .nii, .nii.gz or .npy."
    )


def _check_finite(arr: np.ndarray, p: Path) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{p}: the image contains NaN or infinite values.")


def _read_pil(p: Path, as_mask: bool) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            n_frames = int(getattr(im, "n_frames", 1))
            mode = im.mode
            if n_frames > 1:
                raise ValueError(f"{p}: multi-frame image ({n_frames} frames); expected a single 2-D image.")
            if mode == "P" or mode == "PA":
                if as_mask:
                    arr = np.asarray(im.convert("P") if mode == "PA" else im)
                else:
                    arr = _luminance(np.asarray(im.convert("RGB"), dtype=np.float64))
                photometric = "PALETTE COLOR"
            elif mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
                rgb = np.asarray(im if mode in ("RGB", "RGBA", "RGBX") else im.convert("RGB"))
                arr = rgb[..., :3].max(axis=-1) if as_mask else _luminance(rgb.astype(np.float64))
                photometric = "RGB"
            elif mode in ("LA", "La"):
                arr = np.asarray(im)[..., 0]
                photometric = "MONOCHROME2"
            elif mode == "1":
                arr = np.asarray(im).astype(np.uint8)
                photometric = "MONOCHROME2"
            else:  # L, I;16*, I, F
                arr = np.asarray(im)
                photometric = "MONOCHROME2"
            # colour and palette modes hold 8-bit samples (arr is then float64 luminance)
            is_8bit = mode in ("P", "PA", "1", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "LA", "La")
            dtype_in = "uint8" if is_8bit else str(np.asarray(arr).dtype)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{p}: cannot read the image ({type(e).__name__}: {e}).") from e
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    meta = {
        "filename": str(p),
        "format": "pil",
        "spacing": None,
        "spacing_source": None,
        "photometric": photometric,
        "pil_mode": mode,
        "dtype_in": dtype_in,
    }
    return np.array(arr), meta


def _read_nifti(p: Path, layout: str) -> tuple[np.ndarray, dict[str, Any]]:
    import nibabel as nib

    try:
        img = nib.load(str(p))
        arr = np.asanyarray(img.dataobj)
    except Exception as e:
        raise ValueError(f"{p}: cannot read NIfTI ({type(e).__name__}: {e}).") from e
    dtype_in = str(arr.dtype)
    if arr.ndim > 2:
        extra = arr.shape[2:]
        if any(s != 1 for s in extra):
            raise ValueError(f"{p}: expected a 2-D NIfTI image, got array of shape {arr.shape}.")
        arr = arr.reshape(arr.shape[:2])
    if arr.ndim != 2:
        raise ValueError(f"{p}: expected a 2-D NIfTI image, got array of shape {arr.shape}.")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:2])
    unit = img.header.get_xyzt_units()[0]
    factor = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3}.get(unit, 1.0)
    spacing: tuple[float, float] | None = tuple(float(f"{z * factor:.6g}") for z in zooms)  # type: ignore[assignment]
    if unit == "unknown" and zooms == (1.0, 1.0):
        spacing = None  # nibabel's default pixdim: spacing was never set
    elif spacing is not None and not all(math.isfinite(s) and s > 0 for s in spacing):
        logger.warning("%s: ignoring invalid pixdim %s", p, zooms)
        spacing = None
    if layout == "cols_rows":
        arr = arr.T
        spacing = None if spacing is None else (spacing[1], spacing[0])
    meta = {
        "filename": str(p),
        "format": "nifti",
        "spacing": spacing,
        "spacing_source": None if spacing is None else "NIfTI header",
        "photometric": "MONOCHROME2",
        "dtype_in": dtype_in,
    }
    return np.array(arr), meta


def _read_numpy(p: Path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{p}: cannot read NumPy array ({type(e).__name__}: {e}).") from e
    if not isinstance(arr, np.ndarray) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{p}: expected a numeric .npy array, got {type(arr).__name__} of dtype {arr.dtype}.")
    dtype_in = str(arr.dtype)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{p}: expected an (H, W) or (1, H, W) array, got shape {arr.shape}.")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    meta = {
        "filename": str(p),
        "format": "numpy",
        "spacing": None,
        "spacing_source": None,
        "photometric": "MONOCHROME2",
        "dtype_in": dtype_in,
    }
    return arr, meta

