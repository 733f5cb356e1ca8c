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
"""Segmentation overlap and surface-distance metrics for binary lung masks.

Convention:
    Masks are ``(B, 1, H, W)`` with values in {0, 1}; ``spacing`` is ``(row, col)`` in mm per pixel (one pair, or
    ``(B, 2)`` for one pair per batch item). Distances are in mm when a spacing is given, else in pixels, and every
    distance result says which (``unit``).

Empty masks:
    - Dice: both masks empty -> 1.0, exactly one empty -> 0.0 (MONAI's ``DiceMetric(ignore_empty=False)``). MONAI's
      default ``DiceMetric(ignore_empty=True)`` instead returns NaN whenever the *ground truth* is empty, whatever the
      prediction; ``ignore_empty=True`` here reproduces that.
    - HD95: NaN with a ``RuntimeWarning`` when either mask is empty (a distance to nothing is undefined); NaN values
      are skipped by ``aggregate()`` as in MONAI.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.hausdorff_distance import compute_hausdorff_distance
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from .utils import DistanceUnit, SpacingLike, check_mask, prepare_spacing

logger = logging.getLogger(__name__)

__all__ = ["compute_dice_score", "compute_hd95", "DiceScoreMetric", "DistanceMetric", "HD95Metric"]


def compute_dice_score(y_pred: torch.Tensor, y: torch.Tensor, ignore_empty: bool = False) -> torch.Tensor:
    """Dice overlap ``2 |A & B| / (|A| + |B|)`` between binary masks.

    Args:
        y_pred: ``(B, 1, H, W)`` predicted mask in {0, 1} (e.g. the registered mask).
        y: ``(B, 1, H, W)`` ground-truth mask in {0, 1} (e.g. the reference mask).
        ignore_empty: if True, return NaN for items whose ground truth ``y`` is empty (MONAI's default); if False
            (default), both empty -> 1.0 and exactly one empty -> 0.0.

    Returns:
        ``(B, 1)`` float32 Dice per item.

    Raises:
        ValueError: when the masks are not binary ``(B, 1, H, W)`` tensors of the same shape.

    Example::

        >>> a = torch.zeros(1, 1, 4, 4); a[..., :2, :] = 1
        >>> b = torch.zeros(1, 1, 4, 4); b[..., :1, :] = 1
        >>> round(compute_dice_score(a, b).item(), 4)  # 2 * 4 / (8 + 4)
        0.6667
    """
    pred = check_mask(y_pred, "y_pred")
    true = check_mask(y, "y", like=pred)
    inter = (pred & true).sum(dim=(2, 3), dtype=torch.float64)
    total = pred.sum(dim=(2, 3), dtype=torch.float64) + true.sum(dim=(2, 3), dtype=torch.float64)
    dice = torch.where(total > 0, 2.0 * inter / total.clamp_min(1.0), torch.ones_like(total))
    if ignore_empty:
        dice = torch.where(true.sum(dim=(2, 3)) > 0, dice, torch.full_like(dice, float("nan")))
    return dice.float()


def compute_hd95(
    y_pred: torch.Tensor, y: torch.Tensor, spacing: SpacingLike = None, percentile: float = 95.0
) -> torch.Tensor:
    """Symmetric percentile Hausdorff distance between the boundaries of two binary masks.

    Boundaries are the mask pixels with a 4-connected background neighbour (MONAI's ``get_mask_edges``); for each
    direction the ``percentile`` of the boundary-to-boundary distances is taken, and the larger of the two is
    returned (MONAI's ``HausdorffDistanceMetric(percentile=95)``, which matches hand computations in 2D including
    anisotropic spacing; see the tests).

    Args:
        y_pred: ``(B, 1, H, W)`` predicted mask in {0, 1}.
        y: ``(B, 1, H, W)`` ground-truth mask in {0, 1}.
        spacing: ``(row, col)`` or ``(B, 2)`` mm per pixel; ``None`` gives pixels.
        percentile: percentile in [0, 100]; 100 gives the classical Hausdorff distance.

    Returns:
        ``(B, 1)`` float32 distances (mm when ``spacing`` is given, else pixels); NaN, with a ``RuntimeWarning``,
        for items where either mask is empty.

    Raises:
        ValueError: for non-binary or mismatched masks, a bad spacing, or a percentile outside [0, 100].
    """
    pred = check_mask(y_pred, "y_pred")
    true = check_mask(y, "y", like=pred)
    if not 0.0 <= float(percentile) <= 100.0:
        raise ValueError(f"`percentile` must be in [0, 100], got {percentile}.")
    batch = pred.shape[0]
    sp = prepare_spacing(spacing, batch)
    out = torch.full((batch, 1), float("nan"), dtype=torch.float32, device=pred.device)
    for b in range(batch):
        if not pred[b].any() or not true[b].any():
            which = "both masks are" if not (pred[b].any() or true[b].any()) else (
                "`y_pred` is" if not pred[b].any() else "`y` is"
            )
            warnings.warn(f"HD95: batch item {b}: {which} empty, the distance is NaN.", RuntimeWarning, stacklevel=2)
            continue
        with warnings.catch_warnings():
            # MONAI's own get_mask_edges emits a FutureWarning about an argument it passes itself.
            warnings.simplefilter("ignore", FutureWarning)
            hd = compute_hausdorff_distance(
                y_pred=pred[b : b + 1].float(),
                y=true[b : b + 1].float(),
                include_background=True,
                distance_metric="euclidean",
                percentile=float(percentile),
                directed=False,
                spacing=None if sp is None else sp[b].tolist(),
            )
        out[b, 0] = hd.reshape(-1)[0].to(out)
    return out


class DiceScoreMetric(CumulativeIterationMetric):
    """Dice between binary ``(B, 1, H, W)`` masks, accumulated over iterations.

    Same call/aggregate/reset protocol as :class:`monai.metrics.DiceMetric` (and usable with
    :class:`monai.handlers.IgniteMetricHandler`), but with the empty-mask convention of :func:`compute_dice_score`.

    Args:
        ignore_empty: if True, NaN for items with an empty ground truth (skipped by ``aggregate``); if False
            (default), both empty -> 1.0 and exactly one empty -> 0.0.
        reduction: MONAI reduction mode applied by :meth:`aggregate`, one of {``"none"``, ``"mean"``, ``"sum"``,
            ``"mean_batch"``, ``"sum_batch"``, ``"mean_channel"``, ``"sum_channel"``}.
        get_not_nans: if True, :meth:`aggregate` returns ``(metric, not_nans)``.

    Example::

        >>> metric = DiceScoreMetric()
        >>> a = torch.ones(2, 1, 4, 4)
        >>> _ = metric(a, a)
        >>> metric.aggregate().item()
        1.0
    """

    def __init__(
        self,
        ignore_empty: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        self.ignore_empty = ignore_empty
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise ValueError("DiceScoreMetric needs the ground-truth mask `y` (B, 1, H, W), got None.")
        return compute_dice_score(y_pred, y, ignore_empty=self.ignore_empty)

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered ``(N, 1)`` values, skipping NaN (see :func:`monai.metrics.utils.do_metric_reduction`)."""
        return _aggregate(self, reduction)


class DistanceMetric(CumulativeIterationMetric):
    """Base of the metrics that buffer one distance per pair, in mm when a spacing is known, else in pixels.

    Holds the shared state (default ``spacing``, ``percentile``, ``reduction``, ``get_not_nans``) and the unit of
    the current accumulation round (:attr:`unit`, ``"mm"`` or ``"px"``; mixing them in one round raises
    ``ValueError``; :meth:`reset` starts a new round), and aggregates the ``(N, 1)`` buffer skipping NaN.

    Args:
        spacing: default ``(row, col)`` mm per pixel, or ``None`` for pixels.
        percentile: ``None`` (mean) or a percentile in ``[0, 100]``.
        reduction: MONAI reduction applied by :meth:`aggregate`.
        get_not_nans: if True, :meth:`aggregate` returns ``(metric, not_nans)``.
    """

    def __init__(
        self,
        spacing: SpacingLike = None,
        percentile: float | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        if percentile is not None and not 0.0 <= float(percentile) <= 100.0:
            raise ValueError(f"`percentile` must be None (mean) or in [0, 100], got {percentile}.")
        prepare_spacing(spacing)  # validate early, before any data arrives
        self.spacing = spacing
        self.percentile = None if percentile is None else float(percentile)
        self.reduction = reduction
        self.get_not_nans = get_not_nans
        self.unit: str | None = None
        super().__init__()

    def reset(self) -> None:
        """Clear the buffers and the unit of the current round."""
        super().reset()
        self.unit = None

    def _spacing_of_call(self, kwargs: dict[str, Any]) -> SpacingLike:
        """The spacing of one call (a ``spacing=`` keyword overrides the default); records the round's unit."""
        spacing = kwargs.get("spacing", self.spacing)
        _set_unit(self, spacing)
        return spacing

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered ``(N, 1)`` distances, skipping NaN; the unit is :attr:`unit`."""
        return _aggregate(self, reduction)


class HD95Metric(DistanceMetric):
    """95th-percentile symmetric Hausdorff distance between binary masks, accumulated over iterations.

    The unit is fixed per accumulation round and exposed as :attr:`unit` (``"mm"`` or ``"px"``): a spacing given to
    the constructor applies to every call (this is the path :class:`monai.handlers.IgniteMetricHandler` uses, as it
    passes only ``(y_pred, y)``); a per-call ``spacing=`` keyword (``(row, col)`` or ``(B, 2)``) overrides it. Mixing
    mm and px results in one round raises ``ValueError``; :meth:`reset` starts a new round.

    Args:
        spacing: default ``(row, col)`` mm per pixel, or ``None`` for pixels.
        percentile: percentile of the boundary distances, in [0, 100] (95 by default; 100 = Hausdorff).
        reduction: MONAI reduction mode applied by :meth:`aggregate`; NaN (empty masks) are skipped.
        get_not_nans: if True, :meth:`aggregate` returns ``(metric, not_nans)``.
    """

    def __init__(
        self,
        spacing: SpacingLike = None,
        percentile: float = 95.0,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        if not 0.0 <= float(percentile) <= 100.0:
            raise ValueError(f"`percentile` must be in [0, 100], got {percentile}.")
        super().__init__(spacing, float(percentile), reduction, get_not_nans)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise ValueError("HD95Metric needs the ground-truth mask `y` (B, 1, H, W), got None.")
        spacing = self._spacing_of_call(kwargs)
        return compute_hd95(y_pred, y, spacing=spacing, percentile=self.percentile)  # type: ignore[arg-type]


def _set_unit(metric: Any, spacing: SpacingLike) -> None:
    """Record the unit of the current accumulation round on ``metric`` and refuse to mix units."""
    unit = DistanceUnit.PX.value if spacing is None else DistanceUnit.MM.value
    if metric.unit is not None and metric.unit != unit:
        raise ValueError(
            f"{type(metric).__name__}: this round already holds distances in {metric.unit!r}, got a call in "
            f"{unit!r}; call reset() before changing whether `spacing` is given."
        )
    metric.unit = unit


def _aggregate(
    metric: CumulativeIterationMetric, reduction: MetricReduction | str | None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Shared ``aggregate`` body: NaN-aware MONAI reduction of the ``(N, 1)`` buffer."""
    data = metric.get_buffer()
    if not isinstance(data, torch.Tensor):
        raise ValueError(f"{type(metric).__name__}: nothing to aggregate, call the metric on some data first.")
    f, not_nans = do_metric_reduction(data, reduction or metric.reduction)  # type: ignore[attr-defined]
    return (f, not_nans) if metric.get_not_nans else f  # type: ignore[attr-defined]
