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
"""Readers for public chest X-ray sets with lung masks: JSRT + SCR, Montgomery and Shenzhen.

Each ``list_*`` function scans a dataset folder *as distributed* and returns single-image datalist items
(see :mod:`monai_jrs.data.datalist`)::

    {"patient_id": "MCUCXR_0001", "image": ".../CXR_png/MCUCXR_0001_0.png",
     "mask": "<output_dir>/montgomery/masks/MCUCXR_0001_0_lungs.png", "label": "normal"}

The left and right lung masks are merged into one {0, 1} ``uint8`` PNG (lungs = 1) written under a user-chosen
``output_dir``, which must lie outside the dataset folder: the dataset folder is only read. Existing merged files
are reused unless ``overwrite=True``, so ``output_dir`` doubles as a cache. Image and mask of one item always have
the same size and file format, so :class:`monai.transforms.LoadImaged` (whose PIL reader returns PNGs as
``(W, H)``) loads them on the same grid.

Layouts recognised by :func:`detect_dataset_layout` (the root may be the named set folder or its parent):

* **JSRT + SCR**: JSRT ``*.IMG`` files anywhere below the root (e.g. ``All247images/JPCLN001.IMG``) and SCR masks in
  folders named ``left lung`` and ``right lung`` (e.g. ``scratch/masks/left lung/JPCLN001.gif`` or
  ``scratch/fold1/masks/left lung/...``). ``JPCLN*`` (nodule cases) get label ``"diseased"``, ``JPCNN*``
  (non-nodule) ``"normal"``.
* **Montgomery**: ``MontgomerySet/CXR_png/MCUCXR_0001_0.png`` with ``ManualMask/leftMask/MCUCXR_0001_0.png`` and
  ``ManualMask/rightMask/MCUCXR_0001_0.png``.
* **Shenzhen**: ``ChinaSet_AllFiles/CXR_png/CHNCXR_0001_0.png`` with merged lung masks
  ``CHNCXR_0001_0_mask.png`` (the Kaggle lung-mask release) in a ``mask/`` or ``masks/`` folder inside the set
  folder or beside it. Not every image has a mask; those without are skipped and counted in the log.

For Montgomery and Shenzhen the file-name suffix ``_0``/``_1`` means normal/abnormal and becomes ``"label"``
(``"normal"``/``"diseased"``); the part before it is the ``patient_id``.

JSRT raw format and polarity: a JSRT ``.IMG`` file is a headerless 2048 x 2048 array of big-endian ``uint16``
holding 12-bit values, 0.175 mm pixels. The JSRT documentation gives "12-bit density resolution"; the values follow
film optical density, so the lungs (dark on film) have *high* values -- inverted with respect to a conventional
(DICOM MONOCHROME2) display, like MONOCHROME1. Public conversion scripts flip them for this reason.
:func:`read_jsrt_img` therefore returns ``(2**bits - 1) - raw`` by default (``invert=True``: lungs dark, bone
bright). We could not check this against a real JSRT file here (it cannot be downloaded in this environment): check
one image and pass ``invert=False`` if your copy is already in display polarity.

JSRT/SCR resampling: SCR masks are 1024 x 1024 (0.35 mm), half the JSRT resolution. ``resample_to="mask"`` (default)
reduces the image to the mask grid by 2 x 2 block averaging (the exact area average for an integer factor, no
aliasing); ``resample_to="image"`` enlarges the mask to 2048 x 2048 by nearest-neighbour replication. Non-integer
ratios use :func:`scipy.ndimage.zoom` (linear for images, nearest for masks). JSRT items carry ``"spacing"``
(``[row_mm, col_mm]`` of the written image), Montgomery items too when the image has its documented size
(4020 x 4892 or 4892 x 4020 at 0.0875 mm).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.utils.enums import StrEnum
from PIL import Image

from monai_jrs.utils.enums import JRSKeys

__all__ = [
    "PublicDatasetLayout",
    "JSRT_SHAPE",
    "JSRT_SPACING_MM",
    "MONTGOMERY_SPACING_MM",
    "read_jsrt_img",
    "read_binary_mask",
    "merge_lung_masks",
    "detect_dataset_layout",
    "list_jsrt",
    "list_montgomery",
    "list_shenzhen",
    "list_public_dataset",
]

logger = logging.getLogger(__name__)

#: matrix size of a JSRT ``.IMG`` file (rows, cols).
JSRT_SHAPE = (2048, 2048)
#: pixel size of JSRT images at full resolution, in mm.
JSRT_SPACING_MM = 0.175
#: pixel size of Montgomery images at their original size, in mm.
MONTGOMERY_SPACING_MM = 0.0875
_MONTGOMERY_SIZES = ((4020, 4892), (4892, 4020))

_IMAGE_KEY, _MASK_KEY, _LABEL_KEY = "image", "mask", "label"
_SUFFIX_LABEL = {"0": "normal", "1": "diseased"}
_NLM_NAME = re.compile(r"^(?P<pid>(?:MCUCXR|CHNCXR)_\d+)_(?P<flag>[01])$", re.IGNORECASE)
_MAX_SCAN_DEPTH = 5


class PublicDatasetLayout(StrEnum):
    """Folder layouts of the public lung-mask sets that :func:`detect_dataset_layout` recognises."""

    JSRT = "jsrt"
    MONTGOMERY = "montgomery"
    SHENZHEN = "shenzhen"


def read_jsrt_img(
    path: str | os.PathLike,
    shape: Sequence[int] | None = None,
    invert: bool = True,
    bits: int = 12,
) -> np.ndarray:
    """Read a headerless JSRT ``.IMG`` file (big-endian ``uint16``, ``bits`` significant bits).

    Args:
        path: the ``.IMG`` file.
        shape: ``(rows, cols)`` of the matrix; None infers a square matrix from the file size (2048 x 2048 for the
            real database).
        invert: return ``(2**bits - 1) - raw`` so that the result has display polarity (MONOCHROME2: lungs dark).
            See the module docstring for why JSRT raw values are inverted.
        bits: number of significant bits of the stored values.

    Returns:
        a ``(H, W)`` ``uint16`` array with values in ``[0, 2**bits - 1]``.

    Raises:
        ValueError: when the file size does not match ``shape`` (or is not a square matrix of ``uint16`` when
            ``shape`` is None), or when a value exceeds ``2**bits - 1`` (usually a little-endian file or the wrong
            format).
    """
    path = os.fspath(path)
    if not 1 <= int(bits) <= 16:
        raise ValueError(f"bits must be in [1, 16], got {bits}.")
    nbytes = os.path.getsize(path)
    if shape is None:
        side = int(round((nbytes / 2) ** 0.5))
        if nbytes % 2 or side * side * 2 != nbytes:
            raise ValueError(
                f"{path}: {nbytes} bytes is not a square matrix of 16-bit pixels (2048 x 2048 = 8388608 bytes for "
                "JSRT); pass shape=(rows, cols)."
            )
        shape = (side, side)
    rows, cols = (int(s) for s in shape)
    if rows * cols * 2 != nbytes:
        raise ValueError(f"{path}: expected {rows} x {cols} x 2 = {rows * cols * 2} bytes, got {nbytes}.")
    raw = np.fromfile(path, dtype=">u2").reshape(rows, cols).astype(np.uint16)
    vmax = (1 << int(bits)) - 1
    if raw.max(initial=0) > vmax:
        raise ValueError(
            f"{path}: found value {int(raw.max())} > {vmax} ({bits}-bit); is the file big-endian JSRT data?"
        )
    return (vmax - raw).astype(np.uint16) if invert else raw


def read_binary_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask image (PNG, GIF, ...) as a ``(H, W)`` {0, 1} ``uint8`` array.

    Pixels at or above half the file's maximum value are foreground, which works for 0/1, 0/255 and anti-aliased
    masks. Palette and colour images are converted to luminance first; an all-zero file gives an all-zero mask.
    """
    with Image.open(os.fspath(path)) as im:
        if im.mode not in ("1", "L", "I", "I;16", "F"):
            im = im.convert("L")
        arr = np.asarray(im)
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel mask, got array shape {arr.shape}.")
    vmax = arr.max(initial=0)
    if vmax <= 0:
        return np.zeros(arr.shape, dtype=np.uint8)
    return (arr >= vmax / 2.0).astype(np.uint8)


def merge_lung_masks(*masks: np.ndarray) -> np.ndarray:
    """Union of several ``(H, W)`` masks as a {0, 1} ``uint8`` array.

    Raises:
        ValueError: when no mask is given or the shapes differ.
    """
    if not masks:
        raise ValueError("merge_lung_masks needs at least one mask.")
    shapes = {tuple(m.shape) for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"all masks must have the same shape, got {sorted(shapes)}.")
    out = np.zeros(masks[0].shape, dtype=bool)
    for m in masks:
        out |= np.asarray(m) > 0
    return out.astype(np.uint8)


def detect_dataset_layout(root: str | os.PathLike) -> PublicDatasetLayout:
    """Recognise which public-set layout a folder has (see the module docstring).

    Raises:
        ValueError: when ``root`` is not a folder, no layout matches (the message lists what was looked for), or
            several do.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"dataset root {root!r} is not a folder.")
    found = []
    if _find_montgomery(root) is not None:
        found.append(PublicDatasetLayout.MONTGOMERY)
    if _find_shenzhen(root) is not None:
        found.append(PublicDatasetLayout.SHENZHEN)
    if _find_jsrt(root) is not None:
        found.append(PublicDatasetLayout.JSRT)
    if not found:
        raise ValueError(
            f"{root!r} has no known lung-mask dataset layout. Expected one of: "
            "Montgomery ('[MontgomerySet/]CXR_png/*.png' + 'ManualMask/leftMask', 'ManualMask/rightMask'); "
            "Shenzhen ('[ChinaSet_AllFiles/]CXR_png/CHNCXR_*.png' + a 'mask' or 'masks' folder); "
            "JSRT + SCR ('*.IMG' files + SCR 'left lung' / 'right lung' mask folders)."
        )
    if len(found) > 1:
        raise ValueError(f"{root!r} matches several layouts {[str(f) for f in found]}; pass a narrower folder.")
    return found[0]


def list_jsrt(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    resample_to: str = "mask",
    invert: bool = True,
    overwrite: bool = False,
) -> list[dict]:
    """List JSRT images with SCR lung masks, writing display-polarity images and merged masks to ``output_dir``.

    Images are converted (see :func:`read_jsrt_img`) and written as 16-bit PNGs (12-bit values) under
    ``output_dir/jsrt/images``; merged masks go to ``output_dir/jsrt/masks`` as ``<stem>_lungs.png``.

    Args:
        root: folder holding the JSRT ``.IMG`` files and the SCR mask folders.
        output_dir: where converted images and merged masks are written; must lie outside ``root``.
        resample_to: ``"mask"`` (image reduced to the SCR mask grid, 1024 x 1024 at 0.35 mm) or ``"image"`` (mask
            enlarged to the JSRT grid, 2048 x 2048 at 0.175 mm).
        invert: passed to :func:`read_jsrt_img`.
        overwrite: rewrite files that already exist in ``output_dir``.

    Returns:
        items ``{"patient_id", "image", "mask", "label", "spacing"}`` sorted by file name. Images without both SCR
        lung masks are skipped and counted in the log.

    Raises:
        ValueError: when the layout is not found, ``output_dir`` is inside ``root``, or ``resample_to`` is invalid.
    """
    if resample_to not in ("mask", "image"):
        raise ValueError(f"resample_to must be 'mask' or 'image', got {resample_to!r}.")
    root = os.fspath(root)
    found = _find_jsrt(root)
    if found is None:
        raise ValueError(f"{root!r} does not have the JSRT + SCR layout ('*.IMG' files and 'left lung' mask folders).")
    images, left_dirs, right_dirs = found
    out_img, out_mask = _prepare_output(root, output_dir, PublicDatasetLayout.JSRT, ("images", "masks"))
    left, right = _index_by_stem(left_dirs), _index_by_stem(right_dirs)
    items, skipped = [], []
    for img_path in images:
        stem = os.path.splitext(os.path.basename(img_path))[0]
        key = stem.upper()
        if key not in left or key not in right:
            skipped.append(stem)
            continue
        img_file = os.path.join(out_img, f"{stem}.png")
        mask_file = os.path.join(out_mask, f"{stem}_lungs.png")
        raw_shape = JSRT_SHAPE
        if overwrite or not (os.path.isfile(img_file) and os.path.isfile(mask_file)):
            image = read_jsrt_img(img_path, invert=invert)
            raw_shape = image.shape
            mask = merge_lung_masks(read_binary_mask(left[key]), read_binary_mask(right[key]))
            if resample_to == "mask":
                image = _resize_image(image, mask.shape)
            else:
                mask = _resize_mask(mask, image.shape)
            _write_png(img_file, image.astype(np.uint16))
            _write_png(mask_file, mask)
        else:
            raw_shape = _raw_shape(img_path)
        with Image.open(img_file) as im:
            out_cols, out_rows = im.size
        spacing = [JSRT_SPACING_MM * raw_shape[0] / out_rows, JSRT_SPACING_MM * raw_shape[1] / out_cols]
        items.append(
            {
                JRSKeys.PATIENT_ID.value: stem,
                _IMAGE_KEY: img_file,
                _MASK_KEY: mask_file,
                _LABEL_KEY: "diseased" if key.startswith("JPCLN") else "normal",
                "spacing": spacing,
            }
        )
    _log_summary(PublicDatasetLayout.JSRT, root, len(items), skipped, "without both SCR lung masks")
    return items


def list_montgomery(root: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool = False) -> list[dict]:
    """List Montgomery images with their merged left + right lung masks (written to ``output_dir``).

    Args:
        root: the ``MontgomerySet`` folder or its parent.
        output_dir: where merged masks are written (``output_dir/montgomery/masks``); must lie outside ``root``.
        overwrite: rewrite masks that already exist.

    Returns:
        items ``{"patient_id", "image", "mask", "label", "spacing"?}`` sorted by file name; the image path points
        into the dataset folder. Images without both masks are skipped and counted in the log.

    Raises:
        ValueError: when the layout is not found or ``output_dir`` is inside ``root``; when a left and right mask
            differ in size.
    """
    root = os.fspath(root)
    set_dir = _find_montgomery(root)
    if set_dir is None:
        raise ValueError(
            f"{root!r} does not have the Montgomery layout ('[MontgomerySet/]CXR_png' + 'ManualMask/leftMask', "
            "'ManualMask/rightMask')."
        )
    (out_mask,) = _prepare_output(root, output_dir, PublicDatasetLayout.MONTGOMERY, ("masks",))
    left = _index_by_stem([os.path.join(set_dir, "ManualMask", "leftMask")])
    right = _index_by_stem([os.path.join(set_dir, "ManualMask", "rightMask")])
    items, skipped = [], []
    for img_path in _list_files(os.path.join(set_dir, "CXR_png"), (".png",)):
        stem = os.path.splitext(os.path.basename(img_path))[0]
        key = stem.upper()
        if key not in left or key not in right:
            skipped.append(stem)
            continue
        mask_file = os.path.join(out_mask, f"{stem}_lungs.png")
        image_size = _image_size(img_path)  # (rows, cols)
        if overwrite or not os.path.isfile(mask_file):
            mask = merge_lung_masks(read_binary_mask(left[key]), read_binary_mask(right[key]))
            _write_png(mask_file, _match_mask(mask, image_size, img_path))
        item = {JRSKeys.PATIENT_ID.value: _nlm_patient_id(stem), _IMAGE_KEY: img_path, _MASK_KEY: mask_file}
        item.update(_nlm_label(stem))
        if image_size in _MONTGOMERY_SIZES:
            item["spacing"] = [MONTGOMERY_SPACING_MM, MONTGOMERY_SPACING_MM]
        items.append(item)
    _log_summary(PublicDatasetLayout.MONTGOMERY, root, len(items), skipped, "without both lung masks")
    return items


def list_shenzhen(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    mask_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> list[dict]:
    """List Shenzhen images that have a lung mask; masks are re-written as {0, 1} files under ``output_dir``.

    Args:
        root: the ``ChinaSet_AllFiles`` folder or its parent.
        output_dir: where binarised masks are written (``output_dir/shenzhen/masks``); must lie outside ``root``.
        mask_dir: folder of the ``CHNCXR_xxxx_y_mask.png`` files; default: ``mask/`` or ``masks/`` in the set
            folder, else beside it.
        overwrite: rewrite masks that already exist.

    Returns:
        items ``{"patient_id", "image", "mask", "label"}`` sorted by file name. Images without a mask (the Kaggle
        release covers only part of the set) are skipped, with their count logged.

    Raises:
        ValueError: when the layout or the mask folder is not found, or ``output_dir`` is inside ``root``.
    """
    root = os.fspath(root)
    set_dir = _find_shenzhen(root, mask_dir)
    if set_dir is None:
        raise ValueError(
            f"{root!r} does not have the Shenzhen layout ('[ChinaSet_AllFiles/]CXR_png/CHNCXR_*.png' and a 'mask' or "
            "'masks' folder)."
        )
    mdir = os.fspath(mask_dir) if mask_dir is not None else _shenzhen_mask_dir(root, set_dir)
    if mdir is None or not os.path.isdir(mdir):
        raise ValueError(f"Shenzhen mask folder not found (looked for {mdir or 'mask/ or masks/'} under {root!r}).")
    (out_mask,) = _prepare_output(root, output_dir, PublicDatasetLayout.SHENZHEN, ("masks",))
    masks = {}
    for p in _list_files(mdir, (".png",)):
        s = os.path.splitext(os.path.basename(p))[0]
        masks[(s[: -len("_mask")] if s.lower().endswith("_mask") else s).upper()] = p
    items, skipped = [], []
    for img_path in _list_files(os.path.join(set_dir, "CXR_png"), (".png",)):
        stem = os.path.splitext(os.path.basename(img_path))[0]
        if stem.upper() not in masks:
            skipped.append(stem)
            continue
        mask_file = os.path.join(out_mask, f"{stem}_lungs.png")
        if overwrite or not os.path.isfile(mask_file):
            mask = read_binary_mask(masks[stem.upper()])
            _write_png(mask_file, _match_mask(mask, _image_size(img_path), img_path))
        item = {JRSKeys.PATIENT_ID.value: _nlm_patient_id(stem), _IMAGE_KEY: img_path, _MASK_KEY: mask_file}
        item.update(_nlm_label(stem))
        items.append(item)
    _log_summary(PublicDatasetLayout.SHENZHEN, root, len(items), skipped, "without a lung mask")
    return items


def list_public_dataset(root: str | os.PathLike, output_dir: str | os.PathLike, **kwargs: Any) -> list[dict]:
    """Detect the layout of ``root`` (:func:`detect_dataset_layout`) and call the matching ``list_*`` reader.

    Args:
        root: the dataset folder.
        output_dir: where merged masks (and converted JSRT images) are written; must lie outside ``root``.
        kwargs: passed to the reader (e.g. ``resample_to`` for JSRT, ``mask_dir`` for Shenzhen).
    """
    readers = {
        PublicDatasetLayout.JSRT: list_jsrt,
        PublicDatasetLayout.MONTGOMERY: list_montgomery,
        PublicDatasetLayout.SHENZHEN: list_shenzhen,
    }
    return readers[detect_dataset_layout(root)](root, output_dir, **kwargs)


# ---------------------------------------------------------------------------------------------------------- helpers


def _list_files(folder: str, exts: Sequence[str]) -> list[str]:
    if not os.path.isdir(folder):
        return []
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(tuple(exts)) and not n.startswith("."))
    return [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]


def _index_by_stem(folders: Sequence[str]) -> dict[str, str]:
    """Map upper-case file stems to paths of the image files in ``folders`` (first folder wins)."""
    out: dict[str, str] = {}
    for folder in folders:
        for p in _list_files(folder, (".gif", ".png", ".bmp", ".tif", ".tiff")):
            out.setdefault(os.path.splitext(os.path.basename(p))[0].upper(), p)
    return out


def _walk(root: str, max_depth: int = _MAX_SCAN_DEPTH):
    """``os.walk`` limited to ``max_depth`` levels below ``root`` (sorted, hidden folders skipped)."""
    base = root.rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if dirpath.count(os.sep) - base >= max_depth:
            dirnames[:] = []
        yield dirpath, dirnames, sorted(filenames)


def _find_jsrt(root: str) -> tuple[list[str], list[str], list[str]] | None:
    images, left, right = [], [], []
    for dirpath, _, filenames in _walk(root):
        name = os.path.basename(dirpath).lower()
        if name == "left lung":
            left.append(dirpath)
        elif name == "right lung":
            right.append(dirpath)
        images.extend(os.path.join(dirpath, f) for f in filenames if f.lower().endswith(".img"))
    if not images or not left or not right:
        return None
    images.sort(key=lambda p: os.path.basename(p).upper())
    return images, left, right


def _find_montgomery(root: str) -> str | None:
    for cand in (os.path.join(root, "MontgomerySet"), root):
        if os.path.isdir(os.path.join(cand, "CXR_png")) and all(
            os.path.isdir(os.path.join(cand, "ManualMask", m)) for m in ("leftMask", "rightMask")
        ):
            return cand
    return None


def _find_shenzhen(root: str, mask_dir: str | os.PathLike | None = None) -> str | None:
    for cand in (os.path.join(root, "ChinaSet_AllFiles"), root):
        cxr = os.path.join(cand, "CXR_png")
        if not os.path.isdir(cxr) or not any(n.upper().startswith("CHNCXR_") for n in os.listdir(cxr)):
            continue
        if mask_dir is not None or _shenzhen_mask_dir(root, cand) is not None:
            return cand
    return None


def _shenzhen_mask_dir(root: str, set_dir: str) -> str | None:
    for base in dict.fromkeys((set_dir, root, os.path.dirname(os.path.abspath(set_dir)))):
        for name in ("mask", "masks"):
            if os.path.isdir(os.path.join(base, name)):
                return os.path.join(base, name)
    return None


def _prepare_output(root: str, output_dir: str | os.PathLike, layout: str, subdirs: Sequence[str]) -> list[str]:
    """Create ``output_dir/<layout>/<subdir>`` folders after checking that they are outside ``root``."""
    out = os.path.realpath(os.fspath(output_dir))
    real_root = os.path.realpath(root)
    if os.path.commonpath([out, real_root]) == real_root:
        raise ValueError(
            f"output_dir {os.fspath(output_dir)!r} is inside the dataset folder {root!r}; choose a folder outside "
            "it (the dataset folder is never written to)."
        )
    folders = [os.path.join(out, str(layout), s) for s in subdirs]
    for f in folders:
        os.makedirs(f, exist_ok=True)
    return folders


def _write_png(path: str, array: np.ndarray) -> None:
    """Write a 2-D ``uint8`` or ``uint16`` array as a PNG, atomically (temporary file + rename)."""
    tmp = f"{path}.tmp{os.getpid()}.png"
    Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
    os.replace(tmp, path)


def _image_size(path: str) -> tuple[int, int]:
    """(rows, cols) of an image file, read from its header only."""
    with Image.open(path) as im:
        cols, rows = im.size
    return rows, cols


def _raw_shape(path: str) -> tuple[int, int]:
    side = int(round((os.path.getsize(path) / 2) ** 0.5))
    return side, side


def _resize_image(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resize a 2-D image: block mean for integer reduction factors, else linear interpolation."""
    if tuple(image.shape) == tuple(shape):
        return image
    (h, w), (th, tw) = image.shape, shape
    if h % th == 0 and w % tw == 0:
        fh, fw = h // th, w // tw
        out = image.astype(np.float64).reshape(th, fh, tw, fw).mean(axis=(1, 3))
    else:
        from scipy import ndimage

        out = ndimage.zoom(image.astype(np.float64), (th / h, tw / w), order=1, grid_mode=True, mode="nearest")
    return np.clip(np.rint(out), 0, np.iinfo(image.dtype).max).astype(image.dtype)


def _resize_mask(mask: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resize a 2-D {0, 1} mask with nearest-neighbour sampling (exact replication for integer factors)."""
    if tuple(mask.shape) == tuple(shape):
        return mask
    (h, w), (th, tw) = mask.shape, shape
    if th % h == 0 and tw % w == 0:
        return np.repeat(np.repeat(mask, th // h, axis=0), tw // w, axis=1)
    from scipy import ndimage

    return ndimage.zoom(mask, (th / h, tw / w), order=0, grid_mode=True, mode="nearest").astype(mask.dtype)


def _match_mask(mask: np.ndarray, image_size: tuple[int, int], image_path: str) -> np.ndarray:
    if tuple(mask.shape) != tuple(image_size):
        logger.warning("mask for %s is %s, image is %s; resizing the mask (nearest)", image_path, mask.shape,
                       image_size)
        return _resize_mask(mask, image_size)
    return mask


def _nlm_patient_id(stem: str) -> str:
    m = _NLM_NAME.match(stem)
    return m.group("pid") if m else stem


def _nlm_label(stem: str) -> dict[str, str]:
    m = _NLM_NAME.match(stem)
    return {_LABEL_KEY: _SUFFIX_LABEL[m.group("flag")]} if m else {}


def _log_summary(layout: str, root: str, n: int, skipped: list[str], why: str) -> None:
    if skipped:
        logger.info("%s (%s): %d item(s); skipped %d image(s) %s (e.g. %s)", layout, root, n, len(skipped), why,
                    ", ".join(skipped[:3]))
    else:
        logger.info("%s (%s): %d item(s)", layout, root, n)
