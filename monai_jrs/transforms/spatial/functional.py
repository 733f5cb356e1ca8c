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
"""Resizing to the network grid and back, with the bookkeeping (:class:`GridInfo`) that maps results back.

Convention:
    Images and masks are ``(C, H, W)`` (or ``(B, C, H, W)``); DDFs are ``(2, H, W)`` / ``(B, 2, H, W)`` in pixels,
    channel 0 along H (rows), channel 1 along W (cols), as in :mod:`monai_jrs.utils.conventions`.

    Resampling uses the ``align_corners=True`` geometry of :func:`monai_jrs.utils.conventions.resize_ddf` and
    :class:`monai.networks.blocks.Warp`: the centres of the first and last pixels of an ``N``-pixel original axis
    and of the ``n``-pixel network axis coincide, so network pixel ``i`` sits at original pixel
    ``i * (N - 1) / (n - 1)``, displacements scale by ``(N - 1) / (n - 1)``, and the spacing of the network grid is
    ``spacing * (N - 1) / (n - 1)``. With this geometry a displacement in mm is the same on both grids.

Resizing choice: the default is a plain anisotropic resize to the network size (``keep_aspect=False``). It keeps the
whole field of view and every pixel of the network grid carries image content, at the price of a different scale
along rows and columns (recorded in :class:`GridInfo`, and harmless for registration since both images of a pair are
resized the same way). ``keep_aspect=True`` letterboxes instead: a uniform scale and zero padding, recorded too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from monai_jrs.utils.conventions import identity_grid

logger = logging.getLogger(__name__)

__all__ = ["GridInfo", "resize_to_network", "restore_to_original", "ddf_to_original", "full_resolution_ddf"]

_RESAMPLE_MODES = ("bilinear", "nearest", "bicubic")


@dataclass(frozen=True)
class GridInfo:
    """How an image on its original grid was put on the network grid.

    Attributes:
        original_shape: ``(H, W)`` of the original image.
        network_shape: ``(h, w)`` of the network grid.
        content_shape: ``(h_c, w_c)``, the part of the network grid holding image content (``network_shape``
            unless letterboxed).
        padding: ``(top, bottom, left, right)`` zero padding in network pixels (all 0 unless letterboxed).
        scale_factors: ``((H - 1) / (h_c - 1), (W - 1) / (w_c - 1))``: original pixels per network pixel, i.e. the
            factor that turns a network-grid displacement into an original-grid one.
        original_spacing: ``(row_mm, col_mm)`` of the original grid, or None when unknown.
        network_spacing: ``original_spacing * scale_factors`` in mm, or None.
        keep_aspect: whether the resize was letterboxed.
    """

    original_shape: tuple[int, int]
    network_shape: tuple[int, int]
    content_shape: tuple[int, int]
    padding: tuple[int, int, int, int]
    scale_factors: tuple[float, float]
    original_spacing: tuple[float, float] | None
    network_spacing: tuple[float, float] | None
    keep_aspect: bool

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that ``default_collate`` can batch (unknown spacing becomes ``(nan, nan)``)."""
        d = asdict(self)
        for k in ("original_spacing", "network_spacing"):
            if d[k] is None:
                d[k] = (math.nan, math.nan)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | GridInfo) -> GridInfo:
        """Rebuild from :meth:`to_dict` output (or return a :class:`GridInfo` unchanged).

        Raises:
            ValueError: when a field is missing.
        """
        if isinstance(d, GridInfo):
            return d
        missing = [f for f in cls.__dataclass_fields__ if f not in d]
        if missing:
            raise ValueError(f"grid info must have the fields {list(cls.__dataclass_fields__)}, missing {missing}.")

        def _tuple(v: Any, cast: type) -> tuple:
            v = v.tolist() if hasattr(v, "tolist") else v
            return tuple(cast(x.item() if hasattr(x, "item") else x) for x in v)

        def _spacing(v: Any) -> tuple[float, float] | None:
            if v is None:
                return None
            t = _tuple(v, float)
            return None if any(math.isnan(x) for x in t) else t  # type: ignore[return-value]

        return cls(
            original_shape=_tuple(d["original_shape"], int),  # type: ignore[arg-type]
            network_shape=_tuple(d["network_shape"], int),  # type: ignore[arg-type]
            content_shape=_tuple(d["content_shape"], int),  # type: ignore[arg-type]
            padding=_tuple(d["padding"], int),  # type: ignore[arg-type]
            scale_factors=_tuple(d["scale_factors"], float),  # type: ignore[arg-type]
            original_spacing=_spacing(d["original_spacing"]),
            network_spacing=_spacing(d["network_spacing"]),
            keep_aspect=bool(d["keep_aspect"]),
        )


def resize_to_network(
    image: torch.Tensor,
    size: int | Sequence[int],
    keep_aspect: bool = False,
    mode: str = "bilinear",
    spacing: Sequence[float] | None = None,
    pad_value: float = 0.0,
) -> tuple[torch.Tensor, GridInfo]:
    """Resample an image or mask from its original grid to the network grid.

    Args:
        image: ``(C, H, W)`` or ``(B, C, H, W)`` floating-point tensor, H, W >= 2. A MetaTensor's ``meta["spacing"]``
            is used when ``spacing`` is None.
        size: network size ``n`` (square) or ``(h, w)``, each >= 2.
        keep_aspect: False (default): anisotropic resize to ``(h, w)`` keeping the full field of view. True: uniform
            scale that fits inside ``(h, w)``, centred, padded with ``pad_value``.
        mode: {``"bilinear"``, ``"nearest"``, ``"bicubic"``}; use ``"nearest"`` for label masks (or ``"bilinear"``
            and a 0.5 threshold). Bilinear/bicubic downsampling is anti-aliased (torch's antialias filters, centred
            on the align-corners pixel positions).
        spacing: ``(row_mm, col_mm)`` of the original grid, or None.
        pad_value: value of letterbox padding.

    Returns:
        ``(resized, info)``: ``resized`` ``(C, h, w)`` / ``(B, C, h, w)`` (a plain tensor), and the :class:`GridInfo`.

    Raises:
        ValueError: for bad shapes, sizes, modes or spacing.
    """
    x, batched = _as_batch(image, "image")
    orig = (int(x.shape[-2]), int(x.shape[-1]))
    if min(orig) < 2:
        raise ValueError(f"`image` must be at least 2x2, got spatial shape {orig}.")
    net = _parse_size(size)
    if spacing is None and isinstance(image, MetaTensor):
        sp_meta = image.meta.get("spacing")
        if sp_meta is not None and not _is_nan_pair(sp_meta):
            spacing = tuple(float(s) for s in (sp_meta.tolist() if hasattr(sp_meta, "tolist") else sp_meta))
    sp = _parse_spacing(spacing)
    if keep_aspect:
        s = min((net[0] - 1) / (orig[0] - 1), (net[1] - 1) / (orig[1] - 1))
        content = (
            max(2, min(net[0], int(round((orig[0] - 1) * s)) + 1)),
            max(2, min(net[1], int(round((orig[1] - 1) * s)) + 1)),
        )
    else:
        content = net
    top = (net[0] - content[0]) // 2
    left = (net[1] - content[1]) // 2
    padding = (top, net[0] - content[0] - top, left, net[1] - content[1] - left)
    scale = ((orig[0] - 1) / (content[0] - 1), (orig[1] - 1) / (content[1] - 1))
    out = _resample(x.as_tensor() if isinstance(x, MetaTensor) else x, content, mode)
    if any(padding):
        out = F.pad(out, (padding[2], padding[3], padding[0], padding[1]), value=pad_value)
    info = GridInfo(
        original_shape=orig,
        network_shape=net,
        content_shape=content,
        padding=padding,
        scale_factors=scale,
        original_spacing=sp,
        network_spacing=None if sp is None else (sp[0] * scale[0], sp[1] * scale[1]),
        keep_aspect=bool(keep_aspect),
    )
    return (out if batched else out[0]), info


def restore_to_original(
    x_net: torch.Tensor, info: GridInfo | Mapping[str, Any], mode: str = "bilinear"
) -> torch.Tensor:
    """Map an image, probability map or mask from the network grid back to the original grid.

    Args:
        x_net: ``(C, h, w)`` or ``(B, C, h, w)`` tensor on the network grid.
        info: the :class:`GridInfo` (or its dict) returned by :func:`resize_to_network`.
        mode: {``"bilinear"``, ``"nearest"``, ``"bicubic"``}. For masks, restoring the soft probability with
            ``"bilinear"`` and thresholding at 0.5 gives smoother borders than ``"nearest"`` on a binary mask.

    Returns:
        ``(C, H, W)`` / ``(B, C, H, W)`` tensor on the original grid.

    Raises:
        ValueError: when ``x_net`` does not match the network shape.
    """
    gi = GridInfo.from_dict(info)
    x, batched = _as_batch(x_net, "x_net")
    x = _crop_content(x, gi, "x_net")
    out = _resample(x.as_tensor() if isinstance(x, MetaTensor) else x, gi.original_shape, mode)
    return out if batched else out[0]


def ddf_to_original(ddf_net: torch.Tensor, info: GridInfo | Mapping[str, Any]) -> torch.Tensor:
    """Map a DDF predicted on the network grid to the original grid (pixel units of the original image).

    :func:`full_resolution_ddf` with the same grid for the reference and the floating image (letterbox padding
    accounted for).

    Args:
        ddf_net: ``(2, h, w)`` or ``(B, 2, h, w)`` field in network pixels, channel 0 along H, channel 1 along W.
        info: the :class:`GridInfo` (or its dict) returned by :func:`resize_to_network`.

    Returns:
        ``(2, H, W)`` / ``(B, 2, H, W)`` field in original pixels, on the original (reference) grid.

    Raises:
        ValueError: when ``ddf_net`` is not a 2-channel field of the network shape.
    """
    x, batched = _as_batch(ddf_net, "ddf_net")
    if x.shape[1] != 2:
        raise ValueError(f"`ddf_net` must have shape (2, h, w) or (B, 2, h, w), got {tuple(ddf_net.shape)}.")
    x = x.as_tensor() if isinstance(x, MetaTensor) else x
    out = full_resolution_ddf(x, info, info)
    return out if batched else out[0]


def _offsets(info: GridInfo) -> tuple[float, float]:
    return float(info.padding[0]), float(info.padding[2])


def full_resolution_ddf(
    ddf_net: torch.Tensor, reference_info: GridInfo | Mapping[str, Any], floating_info: GridInfo | Mapping[str, Any]
) -> torch.Tensor:
    """Map a network-grid DDF to the reference's full-resolution grid, in floating full-resolution pixels.

    A reference pixel ``p`` sits at network point ``u = p / s_ref + o_ref`` (``s``: original pixels per network pixel,
    :attr:`GridInfo.scale_factors`; ``o``: the letterbox offset ``(top, left)``). The network field moves it to
    ``v = u + d(u)`` (``d`` sampled bilinearly at ``u``), which is floating pixel ``q = s_flt (v - o_flt)``. The
    full-resolution field is ``ddf(p) = q - p``. Exact for any sizes of the two images and with letterbox padding;
    without padding and with equal grids it equals :func:`~monai_jrs.utils.conventions.resize_ddf`.

    Args:
        ddf_net: ``(B, 2, h, w)`` network-grid field in network pixels (channel 0 along rows).
        reference_info: :class:`GridInfo` (or its dict) of the reference's resize.
        floating_info: :class:`GridInfo` (or its dict) of the floating image's resize.

    Returns:
        ``(B, 2, H, W)`` field on the reference grid ``(H, W) = reference_info.original_shape``.

    Raises:
        ValueError: ``ddf_net`` is not ``(B, 2, h, w)`` on the network grid of both infos.

    Example::

        >>> _, ref_info = resize_to_network(torch.zeros(1, 9, 17), 5)
        >>> _, flt_info = resize_to_network(torch.zeros(1, 17, 33), 5)
        >>> full_resolution_ddf(torch.zeros(1, 2, 5, 5), ref_info, flt_info)[0, :, 8, 16].tolist()  # p=(8, 16)->(16, 32)
        [8.0, 16.0]
    """
    ref, flt = GridInfo.from_dict(reference_info), GridInfo.from_dict(floating_info)
    if ref.network_shape != flt.network_shape:
        raise ValueError(f"reference and floating network grids must match, got {ref.network_shape} and "
                         f"{flt.network_shape}.")
    if ddf_net.ndim != 4 or ddf_net.shape[1] != 2 or tuple(ddf_net.shape[2:]) != tuple(ref.network_shape):
        raise ValueError(f"`ddf_net` must have shape (B, 2, h, w) with the network shape (h, w) = "
                         f"{tuple(ref.network_shape)}, got {tuple(ddf_net.shape)}.")
    b, dtype, device = ddf_net.shape[0], ddf_net.dtype, ddf_net.device
    s_ref = torch.tensor(ref.scale_factors, dtype=dtype, device=device).view(1, 2, 1, 1)
    s_flt = torch.tensor(flt.scale_factors, dtype=dtype, device=device).view(1, 2, 1, 1)
    o_ref = torch.tensor(_offsets(ref), dtype=dtype, device=device).view(1, 2, 1, 1)
    o_flt = torch.tensor(_offsets(flt), dtype=dtype, device=device).view(1, 2, 1, 1)
    p = identity_grid(list(ref.original_shape), dtype=dtype, device=device)
    u = (p / s_ref + o_ref).expand(b, -1, -1, -1)
    d = _sample_field(ddf_net, u)
    return s_flt * (u + d - o_flt) - p


def _sample_field(field_net: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``field_net`` ``(B, C, h, w)`` at network points ``(B, 2, H, W)`` (border padding)."""
    h, w = field_net.shape[2:]
    grid = torch.stack(
        (points[:, 1] * (2.0 / max(w - 1, 1)) - 1.0, points[:, 0] * (2.0 / max(h - 1, 1)) - 1.0), dim=-1
    )
    return F.grid_sample(field_net, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _as_batch(x: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (C, H, W) or (B, C, H, W), got {type(x).__name__}.")
    if x.ndim == 3:
        x = x.unsqueeze(0)
        batched = False
    elif x.ndim == 4:
        batched = True
    else:
        raise ValueError(f"`{name}` must have shape (C, H, W) or (B, C, H, W), got {tuple(x.shape)}.")
    if not torch.is_floating_point(x):
        raise ValueError(f"`{name}` must be floating point, got dtype {x.dtype}.")
    return x, batched


def _parse_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        t = (int(size), int(size))
    else:
        t = tuple(int(s) for s in size)  # type: ignore[union-attr]
    if len(t) != 2 or min(t) < 2:
        raise ValueError(f"`size` must be an int or (h, w) with values >= 2, got {size}.")
    return t  # type: ignore[return-value]


def _parse_spacing(spacing: Sequence[float] | None) -> tuple[float, float] | None:
    if spacing is None:
        return None
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 2 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"`spacing` must be (row_mm, col_mm), positive and finite, got {spacing}.")
    return sp  # type: ignore[return-value]


def _is_nan_pair(v: Any) -> bool:
    try:
        return any(math.isnan(float(s)) for s in (v.tolist() if hasattr(v, "tolist") else v))
    except (TypeError, ValueError):
        return False


def _crop_content(x: torch.Tensor, gi: GridInfo, name: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) != tuple(gi.network_shape):
        raise ValueError(
            f"`{name}` spatial shape must equal the network shape {gi.network_shape}, got {tuple(x.shape[-2:])}."
        )
    top, _, left, _ = gi.padding
    return x[..., top : top + gi.content_shape[0], left : left + gi.content_shape[1]]


def _resample(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """Resample ``(B, C, H, W)`` to ``size`` with the align-corners geometry (first/last pixel centres fixed)."""
    if mode not in _RESAMPLE_MODES:
        raise ValueError(f"`mode` must be one of {_RESAMPLE_MODES}, got {mode!r}.")
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x.clone()
    if mode == "nearest":
        # F.interpolate(nearest) uses a floor(i * in / out) mapping; sample the align-corners positions instead
        rows = torch.linspace(-1.0, 1.0, size[0], dtype=x.dtype, device=x.device)
        cols = torch.linspace(-1.0, 1.0, size[1], dtype=x.dtype, device=x.device)
        gr, gc = torch.meshgrid(rows, cols, indexing="ij")
        grid = torch.stack((gc, gr), dim=-1).unsqueeze(0).expand(x.shape[0], -1, -1, -1)
        return F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=True)
    # Downsampling is anti-aliased with the filter of torch's ``antialias=True`` (a tent for bilinear, Keys' cubic for
    # bicubic, stretched by the scale factor), centred on the align-corners positions. torch's own ``antialias=True``
    # ignores ``align_corners=True`` for the pixel centres and shifts the result by (s - 1) / 2 input pixels.
    for axis in (2, 3):
        if size[axis - 2] < x.shape[axis]:
            x = _antialiased_downsample(x, size[axis - 2], axis, mode)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=mode, align_corners=True)


def _antialiased_downsample(x: torch.Tensor, n: int, axis: int, mode: str) -> torch.Tensor:
    """Resample ``(B, C, H, W)`` along ``axis`` from ``N`` to ``n < N`` pixels: output ``i`` is centred on input
    ``i * (N - 1) / (n - 1)``; weights are truncated at the edges and renormalised, as in torch."""
    big_n = x.shape[axis]
    scale = (big_n - 1) / (n - 1)
    radius = math.ceil((2.0 if mode == "bicubic" else 1.0) * scale)
    centres = torch.arange(n, dtype=torch.float64) * scale
    idx = torch.floor(centres)[:, None] + torch.arange(-radius, radius + 1, dtype=torch.float64)
    t = ((idx - centres[:, None]) / scale).abs()
    if mode == "bicubic":  # Keys' cubic with a = -0.5, as torch's antialiased bicubic
        a = -0.5
        w = torch.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a)
        w = torch.where(t < 2, w, torch.zeros_like(w))
    else:
        w = (1.0 - t).clamp_min(0.0)
    w = torch.where((idx >= 0) & (idx <= big_n - 1), w, torch.zeros_like(w))
    w = w / w.sum(dim=1, keepdim=True)
    keep = w != 0
    rows = torch.arange(n)[:, None].expand_as(idx)
    dtype = x.dtype
    if dtype in (torch.float16, torch.bfloat16):  # sparse matmul needs float32/float64 on CPU
        x = x.float()
    weights = torch.sparse_coo_tensor(  # a banded (n, N) matrix: cheap even on large radiographs
        torch.stack((rows[keep], idx[keep].long())),
        w[keep].to(x.dtype),
        (n, big_n),
        device=x.device,
        check_invariants=False,
    ).coalesce()
    b, c, h, wd = x.shape
    if axis == 3:
        out = torch.sparse.mm(weights, x.reshape(-1, wd).T).T.reshape(b, c, h, n)
    else:
        out = torch.stack([torch.sparse.mm(weights, s) for s in x.reshape(-1, h, wd)]).reshape(b, c, n, wd)
    return out.to(dtype)
