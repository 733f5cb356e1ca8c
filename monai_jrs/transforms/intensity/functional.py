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
"""Robust intensity normalisation of radiographs (percentile clip, then min-max to ``[0, 1]``)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.data import MetaTensor

__all__ = ["normalize_intensity"]


def normalize_intensity(
    image: torch.Tensor | np.ndarray, lower: float = 0.5, upper: float = 99.5, name: str = "image"
) -> torch.Tensor | np.ndarray:
    """Clip to the ``[lower, upper]`` percentiles, then min-max scale to ``[0, 1]``.

    Robust to outliers (burned-in text, collimator edges, hot pixels). When the percentiles coincide but the image is
    not constant (almost all pixels share one value), the full min-max range is used instead, with a warning.

    Args:
        image: array or tensor of any shape, e.g. ``(1, H, W)``.
        lower: lower percentile in ``[0, 100)``.
        upper: upper percentile in ``(lower, 100]``.
        name: what to call the image in error messages (e.g. its file name).

    Returns:
        float32 array or tensor (same type, shape and device as ``image``) with values in ``[0, 1]``.

    Raises:
        ValueError: for bad percentiles, an empty image, NaN/inf values, or a constant image.
    """
    if not (0.0 <= lower < upper <= 100.0):
        raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower}, upper={upper}.")
    is_tensor = isinstance(image, torch.Tensor)
    arr = image.detach().cpu().numpy() if is_tensor else np.asarray(image)
    if arr.size == 0:
        raise ValueError(f"{name}: the image is empty (shape {arr.shape}).")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: the image contains NaN or infinite values.")
    lo, hi = np.percentile(arr, [lower, upper])
    if hi <= lo:
        lo, hi = float(arr.min()), float(arr.max())
        if hi <= lo:
            raise ValueError(f"{name}: the image is constant (all values {lo}); cannot normalise it.")
        warnings.warn(
            f"{name}: percentiles ({lower}, {upper}) coincide; normalising with the full min-max range.", stacklevel=2
        )
    out = ((np.clip(arr, lo, hi) - lo) / (hi - lo)).astype(np.float32)
    if is_tensor:
        res = torch.as_tensor(out, device=image.device)
        if isinstance(image, MetaTensor):
            res = MetaTensor(res, meta=dict(image.meta), applied_operations=list(image.applied_operations))
        return res
    return out
