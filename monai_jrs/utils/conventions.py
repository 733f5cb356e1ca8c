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
"""The one place where monai_jrs fixes its spatial conventions.

Convention:
    - Images and masks are tensors of shape ``(B, C, H, W)``; H indexes rows, W indexes columns.
    - A dense displacement field (DDF) has shape ``(B, 2, H, W)``, is expressed in **pixels**, and is defined on
      the **reference** grid. Channel 0 is the displacement along H (rows), channel 1 along W (columns).
    - Warping follows :class:`monai.networks.blocks.Warp`: ``registered(p) = floating(p + ddf(p))``, sampled with
      ``grid_sample(..., align_corners=True)``, i.e. pixel ``0`` and pixel ``N - 1`` are the centres of the first
      and last pixels.
    - Affine matrices are ``(B, 3, 3)`` homogeneous matrices acting on ``(row, col, 1)`` coordinates **relative to
      the image centre** ``c = ((H - 1) / 2, (W - 1) / 2)``, and map a reference-grid point to the floating-image
      point it samples: ``src = A[:2, :2] @ (p - c) + A[:2, 2] + c``. This is the matrix MONAI's ``RandAffine``
      records in ``applied_operations`` for a ``(C, H, W)`` image.
    - A positive rotation angle ``theta`` in :func:`rotation_matrix` uses ``[[cos, -sin], [sin, cos]]`` on
      ``(row, col)``.

Never use kornia's x-y channel order anywhere in monai_jrs; convert at the boundary if needed.

The functions used inside the networks (:func:`check_image`, :func:`check_ddf`, :func:`identity_grid`,
:func:`warp`, :func:`affine_to_ddf`, :func:`compose_ddf`, :func:`resize_ddf` and the tensor-only core of
:func:`rotation_matrix`) are TorchScript-compatible, so that the networks can be exported with ``torch.jit.script``
(MONAI's ``ckpt_export``) and run at any input size. Their shape arguments are annotated ``list[int]``,
TorchScript's sequence type; tuples and ``torch.Size`` work too (also in TorchScript, which converts a tuple of ints
to a list).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "DDF_CHANNELS",
    "check_image",
    "check_ddf",
    "identity_grid",
    "warp",
    "rotation_matrix",
    "affine_to_ddf",
    "compose_ddf",
    "invert_ddf",
    "resize_ddf",
    "scale_ddf_to_physical",
    "jacobian_determinant",
]

#: Names of the DDF channels, in order.
DDF_CHANNELS: tuple[str, str] = ("rows (H)", "cols (W)")


def _shape_str(shape: list[int]) -> str:
    """``str(tuple(shape))`` for error messages, also under TorchScript (whose ``tuple()`` needs a static length).

    Example::

        >>> _shape_str(torch.zeros(2, 3).shape), _shape_str([5]), _shape_str([])
        ('(2, 3)', '(5,)', '()')
    """
    items = [str(s) for s in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _repr(value: str) -> str:
    """``repr(value)`` for error messages; TorchScript has no ``repr`` (nor ``!r``), there it quotes the string."""
    return f"'{value}'" if torch.jit.is_scripting() else repr(value)


def check_image(image: torch.Tensor, name: str = "image") -> None:
    """Raise a ``ValueError`` unless ``image`` is a floating-point ``(B, C, H, W)`` tensor.

    Args:
        image: tensor to check.
        name: argument name used in the error message.

    Raises:
        ValueError: when the tensor is not 4-D or not floating point.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (B, C, H, W), got {type(image).__name__}.")
    if image.ndim != 4:
        raise ValueError(f"`{name}` must have shape (B, C, H, W), got shape {_shape_str(image.shape)}.")
    if not torch.is_floating_point(image):
        if torch.jit.is_scripting():  # TorchScript formats a dtype as its enum value
            raise ValueError(f"`{name}` must be a floating-point tensor, got an integer or boolean dtype.")
        raise ValueError(f"`{name}` must be a floating-point tensor, got dtype {image.dtype}.")


def check_ddf(ddf: torch.Tensor, image: torch.Tensor | None = None, name: str = "ddf") -> None:
    """Raise a ``ValueError`` unless ``ddf`` is a ``(B, 2, H, W)`` field matching ``image`` ``(B, C, H, W)``.

    Args:
        ddf: displacement field to check.
        image: optional image the field must match in batch size and spatial size.
        name: argument name used in the error message.

    Raises:
        ValueError: when the shapes do not follow the convention.
    """
    check_image(ddf, name)
    if ddf.shape[1] != 2:
        raise ValueError(
            f"`{name}` must have shape (B, 2, H, W) (channel 0 along H, channel 1 along W), "
            f"got shape {_shape_str(ddf.shape)}."
        )
    if image is not None and (ddf.shape[0] != image.shape[0] or ddf.shape[2:] != image.shape[2:]):
        raise ValueError(
            f"`{name}` must have shape (B, 2, H, W) matching image (B, C, H, W) = {_shape_str(image.shape)}, "
            f"got {_shape_str(ddf.shape)}."
        )


def identity_grid(
    spatial_shape: list[int], device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Pixel coordinates of every grid point.

    Args:
        spatial_shape: ``(H, W)``.
        device: device of the result.
        dtype: dtype of the result.

    Returns:
        tensor of shape ``(1, 2, H, W)``; channel 0 holds the row index, channel 1 the column index.
    """
    if len(spatial_shape) != 2:
        raise ValueError(f"`spatial_shape` must be (H, W), got {_shape_str(spatial_shape)}.")
    rows = torch.arange(int(spatial_shape[0]), device=device, dtype=dtype)
    cols = torch.arange(int(spatial_shape[1]), device=device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=0)
    return grid.unsqueeze(0)


def warp(
    image: torch.Tensor, ddf: torch.Tensor, mode: str = "bilinear", padding_mode: str = "border"
) -> torch.Tensor:
    """Warp ``image`` with ``ddf``: ``out(p) = image(p + ddf(p))``.

    Numerically identical to :class:`monai.networks.blocks.Warp` (PyTorch backend), but without its per-instance
    grid cache (which ignores dtype and device changes) and its construction warning. Differentiable with respect
    to both ``image`` and ``ddf`` for ``mode="bilinear"``.

    Args:
        image: ``(B, C, H, W)`` image to sample from (the floating image).
        ddf: ``(B, 2, H, W)`` displacement in pixels on the output (reference) grid; channel 0 along H, 1 along W.
        mode: interpolation, one of {``"bilinear"``, ``"nearest"``, ``"bicubic"``}.
        padding_mode: out-of-bounds handling, one of {``"zeros"``, ``"border"``, ``"reflection"``}.

    Returns:
        ``(B, C, H, W)`` warped image on the grid of ``ddf``.

    Raises:
        ValueError: when shapes or options are invalid.

    Example::

        >>> img = torch.zeros(1, 1, 5, 5); img[0, 0, 2, 3] = 1.0
        >>> ddf = torch.zeros(1, 2, 5, 5); ddf[:, 1] = 1.0  # sample one column to the right
        >>> warp(img, ddf)[0, 0, 2, 2].item()
        1.0
    """
    check_image(image)
    check_ddf(ddf, image)
    # local, not module constants: TorchScript cannot read global tuples
    modes, padding_modes = ("bilinear", "nearest", "bicubic"), ("zeros", "border", "reflection")
    if mode not in modes:
        raise ValueError(f"`mode` must be one of {modes}, got {_repr(mode)}.")
    if padding_mode not in padding_modes:
        raise ValueError(f"`padding_mode` must be one of {padding_modes}, got {_repr(padding_mode)}.")
    h, w = image.shape[2], image.shape[3]
    grid = identity_grid((h, w), device=ddf.device, dtype=ddf.dtype) + ddf
    # normalise to [-1, 1] (align_corners=True) and reorder (row, col) -> (x=col, y=row) for grid_sample
    gy = grid[:, 0] * (2.0 / max(h - 1, 1)) - 1.0
    gx = grid[:, 1] * (2.0 / max(w - 1, 1)) - 1.0
    norm_grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(image.to(ddf.dtype), norm_grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def rotation_matrix(
    angle: torch.Tensor | float,
    translation: torch.Tensor | Sequence[float] = (0.0, 0.0),
    scale: torch.Tensor | float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Build ``(B, 3, 3)`` similarity matrices in the centred ``(row, col)`` convention of this module.

    ``A[:2, :2] = scale * [[cos a, -sin a], [sin a, cos a]]`` and ``A[:2, 2] = translation`` (pixels,
    ``(rows, cols)``). The matrix maps a reference point to the floating point it samples.

    Args:
        angle: rotation in radians, a scalar or a ``(B,)`` tensor.
        translation: ``(2,)`` or ``(B, 2)`` translation in pixels along (H, W).
        scale: isotropic scale, a scalar or ``(B,)`` tensor.
        dtype: dtype used when inputs are Python numbers.

    Returns:
        ``(B, 3, 3)`` tensor.
    """
    angle_t = torch.as_tensor(angle, dtype=dtype if not isinstance(angle, torch.Tensor) else None)
    ref = angle_t
    trans_t = torch.as_tensor(translation, dtype=ref.dtype, device=ref.device)
    scale_t = torch.as_tensor(scale, dtype=ref.dtype, device=ref.device)
    return _rotation_matrix(angle_t, trans_t, scale_t)


def _rotation_matrix(
    angle: torch.Tensor, translation: torch.Tensor | None = None, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`rotation_matrix` of tensors (TorchScript-compatible): it takes no Python numbers or sequences.

    Args:
        angle: ``()`` or ``(B,)`` rotation in radians.
        translation: ``(2,)`` or ``(B, 2)`` translation in pixels along (H, W); ``None``: zero.
        scale: ``()`` or ``(B,)`` isotropic scale; ``None``: one.

    Returns:
        ``(B, 3, 3)`` tensor of the dtype and device of ``angle``.
    """
    angle_t = angle.reshape(-1)
    ref = angle_t
    if translation is None:
        trans_t = torch.zeros(1, 2, dtype=ref.dtype, device=ref.device)
    else:
        trans_t = translation.to(dtype=ref.dtype, device=ref.device).reshape(-1, 2)
    if scale is None:
        scale_t = torch.ones(1, dtype=ref.dtype, device=ref.device)
    else:
        scale_t = scale.to(dtype=ref.dtype, device=ref.device).reshape(-1)
    batch = max(max(angle_t.shape[0], trans_t.shape[0]), scale_t.shape[0])
    angle_t, scale_t = angle_t.expand(batch), scale_t.expand(batch)
    trans_t = trans_t.expand(batch, 2)
    cos, sin = torch.cos(angle_t) * scale_t, torch.sin(angle_t) * scale_t
    zeros, ones = torch.zeros_like(cos), torch.ones_like(cos)
    rows = [
        torch.stack((cos, -sin, trans_t[:, 0]), dim=-1),
        torch.stack((sin, cos, trans_t[:, 1]), dim=-1),
        torch.stack((zeros, zeros, ones), dim=-1),
    ]
    return torch.stack(rows, dim=1)


def affine_to_ddf(matrix: torch.Tensor, spatial_shape: list[int]) -> torch.Tensor:
    """Dense displacement field of an affine transform.

    Args:
        matrix: ``(B, 3, 3)`` or ``(B, 2, 3)`` affine in the centred ``(row, col)`` convention (see module doc).
        spatial_shape: ``(H, W)`` of the reference grid.

    Returns:
        ``(B, 2, H, W)`` DDF such that ``warp(floating, ddf)`` equals the affine resampling of ``floating``.
    """
    if matrix.ndim != 3 or matrix.shape[1] not in (2, 3) or matrix.shape[2] != 3:
        raise ValueError(f"`matrix` must have shape (B, 3, 3) or (B, 2, 3), got {_shape_str(matrix.shape)}.")
    h, w = int(spatial_shape[0]), int(spatial_shape[1])
    grid = identity_grid((h, w), device=matrix.device, dtype=matrix.dtype)  # (1, 2, H, W)
    centre = torch.tensor([(h - 1) / 2.0, (w - 1) / 2.0], device=matrix.device, dtype=matrix.dtype).view(1, 2, 1, 1)
    rel = grid - centre
    lin, trans = matrix[:, :2, :2], matrix[:, :2, 2]
    src = torch.einsum("bij,bjhw->bihw", lin, rel.expand(matrix.shape[0], -1, -1, -1))
    src = src + trans.view(-1, 2, 1, 1) + centre
    return src - grid


def compose_ddf(outer: torch.Tensor, inner: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Compose two DDFs so that one warp equals two consecutive warps.

    ``warp(warp(img, outer), inner) == warp(img, compose_ddf(outer, inner))`` up to interpolation, where
    ``compose_ddf(outer, inner)(p) = inner(p) + outer(p + inner(p))``.

    Args:
        outer: ``(B, 2, H, W)`` field applied first to the image (defined on the intermediate grid).
        inner: ``(B, 2, H, W)`` field applied second (defined on the final, reference grid).
        padding_mode: how ``outer`` is extrapolated outside the grid.

    Returns:
        ``(B, 2, H, W)`` composed DDF on the grid of ``inner``.
    """
    check_ddf(outer)
    check_ddf(inner, outer)
    return inner + warp(outer, inner, mode="bilinear", padding_mode=padding_mode)


def invert_ddf(ddf: torch.Tensor, num_iters: int = 8, method: str = "newton") -> torch.Tensor:
    """Inverse of a DDF: the field ``inv`` on the floating grid with ``q + inv(q) = p`` wherever ``p + ddf(p) = q``.

    The inverse maps the floating grid back to the reference grid: ``warp(warp(ref, inv), ddf) ~= ref`` and
    ``warp(registered, inv) ~= floating`` wherever the fields are invertible.

    Two methods:

    - ``"newton"`` (default): every floating pixel ``q`` gets a first guess by splatting the reference grid through
      the field (bilinear scatter of ``p`` to ``p + ddf(p)``, holes filled from their neighbours), then ``num_iters``
      Newton steps on ``p + ddf(p) - q = 0`` with the field's finite-difference Jacobian. It is exact for affine
      fields of any rotation and converges for any invertible smooth field.
    - ``"fixed_point"``: ``inv(q) = -ddf(q + inv(q))`` iterated from ``-ddf``; it converges only while the field's
      Jacobian ``I + grad(ddf)`` stays close to the identity (``|grad(ddf)| < 1``: rotations under 60 degrees).

    Args:
        ddf: ``(B, 2, H, W)`` field on the reference grid.
        num_iters: number of Newton or fixed-point iterations. Newton converges quadratically: on the shipped model's
            fields 5 iterations leave a residual ``|p + ddf(p) - q|`` below 1e-4 px; the fixed-point iteration needs
            20 or more.
        method: ``"newton"`` or ``"fixed_point"``.

    Returns:
        ``(B, 2, H, W)`` field on the floating grid.

    Raises:
        ValueError: for a bad field, ``num_iters < 1`` or an unknown method.

    Example::

        >>> m = rotation_matrix(torch.tensor([2.5]))  # 143 degrees
        >>> inv = invert_ddf(affine_to_ddf(m, (16, 16)))
        >>> err = (inv - affine_to_ddf(torch.linalg.inv(m), (16, 16)))[..., 3:-3, 3:-3]  # preimages on the grid
        >>> bool(err.abs().max() < 1e-3)
        True
    """
    check_ddf(ddf)
    if num_iters < 1:
        raise ValueError(f"`num_iters` must be >= 1, got {num_iters}.")
    if method == "fixed_point":
        inv = -ddf
        for _ in range(num_iters):
            inv = -warp(ddf, inv, mode="bilinear", padding_mode="border")
        return inv
    if method != "newton":
        raise ValueError(f"`method` must be 'newton' or 'fixed_point', got {method!r}.")
    h, w = ddf.shape[2:]
    ident = identity_grid((h, w), device=ddf.device, dtype=ddf.dtype)
    jac = _ddf_gradient(ddf)
    p = _splat_preimage(ddf, ident)
    for _ in range(num_iters):
        disp = p - ident  # sample the fields at p (border extension outside the grid)
        residual = p + warp(ddf, disp, padding_mode="border") - ident
        g = warp(jac, disp, padding_mode="border")
        a, b, c, d = 1 + g[:, 0], g[:, 1], g[:, 2], 1 + g[:, 3]
        det = a * d - b * c
        ok = det.abs() > 1e-2
        safe = torch.where(ok, det, torch.ones_like(det))
        step_r = torch.where(ok, (d * residual[:, 0] - b * residual[:, 1]) / safe, residual[:, 0])
        step_c = torch.where(ok, (a * residual[:, 1] - c * residual[:, 0]) / safe, residual[:, 1])
        p = p - torch.stack((step_r, step_c), dim=1)
        # stay on the grid plus one pixel: outside it the border-extended field is not the field being inverted
        p = torch.stack((p[:, 0].clamp(-1.0, h), p[:, 1].clamp(-1.0, w)), dim=1)
    return p - ident


def _splat_preimage(ddf: torch.Tensor, ident: torch.Tensor) -> torch.Tensor:
    """First guess of the preimage ``p`` of every floating pixel: the reference grid splatted through ``ddf``."""
    bsz, _, h, w = ddf.shape
    target = ident + ddf  # where each reference pixel lands in the floating frame
    r0, c0 = target[:, 0].floor(), target[:, 1].floor()
    acc = ddf.new_zeros(bsz, 3, h * w)
    src = torch.cat([ident.expand(bsz, -1, -1, -1), torch.ones_like(ddf[:, :1])], dim=1).reshape(bsz, 3, -1)
    for dr in (0, 1):
        for dc in (0, 1):
            rr, cc = r0 + dr, c0 + dc
            wgt = (1 - (target[:, 0] - rr).abs()) * (1 - (target[:, 1] - cc).abs())
            inside = (rr >= 0) & (rr <= h - 1) & (cc >= 0) & (cc <= w - 1)
            wgt = torch.where(inside, wgt, torch.zeros_like(wgt)).reshape(bsz, 1, -1)
            idx = (rr.clamp(0, h - 1) * w + cc.clamp(0, w - 1)).long().reshape(bsz, 1, -1).expand(-1, 3, -1)
            acc.scatter_add_(2, idx, src * wgt)
    acc = acc.reshape(bsz, 3, h, w)
    weight = acc[:, 2:]
    valid = (weight > 1e-3).to(ddf.dtype)
    guess = acc[:, :2] / weight.clamp_min(1e-3)
    for _ in range(2):  # small holes (expansions, folds) from their valid neighbours
        num = F.avg_pool2d(guess * valid, 3, stride=1, padding=1, count_include_pad=False)
        den = F.avg_pool2d(valid, 3, stride=1, padding=1, count_include_pad=False)
        fill = (den > 0) & (valid == 0)
        guess = torch.where(fill, num / den.clamp_min(1e-6), guess)
        valid = torch.maximum(valid, fill.to(ddf.dtype))
    # the rest (floating pixels whose preimage leaves the reference grid): the least-squares affine map q -> p
    q = torch.cat([ident, torch.ones_like(ident[:, :1])], dim=1).reshape(1, 3, -1).expand(bsz, -1, -1)
    wv = valid.reshape(bsz, 1, -1)
    lhs = (q * wv) @ q.transpose(1, 2) + 1e-6 * torch.eye(3, dtype=ddf.dtype, device=ddf.device)
    rhs = (q * wv) @ guess.reshape(bsz, 2, -1).transpose(1, 2)
    fallback = (torch.linalg.solve(lhs, rhs).transpose(1, 2) @ q).reshape(bsz, 2, h, w)
    return torch.where(valid > 0, guess, fallback)


def resize_ddf(ddf: torch.Tensor, spatial_shape: list[int]) -> torch.Tensor:
    """Resample a DDF to another grid size covering the same field of view, rescaling its pixel values.

    With the ``align_corners=True`` convention, pixel ``i`` of an ``n``-pixel axis maps to ``i * (N - 1) / (n - 1)``
    on an ``N``-pixel axis, so displacements are multiplied by ``(N - 1) / (n - 1)`` per axis.

    Args:
        ddf: ``(B, 2, h, w)`` field.
        spatial_shape: target ``(H, W)``.

    Returns:
        ``(B, 2, H, W)`` field.
    """
    check_ddf(ddf)
    h, w = ddf.shape[2], ddf.shape[3]
    big_h, big_w = int(spatial_shape[0]), int(spatial_shape[1])
    if (h, w) == (big_h, big_w):
        return ddf
    out = F.interpolate(ddf, size=(big_h, big_w), mode="bilinear", align_corners=True)
    factors = torch.tensor(
        [(big_h - 1) / max(h - 1, 1), (big_w - 1) / max(w - 1, 1)], dtype=ddf.dtype, device=ddf.device
    ).view(1, 2, 1, 1)
    return out * factors


def scale_ddf_to_physical(ddf: torch.Tensor, spacing: Sequence[float] | torch.Tensor | None) -> torch.Tensor:
    """Convert a pixel DDF to millimetres.

    Args:
        ddf: ``(B, 2, H, W)`` field in pixels.
        spacing: ``(row_spacing, col_spacing)`` in mm per pixel, or ``(B, 2)``; ``None`` returns ``ddf`` unchanged.

    Returns:
        ``(B, 2, H, W)`` field in mm (or pixels when ``spacing`` is None).
    """
    check_ddf(ddf)
    if spacing is None:
        return ddf
    sp = torch.as_tensor(spacing, dtype=ddf.dtype, device=ddf.device).reshape(-1, 2)
    if not torch.all(torch.isfinite(sp)) or torch.any(sp <= 0):
        raise ValueError(f"`spacing` must be positive and finite (row, col) in mm, got {sp.tolist()}.")
    return ddf * sp.view(-1, 2, 1, 1)


def jacobian_determinant(ddf: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of the mapping ``p -> p + ddf(p)``, by central differences.

    Values ``<= 0`` mark folded pixels.

    Args:
        ddf: ``(B, 2, H, W)`` field in pixels, with ``H, W >= 2``.

    Returns:
        ``(B, 1, H, W)`` determinant (one-sided differences on the border).
    """
    check_ddf(ddf)
    if min(ddf.shape[2:]) < 2:
        raise ValueError(f"`ddf` needs at least 2 pixels along H and W, got {tuple(ddf.shape[2:])}.")
    g = _ddf_gradient(ddf)
    return ((1.0 + g[:, 0]) * (1.0 + g[:, 3]) - g[:, 1] * g[:, 2]).unsqueeze(1)


def _ddf_gradient(ddf: torch.Tensor) -> torch.Tensor:
    """``d ddf_i / d x_j`` by central differences (one-sided on the border, 0 along an axis of one pixel).

    Returns:
        ``(B, 4, H, W)`` in the order ``(d0/drow, d0/dcol, d1/drow, d1/dcol)``.
    """
    grads = [torch.gradient(ddf[:, i], dim=d)[0] if ddf.shape[d + 1] > 1 else torch.zeros_like(ddf[:, i])
             for i in range(2) for d in (1, 2)]
    return torch.stack(grads, dim=1)
