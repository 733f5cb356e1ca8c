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
"""MONAI datasets of reference/floating pairs, with synthetic pairs made on the fly from single-image items.

MONAI's :class:`~monai.data.Dataset` / :class:`~monai.data.CacheDataset` with a transform chain already do the work;
this module adds one dictionary transform, :class:`SynthesizePaird`, that turns a loaded single-image item
(``"image"``, ``"mask"``) into a pair (reference = the image, floating = a deformed copy made by a given deformation
transform), and a factory, :func:`make_jrs_dataset`, that builds the chain ``load -> SynthesizePaird -> transform``
and picks the dataset class. Items that already are pairs pass through :class:`SynthesizePaird` unchanged, so one
dataset can mix longitudinal pairs and single images.

``SynthesizePaird`` is :class:`~monai.transforms.Randomizable`, so a :class:`~monai.data.CacheDataset` caches the
deterministic loading before it and re-draws the deformation at every epoch.

Example::

    from monai.transforms import EnsureChannelFirstd, LoadImaged, ScaleIntensityd
    from monai_jrs.data.dataset import make_jrs_dataset

    keys = ["reference", "reference_mask", "floating", "floating_mask", "image", "mask"]
    load = [LoadImaged(keys, allow_missing_keys=True), EnsureChannelFirstd(keys, allow_missing_keys=True)]
    ds = make_jrs_dataset(items, load_transform=load, deformation=my_rand_deformation_d, cache_rate=1.0, seed=0)
    sample = ds[0]  # keys: reference, reference_mask, floating, floating_mask, ddf_applied (from the deformation)
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, Dataset
from monai.transforms import Compose, MapTransform, Randomizable

from monai_jrs.data.datalist import IMAGE_KEY, MASK_KEY
from monai_jrs.utils.enums import JRSKeys

__all__ = ["SynthesizePaird", "SynthesizePairD", "SynthesizePairDict", "make_jrs_dataset", "materialize"]

logger = logging.getLogger(__name__)


class SynthesizePaird(Randomizable, MapTransform):
    """Turn a loaded single-image item into a synthetic reference/floating pair.

    For a dict with ``image_key`` (and ``mask_key``) and no ``"reference"``, it sets ``"reference"`` to the image,
    ``"reference_mask"`` to the mask, ``"floating"`` and ``"floating_mask"`` to *copies* of them, then returns
    ``deformation(data)``. The deformation (for instance the project's random synthetic-deformation dictionary
    transform) is expected to deform ``"floating"``/``"floating_mask"`` and to add ``"ddf_applied"``; this class
    does not look inside it. Dicts that already have ``"reference"`` (longitudinal pairs) are returned unchanged.

    Args:
        deformation: a callable taking and returning a dict, e.g. a MONAI dictionary transform or a ``Compose``.
        image_key: key of the image of single-image items.
        mask_key: key of the mask of single-image items; a single item without it raises an error.
        keep_source: keep ``image_key`` and ``mask_key`` in the output (default: removed, so single and pair items
            end up with the same keys and collate together).

    Raises:
        TypeError: when ``deformation`` is not callable, or returns something other than a mapping holding
            ``"floating"``.
    """

    def __init__(
        self,
        deformation: Callable[[dict], Mapping],
        image_key: str = IMAGE_KEY,
        mask_key: str = MASK_KEY,
        keep_source: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys=[image_key, mask_key], allow_missing_keys=True)
        if not callable(deformation):
            raise TypeError(f"deformation must be callable (a dictionary transform), got {type(deformation).__name__}.")
        self.deformation = deformation
        self.image_key = image_key
        self.mask_key = mask_key
        self.keep_source = keep_source

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> SynthesizePaird:
        """Seed this transform and, when it supports it, the deformation."""
        super().set_random_state(seed=seed, state=state)
        if hasattr(self.deformation, "set_random_state"):
            self.deformation.set_random_state(seed=seed, state=state)
        return self

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw here: the deformation draws its own parameters."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if JRSKeys.REFERENCE.value in d:
            return d
        if self.image_key not in d or self.mask_key not in d:
            raise ValueError(
                f"{type(self).__name__} needs a pair ({JRSKeys.REFERENCE.value!r}) or a single image with "
                f"{self.image_key!r} and {self.mask_key!r}; got keys {sorted(map(str, d))}."
            )
        image, mask = d[self.image_key], d[self.mask_key]
        d[JRSKeys.REFERENCE.value] = image
        d[JRSKeys.REFERENCE_MASK.value] = mask
        d[JRSKeys.FLOATING.value] = _copy(image)
        d[JRSKeys.FLOATING_MASK.value] = _copy(mask)
        if not self.keep_source:
            del d[self.image_key], d[self.mask_key]
        out = self.deformation(d)
        if not isinstance(out, Mapping) or JRSKeys.FLOATING.value not in out:
            raise TypeError(
                f"deformation must return a dict holding {JRSKeys.FLOATING.value!r}, got "
                f"{type(out).__name__}" + (f" with keys {sorted(map(str, out))}" if isinstance(out, Mapping) else "")
                + "."
            )
        return dict(out)


SynthesizePairD = SynthesizePairDict = SynthesizePaird


def make_jrs_dataset(
    items: Sequence[Mapping[str, Any]],
    load_transform: Callable | Sequence[Callable] | None,
    deformation: Callable[[dict], Mapping] | None = None,
    transform: Callable | Sequence[Callable] | None = None,
    cache_rate: float = 0.0,
    num_workers: int | None = 0,
    seed: int | None = None,
    image_key: str = IMAGE_KEY,
    mask_key: str = MASK_KEY,
) -> Dataset:
    """Build a MONAI dataset of reference/floating pairs from datalist items (pairs and/or single images).

    The transform chain is ``load_transform -> SynthesizePaird(deformation) -> transform``. With ``cache_rate > 0``
    a :class:`~monai.data.CacheDataset` caches the output of ``load_transform`` (up to its first random transform).

    Args:
        items: datalist items (see :mod:`monai_jrs.data.datalist`); they are not modified.
        load_transform: deterministic loading/preprocessing applied to every item, e.g. ``LoadImaged`` +
            ``EnsureChannelFirstd`` on all image keys with ``allow_missing_keys=True``.
        deformation: dictionary transform that deforms ``"floating"``/``"floating_mask"`` of synthetic pairs; required
            when ``items`` holds single-image items.
        transform: transforms applied after pairing (intensity augmentation, ``EnsureTyped``...).
        cache_rate: fraction of items to cache; 0 gives a plain :class:`~monai.data.Dataset`.
        num_workers: threads used to fill the cache.
        seed: seeds all random transforms of the chain (``Compose.set_random_state``) for reproducibility.
        image_key: key of the image of single-image items.
        mask_key: key of the mask of single-image items.

    Returns:
        a :class:`~monai.data.Dataset` or :class:`~monai.data.CacheDataset`.

    Raises:
        ValueError: when ``items`` has single-image items but ``deformation`` is None, or ``cache_rate`` is not in
            ``[0, 1]``.
        TypeError: when an item is not a dict.
    """
    if not 0.0 <= float(cache_rate) <= 1.0:
        raise ValueError(f"cache_rate must be in [0, 1], got {cache_rate}.")
    n_single = 0
    for i, it in enumerate(items):
        if not isinstance(it, Mapping):
            raise TypeError(f"item {i} must be a dict, got {type(it).__name__}.")
        if JRSKeys.REFERENCE.value in it:
            continue
        if image_key not in it:
            raise ValueError(
                f"item {i} is neither a pair (no {JRSKeys.REFERENCE.value!r}) nor a single image (no {image_key!r}); "
                f"keys: {sorted(map(str, it))}."
            )
        n_single += 1
    if n_single and deformation is None:
        raise ValueError(
            f"{n_single} of {len(items)} item(s) are single images; pass a deformation transform to synthesise "
            "their floating images."
        )
    chain: list[Callable] = []
    chain.extend(_as_list(load_transform))
    if deformation is not None:
        chain.append(SynthesizePaird(deformation, image_key=image_key, mask_key=mask_key))
    chain.extend(_as_list(transform))
    # flattened, so that a CacheDataset sees the individual load transforms (a nested Compose counts as random)
    pipeline = Compose(chain).flatten()
    if seed is not None:
        pipeline.set_random_state(seed=seed)
    data = [dict(it) for it in items]
    logger.debug("jrs dataset: %d item(s), %d single image(s), cache_rate=%s", len(data), n_single, cache_rate)
    if cache_rate > 0:
        return CacheDataset(data=data, transform=pipeline, cache_rate=cache_rate, num_workers=num_workers,
                            progress=False)
    return Dataset(data=data, transform=pipeline)


def materialize(dataset: Sequence[Any]) -> list[Any]:
    """Evaluate every item of a dataset once and return the list (fixed validation pairs).

    A dataset whose transform chain is random (synthetic deformations) gives new pairs at each pass; for
    validation, the pairs are drawn once with a seeded chain (``make_jrs_dataset(..., seed=...)``) and kept, so that
    every validation round scores the same pairs.

    Args:
        dataset: any indexable dataset (``len`` and ``[i]``).

    Returns:
        ``[dataset[0], ..., dataset[len - 1]]``.
    """
    return [dataset[i] for i in range(len(dataset))]


def _copy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.clone()  # MetaTensor.clone keeps its meta data
    if isinstance(x, np.ndarray):
        return x.copy()
    return copy.deepcopy(x)


def _as_list(t: Callable | Sequence[Callable] | None) -> list[Callable]:
    if t is None:
        return []
    if callable(t):
        return [t]
    return list(t)
