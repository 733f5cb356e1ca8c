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
"""Development benchmark on real chest radiographs: known synthetic deformations of two public PA images.

Images (downloaded at run time into ``--cache``, never stored in the repository; nothing derived from them is either):

- ``rg1``: ``data_store/data/RG1_UNCI.dcm`` of the ``pydicom-data`` 1.0.0 wheel (MIT licence), a real PA chest CR,
  1955 x 1841, MONOCHROME1, 15 of 16 bits, window 15000/30000, a lossy-compression history (LossyImageCompression
  01) and ``PixelSpacing`` ``0.000\\0.000``. The wheel is fetched with ``python -m pip download --no-deps
  pydicom-data==1.0.0`` and the file read out of it with :mod:`zipfile`, then loaded with
  :func:`monai_jrs.data.io.load_xray`: the window is applied (it spans the whole 15-bit range, so it is nearly
  linear), MONOCHROME1 is inverted (air dark), intensities are clipped to the 0.5/99.5 percentiles and scaled to
  ``[0, 1]``. The loader rejects the zero spacing as invalid (a logged warning), so the spacing is *unknown* (None),
  never 0, and every distance here is in pixels.
- ``montgomery``: ``bob/med/tb/test/data/raw_without_black_border.png`` in the source distribution of
  ``bob.med.tb`` 1.0.2 (GPLv3; a PA radiograph of the Montgomery County TB set), 512 x 520, 8 bits. ``pip
  download`` cannot fetch that sdist, so its files.pythonhosted.org address is read from the PyPI simple index
  (``https://pypi.org/simple/bob-med-tb/``) and the zip is downloaded with :mod:`urllib` (SHA-256 checked); the PNG
  is read out of the zip at run time. **GPL**: never commit the image or any picture derived from it (the PNGs
  this script writes show it).
- optionally (``--drr DATASET_DIR``) the test patients of the embedded DRR dataset (``python -m
  monai_jrs.data.embedded --output DIR --size 512``; its ``datalist_images.json`` section ``test``, the first image
  of every patient), with their true lung masks.

Working grid: every image is made square by centre-cropping its longer axis to the shorter one (RG1 loses 57 rows
top and bottom, Montgomery 4 rows), then resized to ``--size`` x ``--size`` with antialiased bilinear interpolation.
All TRE values are in pixels of that grid.

Reference lung mask: real images come without annotation, so :func:`two_ellipse_lung_mask` draws a *rough*
automatic mask: one ellipse per lung fitted (second moments) to the largest dark region on each side of the
mediastinum (the brightest column of the central band). It is plausible, not accurate; ``real_dev_masks.png``
shows it. Lung TRE and Dice therefore measure agreement on an ellipse-shaped region around the lungs, not on
delineated lungs.

Pairs: ``--pairs`` seeded deformations of every image per protocol, sampled by
:class:`~monai_jrs.transforms.RandSyntheticDeformation` (exact B-spline inverse; pixel ranges for a 512 grid,
scaled to ``--size``; no Dice rejection):

- ``followup``: rotation 2-10 degrees either sign, shift 5-25 px in any direction, isotropic scale 0.93-1.07, cubic
  B-spline elastic field (control points every 64 px) with maximum displacement 1-8 px;
- ``paper``: rotation 20-180 degrees either sign, shift 25-40 px along an axis, elastic field of 1-15 px.

``floating = warp(reference, psi)`` (zero padding) with the sampling field ``psi``, and the ground truth is the
exact inverse on the reference grid, ``ddf_applied``: ``floating(p + ddf_applied(p)) = reference(p)``, the DDF
convention of ``docs/DESIGN.md`` (``registered(p) = floating(p + ddf(p))``, channel 0 along rows). The floating lung
mask is the reference mask warped the same way. Then an exposure change on the floating image
(:class:`~monai_jrs.transforms.RandFollowUpAppearance`: gamma 0.7-1.4, contrast 0.85-1.15, brightness +/-0.05,
Gaussian noise of std 0.005-0.015, clipped to ``[0, 1]``), seeded per pair.

Methods (``--methods``; all on the same pairs, in the same run, with ``--threads`` CPU threads): ``before`` (zero
field), ``jrs-norefine`` = ``monai-jrs --no-refine`` (``JRSRegistrar(refine=False)``), ``jrs`` = ``monai-jrs``
(``JRSRegistrar(refine=True)``, the default mode) and ``elastix`` (``benchmarks/methods.py``, the paper's affine +
B-spline settings). The JRS modes are called in memory through ``registrar.inferer``; their per-stage timings are
reported. Add a method by adding an entry to :data:`METHODS`.

Metrics per pair and method (:func:`monai_jrs.metrics.evaluate_registration`, pixels):

- ``tre_fov_mean``/``tre_fov_p95``: ``|recovered - applied|`` over every reference pixel whose true correspondence
  lies inside the floating image (whole field of view);
- ``tre_lung_mean``/``tre_lung_p95``: the same inside the (rough) reference lung mask;
- ``dice``: the floating lung mask warped by the recovered field vs the reference mask, in percent;
- ``folding_pct``: pixels with a non-positive Jacobian determinant of the recovered field, percent;
- ``seconds``: wall time of the in-memory call, after one warm-up pair per method.

Marginal time per additional pair, with files: the floating images of the first image are written as 16-bit PNGs
(with the reference and its mask), and ``JRSRegistrar.register(reference, mask, floats, out)`` is timed for all N
of them and for one (same registrar, warm): ``(T_N - T_1) / (N - 1)``, outputs written. For elastix (and any other
method) it is the in-memory time plus reading the floating PNG (:func:`~monai_jrs.data.io.load_xray`), warping it
and writing the registered image as a 16-bit PNG. The ratio elastix / JRS is reported per JRS mode.

Writes ``real_dev.md``, ``real_dev.csv`` (one row per pair and method), ``real_dev_examples.png`` and
``real_dev_masks.png`` to ``--output``::

    python benchmarks/real_dev.py --output docs/real_dev --pairs 16 --threads 2 --seed 0 --size 512

Local images instead of downloads (tests, offline runs): ``--image-file NAME=PATH`` (repeatable; ``PATH`` may be
``ARCHIVE.zip::MEMBER``); given alone, only those images are used.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import logging
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from methods import ElastixMethod, Identity  # noqa: E402

from monai_jrs.metrics import evaluate_registration  # noqa: E402
from monai_jrs.utils.conventions import warp  # noqa: E402

logger = logging.getLogger(__name__)

# -- data sources ----------------------------------------------------------------------------------------------------
PYDICOM_DATA_REQUIREMENT = "pydicom-data==1.0.0"
PYDICOM_DATA_WHEEL = "pydicom_data-1.0.0-py3-none-any.whl"
PYDICOM_DATA_SHA256 = "622ac97265f1d91f76b5120b5bd6eb0f57737c392ef863b72c71779c91e33637"
RG1_MEMBER = "data_store/data/RG1_UNCI.dcm"
BOB_PROJECT = "bob-med-tb"
BOB_SDIST = "bob.med.tb-1.0.2.zip"
BOB_SHA256 = "eff0fd48e01dd9e249e79adc9b67bfdc9532478e2e44cb3c416fc44cc022a64c"
MONTGOMERY_MEMBER = "bob.med.tb-1.0.2/bob/med/tb/test/data/raw_without_black_border.png"
PYPI_SIMPLE = "https://pypi.org/simple"
DEFAULT_CACHE = Path("~/.cache/monai_jrs/real_dev")

#: name -> (description, licence) of the downloadable images.
REMOTE_IMAGES: dict[str, tuple[str, str]] = {
    "rg1": (f"`{RG1_MEMBER}` of the `{PYDICOM_DATA_WHEEL}` wheel (PyPI): real PA chest CR, MONOCHROME1, 15 bits, "
            "PixelSpacing 0.000\\0.000 (spacing unknown: pixels)", "MIT (pydicom-data)"),
    "montgomery": (f"`{MONTGOMERY_MEMBER}` of the `{BOB_SDIST}` sdist (PyPI): PA radiograph of the Montgomery County "
                   "TB set", "GPLv3 (bob.med.tb): do not commit the image or pictures of it"),
}

# -- protocols (pixel amounts for a 512 x 512 grid) -------------------------------------------------------------------
REFERENCE_GRID = 512
PROTOCOLS: dict[str, dict[str, Any]] = {
    "followup": {
        "rotation_range": (2.0, 10.0), "rotation_step": 0.0, "translation_range": (5.0, 25.0),
        "translation_direction": "any", "scale_range": (0.0, 0.07), "elastic_range": (1.0, 8.0),
    },
    "paper": {
        "rotation_range": (20.0, 180.0), "rotation_step": 0.0, "translation_range": (25.0, 40.0),
        "translation_direction": "axis", "scale_range": (0.0, 0.0), "elastic_range": (1.0, 15.0),
    },
}
#: exposure change of the floating image (RandFollowUpAppearance ranges).
EXPOSURE: dict[str, tuple[float, float]] = {
    "gamma_range": (0.7, 1.4), "contrast_range": (0.85, 1.15), "brightness_range": (-0.05, 0.05),
    "noise_std_range": (0.005, 0.015), "blur_sigma_range": (0.0, 0.0),
}

#: (csv key, Markdown header, format)
METRIC_COLUMNS = (
    ("tre_fov_mean", "TRE FOV mean", "{:.2f}"),
    ("tre_fov_p95", "TRE FOV p95", "{:.2f}"),
    ("tre_lung_mean", "TRE lung mean", "{:.2f}"),
    ("tre_lung_p95", "TRE lung p95", "{:.2f}"),
    ("dice", "Dice %", "{:.1f}"),
    ("folding_pct", "folding %", "{:.3f}"),
    ("seconds", "s / pair", "{:.2f}"),
)


# =====================================================================================================================
# archives and downloads
# =====================================================================================================================
def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_zip_member(archive: str | os.PathLike, member: str) -> bytes:
    """The bytes of ``member`` in a zip archive (a wheel or a zip sdist).

    Raises:
        FileNotFoundError: no archive, or no such member (the message lists a few members).
        ValueError: not a zip archive.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist.")
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                return zf.read(member)
            except KeyError:
                names = zf.namelist()
                raise FileNotFoundError(f"{archive} has no member {member!r} (it holds e.g. {names[:5]}).") from None
    except zipfile.BadZipFile as e:
        raise ValueError(f"{archive} is not a zip archive: {e}") from e


def load_image_from_zip(archive: str | os.PathLike, member: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """Load a radiograph stored in a zip archive with :func:`monai_jrs.data.io.load_xray`.

    The member is written to a temporary file (``load_xray`` reads files) that is deleted right after loading.
    Warnings of the loader (e.g. an invalid DICOM spacing) are logged and returned in ``meta["warnings"]``.

    Returns:
        ``(image, meta)``: ``(1, H, W)`` float32 in ``[0, 1]`` and the loader's meta (``spacing`` None when unknown),
        with ``archive`` and ``member`` added.
    """
    from monai_jrs.data.io import load_xray

    data = read_zip_member(archive, member)
    with tempfile.TemporaryDirectory(prefix="rdev_") as tmp:
        path = Path(tmp) / Path(member).name
        path.write_bytes(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image, meta = load_xray(path)
    messages = [str(w.message).replace(str(path), f"{Path(archive).name}::{member}") for w in caught]
    for m in messages:
        logger.info("loader: %s", m)
    meta = dict(meta, archive=str(archive), member=member, warnings=messages, filename=f"{archive}::{member}")
    return image, meta


def fetch_pydicom_data_wheel(cache: str | os.PathLike) -> Path:
    """The ``pydicom-data`` 1.0.0 wheel in ``cache``, downloaded with ``pip download --no-deps`` when missing."""
    cache = Path(cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / PYDICOM_DATA_WHEEL
    if not wheel.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", PYDICOM_DATA_REQUIREMENT, "-d", str(cache)]
        logger.info("downloading %s: %s", PYDICOM_DATA_REQUIREMENT, shlex.join(cmd))
        subprocess.run(cmd, check=True)
    _check_sha256(wheel, PYDICOM_DATA_SHA256)
    return wheel


def find_distribution_url(project: str, filename: str, index: str = PYPI_SIMPLE) -> tuple[str, str | None]:
    """The download address of ``filename`` in a PEP 503 simple index, and its SHA-256 from the link fragment.

    Raises:
        FileNotFoundError: the index page of ``project`` does not list ``filename``.
    """
    page = f"{index.rstrip('/')}/{project}/"
    request = urllib.request.Request(page, headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read().decode("utf-8", "replace")
    for href in re.findall(r'href="([^"]+)"', text):
        url, _, fragment = urllib.parse.urljoin(page, html.unescape(href)).partition("#")
        if url.rsplit("/", 1)[-1] == filename:
            digest = fragment.split("=", 1)[1] if fragment.startswith("sha256=") else None
            return url, digest
    raise FileNotFoundError(f"{page} does not list {filename}.")


def fetch_bob_med_tb_sdist(cache: str | os.PathLike, index: str = PYPI_SIMPLE) -> Path:
    """The ``bob.med.tb`` 1.0.2 zip sdist in ``cache``, downloaded with :mod:`urllib` when missing (GPLv3)."""
    cache = Path(cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / BOB_SDIST
    if not path.is_file():
        url, digest = find_distribution_url(BOB_PROJECT, BOB_SDIST, index)
        if digest is not None and digest != BOB_SHA256:
            raise ValueError(f"the index lists {BOB_SDIST} with SHA-256 {digest}, expected {BOB_SHA256}.")
        logger.info("downloading %s", url)
        partial = path.with_name(path.name + f".partial-{os.getpid()}")
        with urllib.request.urlopen(url, timeout=300) as response, open(partial, "wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
        os.replace(partial, path)
    _check_sha256(path, BOB_SHA256)
    return path


def _check_sha256(path: Path, expected: str) -> None:
    digest = sha256_file(path)
    if digest != expected:
        raise ValueError(f"{path} has SHA-256 {digest}, expected {expected}; delete it and run again.")


# =====================================================================================================================
# images on the working grid and their masks
# =====================================================================================================================
def to_working_grid(image: torch.Tensor, size: int, is_mask: bool = False) -> torch.Tensor:
    """``(1, H, W)`` -> ``(1, size, size)``: centre-crop the longer axis to the shorter, then resize.

    Antialiased bilinear for images (clipped to ``[0, 1]``); masks are resized the same way and thresholded at 0.5.
    """
    h, w = image.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = image[..., top:top + s, left:left + s].float()
    if s != size:
        sq = F.interpolate(sq[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return (sq > 0.5).float() if is_mask else sq.clamp(0.0, 1.0)


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu threshold of a 1-D array (between-class variance maximised over a histogram)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1e-12)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between[:-1]))]) if len(between) > 1 else float(centres[0])


def ellipse_mask(
    shape: Sequence[int], centre: Sequence[float], axes: Sequence[float], angle: float = 0.0
) -> np.ndarray:
    """Bool ``(H, W)`` filled ellipse: ``centre`` ``(row, col)``, semi-axes ``(along rows, along cols)`` before the
    rotation by ``angle`` radians (counter-clockwise as displayed)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    v = c * dy + s * dx  # along the (rotated) row axis
    u = -s * dy + c * dx  # along the (rotated) column axis
    return (v / max(axes[0], 1e-6)) ** 2 + (u / max(axes[1], 1e-6)) ** 2 <= 1.0


def two_ellipse_lung_mask(image: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
    """A rough automatic lung mask: two ellipses placed on the dark lung fields of a PA radiograph.

    1. Smooth (Gaussian, sigma = 1 % of the size); the midline is the brightest column (mediastinum, spine) of the
       central band (rows 30-70 %, columns 35-65 %).
    2. On each side (columns 3 % .. midline - 2 %, midline + 2 % .. 97 %; rows 10-95 %), pixels darker than the
       side's Otsu threshold, opened with a disk of 2 % of the size to cut thin bridges to the outside air.
    3. The largest component whose centroid lies in a plausible lung box (rows 20-75 %, columns 8-47 % / 53-92 %),
       holes filled, gives one ellipse from its second moments (semi-axes ``2 sqrt(eigenvalue)``, exact for a filled
       ellipse). A side without one takes the other side's ellipse mirrored about the midline, or a prior ellipse
       (centre at 45 % of the height and 28 % / 72 % of the width, semi-axes 30 % x 13 %).
    4. Each ellipse is clipped to its side of the midline (a gap of 1 % of the width), so there are two components.

    This is not a segmentation: it covers the lung fields roughly (it cuts the costophrenic angles and may take in
    some mediastinum or soft tissue), which is all the lung-region statistics here need.

    Args:
        image: ``(1, H, W)`` or ``(H, W)`` radiograph in ``[0, 1]``, air and lungs dark.

    Returns:
        ``(mask, info)``: ``(1, H, W)`` float {0, 1}; ``info`` with ``midline`` (column) and per side ``ellipses``
        (``centre``, ``axes``, ``angle``, ``source``: ``"detected"``, ``"mirrored"`` or ``"prior"``).
    """
    from scipy import ndimage

    img = np.asarray(image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image, dtype=np.float64)
    img = img.reshape(img.shape[-2:])
    h, w = img.shape
    g = ndimage.gaussian_filter(img, sigma=max(h, w) / 100.0)
    r0, r1 = int(0.3 * h), max(int(0.7 * h), int(0.3 * h) + 1)
    c_lo, c_hi = int(0.35 * w), max(int(0.65 * w), int(0.35 * w) + 1)
    midline = c_lo + int(np.argmax(g[r0:r1, c_lo:c_hi].mean(axis=0)))
    gap = max(1, int(round(0.02 * w)))
    radius = max(1, int(round(0.02 * max(h, w))))
    disk = np.hypot(*np.mgrid[-radius:radius + 1, -radius:radius + 1]) <= radius
    rows = (int(0.1 * h), max(int(0.95 * h), int(0.1 * h) + 1))
    sides = (
        ("right lung (image left)", (int(0.03 * w), midline - gap), (0.08, 0.47)),
        ("left lung (image right)", (midline + gap, int(0.97 * w)), (0.53, 0.92)),
    )
    found: list[dict[str, Any] | None] = []
    for _, (lo, hi), (box_lo, box_hi) in sides:
        found.append(None)
        if hi - lo < 3:
            continue
        window = g[rows[0]:rows[1], lo:hi]
        dark = np.zeros((h, w), dtype=bool)
        dark[rows[0]:rows[1], lo:hi] = window < _otsu(window.ravel())
        dark = ndimage.binary_opening(dark, structure=disk)
        labels, n = ndimage.label(dark)
        best, best_area = None, 0
        for i in range(1, n + 1):
            comp = labels == i
            area = int(comp.sum())
            ys, xs = np.nonzero(comp)
            cy, cx = ys.mean() / h, xs.mean() / w
            if area >= 0.01 * h * w and 0.2 <= cy <= 0.75 and box_lo <= cx <= box_hi and area > best_area:
                best, best_area = comp, area
        if best is None:
            continue
        ys, xs = np.nonzero(ndimage.binary_fill_holes(best))
        cov = np.cov(np.stack([ys, xs]).astype(np.float64))
        evals, evecs = np.linalg.eigh(cov)  # ascending; evecs[:, 1] = major axis as (row, col)
        major = evecs[:, 1]
        angle = math.atan2(major[1], major[0])  # rotation of the row axis onto the major axis
        found[-1] = {"centre": (float(ys.mean()), float(xs.mean())),
                     "axes": (2.0 * math.sqrt(max(evals[1], 1.0)), 2.0 * math.sqrt(max(evals[0], 1.0))),
                     "angle": angle, "source": "detected"}
    ellipses: list[dict[str, Any]] = []
    for k, e in enumerate(found):
        other = found[1 - k]
        if e is None and other is not None:
            e = {"centre": (other["centre"][0], 2.0 * midline - other["centre"][1]), "axes": other["axes"],
                 "angle": -other["angle"], "source": "mirrored"}
        if e is None:
            e = {"centre": (0.45 * h, (0.28 if k == 0 else 0.72) * w), "axes": (0.30 * h, 0.13 * w), "angle": 0.0,
                 "source": "prior"}
        ellipses.append(e)
    cols = np.arange(w)[None, :]
    half_gap = max(1, int(round(0.01 * w)))
    mask = np.zeros((h, w), dtype=bool)
    for k, e in enumerate(ellipses):
        side = cols <= midline - half_gap if k == 0 else cols >= midline + half_gap
        mask |= ellipse_mask((h, w), e["centre"], e["axes"], e["angle"]) & side
    return torch.from_numpy(mask.astype(np.float32))[None], {"midline": int(midline), "ellipses": ellipses}


def parse_image_files(specs: Sequence[str]) -> dict[str, str]:
    """``["NAME=PATH", ...]`` -> ``{NAME: PATH}`` (``PATH`` may be ``ARCHIVE::MEMBER``).

    Raises:
        ValueError: an entry without ``=`` or with an empty name, or a repeated name.
    """
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--image-file expects NAME=PATH, got {spec!r}.")
        if name in out:
            raise ValueError(f"--image-file names must be unique, got {name!r} twice.")
        out[name] = path
    return out


def load_local_image(path: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """A radiograph from a file, or from ``ARCHIVE::MEMBER`` inside a zip archive, as :func:`load_image_from_zip`."""
    archive, sep, member = path.partition("::")
    if sep:
        return load_image_from_zip(archive, member)
    from monai_jrs.data.io import load_xray

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, meta = load_xray(path)
    return image, dict(meta, warnings=[str(w.message) for w in caught])


def _source(name: str, image: torch.Tensor, meta: dict[str, Any], size: int, description: str, licence: str,
            mask: torch.Tensor | None = None) -> dict[str, Any]:
    ref = to_working_grid(image, size)
    if mask is None:
        ref_mask, info = two_ellipse_lung_mask(ref)
        mask_kind = "rough two-ellipse (" + ", ".join(e["source"] for e in info["ellipses"]) + ")"
    else:
        ref_mask, info, mask_kind = to_working_grid(mask, size, is_mask=True), {}, "true (dataset)"
    return {"name": name, "reference": ref[None], "reference_mask": ref_mask[None], "mask_kind": mask_kind,
            "mask_info": info, "original_shape": tuple(int(s) for s in image.shape[-2:]),
            "spacing": meta.get("spacing"), "warnings": meta.get("warnings", []), "description": description,
            "licence": licence}


def load_sources(images: Sequence[str], image_files: dict[str, str], size: int, cache: str | os.PathLike,
                 drr: str | None = None, drr_limit: int | None = None) -> list[dict[str, Any]]:
    """Every image of the run on the working grid, with its reference lung mask (see the module docstring)."""
    sources = []
    for name in images:
        if name in image_files:
            image, meta = load_local_image(image_files[name])
            sources.append(_source(name, image, meta, size, f"local file `{image_files[name]}`", "as given"))
        elif name == "rg1":
            image, meta = load_image_from_zip(fetch_pydicom_data_wheel(cache), RG1_MEMBER)
            sources.append(_source(name, image, meta, size, *REMOTE_IMAGES[name]))
        elif name == "montgomery":
            image, meta = load_image_from_zip(fetch_bob_med_tb_sdist(cache), MONTGOMERY_MEMBER)
            sources.append(_source(name, image, meta, size, *REMOTE_IMAGES[name]))
        else:
            raise ValueError(f"unknown image {name!r}: use rg1, montgomery or give --image-file {name}=PATH.")
    if drr:
        sources += load_drr_sources(drr, size, drr_limit)
    return sources


def load_drr_sources(dataset_dir: str | os.PathLike, size: int, limit: int | None = None) -> list[dict[str, Any]]:
    """The first image of every test patient of an embedded DRR dataset, with its true lung mask."""
    import json

    from monai_jrs.data.datalist import load_jrs_datalist
    from monai_jrs.data.io import load_mask, load_xray

    path = Path(dataset_dir) / "datalist_images.json"
    items = load_jrs_datalist(str(path), "test")
    with open(path) as f:
        description = json.load(f).get("description", "monai_jrs embedded dataset")
    seen, out = set(), []
    for item in sorted(items, key=lambda d: (d["patient_id"], d.get("visit", 0))):
        if item["patient_id"] in seen:
            continue
        seen.add(item["patient_id"])
        image, meta = load_xray(item["image"])
        mask, _ = load_mask(item["mask"], reference_meta=meta)
        meta = dict(meta, spacing=item.get("spacing") or meta.get("spacing"))  # of the original grid, for the record
        out.append(_source(f"drr-{item['patient_id']}", image, meta, size, f"`{item['image']}`: {description}",
                           "see the dataset description (generated locally)", mask=mask))
        if limit and len(out) >= limit:
            break
    return out


# =====================================================================================================================
# pairs
# =====================================================================================================================
def pair_seed(seed: int, image: str, protocol: str, index: int, stream: int = 0) -> int:
    """A 32-bit seed per (run seed, image name, protocol, pair index, stream), stable when images are added."""
    key = [int(seed), zlib.crc32(image.encode()), zlib.crc32(protocol.encode()), int(index), int(stream)]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def deformation_sampler(protocol: str, seed: int) -> Any:
    """The seeded :class:`~monai_jrs.transforms.RandSyntheticDeformation` of a protocol (ranges for a 512 grid)."""
    from monai_jrs.transforms import RandSyntheticDeformation

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {sorted(PROTOCOLS)}.")
    t = RandSyntheticDeformation(protocol=protocol, reference_size=REFERENCE_GRID, dice_threshold=None,
                                 on_failure="keep_last", **PROTOCOLS[protocol])
    t.set_random_state(seed=seed)
    return t


def deform(reference: torch.Tensor, reference_mask: torch.Tensor, protocol: str, seed: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]:
    """One seeded synthetic deformation of a ``(1, H, W)`` reference and its mask.

    Returns:
        ``(floating, floating_mask, ddf_applied, params)``: ``(1, H, W)``, ``(1, H, W)`` {0, 1}, ``(2, H, W)`` with
        ``floating(p + ddf_applied(p)) = reference(p)`` on the reference grid, and the drawn parameters
        (``rotation_deg``, ``shift_px``, ``scale``, ``elastic_max_px`` in pixels of this grid, ``applied_max_px``).
    """
    t = deformation_sampler(protocol, seed)
    floating, floating_mask, ddf = t(reference.float(), reference_mask.float())
    p = t.get_params()
    e = t.deformation().elastic(tuple(reference.shape[-2:]))
    params = {"rotation_deg": float(p["rotation"]), "shift_px": float(math.hypot(*p["translation"])),
              "scale": float(p["scale"]), "elastic_max_px": float(e.norm(dim=0).max()),
              "applied_max_px": float(ddf.norm(dim=0).max())}
    return floating.float(), (floating_mask > 0.5).float(), ddf.float(), params


def change_exposure(floating: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Seeded exposure change of a ``(1, H, W)`` image in ``[0, 1]`` (:data:`EXPOSURE`); returns it and its params."""
    from monai_jrs.transforms import RandFollowUpAppearance

    t = RandFollowUpAppearance(prob=1.0, clip=True, **EXPOSURE)
    t.set_random_state(seed=seed)
    out = torch.as_tensor(t(floating.float())).float()
    return out, t.get_params()


def make_pairs(source: dict[str, Any], protocol: str, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` deformed pairs of one image and protocol: tensors ``(1, C, H, W)`` plus ids and drawn parameters."""
    pairs = []
    ref, ref_mask = source["reference"][0], source["reference_mask"][0]
    for i in range(n):
        flt, flt_mask, ddf, params = deform(ref, ref_mask, protocol, pair_seed(seed, source["name"], protocol, i))
        flt, exposure = change_exposure(flt, pair_seed(seed, source["name"], protocol, i, stream=1))
        params.update({f"exposure_{k}": v for k, v in exposure.items()})
        pairs.append({"image": source["name"], "protocol": protocol, "pair": i, "params": params,
                      "reference": source["reference"], "reference_mask": source["reference_mask"],
                      "floating": flt[None], "floating_mask": flt_mask[None], "ddf_applied": ddf[None]})
    return pairs


# =====================================================================================================================
# methods
# =====================================================================================================================
class JRSInMemory:
    """A :class:`~monai_jrs.apps.registration.JRSRegistrar` called in memory through its inferer.

    ``registrar.inferer(reference (1, H, W), mask (1, H, W), floating (1, H, W), registrar.network)`` gives the
    full-resolution ``ddf`` ``(1, 2, H, W)``, the floating mask and ``timings`` (seconds per stage).
    """

    def __init__(self, registrar: Any, name: str) -> None:
        self.registrar, self.name = registrar, name

    def __call__(self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor
                 ) -> dict[str, Any]:
        r = self.registrar.inferer(reference[0], reference_mask[0], floating[0], self.registrar.network)
        return {"ddf": r.ddf.float(), "floating_mask": r.floating_mask.float(), "timings": dict(r.timings)}


def _jrs(refine: bool, name: str) -> Callable[[argparse.Namespace], JRSInMemory]:
    def make(args: argparse.Namespace) -> JRSInMemory:
        from monai_jrs.apps.registration import JRSRegistrar

        return JRSInMemory(JRSRegistrar(bundle_dir=args.bundle, device=args.device, refine=refine), name)

    return make


#: CLI key -> factory(args) of a method ``method(reference, floating, reference_mask) -> {"ddf", ...}`` with ``name``.
METHODS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "before": lambda args: Identity(),
    "jrs-norefine": _jrs(False, "monai-jrs --no-refine"),
    "jrs": _jrs(True, "monai-jrs"),
    "elastix": lambda args: ElastixMethod(threads=args.threads),
}


# =====================================================================================================================
# scoring and timing
# =====================================================================================================================
def score(pair: dict[str, Any], ddf: torch.Tensor) -> dict[str, float]:
    """Metrics of one recovered ``(1, 2, H, W)`` field on one pair (see the module docstring), pixels."""
    ref_mask = pair["reference_mask"]
    registered_mask = (warp(pair["floating_mask"], ddf.float(), padding_mode="zeros") > 0.5).float()
    m = evaluate_registration(ddf.float(), pair["ddf_applied"], mask_pred=registered_mask, mask_true=ref_mask,
                              lung_mask=ref_mask, exclude_outside_fov=True)
    return {"tre_fov_mean": m["tre_fov_mean"], "tre_fov_p95": m["tre_fov_p95"],
            "tre_lung_mean": m["tre_lung_fov_mean"], "tre_lung_p95": m["tre_lung_fov_p95"],
            "dice": 100.0 * m["dice"], "hd95": m["hd95"], "folding_pct": m["folding_pct"],
            "fov_fraction": m["fov_fraction"]}


def write_png(image: torch.Tensor, path: str | os.PathLike, bits: int = 16) -> None:
    """Write a ``[0, 1]`` image (any leading singleton dims) as a greyscale PNG of 8 or 16 bits."""
    from PIL import Image

    arr = image.detach().float().cpu().numpy().reshape(image.shape[-2:]).clip(0.0, 1.0)
    if bits == 16:
        Image.fromarray(np.round(arr * 65535).astype(np.uint16)).save(path)
    else:
        Image.fromarray(np.round(arr * 255).astype(np.uint8)).save(path)


def file_io_seconds(pair: dict[str, Any], ddf: torch.Tensor, folder: Path) -> float:
    """Time to read the floating PNG, warp it with ``ddf`` and write the registered PNG (per-pair file overhead)."""
    from monai_jrs.data.io import load_xray

    src = folder / f"{pair['image']}_{pair['protocol']}_{pair['pair']:03d}.png"
    if not src.exists():
        write_png(pair["floating"], src)
    t = time.perf_counter()
    flt, _ = load_xray(src)
    registered = warp(flt[None], ddf.float())
    write_png(registered, folder / f"registered_{src.name}")
    return time.perf_counter() - t


def run(methods: Sequence[Any], pairs: Sequence[dict[str, Any]], io_folder: Path | None = None,
        keep: Callable[[dict[str, Any]], bool] = lambda p: p["pair"] == 0) -> list[dict[str, Any]]:
    """Every method on every pair (one warm-up pair per method first); one row per (pair, method).

    Non-JRS methods with a field also get ``file_io_s`` (:func:`file_io_seconds`) when ``io_folder`` is given. The
    outputs of the pairs selected by ``keep`` are stored in ``pair["outputs"]`` for the example figure.
    """
    rows = []
    for method in methods:
        p0 = pairs[0]
        try:
            method(p0["reference"], p0["floating"], p0["reference_mask"])  # warm-up (lazy init, allocator)
        except Exception as e:  # noqa: BLE001 -- a failing baseline must not end the benchmark
            logger.warning("%s failed on the warm-up pair: %s", method.name, e)
        for pair in pairs:
            row: dict[str, Any] = {"method": method.name, "image": pair["image"], "protocol": pair["protocol"],
                                   "pair": pair["pair"], **pair["params"], "status": "ok"}
            t = time.perf_counter()
            try:
                out = method(pair["reference"], pair["floating"], pair["reference_mask"])
            except Exception as e:  # noqa: BLE001
                logger.warning("%s failed on %s/%s/%d: %s", method.name, pair["image"], pair["protocol"],
                               pair["pair"], e)
                rows.append({**row, "status": f"failed: {type(e).__name__}: {e}", "seconds": math.nan})
                continue
            row["seconds"] = time.perf_counter() - t
            row.update(score(pair, out["ddf"]))
            row.update({f"stage_{k}": v for k, v in out.get("timings", {}).items()})
            if io_folder is not None and not isinstance(method, (JRSInMemory, Identity)):
                row["file_io_s"] = file_io_seconds(pair, out["ddf"], io_folder)
            if keep(pair):
                pair.setdefault("outputs", {})[method.name] = out["ddf"]
            rows.append(row)
        logger.info("%s on %d pairs done", method.name, len(pairs))
    return rows


def marginal_seconds(registrar: Any, pairs: Sequence[dict[str, Any]], folder: Path) -> dict[str, float]:
    """``JRSRegistrar.register`` timed for N floating PNG files and for 1; ``(T_N - T_1) / (N - 1)``.

    All ``pairs`` must share one reference. One warm-up call precedes the timed ones (same registrar).

    Returns:
        ``{"n", "t1", "tn", "marginal"}`` (``marginal`` NaN when N < 2).
    """
    inputs = folder / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    ref, mask = inputs / "reference.png", inputs / "reference_mask.png"
    write_png(pairs[0]["reference"], ref)
    write_png(pairs[0]["reference_mask"], mask, bits=8)
    floats = []
    for p in pairs:
        path = inputs / f"floating_{p['protocol']}_{p['pair']:03d}.png"
        write_png(p["floating"], path)
        floats.append(path)
    registrar.register(ref, mask, floats[:1], folder / "out_warmup", overwrite=True, progress=False)
    t = time.perf_counter()
    registrar.register(ref, mask, floats[:1], folder / "out_one", overwrite=True, progress=False)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    registrar.register(ref, mask, floats, folder / "out_all", overwrite=True, progress=False)
    tn = time.perf_counter() - t
    n = len(floats)
    return {"n": n, "t1": t1, "tn": tn, "marginal": (tn - t1) / (n - 1) if n > 1 else math.nan}


# =====================================================================================================================
# report
# =====================================================================================================================
def _mean(values: Sequence[float]) -> float:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(vals) if vals else math.nan


def _fmt(v: float, fmt: str) -> str:
    return "–" if v is None or math.isnan(v) else fmt.format(v)


def summarize(rows: Sequence[dict[str, Any]], method_names: Sequence[str]) -> str:
    """Markdown: per protocol, methods x metrics (means over pairs), then per image the TRE means."""
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    lines = []
    protocols = [p for p in PROTOCOLS if any(r["protocol"] == p for r in rows)]
    images = list(dict.fromkeys(r["image"] for r in rows))
    for protocol in protocols:
        n = len({(r["image"], r["pair"]) for r in rows if r["protocol"] == protocol})
        lines += [f"### {protocol} protocol ({n} pairs: {', '.join(images)})", "",
                  "| method | " + " | ".join(h for _, h, _ in METRIC_COLUMNS) + " | failed |",
                  "|---|" + "---:|" * (len(METRIC_COLUMNS) + 1)]
        for m in method_names:
            rs = [r for r in ok if r["protocol"] == protocol and r["method"] == m]
            failed = sum(1 for r in rows if r["protocol"] == protocol and r["method"] == m and r.get("status") != "ok")
            cells = [_fmt(_mean([r.get(k, math.nan) for r in rs]), f) for k, _, f in METRIC_COLUMNS]
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {failed} |")
        lines.append("")
    lines += ["### TRE mean per image (px; whole field of view / lung mask)", "",
              "| protocol | image | " + " | ".join(method_names) + " |",
              "|---|---|" + "---:|" * len(method_names)]
    for protocol in protocols:
        for image in images:
            cells = []
            for m in method_names:
                rs = [r for r in ok if r["protocol"] == protocol and r["image"] == image and r["method"] == m]
                cells.append(f"{_fmt(_mean([r['tre_fov_mean'] for r in rs]), '{:.2f}')} / "
                             f"{_fmt(_mean([r['tre_lung_mean'] for r in rs]), '{:.2f}')}")
            lines.append(f"| {protocol} | {image} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def stage_table(rows: Sequence[dict[str, Any]], method_names: Sequence[str]) -> str:
    """Markdown: mean seconds per stage and protocol for the methods that report stages."""
    stages = sorted({k for r in rows for k in r if k.startswith("stage_")})
    if not stages:
        return ""
    lines = ["| method | protocol | " + " | ".join(s[len("stage_"):] for s in stages) + " | total in-memory s |",
             "|---|---|" + "---:|" * (len(stages) + 1)]
    for m in method_names:
        for protocol in PROTOCOLS:
            rs = [r for r in rows if r["method"] == m and r["protocol"] == protocol and r.get("status") == "ok"]
            if not rs or not any(k in r for r in rs for k in stages):
                continue
            cells = [_fmt(_mean([r.get(s, math.nan) for r in rs]), "{:.3f}") for s in stages]
            total = _fmt(_mean([r["seconds"] for r in rs]), "{:.3f}")
            lines.append(f"| {m} | {protocol} | " + " | ".join(cells) + f" | {total} |")
    return "\n".join(lines) + "\n"


def speed_summary(rows: Sequence[dict[str, Any]], marginals: dict[str, dict[str, float]], method_names: Sequence[str],
                  marginal_image: str) -> tuple[str, dict[str, dict[str, float]]]:
    """Markdown speed table (in-memory s/pair, marginal s/pair with files, ratio elastix / method) and its values."""
    ok = [r for r in rows if r.get("status") == "ok"]
    speed: dict[str, dict[str, float]] = {}
    for m in method_names:
        rs = [r for r in ok if r["method"] == m]
        in_memory = _mean([r["seconds"] for r in rs])
        if m in marginals:
            marginal, n = marginals[m]["marginal"], marginals[m]["n"]
        else:
            sub = [r for r in rs if r["image"] == marginal_image and "file_io_s" in r]
            marginal = _mean([r["seconds"] + r["file_io_s"] for r in sub]) if sub else math.nan
            n = len(sub)
        speed[m] = {"in_memory": in_memory, "marginal": marginal, "n": n}
    ref = speed.get("elastix")
    lines = ["| method | s / pair (in memory) | marginal s / pair (files, N) | elastix / method (in memory) | "
             "elastix / method (marginal) |", "|---|---:|---:|---:|---:|"]
    for m, s in speed.items():
        if m == "before":
            continue
        r_mem = ref["in_memory"] / s["in_memory"] if ref and s["in_memory"] > 0 else math.nan
        r_marg = ref["marginal"] / s["marginal"] if ref and s["marginal"] > 0 else math.nan
        s["ratio_in_memory"], s["ratio_marginal"] = r_mem, r_marg
        lines.append(f"| {m} | {_fmt(s['in_memory'], '{:.3f}')} | {_fmt(s['marginal'], '{:.3f}')} ({s['n']}) | "
                     f"{_fmt(r_mem, '{:.1f}x')} | {_fmt(r_marg, '{:.1f}x')} |")
    return "\n".join(lines) + "\n", speed


def write_examples(pairs: Sequence[dict[str, Any]], method_names: Sequence[str], path: Path,
                   rows: Sequence[dict[str, Any]], max_rows: int = 6) -> None:
    """A figure: per example pair, reference | floating | registered by each method, with lung contours and titles.

    Red: the reference lung mask (reference and registered tiles); yellow: the floating lung mask (floating tile);
    green: the floating lung mask warped by the method's field (registered tiles).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    examples = [p for p in pairs if "outputs" in p][:max_rows]
    if not examples:
        return
    columns = [m for m in method_names if any(m in p["outputs"] for p in examples)]
    tre = {(r["method"], r["image"], r["protocol"], r["pair"]): r.get("tre_lung_mean", math.nan) for r in rows}
    ncols = 2 + len(columns)
    fig, axes = plt.subplots(len(examples), ncols, figsize=(2.3 * ncols, 2.5 * len(examples)), squeeze=False)
    for i, p in enumerate(examples):
        ref_mask = p["reference_mask"][0, 0].numpy()
        tiles = [("reference", p["reference"][0, 0], [(ref_mask, "red")]),
                 ("floating", p["floating"][0, 0], [(p["floating_mask"][0, 0].numpy(), "yellow")])]
        for m in columns:
            ddf = p["outputs"].get(m)
            if ddf is None:
                tiles.append((m, torch.zeros_like(p["reference"][0, 0]), []))
                continue
            registered = warp(p["floating"], ddf, padding_mode="zeros")[0, 0]
            warped = (warp(p["floating_mask"], ddf, padding_mode="zeros") > 0.5)[0, 0].float().numpy()
            t = tre.get((m, p["image"], p["protocol"], p["pair"]), math.nan)
            tiles.append((f"{m}\nlung TRE {_fmt(t, '{:.1f}')} px", registered, [(ref_mask, "red"), (warped, "lime")]))
        for j, (title, image, contours) in enumerate(tiles):
            ax = axes[i, j]
            ax.imshow(image.numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            for mask, color in contours:
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=color, linewidths=0.7)
            label = f"{p['image']}, {p['protocol']} #{p['pair']}\n" if j == 0 else ""
            ax.set_title(label + title, fontsize=7)
            ax.axis("off")
    fig.suptitle("red: reference lung mask, yellow: floating mask, green: floating mask warped by the method",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_mask_figure(sources: Sequence[dict[str, Any]], path: Path) -> None:
    """A figure of every reference image with its lung mask (contour and tint), titled with the mask's kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sources), figsize=(3.2 * len(sources), 3.6), squeeze=False)
    for ax, s in zip(axes[0], sources):
        mask = s["reference_mask"][0, 0].numpy()
        ax.imshow(s["reference"][0, 0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        ax.imshow(np.ma.masked_where(mask < 0.5, mask), cmap="autumn", alpha=0.25, vmin=0, vmax=1)
        ax.contour(mask, levels=[0.5], colors="red", linewidths=0.8)
        if "midline" in s["mask_info"]:
            ax.axvline(s["mask_info"]["midline"], color="cyan", linewidth=0.5, linestyle="--")
        ax.set_title(f"{s['name']}: {s['mask_kind']} mask", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# =====================================================================================================================
# main
# =====================================================================================================================
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default="docs/real_dev", help="report folder")
    ap.add_argument("--pairs", type=int, default=16, help="deformations per image and protocol")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for every method (torch and elastix)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=512, help="working grid (square); TRE in pixels of it")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE), help="download folder of the wheel and the sdist")
    ap.add_argument("--images", nargs="*", default=None,
                    help="images: rg1, montgomery and/or names of --image-file (default: rg1 montgomery, or only "
                         "the --image-file names when those are given; none: only --drr)")
    ap.add_argument("--image-file", action="append", default=[], metavar="NAME=PATH",
                    help="use a local image (file or ARCHIVE.zip::MEMBER) under NAME instead of a download")
    ap.add_argument("--drr", default=None, metavar="DATASET_DIR",
                    help="add the test patients of an embedded DRR dataset (with their true lung masks)")
    ap.add_argument("--drr-limit", type=int, default=None, help="at most this many DRR test patients")
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--no-elastix", action="store_true", help="drop the elastix baseline")
    ap.add_argument("--bundle", default=None, help="bundle folder for the JRS modes (default: the shipped one)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--examples", type=int, default=6, help="rows of the example figure")
    return ap


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns ``{"rows", "speed", "marginals", "output"}`` (also written to ``--output``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.pairs < 1 or args.size < 32:
        raise SystemExit("--pairs must be >= 1 and --size >= 32.")
    torch.set_num_threads(args.threads)
    image_files = parse_image_files(args.image_file)
    images = args.images if args.images is not None else (list(image_files) if image_files else ["rg1", "montgomery"])
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)

    sources = load_sources(images, image_files, args.size, args.cache, args.drr, args.drr_limit)
    if not sources:
        raise SystemExit("no images: give --images, --image-file or --drr.")
    pairs = []
    for s in sources:
        for protocol in args.protocols:
            pairs += make_pairs(s, protocol, args.pairs, args.seed)
    logger.info("%d pairs of %d images at %d px", len(pairs), len(sources), args.size)

    keys = [k for k in args.methods if not (args.no_elastix and k == "elastix")]
    methods = []
    for k in keys:
        try:
            methods.append(METHODS[k](args))
        except (FileNotFoundError, ImportError) as e:
            logger.warning("skipping %s: %s", k, e)
    names = [m.name for m in methods]
    marginal_image = sources[0]["name"]
    with tempfile.TemporaryDirectory(prefix="rdev_") as tmp:
        io_folder = Path(tmp) / "io"
        io_folder.mkdir()
        rows = run(methods, pairs, io_folder)
        marginals = {}
        first = [p for p in pairs if p["image"] == marginal_image]
        for m in methods:
            if isinstance(m, JRSInMemory):
                marginals[m.name] = marginal_seconds(m.registrar, first, Path(tmp) / f"register_{len(marginals)}")
                logger.info("%s: T_1 %.2f s, T_%d %.2f s, marginal %.3f s / pair", m.name, marginals[m.name]["t1"],
                            marginals[m.name]["n"], marginals[m.name]["tn"], marginals[m.name]["marginal"])

    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out_dir / "real_dev.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
    speed_md, speed = speed_summary(rows, marginals, names, marginal_image)
    write_examples(pairs, names, out_dir / "real_dev_examples.png", rows, args.examples)
    write_mask_figure(sources, out_dir / "real_dev_masks.png")
    report = render_report(args, argv, sources, rows, names, speed_md, marginals, marginal_image)
    (out_dir / "real_dev.md").write_text(report)
    print(report)
    return {"rows": rows, "speed": speed, "marginals": marginals, "output": out_dir}


def render_report(args: argparse.Namespace, argv: Sequence[str], sources: Sequence[dict[str, Any]],
                  rows: Sequence[dict[str, Any]], names: Sequence[str], speed_md: str,
                  marginals: dict[str, dict[str, float]], marginal_image: str) -> str:
    """The Markdown report (see the module docstring)."""
    command = "python benchmarks/real_dev.py " + shlex.join(argv)
    src_lines = []
    for s in sources:
        note = f" Loader: {'; '.join(s['warnings'])}" if s["warnings"] else ""
        spacing = "unknown" if s["spacing"] is None else f"{s['spacing'][0]:.3f} x {s['spacing'][1]:.3f} mm"
        src_lines.append(f"- **{s['name']}** ({s['licence']}): {s['description']}; original "
                         f"{s['original_shape'][0]} x {s['original_shape'][1]}, spacing {spacing}; mask: "
                         f"{s['mask_kind']}.{note}")
    marg_lines = [f"- {m}: T_1 = {v['t1']:.2f} s, T_{v['n']} = {v['tn']:.2f} s" for m, v in marginals.items()]
    protocol_lines = [f"- `{p}`: " + ", ".join(f"{k} {v}" for k, v in PROTOCOLS[p].items()) for p in args.protocols]
    parts = [
        "# Real radiographs (development set)", "",
        f"Generated by `{command}`; torch {torch.__version__}, {args.threads} CPU threads "
        f"(`torch.set_num_threads`, elastix `threads`), {os.cpu_count()} CPUs visible "
        f"({platform.processor() or platform.machine()}). "
        f"Working grid {args.size} x {args.size}; **distances in pixels of that grid** (RG1 has no valid spacing; "
        "the spacings listed below are those of the original grids, for the record). Values are means over pairs "
        "of the per-pair statistics (TRE p95: mean of per-pair 95th percentiles).", "",
        "## Data", "", *src_lines, "",
        "Nothing here is stored in the repository: the images are downloaded into the cache at run time. The "
        "Montgomery image is **GPLv3**: the PNG figures next to this report show it and must not be committed.", "",
        "Caveat: the real images have no annotation; their reference lung mask is a **rough automatic two-ellipse "
        "mask** (`two_ellipse_lung_mask`, see `real_dev_masks.png`). The lung TRE and the Dice measure agreement "
        "on that ellipse-shaped region, not on delineated lungs. The deformations are synthetic (known ground "
        "truth), only the anatomy and the image statistics are real.", "",
        "## Pairs", "",
        f"{args.pairs} deformations per image and protocol (seed {args.seed}); pixel ranges for a 512 grid, "
        f"scaled to {args.size}; floating(p + ddf_applied(p)) = reference(p); then an exposure change "
        f"({', '.join(f'{k} {v}' for k, v in EXPOSURE.items())}).", "", *protocol_lines, "",
        "## Accuracy", "",
        "TRE FOV: every reference pixel whose true correspondence lies inside the floating image; TRE lung: the "
        "same inside the reference lung mask. Dice: floating lung mask warped by the recovered field vs the "
        "reference mask. s / pair: in-memory call after one warm-up pair.", "",
        summarize(rows, names),
        "## Speed", "",
        f"Marginal time per additional pair with files: for the JRS modes `JRSRegistrar.register(reference, mask, "
        f"floats, out)` on the {marginal_image} floating images written as 16-bit PNGs, (T_N - T_1) / (N - 1), "
        "outputs written; for the other methods the in-memory time plus reading the floating PNG, warping it and "
        "writing the registered image as a 16-bit PNG.", "",
        speed_md, *marg_lines, "",
        "### Seconds per stage (JRS modes, in memory)", "",
        stage_table(rows, names),
        "## Figures", "",
        "- `real_dev_masks.png`: every reference image with its lung mask.",
        "- `real_dev_examples.png`: pair 0 of each image and protocol: reference, floating and registered images.",
        "",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
