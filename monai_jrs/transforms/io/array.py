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
"""Array I/O transforms: loading radiographs and lung masks (:mod:`monai_jrs.data.io`), writing registration results
(:mod:`monai_jrs.data.writers`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Transform

from monai_jrs.data.io import _NIFTI_LAYOUTS, from_collatable_meta, load_mask, load_xray, to_collatable_meta
from monai_jrs.data.writers import image_stem, save_registration_result
from monai_jrs.transforms.spatial.functional import GridInfo

__all__ = ["LoadXRay", "LoadLungMask", "SaveRegistrationOutputs"]


class LoadXRay(Transform):
    """Load a chest X-ray as a ``(1, H, W)`` MetaTensor in ``[0, 1]`` (see :func:`~monai_jrs.data.io.load_xray`).

    The MetaTensor's meta holds :func:`~monai_jrs.data.io.to_collatable_meta` of the loader's meta plus MONAI's
    ``filename_or_obj``, ``spatial_shape``, ``original_channel_dim`` and an ``affine`` ``diag(row_mm, col_mm, 1)``
    (identity when the spacing is unknown).

    Args:
        normalize: normalise to ``[0, 1]``.
        lower: lower clipping percentile.
        upper: upper clipping percentile.
        apply_voi: DICOM: apply the VOI LUT / window.
        voi_index: DICOM: which VOI LUT / window.
        nifti_layout: {``"rows_cols"``, ``"cols_rows"``}.
        image_only: return only the MetaTensor; False returns ``(MetaTensor, meta)`` with the loader's raw meta.
    """

    def __init__(
        self,
        normalize: bool = True,
        lower: float = 0.5,
        upper: float = 99.5,
        apply_voi: bool = True,
        voi_index: int = 0,
        nifti_layout: str = "rows_cols",
        image_only: bool = True,
    ) -> None:
        if nifti_layout not in _NIFTI_LAYOUTS:
            raise ValueError(f"`nifti_layout` must be one of {_NIFTI_LAYOUTS}, got {nifti_layout!r}.")
        if not (0.0 <= lower < upper <= 100.0):
            raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower}, upper={upper}.")
        self.kwargs = dict(
            normalize=normalize, lower=lower, upper=upper, apply_voi=apply_voi, voi_index=voi_index,
            nifti_layout=nifti_layout,
        )  # fmt: skip
        self.image_only = image_only

    def __call__(self, filename: str | PathLike) -> MetaTensor | tuple[MetaTensor, dict[str, Any]]:
        """Load ``filename``."""
        img, meta = load_xray(filename, **self.kwargs)  # type: ignore[arg-type]
        out = _to_meta_tensor(img, meta)
        return out if self.image_only else (out, meta)


class LoadLungMask(Transform):
    """Load a lung mask as a ``(1, H, W)`` MetaTensor in {0, 1} (see :func:`~monai_jrs.data.io.load_mask`).

    The MetaTensor's meta is built as :class:`LoadXRay`'s. The reference image, given at call time, is checked and
    lends its spacing: its shape must match the mask, and its spacing is used when the mask file has none (for a
    DICOM SEG, its ``SOPInstanceUID`` selects the referenced source image).

    Args:
        labels: values (DICOM SEG segment numbers) that count as lung; None: any nonzero.
        allow_empty: accept all-zero masks.
        nifti_layout: {``"rows_cols"``, ``"cols_rows"``}.
        image_only: return only the MetaTensor; False returns ``(MetaTensor, meta)`` with the loader's raw meta.
    """

    def __init__(
        self,
        labels: Sequence[int] | None = None,
        allow_empty: bool = False,
        nifti_layout: str = "rows_cols",
        image_only: bool = True,
    ) -> None:
        if nifti_layout not in _NIFTI_LAYOUTS:
            raise ValueError(f"`nifti_layout` must be one of {_NIFTI_LAYOUTS}, got {nifti_layout!r}.")
        self.labels = None if labels is None else [int(v) for v in labels]
        self.allow_empty = allow_empty
        self.nifti_layout = nifti_layout
        self.image_only = image_only

    def __call__(
        self, filename: str | PathLike, reference: MetaTensor | Mapping[str, Any] | None = None
    ) -> MetaTensor | tuple[MetaTensor, dict[str, Any]]:
        """Load the mask ``filename`` of the image ``reference``.

        Args:
            filename: mask file.
            reference: the image the mask belongs to: a MetaTensor from :class:`LoadXRay` (its meta is read with
                :func:`~monai_jrs.data.io.from_collatable_meta`), or the loader meta of
                :func:`~monai_jrs.data.io.load_xray` (``{"original_shape": (H, W)}`` checks the shape only), or
                None (no check).
        """
        ref_meta = from_collatable_meta(reference.meta) if isinstance(reference, MetaTensor) else reference
        mask, meta = load_mask(filename, ref_meta, self.labels, self.allow_empty, self.nifti_layout)
        out = _to_meta_tensor(mask, meta)
        return out if self.image_only else (out, meta)


class SaveRegistrationOutputs(Transform):
    """Write the full-resolution files of one registered pair, as ``monai-jrs register`` does.

    Maps the network output back to the full resolution of the inputs
    (:meth:`JRSInferer.to_full_resolution <monai_jrs.inferers.JRSInferer.to_full_resolution>`) and writes it with
    :func:`~monai_jrs.data.writers.save_registration_result` into ``output_dir/<floating file stem>/``.

    Args:
        output_dir: output root.
        overwrite: replace existing outputs.
        refine: optional full-resolution refinement run before writing, as ``monai-jrs register`` does by default
            (:class:`~monai_jrs.networks.blocks.DenseRefinement`; stage 5 of :class:`~monai_jrs.inferers.JRSInferer`).
    """

    def __init__(self, output_dir: str | os.PathLike, overwrite: bool = False, refine: Any | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.overwrite = bool(overwrite)
        self.refine = refine

    def __call__(
        self,
        pred: torch.Tensor,
        reference: torch.Tensor,
        reference_mask: torch.Tensor,
        floating: torch.Tensor,
        reference_info: GridInfo | Mapping[str, Any],
        floating_info: GridInfo | Mapping[str, Any],
        reference_meta: Mapping[str, Any] | None = None,
        floating_meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write the outputs of one pair and return the ``metrics.json`` content.

        Args:
            pred: ``(5, h, w)`` network output (:class:`~monai_jrs.networks.nets.JRSStackedGenerator`).
            reference: ``(1, H, W)`` full-resolution reference image; ``reference_mask`` its lung mask.
            floating: ``(1, Hf, Wf)`` full-resolution floating image.
            reference_info: :class:`~monai_jrs.transforms.GridInfo` (or its dict) of the reference's resize to the
                network grid; ``floating_info`` that of the floating image.
            reference_meta: loader meta of the reference (``spacing``, ``filename``); default: read from
                ``reference``'s MetaTensor meta. ``floating_meta`` likewise (``format``, and ``filename_or_obj`` or
                ``filename``, the floating file, which names the output folder).
        """
        # imported here: monai_jrs.inferers imports monai_jrs.transforms, which imports this module
        from monai_jrs.inferers import JRSInferer, stacked_to_dict

        pred = pred.as_tensor() if isinstance(pred, MetaTensor) else torch.as_tensor(pred)
        if pred.ndim != 3 or pred.shape[0] != 5:
            raise ValueError(f"`pred` must have shape (5, h, w) (JRSStackedGenerator output), got {tuple(pred.shape)}.")
        ref_meta, flt_meta = _loader_meta(reference, reference_meta), _loader_meta(floating, floating_meta)
        flt_path = Path(str(flt_meta.get("filename_or_obj") or flt_meta.get("filename")))
        ref_info = GridInfo.from_dict(reference_info)
        flt_img = _plain(floating)
        inferer = JRSInferer(ref_info.network_shape, dense=self.refine)
        result = inferer.to_full_resolution(stacked_to_dict(pred[None].float()), flt_img, ref_info, floating_info,
                                            field_only=self.refine is not None)
        result = inferer.refine_full_resolution(result, _plain(reference), _plain(reference_mask), flt_img)
        return save_registration_result(
            result, flt_path, self.output_dir / image_stem(flt_path), _plain(reference), _plain(reference_mask),
            ref_meta, flt_img, flt_meta, overwrite=self.overwrite,
        )


def _loader_meta(img: torch.Tensor, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if meta is not None:
        return dict(meta)
    return from_collatable_meta(img.meta) if isinstance(img, MetaTensor) else {}


def _plain(img: torch.Tensor) -> torch.Tensor:
    return (img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)).float()


def _to_meta_tensor(x: torch.Tensor, meta: Mapping[str, Any]) -> MetaTensor:
    m = to_collatable_meta(meta)
    sp = meta.get("spacing")
    affine = torch.eye(3, dtype=torch.float64)
    if sp is not None:
        affine[0, 0], affine[1, 1] = float(sp[0]), float(sp[1])
    m["filename_or_obj"] = meta.get("filename", "")
    m["spatial_shape"] = np.asarray(x.shape[1:])
    m["original_channel_dim"] = 0
    return MetaTensor(x, affine=affine, meta=m)
