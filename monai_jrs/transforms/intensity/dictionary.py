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
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import ensure_tuple

from monai_jrs.transforms.intensity.array import (
    SYNTH_APPEARANCE_PARTS,
    NormalizeXRay,
    RandFollowUpAppearance,
    RandSynthAppearance,
)
from monai_jrs.utils.enums import JRSKeys

logger = logging.getLogger(__name__)

__all__ = [
    "NormalizeXRayd",
    "NormalizeXRayD",
    "NormalizeXRayDict",
    "RandFollowUpAppearanced",
    "RandFollowUpAppearanceD",
    "RandFollowUpAppearanceDict",
    "RandSynthAppearanced",
    "RandSynthAppearanceD",
    "RandSynthAppearanceDict",
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


class RandSynthAppearanced(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`~monai_jrs.transforms.RandSynthAppearance`.

    Each key gets its own, independent draw of the parameters (reference and floating image look different). The
    results go to ``output_keys`` when given (e.g. ``reference -> reference_input``, ``floating -> floating_input``,
    the inputs :class:`~monai_jrs.engines.JRSTrainer` feeds to the generators), leaving the originals untouched;
    otherwise the images are replaced. ``mask_keys`` feed the lung masks to the ``"labels"`` part; the masks are
    not changed.

    ``prob`` is one draw per call for all keys; when it skips, the output keys get copies of the inputs (so that
    every sample of a batch has them). With an empty ``parts`` the transform is the identity and writes nothing,
    not even the output keys: a pipeline with ``parts=[]`` is the pipeline without this transform.

    Args:
        keys: image keys; default ``(reference, floating)``.
        output_keys: where to write the results, one per key (None: in place).
        mask_keys: lung mask per key for the ``"labels"`` part (None, or a sequence with None for no mask).
        prob: probability of applying the transform (one draw for all keys).
        parts: parts of :class:`~monai_jrs.transforms.RandSynthAppearance` that may be applied (default: all).
        allow_missing_keys: skip missing image (and mask) keys instead of raising ``KeyError``.
        kwargs: probabilities and ranges of :class:`~monai_jrs.transforms.RandSynthAppearance`.

    Raises:
        ValueError: when ``output_keys`` or ``mask_keys`` do not have one entry per key, or for invalid arguments.

    Example::

        >>> t = RandSynthAppearanced(output_keys=("reference_input", "floating_input"))
        >>> d = t.set_random_state(0)({"reference": torch.rand(1, 8, 8), "floating": torch.rand(1, 8, 8)})
        >>> sorted(d)
        ['floating', 'floating_input', 'reference', 'reference_input']
    """

    def __init__(
        self,
        keys: KeysCollection = (JRSKeys.REFERENCE, JRSKeys.FLOATING),
        output_keys: KeysCollection | None = None,
        mask_keys: Sequence[Hashable | None] | Hashable | None = None,
        prob: float = 1.0,
        parts: Sequence[str] | str = SYNTH_APPEARANCE_PARTS,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"`prob` must be a number in [0, 1], got {prob}.")
        RandomizableTransform.__init__(self, prob)
        n = len(self.keys)
        self.output_keys = self.keys if output_keys is None else ensure_tuple(output_keys)
        if len(self.output_keys) != n:
            raise ValueError(f"`output_keys` must have one entry per key ({n}: {list(self.keys)}), "
                             f"got {len(self.output_keys)}: {list(self.output_keys)}.")
        self.mask_keys = (None,) * n if mask_keys is None else ensure_tuple(mask_keys)
        if len(self.mask_keys) != n:
            raise ValueError(f"`mask_keys` must be None or have one entry per key ({n}: {list(self.keys)}), "
                             f"got {len(self.mask_keys)}: {list(self.mask_keys)}.")
        self.appearance = RandSynthAppearance(prob=1.0, parts=parts, **kwargs)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandSynthAppearanced:
        super().set_random_state(seed, state)
        self.appearance.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self.appearance.parts:
            return d
        self.randomize(None)
        for key, out_key, mask_key in self.key_iterator(d, self.output_keys, self.mask_keys):
            if not self._do_transform:
                if out_key != key:
                    d[out_key] = _copy(d[key])
                continue
            mask = None
            if mask_key is not None:
                if mask_key in d:
                    mask = d[mask_key]
                elif not self.allow_missing_keys:
                    raise KeyError(
                        f"mask key {mask_key!r} (for {key!r}) is not in the data; it has {sorted(map(str, d))}."
                    )
            out = self.appearance(d[key], mask=mask, randomize=True)
            d[out_key] = _copy(out) if (out is d[key] and out_key != key) else out
        return d


def _copy(value: Any) -> Any:
    """A copy of a tensor (MetaTensor metadata kept) or array; other values as they are."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


NormalizeXRayD = NormalizeXRayDict = NormalizeXRayd
RandFollowUpAppearanceD = RandFollowUpAppearanceDict = RandFollowUpAppearanced
RandSynthAppearanceD = RandSynthAppearanceDict = RandSynthAppearanced
