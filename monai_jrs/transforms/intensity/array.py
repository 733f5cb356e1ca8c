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
gamma, noise, blur) and SynthMorph-style appearance randomisation (random look-up tables, label-driven synthetic
images, bias field, blur, noise)."""

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

from monai_jrs.transforms.intensity.functional import (
    apply_intensity_lut,
    gaussian_mixture_lut,
    monotonic_lut,
    normalize_intensity,
    quantile_labels,
    robust_rescale,
    smooth_bias_field,
)
from monai_jrs.utils.enums import SynthAppearancePart

logger = logging.getLogger(__name__)

__all__ = ["NormalizeXRay", "RandFollowUpAppearance", "RandSynthAppearance", "SYNTH_APPEARANCE_PARTS"]

#: Every part of :class:`RandSynthAppearance`, in the order they are applied.
SYNTH_APPEARANCE_PARTS: tuple[str, ...] = tuple(p.value for p in SynthAppearancePart)


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


class RandSynthAppearance(RandomizableTransform):
    """SynthMorph-style appearance randomisation (Hoffmann et al., IEEE TMI 2022) for images in ``[0, 1]``.

    Trains a registration network on images whose contrast, polarity, texture and noise are random, so that it
    learns contrast-invariant features (the domain gap from synthetic pairs to real radiographs). Each part is
    switched on by ``parts`` (names of :class:`~monai_jrs.utils.enums.SynthAppearancePart`) and then applied with its
    own probability, in this order:

    1. ``"monotonic"``: piecewise-linear look-up table through ``K`` (from ``monotonic_num_knots``) equally spaced
       knots whose values are cumulative sums of random positive rises (ratio of the steepest to the flattest segment
       at most ``monotonic_slope_ratio``): the order of the pixels is kept; with ``invert_prob`` the polarity is
       flipped (``1 - map``, MONOCHROME1-like) and the order reversed.
    2. ``"nonmonotonic"``: a smooth look-up table, a sum of ``nonmonotonic_num_bumps`` Gaussian bumps of random
       centre (in ``[0, 1]``), width (``nonmonotonic_width_range``) and signed height, min-max scaled to ``[0, 1]``:
       bright and dark structures can swap.
    3. ``"labels"`` (as SynthMorph's label-driven images): the clean image, smoothed by ``labels_smooth_sigma`` px,
       is split into ``N`` (``labels_num_classes``) classes at its intensity quantiles, plus the lung mask as a class
       of its own when ``mask`` is given; each class gets a random intensity in ``[0, 1]``, the label image is blurred
       by ``labels_blur_range`` px and blended with the (mapped) image: ``(1 - w) * image + w * synthetic`` with
       ``w`` from ``labels_weight_range`` (``w = 1``: purely synthetic).
    4. ``"bias"``: multiplication by ``exp(s * upsample(g))``, ``g`` a ``bias_grid_size`` x ``bias_grid_size``
       standard normal grid upsampled bicubically to ``(H, W)``, ``s`` from ``bias_strength_range``.
    5. ``"blur"``: Gaussian blur of ``blur_sigma_range`` px (MONAI :class:`~monai.transforms.GaussianSmooth`).
    6. ``"noise"``: ``x + a * n1 + b * sqrt(x) * n2`` (``n1``, ``n2`` standard normal), ``a`` from
       ``noise_std_range``, ``b`` (signal-dependent, Poisson-like) from ``poisson_std_range``.

    Then the image is rescaled to ``[0, 1]`` at its ``percentiles`` (robust; min-max when they coincide, only
    clipped when constant). When the transform is skipped (``prob``) or no part was drawn the input is returned
    unchanged. The input is clipped to ``[0, 1]`` first.

    All parameters of every part are drawn on every call, whether the part is in ``parts`` or not, so with one seed
    switching a part off leaves the draws of the others unchanged (an ablation changes one thing).

    Args:
        prob: probability of applying the transform.
        parts: the parts that may be applied (default: all, :data:`SYNTH_APPEARANCE_PARTS`); empty: identity.
        monotonic_prob: probability of the monotonic map.
        monotonic_num_knots: ``(min, max)`` number of segments ``K >= 1`` (integers, inclusive).
        monotonic_slope_ratio: largest ratio of two segment slopes, ``>= 1`` (1: the identity map).
        invert_prob: probability of the polarity flip (only when the monotonic map is applied).
        nonmonotonic_prob: probability of the non-monotonic map.
        nonmonotonic_num_bumps: ``(min, max)`` number of Gaussian bumps ``>= 1`` (integers, inclusive).
        nonmonotonic_width_range: ``(min, max)`` bump widths, ``> 0``, in intensity units.
        labels_prob: probability of the label-driven synthetic image.
        labels_num_classes: ``(min, max)`` number of intensity classes ``>= 1`` (integers, inclusive).
        labels_smooth_sigma: smoothing (px) of the image before it is split into classes, ``>= 0``.
        labels_blur_range: ``(min, max)`` blur (px) of the synthetic image, ``>= 0``.
        labels_weight_range: ``(min, max)`` blending weight of the synthetic image, in ``[0, 1]``.
        bias_prob: probability of the bias field.
        bias_strength_range: ``(min, max)`` standard deviation of the log bias field, ``>= 0``.
        bias_grid_size: control points per axis of the bias field, ``>= 2``.
        blur_prob: probability of the blur.
        blur_sigma_range: ``(min, max)`` Gaussian sigma in px, ``>= 0``.
        noise_prob: probability of the noise.
        noise_std_range: ``(min, max)`` standard deviation of the additive noise, ``>= 0``.
        poisson_std_range: ``(min, max)`` scale of the signal-dependent noise, ``>= 0``.
        percentiles: ``(lower, upper)`` percentiles of the final rescaling.

    Raises:
        ValueError: for invalid arguments (at construction) or inputs (at call time).

    Example::

        >>> t = RandSynthAppearance(parts=["monotonic", "noise"])
        >>> _ = t.set_random_state(0)
        >>> out = t(torch.rand(1, 16, 16))
        >>> tuple(out.shape), bool(out.min() >= 0) and bool(out.max() <= 1)
        ((1, 16, 16), True)
    """

    def __init__(
        self,
        prob: float = 1.0,
        parts: Sequence[str] | str = SYNTH_APPEARANCE_PARTS,
        monotonic_prob: float = 0.8,
        monotonic_num_knots: Sequence[int] = (2, 8),
        monotonic_slope_ratio: float = 10.0,
        invert_prob: float = 0.1,
        nonmonotonic_prob: float = 0.2,
        nonmonotonic_num_bumps: Sequence[int] = (1, 4),
        nonmonotonic_width_range: Sequence[float] = (0.05, 0.3),
        labels_prob: float = 0.2,
        labels_num_classes: Sequence[int] = (3, 8),
        labels_smooth_sigma: float = 1.0,
        labels_blur_range: Sequence[float] = (0.5, 1.5),
        labels_weight_range: Sequence[float] = (0.0, 1.0),
        bias_prob: float = 0.5,
        bias_strength_range: Sequence[float] = (0.0, 0.3),
        bias_grid_size: int = 4,
        blur_prob: float = 0.3,
        blur_sigma_range: Sequence[float] = (0.3, 1.5),
        noise_prob: float = 0.5,
        noise_std_range: Sequence[float] = (0.0, 0.03),
        poisson_std_range: Sequence[float] = (0.0, 0.03),
        percentiles: Sequence[float] = (0.5, 99.5),
    ) -> None:
        RandomizableTransform.__init__(self, _prob(prob, "prob"))
        self.parts = _parts(parts)
        self.part_probs = {
            SynthAppearancePart.MONOTONIC.value: _prob(monotonic_prob, "monotonic_prob"),
            SynthAppearancePart.NONMONOTONIC.value: _prob(nonmonotonic_prob, "nonmonotonic_prob"),
            SynthAppearancePart.LABELS.value: _prob(labels_prob, "labels_prob"),
            SynthAppearancePart.BIAS.value: _prob(bias_prob, "bias_prob"),
            SynthAppearancePart.BLUR.value: _prob(blur_prob, "blur_prob"),
            SynthAppearancePart.NOISE.value: _prob(noise_prob, "noise_prob"),
        }
        self.monotonic_num_knots = _int_range(monotonic_num_knots, "monotonic_num_knots", low=1)
        if not (math.isfinite(float(monotonic_slope_ratio)) and float(monotonic_slope_ratio) >= 1.0):
            raise ValueError(f"`monotonic_slope_ratio` must be a finite number >= 1, got {monotonic_slope_ratio}.")
        self.monotonic_slope_ratio = float(monotonic_slope_ratio)
        self.invert_prob = _prob(invert_prob, "invert_prob")
        self.nonmonotonic_num_bumps = _int_range(nonmonotonic_num_bumps, "nonmonotonic_num_bumps", low=1)
        self.nonmonotonic_width_range = _range(nonmonotonic_width_range, "nonmonotonic_width_range", 0.0, strict=True)
        self.labels_num_classes = _int_range(labels_num_classes, "labels_num_classes", low=1)
        if not (math.isfinite(float(labels_smooth_sigma)) and float(labels_smooth_sigma) >= 0.0):
            raise ValueError(f"`labels_smooth_sigma` must be a finite number >= 0 (px), got {labels_smooth_sigma}.")
        self.labels_smooth_sigma = float(labels_smooth_sigma)
        self.labels_blur_range = _range(labels_blur_range, "labels_blur_range", low=0.0)
        self.labels_weight_range = _range(labels_weight_range, "labels_weight_range", low=0.0)
        if self.labels_weight_range[1] > 1.0:
            raise ValueError(f"`labels_weight_range` must lie in [0, 1], got {labels_weight_range}.")
        self.bias_strength_range = _range(bias_strength_range, "bias_strength_range", low=0.0)
        if isinstance(bias_grid_size, bool) or int(bias_grid_size) != bias_grid_size or int(bias_grid_size) < 2:
            raise ValueError(f"`bias_grid_size` must be an integer >= 2, got {bias_grid_size!r}.")
        self.bias_grid_size = int(bias_grid_size)
        self.blur_sigma_range = _range(blur_sigma_range, "blur_sigma_range", low=0.0)
        self.noise_std_range = _range(noise_std_range, "noise_std_range", low=0.0)
        self.poisson_std_range = _range(poisson_std_range, "poisson_std_range", low=0.0)
        pct = tuple(float(v) for v in percentiles)
        if len(pct) != 2 or not (0.0 <= pct[0] < pct[1] <= 100.0):
            raise ValueError(f"`percentiles` must be (lower, upper) with 0 <= lower < upper <= 100, got {percentiles}.")
        self.percentiles: tuple[float, float] = pct  # type: ignore[assignment]
        self._params: dict[str, dict[str, Any]] = {}

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._params = {}
        if not self._do_transform:
            return
        r = self.R
        # a fixed number of draws per call, whatever `parts`, the drawn sizes or the mask (see the class docstring)
        apply = {name: bool(r.uniform() < p) for name, p in self.part_probs.items()}
        draws: dict[str, dict[str, Any]] = {}
        k_lo, k_hi = self.monotonic_num_knots
        num_knots = int(r.randint(k_lo, k_hi + 1))
        draws[SynthAppearancePart.MONOTONIC] = {
            "increments": r.uniform(1.0 / self.monotonic_slope_ratio, 1.0, size=k_hi)[:num_knots].tolist(),
            "invert": bool(r.uniform() < self.invert_prob),
        }
        b_lo, b_hi = self.nonmonotonic_num_bumps
        num_bumps = int(r.randint(b_lo, b_hi + 1))
        draws[SynthAppearancePart.NONMONOTONIC] = {
            "centers": r.uniform(0.0, 1.0, size=b_hi)[:num_bumps].tolist(),
            "widths": r.uniform(*self.nonmonotonic_width_range, size=b_hi)[:num_bumps].tolist(),
            "amplitudes": r.uniform(-1.0, 1.0, size=b_hi)[:num_bumps].tolist(),
        }
        c_lo, c_hi = self.labels_num_classes
        num_classes = int(r.randint(c_lo, c_hi + 1))
        draws[SynthAppearancePart.LABELS] = {
            "num_classes": num_classes,
            # one intensity per class, + 1 for the lung class (used when a mask is given)
            "intensities": r.uniform(0.0, 1.0, size=c_hi + 1)[: num_classes + 1].tolist(),
            "blur_sigma": float(r.uniform(*self.labels_blur_range)),
            "weight": float(r.uniform(*self.labels_weight_range)),
        }
        draws[SynthAppearancePart.BIAS] = {
            "strength": float(r.uniform(*self.bias_strength_range)),
            "coefficients": r.standard_normal((self.bias_grid_size, self.bias_grid_size)).tolist(),
        }
        draws[SynthAppearancePart.BLUR] = {"sigma": float(r.uniform(*self.blur_sigma_range))}
        draws[SynthAppearancePart.NOISE] = {
            "std": float(r.uniform(*self.noise_std_range)),
            "poisson_std": float(r.uniform(*self.poisson_std_range)),
            "seed": int(r.randint(0, 2**31 - 1)),
        }
        self._params = {str(k): v for k, v in draws.items() if apply[str(k)] and str(k) in self.parts}
        logger.debug("RandSynthAppearance parts drawn: %s", list(self._params))

    def get_params(self) -> dict[str, dict[str, Any]]:
        """Parameters of the parts applied by the last draw, keyed by part name (empty when skipped)."""
        return {k: dict(v) for k, v in self._params.items()} if self._do_transform else {}

    def __call__(
        self,
        img: torch.Tensor | np.ndarray,
        mask: torch.Tensor | np.ndarray | None = None,
        randomize: bool = True,
    ) -> torch.Tensor | np.ndarray:
        """Randomise the appearance of ``img``.

        Args:
            img: ``(C, H, W)`` image with intensities in ``[0, 1]`` (torch or numpy).
            mask: optional ``(1, H, W)`` or ``(C, H, W)`` lung mask (``> 0.5`` is lung) for the ``"labels"`` part;
                it is not changed.
            randomize: draw new parameters first.

        Returns:
            the image in ``[0, 1]``, same type, shape and device (MetaTensor metadata kept); ``img`` itself when
            nothing was applied.

        Raises:
            TypeError: when ``img`` or ``mask`` is neither a tensor nor a numpy array.
            ValueError: for another shape, NaN or infinite values, or a mask of another spatial shape.
        """
        if randomize:
            self.randomize()
        if not isinstance(img, (torch.Tensor, np.ndarray)):
            raise TypeError(
                f"`img` must be a torch.Tensor or numpy array of shape (C, H, W), got {type(img).__name__}."
            )
        if img.ndim != 3:
            raise ValueError(f"`img` must have shape (C, H, W) (2D images only), got shape {tuple(img.shape)}.")
        x = torch.as_tensor(img)
        x = x.as_tensor() if hasattr(x, "as_tensor") else x
        if x.numel() == 0:
            raise ValueError(f"`img` must not be empty, got shape {tuple(x.shape)}.")
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"`img` must contain finite values in [0, 1], got {bad} NaN or infinite values.")
        lung = self._check_mask(mask, tuple(x.shape))
        if not self._do_transform or not self._params:
            return img
        x = x.float() if not torch.is_floating_point(x) else x.clone()
        dtype = x.dtype
        x = x.clamp(0.0, 1.0)
        clean = x
        p = self._params
        if SynthAppearancePart.MONOTONIC in p:
            x = apply_intensity_lut(x, *monotonic_lut(**p[SynthAppearancePart.MONOTONIC]))
        if SynthAppearancePart.NONMONOTONIC in p:
            x = apply_intensity_lut(x, *gaussian_mixture_lut(**p[SynthAppearancePart.NONMONOTONIC]))
        if SynthAppearancePart.LABELS in p:
            x = self._blend_labels(x, clean, lung, p[SynthAppearancePart.LABELS])
        if SynthAppearancePart.BIAS in p:
            q = p[SynthAppearancePart.BIAS]
            coef = q["strength"] * torch.as_tensor(q["coefficients"], dtype=x.dtype, device=x.device)
            x = x * smooth_bias_field(coef, x.shape[1:]).to(x.dtype)
        if SynthAppearancePart.BLUR in p and p[SynthAppearancePart.BLUR]["sigma"] > 0:
            x = _smooth(x, p[SynthAppearancePart.BLUR]["sigma"])
        if SynthAppearancePart.NOISE in p:
            q = p[SynthAppearancePart.NOISE]
            gen = torch.Generator(device="cpu").manual_seed(q["seed"])
            n1 = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
            n2 = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
            x = x + q["std"] * n1 + q["poisson_std"] * x.clamp(min=0.0).sqrt() * n2
        x = robust_rescale(x, *self.percentiles).to(dtype)
        return convert_to_dst_type(x, img, dtype=x.dtype)[0]

    def _blend_labels(
        self, x: torch.Tensor, clean: torch.Tensor, lung: torch.Tensor | None, q: dict[str, Any]
    ) -> torch.Tensor:
        """The ``"labels"`` part on a ``(C, H, W)`` image; ``lung`` is ``(H, W)`` or None."""
        smooth = clean.mean(0, keepdim=True)
        if self.labels_smooth_sigma > 0:
            smooth = _smooth(smooth, self.labels_smooth_sigma)
        labels = quantile_labels(smooth[0], q["num_classes"], None if lung is None else lung.to(x.device))
        intensities = torch.as_tensor(q["intensities"], dtype=x.dtype, device=x.device)
        synthetic = intensities[labels][None]
        if q["blur_sigma"] > 0:
            synthetic = _smooth(synthetic, q["blur_sigma"])
        return (1.0 - q["weight"]) * x + q["weight"] * synthetic

    @staticmethod
    def _check_mask(mask: torch.Tensor | np.ndarray | None, shape: tuple[int, ...]) -> torch.Tensor | None:
        """``(H, W)`` float lung indicator from a ``(1, H, W)`` or ``(C, H, W)`` mask, or None."""
        if mask is None:
            return None
        if not isinstance(mask, (torch.Tensor, np.ndarray)):
            raise TypeError(
                f"`mask` must be a torch.Tensor or numpy array of shape (1, H, W), got {type(mask).__name__}."
            )
        m = torch.as_tensor(mask)
        m = m.as_tensor() if hasattr(m, "as_tensor") else m
        if m.ndim != 3 or tuple(m.shape[1:]) != shape[1:] or m.shape[0] not in (1, shape[0]):
            raise ValueError(
                f"`mask` must have shape (1, H, W) or (C, H, W) with (C, H, W) = {shape} of the image, "
                f"got shape {tuple(m.shape)}."
            )
        return (m.float() > 0.5).any(0).float()


def _range(value: Sequence[float], name: str, low: float, strict: bool = False) -> tuple[float, float]:
    rng = tuple(float(v) for v in value)
    bad = len(rng) != 2 or not all(math.isfinite(v) for v in rng) or rng[0] > rng[1]
    bad = bad or (rng[0] <= low if strict else rng[0] < low)
    if bad:
        bound = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"`{name}` must be a (min, max) pair with min <= max and values {bound}, got {value}.")
    return rng  # type: ignore[return-value]


def _smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """MONAI Gaussian smoothing of a ``(C, H, W)`` tensor, as a plain tensor of the dtype of ``x``."""
    out = torch.as_tensor(GaussianSmooth(sigma=sigma)(x))
    out = out.as_tensor() if isinstance(out, MetaTensor) else out
    return out.to(x.dtype)


def _int_range(value: Sequence[int], name: str, low: int) -> tuple[int, int]:
    rng = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    ok = len(rng) == 2 and all(not isinstance(v, bool) and int(v) == v for v in rng)
    ok = ok and int(rng[0]) >= low and int(rng[0]) <= int(rng[1])
    if not ok:
        raise ValueError(f"`{name}` must be a (min, max) pair of integers with {low} <= min <= max, got {value}.")
    return int(rng[0]), int(rng[1])


def _prob(value: float, name: str) -> float:
    try:
        prob = float(value)
    except (TypeError, ValueError):
        prob = math.nan
    if isinstance(value, bool) or not 0.0 <= prob <= 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1], got {value!r}.")
    return prob


def _parts(parts: Sequence[str] | str) -> tuple[str, ...]:
    """Validated part names, in the order of :data:`SYNTH_APPEARANCE_PARTS`."""
    if isinstance(parts, str):
        parts = [parts]
    try:
        parts = list(parts)
    except TypeError:
        raise ValueError(
            f"`parts` must be a sequence of names among {SYNTH_APPEARANCE_PARTS}, got {parts!r}."
        ) from None
    names = set()
    for part in parts:
        name = part.value if isinstance(part, SynthAppearancePart) else part
        if not isinstance(name, str) or name not in SYNTH_APPEARANCE_PARTS:
            raise ValueError(f"`parts` must name parts among {SYNTH_APPEARANCE_PARTS}, got {part!r} in {parts}.")
        names.add(name)
    return tuple(n for n in SYNTH_APPEARANCE_PARTS if n in names)
