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
"""Registration metrics on dense displacement fields: TRE, folding and inverse consistency.

Convention:
    DDFs follow :mod:`monai_jrs.utils.conventions`: ``(B, 2, H, W)``, pixels, defined on the reference grid,
    channel 0 along H (rows), channel 1 along W (columns), ``registered(p) = floating(p + ddf(p))``. So the true
    correspondence of reference pixel ``p`` is the floating point ``p + ddf_applied(p)`` and the recovered one is
    ``p + ddf_recovered(p)``; their distance is the target registration error at ``p``. ``spacing`` is
    ``(row, col)`` mm per pixel (or ``(B, 2)``) and is applied with
    :func:`monai_jrs.utils.conventions.scale_ddf_to_physical`; distances are in mm when it is given, else pixels,
    and results carry ``unit``. Region masks are ``(B, 1, H, W)`` in {0, 1} on the reference grid.

Empty regions (an all-zero mask, or no pixel inside the floating field of view) give NaN with a ``RuntimeWarning``;
``aggregate()`` of the metric classes skips NaN, as MONAI does.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric
from monai.utils import MetricReduction

from monai_jrs.utils.conventions import compose_ddf, jacobian_determinant, scale_ddf_to_physical

from .segmentation import DistanceMetric, _aggregate
from .utils import DistanceUnit, SpacingLike, check_finite_ddf, check_mask, inside_fov, masked_stats, prepare_spacing

logger = logging.getLogger(__name__)

__all__ = [
    "registration_error_map",
    "registration_error",
    "folding_percentage",
    "inverse_consistency_map",
    "inverse_consistency_error",
    "TargetRegistrationErrorMetric",
    "FoldingPercentageMetric",
    "InverseConsistencyMetric",
]


def registration_error_map(
    ddf_applied: torch.Tensor, ddf_recovered: torch.Tensor, spacing: SpacingLike = None
) -> torch.Tensor:
    """Per-pixel target registration error ``|ddf_recovered(p) - ddf_applied(p)|``.

    Args:
        ddf_applied: ``(B, 2, H, W)`` ground-truth field (``JRSKeys.DDF_APPLIED``), pixels, reference grid.
        ddf_recovered: ``(B, 2, H, W)`` estimated field (``JRSKeys.DDF``), same grid.
        spacing: ``(row, col)`` or ``(B, 2)`` mm per pixel; ``None`` keeps pixels.

    Returns:
        ``(B, 1, H, W)`` Euclidean error (mm when ``spacing`` is given, else pixels).

    Raises:
        ValueError: when the fields do not have matching ``(B, 2, H, W)`` shapes, hold NaN/inf, or ``spacing`` is bad.
    """
    check_finite_ddf(ddf_applied, "ddf_applied")
    check_finite_ddf(ddf_recovered, "ddf_recovered", like=ddf_applied)
    diff = ddf_recovered - ddf_applied.to(ddf_recovered.dtype)
    diff = _to_physical(diff, spacing)
    return torch.linalg.vector_norm(diff, dim=1, keepdim=True)


def registration_error(
    ddf_applied: torch.Tensor,
    ddf_recovered: torch.Tensor,
    mask: torch.Tensor | None = None,
    spacing: SpacingLike = None,
    exclude_outside_fov: bool = False,
    percentile: float = 95.0,
    region_name: str = "lung",
) -> dict[str, torch.Tensor | str]:
    """Target registration error statistics between the applied and the recovered field.

    Statistics are taken over the whole image and, when ``mask`` is given, over the region. With
    ``exclude_outside_fov=True`` the same statistics are also reported over the reference pixels whose true
    correspondence ``p + ddf_applied(p)`` lies inside the floating image (elsewhere the floating image has no
    content to register, e.g. after a 40 px shift).

    Args:
        ddf_applied: ``(B, 2, H, W)`` ground-truth field, pixels, reference grid.
        ddf_recovered: ``(B, 2, H, W)`` estimated field, same grid.
        mask: optional ``(B, 1, H, W)`` region (e.g. the reference lung mask) in {0, 1}.
        spacing: ``(row, col)`` or ``(B, 2)`` mm per pixel; ``None`` gives pixels.
        exclude_outside_fov: also report statistics restricted to the floating field of view.
        percentile: percentile reported as ``p{percentile:g}`` (``p95`` by default), linear interpolation.
        region_name: name of the mask region used in the keys.

    Returns:
        dict with ``(B,)`` float64 tensors under ``tre_mean``, ``tre_p95``, ``tre_max``; with ``mask`` also
        ``tre_{region}_mean|p95|max``; with ``exclude_outside_fov`` also ``tre_fov_mean|p95|max``,
        ``tre_{region}_fov_mean|p95|max`` (with ``mask``) and ``fov_fraction`` (share of pixels inside the field of
        view); and ``unit`` (``"mm"`` or ``"px"``).

    Raises:
        ValueError: for bad shapes, NaN/inf values, a non-binary mask, a bad spacing or percentile.

    Example::

        >>> app = torch.zeros(1, 2, 8, 8)
        >>> rec = torch.zeros(1, 2, 8, 8); rec[:, 0] = 3.0; rec[:, 1] = 4.0
        >>> out = registration_error(app, rec, spacing=(0.5, 0.5))
        >>> out["tre_mean"].item(), out["unit"]
        (2.5, 'mm')
    """
    err = registration_error_map(ddf_applied, ddf_recovered, spacing=spacing)
    region = None if mask is None else check_mask(mask, "mask", like=ddf_applied)
    fov = inside_fov(ddf_applied) if exclude_outside_fov else None
    return _region_report("tre", err, region, fov, spacing, percentile, region_name)


def folding_percentage(ddf: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Percentage of pixels where the Jacobian determinant of ``p -> p + ddf(p)`` is ``<= 0`` (folding).

    Uses :func:`monai_jrs.utils.conventions.jacobian_determinant` (central differences, one-sided on the border).

    Args:
        ddf: ``(B, 2, H, W)`` field in pixels, ``H, W >= 2``.
        mask: optional ``(B, 1, H, W)`` region in {0, 1}; the percentage is then of the region's pixels.

    Returns:
        ``(B,)`` float64 percentages in [0, 100]; NaN (with a warning) for an empty region.

    Raises:
        ValueError: for bad shapes, NaN/inf values or a non-binary mask.

    Example::

        >>> folding_percentage(torch.zeros(1, 2, 4, 4)).item()
        0.0
    """
    check_finite_ddf(ddf, "ddf")
    region = None if mask is None else check_mask(mask, "mask", like=ddf)
    folded = (jacobian_determinant(ddf) <= 0).to(torch.float64) * 100.0
    mean, _, _ = masked_stats(folded, region, what="folding mask")
    return mean


def inverse_consistency_map(
    ddf_forward: torch.Tensor, ddf_backward: torch.Tensor, spacing: SpacingLike = None
) -> torch.Tensor:
    """Per-pixel inverse-consistency error ``|ddf_forward(p) + ddf_backward(p + ddf_forward(p))|``.

    The forward field maps reference pixel ``p`` to floating point ``q = p + ddf_forward(p)``; the backward field,
    defined on the floating grid, maps ``q`` back to ``q + ddf_backward(q)``. A consistent pair returns to ``p``,
    so the residual is ``compose_ddf(outer=ddf_backward, inner=ddf_forward)(p)`` (see
    :func:`monai_jrs.utils.conventions.compose_ddf`), defined on the reference grid. ``ddf_backward`` is sampled
    bilinearly with border padding, so values where ``q`` leaves the floating image are extrapolations (see
    :func:`inverse_consistency_error`'s ``exclude_outside_fov``).

    Args:
        ddf_forward: ``(B, 2, H, W)`` reference -> floating field (reference grid), pixels.
        ddf_backward: ``(B, 2, H, W)`` floating -> reference field (floating grid, same size), pixels.
        spacing: ``(row, col)`` or ``(B, 2)`` mm per pixel; ``None`` keeps pixels.

    Returns:
        ``(B, 1, H, W)`` error on the reference grid (mm when ``spacing`` is given, else pixels).
    """
    check_finite_ddf(ddf_forward, "ddf_forward")
    check_finite_ddf(ddf_backward, "ddf_backward", like=ddf_forward)
    residual = compose_ddf(ddf_backward.to(ddf_forward.dtype), ddf_forward)
    residual = _to_physical(residual, spacing)
    return torch.linalg.vector_norm(residual, dim=1, keepdim=True)


def inverse_consistency_error(
    ddf_forward: torch.Tensor,
    ddf_backward: torch.Tensor,
    mask: torch.Tensor | None = None,
    spacing: SpacingLike = None,
    exclude_outside_fov: bool = True,
    percentile: float = 95.0,
    region_name: str = "lung",
) -> dict[str, torch.Tensor | str]:
    """Inverse-consistency error statistics of a forward/backward field pair (see :func:`inverse_consistency_map`).

    Args:
        ddf_forward: ``(B, 2, H, W)`` reference -> floating field (reference grid), pixels.
        ddf_backward: ``(B, 2, H, W)`` floating -> reference field (floating grid), pixels.
        mask: optional ``(B, 1, H, W)`` region on the reference grid.
        spacing: ``(row, col)`` or ``(B, 2)`` mm per pixel; ``None`` gives pixels.
        exclude_outside_fov: if True (default), only pixels whose forward image ``p + ddf_forward(p)`` lies inside
            the floating image count: outside it the backward field is undefined (only border-extrapolated).
        percentile: percentile reported as ``p{percentile:g}``.
        region_name: name of the mask region used in the keys.

    Returns:
        dict with ``(B,)`` float64 tensors ``ice_mean``, ``ice_p95``, ``ice_max``; with ``mask`` also
        ``ice_{region}_mean|p95|max``; and ``unit``. With ``exclude_outside_fov`` all statistics are over the field
        of view and ``ice_fov_fraction`` gives its share of pixels.
    """
    err = inverse_consistency_map(ddf_forward, ddf_backward, spacing=spacing)
    region = None if mask is None else check_mask(mask, "mask", like=ddf_forward)
    fov = inside_fov(ddf_forward) if exclude_outside_fov else None
    out = _region_report("ice", err, region, None, spacing, percentile, region_name, restrict=fov)
    if fov is not None:
        unit = out.pop("unit")  # keep `unit` last
        out["ice_fov_fraction"] = fov.reshape(fov.shape[0], -1).to(torch.float64).mean(dim=1)
        out["unit"] = unit
    return out


class TargetRegistrationErrorMetric(DistanceMetric):
    """Per-pair TRE (mean, or a percentile) between recovered and applied DDFs, accumulated over iterations.

    Call as ``metric(y_pred=ddf_recovered, y=ddf_applied, mask=..., spacing=...)``. Because
    :class:`monai.handlers.IgniteMetricHandler` passes only ``(y_pred, y)``, a region mask can also travel as a third
    channel of ``y``: ``y = torch.cat([ddf_applied, mask], dim=1)`` of shape ``(B, 3, H, W)``.

    Args:
        spacing: default ``(row, col)`` mm per pixel (overridden by a ``spacing=`` keyword); ``None`` gives pixels.
            The unit of the round is :attr:`unit`.
        percentile: ``None`` (default) records the mean error per pair; a number in [0, 100] records that
            percentile (e.g. 95).
        exclude_outside_fov: only count reference pixels whose true correspondence lies in the floating image.
        reduction: MONAI reduction applied by :meth:`aggregate` over pairs; NaN (empty regions) are skipped.
        get_not_nans: if True, :meth:`aggregate` returns ``(metric, not_nans)``.
    """

    def __init__(
        self,
        spacing: SpacingLike = None,
        percentile: float | None = None,
        exclude_outside_fov: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(spacing, percentile, reduction, get_not_nans)
        self.exclude_outside_fov = exclude_outside_fov

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise ValueError("TargetRegistrationErrorMetric needs the applied DDF `y` (B, 2|3, H, W), got None.")
        mask = kwargs.get("mask")
        if isinstance(y, torch.Tensor) and y.ndim == 4 and y.shape[1] == 3:
            if mask is not None:
                raise ValueError("give the region either as channel 2 of `y` or as `mask=`, not both.")
            y, mask = y[:, :2], y[:, 2:]
        spacing = self._spacing_of_call(kwargs)
        err = registration_error_map(y, y_pred, spacing=spacing)
        region = None if mask is None else check_mask(mask, "mask", like=y)
        if self.exclude_outside_fov:
            fov = inside_fov(y)
            region = fov if region is None else region & fov
        return _one_stat(err, region, self.percentile, "TRE region")


class FoldingPercentageMetric(CumulativeIterationMetric):
    """Percentage of folded pixels (Jacobian determinant ``<= 0``) per field, accumulated over iterations.

    Call as ``metric(y_pred=ddf)`` or ``metric(y_pred=ddf, y=mask)`` to count only pixels inside a ``(B, 1, H, W)``
    region.

    Args:
        reduction: MONAI reduction applied by :meth:`aggregate`; NaN (empty regions) are skipped.
        get_not_nans: if True, :meth:`aggregate` returns ``(metric, not_nans)``.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        return folding_percentage(y_pred, mask=y).float().unsqueeze(1)

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered ``(N, 1)`` percentages, skipping NaN."""
        return _aggregate(self, reduction)


class InverseConsistencyMetric(DistanceMetric):
    """Per-pair inverse-consistency error (mean or a percentile), accumulated over iterations.

    Call as ``metric(y_pred=ddf_forward, y=ddf_backward, mask=..., spacing=...)`` (see
    :func:`inverse_consistency_map`).

    Args:
        spacing: default ``(row, col)`` mm per pixel (overridden by a ``spacing=`` keyword); ``None`` gives pixels.
        percentile: ``None`` (default) records the mean per pair; a number in [0, 100] records that percentile.
        exclude_outside_fov: if True (default), ignore pixels whose forward image leaves the floating image.
        reduction: MONAI reduction applied by :meth:`aggregate`; NaN (empty regions) are skipped.
        get_not_nans: if True, :meth:`aggregate` returns ``(metric, not_nans)``.
    """

    def __init__(
        self,
        spacing: SpacingLike = None,
        percentile: float | None = None,
        exclude_outside_fov: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(spacing, percentile, reduction, get_not_nans)
        self.exclude_outside_fov = exclude_outside_fov

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise ValueError("InverseConsistencyMetric needs the backward DDF `y` (B, 2, H, W), got None.")
        spacing = self._spacing_of_call(kwargs)
        err = inverse_consistency_map(y_pred, y, spacing=spacing)
        mask = kwargs.get("mask")
        region = None if mask is None else check_mask(mask, "mask", like=y_pred)
        if self.exclude_outside_fov:
            fov = inside_fov(y_pred)
            region = fov if region is None else region & fov
        return _one_stat(err, region, self.percentile, "inverse-consistency region")


def _to_physical(vec: torch.Tensor, spacing: SpacingLike) -> torch.Tensor:
    """Scale a ``(B, 2, H, W)`` pixel vector field to mm with ``scale_ddf_to_physical`` (after validation)."""
    sp = prepare_spacing(spacing, vec.shape[0])
    return vec if sp is None else scale_ddf_to_physical(vec, sp.to(vec.device))


def _one_stat(err: torch.Tensor, region: torch.Tensor | None, percentile: float | None, what: str) -> torch.Tensor:
    """``(B, 1)`` float32 mean (``percentile=None``) or percentile of ``err`` over ``region``."""
    mean, pct, _ = masked_stats(err, region, 95.0 if percentile is None else float(percentile), what=what)
    return (mean if percentile is None else pct).float().unsqueeze(1)


def _region_report(
    prefix: str,
    err: torch.Tensor,
    region: torch.Tensor | None,
    fov: torch.Tensor | None,
    spacing: SpacingLike,
    percentile: float,
    region_name: str,
    restrict: torch.Tensor | None = None,
) -> dict[str, torch.Tensor | str]:
    """Mean/percentile/max of ``err`` over the image and ``region``, and (with ``fov``) their FOV-restricted twins.

    ``restrict`` (if given) limits every statistic; ``fov`` adds separate ``*_fov_*`` keys.
    """
    pkey = f"p{float(percentile):g}"
    out: dict[str, torch.Tensor | str] = {}

    def _add(name: str, sel: torch.Tensor | None, what: str) -> None:
        if restrict is not None:
            sel = restrict if sel is None else sel & restrict
        mean, pct, mx = masked_stats(err, sel, percentile, what=what)
        out[f"{name}_mean"], out[f"{name}_{pkey}"], out[f"{name}_max"] = mean, pct, mx

    _add(prefix, None, "image")
    if region is not None:
        _add(f"{prefix}_{region_name}", region, f"{region_name} mask")
    if fov is not None:
        _add(f"{prefix}_fov", fov, "field of view")
        if region is not None:
            _add(f"{prefix}_{region_name}_fov", region & fov, f"{region_name} mask inside the field of view")
        out["fov_fraction"] = fov.reshape(fov.shape[0], -1).to(torch.float64).mean(dim=1)
    out["unit"] = DistanceUnit.PX.value if spacing is None else DistanceUnit.MM.value
    return out
