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

from monai_jrs.data.testing import make_chest_phantom
from monai_jrs.utils.conventions import affine_to_ddf, warp

__all__ = ["synthetic_chest", "deform_affine"]


def synthetic_chest(size: int | tuple[int, int] = 96, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """An asymmetric chest-like image and its lung mask (:func:`~monai_jrs.data.testing.make_chest_phantom`).

    Body ellipse, two lungs of different size and height (dark), a spine bar, an off-centre heart blob, a bright
    clavicle bar on one side only and an "L" marker in one corner: no rotational or mirror symmetry. Mildly smoothed
    so that the image survives area downsampling without aliasing.

    Returns:
        ``(image, mask)``, both ``(1, 1, H, W)``; image in ``[0, 1]``, mask in ``{0, 1}``.
    """
    image, mask = make_chest_phantom(
        (size, size) if isinstance(size, int) else size,
        body=(0.1, 0.0, 1.0, 0.84),
        lungs=((0.0, -0.36, 0.54, 0.24), (-0.1, 0.36, 0.44, 0.22)),
        contrast=(0.15, 0.45, 0.35),
        ripple=0.0,
        asymmetric=True,
        smooth=True,
        noise=0.0,
    )
    return torch.from_numpy(image).to(dtype)[None, None], torch.from_numpy(mask).to(dtype)[None, None]


def deform_affine(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Floating image ``flt`` with ``flt(A p) = image(p)``, i.e. ``flt = image o A^-1`` (zero padding).

    Registering ``flt`` onto ``image`` therefore needs exactly ``A``: ``warp(flt, affine_to_ddf(A)) ~= image``.
    """
    inv = torch.linalg.inv(matrix.to(torch.float64)).to(image.dtype)
    return warp(image, affine_to_ddf(inv, image.shape[2:]), padding_mode="zeros")
