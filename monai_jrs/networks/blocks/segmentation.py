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
"""Segmentation heads of the JRS generator: the paper's feature-map fusion + Otsu (Sec. 2.3) and a learned head."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_jrs.utils.conventions import _shape_str

__all__ = ["otsu_threshold", "FeatureFusionSegmentation", "LearnedFeatureSegmentation"]

logger = logging.getLogger(__name__)


def otsu_threshold(x: torch.Tensor, num_bins: int = 256) -> torch.Tensor:
    """Otsu's threshold of each sample, from a ``num_bins`` histogram over the sample's ``[min, max]``.

    Bin ``k`` covers ``[min + k w, min + (k + 1) w)`` with ``w = (max - min) / num_bins`` (the maximum falls in
    the last bin) and is represented by its centre. The returned threshold is the upper edge of the last bin of
    the lower class, so the foreground is ``x > threshold``. Ties in the between-class variance (e.g. empty bins
    between two clusters) resolve to the lowest split, as ``numpy.argmax`` / ``skimage.filters.threshold_otsu``
    do. A constant sample returns its value (no foreground). Not differentiable (computed on ``x.detach()``).

    Args:
        x: ``(B, ...)`` tensor, e.g. ``(B, 1, H, W)``; each sample is thresholded independently.
        num_bins: number of histogram bins (>= 2).

    Returns:
        ``(B,)`` thresholds, dtype of ``x``.

    Raises:
        ValueError: for a non floating-point or empty input, or ``num_bins`` < 2.

    Example::

        >>> x = torch.tensor([[0.0, 0.0, 0.1, 0.9, 1.0, 1.0]])
        >>> bool(((x > otsu_threshold(x)[:, None]) == (x > 0.5)).all())
        True
    """
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        got = "a tensor of an integer or boolean dtype" if torch.jit.is_scripting() else type(x).__name__
        raise ValueError(f"`x` must be a floating-point tensor of shape (B, ...), got {got}.")
    if x.ndim < 1 or x.numel() == 0 or x[0].numel() == 0:
        raise ValueError(f"`x` must be a non-empty tensor of shape (B, ...), got shape {_shape_str(x.shape)}.")
    if int(num_bins) < 2:
        raise ValueError(f"`num_bins` must be >= 2, got {num_bins}.")
    nb = int(num_bins)
    flat = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    width = (hi - lo) / nb
    tiny = 2.2250738585072014e-308  # torch.finfo(torch.float64).tiny; TorchScript has no finfo (nor float globals)
    idx = ((flat - lo) / (hi - lo).clamp_min(tiny) * nb).floor()
    idx = idx.clamp(0, nb - 1).long()
    hist = torch.zeros(flat.shape[0], nb, dtype=torch.float64, device=flat.device)
    hist.scatter_add_(1, idx, torch.ones_like(flat))
    centres = lo + (torch.arange(nb, dtype=torch.float64, device=flat.device) + 0.5) * width
    # counts are integers held exactly in float64, so "empty class" tests are exact
    n0 = torch.cumsum(hist, dim=1)
    s0 = torch.cumsum(hist * centres, dim=1)
    n_tot, s_tot = n0[:, -1:], s0[:, -1:]
    n1 = n_tot - n0
    valid = (n0 > 0) & (n1 > 0)
    m0 = s0 / n0.clamp_min(1.0)
    m1 = (s_tot - s0) / n1.clamp_min(1.0)
    between = n0 * n1 * (m0 - m1) ** 2
    between = torch.where(valid, between, torch.full_like(between, -1.0))
    k = torch.argmax(between, dim=1, keepdim=True)
    thr = lo + (k + 1).to(torch.float64) * width
    thr = torch.where(valid.any(dim=1, keepdim=True), thr, lo)
    return thr.reshape(-1).to(x.dtype)


def _minmax(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Min-max normalise each sample of ``(B, C, H, W)`` to ``[0, 1]`` (a constant sample becomes 0)."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.amin(dim=1).view(-1, 1, 1, 1)
    hi = flat.amax(dim=1).view(-1, 1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(eps)


def _check_features(features: list[torch.Tensor]) -> None:
    if isinstance(features, torch.Tensor) or len(features) == 0:
        raise ValueError("`features` must be a non-empty sequence of (B, C_i, h, w) tensors.")
    ref = features[0]
    for i, f in enumerate(features):
        if not isinstance(f, torch.Tensor) or f.ndim != 4:
            got = _shape_str(f.shape) if torch.jit.is_scripting() else getattr(f, "shape", type(f))
            raise ValueError(f"`features[{i}]` must have shape (B, C, h, w), got {got}.")
        if f.shape[0] != ref.shape[0] or f.shape[2:] != ref.shape[2:]:
            raise ValueError(
                f"all feature maps must share batch and spatial size (B, *, h, w) = "
                f"({ref.shape[0]}, *, {ref.shape[2]}, {ref.shape[3]}), got {_shape_str(f.shape)} at index {i}."
            )


def _resize(x: torch.Tensor, spatial_shape: list[int] | None, align_corners: bool) -> torch.Tensor:
    if spatial_shape is None or [int(s) for s in spatial_shape] == [int(s) for s in x.shape[2:]]:
        return x
    return F.interpolate(x, size=[int(s) for s in spatial_shape], mode="bilinear", align_corners=align_corners)


class FeatureFusionSegmentation(nn.Module):
    """The paper's segmentation (Sec. 2.3): fuse per-layer feature maps, threshold with Otsu.

    Each layer's maps ``(B, C_i, h, w)`` are reduced to one map (mean over channels), min-max normalised to
    ``[0, 1]`` per sample, summed, and the sum is renormalised to ``[0, 1]`` -> ``S``. The binary mask is
    ``S > t_otsu`` (:func:`otsu_threshold`, computed on the ``h x w`` map). The differentiable training surrogate
    is ``prob = sigmoid((S - t_otsu.detach()) / temperature)``. ``S`` is upsampled (bilinear) to the requested
    output size before thresholding; ``align_corners=False`` matches area-downsampled inputs.

    Args:
        temperature: temperature of the sigmoid surrogate (> 0); smaller is closer to the hard mask.
        num_bins: histogram bins of the Otsu threshold.
        align_corners: ``align_corners`` of the upsampling.

    Raises:
        ValueError: for a non-positive temperature or fewer than 2 bins.
    """

    def __init__(self, temperature: float = 0.05, num_bins: int = 256, align_corners: bool = False) -> None:
        super().__init__()
        if not float(temperature) > 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}.")
        if int(num_bins) < 2:
            raise ValueError(f"`num_bins` must be >= 2, got {num_bins}.")
        self.temperature = float(temperature)
        self.num_bins = int(num_bins)
        self.align_corners = bool(align_corners)

    def fuse(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Fused map ``S`` in ``[0, 1]``.

        Args:
            features: sequence of ``(B, C_i, h, w)`` layer activations.

        Returns:
            ``(B, 1, h, w)``.
        """
        _check_features(features)
        total = torch.zeros_like(features[0][:, :1])
        for f in features:
            total = total + _minmax(f.mean(dim=1, keepdim=True))
        return _minmax(total)

    def forward(
        self, features: list[torch.Tensor], spatial_shape: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft and binary masks.

        Args:
            features: sequence of ``(B, C_i, h, w)`` layer activations.
            spatial_shape: output ``(H, W)``; ``None`` keeps ``(h, w)``.

        Returns:
            ``(prob, mask)``, both ``(B, 1, H, W)``; ``prob`` in ``(0, 1)``, ``mask`` in ``{0., 1.}``.
        """
        fused = self.fuse(features)
        thr = otsu_threshold(fused, self.num_bins).detach().view(-1, 1, 1, 1)
        fused = _resize(fused, spatial_shape, self.align_corners)
        prob = torch.sigmoid((fused - thr) / self.temperature)
        mask = (fused > thr).to(fused.dtype)
        return prob, mask


class LearnedFeatureSegmentation(nn.Module):
    """Learned alternative to the fusion head: a 1x1 convolution over the concatenated layer activations.

    The 1x1 convolution is applied at the feature resolution and its logits are upsampled; since both operations
    are linear (and bilinear weights sum to one) this equals convolving the upsampled features, at a fraction of
    the cost. ``prob = sigmoid(logits)``, ``mask = prob > 0.5``.

    Args:
        in_channels: total number of channels of the concatenated features.
        align_corners: ``align_corners`` of the upsampling.

    Raises:
        ValueError: when ``in_channels`` < 1.
    """

    def __init__(self, in_channels: int, align_corners: bool = False) -> None:
        super().__init__()
        if int(in_channels) < 1:
            raise ValueError(f"`in_channels` must be >= 1, got {in_channels}.")
        self.in_channels = int(in_channels)
        self.align_corners = bool(align_corners)
        self.conv = nn.Conv2d(self.in_channels, 1, kernel_size=1)

    def forward(
        self, features: list[torch.Tensor], spatial_shape: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft and binary masks.

        Args:
            features: sequence of ``(B, C_i, h, w)`` layer activations with ``sum(C_i) == in_channels``.
            spatial_shape: output ``(H, W)``; ``None`` keeps ``(h, w)``.

        Returns:
            ``(prob, mask)``, both ``(B, 1, H, W)``.
        """
        _check_features(features)
        x = torch.cat(list(features), dim=1)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"concatenated `features` must have {self.in_channels} channels, got {x.shape[1]}."
            )
        logits = _resize(self.conv(x), spatial_shape, self.align_corners)
        prob = torch.sigmoid(logits)
        return prob, (prob > 0.5).to(prob.dtype)
