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
"""One flat dictionary of every registration/segmentation metric for one image pair.

Used by the evaluator, the CLI's ``metrics.json`` and the benchmarks, so that they all report the same keys.
"""

from __future__ import annotations

import logging
import math

import torch

from .registration import folding_percentage, inverse_consistency_error, registration_error
from .segmentation import compute_dice_score, compute_hd95
from .utils import DistanceUnit, SpacingLike, prepare_spacing

logger = logging.getLogger(__name__)

__all__ = ["evaluate_registration"]


def evaluate_registration(
    ddf_recovered: torch.Tensor | None = None,
    ddf_applied: torch.Tensor | None = None,
    mask_pred: torch.Tensor | None = None,
    mask_true: torch.Tensor | None = None,
    lung_mask: torch.Tensor | None = None,
    ddf_backward: torch.Tensor | None = None,
    spacing: SpacingLike = None,
    exclude_outside_fov: bool = True,
    percentile: float = 95.0,
) -> dict[str, float | str]:
    """All metrics of one registration result, as a flat ``{name: float}`` dict plus ``unit``.

    Every input is optional; a group of keys appears when its inputs are given:

    - ``dice``, ``hd95``: ``mask_pred`` vs ``mask_true`` (e.g. ``JRSKeys.REGISTERED_MASK`` vs the reference mask);
      both empty -> Dice 1.0; HD95 NaN (with a warning) if either is empty.
    - ``tre_mean``, ``tre_p95``, ``tre_max`` (+ ``tre_lung_*`` with ``lung_mask``; + ``tre_fov_*``,
      ``tre_lung_fov_*`` and ``fov_fraction`` with ``exclude_outside_fov``): ``ddf_recovered`` vs ``ddf_applied``,
      see :func:`~monai_jrs.metrics.registration.registration_error`.
    - ``folding_pct`` (+ ``folding_lung_pct``): folded pixels of ``ddf_recovered``, in percent.
    - ``ice_mean``, ``ice_p95``, ``ice_max`` (+ ``ice_lung_*``, ``ice_fov_fraction``): ``ddf_recovered`` (forward)
      vs ``ddf_backward``, see :func:`~monai_jrs.metrics.registration.inverse_consistency_error`; with
      ``exclude_outside_fov`` only pixels mapped inside the floating image count.
    - ``unit``: ``"mm"`` when ``spacing`` is given, else ``"px"``; it applies to hd95, tre_* and ice_*.

    Inputs are one pair: ``(1, C, H, W)`` tensors, or channel-first ``(C, H, W)`` (as produced by
    ``decollate_batch``), which get a batch dimension. Results may contain NaN (empty masks or regions); Python's
    ``json.dump`` writes them as ``NaN``.

    Args:
        ddf_recovered: ``(1, 2, H, W)`` estimated field (reference grid, pixels).
        ddf_applied: ``(1, 2, H, W)`` ground-truth field (reference grid, pixels).
        mask_pred: ``(1, 1, H, W)`` predicted/registered mask in {0, 1}.
        mask_true: ``(1, 1, H, W)`` ground-truth mask in {0, 1} on the same grid.
        lung_mask: ``(1, 1, H, W)`` region for the ``*_lung_*`` statistics (e.g. the reference lung mask).
        ddf_backward: ``(1, 2, H, W)`` floating -> reference field (floating grid) for inverse consistency.
        spacing: ``(row, col)`` mm per pixel, or ``None`` for pixels.
        exclude_outside_fov: add field-of-view-restricted TRE and restrict inverse consistency to the field of view.
        percentile: percentile for the ``*_p95`` keys (the key name follows it, e.g. ``p90``); HD uses it too
            (the ``hd95`` key keeps its name).

    Returns:
        flat dict of Python floats, plus ``unit``.

    Raises:
        ValueError: when an input holds more than one pair, when a group misses its partner input, or when an input
            is invalid (shape, NaN, non-binary mask, spacing).

    Example::

        >>> ddf = torch.zeros(1, 2, 8, 8)
        >>> m = torch.zeros(1, 1, 8, 8); m[..., 2:6, 2:6] = 1
        >>> out = evaluate_registration(ddf, ddf, mask_pred=m, mask_true=m, spacing=(0.2, 0.2))
        >>> out["dice"], out["hd95"], out["tre_mean"], out["folding_pct"], out["unit"]
        (1.0, 0.0, 0.0, 0.0, 'mm')
    """
    ddf_recovered, ddf_applied, mask_pred, mask_true, lung_mask, ddf_backward = (
        _one_pair(t, name)
        for t, name in (
            (ddf_recovered, "ddf_recovered"),
            (ddf_applied, "ddf_applied"),
            (mask_pred, "mask_pred"),
            (mask_true, "mask_true"),
            (lung_mask, "lung_mask"),
            (ddf_backward, "ddf_backward"),
        )
    )
    if spacing is not None:
        prepare_spacing(spacing, 1)
    if (mask_pred is None) != (mask_true is None):
        raise ValueError("`mask_pred` and `mask_true` must be given together (Dice/HD95), got only one of them.")
    if ddf_applied is not None and ddf_recovered is None:
        raise ValueError("`ddf_applied` needs `ddf_recovered` (TRE), got ddf_recovered=None.")
    if ddf_backward is not None and ddf_recovered is None:
        raise ValueError("`ddf_backward` needs `ddf_recovered` (inverse consistency), got ddf_recovered=None.")

    out: dict[str, float | str] = {}
    if mask_pred is not None and mask_true is not None:
        out["dice"] = compute_dice_score(mask_pred, mask_true).item()
        out["hd95"] = compute_hd95(mask_pred, mask_true, spacing=spacing, percentile=percentile).item()
    if ddf_recovered is not None:
        if ddf_applied is not None:
            tre = registration_error(
                ddf_applied,
                ddf_recovered,
                mask=lung_mask,
                spacing=spacing,
                exclude_outside_fov=exclude_outside_fov,
                percentile=percentile,
                region_name="lung",
            )
            out.update(_floats(tre))
        out["folding_pct"] = folding_percentage(ddf_recovered).item()
        if lung_mask is not None:
            out["folding_lung_pct"] = folding_percentage(ddf_recovered, mask=lung_mask).item()
        if ddf_backward is not None:
            ice = inverse_consistency_error(
                ddf_recovered,
                ddf_backward,
                mask=lung_mask,
                spacing=spacing,
                exclude_outside_fov=exclude_outside_fov,
                percentile=percentile,
                region_name="lung",
            )
            out.update(_floats(ice))
    out["unit"] = DistanceUnit.PX.value if spacing is None else DistanceUnit.MM.value
    nan_keys = [k for k, v in out.items() if isinstance(v, float) and math.isnan(v)]
    if nan_keys:
        logger.debug("evaluate_registration: NaN values for %s", nan_keys)
    return out


def _one_pair(t: torch.Tensor | None, name: str) -> torch.Tensor | None:
    """Add a batch dimension to a channel-first ``(C, H, W)`` tensor and refuse batches of more than one pair."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor (1, C, H, W) or (C, H, W), got {type(t).__name__}.")
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[0] != 1:
        raise ValueError(f"`{name}` must be one pair, (1, C, H, W) or (C, H, W), got shape {tuple(t.shape)}.")
    return t


def _floats(stats: dict[str, torch.Tensor | str]) -> dict[str, float]:
    """Batch-of-one tensors to Python floats, dropping the per-function ``unit``."""
    return {k: float(v.reshape(-1)[0]) for k, v in stats.items() if isinstance(v, torch.Tensor)}
