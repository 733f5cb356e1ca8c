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
"""Dictionary wrappers of :mod:`monai_jrs.transforms.deformation.array` (like MONAI's ``Rand2DElasticd``)."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple, ensure_tuple_rep

from monai_jrs.transforms.deformation.array import RandSyntheticDeformation
from monai_jrs.utils.enums import DeformationProtocol, JRSKeys

logger = logging.getLogger(__name__)

__all__ = [
    "RandSyntheticDeformationd",
    "RandSyntheticDeformationD",
    "RandSyntheticDeformationDict",
]


class RandSyntheticDeformationd(Randomizable, MapTransform):
    """Dictionary version of :class:`~monai_jrs.transforms.RandSyntheticDeformation`.

    Reads the reference image(s) under ``keys`` and the reference mask under ``mask_key``; writes the floating
    image(s) under ``floating_keys``, the floating mask under ``floating_mask_key`` and the ``(2, H, W)`` applied DDF
    under ``ddf_key`` (:mod:`monai_jrs.utils.conventions`: ``warp(floating, ddf_applied) ~= reference``). All image
    keys share one sampled deformation (drawn, with Dice rejection, on the first key). The inputs are kept.

    Args:
        keys: reference image key(s); default :attr:`JRSKeys.REFERENCE`.
        mask_key: reference mask key, or ``None`` (then the Dice rule must be off: ``protocol="followup"`` or
            ``dice_threshold=None``); default :attr:`JRSKeys.REFERENCE_MASK`.
        floating_keys: output key(s), one per key in ``keys``; default :attr:`JRSKeys.FLOATING`.
        floating_mask_key: output mask key; default :attr:`JRSKeys.FLOATING_MASK`.
        ddf_key: output DDF key; default :attr:`JRSKeys.DDF_APPLIED`.
        params_key: if given, the sampled parameters (see :meth:`RandSyntheticDeformation.get_params`) are stored
            under this key for replay with :class:`~monai_jrs.transforms.SyntheticDeformation`.
        allow_missing_keys: skip the transform (return the data unchanged) when a key is missing instead of raising.
        kwargs: the arguments of :class:`~monai_jrs.transforms.RandSyntheticDeformation` (``protocol``, ranges,
            ``reference_size``, ``dice_threshold``, ``max_retries``, ``on_failure``, ``padding_mode``, ...).

    Raises:
        KeyError: a required key is missing and ``allow_missing_keys`` is False.

    Example::

        >>> t = RandSyntheticDeformationd(protocol="followup", mask_key=None)
        >>> out = t.set_random_state(0)({"reference": torch.rand(1, 32, 32)})
        >>> sorted(str(k) for k in out)
        ['ddf_applied', 'floating', 'reference']
    """

    def __init__(
        self,
        keys: KeysCollection = JRSKeys.REFERENCE,
        mask_key: Hashable | None = JRSKeys.REFERENCE_MASK,
        floating_keys: KeysCollection = JRSKeys.FLOATING,
        floating_mask_key: Hashable = JRSKeys.FLOATING_MASK,
        ddf_key: Hashable = JRSKeys.DDF_APPLIED,
        params_key: Hashable | None = None,
        protocol: str = DeformationProtocol.PAPER,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.floating_keys = ensure_tuple_rep(floating_keys, len(self.keys))
        self.mask_key = mask_key
        self.floating_mask_key = floating_mask_key
        self.ddf_key = ddf_key
        self.params_key = params_key
        self.deformer = RandSyntheticDeformation(protocol=protocol, **kwargs)
        if mask_key is None and self.deformer.uses_dice_rule:
            raise ValueError(
                "`mask_key` is None but the Dice rule is active (protocol='paper' with dice_threshold="
                f"{self.deformer.dice_threshold}); give the reference mask key or set dice_threshold=None."
            )

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandSyntheticDeformationd:
        super().set_random_state(seed, state)
        self.deformer.set_random_state(seed, state)
        return self

    def randomize(self, data: Sequence[int] | None = None) -> None:
        """Draw new parameters for spatial shape ``data`` = ``(H, W)`` (see :meth:`RandSyntheticDeformation.randomize`)."""
        self.deformer.randomize(data)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        required = list(self.keys) + ([self.mask_key] if self.mask_key is not None else [])
        missing = [k for k in required if k not in d]
        if missing:
            if self.allow_missing_keys:
                return d
            raise KeyError(
                f"{type(self).__name__} expected keys {[str(k) for k in required]} in the data, "
                f"missing {[str(k) for k in missing]} (available: {[str(k) for k in d]})."
            )
        mask = d[self.mask_key] if self.mask_key is not None else None
        first, *others = ensure_tuple(self.keys)
        floating, floating_mask, ddf = self.deformer(d[first], mask)
        d[self.floating_keys[0]] = floating
        if floating_mask is not None:
            d[self.floating_mask_key] = floating_mask
        d[self.ddf_key] = ddf
        if others:
            deform = self.deformer.deformation()
            for key, out_key in zip(others, self.floating_keys[1:]):
                d[out_key] = deform(d[key])[0]
        if self.params_key is not None:
            d[self.params_key] = {k: v for k, v in self.deformer.get_params().items() if v is not None}
        return d


RandSyntheticDeformationD = RandSyntheticDeformationDict = RandSyntheticDeformationd
