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
"""Displacement-field helpers of the JRS generator, built on :mod:`monai_jrs.utils.conventions`.

Convention:
    DDFs are ``(B, 2, H, W)`` in pixels, channel 0 along H (rows), channel 1 along W (columns), and
    ``registered(p) = floating(p + ddf(p))``. Affine matrices are ``(B, 3, 3)`` in the centred ``(row, col)``
    convention of :mod:`monai_jrs.utils.conventions`.
"""

from __future__ import annotations

import logging

import torch

from monai_jrs.utils.conventions import _shape_str, affine_to_ddf, check_ddf, compose_ddf

__all__ = ["compose_affine_and_local", "integrate_velocity", "bound_displacement", "rescale_affine"]

logger = logging.getLogger(__name__)


def compose_affine_and_local(
    matrix: torch.Tensor, local_ddf: torch.Tensor, affine_ddf: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact composition of an affine transform (applied first to the floating image) and a local field.

    With ``A(q) = L (q - c) + t + c`` (``L = matrix[:, :2, :2]``) the affine resampling is
    ``f_aff(q) = floating(A(q)) = floating(q + affine_ddf(q))``, and the local field warps that image:
    ``registered(p) = f_aff(p + local(p))``. Hence::

        registered(p) = floating(A(p + local(p)))
                      = floating(L (p - c) + t + c + L local(p))      # A is affine
                      = floating(p + affine_ddf(p) + L local(p)),

    so ``ddf(p) = affine_ddf(p) + L @ local(p)`` holds exactly, with no interpolation of either field. It equals
    ``compose_ddf(affine_ddf, local_ddf)`` wherever ``p + local(p)`` stays inside the grid (bilinear
    interpolation of an affine function is exact; ``compose_ddf`` clamps at the border).

    Args:
        matrix: ``(B, 3, 3)`` or ``(B, 2, 3)`` affine on the grid of ``local_ddf``.
        local_ddf: ``(B, 2, H, W)`` field in pixels, applied after the affine.
        affine_ddf: optional precomputed ``affine_to_ddf(matrix, (H, W))``.

    Returns:
        ``(B, 2, H, W)`` total field.

    Raises:
        ValueError: when shapes disagree.
    """
    check_ddf(local_ddf, name="local_ddf")
    if (
        matrix.ndim != 3
        or matrix.shape[1] not in (2, 3)
        or matrix.shape[2] != 3
        or matrix.shape[0] != local_ddf.shape[0]
    ):
        raise ValueError(
            f"`matrix` must have shape (B, 3, 3) or (B, 2, 3) with B = {local_ddf.shape[0]}, "
            f"got {_shape_str(matrix.shape)}."
        )
    if affine_ddf is None:
        affine_ddf = affine_to_ddf(matrix, local_ddf.shape[2:])
    else:
        check_ddf(affine_ddf, local_ddf, name="affine_ddf")
    lin = matrix[:, :2, :2].to(local_ddf.dtype)
    return affine_ddf + torch.einsum("bij,bjhw->bihw", lin, local_ddf)


def integrate_velocity(velocity: torch.Tensor, num_steps: int = 7) -> torch.Tensor:
    """Integrate a stationary velocity field by scaling and squaring (diffeomorphic for smooth fields).

    ``ddf = exp(velocity)``: ``d = velocity / 2**num_steps``, then ``num_steps`` times ``d <- d + d(p + d(p))``
    (:func:`monai_jrs.utils.conventions.compose_ddf` with border padding). Compared with MONAI's ``DVF2DDF`` this
    uses border instead of zero padding and no cached grid.

    Args:
        velocity: ``(B, 2, H, W)`` velocity in pixels.
        num_steps: number of squaring steps; ``0`` returns ``velocity`` unchanged.

    Returns:
        ``(B, 2, H, W)`` displacement field.

    Raises:
        ValueError: when ``num_steps`` < 0.
    """
    check_ddf(velocity, name="velocity")
    if int(num_steps) < 0:
        raise ValueError(f"`num_steps` must be >= 0, got {num_steps}.")
    ddf = velocity / float(2 ** int(num_steps))
    for _ in range(int(num_steps)):
        ddf = compose_ddf(ddf, ddf, padding_mode="border")
    return ddf


def bound_displacement(ddf: torch.Tensor, max_displacement: float | list[float]) -> torch.Tensor:
    """Smoothly bound each DDF component: ``m * tanh(ddf / m)`` (identity near zero, ``|out| < m``).

    Args:
        ddf: ``(B, 2, H, W)`` field.
        max_displacement: bound in pixels, one value or one per channel ``(rows, cols)`` (a list or a tuple).

    Returns:
        ``(B, 2, H, W)`` bounded field.

    Raises:
        ValueError: when a bound is not positive.
    """
    check_ddf(ddf)
    if isinstance(max_displacement, list):  # refines the union for TorchScript; the same tensor as as_tensor's
        bound = torch.tensor(max_displacement, dtype=ddf.dtype, device=ddf.device).reshape(-1)
    else:
        bound = torch.as_tensor(max_displacement, dtype=ddf.dtype, device=ddf.device).reshape(-1)
    if bound.numel() not in (1, 2) or not bool(torch.all(bound > 0)):
        got = str(bound) if torch.jit.is_scripting() else str(bound.tolist())  # TorchScript: untyped tolist()
        raise ValueError(f"`max_displacement` must be one or two positive numbers, got {got}.")
    bound = bound.expand(2).view(1, 2, 1, 1)
    return bound * torch.tanh(ddf / bound)


def rescale_affine(
    matrix: torch.Tensor, src_shape: list[int], dst_shape: list[int], align_corners: bool = False
) -> torch.Tensor:
    """Express a centred affine defined on one grid on another grid covering the same field of view.

    Centred coordinates scale per axis by ``s = N / n`` for area (pixel-footprint, ``align_corners=False``)
    resampling, as produced by ``F.interpolate(mode="area")`` / adaptive average pooling, or by
    ``s = (N - 1) / (n - 1)`` for the ``align_corners=True`` geometry of
    :func:`monai_jrs.utils.conventions.resize_ddf`. With ``S = diag(s)``: ``L_dst = S L_src S^-1`` and
    ``t_dst = S t_src``.

    Args:
        matrix: ``(B, 3, 3)`` affine on the ``src_shape`` grid.
        src_shape: ``(h, w)`` of the grid ``matrix`` is defined on.
        dst_shape: ``(H, W)`` of the target grid.
        align_corners: geometry of the resampling that relates the grids (see above).

    Returns:
        ``(B, 3, 3)`` affine on the ``dst_shape`` grid.
    """
    if matrix.ndim != 3 or matrix.shape[1] != 3 or matrix.shape[2] != 3:
        raise ValueError(f"`matrix` must have shape (B, 3, 3), got {_shape_str(matrix.shape)}.")
    if len(src_shape) != 2 or len(dst_shape) != 2:
        raise ValueError(
            f"`src_shape` and `dst_shape` must be (H, W), got {_shape_str(src_shape)}, {_shape_str(dst_shape)}."
        )
    if align_corners:
        scale = [(int(d) - 1) / max(int(s) - 1, 1) for s, d in zip(src_shape, dst_shape)]
    else:
        scale = [int(d) / int(s) for s, d in zip(src_shape, dst_shape)]
    s = torch.tensor(scale + [1.0], dtype=matrix.dtype, device=matrix.device)
    return matrix * s.view(1, 3, 1) / s.view(1, 1, 3)
