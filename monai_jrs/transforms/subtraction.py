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
"""Temporal subtraction of chest radiographs: the registered follow-up minus the reference, for interval change.

The follow-up registered onto the reference grid (``registered.nii.gz`` of ``monai-jrs register``) has another
exposure than the reference, so its intensities are first mapped onto the reference's (:func:`match_intensity`),
estimated only where both images hold data: inside ``valid``, the reference pixels whose sample ``p + ddf(p)`` lies
inside the floating image (:func:`field_of_view_mask`; the registered image is zero-padded elsewhere), and inside the
lung ``mask`` when one is given.

Sign convention (:data:`SIGN_CONVENTION`), for images where air is dark (MONOCHROME2 after windowing, as every
monai_jrs loader returns them)::

    subtraction = matched follow-up - reference

so a **positive** difference (**bright** in :func:`subtraction_to_display`) is where the follow-up is *denser*
(attenuates more: a new nodule, consolidation or effusion) and a **negative** difference (**dark**) is where it is
less dense (a resolved opacity, a pneumothorax). The difference is exactly 0 outside ``valid`` (mid grey on display).

Functions take ``(1, H, W)`` or ``(H, W)`` images (numpy arrays or tensors; a MetaTensor keeps its meta) and return
the type and shape of the reference. :class:`TemporalSubtraction` / :class:`TemporalSubtractiond` are their MONAI
transforms.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils.type_conversion import convert_to_dst_type

from monai_jrs.utils.conventions import check_ddf

logger = logging.getLogger(__name__)

__all__ = [
    "MATCH_METHODS",
    "SIGN_CONVENTION",
    "field_of_view_mask",
    "match_intensity",
    "temporal_subtraction",
    "display_window",
    "subtraction_to_display",
    "subtraction_of",
    "TemporalSubtraction",
    "TemporalSubtractiond",
    "TemporalSubtractionD",
    "TemporalSubtractionDict",
]

#: intensity matching methods of :func:`match_intensity`.
MATCH_METHODS = ("histogram", "linear")

#: the sign of :func:`temporal_subtraction` (also written into ``metrics.json`` by ``monai-jrs register``).
SIGN_CONVENTION = "follow-up minus reference: positive (bright) = follow-up denser, negative (dark) = less dense"


def field_of_view_mask(ddf: torch.Tensor, floating_shape: Sequence[int], margin: float = 0.0) -> torch.Tensor:
    """Reference pixels whose registered value comes from inside the floating image (not from the zero padding).

    ``registered(p) = floating(p + ddf(p))`` (:mod:`monai_jrs.utils.conventions`, in the floating image's own pixel
    frame as ``ddf.nii.gz``); bilinear sampling with ``align_corners=True`` reads only floating pixels when
    ``p + ddf(p)`` lies in ``[0, Hf - 1] x [0, Wf - 1]``.

    Args:
        ddf: ``(2, H, W)`` or ``(B, 2, H, W)`` field on the reference grid, pixels, channel 0 along rows.
        floating_shape: ``(Hf, Wf)`` of the floating image.
        margin: required distance in pixels from the floating image's border.

    Returns:
        bool ``(1, H, W)`` (or ``(B, 1, H, W)``), on the device of ``ddf``.

    Raises:
        ValueError: for a field that is not ``(B, 2, H, W)`` / ``(2, H, W)`` or a bad ``floating_shape``.

    Example::

        >>> ddf = torch.zeros(2, 3, 4); ddf[1] = 1.0  # every pixel samples one column to the right
        >>> field_of_view_mask(ddf, (3, 4))[0, 0].tolist()
        [True, True, True, False]
    """
    field = torch.as_tensor(ddf)
    field = field.as_tensor() if hasattr(field, "as_tensor") else field  # a MetaTensor: its plain data
    field = field if field.is_floating_point() else field.float()
    batched = field.ndim == 4
    field = field if batched else field.unsqueeze(0)
    check_ddf(field, name="ddf")
    if len(floating_shape) != 2 or any(int(s) != s or s < 1 for s in floating_shape):
        raise ValueError(f"`floating_shape` must be (Hf, Wf), positive integers, got {tuple(floating_shape)}.")
    hf, wf = int(floating_shape[0]), int(floating_shape[1])
    h, w = field.shape[2:]
    if field.device.type == "cpu":  # numpy: ~50x faster than the same torch ops on a 2-core CPU at 512 px
        d = field.detach().numpy()
        rows = d[:, 0] + np.arange(h, dtype=d.dtype)[:, None]
        cols = d[:, 1] + np.arange(w, dtype=d.dtype)[None, :]
        ok = (rows >= margin) & (rows <= hf - 1 - margin) & (cols >= margin) & (cols <= wf - 1 - margin)
        inside = torch.from_numpy(ok).unsqueeze(1)
    else:
        rows = field[:, 0] + torch.arange(h, device=field.device, dtype=field.dtype)[:, None]
        cols = field[:, 1] + torch.arange(w, device=field.device, dtype=field.dtype)[None, :]
        inside = (
            (rows >= margin) & (rows <= hf - 1 - margin) & (cols >= margin) & (cols <= wf - 1 - margin)
        ).unsqueeze(1)
    return inside if batched else inside[0]


def match_intensity(
    moving: NdarrayOrTensor,
    target: NdarrayOrTensor,
    mask: NdarrayOrTensor | None = None,
    valid: NdarrayOrTensor | None = None,
    method: str = "histogram",
    num_quantiles: int = 64,
    quantile_range: tuple[float, float] = (1.0, 99.0),
    return_info: bool = False,
) -> NdarrayOrTensor | tuple[NdarrayOrTensor, dict[str, Any]]:
    """Map the intensities of ``moving`` (the registered follow-up) onto those of ``target`` (the reference).

    The mapping is estimated from the pixels of ``region = mask & valid`` only (an empty region falls back to the
    whole ``valid`` field, with a warning), from ``num_quantiles`` quantiles of both images at levels evenly spaced
    in ``quantile_range`` percent (the extreme tails are left out: a new opacity in the follow-up hardly moves them):

    - ``"histogram"``: quantile (histogram) matching: piecewise linear through the pairs of quantiles, and beyond the
      outermost quantiles the straight line with the slope of the least-squares fit of the pairs (no clipping).
    - ``"linear"``: ``a * moving + b``, the least-squares line through the pairs of quantiles (a robust fit of the
      Q-Q plot: not biased by misregistration, unlike a pixel-wise regression).

    Both are exact for ``moving = a * target + b`` with ``a > 0`` and both are increasing: a contrast inversion must
    be undone before (monai_jrs loaders already invert MONOCHROME1). A real change covering a fraction ``f`` of the
    region moves the quantiles by up to ``f`` in rank, so part of it is absorbed: on the tests' phantom a blob over
    0.2 % of the lungs keeps 98 % of its peak, one over 2 % about 55 % (``"histogram"``) or 80 % (``"linear"``, which
    bends less). Match in a region much larger than the expected change (the lungs, not a lesion's neighbourhood).

    Args:
        moving: ``(1, H, W)`` or ``(H, W)`` float image mapped (zero-padded outside ``valid``).
        target: ``(1, H, W)`` or ``(H, W)`` float image whose intensities are matched.
        mask: ``(1, H, W)`` or ``(H, W)`` region of interest (e.g. the reference lungs), {0, 1} or bool; None: all.
        valid: ``(1, H, W)`` or ``(H, W)`` pixels where ``moving`` holds data (:func:`field_of_view_mask`); None: all.
        method: one of :data:`MATCH_METHODS`.
        num_quantiles: number of quantile levels, ``>= 2``.
        quantile_range: ``(low, high)`` percent, ``0 <= low < high <= 100``.
        return_info: also return what was matched.

    Returns:
        the mapped ``moving``, float, with the type and shape of ``moving`` and 0 outside ``valid``; with
        ``return_info`` also a dict: ``method``, ``region`` (``"mask"`` or ``"valid"``, the pixels used),
        ``region_pixels``, ``valid_percent`` (of the image), ``num_quantiles``, ``quantile_range``, ``slope`` and
        ``intercept`` (of the least-squares line; for ``"histogram"`` the slope used beyond the outer quantiles).

    Raises:
        ValueError: for images that are not ``(1, H, W)``/``(H, W)``, shapes that differ, NaN or infinite values, an
            unknown method, bad quantile settings, or an empty ``valid`` field.

    Example::

        >>> target = torch.linspace(0, 1, 20).reshape(1, 4, 5)
        >>> moving = 0.5 * target + 0.2  # another exposure
        >>> bool(torch.allclose(match_intensity(moving, target), target, atol=1e-6))
        True
    """
    _check_settings(method, num_quantiles, quantile_range)
    m = _image(moving, "moving")
    t = _image(target, "target")
    _same_shape(t, m, "target", "moving")
    valid_np = _bool_like(valid, m.shape, "valid")
    region, used = _region(_bool_like(mask, m.shape, "mask"), valid_np)
    if not region.any():
        raise ValueError("`valid` holds no pixel: there is no field of view to match the intensities in.")
    matched, info = _match(m, t, region, method, num_quantiles, quantile_range)
    matched = np.where(valid_np, matched, 0.0)
    info.update(region=used, region_pixels=int(region.sum()), valid_percent=_percent(valid_np))
    out = _like(matched, moving)
    return (out, info) if return_info else out


def temporal_subtraction(
    reference: NdarrayOrTensor,
    registered: NdarrayOrTensor,
    mask: NdarrayOrTensor | None = None,
    valid: NdarrayOrTensor | None = None,
    method: str = "histogram",
    smooth_sigma: float = 0.0,
    num_quantiles: int = 64,
    quantile_range: tuple[float, float] = (1.0, 99.0),
    return_info: bool = False,
) -> NdarrayOrTensor | tuple[NdarrayOrTensor, dict[str, Any]]:
    """The temporal subtraction image ``match_intensity(registered, reference) - reference``, 0 outside ``valid``.

    Sign (:data:`SIGN_CONVENTION`): positive where the follow-up is denser (brighter, air being dark), negative where
    it is less dense.

    Args:
        reference: ``(1, H, W)`` or ``(H, W)`` float reference radiograph.
        registered: the follow-up registered onto the reference grid, same shape (zero-padded outside ``valid``).
        mask: region where the intensities are matched (e.g. the reference lung mask), same spatial shape; None: the
            whole ``valid`` field. An empty mask falls back to the whole ``valid`` field (logged as a warning).
        valid: pixels where ``registered`` holds data (:func:`field_of_view_mask`); None: every pixel.
        method: intensity matching, one of :data:`MATCH_METHODS` (see :func:`match_intensity`).
        smooth_sigma: standard deviation in pixels of a Gaussian smoothing of the difference, normalised inside
            ``valid`` (the zero padding does not leak in); 0: none.
        num_quantiles: see :func:`match_intensity`.
        quantile_range: see :func:`match_intensity`.
        return_info: also return the :func:`match_intensity` info (plus ``smooth_sigma`` and ``sign``).

    Returns:
        the float difference with the type and shape of ``reference`` (a MetaTensor keeps its meta); with
        ``return_info`` also the info dict. An empty ``valid`` field gives an all-zero difference (warning logged,
        ``info["region"] = "none"``).

    Raises:
        ValueError: for images that are not ``(1, H, W)``/``(H, W)``, shapes that differ, NaN or infinite values, an
            unknown method or bad settings.

    Example::

        >>> reference = torch.linspace(0, 1, 1024).reshape(1, 32, 32)
        >>> follow_up = 2.0 * reference + 0.1  # another exposure, no change
        >>> follow_up[0, 16, 16] += 0.5  # a new opacity (0.25 in reference units)
        >>> diff = temporal_subtraction(reference, follow_up)
        >>> round(float(diff[0, 16, 16]), 2), bool(abs(diff[0, 1, 1]) < 1e-3)
        (0.25, True)
    """
    _check_settings(method, num_quantiles, quantile_range)
    if not (isinstance(smooth_sigma, (int, float)) and math.isfinite(smooth_sigma) and smooth_sigma >= 0):
        raise ValueError(f"`smooth_sigma` must be a finite number of pixels >= 0, got {smooth_sigma!r}.")
    ref = _image(reference, "reference")
    reg = _image(registered, "registered")
    _same_shape(ref, reg, "reference", "registered")
    valid_np = _bool_like(valid, ref.shape, "valid")
    region, used = _region(_bool_like(mask, ref.shape, "mask"), valid_np)
    if not region.any():
        logger.warning("temporal subtraction: `valid` holds no pixel (no overlap of the fields of view); "
                       "the difference is 0 everywhere.")
        diff = np.zeros_like(ref)
        info: dict[str, Any] = {
            "method": method, "region": "none", "region_pixels": 0, "valid_percent": 0.0,
            "num_quantiles": int(num_quantiles), "quantile_range": [float(q) for q in quantile_range],
            "slope": None, "intercept": None,
        }  # fmt: skip
    else:
        matched, info = _match(reg, ref, region, method, num_quantiles, quantile_range)
        info.update(region=used, region_pixels=int(region.sum()), valid_percent=_percent(valid_np))
        diff = np.where(valid_np, matched - ref, 0.0)
        if smooth_sigma > 0:
            diff = _smooth_inside(diff, valid_np, float(smooth_sigma))
    info.update(smooth_sigma=float(smooth_sigma), sign=SIGN_CONVENTION)
    out = _like(diff, reference)
    return (out, info) if return_info else out


def display_window(
    diff: NdarrayOrTensor,
    mask: NdarrayOrTensor | None = None,
    valid: NdarrayOrTensor | None = None,
    percentile: float = 99.0,
) -> float:
    """The default display window of :func:`subtraction_to_display`: the ``percentile`` of ``|diff|`` in the region.

    The region is ``mask & valid`` (an empty region falls back to ``valid``; None: every pixel). When that percentile
    is 0 the maximum of ``|diff|`` in the region is used, and 1.0 when the difference is 0 everywhere.

    Args:
        diff: ``(1, H, W)`` or ``(H, W)`` difference (:func:`temporal_subtraction`).
        mask: region of interest (e.g. the reference lungs), same spatial shape, or None.
        valid: field of view, same spatial shape, or None.
        percentile: in ``(0, 100]``.

    Returns:
        a positive finite window, in the units of ``diff``.

    Raises:
        ValueError: for a bad shape, NaN or infinite values or a percentile out of range.

    Example::

        >>> display_window(torch.tensor([[0.0, -0.5], [0.25, 0.1]]), percentile=100.0)
        0.5
    """
    if not (isinstance(percentile, (int, float)) and 0 < percentile <= 100):
        raise ValueError(f"`percentile` must be in (0, 100], got {percentile!r}.")
    d = np.abs(_image(diff, "diff"))
    valid_np = _bool_like(valid, d.shape, "valid")
    region, _ = _region(_bool_like(mask, d.shape, "mask"), valid_np, warn=False)
    values = d[region] if region.any() else d.ravel()
    window = float(np.percentile(values, percentile))
    if not window > 0:
        window = float(values.max())
    return window if window > 0 else 1.0


def subtraction_to_display(
    diff: NdarrayOrTensor,
    window: float | None = None,
    mask: NdarrayOrTensor | None = None,
    valid: NdarrayOrTensor | None = None,
    percentile: float = 99.0,
    dtype: type | np.dtype = np.uint8,
) -> np.ndarray:
    """A display image of a temporal subtraction: 0 difference at mid grey, the follow-up's new density bright.

    ``value = mid + round(diff / window * (mid - 1))`` clipped to ``[1, 2 * mid - 1]``, with ``mid = 128`` for
    ``uint8`` (``32768`` for ``uint16``): ``diff = 0`` is mid grey (so is everything outside the field of view, where
    the difference is 0), ``diff >= +window`` is white (255), ``diff <= -window`` is 1 (the scale is symmetric; 0 is
    never used). Bright = the follow-up is denser than the reference (:data:`SIGN_CONVENTION`).

    Args:
        diff: ``(1, H, W)`` or ``(H, W)`` difference from :func:`temporal_subtraction`.
        window: the ``|diff|`` shown at full white / black, ``> 0``; None: :func:`display_window` of ``diff`` in
            ``mask & valid`` at ``percentile``.
        mask: region of the default window (e.g. the reference lungs), or None.
        valid: field of view, for the default window, or None.
        percentile: percentile of the default window.
        dtype: ``np.uint8`` or ``np.uint16``.

    Returns:
        ``(H, W)`` array of ``dtype``, ready for a PNG or a MONOCHROME2 Secondary Capture.

    Raises:
        ValueError: for a bad shape, NaN or infinite values, a window that is not positive and finite, or another
            dtype.

    Example::

        >>> subtraction_to_display(torch.tensor([[0.0, 0.1, -0.1, 0.05]]), window=0.1).tolist()
        [[128, 255, 1, 192]]
    """
    out_dtype = np.dtype(dtype)
    if out_dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ValueError(f"`dtype` must be numpy.uint8 or numpy.uint16, got {out_dtype}.")
    d = _image(diff, "diff")
    if window is None:
        window = display_window(d, mask, valid, percentile)
    elif not (isinstance(window, (int, float, np.floating)) and math.isfinite(window) and window > 0):
        raise ValueError(f"`window` must be a positive finite difference, got {window!r}.")
    mid = 2 ** (8 * out_dtype.itemsize - 1)
    scaled = np.rint(d * ((mid - 1) / float(window)))
    return (mid + np.clip(scaled, -(mid - 1), mid - 1)).astype(out_dtype)


def subtraction_of(
    result: Any,
    reference: torch.Tensor,
    reference_mask: torch.Tensor,
    floating_shape: Sequence[int],
    method: str = "histogram",
    percentile: float = 99.0,
) -> tuple[torch.Tensor, np.ndarray, dict[str, Any]]:
    """The temporal subtraction of one registered pair, as ``monai-jrs register`` writes it (``subtraction.nii.gz``,
    ``subtraction.png``, ``metrics.json["subtraction"]``) and ``monai-jrs pacs`` stores it.

    The field of view is :func:`field_of_view_mask` of ``result.ddf``; the intensities are matched inside the
    reference lungs (:func:`temporal_subtraction`, the whole field of view when the lungs are outside it); the
    display window is :func:`display_window` at ``percentile`` in the same region.

    Args:
        result: a full-resolution :class:`~monai_jrs.inferers.JRSResult` (``ddf`` ``(1, 2, H, W)``, ``registered``
            ``(1, 1, H, W)`` on the reference grid).
        reference: ``(1, H, W)`` reference image; ``reference_mask`` its ``(1, H, W)`` lung mask.
        floating_shape: ``(Hf, Wf)`` of the floating image.
        method: intensity matching, one of :data:`MATCH_METHODS`.
        percentile: percentile of ``|difference|`` shown at full white / black.

    Returns:
        ``(diff, display, info)``: the float ``(1, H, W)`` difference (tensor, CPU), its ``uint8`` ``(H, W)``
        :func:`subtraction_to_display` image, and a JSON-ready dict: ``sign``, ``method``, ``matched_in``,
        ``matched_pixels``, ``quantile_range_percent``, ``num_quantiles``, ``slope``, ``intercept``,
        ``smooth_sigma_px``, ``display_window``, ``display_window_percentile``, ``valid_percent``.
    """
    valid = field_of_view_mask(result.ddf[0].detach().cpu(), tuple(floating_shape)[-2:])
    ref = reference.detach().cpu().float()
    mask = reference_mask.detach().cpu()
    diff, info = temporal_subtraction(ref, result.registered[0].detach().cpu().float(), mask=mask, valid=valid,
                                      method=method, return_info=True)
    window = display_window(diff, mask=mask, valid=valid, percentile=percentile)
    display = subtraction_to_display(diff, window)
    matched_in = {"mask": "reference lung mask inside the field of view", "valid": "whole field of view",
                  "none": "nothing (no field of view)"}[info["region"]]
    summary = {
        "sign": info["sign"],
        "method": info["method"],
        "matched_in": matched_in,
        "matched_pixels": info["region_pixels"],
        "quantile_range_percent": info["quantile_range"],
        "num_quantiles": info["num_quantiles"],
        "slope": None if info["slope"] is None else float(f"{info['slope']:.6g}"),
        "intercept": None if info["intercept"] is None else float(f"{info['intercept']:.6g}"),
        "smooth_sigma_px": info["smooth_sigma"],
        "display_window": float(f"{window:.6g}"),
        "display_window_percentile": float(percentile),
        "valid_percent": info["valid_percent"],
    }
    return diff, display, summary


class TemporalSubtraction(Transform):
    """Temporal subtraction of a registered follow-up and its reference (:func:`temporal_subtraction`).

    Sign: positive where the follow-up is denser (:data:`SIGN_CONVENTION`); 0 outside ``valid``.

    Args:
        method: intensity matching, one of :data:`MATCH_METHODS`.
        smooth_sigma: Gaussian smoothing of the difference in pixels (0: none).
        num_quantiles: quantile levels of the matching.
        quantile_range: ``(low, high)`` percent of the quantile levels.

    Example::

        >>> reference = torch.linspace(0, 1, 64).reshape(1, 8, 8)
        >>> diff = TemporalSubtraction(method="linear")(reference, 0.5 * reference + 0.3)
        >>> tuple(diff.shape), bool(diff.abs().max() < 1e-6)
        ((1, 8, 8), True)
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(
        self,
        method: str = "histogram",
        smooth_sigma: float = 0.0,
        num_quantiles: int = 64,
        quantile_range: tuple[float, float] = (1.0, 99.0),
    ) -> None:
        _check_settings(method, num_quantiles, quantile_range)
        if not (isinstance(smooth_sigma, (int, float)) and math.isfinite(smooth_sigma) and smooth_sigma >= 0):
            raise ValueError(f"`smooth_sigma` must be a finite number of pixels >= 0, got {smooth_sigma!r}.")
        self.method = method
        self.smooth_sigma = float(smooth_sigma)
        self.num_quantiles = int(num_quantiles)
        self.quantile_range = (float(quantile_range[0]), float(quantile_range[1]))

    def __call__(
        self,
        reference: NdarrayOrTensor,
        registered: NdarrayOrTensor,
        mask: NdarrayOrTensor | None = None,
        valid: NdarrayOrTensor | None = None,
    ) -> NdarrayOrTensor:
        """The ``(1, H, W)`` or ``(H, W)`` difference, the type and shape of ``reference`` (see
        :func:`temporal_subtraction` for the arguments)."""
        return temporal_subtraction(
            reference, registered, mask, valid, self.method, self.smooth_sigma, self.num_quantiles, self.quantile_range
        )


class TemporalSubtractiond(MapTransform):
    """Dictionary version of :class:`~monai_jrs.transforms.TemporalSubtraction`.

    Args:
        reference_key: key of the ``(1, H, W)`` reference.
        registered_key: key of the registered follow-up on the reference grid.
        mask_key: key of the mask the intensities are matched in (e.g. the reference lungs), or None.
        valid_key: key of the field-of-view mask (:func:`field_of_view_mask`), or None (every pixel valid).
        output_key: key the difference is written to.
        info_key: key the :func:`temporal_subtraction` info dict is written to, or None.
        method: intensity matching, one of :data:`MATCH_METHODS`.
        smooth_sigma: Gaussian smoothing of the difference in pixels (0: none).
        num_quantiles: quantile levels of the matching.
        quantile_range: ``(low, high)`` percent of the quantile levels.
        allow_missing_keys: return the data unchanged when the reference or registered key is missing, and treat a
            missing mask or valid key as None.

    Example::

        >>> reference = torch.linspace(0, 1, 64).reshape(1, 8, 8)
        >>> out = TemporalSubtractiond(method="linear")({"reference": reference, "registered": 3 * reference})
        >>> bool(out["subtraction"].abs().max() < 1e-6)
        True
    """

    backend = TemporalSubtraction.backend

    def __init__(
        self,
        reference_key: str = "reference",
        registered_key: str = "registered",
        mask_key: str | None = None,
        valid_key: str | None = None,
        output_key: str = "subtraction",
        info_key: str | None = None,
        method: str = "histogram",
        smooth_sigma: float = 0.0,
        num_quantiles: int = 64,
        quantile_range: tuple[float, float] = (1.0, 99.0),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__([reference_key, registered_key], allow_missing_keys)
        self.reference_key, self.registered_key = reference_key, registered_key
        self.mask_key, self.valid_key = mask_key, valid_key
        self.output_key, self.info_key = output_key, info_key
        self.subtraction = TemporalSubtraction(method, smooth_sigma, num_quantiles, quantile_range)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.reference_key not in d or self.registered_key not in d:
            if self.allow_missing_keys:
                return d
            missing = [k for k in (self.reference_key, self.registered_key) if k not in d]
            raise KeyError(f"keys {missing} are missing from the data (keys: {list(d)}).")
        mask, valid = self._optional(d, self.mask_key), self._optional(d, self.valid_key)
        s = self.subtraction
        diff, info = temporal_subtraction(
            d[self.reference_key], d[self.registered_key], mask, valid, s.method, s.smooth_sigma, s.num_quantiles,
            s.quantile_range, return_info=True,
        )
        d[self.output_key] = diff
        if self.info_key is not None:
            d[self.info_key] = info
        return d

    def _optional(self, d: dict[Hashable, Any], key: str | None) -> Any:
        if key is None:
            return None
        if key not in d and not self.allow_missing_keys:
            raise KeyError(f"key {key!r} is missing from the data (keys: {list(d)}).")
        return d.get(key)


TemporalSubtractionD = TemporalSubtractionDict = TemporalSubtractiond


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def _check_settings(method: str, num_quantiles: int, quantile_range: tuple[float, float]) -> None:
    if method not in MATCH_METHODS:
        raise ValueError(f"`method` must be one of {MATCH_METHODS}, got {method!r}.")
    if isinstance(num_quantiles, bool) or int(num_quantiles) != num_quantiles or num_quantiles < 2:
        raise ValueError(f"`num_quantiles` must be an integer >= 2, got {num_quantiles!r}.")
    try:
        lo, hi = (float(q) for q in quantile_range)
    except (TypeError, ValueError):
        lo, hi = math.nan, math.nan
    if not 0 <= lo < hi <= 100:
        raise ValueError(
            f"`quantile_range` must be (low, high) percent with 0 <= low < high <= 100, got {quantile_range!r}."
        )


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _image(x: Any, name: str) -> np.ndarray:
    """``(H, W)`` float64 copy of a ``(1, H, W)`` or ``(H, W)`` image; ValueError for other shapes or non-finite
    values."""
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise ValueError(f"`{name}` must be a numpy array or torch.Tensor of shape (1, H, W) or (H, W), "
                         f"got {type(x).__name__}.")
    arr = _to_numpy(x)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[0] == 1)) or 0 in arr.shape:
        raise ValueError(f"`{name}` must have shape (1, H, W) or (H, W), got {tuple(arr.shape)}.")
    arr = arr.reshape(arr.shape[-2:]).astype(np.float64)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"`{name}` must hold finite values, got {bad} NaN or infinite pixel(s) of {arr.size}.")
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"`{name_b}` must have the spatial shape of `{name_a}` {a.shape}, got {b.shape}.")


def _bool_like(x: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``(H, W)`` bool of a ``(1, H, W)`` / ``(H, W)`` mask (nonzero = in); all True for None."""
    if x is None:
        return np.ones(shape, dtype=bool)
    arr = _to_numpy(x)
    given = tuple(arr.shape)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != shape:
        raise ValueError(f"`{name}` must have shape (1, H, W) or (H, W) with (H, W) = {shape}, got {given}.")
    if arr.dtype != bool and not np.isfinite(arr).all():
        raise ValueError(f"`{name}` must hold finite values (0/1 or bool), got NaN or infinity.")
    return arr.astype(bool)


def _region(mask: np.ndarray, valid: np.ndarray, warn: bool = True) -> tuple[np.ndarray, str]:
    """``mask & valid``, or ``valid`` alone when that is empty (with a warning)."""
    region = mask & valid
    if region.any():
        return region, "mask" if not mask.all() else "valid"
    if warn and valid.any():
        logger.warning("the mask holds no pixel of the valid field of view; matching over the whole valid field.")
    return valid, "valid"


def _percent(valid: np.ndarray) -> float:
    return round(100.0 * float(valid.mean()), 4)


def _match(
    moving: np.ndarray,
    target: np.ndarray,
    region: np.ndarray,
    method: str,
    num_quantiles: int,
    quantile_range: tuple[float, float],
) -> tuple[np.ndarray, dict[str, Any]]:
    """``moving`` mapped onto ``target``'s intensities (float64, whole image) and the fitted parameters."""
    levels = np.linspace(float(quantile_range[0]), float(quantile_range[1]), int(num_quantiles)) / 100.0
    qm = np.quantile(moving[region], levels)
    qt = np.quantile(target[region], levels)
    info: dict[str, Any] = {"method": method, "num_quantiles": int(num_quantiles),
                            "quantile_range": [float(q) for q in quantile_range]}
    spread = qm - qm.mean()
    denom = float(spread @ spread)
    if not denom > 0:  # `moving` constant in the region: only an offset can be estimated
        logger.warning("the registered image is constant in the matching region; matching its mean only.")
        slope, intercept = 1.0, float(qt.mean() - qm.mean())
        info.update(slope=slope, intercept=intercept)
        return moving + intercept, info
    slope = float(spread @ (qt - qt.mean())) / denom
    intercept = float(qt.mean() - slope * qm.mean())
    info.update(slope=slope, intercept=intercept)
    if method == "linear":
        return slope * moving + intercept, info
    # histogram: one point per distinct moving quantile (ties averaged), straight-line tails with the fitted slope
    xp, inverse = np.unique(qm, return_inverse=True)
    fp = np.bincount(inverse, weights=qt) / np.bincount(inverse)
    tail = max(slope, 0.0)
    out = np.interp(moving, xp, fp)
    low, high = moving < xp[0], moving > xp[-1]
    out[low] = fp[0] + tail * (moving[low] - xp[0])
    out[high] = fp[-1] + tail * (moving[high] - xp[-1])
    return out, info


def _smooth_inside(diff: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing normalised by the smoothed ``valid`` field (no leak of the zeros outside); 0 outside."""
    from scipy.ndimage import gaussian_filter

    w = valid.astype(np.float64)
    num = gaussian_filter(diff * w, sigma, mode="constant")
    den = gaussian_filter(w, sigma, mode="constant")
    return np.where(valid & (den > 1e-12), num / np.maximum(den, 1e-12), 0.0)


def _like(arr: np.ndarray, like: Any) -> NdarrayOrTensor:
    """``arr`` (H, W) with the type, device, shape of ``like`` and its float dtype (float32 for integer inputs)."""
    out = arr.reshape(tuple(like.shape))
    if isinstance(like, torch.Tensor):
        dtype = like.dtype if like.is_floating_point() else torch.float32
    else:
        dtype = like.dtype if np.issubdtype(np.asarray(like).dtype, np.floating) else np.float32
    return convert_to_dst_type(out, like, dtype=dtype)[0]
