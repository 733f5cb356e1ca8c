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
"""Synthetic deformations for training pairs: the paper's protocol and a milder follow-up-visit protocol.

Sampling is separate from applying (torchio style): :class:`RandSyntheticDeformation` samples a parameter dict and
hands it to the deterministic :class:`SyntheticDeformation`, which can replay it exactly.

Convention:
    Images are ``(C, H, W)`` (MONAI array-transform layout, no batch). The applied DDF is ``(2, H, W)`` in pixels on
    the **reference** grid, channel 0 along H (rows), channel 1 along W (columns), and follows
    :mod:`monai_jrs.utils.conventions`: ``warp(floating, ddf_applied) ~= reference``, i.e.
    ``reference(p) ~= floating(p + ddf_applied(p))``. The floating image itself is
    ``floating = warp(reference, psi)`` with the *sampling field* ``psi`` on the floating grid.

How MONAI is used:
    - The affine part is composed with :func:`monai.transforms.utils.create_translate`, ``create_rotate`` and
      ``create_scale`` as a centred ``(row, col)`` sampling matrix, the same convention as the matrix
      :class:`monai.transforms.RandAffine` records in ``applied_operations``. A recorded matrix is replayed with
      ``SyntheticDeformation(affine=...)`` (see :func:`affine_from_applied_operations`), and
      :meth:`SyntheticDeformation.monai_affine_params` gives the ``monai.transforms.Affine`` arguments that
      reproduce the affine part with MONAI's own resampler (both are tested). RandAffine's own sampler draws uniform symmetric ranges and cannot
      express the paper's distributions (magnitudes in ``[20, 180]`` degrees in 5 degree steps, shifts of
      ``[25, 40]`` px along an axis), so the parameters are sampled here.
    - The elastic part is a cubic B-spline on a control grid laid out like MONAI's ``RandDeformGrid`` (control
      points every ``control_spacing`` px, extending past the image) -- the default ``elastic_backend="bspline"``.
      With ``elastic_backend="monai"`` the elastic field is drawn by :class:`monai.transforms.Rand2DElastic` itself
      and recovered exactly with the coordinate-image trick (:func:`sampling_field_from_transform`), then stored
      as a dense field so it can be replayed (Rand2DElastic records nothing and cannot be replayed itself).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Rand2DElastic, Randomizable, Transform
from monai.transforms.utils import create_rotate, create_scale, create_translate
from monai.utils import look_up_option
from monai.utils.type_conversion import convert_to_dst_type

from monai_jrs.utils.conventions import (
    affine_to_ddf,
    check_ddf,
    compose_ddf,
    identity_grid,
    invert_ddf,
    jacobian_determinant,
    warp,
)
from monai_jrs.utils.enums import DeformationProtocol

logger = logging.getLogger(__name__)

__all__ = [
    "PROTOCOL_DEFAULTS",
    "SyntheticDeformationError",
    "bspline_displacement",
    "bspline_displacement_at",
    "control_grid_shape",
    "sampling_field_from_transform",
    "affine_from_applied_operations",
    "fov_mask",
    "SyntheticDeformation",
    "RandSyntheticDeformation",
]

#: Default sampling ranges per protocol. Distances are pixels (at ``reference_size`` when given), angles degrees.
#: ``rotation_range``/``translation_range``/``scale_range``/``elastic_range`` are *magnitude* ranges; a random sign
#: (rotation, scale) or direction (translation) is drawn separately. ``rotation_step=0`` means continuous.
PROTOCOL_DEFAULTS: dict[str, dict[str, Any]] = {
    DeformationProtocol.PAPER.value: {
        "rotation_range": (20.0, 180.0),
        "rotation_step": 5.0,
        "translation_range": (25.0, 40.0),
        "translation_direction": "axis",
        "scale_range": (0.0, 0.0),
        "elastic_range": (1.0, 15.0),
    },
    DeformationProtocol.FOLLOWUP.value: {
        "rotation_range": (0.0, 5.0),
        "rotation_step": 0.0,
        "translation_range": (0.0, 10.0),
        "translation_direction": "any",
        "scale_range": (0.0, 0.08),
        "elastic_range": (0.0, 3.0),
    },
}

_MODES = ("bilinear", "nearest", "bicubic")
_PADDING_MODES = ("zeros", "border", "reflection")
_MASK_MODES = ("nearest", "bilinear")
_DIRECTIONS = ("axis", "any")
_ON_FAILURE = ("raise", "keep_last")
_BACKENDS = ("bspline", "monai")
#: Newton tolerance (px, max residual) of the exact B-spline inverse.
_INVERSE_TOL = 1e-6


class SyntheticDeformationError(RuntimeError):
    """Raised when no sample meeting the Dice / folding rules is found within ``max_retries``."""


def control_grid_shape(spatial_shape: Sequence[int], control_spacing: float | Sequence[float]) -> tuple[int, int]:
    """Number of cubic B-spline control points per axis for an image of ``spatial_shape``.

    ``n = ceil((N - 1) / s) + 3``: the knots span the image plus one extra control point on each side, so the
    field on the image is fully supported (like the two extra points of MONAI's ``create_control_grid``).

    Args:
        spatial_shape: ``(H, W)``.
        control_spacing: control-point spacing in pixels, one value or ``(s_h, s_w)``.

    Returns:
        ``(n_h, n_w)``.
    """
    spacing = _pair(control_spacing, "control_spacing")
    if len(spatial_shape) != 2:
        raise ValueError(f"`spatial_shape` must be (H, W), got {tuple(spatial_shape)}.")
    return tuple(int(math.ceil((int(n) - 1) / s)) + 3 for n, s in zip(spatial_shape, spacing))  # type: ignore


def bspline_displacement(
    control_points: torch.Tensor,
    spatial_shape: Sequence[int],
    control_spacing: float | Sequence[float],
    margin: int = 0,
) -> torch.Tensor:
    """Dense displacement of a cubic B-spline with the given control-point coefficients.

    The field is ``e(x) = sum_k c_k beta3((x + o) / s + 1 - k)`` per axis (separable), with ``beta3`` the cubic
    B-spline kernel and ``o`` centring the knot span on the image. Evaluated exactly as ``B_h @ c @ B_w^T``; the
    grid may extend ``margin`` pixels beyond the image on every side (coefficients outside the control grid are 0).

    Args:
        control_points: ``(2, n_h, n_w)`` coefficients in pixels (channel 0 along H, 1 along W); the shape must be
            :func:`control_grid_shape` ``(spatial_shape, control_spacing)``.
        spatial_shape: ``(H, W)`` of the image.
        control_spacing: control-point spacing in pixels.
        margin: extra pixels evaluated on each side.

    Returns:
        ``(2, H + 2 * margin, W + 2 * margin)`` displacement in pixels.
    """
    if not isinstance(control_points, torch.Tensor) or control_points.ndim != 3 or control_points.shape[0] != 2:
        got = tuple(control_points.shape) if isinstance(control_points, torch.Tensor) else type(control_points)
        raise ValueError(f"`control_points` must be a (2, n_h, n_w) tensor, got {got}.")
    expected = control_grid_shape(spatial_shape, control_spacing)
    if tuple(control_points.shape[1:]) != expected:
        raise ValueError(
            f"`control_points` must have shape (2, {expected[0]}, {expected[1]}) for image {tuple(spatial_shape)} "
            f"and control_spacing {control_spacing}, got {tuple(control_points.shape)}."
        )
    if margin < 0:
        raise ValueError(f"`margin` must be >= 0, got {margin}.")
    spacing = _pair(control_spacing, "control_spacing")
    dtype = control_points.dtype if torch.is_floating_point(control_points) else torch.float32
    cp = control_points.to(dtype)
    b_h = _bspline_matrix(int(spatial_shape[0]), expected[0], spacing[0], margin, dtype, cp.device)
    b_w = _bspline_matrix(int(spatial_shape[1]), expected[1], spacing[1], margin, dtype, cp.device)
    return torch.einsum("hk,ckl,wl->chw", b_h, cp, b_w)


def bspline_displacement_at(
    control_points: torch.Tensor,
    points: torch.Tensor,
    spatial_shape: Sequence[int],
    control_spacing: float | Sequence[float],
    jacobian: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The B-spline displacement of :func:`bspline_displacement` evaluated exactly at arbitrary points.

    Same field as :func:`bspline_displacement` (which evaluates it on the pixel grid), but at off-grid positions,
    using the 4 x 4 non-zero cubic B-spline weights of each point; the field is 0 beyond the control grid's support.

    Args:
        control_points: ``(2, n_h, n_w)`` coefficients in pixels (see :func:`bspline_displacement`).
        points: ``(2, ...)`` positions ``(row, col)`` in pixels of the image grid.
        spatial_shape: ``(H, W)`` of the image the control grid was laid out for.
        control_spacing: control-point spacing in pixels.
        jacobian: also return the spatial derivatives.

    Returns:
        ``(2, ...)`` displacement at ``points`` (dtype of ``points``); with ``jacobian=True`` also
        ``(2, 2, ...)`` ``d e_i / d x_j`` (``i`` the displacement channel, ``j`` the axis, both ``(row, col)``).
    """
    expected = control_grid_shape(spatial_shape, control_spacing)
    if not isinstance(control_points, torch.Tensor) or tuple(control_points.shape) != (2, *expected):
        got = tuple(control_points.shape) if isinstance(control_points, torch.Tensor) else type(control_points)
        raise ValueError(
            f"`control_points` must have shape (2, {expected[0]}, {expected[1]}) for image {tuple(spatial_shape)} "
            f"and control_spacing {control_spacing}, got {got}."
        )
    if not isinstance(points, torch.Tensor) or points.ndim < 1 or points.shape[0] != 2:
        raise ValueError(f"`points` must be a (2, ...) tensor of (row, col) positions, got {type(points).__name__}.")
    spacing = _pair(control_spacing, "control_spacing")
    pts = points.reshape(2, -1)
    cp = control_points.to(device=pts.device, dtype=pts.dtype)
    w_h, dw_h, k_h = _bspline_taps(pts[0], int(spatial_shape[0]), expected[0], spacing[0])
    w_w, dw_w, k_w = _bspline_taps(pts[1], int(spatial_shape[1]), expected[1], spacing[1])
    # coefficients of the 4 x 4 taps of every point, (2, P, 4, 4); contracted along columns, then rows
    flat_idx = (k_h[:, :, None] * expected[1] + k_w[:, None, :]).reshape(-1)
    coef = cp.reshape(2, -1).index_select(1, flat_idx).view(2, -1, 4, 4)
    along_w = torch.matmul(coef, w_w[:, :, None])[..., 0]  # (2, P, 4)
    disp = (along_w * w_h).sum(-1)
    if not jacobian:
        return disp.reshape(points.shape)
    d_row = (along_w * dw_h).sum(-1)
    d_col = (torch.matmul(coef, dw_w[:, :, None])[..., 0] * w_h).sum(-1)
    jac = torch.stack((d_row, d_col), dim=1)
    return disp.reshape(points.shape), jac.reshape(2, 2, *points.shape[1:])


def sampling_field_from_transform(
    transform: Callable[..., torch.Tensor], spatial_shape: Sequence[int], margin: int = 32
) -> torch.Tensor:
    """Recover the sampling field of a MONAI spatial transform with the coordinate-image trick.

    A 2-channel image holding its own pixel coordinates is padded by ``margin`` pixels (so points sampled outside
    the image are not clamped) and passed through ``transform(coords, spatial_size=(H, W))``; the output holds the
    sampled source coordinate of every output pixel. Bilinear resampling of a linear function is exact, so the
    result is exact wherever the source point lies within ``margin`` px of the image.

    Args:
        transform: a MONAI array transform accepting ``spatial_size=`` whose output is centred on its input, e.g.
            :class:`monai.transforms.Rand2DElastic` (called with its own random state; use ``mode="bilinear"``).
        spatial_shape: ``(H, W)``.
        margin: padding in pixels; must exceed the largest displacement.

    Returns:
        ``(2, H, W)`` field ``d`` with ``transform(img)(q) == img(q + d(q))`` (:func:`~monai_jrs.utils.warp`).
    """
    h, w = int(spatial_shape[0]), int(spatial_shape[1])
    coords = identity_grid((h + 2 * margin, w + 2 * margin))[0] - float(margin)
    out = transform(coords, spatial_size=(h, w))
    # a plain tensor: the field is stored as a parameter, not an image (drop MetaTensor metadata/history)
    out = out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)
    if tuple(out.shape) != (2, h, w):
        raise ValueError(f"`transform` must return a (2, {h}, {w}) coordinate image, got {tuple(out.shape)}.")
    return out.float() - identity_grid((h, w))[0]


def affine_from_applied_operations(img: torch.Tensor) -> torch.Tensor:
    """The ``(3, 3)`` matrix that the last MONAI ``RandAffine``/``Affine`` recorded on a MetaTensor.

    Args:
        img: ``(C, H, W)`` MetaTensor output of ``RandAffine(d)`` (non-lazy).

    Returns:
        ``(3, 3)`` float64 matrix in the centred ``(row, col)`` convention, usable as ``SyntheticDeformation(affine=)``.

    Raises:
        ValueError: when no affine operation is recorded.
    """
    ops = getattr(img, "applied_operations", None)
    if not ops:
        raise ValueError("`img` must be a MetaTensor output of MONAI RandAffine/Affine, got no applied_operations.")
    info = ops[-1].get("extra_info", {})
    info = info.get("extra_info", info)
    if "affine" not in info:
        raise ValueError(f"the last applied operation ({ops[-1].get('class')}) recorded no affine matrix.")
    return torch.as_tensor(info["affine"], dtype=torch.float64).reshape(3, 3)


def fov_mask(ddf_applied: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Reference pixels whose content is visible in the floating image.

    Args:
        ddf_applied: ``(2, H, W)`` or ``(B, 2, H, W)`` applied DDF on the reference grid.
        margin: required distance (px) from the floating image's border.

    Returns:
        boolean ``(1, H, W)`` (or ``(B, 1, H, W)``): ``p + ddf(p)`` lies inside the floating grid.
    """
    batched = ddf_applied.ndim == 4
    ddf = ddf_applied if batched else ddf_applied.unsqueeze(0)
    check_ddf(ddf, name="ddf_applied")
    h, w = ddf.shape[2:]
    pos = identity_grid((h, w), device=ddf.device, dtype=ddf.dtype) + ddf
    inside = (
        (pos[:, 0] >= margin) & (pos[:, 0] <= h - 1 - margin) & (pos[:, 1] >= margin) & (pos[:, 1] <= w - 1 - margin)
    ).unsqueeze(1)
    return inside if batched else inside[0]


class SyntheticDeformation(Transform):
    """Deterministic synthetic deformation: affine (translate, rotate, scale) followed by an elastic field.

    The *content* of the reference is moved as in the paper: first translated by ``translation``, then rotated by
    ``rotation`` degrees and scaled by ``scale`` about the image centre, then deformed elastically. In sampling form
    (floating grid ``q``, reference point sampled)::

        psi(q) = A(q + e(q)) - q,   A(x) = R(-rotation) (x - c) / scale - translation + c,
        floating = warp(reference, psi)

    where ``e`` is the elastic sampling field on the floating grid, ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` on
    ``(row, col)`` and ``c`` the image centre. The applied DDF is the inverse mapping on the reference grid,
    ``ddf_applied(p) = y - p`` where ``y`` solves ``y + e(y) = r`` with ``r = A^-1(p)`` (exact inverse matrix).
    ``psi`` is exact. With ``control_points`` the B-spline ``e`` is known everywhere, and ``y`` is solved by Newton's
    method with ``e`` evaluated exactly off the grid: ``ddf_applied`` is exact on the whole grid, inside and outside
    the field of view (to 1e-6 px in float64, to the rounding level in float32: 3e-5 px at 64 x 64, 3e-4 at 512).
    With a dense ``elastic_field`` only grid samples of ``e`` exist: the inverse comes from
    :func:`~monai_jrs.utils.invert_ddf` with bilinear lookups on a border-extended grid, accurate to the bilinear
    interpolation of ``e`` (~1e-2 px) in the field of view.

    Convention:
        Images ``(C, H, W)``; ``ddf_applied`` ``(2, H, W)`` in pixels on the reference grid, channel 0 along H,
        channel 1 along W; ``warp(floating, ddf_applied) ~= reference`` (``monai.networks.blocks.Warp``).

    Args:
        rotation: content rotation in degrees (positive = counter-clockwise as displayed, rows pointing down).
        translation: content shift ``(rows, cols)`` in pixels.
        scale: content magnification (``> 0``); ``1.05`` enlarges by 5 %.
        control_points: ``(2, n_h, n_w)`` cubic B-spline coefficients of ``e`` in pixels (see
            :func:`bspline_displacement`), or ``None``.
        control_spacing: control-point spacing in pixels (one value or ``(s_h, s_w)``).
        elastic_field: alternatively a dense ``(2, H, W)`` elastic sampling field ``e`` (e.g. recovered from
            ``Rand2DElastic``); it is border-extended for the inversion, so ``ddf_applied`` is less exact near the
            image border than with ``control_points``.
        affine: alternatively a full ``(3, 3)`` sampling matrix ``A`` (e.g. recorded by ``RandAffine``); then
            ``rotation``, ``translation`` and ``scale`` must keep their defaults.
        mode: image interpolation, one of {``"bilinear"``, ``"nearest"``, ``"bicubic"``}.
        padding_mode: image padding, one of {``"zeros"``, ``"border"``, ``"reflection"``}. Default ``"zeros"``: the
            area uncovered by the motion is empty like the outside of a collimated detector field.
        mask_mode: ``"nearest"`` or ``"bilinear"`` (then thresholded at ``mask_threshold``); masks pad with zeros.
        mask_threshold: threshold for ``mask_mode="bilinear"``.
        inverse_iters: maximum iterations of the inversion of the elastic part (Newton steps for
            ``control_points``, fixed-point iterations of :func:`~monai_jrs.utils.invert_ddf` for ``elastic_field``).
        exact_inverse: ``control_points`` only: refine the bilinear fixed-point inverse (~1e-2 px) with Newton
            steps on the exact spline (float32 rounding level). False is about 3x cheaper per pair at 256 px and
            accurate enough for training targets; keep True for evaluation.

    Raises:
        ValueError: on invalid arguments.

    Example::

        >>> img = torch.rand(1, 32, 32)
        >>> flt, flt_mask, ddf = SyntheticDeformation(rotation=10.0, translation=(2.0, -3.0))(img)
        >>> tuple(flt.shape), flt_mask is None, tuple(ddf.shape)
        ((1, 32, 32), True, (2, 32, 32))
    """

    def __init__(
        self,
        rotation: float = 0.0,
        translation: Sequence[float] = (0.0, 0.0),
        scale: float = 1.0,
        control_points: torch.Tensor | Sequence | None = None,
        control_spacing: float | Sequence[float] = 64.0,
        elastic_field: torch.Tensor | Sequence | None = None,
        affine: torch.Tensor | Sequence | None = None,
        mode: str = "bilinear",
        padding_mode: str = "zeros",
        mask_mode: str = "bilinear",
        mask_threshold: float = 0.5,
        inverse_iters: int = 30,
        exact_inverse: bool = True,
    ) -> None:
        self.rotation = float(rotation)
        self.translation = tuple(float(t) for t in _pair(translation, "translation", positive=False))
        self.scale = float(scale)
        if not math.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"`scale` must be a positive number, got {scale}.")
        if not math.isfinite(self.rotation):
            raise ValueError(f"`rotation` must be a finite number of degrees, got {rotation}.")
        self.control_spacing = _pair(control_spacing, "control_spacing")
        if control_points is not None and elastic_field is not None:
            raise ValueError("give at most one of `control_points` and `elastic_field`, got both.")
        self.control_points = None if control_points is None else torch.as_tensor(control_points).float()
        if self.control_points is not None and (self.control_points.ndim != 3 or self.control_points.shape[0] != 2):
            raise ValueError(f"`control_points` must have shape (2, n_h, n_w), got {tuple(self.control_points.shape)}.")
        self.elastic_field = None if elastic_field is None else torch.as_tensor(elastic_field).float()
        if self.elastic_field is not None and (self.elastic_field.ndim != 3 or self.elastic_field.shape[0] != 2):
            raise ValueError(f"`elastic_field` must have shape (2, H, W), got {tuple(self.elastic_field.shape)}.")
        self.affine = None if affine is None else torch.as_tensor(affine, dtype=torch.float64)
        if self.affine is not None:
            if tuple(self.affine.shape) != (3, 3):
                raise ValueError(f"`affine` must be a (3, 3) matrix, got shape {tuple(self.affine.shape)}.")
            if self.rotation != 0.0 or self.translation != (0.0, 0.0) or self.scale != 1.0:
                raise ValueError("`affine` replaces rotation/translation/scale; leave those at their defaults.")
        self.mode = look_up_option(mode, _MODES)
        self.padding_mode = look_up_option(padding_mode, _PADDING_MODES)
        self.mask_mode = look_up_option(mask_mode, _MASK_MODES)
        self.mask_threshold = float(mask_threshold)
        if int(inverse_iters) < 1:
            raise ValueError(f"`inverse_iters` must be >= 1, got {inverse_iters}.")
        self.inverse_iters = int(inverse_iters)
        self.exact_inverse = bool(exact_inverse)

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments that define the geometry (``SyntheticDeformation(**params)`` replays it)."""
        return {
            "rotation": self.rotation,
            "translation": self.translation,
            "scale": self.scale,
            "control_points": self.control_points,
            "control_spacing": self.control_spacing,
            "elastic_field": self.elastic_field,
            "affine": self.affine,
        }

    def affine_matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> torch.Tensor:
        """The ``(3, 3)`` sampling matrix ``A`` (floating point -> reference point, centred ``(row, col)``).

        Built with MONAI's ``create_translate(-translation) @ create_rotate(-radians(rotation)) @
        create_scale(1 / scale)`` (content translated first, then rotated and scaled about the centre).
        """
        if self.affine is not None:
            return self.affine.to(dtype=dtype, device=device)
        # MONAI's create_* use float32 torch math; cast the parameters' matrices to float64 before composing.
        t = torch.as_tensor(create_translate(2, [-v for v in self.translation], backend="torch"), dtype=torch.float64)
        r = torch.as_tensor(create_rotate(2, -math.radians(self.rotation), backend="torch"), dtype=torch.float64)
        s = torch.as_tensor(create_scale(2, [1.0 / self.scale] * 2, backend="torch"), dtype=torch.float64)
        return (t @ r @ s).to(dtype=dtype, device=device)

    def monai_affine_params(self) -> dict[str, Any]:
        """Arguments of :class:`monai.transforms.Affine` that resample with the same affine part.

        MONAI's ``AffineGrid`` composes ``create_rotate @ create_translate @ create_scale``, so the translation is
        expressed in the rotated frame: ``translate_params = -R(rotation) @ translation``.

        Raises:
            ValueError: when the transform was built from a full ``affine`` matrix (pass it as ``affine=``).
        """
        if self.affine is not None:
            raise ValueError("this transform holds a full `affine` matrix; pass it to monai.transforms.Affine(affine=).")
        a = math.radians(self.rotation)
        rot = ((math.cos(a), -math.sin(a)), (math.sin(a), math.cos(a)))
        shift = [-(rot[i][0] * self.translation[0] + rot[i][1] * self.translation[1]) for i in range(2)]
        return {"rotate_params": -a, "translate_params": shift, "scale_params": [1.0 / self.scale] * 2}

    def is_identity(self) -> bool:
        """Whether all magnitudes are zero (the transform then returns its input unchanged)."""
        eye = torch.eye(3, dtype=torch.float64)
        elastic_zero = all(f is None or not bool(torch.any(f != 0)) for f in (self.control_points, self.elastic_field))
        return elastic_zero and bool(torch.equal(self.affine_matrix(), eye))

    def check_spatial_shape(self, spatial_shape: Sequence[int]) -> None:
        """Raise a ``ValueError`` unless the elastic parameters fit an image of ``spatial_shape`` ``(H, W)``.

        Checked for every input, also when all magnitudes are zero (identity shortcut), so a control grid or dense
        field of the wrong size is reported instead of being silently ignored.
        """
        h, w = int(spatial_shape[0]), int(spatial_shape[1])
        if self.control_points is not None:
            expected = control_grid_shape((h, w), self.control_spacing)
            if tuple(self.control_points.shape[1:]) != expected:
                raise ValueError(
                    f"`control_points` must have shape (2, {expected[0]}, {expected[1]}) for image {(h, w)} and "
                    f"control_spacing {self.control_spacing}, got {tuple(self.control_points.shape)}."
                )
        if self.elastic_field is not None and tuple(self.elastic_field.shape[1:]) != (h, w):
            raise ValueError(
                f"`elastic_field` must have shape (2, {h}, {w}) to match the image, "
                f"got {tuple(self.elastic_field.shape)}."
            )

    def elastic(self, spatial_shape: Sequence[int], margin: int = 0, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor | None:
        """Elastic sampling field ``e`` on the floating grid, ``(2, H + 2 margin, W + 2 margin)``, or ``None``."""
        h, w = int(spatial_shape[0]), int(spatial_shape[1])
        self.check_spatial_shape((h, w))
        if self.control_points is not None:
            return bspline_displacement(self.control_points.to(device=device, dtype=dtype), (h, w),
                                        self.control_spacing, margin)
        if self.elastic_field is not None:
            e = self.elastic_field.to(device=device, dtype=dtype)
            return F.pad(e[None], (margin,) * 4, mode="replicate")[0] if margin else e
        return None

    def sampling_field(
        self, spatial_shape: Sequence[int], dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The exact sampling field ``psi`` ``(2, H, W)``: ``floating = warp(reference, psi)`` (floating grid)."""
        h, w = int(spatial_shape[0]), int(spatial_shape[1])
        mat = self.affine_matrix(dtype=dtype, device=device)
        e = self.elastic(spatial_shape, 0, dtype, device)
        # psi = A(q + e(q)) - q
        q = identity_grid((h, w), device=device, dtype=dtype)[0]
        centre = torch.tensor([(h - 1) / 2.0, (w - 1) / 2.0], dtype=dtype, device=device).view(2, 1, 1)
        src = q if e is None else q + e
        mapped = torch.einsum("ij,jhw->ihw", mat[:2, :2], src - centre) + mat[:2, 2].view(2, 1, 1) + centre
        return mapped - q

    def applied_ddf(
        self, spatial_shape: Sequence[int], dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The applied DDF ``(2, H, W)`` on the reference grid: ``warp(floating, ddf_applied) ~= reference``.

        Affine only: the exact inverse matrix. With ``control_points``: exact on the whole grid, to 1e-6 px in
        float64 and to the float32 rounding level (see :meth:`_inverse_bspline`). With a dense ``elastic_field``:
        fixed-point inversion with bilinear lookups on a border-extended grid (:func:`~monai_jrs.utils.invert_ddf`),
        accurate to the bilinear interpolation of the field (~1e-2 px) in the field of view.
        """
        h, w = int(spatial_shape[0]), int(spatial_shape[1])
        mat = self.affine_matrix(dtype=dtype, device=device)
        inv = torch.linalg.inv(mat.double()).to(dtype)
        e = self.elastic(spatial_shape, 0, dtype, device)
        if e is None or not bool(torch.any(e != 0)):
            return affine_to_ddf(inv[None], (h, w))[0]
        if self.control_points is not None:
            return self._inverse_bspline((h, w), dtype, device)
        # dense field: known on the grid only, inverted with bilinear lookups on a border-extended grid
        margin = int(math.ceil(float(e.norm(dim=0).max()))) + 2
        e_pad = self.elastic(spatial_shape, margin, dtype, device)
        aff_inv_pad = affine_to_ddf(inv[None], (h + 2 * margin, w + 2 * margin))
        e_inv_pad = invert_ddf(e_pad[None], num_iters=self.inverse_iters, method="fixed_point")
        return compose_ddf(e_inv_pad, aff_inv_pad)[0, :, margin : margin + h, margin : margin + w]

    def fields(
        self, spatial_shape: Sequence[int], dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling field ``psi`` and applied DDF for an image of ``spatial_shape``.

        Args:
            spatial_shape: ``(H, W)``.
            dtype: floating dtype of the fields.
            device: device of the fields.

        Returns:
            ``(psi, ddf_applied)``, both ``(2, H, W)`` in pixels: ``floating = warp(reference, psi)`` on the floating
            grid and ``warp(floating, ddf_applied) ~= reference`` on the reference grid (see :meth:`sampling_field`
            and :meth:`applied_ddf`).
        """
        return self.sampling_field(spatial_shape, dtype, device), self.applied_ddf(spatial_shape, dtype, device)

    def _inverse_bspline(
        self, spatial_shape: tuple[int, int], dtype: torch.dtype, device: torch.device | str | None
    ) -> torch.Tensor:
        """Applied DDF for ``control_points``: solve ``y + e(y) = r = A^-1(p)`` for every reference pixel ``p``.

        Start: fixed-point iterations ``y <- r - e(y)`` with bilinear lookups of ``e`` sampled on a grid padded by
        ``max|e| + 2`` px (cheap, accurate to ~1e-2 px). Then Newton steps with ``e`` and its Jacobian evaluated
        exactly off the grid (:func:`bspline_displacement_at`), on the points whose residual ``|y + e(y) - r|`` is
        still above the tolerance; a step that does not reduce the residual is halved (up to 8 times). The
        tolerance is ``1e-6`` px in float64 and the rounding level ``4 eps max(H, W)`` in float32 (1.2e-4 px at
        256 x 256): ``ddf_applied`` is exact to that everywhere, not only in the field of view. Cost: about one
        evaluation with Jacobian and one without per pixel, plus a few for the slowest points.
        """
        h, w = spatial_shape
        ftype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        tol = max(_INVERSE_TOL, 4.0 * torch.finfo(ftype).eps * max(h, w))
        cp = self.control_points.to(device=device, dtype=ftype)  # type: ignore[union-attr]
        spacing = self.control_spacing
        inv = torch.linalg.inv(self.affine_matrix(dtype=torch.float64, device=device))
        p64 = identity_grid((h, w), device=device, dtype=torch.float64)[0].reshape(2, -1)
        centre = torch.tensor([(h - 1) / 2.0, (w - 1) / 2.0], dtype=torch.float64, device=device).view(2, 1)
        r = (inv[:2, :2] @ (p64 - centre) + inv[:2, 2:] + centre).to(ftype)
        p = p64.to(ftype)

        # start: bilinear fixed point on the padded grid
        e_grid = bspline_displacement(cp, (h, w), spacing)
        margin = int(math.ceil(float(torch.hypot(e_grid[0], e_grid[1]).max()))) + 2
        e_pad = bspline_displacement(cp, (h, w), spacing, margin)[None]
        norm_scale = torch.tensor([2.0 / (h + 2 * margin - 1), 2.0 / (w + 2 * margin - 1)], dtype=ftype,
                                  device=device).view(2, 1)
        y = r.clone()
        for _ in range(self.inverse_iters):
            g = ((y + margin) * norm_scale - 1.0).flip(0).t().reshape(1, 1, -1, 2)  # (x=col, y=row) for grid_sample
            e_y = F.grid_sample(e_pad, g, mode="bilinear", padding_mode="border", align_corners=True)[0, :, 0]
            y_new = r - e_y
            change = float((y_new - y).abs().max())
            y = y_new
            if change < 1e-3:
                break

        if not self.exact_inverse:
            return (y - p).reshape(2, h, w).to(dtype)
        # Newton with the exact field and Jacobian, on the points not converged yet
        norm = torch.full_like(r[0], float("inf"))
        active = torch.arange(r.shape[1], device=r.device)
        for _ in range(self.inverse_iters):
            y_a, r_a = y[:, active], r[:, active]
            disp, jac = bspline_displacement_at(cp, y_a, (h, w), spacing, jacobian=True)  # type: ignore[misc]
            res_a = y_a + disp - r_a
            norm_a = torch.hypot(res_a[0], res_a[1])
            norm[active] = norm_a
            todo = norm_a >= tol
            if not bool(todo.any()):
                break
            active, y_a, r_a, res_a, jac, norm_a = (
                active[todo], y_a[:, todo], r_a[:, todo], res_a[:, todo], jac[..., todo], norm_a[todo]
            )
            # Newton step: (I + J) step = res, 2 x 2 per point; a fixed-point step where I + J is singular
            a, b, c, d = 1.0 + jac[0, 0], jac[0, 1], jac[1, 0], 1.0 + jac[1, 1]
            det = a * d - b * c
            ok = det.abs() > 1e-6
            safe = torch.where(ok, det, torch.ones_like(det))
            step = torch.stack(((d * res_a[0] - b * res_a[1]) / safe, (-c * res_a[0] + a * res_a[1]) / safe))
            step = torch.where(ok, step, res_a)
            lam = torch.ones_like(norm_a)
            cand = y_a - step
            res_c = cand + bspline_displacement_at(cp, cand, (h, w), spacing) - r_a  # type: ignore[operator]
            norm_c = torch.hypot(res_c[0], res_c[1])
            for _ in range(8):  # backtracking: halve the step where the residual grows
                worse = torch.nonzero(norm_c > norm_a).flatten()
                if worse.numel() == 0:
                    break
                lam[worse] *= 0.5
                cand[:, worse] = y_a[:, worse] - lam[worse] * step[:, worse]
                e_w = bspline_displacement_at(cp, cand[:, worse], (h, w), spacing)
                res_w = cand[:, worse] + e_w - r_a[:, worse]  # type: ignore[operator]
                norm_c[worse] = torch.hypot(res_w[0], res_w[1])
            better = norm_c <= norm_a
            y[:, active[better]], norm[active[better]] = cand[:, better], norm_c[better]
            active = active[norm[active] >= tol]
            if active.numel() == 0:
                break
        worst = float(norm.max())
        if worst > max(1e-3, 10.0 * tol):  # only a folding field (min_jacobian=None) should get here
            logger.warning("elastic inverse not converged after %d iterations: max residual %.3g px (folding "
                           "field?); raise `inverse_iters` or `min_jacobian`.", self.inverse_iters, worst)
        return (y - p).reshape(2, h, w).to(dtype)

    def __call__(
        self, img: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Deform ``img`` (and ``mask``) into the floating image.

        Args:
            img: ``(C, H, W)`` reference image (tensor or MetaTensor; numpy is accepted).
            mask: optional ``(C', H, W)`` reference mask.

        Returns:
            ``(floating, floating_mask, ddf_applied)``: ``(C, H, W)`` like ``img`` (type and metadata kept),
            ``(C', H, W)`` mask with values {0, 1} like ``mask`` (``None`` without mask), and ``(2, H, W)`` float
            tensor. All magnitudes zero: the inputs are returned unchanged (copies) with a zero DDF.
        """
        img_t = _check_2d(img, "img")
        h, w = img_t.shape[1:]
        mask_t = None if mask is None else _check_2d(mask, "mask", (h, w))
        self.check_spatial_shape((h, w))
        dtype = img_t.dtype if img_t.dtype in (torch.float32, torch.float64) else torch.float32
        if self.is_identity():
            zero = torch.zeros(2, h, w, dtype=dtype, device=img_t.device)
            flt_mask = None if mask is None else convert_to_dst_type(torch.as_tensor(mask_t).clone(), mask)[0]
            return convert_to_dst_type(img_t.clone(), img)[0], flt_mask, zero
        psi, ddf = self.fields((h, w), dtype=dtype, device=img_t.device)
        flt = warp(img_t[None].to(dtype), psi[None], mode=self.mode, padding_mode=self.padding_mode)[0]
        flt_mask = None
        if mask_t is not None:
            flt_mask = self.warp_mask(mask_t, psi)
            # dtype of the caller's mask (uint8, bool, float...); ``mask_t`` was already cast to float
            flt_mask = convert_to_dst_type(flt_mask, mask)[0]
        return convert_to_dst_type(flt, img, dtype=dtype)[0], flt_mask, ddf

    def warp_mask(self, mask: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """Warp a ``(C, H, W)`` mask with the sampling field ``psi`` ``(2, H, W)``; returns {0, 1} floats."""
        m = torch.as_tensor(mask).to(dtype=psi.dtype)
        out = warp(m[None], psi[None], mode="nearest" if self.mask_mode == "nearest" else "bilinear",
                   padding_mode="zeros")[0]
        return (out >= self.mask_threshold).to(psi.dtype) if self.mask_mode == "bilinear" else out


class RandSyntheticDeformation(Randomizable):
    """Sample paper-protocol or follow-up-protocol deformations and apply them with :class:`SyntheticDeformation`.

    Sampling (magnitudes uniform in the ranges, independent random signs):

    - rotation: ``paper`` magnitude uniform over ``{20, 25, ..., 180}`` degrees (``rotation_step=5``);
      ``followup`` continuous in ``[0, 5]``.
    - translation: magnitude uniform in ``translation_range`` px; ``translation_direction="axis"`` (paper: left,
      right, up or down with equal probability) or ``"any"`` (uniform angle; follow-up default).
    - scale: ``1 +/- u``, ``u`` uniform in ``scale_range`` (paper: none; follow-up: up to 8 %).
    - elastic: a normal random control grid (``elastic_backend="bspline"``) or ``Rand2DElastic``'s own draw
      (``"monai"``), rescaled so that ``max_p |e(p)|`` (Euclidean, over the image) is uniform in ``elastic_range``.

    Rejection: a sample is redrawn when the elastic part folds (min Jacobian determinant of ``q -> q + e(q)``
    below ``min_jacobian``) or, for ``protocol="paper"`` with ``dice_threshold`` set, when
    ``Dice(reference_mask, floating_mask) >= dice_threshold``. After ``max_retries`` redraws ``on_failure="raise"``
    raises :class:`SyntheticDeformationError`; ``"keep_last"`` logs a warning and returns the last sample. An empty
    reference mask makes the Dice rule unsatisfiable: ``"raise"`` raises ``ValueError`` at once, ``"keep_last"``
    logs a warning and returns the first sample. ``dice_threshold`` is ignored for ``protocol="followup"``.

    Image size: all pixel quantities (translation, elastic magnitude, control spacing) are given for an image of
    ``reference_size``; for an image of size ``(H, W)`` translations are scaled per axis by ``H / ref_h`` and
    ``W / ref_w``, the elastic magnitude and control spacing by ``sqrt(H W / (ref_h ref_w))``. ``None`` uses the
    pixel values as given. (The paper used NIH ChestX-ray14, whose images are 1024 x 1024, but it does not state
    the working resolution of its pixel ranges.)

    Args:
        protocol: ``"paper"`` or ``"followup"`` (:class:`~monai_jrs.utils.DeformationProtocol`).
        rotation_range: ``(min, max)`` rotation magnitude in degrees; ``None`` = protocol default.
        rotation_step: quantisation step of the magnitude in degrees (``0`` = continuous); ``None`` = default.
        translation_range: ``(min, max)`` translation magnitude in px; ``None`` = default.
        translation_direction: ``"axis"`` or ``"any"``; ``None`` = default.
        scale_range: ``(min, max)`` relative scale change magnitude; ``None`` = default.
        elastic_range: ``(min, max)`` of the maximum elastic displacement in px; ``None`` = default.
        control_spacing: B-spline control-point spacing in px (at ``reference_size``).
        reference_size: ``(H, W)`` or one int the pixel ranges refer to; ``None`` = use them as given.
        dice_threshold: paper only; keep a sample only if Dice < this; ``None`` disables.
        max_retries: maximum number of redraws after the first sample.
        on_failure: ``"raise"`` or ``"keep_last"``.
        min_jacobian: minimum Jacobian determinant of the elastic part (folding guard); ``None`` disables.
        elastic_backend: ``"bspline"`` or ``"monai"`` (see module docstring).
        mode, padding_mode, mask_mode, mask_threshold, inverse_iters, exact_inverse: see
            :class:`SyntheticDeformation`.

    Example::

        >>> t = RandSyntheticDeformation(protocol="followup")
        >>> _ = t.set_random_state(0)
        >>> flt, flt_mask, ddf = t(torch.rand(1, 64, 64))
        >>> tuple(ddf.shape)
        (2, 64, 64)
    """

    def __init__(
        self,
        protocol: str = DeformationProtocol.PAPER,
        rotation_range: Sequence[float] | None = None,
        rotation_step: float | None = None,
        translation_range: Sequence[float] | None = None,
        translation_direction: str | None = None,
        scale_range: Sequence[float] | None = None,
        elastic_range: Sequence[float] | None = None,
        control_spacing: float | Sequence[float] = 64.0,
        reference_size: int | Sequence[int] | None = None,
        dice_threshold: float | None = 0.70,
        max_retries: int = 20,
        on_failure: str = "raise",
        min_jacobian: float | None = 0.1,
        elastic_backend: str = "bspline",
        mode: str = "bilinear",
        padding_mode: str = "zeros",
        mask_mode: str = "bilinear",
        mask_threshold: float = 0.5,
        inverse_iters: int = 30,
        exact_inverse: bool = True,
    ) -> None:
        self.protocol = look_up_option(str(protocol), [p.value for p in DeformationProtocol])
        defaults = PROTOCOL_DEFAULTS[self.protocol]
        self.rotation_range = _range(rotation_range, defaults["rotation_range"], "rotation_range")
        self.rotation_step = float(defaults["rotation_step"] if rotation_step is None else rotation_step)
        if self.rotation_step < 0:
            raise ValueError(f"`rotation_step` must be >= 0 degrees (0 = continuous), got {rotation_step}.")
        self.translation_range = _range(translation_range, defaults["translation_range"], "translation_range")
        direction = defaults["translation_direction"] if translation_direction is None else translation_direction
        self.translation_direction = look_up_option(direction, _DIRECTIONS)
        self.scale_range = _range(scale_range, defaults["scale_range"], "scale_range")
        if self.scale_range[1] >= 1.0:
            raise ValueError(f"`scale_range` magnitudes must be < 1 (relative change), got {self.scale_range}.")
        self.elastic_range = _range(elastic_range, defaults["elastic_range"], "elastic_range")
        self.control_spacing = _pair(control_spacing, "control_spacing")
        self.reference_size = None if reference_size is None else _pair(reference_size, "reference_size")
        if dice_threshold is not None and not 0.0 < float(dice_threshold) <= 1.0:
            raise ValueError(f"`dice_threshold` must be in (0, 1] or None, got {dice_threshold}.")
        self.dice_threshold = None if dice_threshold is None else float(dice_threshold)
        if int(max_retries) < 0:
            raise ValueError(f"`max_retries` must be >= 0, got {max_retries}.")
        self.max_retries = int(max_retries)
        self.on_failure = look_up_option(on_failure, _ON_FAILURE)
        self.min_jacobian = None if min_jacobian is None else float(min_jacobian)
        self.elastic_backend = look_up_option(elastic_backend, _BACKENDS)
        self._apply_kwargs = {
            "mode": look_up_option(mode, _MODES),
            "padding_mode": look_up_option(padding_mode, _PADDING_MODES),
            "mask_mode": look_up_option(mask_mode, _MASK_MODES),
            "mask_threshold": float(mask_threshold),
            "inverse_iters": int(inverse_iters),
            "exact_inverse": bool(exact_inverse),
        }
        self._params: dict[str, Any] | None = None
        #: diagnostics of the last call: number of rejected draws, Dice of the kept sample (None without rule).
        self.last_num_rejected = 0
        self.last_dice: float | None = None

    @property
    def uses_dice_rule(self) -> bool:
        """Whether the Dice rejection rule is active (paper protocol with a threshold)."""
        return self.protocol == DeformationProtocol.PAPER.value and self.dice_threshold is not None

    def scale_factors(self, spatial_shape: Sequence[int]) -> tuple[float, float]:
        """Per-axis factors from ``reference_size`` pixels to image pixels (``(1, 1)`` when it is ``None``)."""
        if self.reference_size is None:
            return 1.0, 1.0
        return float(spatial_shape[0]) / self.reference_size[0], float(spatial_shape[1]) / self.reference_size[1]

    def randomize(self, data: Sequence[int] | None = None) -> None:
        """Draw one parameter set for an image of spatial shape ``data`` = ``(H, W)``."""
        if data is None or len(data) != 2:
            raise ValueError(f"`randomize` needs the spatial shape (H, W), got {data}.")
        h, w = int(data[0]), int(data[1])
        fh, fw = self.scale_factors((h, w))
        iso = math.sqrt(fh * fw)
        lo, hi = self.rotation_range
        if self.rotation_step > 0:
            steps = np.arange(lo, hi + 1e-9 * max(1.0, hi), self.rotation_step)
            magnitude = float(steps[self.R.randint(len(steps))]) if len(steps) else lo
        else:
            magnitude = float(self.R.uniform(lo, hi))
        rotation = magnitude * (1.0 if self.R.rand() < 0.5 else -1.0)
        shift = float(self.R.uniform(*self.translation_range))
        if self.translation_direction == "axis":
            direction = [(0.0, -1.0), (0.0, 1.0), (-1.0, 0.0), (1.0, 0.0)][self.R.randint(4)]  # left, right, up, down
        else:
            angle = self.R.uniform(0.0, 2.0 * math.pi)
            direction = (math.sin(angle), math.cos(angle))
        translation = (shift * direction[0] * fh, shift * direction[1] * fw)
        scale = 1.0 + float(self.R.uniform(*self.scale_range)) * (1.0 if self.R.rand() < 0.5 else -1.0)
        spacing = tuple(s * iso for s in self.control_spacing)
        max_disp = float(self.R.uniform(*self.elastic_range)) * iso
        params: dict[str, Any] = {
            "rotation": rotation,
            "translation": translation,
            "scale": scale,
            "control_points": None,
            "control_spacing": spacing,
            "elastic_field": None,
        }
        if max_disp > 0:
            if self.elastic_backend == "bspline":
                shape = control_grid_shape((h, w), spacing)
                cp = torch.as_tensor(self.R.standard_normal((2, *shape)), dtype=torch.float32)
                field = bspline_displacement(cp, (h, w), spacing)
                params["control_points"] = cp * (max_disp / max(float(field.norm(dim=0).max()), 1e-12))
            else:
                rand_elastic = Rand2DElastic(spacing=spacing, magnitude_range=(1.0, 1.0), prob=1.0,
                                             padding_mode="border", mode="bilinear")
                rand_elastic.set_random_state(state=self.R)
                margin = int(math.ceil(4 * max(spacing))) + 8
                field = sampling_field_from_transform(rand_elastic, (h, w), margin=margin)
                params["elastic_field"] = field * (max_disp / max(float(field.norm(dim=0).max()), 1e-12))
        self._params = params

    def get_params(self) -> dict[str, Any]:
        """The parameters of the last draw (pass them to :class:`SyntheticDeformation` to replay)."""
        if self._params is None:
            raise RuntimeError("no parameters sampled yet; call the transform or `randomize` first.")
        return dict(self._params)

    def deformation(self) -> SyntheticDeformation:
        """The deterministic transform of the last draw."""
        return SyntheticDeformation(**self.get_params(), **self._apply_kwargs)

    def __call__(
        self, img: torch.Tensor, mask: torch.Tensor | None = None, randomize: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Sample (with rejection) and apply a deformation.

        Args:
            img: ``(C, H, W)`` reference image.
            mask: ``(C', H, W)`` reference mask; required when the Dice rule is active.
            randomize: ``False`` re-applies the last parameters (no rejection).

        Returns:
            ``(floating, floating_mask, ddf_applied)`` as :meth:`SyntheticDeformation.__call__`.

        Raises:
            ValueError: bad inputs, a missing mask while the Dice rule is active, or an empty mask with
                ``on_failure="raise"``.
            SyntheticDeformationError: no acceptable sample within ``max_retries`` (``on_failure="raise"``).
        """
        img_t = _check_2d(img, "img")
        spatial = tuple(int(s) for s in img_t.shape[1:])
        if not randomize:
            self.last_num_rejected, self.last_dice = 0, None
            return self.deformation()(img, mask)
        if self.uses_dice_rule and mask is None:
            raise ValueError(
                f"`mask` is required for the Dice rule (protocol='paper', dice_threshold={self.dice_threshold}); "
                "pass the reference mask or set dice_threshold=None."
            )
        ref_mask = None if mask is None else _check_2d(mask, "mask", spatial)
        dice_rule = self.uses_dice_rule
        if dice_rule and not bool(torch.any(torch.as_tensor(ref_mask) > 0.5)):
            if self.on_failure == "raise":
                raise ValueError("the reference mask is empty, so the rule Dice(original, deformed) < "
                                 f"{self.dice_threshold} cannot be met; pass a non-empty mask or dice_threshold=None.")
            logger.warning("empty reference mask: Dice rule cannot be met, keeping the first sample.")
            dice_rule = False
        rejected, reasons = 0, []
        dtype = img_t.dtype if img_t.dtype in (torch.float32, torch.float64) else torch.float32
        deform, dice = None, None
        for attempt in range(self.max_retries + 1):
            self.randomize(spatial)
            deform = self.deformation()
            folded = self._folds(deform, spatial)
            dice = None
            if not folded and dice_rule:
                # the rule needs only the floating mask: the (costlier) applied DDF is computed for the kept sample
                psi = deform.sampling_field(spatial, dtype=dtype, device=img_t.device)
                dice = _dice(ref_mask, deform.warp_mask(ref_mask, psi))  # type: ignore[arg-type]
            if not folded and (dice is None or dice < self.dice_threshold):  # type: ignore[operator]
                self.last_num_rejected, self.last_dice = rejected, dice
                return deform(img, mask)
            rejected += 1
            reasons.append("fold" if folded else f"dice={dice:.3f}")
        msg = (f"no synthetic deformation met the rules within {self.max_retries} retries "
               f"(dice_threshold={self.dice_threshold if dice_rule else None}, min_jacobian={self.min_jacobian}); "
               f"rejections: {', '.join(reasons)}")
        if self.on_failure == "raise":
            raise SyntheticDeformationError(msg)
        logger.warning("%s; keeping the last sample.", msg)
        self.last_num_rejected, self.last_dice = rejected, dice
        return deform(img, mask)  # type: ignore[misc]

    def _folds(self, deform: SyntheticDeformation, spatial: Sequence[int]) -> bool:
        if self.min_jacobian is None:
            return False
        e = deform.elastic(spatial)
        if e is None:
            return False
        return float(jacobian_determinant(e[None]).min()) < self.min_jacobian


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    """Dice of two binary masks (> 0.5); 1.0 when both are empty."""
    a, b = a > 0.5, b > 0.5
    denom = int(a.sum()) + int(b.sum())
    return 1.0 if denom == 0 else 2.0 * int((a & b).sum()) / denom


def _check_2d(x: Any, name: str, spatial: Sequence[int] | None = None) -> torch.Tensor:
    """Return ``x`` as a plain torch tensor after checking it is ``(C, H, W)``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor (or numpy array) of shape (C, H, W), got {type(x).__name__}.")
    if x.ndim != 3:
        raise ValueError(
            f"`{name}` must have shape (C, H, W) (2D images only, no batch dimension), got shape {tuple(x.shape)}."
        )
    if min(x.shape[1:]) < 2:
        raise ValueError(f"`{name}` needs at least 2 pixels along H and W, got {tuple(x.shape)}.")
    if spatial is not None and tuple(x.shape[1:]) != tuple(spatial):
        raise ValueError(f"`{name}` must have spatial shape {tuple(spatial)} like the image, got {tuple(x.shape)}.")
    t = x.as_tensor() if hasattr(x, "as_tensor") else x
    return t if torch.is_floating_point(t) else t.float()


def _pair(value: Any, name: str, positive: bool = True) -> tuple[float, float]:
    vals = [float(v) for v in (value if isinstance(value, (Sequence, np.ndarray, torch.Tensor)) else [value])]
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(math.isfinite(v) for v in vals) or (positive and min(vals) <= 0):
        kind = "positive " if positive else ""
        raise ValueError(f"`{name}` must be one {kind}number or a pair (H, W) of them, got {value}.")
    return vals[0], vals[1]


def _range(value: Sequence[float] | None, default: Sequence[float], name: str) -> tuple[float, float]:
    rng = tuple(float(v) for v in (default if value is None else value))
    if len(rng) != 2 or not all(math.isfinite(v) for v in rng) or rng[0] < 0 or rng[0] > rng[1]:
        raise ValueError(f"`{name}` must be a (min, max) pair with 0 <= min <= max, got {value}.")
    return rng  # type: ignore[return-value]


def _bspline_matrix(
    n_pixels: int, n_ctrl: int, spacing: float, margin: int, dtype: torch.dtype, device: torch.device | str | None
) -> torch.Tensor:
    """``(n_pixels + 2 margin, n_ctrl)`` matrix of cubic B-spline weights ``beta3((x + o) / s + 1 - k)``."""
    offset = ((n_ctrl - 3) * spacing - (n_pixels - 1)) / 2.0
    x = torch.arange(-margin, n_pixels + margin, dtype=torch.float64, device=device)
    u = (x + offset) / spacing + 1.0
    t = (u[:, None] - torch.arange(n_ctrl, dtype=torch.float64, device=device)[None, :]).abs()
    inner = 2.0 / 3.0 - t**2 + 0.5 * t**3
    outer = (2.0 - t).clamp(min=0.0) ** 3 / 6.0
    return torch.where(t < 1.0, inner, outer).to(dtype)


def _bspline_taps(
    x: torch.Tensor, n_pixels: int, n_ctrl: int, spacing: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights, derivative weights (per pixel) and indices of the 4 control points supporting each ``x``.

    Same knot layout as :func:`_bspline_matrix`: with ``u = (x + o) / s + 1`` and ``f = u - floor(u)``, the knots
    ``floor(u) - 1 .. floor(u) + 2`` carry the uniform cubic B-spline weights of ``f``. Knots outside
    ``[0, n_ctrl)`` get weight 0 (and a clamped index). Returns ``(P, 4)`` weights, ``(P, 4)`` derivatives
    ``d weight / dx`` and ``(P, 4)`` long indices.
    """
    offset = ((n_ctrl - 3) * spacing - (n_pixels - 1)) / 2.0
    u = (x + offset) / spacing + 1.0
    base = torch.floor(u)
    f = u - base
    f2, g = f * f, 1.0 - f
    f3 = f2 * f
    w = torch.stack((g * g * g, 3.0 * f3 - 6.0 * f2 + 4.0, -3.0 * f3 + 3.0 * f2 + 3.0 * f + 1.0, f3), dim=1) / 6.0
    dw = torch.stack((-0.5 * g * g, 1.5 * f2 - 2.0 * f, -1.5 * f2 + f + 0.5, 0.5 * f2), dim=1) / spacing
    k = base.long()[:, None] + torch.arange(-1, 3, device=x.device)[None, :]
    valid = (k >= 0) & (k < n_ctrl)
    return w * valid, dw * valid, k.clamp(0, n_ctrl - 1)
