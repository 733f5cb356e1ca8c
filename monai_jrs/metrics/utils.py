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
"""Validation and region statistics shared by the monai_jrs metrics.

Convention:
    Masks are ``(B, 1, H, W)`` tensors with values in {0, 1} (bool, integer or float). DDFs follow
    :mod:`monai_jrs.utils.conventions`: ``(B, 2, H, W)`` in pixels on the reference grid, channel 0 along H (rows),
    channel 1 along W (columns), ``registered(p) = floating(p + ddf(p))``. ``spacing`` is ``(row, col)`` in mm per
    pixel, either one pair for the whole batch or a ``(B, 2)`` table.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.utils.enums import StrEnum

from monai_jrs.utils.conventions import check_ddf, identity_grid

logger = logging.getLogger(__name__)

__all__ = [
    "DistanceUnit",
    "SpacingLike",
    "check_mask",
    "check_finite_ddf",
    "prepare_spacing",
    "inside_fov",
    "masked_stats",
]

#: spacing as accepted by the metrics: ``(row, col)``, ``(B, 2)``, or ``None`` (pixels).
SpacingLike = Sequence[float] | Sequence[Sequence[float]] | np.ndarray | torch.Tensor | None


class DistanceUnit(StrEnum):
    """Unit of the distances a metric reports: millimetres when a spacing is known, else pixels."""

    MM = "mm"
    PX = "px"


def check_mask(mask: torch.Tensor, name: str = "mask", like: torch.Tensor | None = None) -> torch.Tensor:
    """Validate a binary ``(B, 1, H, W)`` mask and return it as a bool tensor.

    Args:
        mask: ``(B, 1, H, W)`` mask with values in {0, 1}.
        name: argument name used in error messages.
        like: optional ``(B, C, H, W)`` tensor whose batch size and spatial size the mask must match.

    Returns:
        ``(B, 1, H, W)`` bool tensor.

    Raises:
        TypeError: when ``mask`` is not a tensor.
        ValueError: when the shape is wrong, values are NaN/inf, or values are not in {0, 1}.
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (B, 1, H, W), got {type(mask).__name__}.")
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"`{name}` must have shape (B, 1, H, W), got shape {tuple(mask.shape)}.")
    if like is not None and (mask.shape[0] != like.shape[0] or mask.shape[2:] != like.shape[2:]):
        raise ValueError(
            f"`{name}` must have shape (B, 1, H, W) = {(like.shape[0], 1, *like.shape[2:])}, "
            f"got {tuple(mask.shape)}."
        )
    if mask.dtype == torch.bool:
        return mask
    if torch.is_floating_point(mask) and not torch.isfinite(mask).all():
        raise ValueError(f"`{name}` must be a binary {{0, 1}} mask, got NaN or infinite values.")
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError(
            f"`{name}` must be a binary {{0, 1}} mask (threshold soft masks first), got values in "
            f"[{mask.min().item()}, {mask.max().item()}]."
        )
    return mask != 0


def check_finite_ddf(ddf: torch.Tensor, name: str = "ddf", like: torch.Tensor | None = None) -> None:
    """Validate a ``(B, 2, H, W)`` DDF (see :func:`monai_jrs.utils.conventions.check_ddf`) and reject NaN/inf.

    Args:
        ddf: ``(B, 2, H, W)`` field in pixels.
        name: argument name used in error messages.
        like: optional tensor the field must match in batch size and spatial size.

    Raises:
        TypeError: when ``ddf`` is not a tensor.
        ValueError: when the shape is wrong or the field holds NaN or infinite values.
    """
    check_ddf(ddf, like, name=name)
    if not torch.isfinite(ddf).all():
        raise ValueError(f"`{name}` must be finite, got {int((~torch.isfinite(ddf)).sum())} NaN/inf values.")


def prepare_spacing(spacing: SpacingLike, batch_size: int | None = None) -> torch.Tensor | None:
    """Validate ``spacing`` and expand it to a ``(B, 2)`` float64 table of ``(row, col)`` mm per pixel.

    Args:
        spacing: ``None``, one ``(row, col)`` pair, or a ``(B, 2)`` table (one pair per batch item).
        batch_size: ``B``; ``None`` only validates (a pair gives ``(1, 2)``, a table keeps its length).

    Returns:
        ``(B, 2)`` float64 CPU tensor, or ``None`` when ``spacing`` is ``None``.

    Raises:
        ValueError: when the spacing is not positive and finite or does not have 2 or ``(B, 2)`` values.
    """
    if spacing is None:
        return None
    try:
        sp = torch.as_tensor(
            spacing.detach().cpu() if isinstance(spacing, torch.Tensor) else np.asarray(spacing, dtype=np.float64),
            dtype=torch.float64,
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"`spacing` must be (row, col) or (B, 2) numbers in mm, got {spacing!r}.") from e
    if sp.shape == (2,):
        sp = sp.unsqueeze(0)
    if batch_size is None and sp.ndim == 2:
        batch_size = sp.shape[0]
    if sp.ndim != 2 or sp.shape[1] != 2 or sp.shape[0] not in (1, batch_size):
        raise ValueError(
            f"`spacing` must be (row, col) or ({batch_size or 'B'}, 2) in mm per pixel, got shape {tuple(sp.shape)}."
        )
    sp = sp.expand(int(batch_size), 2)  # type: ignore[arg-type]
    if not torch.isfinite(sp).all() or (sp <= 0).any():
        raise ValueError(f"`spacing` must be positive and finite (row, col) in mm per pixel, got {sp.tolist()}.")
    return sp.contiguous()


def inside_fov(ddf: torch.Tensor) -> torch.Tensor:
    """Reference pixels whose correspondence ``p + ddf(p)`` lies inside the floating image.

    With the ``align_corners=True`` convention the floating image covers ``[0, H - 1] x [0, W - 1]`` (pixel centres);
    a point outside it is filled by padding when warping, so errors measured there say nothing about the
    registration.

    Args:
        ddf: ``(B, 2, H, W)`` field on the reference grid (floating grid of the same size).

    Returns:
        ``(B, 1, H, W)`` bool tensor, True where the mapped point is inside the floating image.
    """
    check_ddf(ddf)
    h, w = ddf.shape[2:]
    pos = identity_grid((h, w), device=ddf.device, dtype=ddf.dtype) + ddf
    tol = 16.0 * torch.finfo(ddf.dtype).eps * max(h, w)  # round-off allowance at the image border
    rows_ok = (pos[:, 0] >= -tol) & (pos[:, 0] <= h - 1 + tol)
    cols_ok = (pos[:, 1] >= -tol) & (pos[:, 1] <= w - 1 + tol)
    return (rows_ok & cols_ok).unsqueeze(1)


def masked_stats(
    values: torch.Tensor, region: torch.Tensor | None, percentile: float = 95.0, what: str = "region"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-item mean, percentile and maximum of a ``(B, 1, H, W)`` map over a boolean region.

    Args:
        values: ``(B, 1, H, W)`` per-pixel values.
        region: ``(B, 1, H, W)`` bool region, or ``None`` for the whole image.
        percentile: percentile in [0, 100], linear interpolation (as ``numpy.percentile``).
        what: name of the region, used in the warning for empty regions.

    Returns:
        three ``(B,)`` float64 tensors ``(mean, percentile, max)``; NaN (with a warning) for items whose region is
        empty.
    """
    if not 0.0 <= float(percentile) <= 100.0:
        raise ValueError(f"`percentile` must be in [0, 100], got {percentile}.")
    batch = values.shape[0]
    means = torch.full((batch,), float("nan"), dtype=torch.float64, device=values.device)
    pcts, maxs = means.clone(), means.clone()
    flat = values.reshape(batch, -1).to(torch.float64)
    reg = None if region is None else region.reshape(batch, -1)
    for b in range(batch):
        v = flat[b] if reg is None else flat[b][reg[b]]
        if v.numel() == 0:
            warnings.warn(f"batch item {b}: the {what} is empty, its statistics are NaN.", RuntimeWarning, stacklevel=3)
            continue
        means[b] = v.mean()
        pcts[b] = _quantile(v, percentile / 100.0)
        maxs[b] = v.max()
    return means, pcts, maxs


def _quantile(v: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile`` (linear) without its input-size limit (it refuses more than 2**24 values)."""
    if v.numel() <= 2**24:
        return torch.quantile(v, q)
    return torch.as_tensor(np.percentile(v.detach().cpu().numpy(), q * 100.0), dtype=v.dtype, device=v.device)
