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
"""Array transforms that put radiographs on the network grid (see :mod:`monai_jrs.transforms.spatial.functional`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Transform

from monai_jrs.transforms.spatial.functional import _RESAMPLE_MODES, _parse_size, resize_to_network

__all__ = ["ResizeToNetwork"]


class ResizeToNetwork(Transform):
    """Resize an image or mask to the network grid, storing the :class:`~monai_jrs.transforms.GridInfo` in its meta.

    The result is a ``(C, h, w)`` MetaTensor (metadata of an input MetaTensor kept) whose ``meta["grid_info"]`` holds
    :meth:`GridInfo.to_dict <monai_jrs.transforms.GridInfo.to_dict>`, ``meta["spatial_shape"]`` the network shape
    and, when the spacing is known, ``affine`` ``diag(row_mm, col_mm, 1)`` of the network grid; use it with
    :func:`~monai_jrs.transforms.restore_to_original` / :func:`~monai_jrs.transforms.ddf_to_original` (also after
    ``decollate_batch``). The original spacing is read from an input MetaTensor's ``meta["spacing"]``.

    Args:
        size: network size ``n`` or ``(h, w)``.
        keep_aspect: letterbox instead of the default anisotropic resize.
        mode: {``"bilinear"``, ``"nearest"``, ``"bicubic"``} (``"nearest"`` for label masks).

    Example::

        >>> out = ResizeToNetwork(5)(torch.zeros(1, 9, 17))
        >>> tuple(out.shape), out.meta["grid_info"]["scale_factors"]
        ((1, 5, 5), (2.0, 4.0))
    """

    def __init__(self, size: int | Sequence[int], keep_aspect: bool = False, mode: str = "bilinear") -> None:
        self.size = _parse_size(size)
        self.keep_aspect = keep_aspect
        self.mode = _check_mode(mode)

    def __call__(self, img: torch.Tensor | np.ndarray, mode: str | None = None) -> MetaTensor:
        """Resize a ``(C, H, W)`` image (integer inputs are converted to float32); ``mode`` overrides ``self.mode``."""
        mode = self.mode if mode is None else _check_mode(mode)
        img_t = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
        if not torch.is_floating_point(img_t):
            img_t = img_t.float()
        out, info = resize_to_network(img_t, self.size, keep_aspect=self.keep_aspect, mode=mode)
        meta = dict(img.meta) if isinstance(img, MetaTensor) else {}
        meta["grid_info"] = info.to_dict()
        meta["spatial_shape"] = np.asarray(info.network_shape)
        if info.network_spacing is not None:
            meta["affine"] = torch.diag(torch.tensor([*info.network_spacing, 1.0], dtype=torch.float64))
        return MetaTensor(out, meta=meta)


def _check_mode(mode: str) -> str:
    if mode not in _RESAMPLE_MODES:
        raise ValueError(f"`mode` must be one of {_RESAMPLE_MODES}, got {mode!r}.")
    return mode
