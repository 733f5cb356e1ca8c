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
"""Dictionary wrappers of :mod:`monai_jrs.transforms.post.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_jrs.transforms.post.array import KeepLargestComponents

__all__ = ["KeepLargestComponentsd", "KeepLargestComponentsD", "KeepLargestComponentsDict"]


class KeepLargestComponentsd(MapTransform):
    """Dictionary version of :class:`~monai_jrs.transforms.KeepLargestComponents`.

    Args:
        keys: keys of the channel-first masks to filter.
        count: number of components kept per channel.
        allow_missing_keys: do not raise for missing keys.
    """

    backend = KeepLargestComponents.backend

    def __init__(self, keys: KeysCollection, count: int = 2, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = KeepLargestComponents(count)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


KeepLargestComponentsD = KeepLargestComponentsDict = KeepLargestComponentsd
