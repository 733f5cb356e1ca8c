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
"""Dictionary I/O transforms: wrappers of :mod:`monai_jrs.transforms.io.array`."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple

from monai_jrs.transforms.io.array import LoadLungMask, LoadXRay, SaveRegistrationOutputs

__all__ = [
    "LoadXRayd",
    "LoadXRayD",
    "LoadXRayDict",
    "LoadLungMaskd",
    "LoadLungMaskD",
    "LoadLungMaskDict",
    "SaveRegistrationOutputsd",
    "SaveRegistrationOutputsD",
    "SaveRegistrationOutputsDict",
]


class LoadXRayd(MapTransform):
    """Dictionary version of :class:`LoadXRay`: replace file names under ``keys`` by ``(1, H, W)`` MetaTensors.

    Args:
        keys: keys holding file paths (e.g. ``JRSKeys.REFERENCE``, ``JRSKeys.FLOATING``).
        normalize: normalise to ``[0, 1]``.
        lower: lower clipping percentile.
        upper: upper clipping percentile.
        apply_voi: DICOM: apply the VOI LUT / window.
        voi_index: DICOM: which VOI LUT / window.
        nifti_layout: {``"rows_cols"``, ``"cols_rows"``}.
        image_only: when False, also store the loader's raw meta dict under ``f"{key}_{meta_key_postfix}"``.
        meta_key_postfix: postfix of the raw meta key.
        allow_missing_keys: do not raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        normalize: bool = True,
        lower: float = 0.5,
        upper: float = 99.5,
        apply_voi: bool = True,
        voi_index: int = 0,
        nifti_layout: str = "rows_cols",
        image_only: bool = True,
        meta_key_postfix: str = "meta_dict",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadXRay(normalize, lower, upper, apply_voi, voi_index, nifti_layout, image_only=False)
        self.image_only = image_only
        self.meta_key_postfix = meta_key_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img, meta = self.loader(d[key])  # type: ignore[misc]
            d[key] = img
            if not self.image_only:
                d[f"{key}_{self.meta_key_postfix}"] = meta
        return d


class LoadLungMaskd(MapTransform):
    """Dictionary version of :class:`LoadLungMask`: load lung masks as ``(1, H, W)`` MetaTensors in {0, 1}.

    Args:
        keys: keys holding mask file paths (e.g. ``JRSKeys.REFERENCE_MASK``).
        reference_keys: for each key, the key of its already loaded image (a MetaTensor from :class:`LoadXRayd`)
            whose shape the mask must match and whose spacing it inherits; None disables the check.
        labels: values (DICOM SEG segment numbers) that count as lung; None: any nonzero.
        allow_empty: accept all-zero masks.
        nifti_layout: {``"rows_cols"``, ``"cols_rows"``}.
        image_only: when False, also store the raw meta under ``f"{key}_{meta_key_postfix}"``.
        meta_key_postfix: postfix of the raw meta key.
        allow_missing_keys: do not raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        reference_keys: KeysCollection | None = None,
        labels: Sequence[int] | None = None,
        allow_empty: bool = False,
        nifti_layout: str = "rows_cols",
        image_only: bool = True,
        meta_key_postfix: str = "meta_dict",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if reference_keys is None:
            self.reference_keys: tuple[Hashable | None, ...] = (None,) * len(self.keys)
        else:
            refs = ensure_tuple(reference_keys)
            if len(refs) == 1:
                refs = refs * len(self.keys)
            if len(refs) != len(self.keys):
                raise ValueError(
                    f"`reference_keys` must be one key or one per key ({len(self.keys)}), got {len(refs)}."
                )
            self.reference_keys = refs
        self.loader = LoadLungMask(labels, allow_empty, nifti_layout, image_only=False)
        self.image_only = image_only
        self.meta_key_postfix = meta_key_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, ref_key in self.key_iterator(d, self.reference_keys):
            ref = None
            if ref_key is not None:
                if ref_key not in d:
                    raise ValueError(f"reference key {ref_key!r} for mask {key!r} is missing from the data.")
                ref = d[ref_key]
                if not isinstance(ref, MetaTensor):
                    raise TypeError(
                        f"reference {ref_key!r} must be a MetaTensor loaded by LoadXRayd, got {type(ref).__name__}."
                    )
            d[key], meta = self.loader(d[key], ref)  # type: ignore[misc]
            if not self.image_only:
                d[f"{key}_{self.meta_key_postfix}"] = meta
        return d


class SaveRegistrationOutputsd(MapTransform):
    """Dictionary version of :class:`SaveRegistrationOutputs`, the bundle's post-processing: write the same
    full-resolution files as ``monai-jrs register`` for one pair.

    Expects a decollated item holding the network output under ``keys`` (``(5, h, w)``,
    :class:`~monai_jrs.networks.nets.JRSStackedGenerator`), the network-grid MetaTensors of the reference and floating
    images (with ``meta["grid_info"]`` from :class:`~monai_jrs.transforms.ResizeToNetworkd`) and copies of
    the full-resolution reference, reference mask and floating image under the same keys plus ``full_postfix``
    (``CopyItemsd`` before resizing). Calls :class:`SaveRegistrationOutputs` (into ``output_dir/<floating stem>/``)
    and stores the ``metrics.json`` content under ``f"{key}_metrics"``.

    Args:
        keys: the prediction key.
        output_dir: output root.
        reference_key, reference_mask_key, floating_key: keys of the network-grid images.
        full_postfix: postfix of the full-resolution copies.
        overwrite: replace existing outputs.
        refine: optional full-resolution refinement (see :class:`SaveRegistrationOutputs`).
        allow_missing_keys: skip items without ``keys``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        reference_key: str = "reference",
        reference_mask_key: str = "reference_mask",
        floating_key: str = "floating",
        full_postfix: str = "_full",
        overwrite: bool = False,
        refine: Any | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.saver = SaveRegistrationOutputs(output_dir, overwrite=overwrite, refine=refine)
        self.output_dir, self.overwrite = self.saver.output_dir, self.saver.overwrite
        self.reference_key, self.reference_mask_key, self.floating_key = reference_key, reference_mask_key, floating_key
        self.full_postfix = full_postfix

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_metrics"] = self.saver(
                d[key],
                d[self.reference_key + self.full_postfix],
                d[self.reference_mask_key + self.full_postfix],
                d[self.floating_key + self.full_postfix],
                d[self.reference_key].meta["grid_info"],
                d[self.floating_key].meta["grid_info"],
            )
        return d


LoadXRayD = LoadXRayDict = LoadXRayd
LoadLungMaskD = LoadLungMaskDict = LoadLungMaskd
SaveRegistrationOutputsD = SaveRegistrationOutputsDict = SaveRegistrationOutputsd
