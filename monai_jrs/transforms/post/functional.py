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
"""Post-processing of predicted masks: connected components."""

from __future__ import annotations

import numpy as np

__all__ = ["keep_largest_components"]


def keep_largest_components(mask: np.ndarray, count: int = 2) -> np.ndarray:
    """Keep the ``count`` largest connected components of a bool mask (e.g. the two lungs of a lung field).

    Args:
        mask: 2-D or 3-D bool (or {0, 1}) array.
        count: number of components kept.

    Returns:
        bool array of the same shape; unchanged when it has at most ``count`` components.
    """
    from scipy import ndimage

    arr = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(arr)
    if n <= count:
        return arr
    sizes = ndimage.sum(arr, labels, index=range(1, n + 1))
    return np.isin(labels, 1 + np.argsort(sizes)[::-1][:count])
