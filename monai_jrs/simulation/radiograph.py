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
"""Acquisition model shared by the synthetic radiograph generators (:mod:`.drr` and :mod:`.phantom`).

Both generators produce a *line integral* image ``L = sum(mu * dl)`` (dimensionless, Beer-Lambert: the detector sees
``exp(-L)``) and a lung mask. This module turns ``L`` into a processed PA chest radiograph the way a digital
radiography system does: quantum noise, log-domain windowing, unsharp-mask edge enhancement, gamma, collimation,
burnt-in text markers. It also adds lung opacities ("diseased" images) to ``L``.

All images here are single 2-D tensors ``(H, W)``; randomness comes from a :class:`numpy.random.Generator` so that
every image is reproducible from a seed.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.networks.layers import GaussianFilter
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "OPACITY_KINDS",
    "AcquisitionParams",
    "sample_acquisition",
    "gaussian_blur",
    "lung_opacity",
    "attenuation_to_radiograph",
    "burn_in_text",
]

logger = logging.getLogger(__name__)

#: kinds of lung opacity that :func:`lung_opacity` draws.
OPACITY_KINDS = ("consolidation", "nodule", "effusion")


@dataclass
class AcquisitionParams:
    """Parameters of one simulated exposure and its image processing (all plain values, JSON-serialisable).

    Attributes:
        photons: mean detected quanta per pixel without attenuation (quantum noise ~ ``exp(L/2)/sqrt(photons)``).
        window: lower and upper percentiles of ``L`` inside the collimated field mapped to 0 and 1.
        edge_gain: gain of the unsharp mask (0 disables it).
        edge_sigma: Gaussian sigma of the unsharp mask as a fraction of the image size.
        gamma: display gamma applied after windowing.
        detector_noise: std of additive electronic noise in display units.
        collimation: fraction of the image masked at (top, bottom, left, right) by the collimator.
        collimation_value: display value of the unexposed border.
        markers: list of ``(text, row_frac, col_frac, height_frac)`` burnt in white.
    """

    photons: float = 5e4
    window: tuple[float, float] = (0.5, 99.7)
    edge_gain: float = 0.6
    edge_sigma: float = 0.04
    gamma: float = 1.0
    detector_noise: float = 0.004
    collimation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    collimation_value: float = 0.9
    markers: list[tuple[str, float, float, float]] = field(default_factory=list)


def sample_acquisition(
    rng: np.random.Generator,
    lung_bbox: tuple[float, float, float, float] | None = None,
    date: datetime.date | None = None,
    side_marker: bool = True,
) -> AcquisitionParams:
    """Draw random exposure, processing, collimation and marker parameters for one image.

    Args:
        rng: random generator.
        lung_bbox: ``(row0, row1, col0, col1)`` of the lungs as fractions of the image; the collimator and the
            markers are kept outside it (plus a margin). ``None``: the central 60% is protected.
        date: acquisition date burnt into a lower corner (``None``: no date).
        side_marker: burn an "L" (patient's left = image right in a PA view) or "R" marker into an upper corner.

    Returns:
        the sampled :class:`AcquisitionParams`.
    """
    r0, r1, c0, c1 = lung_bbox if lung_bbox is not None else (0.2, 0.8, 0.2, 0.8)
    margin = 0.03
    # the collimator never cuts the lungs: each edge goes at most up to the lung bounding box minus a margin
    top = float(rng.uniform(0.0, max(0.0, r0 - margin))) if rng.random() < 0.6 else 0.0
    bottom = float(rng.uniform(0.0, max(0.0, 1.0 - r1 - margin) * 0.8)) if rng.random() < 0.6 else 0.0
    left = float(rng.uniform(0.0, max(0.0, c0 - margin) * 0.7)) if rng.random() < 0.5 else 0.0
    right = float(rng.uniform(0.0, max(0.0, 1.0 - c1 - margin) * 0.7)) if rng.random() < 0.5 else 0.0
    markers: list[tuple[str, float, float, float]] = []
    if side_marker:
        text = "L" if rng.random() < 0.7 else "R"
        col = (1.0 - right - 0.09) if text == "L" else (left + 0.03)
        markers.append((text, float(top + 0.02), float(col), float(rng.uniform(0.05, 0.08))))
    if date is not None:
        col = float(left + 0.03) if rng.random() < 0.5 else float(max(c1, 0.55))
        markers.append((date.isoformat(), float(1.0 - bottom - 0.06), col, 0.035))
    return AcquisitionParams(
        photons=float(10 ** rng.uniform(4.0, 5.3)),
        window=(float(rng.uniform(0.0, 2.0)), float(rng.uniform(99.0, 100.0))),
        edge_gain=float(rng.uniform(0.2, 1.2)),
        edge_sigma=float(rng.uniform(0.02, 0.06)),
        gamma=float(np.exp(rng.normal(0.0, 0.2))),
        detector_noise=float(rng.uniform(0.0, 0.01)),
        collimation=(top, bottom, left, right),
        collimation_value=float(rng.uniform(0.75, 1.0)),
        markers=markers,
    )


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a 2-D image ``(H, W)`` (MONAI :class:`~monai.networks.layers.GaussianFilter`, sigma in px)."""
    if image.ndim != 2:
        raise ValueError(f"`image` must be 2-D (H, W), got shape {tuple(image.shape)}.")
    if sigma <= 0:
        return image
    return GaussianFilter(spatial_dims=2, sigma=float(sigma))(image[None, None].float())[0, 0]


def lung_opacity(
    lung_mask: torch.Tensor, rng: np.random.Generator, kind: str, severity: float = 1.0
) -> torch.Tensor:
    """Extra attenuation ``(H, W)`` of a lung opacity, to add to the line integral ``L``.

    The opacity lies inside ``lung_mask`` (a smooth field multiplied by the lung mask, so the lung outline is kept:
    the ground-truth lung mask does not change with disease).

    Args:
        lung_mask: ``(H, W)`` {0, 1} lung mask.
        rng: random generator (position, shape).
        kind: one of :data:`OPACITY_KINDS`: ``"consolidation"`` (patchy airspace blob), ``"nodule"`` (one or a few
            round dense lesions), ``"effusion"`` (fluid layering in the costophrenic angle with a meniscus).
        severity: size/density multiplier, > 0 (a disease that grows over visits uses increasing values).

    Returns:
        ``(H, W)`` non-negative extra attenuation (units of ``L``), zero outside the lung.

    Raises:
        ValueError: for an unknown ``kind``, a non-positive ``severity`` or an empty mask.
    """
    if kind not in OPACITY_KINDS:
        raise ValueError(f"`kind` must be one of {OPACITY_KINDS}, got {kind!r}.")
    if not severity > 0:
        raise ValueError(f"`severity` must be > 0, got {severity}.")
    mask = lung_mask.float()
    if mask.ndim != 2 or mask.sum() == 0:
        raise ValueError(f"`lung_mask` must be a non-empty 2-D mask, got shape {tuple(mask.shape)}, sum {mask.sum()}.")
    h, w = mask.shape
    rows = torch.arange(h, dtype=torch.float32)[:, None]
    cols = torch.arange(w, dtype=torch.float32)[None, :]
    # pick one lung (connected halves: split at the mask's column centroid)
    centre_col = float((mask.sum(0) * torch.arange(w)).sum() / mask.sum())
    side = mask * ((cols < centre_col) if rng.random() < 0.5 else (cols >= centre_col)).float()
    if side.sum() == 0:
        side = mask
    pts = torch.nonzero(side > 0)
    size = float(min(h, w))
    out = torch.zeros(h, w)
    if kind == "consolidation":
        blobs = int(rng.integers(2, 5))
        centre = pts[int(rng.integers(len(pts)))].float()
        for _ in range(blobs):
            c = centre + torch.from_numpy(rng.normal(0.0, 0.05 * size, 2)).float()
            s = size * float(rng.uniform(0.04, 0.09)) * severity**0.5
            out += float(rng.uniform(0.5, 1.0)) * torch.exp(-((rows - c[0]) ** 2 + (cols - c[1]) ** 2) / (2 * s * s))
        # patchy texture (air bronchogram-like mottling)
        noise = gaussian_blur(torch.from_numpy(rng.standard_normal((h, w))).float(), 0.015 * size)
        noise = noise / (noise.std() + 1e-8)
        out = out * (1.0 + 0.35 * noise).clamp(min=0.0)
        out = 0.9 * severity * out.clamp(max=1.2)
    elif kind == "nodule":
        for _ in range(int(rng.integers(1, 4))):
            c = pts[int(rng.integers(len(pts)))].float()
            r = size * float(rng.uniform(0.015, 0.035)) * severity**0.5
            d2 = ((rows - c[0]) ** 2 + (cols - c[1]) ** 2) / (r * r)
            out += float(rng.uniform(0.5, 0.9)) * torch.sqrt((1.0 - d2).clamp(min=0.0))  # sphere thickness profile
        out = gaussian_blur(out, 0.004 * size)
    else:  # effusion: fluid fills the lowest part of one lung, higher laterally (meniscus)
        lung_rows = torch.nonzero(side.sum(1) > 0)[:, 0]
        r_top, r_bot = float(lung_rows.min()), float(lung_rows.max())
        level = r_bot - (r_bot - r_top) * float(rng.uniform(0.12, 0.3)) * min(severity, 2.0)
        side_cols = torch.nonzero(side.sum(0) > 0)[:, 0].float()
        lateral_is_low = centre_col > float(side_cols.mean())  # this lung is left of the image centre line
        rel = (cols - side_cols.min()) / max(float(side_cols.max() - side_cols.min()), 1.0)
        lateral = (1.0 - rel) if lateral_is_low else rel
        meniscus = level - 0.12 * (r_bot - r_top) * lateral**2
        out = torch.sigmoid((rows - meniscus) / (0.01 * size)) * 1.4 * min(severity, 2.0) ** 0.5
    out = out * gaussian_blur(side, 0.006 * size).clamp(0.0, 1.0) * mask
    return out.clamp(min=0.0)


def attenuation_to_radiograph(
    line_integral: torch.Tensor, params: AcquisitionParams, rng: np.random.Generator
) -> torch.Tensor:
    """Simulate detection and processing of a line integral image.

    Convention: bright = high attenuation (bones white, lungs dark), as a processed radiograph is displayed
    (MONOCHROME2).

    Args:
        line_integral: ``(H, W)`` Beer-Lambert line integral ``L`` (>= 0).
        params: acquisition parameters (see :func:`sample_acquisition`).
        rng: random generator for the noise.

    Returns:
        ``(H, W)`` float32 image in [0, 1].
    """
    if line_integral.ndim != 2:
        raise ValueError(f"`line_integral` must be 2-D (H, W), got shape {tuple(line_integral.shape)}.")
    h, w = line_integral.shape
    lin = line_integral.float().clamp(min=0.0)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    # quantum noise: the log of a Poisson count N0 exp(-L) has std ~ exp(L / 2) / sqrt(N0)
    lin = lin + torch.randn(h, w, generator=gen) * torch.exp(lin.clamp(max=8.0) / 2.0) / np.sqrt(params.photons)
    top, bottom, left, right = params.collimation
    r0, r1 = int(round(top * h)), h - int(round(bottom * h))
    c0, c1 = int(round(left * w)), w - int(round(right * w))
    field_mask = torch.zeros(h, w, dtype=torch.bool)
    field_mask[r0:r1, c0:c1] = True
    values = lin[field_mask]
    lo, hi = np.percentile(values.numpy(), params.window)
    img = (lin - float(lo)) / max(float(hi - lo), 1e-6)
    if params.edge_gain > 0:
        img = img + params.edge_gain * (img - gaussian_blur(img, params.edge_sigma * min(h, w)))
    img = img.clamp(0.0, 1.0) ** params.gamma
    img = img + params.detector_noise * torch.randn(h, w, generator=gen)
    outside = (~field_mask).float()
    if outside.any():
        outside = gaussian_blur(outside, 0.004 * min(h, w))  # penumbra of the collimator blades
        img = img * (1.0 - outside) + params.collimation_value * outside
    img = burn_in_text(img, params.markers)
    return img.clamp(0.0, 1.0).float()


def burn_in_text(image: torch.Tensor, markers: list[tuple[str, float, float, float]], value: float = 1.0):
    """Burn text (radiographer's side markers, dates) into an image ``(H, W)`` in [0, 1].

    Args:
        image: ``(H, W)`` image.
        markers: ``(text, row_frac, col_frac, height_frac)``: top-left corner and glyph height, fractions of the
            image size.
        value: intensity of the text.

    Returns:
        ``(H, W)`` image with the text drawn (anti-aliased, PIL's built-in font).
    """
    if not markers:
        return image
    h, w = image.shape
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    for text, row, col, height in markers:
        px = max(6, int(round(height * h)))
        try:
            font = ImageFont.load_default(size=px)
        except TypeError:  # Pillow < 10.1 has a fixed-size bitmap font only
            font = ImageFont.load_default()
        draw.text((int(round(col * w)), int(round(row * h))), text, fill=255, font=font)
    alpha = torch.from_numpy(np.asarray(layer, dtype=np.float32) / 255.0)
    return image * (1.0 - alpha) + value * alpha
