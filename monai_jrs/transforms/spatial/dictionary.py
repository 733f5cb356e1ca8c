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
"""Dictionary wrappers of :mod:`monai_jrs.transforms.spatial.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

from monai_jrs.transforms.spatial.array import ResizeToNetwork, _check_mode

__all__ = ["ResizeToNetworkd", "ResizeToNetworkD", "ResizeToNetworkDict"]


class ResizeToNetworkd(MapTransform):
    """Dictionary version of :class:`~monai_jrs.transforms.ResizeToNetwork`.

    Resize images/masks to the network grid, storing the :class:`~monai_jrs.transforms.GridInfo` (as a dict) in the
    meta data: each result is a MetaTensor whose ``meta["grid_info"]`` holds
    :meth:`GridInfo.to_dict <monai_jrs.transforms.GridInfo.to_dict>`; use it with
    :func:`~monai_jrs.transforms.restore_to_original` / :func:`~monai_jrs.transforms.ddf_to_original` after
    ``decollate_batch``. The original spacing is read from the input MetaTensor's ``meta["spacing"]`` when present.

    Args:
        keys: keys to resize.
        size: network size ``n`` or ``(h, w)``.
        keep_aspect: letterbox instead of the default anisotropic resize.
        mode: resampling mode, one per key or one for all (``"nearest"`` for label masks).
        allow_missing_keys: do not raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        size: int | Sequence[int],
        keep_aspect: bool = False,
        mode: str | Sequence[str] = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.resizer = ResizeToNetwork(size, keep_aspect=keep_aspect)
        self.size, self.keep_aspect = self.resizer.size, keep_aspect
        self.mode = tuple(_check_mode(m) for m in ensure_tuple_rep(mode, len(self.keys)))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = self.resizer(d[key], mode=mode)
        return d


ResizeToNetworkD = ResizeToNetworkDict = ResizeToNetworkd
