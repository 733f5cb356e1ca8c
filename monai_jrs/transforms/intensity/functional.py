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
"""Robust intensity normalisation of radiographs (percentile clip, then min-max to ``[0, 1]``), and the building
blocks of the SynthMorph-style appearance randomisation (look-up tables, bias field, quantile labels)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor

__all__ = [
    "normalize_intensity",
    "apply_intensity_lut",
    "monotonic_lut",
    "gaussian_mixture_lut",
    "smooth_bias_field",
    "quantile_labels",
    "sorted_quantiles",
    "robust_rescale",
]


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


# ---------------------------------------------------------------------------------------------------------------------
# appearance randomisation (SynthMorph-style) building blocks, used by RandSynthAppearance
# ---------------------------------------------------------------------------------------------------------------------
def apply_intensity_lut(
    image: torch.Tensor,
    xp: Sequence[float] | np.ndarray | torch.Tensor,
    fp: Sequence[float] | np.ndarray | torch.Tensor,
) -> torch.Tensor:
    """Piecewise-linear look-up table: ``numpy.interp(image, xp, fp)`` for tensors.

    Values below ``xp[0]`` (above ``xp[-1]``) map to ``fp[0]`` (``fp[-1]``).

    Args:
        image: floating-point tensor of any shape, e.g. ``(C, H, W)``.
        xp: ``(K,)`` strictly increasing knot positions, ``K >= 2``.
        fp: ``(K,)`` knot values.

    Returns:
        tensor of the shape, dtype and device of ``image``.

    Raises:
        ValueError: when the knots are not two finite 1-D sequences of one length ``>= 2`` with ``xp`` strictly
            increasing.

    Example::

        >>> apply_intensity_lut(torch.tensor([0.0, 0.25, 0.75, 1.0]), [0.0, 0.5, 1.0], [0.0, 0.25, 1.0])
        tensor([0.0000, 0.1250, 0.6250, 1.0000])
    """
    xs = torch.as_tensor(np.asarray(xp, dtype=np.float64) if not isinstance(xp, torch.Tensor) else xp)
    fs = torch.as_tensor(np.asarray(fp, dtype=np.float64) if not isinstance(fp, torch.Tensor) else fp)
    if xs.ndim != 1 or fs.shape != xs.shape or xs.numel() < 2:
        raise ValueError(
            f"`xp` and `fp` must be 1-D and of one length >= 2, got shapes {tuple(xs.shape)} and {tuple(fs.shape)}."
        )
    if not (bool(torch.isfinite(xs).all()) and bool(torch.isfinite(fs).all())) or not bool((xs[1:] > xs[:-1]).all()):
        raise ValueError(f"`xp` must be finite and strictly increasing and `fp` finite, got xp={xs.tolist()}, "
                         f"fp={fs.tolist()}.")
    xs = xs.to(device=image.device, dtype=image.dtype)
    fs = fs.to(device=image.device, dtype=image.dtype)
    x = image.clamp(float(xs[0]), float(xs[-1]))
    idx = (torch.bucketize(x, xs, right=True) - 1).clamp(0, xs.numel() - 2)
    x0, x1, f0, f1 = xs[idx], xs[idx + 1], fs[idx], fs[idx + 1]
    return f0 + (x - x0) / (x1 - x0) * (f1 - f0)


def monotonic_lut(increments: Sequence[float] | np.ndarray, invert: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a monotonic intensity map of ``[0, 1]`` onto ``[0, 1]``.

    ``K = len(increments)`` segments with equally spaced knot positions; the knot values are the cumulative sums of
    the (positive) increments, starting at 0 and scaled to end at 1, so the map is strictly increasing (strictly
    decreasing, ``1 - map``, with ``invert``: a MONOCHROME1-like polarity flip).

    Args:
        increments: ``(K,)`` positive rises of the ``K`` segments (relative: only their ratios matter).
        invert: flip the polarity.

    Returns:
        ``(xp, fp)``, each ``(K + 1,)`` float64, for :func:`apply_intensity_lut`.

    Raises:
        ValueError: for an empty sequence or increments that are not finite and ``> 0``.

    Example::

        >>> monotonic_lut([1.0, 3.0])
        (array([0. , 0.5, 1. ]), array([0.  , 0.25, 1.  ]))
    """
    inc = np.asarray(increments, dtype=np.float64).reshape(-1)
    if inc.size == 0 or not np.all(np.isfinite(inc)) or not np.all(inc > 0):
        raise ValueError(f"`increments` must be a non-empty sequence of finite values > 0, got {list(inc)}.")
    fp = np.concatenate([[0.0], np.cumsum(inc)])
    fp = fp / fp[-1]
    if invert:
        fp = 1.0 - fp
    return np.linspace(0.0, 1.0, inc.size + 1), fp


def gaussian_mixture_lut(
    centers: Sequence[float] | np.ndarray,
    widths: Sequence[float] | np.ndarray,
    amplitudes: Sequence[float] | np.ndarray,
    num_points: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a smooth, generally non-monotonic intensity map: a sum of Gaussian bumps over ``[0, 1]``.

    ``f(x) = sum_k amplitudes[k] * exp(-(x - centers[k])**2 / (2 * widths[k]**2))`` sampled at ``num_points``
    equally spaced positions and min-max scaled to ``[0, 1]``; bright and dark structures can swap. A flat sum
    (range below ``1e-6``) gives the identity map.

    Args:
        centers: ``(N,)`` bump centres (intensities of the input).
        widths: ``(N,)`` bump standard deviations, ``> 0``.
        amplitudes: ``(N,)`` signed bump heights.
        num_points: knots of the returned table, ``>= 2``.

    Returns:
        ``(xp, fp)``, each ``(num_points,)`` float64, for :func:`apply_intensity_lut`.

    Raises:
        ValueError: for sequences of different or zero length, non-finite values, widths ``<= 0`` or
            ``num_points < 2``.
    """
    c, w, a = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (centers, widths, amplitudes))
    if c.size == 0 or not (c.size == w.size == a.size):
        raise ValueError(f"`centers`, `widths` and `amplitudes` must be non-empty and of one length, got lengths "
                         f"{c.size}, {w.size}, {a.size}.")
    if not all(np.all(np.isfinite(v)) for v in (c, w, a)) or not np.all(w > 0):
        raise ValueError(f"the bumps must be finite with widths > 0, got centers={list(c)}, widths={list(w)}, "
                         f"amplitudes={list(a)}.")
    if int(num_points) < 2:
        raise ValueError(f"`num_points` must be >= 2, got {num_points}.")
    xp = np.linspace(0.0, 1.0, int(num_points))
    fp = (a[:, None] * np.exp(-((xp[None] - c[:, None]) ** 2) / (2.0 * w[:, None] ** 2))).sum(0)
    span = float(fp.max() - fp.min())
    if span < 1e-6:
        return xp, xp.copy()
    return xp, (fp - fp.min()) / span


def smooth_bias_field(coefficients: torch.Tensor | np.ndarray, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Smooth multiplicative bias field ``exp(upsample(coefficients))``.

    Args:
        coefficients: ``(h, w)`` log-field on a coarse grid spanning the image (corner to corner), ``h, w >= 2``.
        spatial_shape: ``(H, W)`` of the image.

    Returns:
        ``(H, W)`` positive tensor of the dtype of ``coefficients`` (float32 when not floating point), bicubic
        upsampling with ``align_corners=True``.

    Raises:
        ValueError: for a coefficient grid that is not 2-D with at least 2 points per axis, or a bad shape.
    """
    coef = torch.as_tensor(coefficients)
    coef = coef if torch.is_floating_point(coef) else coef.float()
    if coef.ndim != 2 or min(coef.shape) < 2:
        raise ValueError(f"`coefficients` must be a 2-D grid of at least 2x2, got shape {tuple(coef.shape)}.")
    shape = [int(s) for s in spatial_shape]
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"`spatial_shape` must be (H, W) with H, W >= 1, got {tuple(spatial_shape)}.")
    field = torch.nn.functional.interpolate(coef[None, None], size=shape, mode="bicubic", align_corners=True)
    return torch.exp(field[0, 0])


def quantile_labels(image: torch.Tensor, num_classes: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Split an image into classes by intensity quantiles; the lung mask, when given, is a class of its own.

    Args:
        image: ``(H, W)`` float tensor (e.g. the smoothed radiograph).
        num_classes: intensity classes ``N >= 1``: class ``k`` holds the pixels between the ``k / N`` and
            ``(k + 1) / N`` quantiles.
        mask: optional ``(H, W)`` mask; pixels ``> 0.5`` get class ``N``.

    Returns:
        ``(H, W)`` int64 labels in ``[0, N]`` (``[0, N - 1]`` without a mask). A constant image is one class.

    Raises:
        ValueError: for ``num_classes < 1`` or a mask of another shape.
    """
    if int(num_classes) < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
    n = int(num_classes)
    if n > 1:
        thresholds = sorted_quantiles(image, [100.0 * k / n for k in range(1, n)])
        labels = torch.bucketize(image.contiguous(), thresholds.contiguous(), right=True)
    else:
        labels = torch.zeros(image.shape, dtype=torch.int64, device=image.device)
    if mask is not None:
        if tuple(mask.shape) != tuple(image.shape):
            raise ValueError(f"`mask` must have the shape of `image` {tuple(image.shape)}, got {tuple(mask.shape)}.")
        labels = torch.where(mask.to(image.device) > 0.5, torch.full_like(labels, n), labels)
    return labels


def sorted_quantiles(image: torch.Tensor, percentiles: Sequence[float]) -> torch.Tensor:
    """Percentiles of all values of ``image`` (linear interpolation, as ``numpy.percentile``), any size.

    Unlike :func:`torch.quantile` there is no limit on the number of elements.

    Args:
        image: float tensor of any shape, not empty.
        percentiles: values in ``[0, 100]``.

    Returns:
        ``(len(percentiles),)`` tensor of the dtype and device of ``image``.
    """
    v = image.detach().reshape(-1).sort().values
    pos = torch.as_tensor([float(p) / 100.0 * (v.numel() - 1) for p in percentiles], dtype=v.dtype, device=v.device)
    lo = pos.floor().long().clamp(0, v.numel() - 1)
    hi = (lo + 1).clamp(max=v.numel() - 1)
    return v[lo] + (pos - lo.to(v.dtype)) * (v[hi] - v[lo])


def robust_rescale(image: torch.Tensor, lower: float = 0.5, upper: float = 99.5) -> torch.Tensor:
    """Clip to the ``[lower, upper]`` percentiles and scale to ``[0, 1]``, never dividing by zero.

    When the percentiles coincide the full min-max range is used; a constant image is only clipped to ``[0, 1]``.

    Args:
        image: float tensor of any shape, not empty.
        lower: lower percentile in ``[0, 100)``.
        upper: upper percentile in ``(lower, 100]``.

    Returns:
        tensor of the shape, dtype and device of ``image``, values in ``[0, 1]``.
    """
    lo, hi = (float(v) for v in sorted_quantiles(image, [lower, upper]))
    if not hi - lo > 1e-8:
        lo, hi = float(image.min()), float(image.max())
        if not hi - lo > 1e-8:
            return image.clamp(0.0, 1.0)
    return ((image - lo) / (hi - lo)).clamp(0.0, 1.0)
