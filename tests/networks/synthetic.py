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
"""Deterministic, asymmetric synthetic "chest" images for the network tests."""

from __future__ import annotations

import torch

from monai_jrs.utils.conventions import affine_to_ddf, identity_grid, warp

__all__ = ["synthetic_chest", "deform_affine"]


def synthetic_chest(size: int | tuple[int, int] = 96, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """An asymmetric chest-like image and its lung mask.

    Body ellipse, two lungs of different size and height (dark), a spine bar, an off-centre heart blob, a bright
    clavicle bar on one side only and an "L" marker in one corner: no rotational or mirror symmetry.

    Returns:
        ``(image, mask)``, both ``(1, 1, H, W)``; image in ``[0, 1]``, mask in ``{0, 1}``.
    """
    h, w = (size, size) if isinstance(size, int) else size
    grid = identity_grid((h, w), dtype=torch.float64)[0]
    r = grid[0] / (h - 1)  # 0..1 rows
    c = grid[1] / (w - 1)  # 0..1 cols

    def ellipse(cr, cc, ar, ac):
        return (((r - cr) / ar) ** 2 + ((c - cc) / ac) ** 2) <= 1.0

    body = ellipse(0.55, 0.5, 0.5, 0.42)
    lung_l = ellipse(0.5, 0.32, 0.27, 0.12)
    lung_r = ellipse(0.45, 0.68, 0.22, 0.11)
    heart = ellipse(0.68, 0.58, 0.12, 0.1)
    spine = (c - 0.5).abs() < 0.035
    clavicle = ((r - 0.2 - 0.15 * (c - 0.25)).abs() < 0.025) & (c > 0.1) & (c < 0.45)
    marker = ((c > 0.85) & (c < 0.88) & (r > 0.06) & (r < 0.2)) | ((r > 0.17) & (r < 0.2) & (c > 0.85) & (c < 0.94))
    img = 0.15 * torch.ones_like(r)
    img = torch.where(body, torch.full_like(r, 0.6), img)
    lungs = (lung_l | lung_r) & ~heart
    img = torch.where(lungs, torch.full_like(r, 0.25), img)
    img = torch.where(heart & body, torch.full_like(r, 0.75), img)
    img = torch.where(spine & body, torch.full_like(r, 0.85), img)
    img = torch.where(clavicle, torch.full_like(r, 0.95), img)
    img = torch.where(marker, torch.ones_like(r), img)
    # mild smoothing so the image survives area downsampling without aliasing
    k = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    k2 = (k[:, None] * k[None, :] / 16.0).view(1, 1, 3, 3)
    img = torch.nn.functional.conv2d(img[None, None], k2, padding=1)
    return img.to(dtype).clamp(0, 1), lungs.to(dtype)[None, None]


def deform_affine(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Floating image ``flt`` with ``flt(A p) = image(p)``, i.e. ``flt = image o A^-1`` (zero padding).

    Registering ``flt`` onto ``image`` therefore needs exactly ``A``: ``warp(flt, affine_to_ddf(A)) ~= image``.
    """
    inv = torch.linalg.inv(matrix.to(torch.float64)).to(image.dtype)
    return warp(image, affine_to_ddf(inv, image.shape[2:]), padding_mode="zeros")
