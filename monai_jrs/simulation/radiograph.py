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
``exp(-L)``) and a lung mask. This module turns ``L`` into a processed chest radiograph the way a digital
radiography system does: quantum noise, log-domain windowing, unsharp-mask edge enhancement, gamma, collimation,
burnt-in text markers. It also adds lung opacities ("diseased" images) to ``L``.

The optional *acquisition variety* (all off at the neutral values of :class:`AcquisitionParams`, which reproduce the
original model bit for bit) covers what real archives mix: the exam setting (erect PA in the department or
portable AP at the bedside, :func:`sample_setting`), scatter (:func:`add_scatter`), stationary anti-scatter grid
lines (:func:`grid_pattern`), detector tone curves (:func:`tone_curve`), dynamic range compression and two-scale
unsharp masking, a tilted collimator, radiopaque devices drawn into ``L`` (tubes, lines, ECG leads, sternotomy
wires, pacemakers: :class:`Device`, :func:`sample_devices`, :func:`render_devices`) and more burnt-in text. The order
of the model in :func:`attenuation_to_radiograph`:

    L -> + devices -> scatter (intensity domain) -> + grid lines (log domain) -> quantum noise -> window
      -> range compression -> unsharp masks -> tone curve -> gamma -> electronic noise -> collimation -> text

All images here are single 2-D tensors ``(H, W)``; randomness comes from a :class:`numpy.random.Generator` so that
every image is reproducible from a seed.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.layers import GaussianFilter, separable_filtering
from monai.networks.layers.convutils import gaussian_1d
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "OPACITY_KINDS",
    "VIEWS",
    "SETTINGS",
    "TONE_CURVES",
    "DEVICE_KINDS",
    "DEVICE_PROBABILITIES",
    "AcquisitionParams",
    "Device",
    "ExamSetting",
    "sample_setting",
    "sample_acquisition",
    "sample_devices",
    "lung_bbox_fractions",
    "gaussian_blur",
    "lung_opacity",
    "add_scatter",
    "grid_pattern",
    "tone_curve",
    "render_devices",
    "attenuation_to_radiograph",
    "burn_in_text",
]

logger = logging.getLogger(__name__)

#: kinds of lung opacity that :func:`lung_opacity` draws.
OPACITY_KINDS = ("consolidation", "nodule", "effusion")
#: projection directions: posterior-anterior (source behind the patient) and anterior-posterior.
VIEWS = ("PA", "AP")
#: exam settings: ``"erect"`` (department, wall stand with a Bucky) and ``"portable"`` (bedside, ICU/ward).
SETTINGS = ("erect", "portable")
#: detector tone curves of :func:`tone_curve` (``"none"``: identity).
TONE_CURVES = ("none", "sigmoid", "film")
#: radiopaque devices of :func:`render_devices`: endotracheal tube, nasogastric tube, central venous line (jugular,
#: subclavian or PICC), ECG electrode with its lead wire, sternotomy wires, pacemaker with its lead.
DEVICE_KINDS = ("ett", "ng_tube", "cvc", "ecg", "sternotomy", "pacemaker")
#: probability of each device per image in each setting (:func:`sample_devices`); ECG: of a set of 2-5 electrodes.
DEVICE_PROBABILITIES: dict[str, dict[str, float]] = {
    "erect": {"ett": 0.0, "ng_tube": 0.02, "cvc": 0.06, "ecg": 0.06, "sternotomy": 0.05, "pacemaker": 0.03},
    "portable": {"ett": 0.45, "ng_tube": 0.4, "cvc": 0.55, "ecg": 0.7, "sternotomy": 0.12, "pacemaker": 0.08},
}

_FIELD_MM = 436.0  # detector field of the embedded DRRs: 400 mm at the isocentre, x 1800 / 1650 magnification
_DEVICE_BLUR = 0.0022  # focal spot + detector blur of the devices, sigma as a fraction of the image size
_SUPERSAMPLE = 4  # devices are drawn at this multiple of the output size and box-averaged down (anti-aliasing)


@dataclass
class Device:
    """One radiopaque device drawn into the line integral (plain values, JSON-serialisable).

    Coordinates are ``(row_frac, col_frac)``, fractions of the image height and width (points may lie outside
    ``[0, 1]`` where the device leaves the image). The patient's left is on the image right (both views).

    Attributes:
        kind: one of :data:`DEVICE_KINDS`.
        points: control points; polylines are drawn as a smooth (Catmull-Rom) curve through them.
            ``"ett"``, ``"ng_tube"``, ``"cvc"``: the tube's centreline from its external end to its tip;
            ``"ecg"``: the electrode centre, then the lead wire's path (usually off the image);
            ``"sternotomy"``: the centres of the wire loops, top to bottom;
            ``"pacemaker"``: the generator centre, then the lead's path to its tip.
        width: tube outer diameter, electrode diameter, loop width or generator width, fraction of the image width.
        attenuation: extra line integral (units of ``L``) of the densest part: the ETT's radiopaque stripe, the
            tube or line, the electrode's snap, the steel wire, the generator.
    """

    kind: str
    points: list[tuple[float, float]] = field(default_factory=list)
    width: float = 0.01
    attenuation: float = 1.0


@dataclass
class ExamSetting:
    """How one chest film is taken, drawn before rendering (:func:`sample_setting`); plain values.

    The geometry fields are for :func:`~monai_jrs.simulation.drr.render_drr` and the visit pose, the rest goes into
    :class:`AcquisitionParams` through :func:`sample_acquisition`.

    Attributes:
        view: ``"PA"`` or ``"AP"`` (:data:`VIEWS`).
        setting: ``"erect"`` or ``"portable"`` (:data:`SETTINGS`).
        supine: the patient lies on the detector (portable only).
        sid_mm: source-to-image distance for ``render_drr(sid_mm=...)``.
        oid_mm: isocentre-to-detector distance for ``render_drr(oid_mm=...)``.
        breathing: factor on :attr:`DRRPose.breathing <monai_jrs.simulation.drr.DRRPose>` (< 1: shallower
            inspiration, as in sick, supine or semi-erect patients).
        tilt_deg: added to ``DRRPose.rotation[1]`` (cranio-caudal tilt; negative = lordotic projection, the
            anterior ribs and clavicles projected higher, as when the beam is not perpendicular to a reclined chest).
    """

    view: str = "PA"
    setting: str = "erect"
    supine: bool = False
    sid_mm: float = 1800.0
    oid_mm: float = 150.0
    breathing: float = 1.0
    tilt_deg: float = 0.0


@dataclass
class AcquisitionParams:
    """Parameters of one simulated exposure and its image processing (all plain values, JSON-serialisable).

    The fields after ``markers`` are the acquisition variety; their defaults are neutral (the original model, bit
    for bit).

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
        view: ``"PA"`` or ``"AP"`` (bookkeeping: the projection itself is rendered by ``render_drr``).
        setting: ``"erect"`` or ``"portable"`` (bookkeeping).
        supine: the patient lay supine (bookkeeping).
        scatter: scatter-to-primary ratio ``s`` (0 disables): ``I = exp(-L) + s * blur(exp(-L))``.
        scatter_sigma: Gaussian sigma of the scatter kernel as a fraction of the image size.
        grid_amplitude: amplitude of the grid-line sinusoid in units of ``L`` (0 disables).
        grid_period: period of the grid lines in pixels (>= 2, the Nyquist limit).
        grid_angle: direction of the grid lines in degrees from vertical (0: vertical lines, 90: horizontal).
        grid_phase: phase of the grid sinusoid in radians.
        grid_beat: amplitude of the moire-like low-frequency bands relative to ``grid_amplitude`` (0: none).
        grid_beat_period: period of the moire bands in pixels.
        tone_curve: detector look-up table after windowing, one of :data:`TONE_CURVES`.
        tone_slope: steepness of the tone curve (sigmoid slope or the sharpness of the film's toe and shoulder).
        tone_centre: centre of the tone curve in display units.
        tone_width: width of the straight part of the film curve (display units, ``"film"`` only).
        edge_gain_fine: gain of a second, fine-scale unsharp mask (0 disables it).
        edge_sigma_fine: sigma of the fine-scale unsharp mask as a fraction of the image size.
        range_compression: dynamic range compression (equalisation) after windowing: this fraction of the
            large-scale contrast (a Gaussian low-pass of sigma ``range_sigma``) is removed, so that the mediastinum
            and abdomen are not clipped and the detail over them stays visible (0 disables it; < 1).
        range_sigma: sigma of the range-compression low-pass as a fraction of the image size.
        collimation_angle: rotation of the collimated field about its centre, degrees.
        devices: radiopaque :class:`Device` records drawn into ``L`` (dicts with the same keys are accepted).
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
    view: str = "PA"
    setting: str = "erect"
    supine: bool = False
    scatter: float = 0.0
    scatter_sigma: float = 0.12
    grid_amplitude: float = 0.0
    grid_period: float = 3.0
    grid_angle: float = 0.0
    grid_phase: float = 0.0
    grid_beat: float = 0.0
    grid_beat_period: float = 32.0
    tone_curve: str = "none"
    tone_slope: float = 6.0
    tone_centre: float = 0.5
    tone_width: float = 0.7
    edge_gain_fine: float = 0.0
    edge_sigma_fine: float = 0.008
    range_compression: float = 0.0
    range_sigma: float = 0.08
    collimation_angle: float = 0.0
    devices: list[Device] = field(default_factory=list)


def sample_setting(
    rng: np.random.Generator, portable_fraction: float = 0.3, supine_fraction: float = 0.4
) -> ExamSetting:
    """Draw the exam setting of one film: erect PA (department) or portable AP (bedside), and its geometry.

    Erect PA: source 1800 mm from the detector, isocentre 150 mm in front of it, full inspiration. Portable AP:
    source 1000-1150 mm from the detector behind the patient's back (isocentre 130-170 mm from it), shallower
    inspiration (breathing x 0.88-0.97, supine x 0.84-0.93) and a lordotic tilt of about -6 +/- 4 degrees. Always
    makes the same six draws.

    Args:
        rng: random generator.
        portable_fraction: probability of a portable AP film.
        supine_fraction: probability that a portable film is taken supine (else semi-erect).

    Returns:
        the sampled :class:`ExamSetting`.

    Raises:
        ValueError: when a fraction is not in [0, 1].
    """
    for name, value in (("portable_fraction", portable_fraction), ("supine_fraction", supine_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"`{name}` must be in [0, 1], got {value}.")
    portable = bool(rng.random() < portable_fraction)
    supine = bool(rng.random() < supine_fraction)
    sid = float(rng.uniform(1000.0, 1150.0))
    oid = float(rng.uniform(130.0, 170.0))
    breathing = float(rng.uniform(0.84, 0.93) if supine else rng.uniform(0.88, 0.97))
    tilt = float(np.clip(rng.normal(-6.0, 4.0), -15.0, 5.0))
    if not portable:
        return ExamSetting()
    return ExamSetting(
        view="AP", setting="portable", supine=supine, sid_mm=sid, oid_mm=oid, breathing=breathing, tilt_deg=tilt
    )


def _exam_setting(setting: ExamSetting | str | None) -> ExamSetting | None:
    """``setting`` as an :class:`ExamSetting` (a name gives that setting's typical values), checked."""
    if setting is None:
        return None
    if isinstance(setting, str):
        if setting not in SETTINGS:
            raise ValueError(f"`setting` must be one of {SETTINGS} or an ExamSetting, got {setting!r}.")
        if setting == "erect":
            return ExamSetting()
        return ExamSetting(view="AP", setting="portable", sid_mm=1000.0, oid_mm=150.0, breathing=0.92, tilt_deg=-6.0)
    if not isinstance(setting, ExamSetting):
        raise ValueError(f"`setting` must be None, a name in {SETTINGS} or an ExamSetting, got {type(setting)}.")
    if setting.view not in VIEWS:
        raise ValueError(f"`setting.view` must be one of {VIEWS}, got {setting.view!r}.")
    if setting.setting not in SETTINGS:
        raise ValueError(f"`setting.setting` must be one of {SETTINGS}, got {setting.setting!r}.")
    return setting


def lung_bbox_fractions(lung_mask: torch.Tensor | np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box ``(row0, row1, col0, col1)`` of a lung mask ``(H, W)`` as fractions of the image size.

    The same convention as the embedded generator: first and last lung row (column) index divided by ``H`` (``W``).

    Raises:
        ValueError: for a mask that is not 2-D or is empty.
    """
    mask = np.asarray(lung_mask.detach().cpu() if isinstance(lung_mask, torch.Tensor) else lung_mask) > 0
    if mask.ndim != 2 or not mask.any():
        raise ValueError(f"`lung_mask` must be a non-empty 2-D mask, got shape {mask.shape}, sum {int(mask.sum())}.")
    h, w = mask.shape
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    return float(rows.min()) / h, float(rows.max()) / h, float(cols.min()) / w, float(cols.max()) / w


def _midline(lung_mask: torch.Tensor | np.ndarray | None, bbox: tuple[float, float, float, float]) -> float:
    """Column (fraction) of the mediastinal midline: the least lung-covered column between the lungs' upper halves."""
    r0, r1, c0, c1 = bbox
    centre = 0.5 * (c0 + c1)
    if lung_mask is None:
        return centre
    mask = np.asarray(lung_mask.detach().cpu() if isinstance(lung_mask, torch.Tensor) else lung_mask) > 0
    h, w = mask.shape
    top, mid = int(r0 * h), int(round((r0 + 0.5 * (r1 - r0)) * h)) + 1
    lo, hi = int(round((c0 + 0.3 * (c1 - c0)) * w)), int(round((c0 + 0.7 * (c1 - c0)) * w)) + 1
    if mid <= top or hi <= lo:
        return centre
    profile = mask[top:mid, lo:hi].sum(axis=0)
    cols = np.nonzero(profile == profile.min())[0]
    return float((lo + 0.5 * (cols.min() + cols.max()) + 0.5) / w)


def sample_acquisition(
    rng: np.random.Generator,
    lung_bbox: tuple[float, float, float, float] | None = None,
    date: datetime.date | None = None,
    side_marker: bool = True,
    setting: ExamSetting | str | None = None,
    lung_mask: torch.Tensor | np.ndarray | None = None,
    field_mm: float = _FIELD_MM,
) -> AcquisitionParams:
    """Draw random exposure, processing, collimation and marker parameters for one image.

    With ``setting=None`` this is the original model: the same draws and the neutral values of the variety
    fields. With a setting the original draws are made first, in the same order, then the variety is drawn after
    them (exposure, scatter and grid, tone curve, fine unsharp mask, range compression, collimator tilt, devices,
    text labels).

    Args:
        rng: random generator.
        lung_bbox: ``(row0, row1, col0, col1)`` of the lungs as fractions of the image; the collimator and the
            markers are kept outside it (plus a margin). ``None``: from ``lung_mask``, else the central 60% is
            protected.
        date: acquisition date burnt into a lower corner (``None``: no date).
        side_marker: burn an "L" (patient's left = image right, in PA and AP films alike) or "R" marker into an
            upper corner.
        setting: ``None`` (original model), ``"erect"``, ``"portable"`` or an :class:`ExamSetting` (from
            :func:`sample_setting`, the one the DRR was rendered with).
        lung_mask: optional ``(H, W)`` lung mask; places the tubes on the mediastinal midline between the lungs
            (else the centre of ``lung_bbox``).
        field_mm: width of the detector field in mm (sizes the devices; default: the embedded DRRs' 436 mm).

    Returns:
        the sampled :class:`AcquisitionParams`.

    Raises:
        ValueError: for an unknown setting or a non-positive ``field_mm``.
    """
    exam = _exam_setting(setting)
    if not field_mm > 0:
        raise ValueError(f"`field_mm` must be > 0, got {field_mm}.")
    if lung_bbox is None and lung_mask is not None:
        lung_bbox = lung_bbox_fractions(lung_mask)
    bbox = tuple(float(v) for v in lung_bbox) if lung_bbox is not None else (0.2, 0.8, 0.2, 0.8)
    r0, r1, c0, c1 = bbox
    margin = 0.03
    # the original draws, in their original order
    # the collimator never cuts the lungs: each edge goes at most up to the lung bounding box minus a margin
    top = float(rng.uniform(0.0, max(0.0, r0 - margin))) if rng.random() < 0.6 else 0.0
    bottom = float(rng.uniform(0.0, max(0.0, 1.0 - r1 - margin) * 0.8)) if rng.random() < 0.6 else 0.0
    left = float(rng.uniform(0.0, max(0.0, c0 - margin) * 0.7)) if rng.random() < 0.5 else 0.0
    right = float(rng.uniform(0.0, max(0.0, 1.0 - c1 - margin) * 0.7)) if rng.random() < 0.5 else 0.0
    side: tuple[str, float] | None = None
    if side_marker:
        text = "L" if rng.random() < 0.7 else "R"
        side = (text, float(rng.uniform(0.05, 0.08)))
    date_left = bool(rng.random() < 0.5) if date is not None else False
    params = AcquisitionParams(
        photons=float(10 ** rng.uniform(4.0, 5.3)),
        window=(float(rng.uniform(0.0, 2.0)), float(rng.uniform(99.0, 100.0))),
        edge_gain=float(rng.uniform(0.2, 1.2)),
        edge_sigma=float(rng.uniform(0.02, 0.06)),
        gamma=float(np.exp(rng.normal(0.0, 0.2))),
        detector_noise=float(rng.uniform(0.0, 0.01)),
        collimation=(top, bottom, left, right),
        collimation_value=float(rng.uniform(0.75, 1.0)),
    )
    blocks: list[tuple[list[str], float, str]] = []
    if exam is not None:
        blocks = _sample_variety(rng, params, exam, bbox, _midline(lung_mask, bbox), float(field_mm))
    # markers from the final collimation (the original positions when it is unchanged)
    top, bottom, left, right = params.collimation
    markers: list[tuple[str, float, float, float]] = []
    if side is not None:
        col = (1.0 - right - 0.09) if side[0] == "L" else (left + 0.03)
        markers.append((side[0], float(top + 0.02), float(col), side[1]))
    if date is not None:
        col = float(left + 0.03) if date_left else float(max(c1, 0.55))
        markers.append((date.isoformat(), float(1.0 - bottom - 0.06), col, 0.035))
    for lines, height, first_corner in blocks:
        markers.extend(_place_text_block(lines, height, first_corner, markers, params.collimation, bbox))
    params.markers = markers
    return params


def _sample_variety(
    rng: np.random.Generator,
    params: AcquisitionParams,
    exam: ExamSetting,
    bbox: tuple[float, float, float, float],
    midline: float,
    field_mm: float,
) -> list[tuple[list[str], float, str]]:
    """Draw the variety fields of ``params`` in place for ``exam``; returns the text blocks to place."""
    portable = exam.setting == "portable"
    params.view, params.setting, params.supine = exam.view, exam.setting, bool(exam.supine)
    # exposure: bedside units use a lower mAs through a thicker, less well positioned patient
    if portable:
        params.photons = float(params.photons * rng.uniform(0.25, 0.6))
    # scatter and grid: erect films mostly use a (reciprocating, invisible) Bucky grid; portable films often none
    has_grid = bool(rng.random() < (0.4 if portable else 0.85))
    # (``s`` is relative to the blurred primary, so the local ratio under the mediastinum is 5-10 times higher)
    if has_grid:
        params.scatter = float(rng.uniform(0.1, 0.35) if portable else rng.uniform(0.05, 0.25))
    else:
        params.scatter = float(rng.uniform(0.4, 0.9) if portable else rng.uniform(0.2, 0.45))
    params.scatter_sigma = float(rng.uniform(0.08, 0.16))
    if has_grid and rng.random() < (0.8 if portable else 0.2):  # stationary grid: its lines stay on the image
        params.grid_amplitude = float(rng.uniform(0.006, 0.02))
        params.grid_period = float(rng.uniform(2.0, 4.0))
        params.grid_angle = float((0.0 if rng.random() < 0.75 else 90.0) + rng.normal(0.0, 1.0))
        params.grid_phase = float(rng.uniform(0.0, 2.0 * np.pi))
        if rng.random() < 0.3:
            params.grid_beat = float(rng.uniform(0.3, 1.0))
            params.grid_beat_period = float(rng.uniform(12.0, 48.0))
    # detector processing: tone curve and a fine-scale unsharp mask
    u = rng.random()
    params.tone_curve = "none" if u < 0.35 else ("sigmoid" if u < 0.75 else "film")
    if params.tone_curve == "sigmoid":
        params.tone_slope = float(rng.uniform(3.0, 8.0))
    elif params.tone_curve == "film":
        params.tone_slope = float(rng.uniform(8.0, 20.0))
    if params.tone_curve != "none":
        params.tone_centre = float(rng.uniform(0.4, 0.6))
        params.tone_width = float(rng.uniform(0.6, 0.9))
    if rng.random() < (0.65 if portable else 0.45):
        params.edge_gain_fine = float(rng.uniform(0.3, 1.2))
        params.edge_sigma_fine = float(rng.uniform(0.004, 0.012))
    if rng.random() < (0.8 if portable else 0.5):
        params.range_compression = float(rng.uniform(0.15, 0.5))
        params.range_sigma = float(rng.uniform(0.05, 0.12))
    # collimation: bedside films are often tilted and cut tighter on one side
    if portable and rng.random() < 0.6:
        coll = list(params.collimation)
        r0, r1, c0, c1 = bbox
        limits = (max(0.0, r0 - 0.03), max(0.0, 1.0 - r1 - 0.03), max(0.0, c0 - 0.03), max(0.0, 1.0 - c1 - 0.03))
        k = int(rng.integers(4))
        coll[k] = float(coll[k] + rng.uniform(0.3, 1.0) * max(0.0, limits[k] - coll[k]))
        params.collimation = (coll[0], coll[1], coll[2], coll[3])
        params.collimation_angle = _fit_collimation_angle(
            float(np.clip(rng.normal(0.0, 2.5), -5.0, 5.0)), params.collimation, bbox
        )
    params.devices = sample_devices(rng, exam.setting, bbox, midline=midline, field_mm=field_mm)
    return _sample_text_blocks(rng, exam)


def _fit_collimation_angle(
    angle: float, collimation: tuple[float, float, float, float], bbox: tuple[float, float, float, float]
) -> float:
    """Halve ``angle`` until the tilted field holds the lung box (at most 6 times, else 0).

    The lower corners (costophrenic angles) must be inside; the upper ones are moved in by 15% of the box width (the
    apices are narrow)."""
    r0, r1, c0, c1 = bbox
    dc = 0.15 * (c1 - c0)
    corners = np.array([[r0, c0 + dc], [r0, c1 - dc], [r1, c0], [r1, c1]])
    top, bottom, left, right = collimation
    centre = np.array([0.5 * (top + 1.0 - bottom), 0.5 * (left + 1.0 - right)])
    half = np.array([0.5 * (1.0 - bottom - top), 0.5 * (1.0 - right - left)])
    for _ in range(6):
        a = np.deg2rad(angle)
        rel = corners - centre
        cos, sin = np.cos(a), np.sin(a)
        local = np.stack([cos * rel[:, 0] - sin * rel[:, 1], sin * rel[:, 0] + cos * rel[:, 1]], axis=1)
        if np.all(np.abs(local) <= half):
            return float(angle)
        angle *= 0.5
    return 0.0


_INSTITUTIONS = ("NORTHFIELD", "RIVERSIDE", "ST. ANNE'S", "LAKEVIEW", "MERCY", "WESTGATE", "HILLCREST", "BAYSIDE")
_INSTITUTION_KINDS = ("GENERAL HOSPITAL", "MEDICAL CENTER", "UNIV. HOSPITAL", "RADIOLOGY", "CLINIC")


def _sample_text_blocks(rng: np.random.Generator, exam: ExamSetting) -> list[tuple[list[str], float, str]]:
    """Exam labels (PORTABLE / AP / SUPINE ...) and institution / technologist / exposure blocks, unplaced."""
    portable = exam.setting == "portable"
    labels: list[str] = []
    if portable:
        if rng.random() < 0.7:
            labels.append("PORTABLE")
        if rng.random() < 0.6:
            labels.append(exam.view)
        if exam.supine:
            if rng.random() < 0.8:
                labels.append("SUPINE")
        elif rng.random() < 0.3:
            labels.append("SEMI-ERECT")
    else:
        if rng.random() < 0.15:
            labels.append(exam.view)
        if rng.random() < 0.1:
            labels.append("ERECT")
    corners = ("tl", "tr", "bl", "br")
    blocks: list[tuple[list[str], float, str]] = []
    label_height = float(rng.uniform(0.035, 0.05))
    label_corner = corners[int(rng.integers(4))]
    if labels:
        blocks.append((labels, label_height, label_corner))
    info: list[str] = []
    if rng.random() < 0.3:
        info.append(f"{_INSTITUTIONS[int(rng.integers(len(_INSTITUTIONS)))]} "
                    f"{_INSTITUTION_KINDS[int(rng.integers(len(_INSTITUTION_KINDS)))]}")
    if rng.random() < 0.25:
        info.append("TECH: " + "".join(chr(65 + int(i)) for i in rng.integers(0, 26, size=2)))
    if rng.random() < 0.2:
        kvp = int(rng.integers(70, 96)) if portable else int(rng.integers(110, 126))
        info.append(f"{kvp} kV  {float(rng.uniform(1.0, 5.0) if portable else rng.uniform(1.0, 3.2)):.1f} mAs")
    if rng.random() < 0.3:
        info.append(f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}")
    info_height = float(rng.uniform(0.022, 0.03))
    info_corner = corners[int(rng.integers(4))]
    if info:
        blocks.append((info, info_height, info_corner))
    return blocks


@lru_cache(maxsize=1)
def _font_advance() -> dict[str, float] | None:
    """Advance width of PIL's default font per glyph height, per character (None: fixed bitmap font)."""
    try:
        font = ImageFont.load_default(size=100)
    except TypeError:  # Pillow < 10.1
        return None
    return {chr(c): font.getlength(chr(c)) / 100.0 for c in range(32, 127)}


def _text_width(text: str, height: float) -> float:
    """Width of ``text`` burnt in at glyph height ``height`` (fractions of a square image)."""
    advance = _font_advance()
    if advance is None:
        return 0.62 * height * len(text)
    return height * sum(advance.get(ch, 0.6) for ch in text)


def _place_text_block(
    lines: list[str],
    height: float,
    first_corner: str,
    markers: list[tuple[str, float, float, float]],
    collimation: tuple[float, float, float, float],
    bbox: tuple[float, float, float, float],
) -> list[tuple[str, float, float, float]]:
    """Stack ``lines`` in the first image corner (from ``first_corner`` on) where they overlap neither the lung box
    nor the markers already placed; shrinks to 70% once; ``[]`` if nowhere fits."""
    top, bottom, left, right = collimation
    r0, r1, c0, c1 = bbox
    taken = [(row, row + h, col, col + _text_width(text, h)) for text, row, col, h in markers]
    lung = (r0 - 0.01, r1 + 0.01, c0 - 0.01, c1 + 0.01)
    order = ("tl", "tr", "br", "bl")
    start = order.index(first_corner)
    for scale in (1.0, 0.7):
        h = height * scale
        width = max(_text_width(t, h) for t in lines)
        block_h = h * 1.2 * len(lines)
        for corner in order[start:] + order[:start]:
            row = top + 0.02 if corner[0] == "t" else 1.0 - bottom - 0.02 - block_h
            col = left + 0.03 if corner[1] == "l" else 1.0 - right - 0.03 - width
            # step past markers already in that corner (along the column, away from the edge)
            for _ in range(4):
                box = (row, row + block_h, col, col + width)
                hit = [t for t in taken if _overlap(box, t)]
                if not hit:
                    break
                row = max(t[1] for t in hit) + 0.01 if corner[0] == "t" else min(t[0] for t in hit) - 0.01 - block_h
            box = (row, row + block_h, col, col + width)
            inside = row >= 0.0 and row + block_h <= 1.0 and col >= 0.0 and col + width <= 1.0
            if inside and not _overlap(box, lung) and not any(_overlap(box, t) for t in taken):
                return [(t, float(row + i * 1.2 * h), float(col), float(h)) for i, t in enumerate(lines)]
    return []


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether two ``(row0, row1, col0, col1)`` boxes intersect."""
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def sample_devices(
    rng: np.random.Generator,
    setting: str = "portable",
    lung_bbox: tuple[float, float, float, float] = (0.2, 0.8, 0.2, 0.8),
    midline: float | None = None,
    field_mm: float = _FIELD_MM,
    probabilities: Mapping[str, float] | None = None,
) -> list[Device]:
    """Draw the radiopaque devices of one film, placed relative to the lungs.

    Each kind of :data:`DEVICE_KINDS` is present with its probability (:data:`DEVICE_PROBABILITIES` of the
    setting): an endotracheal tube from the top of the image to 2-6 cm above the carina; a nasogastric tube down
    the oesophagus (just left of the midline), through the diaphragm and curling in the stomach (patient's left =
    image right); a central venous line (internal jugular, subclavian or PICC, mostly right-sided) ending in the
    superior vena cava; 2-5 ECG electrodes near the shoulders, the lower chest and over the heart with wires to the
    image edge; 4-7 sternotomy wire loops on the midline; a pacemaker below a clavicle with its lead to the right
    ventricle.

    Args:
        rng: random generator.
        setting: ``"erect"`` or ``"portable"`` (chooses the probabilities).
        lung_bbox: ``(row0, row1, col0, col1)`` of the lungs, fractions of the image.
        midline: column (fraction) of the mediastinal midline (``None``: the centre of ``lung_bbox``).
        field_mm: width of the detector field in mm (device sizes are physical).
        probabilities: per-kind probabilities overriding those of the setting (missing kinds: the setting's).

    Returns:
        the devices (possibly none), in the order of :data:`DEVICE_KINDS`.

    Raises:
        ValueError: for an unknown setting or device kind, a probability outside [0, 1] or a bad ``field_mm``.
    """
    if setting not in SETTINGS:
        raise ValueError(f"`setting` must be one of {SETTINGS}, got {setting!r}.")
    if not field_mm > 0:
        raise ValueError(f"`field_mm` must be > 0, got {field_mm}.")
    probs = dict(DEVICE_PROBABILITIES[setting])
    for kind, p in (probabilities or {}).items():
        if kind not in DEVICE_KINDS:
            raise ValueError(f"`probabilities` keys must be in {DEVICE_KINDS}, got {kind!r}.")
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"`probabilities[{kind!r}]` must be in [0, 1], got {p}.")
        probs[kind] = float(p)
    r0, r1, c0, c1 = (float(v) for v in lung_bbox)
    if not (r1 > r0 and c1 > c0):
        raise ValueError(
            f"`lung_bbox` must be (row0, row1, col0, col1) with row1 > row0 and col1 > col0, got {lung_bbox}."
        )
    cm = float(midline) if midline is not None else 0.5 * (c0 + c1)
    hgt, wid = r1 - r0, c1 - c0
    mm = 1.0 / field_mm
    devices: list[Device] = []

    def pt(row: float, col: float) -> tuple[float, float]:
        return (float(row), float(col))

    if rng.random() < probs["ett"]:
        tip = r0 + hgt * rng.uniform(0.1, 0.24)
        pts = [pt(-0.03, cm + rng.normal(0.0, 0.012)), pt(0.5 * r0, cm + rng.normal(0.0, 0.008)),
               pt(r0 + 0.4 * (tip - r0), cm + rng.normal(0.0, 0.004)), pt(tip, cm + rng.normal(0.0, 0.004))]
        devices.append(Device("ett", pts, float(rng.uniform(9.0, 11.0) * mm), float(rng.uniform(0.8, 1.4))))
    if rng.random() < probs["ng_tube"]:
        ge = (r1 - hgt * rng.uniform(0.05, 0.12), cm + rng.uniform(0.03, 0.06))
        centre = (r1 + rng.uniform(-0.02, 0.06), cm + rng.uniform(0.1, 0.18))
        radius = rng.uniform(0.025, 0.05)
        theta0 = math.atan2(ge[0] - centre[0], ge[1] - centre[1])
        sweep = np.deg2rad(rng.uniform(200.0, 420.0) if rng.random() < 0.7 else rng.uniform(30.0, 120.0))
        sweep *= 1.0 if rng.random() < 0.5 else -1.0
        n_arc = max(3, int(abs(sweep) / np.deg2rad(45.0)))
        pts = [pt(-0.03, cm + 0.01 + rng.normal(0.0, 0.01)), pt(r0, cm + 0.015 + rng.normal(0.0, 0.005)),
               pt(r0 + 0.5 * hgt, cm + 0.02 + rng.normal(0.0, 0.005)), pt(*ge)]
        shrink = rng.uniform(0.5, 1.0)  # the curl tightens towards the tip
        for i in range(1, n_arc + 1):
            t = i / n_arc
            rad = radius * (1.0 - (1.0 - shrink) * t)
            a = theta0 + sweep * t
            pts.append(pt(centre[0] + rad * math.sin(a), centre[1] + rad * math.cos(a)))
        devices.append(Device("ng_tube", pts, float(rng.uniform(4.0, 6.0) * mm), float(rng.uniform(0.4, 0.8))))
    if rng.random() < probs["cvc"]:
        sgn = -1.0 if rng.random() < 0.7 else 1.0  # -1: patient's right (image left)
        tip = (r0 + hgt * rng.uniform(0.28, 0.42), cm - rng.uniform(0.02, 0.05))
        lateral = c0 + rng.uniform(0.05, 0.12) * wid if sgn < 0 else c1 - rng.uniform(0.05, 0.12) * wid
        u = rng.random()
        if u < 0.4:  # internal jugular
            pts = [pt(-0.03, cm + sgn * rng.uniform(0.06, 0.1)), pt(r0, cm + sgn * rng.uniform(0.05, 0.08))]
        elif u < 0.75:  # subclavian
            pts = [pt(r0 + rng.uniform(-0.02, 0.04), lateral), pt(r0 + 0.03, cm + sgn * 0.12)]
        else:  # PICC from the arm
            edge = -0.03 if sgn < 0 else 1.03
            pts = [pt(r0 + rng.uniform(0.05, 0.2), edge), pt(r0 + rng.uniform(0.0, 0.05), lateral),
                   pt(r0 + 0.02, cm + sgn * 0.12)]
        pts.append(pt(r0 + 0.15 * hgt, cm + (0.02 if sgn > 0 else -0.045)))  # brachiocephalic vein -> SVC
        pts.append(pt(*tip))
        devices.append(Device("cvc", pts, float(rng.uniform(2.0, 3.5) * mm), float(rng.uniform(0.5, 1.0))))
    if rng.random() < probs["ecg"]:
        sites = [
            (r0 + rng.uniform(-0.08, 0.04), c0 + rng.uniform(-0.04, 0.08)),  # right shoulder
            (r0 + rng.uniform(-0.08, 0.04), c1 - rng.uniform(-0.04, 0.08)),  # left shoulder
            (r1 + rng.uniform(-0.1, 0.05), c0 + rng.uniform(0.0, 0.1)),  # right lower chest
            (r1 + rng.uniform(-0.1, 0.05), c1 - rng.uniform(0.0, 0.1)),  # left lower chest
            (r0 + rng.uniform(0.4, 0.8) * hgt, cm + rng.uniform(0.05, 0.25)),  # precordial
        ]
        n = int(rng.integers(2, 6))
        diameter = float(rng.uniform(10.0, 15.0) * mm)
        att = float(rng.uniform(0.8, 1.6))
        for k in rng.permutation(len(sites))[:n]:
            centre = sites[int(k)]
            devices.append(Device("ecg", [pt(*centre)] + _wire_path(rng, centre), diameter, att))
    if rng.random() < probs["sternotomy"]:
        n = int(rng.integers(4, 8))
        first, last = r0 + 0.12 * hgt, r0 + rng.uniform(0.5, 0.65) * hgt
        drift = rng.normal(0.0, 0.01)
        pts = [pt(first + (last - first) * i / (n - 1) + rng.normal(0.0, 0.004),
                  cm + drift * i / (n - 1) + rng.normal(0.0, 0.004)) for i in range(n)]
        devices.append(Device("sternotomy", pts, float(rng.uniform(7.0, 10.0) * mm), float(rng.uniform(1.2, 2.0))))
    if rng.random() < probs["pacemaker"]:
        sgn = 1.0 if rng.random() < 0.85 else -1.0  # +1: patient's left (image right)
        gen_col = c1 - rng.uniform(0.1, 0.25) * wid if sgn > 0 else c0 + rng.uniform(0.1, 0.25) * wid
        gen = (r0 + rng.uniform(0.05, 0.15) * hgt, gen_col)
        pts = [pt(*gen), pt(r0 + 0.02 * hgt, cm + sgn * 0.1), pt(r0 + 0.2 * hgt, cm - 0.03),
               pt(r0 + 0.5 * hgt, cm - 0.06), pt(r0 + rng.uniform(0.62, 0.75) * hgt, cm + rng.uniform(0.05, 0.12))]
        devices.append(Device("pacemaker", pts, float(rng.uniform(40.0, 50.0) * mm), float(rng.uniform(2.5, 4.0))))
    return devices


def _wire_path(rng: np.random.Generator, start: tuple[float, float]) -> list[tuple[float, float]]:
    """A lead wire from an electrode to just beyond the nearest side or top edge, with two random bends."""
    row, col = start
    exits = {"left": col, "right": 1.0 - col, "top": row}
    edge = min(exits, key=exits.get) if rng.random() < 0.7 else "top"
    if edge == "left":
        end = (row + rng.normal(0.0, 0.1), -0.05)
    elif edge == "right":
        end = (row + rng.normal(0.0, 0.1), 1.05)
    else:
        end = (-0.05, col + rng.normal(0.0, 0.1))
    d = np.array(end) - np.array(start)
    normal = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
    pts = []
    for t in (0.33, 0.66):
        p = np.array(start) + t * d + normal * rng.normal(0.0, 0.04)
        pts.append((float(p[0]), float(p[1])))
    pts.append((float(end[0]), float(end[1])))
    return pts


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


def add_scatter(
    line_integral: torch.Tensor, ratio: float, sigma: float = 0.12, field_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Add scatter in the intensity domain and return the effective line integral.

    ``I = exp(-L)``, ``I_total = I + ratio * blur(I * field, sigma)``, ``L_eff = -log(I_total)``: a broad scatter
    kernel (only the irradiated field scatters) that lowers the contrast monotonically with ``ratio``.

    Args:
        line_integral: ``(H, W)`` line integral ``L``.
        ratio: scatter-to-primary ratio (of a uniform field), >= 0; 0 returns ``line_integral`` unchanged.
        sigma: Gaussian sigma of the scatter kernel as a fraction of the image size, > 0.
        field_mask: optional ``(H, W)`` irradiated field (bool or {0, 1}).

    Returns:
        ``(H, W)`` float32 effective line integral (<= ``L``).

    Raises:
        ValueError: for a non-2-D image, a negative ratio or a non-positive sigma.
    """
    if line_integral.ndim != 2:
        raise ValueError(f"`line_integral` must be 2-D (H, W), got shape {tuple(line_integral.shape)}.")
    if not ratio >= 0:
        raise ValueError(f"`ratio` (scatter-to-primary) must be >= 0, got {ratio}.")
    if not sigma > 0:
        raise ValueError(f"`sigma` (scatter kernel) must be > 0, got {sigma}.")
    if ratio == 0:
        return line_integral
    primary = torch.exp(-line_integral.float())
    source = primary if field_mask is None else primary * field_mask.float()
    scatter = _smooth_large(source, sigma * min(primary.shape))
    return -torch.log((primary + ratio * scatter).clamp(min=1e-12))


def _smooth_large(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Wide Gaussian blur ``(H, W)``, computed on an area-downsampled copy (edge-replicating) and upsampled."""
    h, w = image.shape
    factor = max(1, int(sigma // 3))
    small = F.interpolate(image[None, None], size=(-(-h // factor), -(-w // factor)), mode="area")
    kernel = gaussian_1d(torch.tensor(sigma / factor), truncated=3.0, normalize=True).to(small)
    small = separable_filtering(small, [kernel, kernel], mode="replicate")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0, 0]


def grid_pattern(
    shape: tuple[int, int],
    amplitude: float,
    period: float,
    angle: float = 0.0,
    phase: float = 0.0,
    beat: float = 0.0,
    beat_period: float = 32.0,
) -> torch.Tensor:
    """Lines of a stationary anti-scatter grid, in units of ``L`` (added to the log image).

    ``amplitude * (sin(2 pi u / period + phase) + beat * sin(2 pi u / beat_period + 2 phase))`` with ``u`` the
    pixel coordinate across the lines: fine lines and, with ``beat > 0``, moire-like bands parallel to them.

    Args:
        shape: ``(H, W)``.
        amplitude: line amplitude (units of ``L``), >= 0.
        period: line period in pixels, >= 2 (the Nyquist limit).
        angle: direction of the lines in degrees from vertical (0: vertical lines varying along the columns).
        phase: phase in radians.
        beat: relative amplitude of the moire bands, >= 0.
        beat_period: period of the moire bands in pixels, > 0.

    Returns:
        ``(H, W)`` float32 pattern.

    Raises:
        ValueError: for a negative amplitude or beat, a period below 2 px or a non-positive beat period.
    """
    if not amplitude >= 0:
        raise ValueError(f"`amplitude` must be >= 0, got {amplitude}.")
    if not period >= 2.0:
        raise ValueError(f"`period` must be >= 2 px (Nyquist), got {period}.")
    if not beat >= 0:
        raise ValueError(f"`beat` must be >= 0, got {beat}.")
    if not beat_period > 0:
        raise ValueError(f"`beat_period` must be > 0 px, got {beat_period}.")
    h, w = shape
    a = math.radians(angle)
    rows = torch.arange(h, dtype=torch.float64)[:, None]
    cols = torch.arange(w, dtype=torch.float64)[None, :]
    u = cols * math.cos(a) + rows * math.sin(a)
    out = torch.sin(2.0 * math.pi * u / period + phase)
    if beat > 0:
        out = out + beat * torch.sin(2.0 * math.pi * u / beat_period + 2.0 * phase)
    return (amplitude * out).float()


def tone_curve(
    image: torch.Tensor, kind: str = "sigmoid", slope: float = 6.0, centre: float = 0.5, width: float = 0.7
) -> torch.Tensor:
    """Monotone detector look-up table on display values in [0, 1], mapping 0 to 0 and 1 to 1.

    - ``"none"``: identity.
    - ``"sigmoid"``: S-curve ``sigmoid(slope (x - centre))`` rescaled to [0, 1].
    - ``"film"``: a film's H&D characteristic curve (density against log exposure: toe, straight part of
      ``width`` around ``centre``, shoulder; corners of sharpness ``slope``), as brightness ``1 - D(1 - x)`` because a
      bright pixel (dense body) had a low exposure.

    Args:
        image: tensor with values in [0, 1] (any shape).
        kind: one of :data:`TONE_CURVES`.
        slope: steepness, > 0.
        centre: centre in [0, 1].
        width: width of the film's straight part, in (0, 1].

    Returns:
        the mapped tensor (same shape and dtype), monotone non-decreasing in ``image``.

    Raises:
        ValueError: for an unknown kind or parameters out of range.
    """
    if kind not in TONE_CURVES:
        raise ValueError(f"`kind` must be one of {TONE_CURVES}, got {kind!r}.")
    if not slope > 0:
        raise ValueError(f"`slope` must be > 0, got {slope}.")
    if not 0.0 <= centre <= 1.0:
        raise ValueError(f"`centre` must be in [0, 1], got {centre}.")
    if not 0.0 < width <= 1.0:
        raise ValueError(f"`width` must be in (0, 1], got {width}.")
    if kind == "none":
        return image
    x = image.double()
    if kind == "sigmoid":

        def curve(v):
            return torch.sigmoid(slope * (v - centre))

    else:
        toe, shoulder = (1.0 - centre) - 0.5 * width, (1.0 - centre) + 0.5 * width

        def density(v):
            return (F.softplus(slope * (v - toe)) - F.softplus(slope * (v - shoulder))) / slope

        def curve(v):
            return -density(1.0 - v)

    zero, one = curve(torch.tensor(0.0, dtype=torch.float64)), curve(torch.tensor(1.0, dtype=torch.float64))
    # clamped: rounding can leave -1e-17 at the toe, which a following gamma (x ** g) would turn into NaN
    return ((curve(x) - zero) / (one - zero)).clamp(0.0, 1.0).to(image.dtype)


def _as_device(device: Device | Mapping) -> Device:
    """``device`` as a checked :class:`Device` (a dict from a manifest is accepted)."""
    if isinstance(device, Mapping):
        unknown = set(device) - {"kind", "points", "width", "attenuation"}
        if unknown:
            raise ValueError(f"a device dict has keys kind, points, width, attenuation, got also {sorted(unknown)}.")
        device = Device(**device)
    if not isinstance(device, Device):
        raise ValueError(f"a device must be a Device or a dict, got {type(device)}.")
    if device.kind not in DEVICE_KINDS:
        raise ValueError(f"device `kind` must be one of {DEVICE_KINDS}, got {device.kind!r}.")
    pts = np.asarray(device.points, dtype=np.float64)
    need = 1 if device.kind == "sternotomy" else 2
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < need or not np.isfinite(pts).all():
        raise ValueError(
            f"device {device.kind!r} needs >= {need} finite (row, col) points, got shape {pts.shape}."
        )
    if not (device.width > 0 and np.isfinite(device.width)):
        raise ValueError(f"device `width` must be > 0, got {device.width}.")
    if not (device.attenuation >= 0 and np.isfinite(device.attenuation)):
        raise ValueError(f"device `attenuation` must be >= 0, got {device.attenuation}.")
    return device


def _spline(points: np.ndarray, step: float) -> np.ndarray:
    """Catmull-Rom curve through ``points`` ``(N, 2)`` (pixel units), sampled about every ``step`` pixels."""
    if len(points) < 3:
        n = max(2, int(np.linalg.norm(points[-1] - points[0]) / step) + 1)
        t = np.linspace(0.0, 1.0, n)[:, None]
        return points[0] * (1 - t) + points[-1] * t
    ext = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    out = [points[:1]]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        n = max(2, int(np.linalg.norm(p2 - p1) / step) + 1)
        t = np.linspace(0.0, 1.0, n)[1:, None]
        seg = 0.5 * (
            2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
        )
        out.append(seg)
    return np.concatenate(out)


def _offset(curve: np.ndarray, distance: float) -> np.ndarray:
    """``curve`` ``(N, 2)`` shifted by ``distance`` along its left normal."""
    tangent = np.gradient(curve, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
    return curve + distance * np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)


def _device_ops(device: Device, h: int, w: int, ss: int) -> list[tuple]:
    """Drawing operations of one device in supersampled pixel coordinates ``(x, y)``: ``("line", xy, width, value)``,
    ``("ellipse", box, fill, outline, outline_width)``, ``("rrect", box, radius, value)``; later ones overwrite."""
    pts = np.asarray(device.points, dtype=np.float64)
    xy = np.stack([pts[:, 1] * w * ss, pts[:, 0] * h * ss], axis=1)
    size = device.width * w * ss  # the device's size in supersampled pixels
    att = float(device.attenuation)
    ops: list[tuple] = []
    if device.kind in ("ett", "ng_tube", "cvc"):
        curve = _spline(xy, step=ss)
        if device.kind == "ett":  # plastic tube (walls seen edge-on are denser) with a radiopaque stripe
            wall = max(1.0, 0.15 * size)
            ops.append(("line", curve, size, 0.3 * att))
            ops.append(("line", curve, max(1.0, size - 2.0 * wall), 0.12 * att))
            ops.append(("line", _offset(curve, 0.25 * size), max(1.0, 0.15 * size), att))
        else:
            ops.append(("line", curve, size, 0.7 * att))
            ops.append(("line", curve, max(1.0, 0.5 * size), att))
    elif device.kind == "ecg":  # foam pad, lead wire, metal ring and snap
        cx, cy = xy[0]
        ops.append(("ellipse", _circle(cx, cy, 1.2 * size), 0.06 * att, None, 0))
        ops.append(("line", _spline(xy, step=ss), max(1.0, 0.13 * size), 0.5 * att))
        ops.append(("ellipse", _circle(cx, cy, 0.5 * size), None, att, max(1.0, 0.14 * size)))
        ops.append(("ellipse", _circle(cx, cy, 0.17 * size), 1.3 * att, None, 0))
    elif device.kind == "sternotomy":  # twisted steel loops around the sternum
        for cx, cy in xy:
            half_w, half_h = 0.5 * size, 0.22 * size
            ops.append(("ellipse", (cx - half_w, cy - half_h, cx + half_w, cy + half_h), None, att,
                        max(1.0, 0.14 * size)))
            ops.append(("ellipse", _circle(cx + 0.45 * size, cy, 0.16 * size), 1.3 * att, None, 0))
    else:  # pacemaker: lead, titanium can, epoxy header with its connectors
        ops.append(("line", _spline(xy, step=ss), max(1.0, 0.05 * size), 0.35 * att))
        cx, cy = xy[0]
        half_w, half_h = 0.5 * size, 0.45 * size
        ops.append(("rrect", (cx - half_w, cy - half_h, cx + half_w, cy + half_h), 0.3 * size, att))
        ops.append(("rrect", (cx - 0.38 * size, cy - half_h - 0.18 * size, cx + 0.38 * size, cy - half_h + 0.04 * size),
                    0.08 * size, 0.3 * att))
        for dx in (-0.15, 0.15):
            ops.append(("ellipse", _circle(cx + dx * size, cy - half_h - 0.07 * size, 0.07 * size), 1.2 * att, None, 0))
    return ops


def _circle(cx: float, cy: float, radius: float) -> tuple[float, float, float, float]:
    return (cx - radius, cy - radius, cx + radius, cy + radius)


def _ops_bounds(ops: list[tuple]) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` around the drawing operations."""
    boxes = []
    for op in ops:
        if op[0] == "line":
            pad = 0.5 * op[2] + 2.0
            lo, hi = op[1].min(axis=0), op[1].max(axis=0)
            boxes.append((lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad))
        else:
            x0, y0, x1, y1 = op[1]
            pad = 2.0 + (op[4] if op[0] == "ellipse" else 0.0)
            boxes.append((x0 - pad, y0 - pad, x1 + pad, y1 + pad))
    b = np.asarray(boxes)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def render_devices(
    shape: tuple[int, int], devices: Sequence[Device | Mapping], supersample: int = _SUPERSAMPLE
) -> torch.Tensor:
    """Extra attenuation ``(H, W)`` of radiopaque devices, to add to the line integral before the exposure.

    Each device is drawn with PIL at ``supersample`` times the output size (within its own bounding box), box-averaged
    down (anti-aliased, partial-volume) and the devices' attenuations are summed; the sum is blurred by the focal
    spot and detector (sigma ``0.0022 * min(H, W)`` px, about 1 mm).

    Args:
        shape: ``(H, W)``.
        devices: :class:`Device` records (or dicts with the same keys, as read back from a manifest).
        supersample: supersampling factor, >= 1.

    Returns:
        ``(H, W)`` float32 non-negative attenuation (units of ``L``), zero away from the devices.

    Raises:
        ValueError: for a bad device record or shape.
    """
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ValueError(f"`shape` must be two positive sizes, got {shape}.")
    if int(supersample) < 1:
        raise ValueError(f"`supersample` must be >= 1, got {supersample}.")
    ss = int(supersample)
    out = np.zeros((h, w), dtype=np.float32)
    for device in devices:
        ops = _device_ops(_as_device(device), h, w, ss)
        x0, y0, x1, y1 = _ops_bounds(ops)
        c0, r0 = max(0, int(math.floor(x0 / ss))), max(0, int(math.floor(y0 / ss)))
        c1, r1 = min(w, int(math.ceil(x1 / ss)) + 1), min(h, int(math.ceil(y1 / ss)) + 1)
        if c1 <= c0 or r1 <= r0:
            continue  # entirely outside the image
        layer = Image.new("F", ((c1 - c0) * ss, (r1 - r0) * ss), 0.0)
        draw = ImageDraw.Draw(layer)
        ox, oy = c0 * ss, r0 * ss
        for op in ops:
            if op[0] == "line":
                xy = [(float(x - ox), float(y - oy)) for x, y in op[1]]
                draw.line(xy, fill=float(op[3]), width=max(1, int(round(op[2]))), joint="curve")
                if op[2] >= 3:  # round caps
                    for x, y in (xy[0], xy[-1]):
                        draw.ellipse(_circle(x, y, 0.5 * op[2]), fill=float(op[3]))
            elif op[0] == "ellipse":
                box = (op[1][0] - ox, op[1][1] - oy, op[1][2] - ox, op[1][3] - oy)
                draw.ellipse(box, fill=None if op[2] is None else float(op[2]),
                             outline=None if op[3] is None else float(op[3]), width=max(1, int(round(op[4]))))
            else:
                box = (op[1][0] - ox, op[1][1] - oy, op[1][2] - ox, op[1][3] - oy)
                draw.rounded_rectangle(box, radius=max(1, int(round(op[2]))), fill=float(op[3]))
        sub = np.asarray(layer, dtype=np.float32).reshape(r1 - r0, ss, c1 - c0, ss).mean(axis=(1, 3))
        out[r0:r1, c0:c1] += sub
    result = torch.from_numpy(out)
    if not devices:
        return result
    return gaussian_blur(result, _DEVICE_BLUR * min(h, w)).clamp(min=0.0)


def _field_mask(h: int, w: int, collimation: Sequence[float], angle: float = 0.0) -> torch.Tensor:
    """``(H, W)`` bool collimated field: the rectangle inside the four edges, rotated by ``angle`` about its centre."""
    top, bottom, left, right = collimation
    r0, r1 = int(round(top * h)), h - int(round(bottom * h))
    c0, c1 = int(round(left * w)), w - int(round(right * w))
    field_mask = torch.zeros(h, w, dtype=torch.bool)
    if angle == 0:
        field_mask[r0:r1, c0:c1] = True
        return field_mask
    a = math.radians(angle)
    rows = torch.arange(h, dtype=torch.float32)[:, None] + 0.5 - 0.5 * (r0 + r1)
    cols = torch.arange(w, dtype=torch.float32)[None, :] + 0.5 - 0.5 * (c0 + c1)
    along = math.cos(a) * rows - math.sin(a) * cols
    across = math.sin(a) * rows + math.cos(a) * cols
    return (along.abs() <= 0.5 * (r1 - r0)) & (across.abs() <= 0.5 * (c1 - c0))


def _check_params(params: AcquisitionParams) -> None:
    """Raise a ValueError naming the first field of ``params`` out of its range."""
    if not params.photons > 0:
        raise ValueError(f"`photons` must be > 0, got {params.photons}.")
    if params.view not in VIEWS:
        raise ValueError(f"`view` must be one of {VIEWS}, got {params.view!r}.")
    if params.setting not in SETTINGS:
        raise ValueError(f"`setting` must be one of {SETTINGS}, got {params.setting!r}.")
    if not params.scatter >= 0:
        raise ValueError(f"`scatter` (scatter-to-primary ratio) must be >= 0, got {params.scatter}.")
    if params.scatter > 0 and not params.scatter_sigma > 0:
        raise ValueError(f"`scatter_sigma` must be > 0, got {params.scatter_sigma}.")
    if not params.grid_amplitude >= 0:
        raise ValueError(f"`grid_amplitude` must be >= 0, got {params.grid_amplitude}.")
    if params.grid_amplitude > 0 and not params.grid_period >= 2.0:
        raise ValueError(f"`grid_period` must be >= 2 px (Nyquist), got {params.grid_period}.")
    if params.tone_curve not in TONE_CURVES:
        raise ValueError(f"`tone_curve` must be one of {TONE_CURVES}, got {params.tone_curve!r}.")
    if not params.edge_gain_fine >= 0:
        raise ValueError(f"`edge_gain_fine` must be >= 0, got {params.edge_gain_fine}.")
    if params.edge_gain_fine > 0 and not params.edge_sigma_fine > 0:
        raise ValueError(f"`edge_sigma_fine` must be > 0, got {params.edge_sigma_fine}.")
    if not 0.0 <= params.range_compression < 1.0:
        raise ValueError(f"`range_compression` must be in [0, 1), got {params.range_compression}.")
    if params.range_compression > 0 and not params.range_sigma > 0:
        raise ValueError(f"`range_sigma` must be > 0, got {params.range_sigma}.")
    if not abs(params.collimation_angle) < 45.0:
        raise ValueError(f"`collimation_angle` must be within (-45, 45) degrees, got {params.collimation_angle}.")
    if len(params.collimation) != 4:
        raise ValueError(f"`collimation` must be 4 fractions (top, bottom, left, right), got {params.collimation}.")


def attenuation_to_radiograph(
    line_integral: torch.Tensor, params: AcquisitionParams, rng: np.random.Generator
) -> torch.Tensor:
    """Simulate detection and processing of a line integral image: the single entry point of the acquisition model.

    Order: devices added to ``L``; scatter (intensity domain, from the collimated field); grid lines (log domain);
    quantum noise; percentile window inside the collimated field; range compression; unsharp mask(s); tone curve;
    gamma; electronic noise; collimation (optionally tilted) with a penumbra; burnt-in text. Steps at their neutral
    values are skipped, so the original parameters give the original image bit for bit. Only the noise draws from
    ``rng`` (one draw, as before).

    Convention: bright = high attenuation (bones white, lungs dark), as a processed radiograph is displayed
    (MONOCHROME2).

    Args:
        line_integral: ``(H, W)`` Beer-Lambert line integral ``L`` (>= 0).
        params: acquisition parameters (see :func:`sample_acquisition`).
        rng: random generator for the noise.

    Returns:
        ``(H, W)`` float32 image in [0, 1].

    Raises:
        ValueError: for a non-2-D image or parameters out of range.
    """
    if line_integral.ndim != 2:
        raise ValueError(f"`line_integral` must be 2-D (H, W), got shape {tuple(line_integral.shape)}.")
    _check_params(params)
    h, w = line_integral.shape
    lin = line_integral.float().clamp(min=0.0)
    field_mask = _field_mask(h, w, params.collimation, params.collimation_angle)
    if params.devices:
        lin = lin + render_devices((h, w), params.devices)
    if params.scatter > 0:
        lin = add_scatter(lin, params.scatter, params.scatter_sigma, field_mask)
    if params.grid_amplitude > 0:
        lin = lin + grid_pattern(
            (h, w), params.grid_amplitude, params.grid_period, params.grid_angle, params.grid_phase,
            params.grid_beat, params.grid_beat_period,
        )
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    # quantum noise: the log of a Poisson count N0 exp(-L) has std ~ exp(L / 2) / sqrt(N0)
    lin = lin + torch.randn(h, w, generator=gen) * torch.exp(lin.clamp(max=8.0) / 2.0) / np.sqrt(params.photons)
    values = lin[field_mask]
    lo, hi = np.percentile(values.numpy(), params.window)
    img = (lin - float(lo)) / max(float(hi - lo), 1e-6)
    if params.range_compression > 0:  # equalisation: compress the large-scale contrast about the field's mean
        low = _smooth_large(img, params.range_sigma * min(h, w))
        img = img - params.range_compression * (low - low[field_mask].mean())
    base = img
    if params.edge_gain > 0:
        img = img + params.edge_gain * (img - gaussian_blur(img, params.edge_sigma * min(h, w)))
    if params.edge_gain_fine > 0:  # second, fine scale (detail contrast, also sharpens the noise)
        img = img + params.edge_gain_fine * (base - gaussian_blur(base, params.edge_sigma_fine * min(h, w)))
    img = img.clamp(0.0, 1.0)
    if params.tone_curve != "none":
        img = tone_curve(img, params.tone_curve, params.tone_slope, params.tone_centre, params.tone_width)
    img = img**params.gamma
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
