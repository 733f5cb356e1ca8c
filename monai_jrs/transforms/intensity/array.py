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
"""Intensity transforms of radiographs: robust normalisation, visit-to-visit appearance changes (exposure, contrast,
gamma, noise, blur)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import GaussianSmooth, RandomizableTransform, Transform
from monai.utils.type_conversion import convert_to_dst_type

from monai_jrs.transforms.intensity.functional import normalize_intensity

logger = logging.getLogger(__name__)

__all__ = ["NormalizeXRay", "RandFollowUpAppearance"]


class NormalizeXRay(Transform):
    """Percentile clip and min-max to ``[0, 1]``; see :func:`~monai_jrs.transforms.normalize_intensity`.

    Args:
        lower: lower percentile.
        upper: upper percentile.
    """

    def __init__(self, lower: float = 0.5, upper: float = 99.5) -> None:
        if not (0.0 <= lower < upper <= 100.0):
            raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower}, upper={upper}.")
        self.lower = lower
        self.upper = upper

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Normalise ``img`` (any shape, e.g. ``(1, H, W)``)."""
        name = "image"
        if isinstance(img, MetaTensor):
            name = str(img.meta.get("filename", img.meta.get("filename_or_obj", name)))
        return normalize_intensity(img, self.lower, self.upper, name=name)


class RandFollowUpAppearance(RandomizableTransform):
    """Random, mild appearance change between two visits, for images with intensities in ``[0, 1]``.

    Applied in this order, each parameter drawn uniformly from its range:

    1. gamma: ``x ** gamma`` (exposure / processing curve),
    2. contrast and brightness: ``(x - mean) * contrast + mean + brightness`` (``mean`` over the image),
    3. blur: Gaussian of ``blur_sigma`` px (MONAI :class:`~monai.transforms.GaussianSmooth`, skipped when 0),
    4. noise: additive Gaussian of std ``noise_std``,
    5. clipping to ``[0, 1]`` when ``clip`` is True.

    Defaults are mild (repeat visits on similar equipment); a range ``(a, a)`` fixes a parameter, and gamma
    ``(1, 1)``, contrast ``(1, 1)``, brightness/noise/blur ``(0, 0)`` turn a step off.

    Args:
        prob: probability of applying the transform.
        gamma_range: ``(min, max)`` gamma, ``> 0``.
        contrast_range: ``(min, max)`` contrast factor, ``> 0``.
        brightness_range: ``(min, max)`` additive offset.
        noise_std_range: ``(min, max)`` noise standard deviation, ``>= 0``.
        blur_sigma_range: ``(min, max)`` Gaussian sigma in px, ``>= 0``.
        clip: clip the result to ``[0, 1]``.

    Example::

        >>> t = RandFollowUpAppearance()
        >>> _ = t.set_random_state(0)
        >>> tuple(t(torch.rand(1, 16, 16)).shape)
        (1, 16, 16)
    """

    def __init__(
        self,
        prob: float = 1.0,
        gamma_range: Sequence[float] = (0.85, 1.15),
        contrast_range: Sequence[float] = (0.9, 1.1),
        brightness_range: Sequence[float] = (-0.05, 0.05),
        noise_std_range: Sequence[float] = (0.0, 0.01),
        blur_sigma_range: Sequence[float] = (0.0, 0.75),
        clip: bool = True,
    ) -> None:
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"`prob` must be a number in [0, 1], got {prob}.")
        RandomizableTransform.__init__(self, prob)
        self.gamma_range = _range(gamma_range, "gamma_range", low=0.0, strict=True)
        self.contrast_range = _range(contrast_range, "contrast_range", low=0.0, strict=True)
        self.brightness_range = _range(brightness_range, "brightness_range", low=-math.inf)
        self.noise_std_range = _range(noise_std_range, "noise_std_range", low=0.0)
        self.blur_sigma_range = _range(blur_sigma_range, "blur_sigma_range", low=0.0)
        self.clip = bool(clip)
        self._params: dict[str, float] = {}
        self._noise_seed = 0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        self._params = {
            "gamma": float(self.R.uniform(*self.gamma_range)),
            "contrast": float(self.R.uniform(*self.contrast_range)),
            "brightness": float(self.R.uniform(*self.brightness_range)),
            "noise_std": float(self.R.uniform(*self.noise_std_range)),
            "blur_sigma": float(self.R.uniform(*self.blur_sigma_range)),
        }
        self._noise_seed = int(self.R.randint(0, 2**31 - 1))

    def get_params(self) -> dict[str, float]:
        """Parameters of the last draw (empty when the transform was skipped)."""
        return dict(self._params) if self._do_transform else {}

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        """Apply to a ``(C, H, W)`` image in ``[0, 1]``; returns the same type (MetaTensor metadata kept)."""
        if randomize:
            self.randomize()
        if not isinstance(img, (torch.Tensor, np.ndarray)):
            raise TypeError(f"`img` must be a torch.Tensor or numpy array of shape (C, H, W), got {type(img).__name__}.")
        if img.ndim != 3:
            raise ValueError(f"`img` must have shape (C, H, W) (2D images only), got shape {tuple(img.shape)}.")
        if not self._do_transform:
            return img
        x = torch.as_tensor(img)
        x = x.as_tensor() if hasattr(x, "as_tensor") else x
        x = x.float() if not torch.is_floating_point(x) else x.clone()
        p = self._params
        x = x.clamp(min=0.0) ** p["gamma"]
        mean = x.mean()
        x = (x - mean) * p["contrast"] + mean + p["brightness"]
        if p["blur_sigma"] > 0:
            x = torch.as_tensor(GaussianSmooth(sigma=p["blur_sigma"])(x))
        if p["noise_std"] > 0:
            gen = torch.Generator(device="cpu").manual_seed(self._noise_seed)
            x = x + p["noise_std"] * torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        if self.clip:
            x = x.clamp(0.0, 1.0)
        return convert_to_dst_type(x, img, dtype=x.dtype)[0]


def _range(value: Sequence[float], name: str, low: float, strict: bool = False) -> tuple[float, float]:
    rng = tuple(float(v) for v in value)
    bad = len(rng) != 2 or not all(math.isfinite(v) for v in rng) or rng[0] > rng[1]
    bad = bad or (rng[0] <= low if strict else rng[0] < low)
    if bad:
        bound = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"`{name}` must be a (min, max) pair with min <= max and values {bound}, got {value}.")
    return rng  # type: ignore[return-value]
