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
"""Array post-processing transforms of predicted lung masks."""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils.type_conversion import convert_to_dst_type

from monai_jrs.transforms.post.functional import keep_largest_components

__all__ = ["KeepLargestComponents"]


class KeepLargestComponents(Transform):
    """Keep the ``count`` largest connected components of each channel of a mask; zero the rest.

    Per channel, the foreground is the nonzero pixels and the components are those of
    :func:`~monai_jrs.transforms.keep_largest_components` (face connectivity). Pixels of a kept component keep their
    value, so a probability map or a label mask works as well as a binary one.

    Args:
        count: number of components kept per channel (2: the two lungs of a lung field).

    Example::

        >>> mask = np.zeros((1, 5, 9), dtype=np.uint8)
        >>> mask[0, 1:4, 0:2] = mask[0, 1:4, 4:6] = mask[0, 2, 8] = 1  # two lungs and a speck
        >>> KeepLargestComponents(count=2)(mask)[0, 2].tolist()
        [1, 1, 0, 0, 1, 1, 0, 0, 0]
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, count: int = 2) -> None:
        if isinstance(count, bool) or int(count) != count or count < 1:
            raise ValueError(f"`count` must be an integer >= 1, got {count!r}.")
        self.count = int(count)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Filter a channel-first ``(C, H, W)`` or ``(C, D, H, W)`` mask; returns the same type, dtype and device."""
        if not isinstance(img, (np.ndarray, torch.Tensor)):
            raise TypeError(f"`img` must be a numpy array or torch.Tensor, got {type(img).__name__}.")
        if img.ndim not in (3, 4):
            raise ValueError(f"`img` must be channel-first (C, H, W) or (C, D, H, W), got shape {tuple(img.shape)}.")
        arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        keep = np.stack([keep_largest_components(channel != 0, self.count) for channel in arr])
        out = np.where(keep, arr, np.zeros((), dtype=arr.dtype))
        return convert_to_dst_type(out, img, dtype=img.dtype)[0]
