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
"""Dictionary wrappers of :mod:`monai_jrs.transforms.intensity.array`."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from monai_jrs.transforms.intensity.array import NormalizeXRay, RandFollowUpAppearance
from monai_jrs.utils.enums import JRSKeys

logger = logging.getLogger(__name__)

__all__ = [
    "NormalizeXRayd",
    "NormalizeXRayD",
    "NormalizeXRayDict",
    "RandFollowUpAppearanced",
    "RandFollowUpAppearanceD",
    "RandFollowUpAppearanceDict",
]


class NormalizeXRayd(MapTransform):
    """Dictionary version of :class:`~monai_jrs.transforms.NormalizeXRay`.

    Args:
        keys: keys of the images to normalise.
        lower: lower percentile.
        upper: upper percentile.
        allow_missing_keys: do not raise for missing keys.
    """

    def __init__(
        self, keys: KeysCollection, lower: float = 0.5, upper: float = 99.5, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = NormalizeXRay(lower, upper)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d


class RandFollowUpAppearanced(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`~monai_jrs.transforms.RandFollowUpAppearance`.

    By default only the floating image (:attr:`JRSKeys.FLOATING`) is changed; place it after
    :class:`~monai_jrs.transforms.RandSyntheticDeformationd`. All keys share one draw.

    Args:
        keys: image keys to change; default :attr:`JRSKeys.FLOATING`.
        prob: probability of applying the transform (one draw for all keys).
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.
        kwargs: ranges of :class:`~monai_jrs.transforms.RandFollowUpAppearance`.
    """

    def __init__(
        self,
        keys: KeysCollection = JRSKeys.FLOATING,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.appearance = RandFollowUpAppearance(prob=1.0, **kwargs)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandFollowUpAppearanced:
        super().set_random_state(seed, state)
        self.appearance.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.appearance.randomize()
        for key in self.key_iterator(d):
            d[key] = self.appearance(d[key], randomize=False)
        return d


NormalizeXRayD = NormalizeXRayDict = NormalizeXRayd
RandFollowUpAppearanceD = RandFollowUpAppearanceDict = RandFollowUpAppearanced
