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
"""One registration pipeline for every entry point: the network-grid contract, from full-resolution inputs back.

:class:`JRSInferer` (a MONAI :class:`~monai.inferers.Inferer`) composes the stages that the command line, the Python
API, bundle inference, MONAI Label and the benchmarks share:

1. **to the network grid**: :func:`~monai_jrs.transforms.resize_to_network` of the reference, its lung mask
   (bilinear, then 0.5 threshold) and the floating image, each with its own :class:`GridInfo`;
2. **network**: the generator (global stage + deformable stage + segmentation head), called with named inputs and
   read as named outputs (:class:`~monai_jrs.utils.enums.JRSKeys`), whether it is a
   :class:`~monai_jrs.networks.nets.JRSGenerator` or the stacked export adapter
   :class:`~monai_jrs.networks.nets.JRSStackedGenerator`;
3. **refinement** (optional): a per-pair correction ``refine(reference, floating, reference_mask, ddf) -> ddf``
   of the network-grid field, e.g. :class:`~monai_jrs.networks.blocks.InstanceOptimization`;
4. **back to full resolution**: the exact mapping of every output onto each input's own grid
   (:func:`full_resolution_ddf`, letterbox padding and different reference/floating sizes included);
5. **dense refinement at full resolution** (optional, the default of ``monai-jrs register``): a per-pair correction
   ``dense.refine(reference, floating, reference_mask, ddf) -> (ddf, stats)`` of the full-resolution field over the
   whole image, :class:`~monai_jrs.networks.blocks.DenseRefinement` (affine + coarse-to-fine control grid on
   MIND-SSC features); the registered mask is then the reference mask and the floating mask the reference mask
   carried back through the refined field (:func:`~monai_jrs.networks.blocks.carry_mask_to_floating`).

The result is a :class:`JRSResult` of named tensors; nothing downstream reads channel indices.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import Inferer

from monai_jrs.transforms import (
    GridInfo,
    full_resolution_ddf,
    keep_largest_components,
    resize_to_network,
    restore_to_original,
)
from monai_jrs.utils.conventions import identity_grid, invert_ddf, warp
from monai_jrs.utils.enums import JRSKeys

__all__ = [
    "MASK_SOURCES",
    "NETWORK_OUTPUT_KEYS",
    "STACKED_OUTPUT_KEYS",
    "NetworkGridImage",
    "JRSResult",
    "JRSInferer",
    "carry_mask_back",
    "full_resolution_ddf",  # re-exported from monai_jrs.transforms.spatial
    "stacked_to_dict",
    "dict_to_stacked",
]

#: where :class:`JRSInferer` takes the lung masks from.
MASK_SOURCES = ("segmentation", "reference")
#: the named network-grid outputs of one forward pass.
NETWORK_OUTPUT_KEYS = (JRSKeys.REGISTERED, JRSKeys.REGISTERED_MASK_PROB, JRSKeys.REGISTERED_MASK, JRSKeys.DDF)
#: channels of each output in the stacked single-tensor layout of the export adapter (5 channels in all).
STACKED_OUTPUT_KEYS: tuple[tuple[JRSKeys, int], ...] = (
    (JRSKeys.REGISTERED, 1),
    (JRSKeys.REGISTERED_MASK_PROB, 1),
    (JRSKeys.REGISTERED_MASK, 1),
    (JRSKeys.DDF, 2),
)


def stacked_to_dict(pred: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split the ``(B, 5, h, w)`` output of the stacked export adapter into named outputs.

    Args:
        pred: ``(B, 5, h, w)`` or ``(5, h, w)``: registered, mask probability, binary mask, DDF rows, DDF columns.

    Returns:
        ``{JRSKeys.REGISTERED: (B, 1, h, w), REGISTERED_MASK_PROB, REGISTERED_MASK, DDF: (B, 2, h, w)}``
        (batch dimension as given).

    Raises:
        ValueError: ``pred`` does not have 5 channels.
    """
    channel_dim = pred.ndim - 3
    total = sum(n for _, n in STACKED_OUTPUT_KEYS)
    if pred.ndim not in (3, 4) or pred.shape[channel_dim] != total:
        raise ValueError(f"`pred` must have shape (B, {total}, h, w) or ({total}, h, w), got {tuple(pred.shape)}.")
    parts = torch.split(pred, [n for _, n in STACKED_OUTPUT_KEYS], dim=channel_dim)
    return {k.value: p for (k, _), p in zip(STACKED_OUTPUT_KEYS, parts)}


def dict_to_stacked(outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`stacked_to_dict`: ``(B, 5, h, w)`` from the named outputs."""
    return torch.cat([outputs[k.value] for k, _ in STACKED_OUTPUT_KEYS], dim=1)


@dataclass
class NetworkGridImage:
    """An image (or mask) on its full-resolution grid and on the network grid.

    Attributes:
        full: ``(C, H, W)`` on the image's own grid.
        net: ``(C, h, w)`` on the network grid.
        info: how one became the other (:class:`~monai_jrs.transforms.GridInfo`).
    """

    full: torch.Tensor
    net: torch.Tensor
    info: GridInfo


@dataclass
class JRSResult:
    """The named outputs of one registered pair.

    Attributes:
        network: network-grid outputs keyed by :data:`NETWORK_OUTPUT_KEYS` values, each ``(1, C, h, w)``.
        ddf: ``(1, 2, H, W)`` on the reference's full-resolution grid: ``registered(p) = floating(p + ddf(p))`` with
            ``p`` in reference pixels and ``p + ddf(p)`` in floating pixels (channel 0 along rows).
        registered: ``(1, 1, H, W)`` floating image warped onto the reference grid.
        registered_mask: ``(1, 1, H, W)`` {0, 1} lung mask of the registered image (two largest components).
        floating_mask: ``(1, 1, Hf, Wf)`` {0, 1} lung mask of the floating image on its own grid.
        reference_info: :class:`GridInfo` of the reference; ``floating_info`` of the floating image.
        refined: whether the field was refined (then the registered mask is the reference mask and the floating
            mask is the reference mask carried back through the refined field).
        timings: seconds per stage (``network_s``, ``refine_s``, ``resample_s``, ``dense_s``).
        quality: what the dense refinement measured (``ncc_chest``, ``ssd_before``, ``ssd_after``, ``low_quality``,
            ``affine_correction``), empty without it.
    """

    network: dict[str, torch.Tensor]
    ddf: torch.Tensor
    registered: torch.Tensor
    registered_mask: torch.Tensor
    floating_mask: torch.Tensor
    reference_info: GridInfo
    floating_info: GridInfo
    refined: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)


def _sample_image(image: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``image`` ``(1, C, Hf, Wf)`` at floating pixels ``coords`` ``(1, 2, H, W)`` (zeros outside)."""
    hf, wf = image.shape[2:]
    grid = torch.stack(
        (coords[:, 1] * (2.0 / max(wf - 1, 1)) - 1.0, coords[:, 0] * (2.0 / max(hf - 1, 1)) - 1.0), dim=-1
    )
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def carry_mask_back(mask_net: torch.Tensor, ddf_net: torch.Tensor) -> torch.Tensor:
    """A reference-grid mask carried onto the floating image's grid through the inverse of ``ddf_net``.

    Args:
        mask_net: ``(B, 1, h, w)`` soft or binary mask on the reference's network grid.
        ddf_net: ``(B, 2, h, w)`` field (reference grid -> floating grid, network pixels).

    Returns:
        ``(B, 1, h, w)`` soft mask on the floating image's network grid (zeros outside the field of view).
    """
    return warp(mask_net.float(), invert_ddf(ddf_net), padding_mode="zeros")


def _lungs(mask: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` largest components of a ``(1, 1, H, W)`` bool mask, as float {0, 1} (0 keeps all)."""
    if count <= 0:
        return mask.float()
    return torch.from_numpy(keep_largest_components(mask[0, 0].cpu().numpy(), count).astype(np.float32))[None, None]


class JRSInferer(Inferer):
    """Register full-resolution radiographs with a JRS generator: resize, network, refinement, exact map back.

    Args:
        size: network grid, ``n`` (square) or ``(h, w)``; must be what the network was trained at.
        keep_aspect: letterbox the images on the network grid (uniform scale, centred, zero padding) instead of an
            anisotropic resize; the mapping back accounts for the padding exactly.
        refine: optional ``refine(reference, floating, reference_mask, ddf) -> ddf`` on the network grid
            (``(1, 1, h, w)`` images, ``(1, 2, h, w)`` field), e.g.
            :class:`~monai_jrs.networks.blocks.InstanceOptimization`; it runs with gradients enabled.
        num_components: connected components kept in the full-resolution masks (2: the lungs; 0 keeps all).
        mask_source: ``"segmentation"``: the masks come from the generator's segmentation of the registered image;
            ``"reference"``: the reference mask is the registered mask and is carried back as the floating mask (for
            a generator trained without the segmentation term, e.g. the JRS-NoSeg ablation). A refinement always
            uses the reference mask (the segmentation head saw the unrefined registration).
        device: where the network runs (inputs are moved there; results come back on the CPU).
        dense: optional full-resolution refinement (stage 5) with a ``refine(reference, floating, reference_mask,
            ddf) -> (ddf, stats)`` method on ``(1, 1, H, W)`` / ``(1, 1, Hf, Wf)`` images and the ``(1, 2, H, W)``
            field, e.g. :class:`~monai_jrs.networks.blocks.DenseRefinement`; it runs with gradients enabled.

    Raises:
        ValueError: unknown ``mask_source``.

    Example::

        >>> from monai_jrs.networks.nets import JRSGenerator
        >>> net = JRSGenerator(features=4, num_res_blocks=1, coarse_factor=4).eval()
        >>> ref, flt = torch.rand(1, 48, 40), torch.rand(1, 60, 52)
        >>> mask = torch.zeros(1, 48, 40); mask[:, 10:38, 6:34] = 1
        >>> result = JRSInferer(size=32)(ref, mask, flt, net)
        >>> tuple(result.ddf.shape), tuple(result.registered.shape), tuple(result.floating_mask.shape)
        ((1, 2, 48, 40), (1, 1, 48, 40), (1, 1, 60, 52))
    """

    def __init__(
        self,
        size: int | Sequence[int],
        keep_aspect: bool = False,
        refine: Callable[..., torch.Tensor] | None = None,
        num_components: int = 2,
        mask_source: str = "segmentation",
        device: str | torch.device = "cpu",
        dense: Any | None = None,
    ) -> None:
        super().__init__()
        if mask_source not in MASK_SOURCES:
            raise ValueError(f"`mask_source` must be one of {MASK_SOURCES}, got {mask_source!r}.")
        self.mask_source = mask_source
        self.size = size
        self.keep_aspect = bool(keep_aspect)
        self.refine = refine
        self.num_components = int(num_components)
        self.device = torch.device(device)
        self.dense = dense

    # -- stage 1: the network grid ---------------------------------------------------------------------------------
    def to_network_grid(
        self, image: torch.Tensor, spacing: Sequence[float] | None = None, is_mask: bool = False
    ) -> NetworkGridImage:
        """Put a ``(1, H, W)`` image (or lung mask: bilinear, then thresholded at 0.5) on the network grid."""
        net, info = resize_to_network(image.float(), self.size, keep_aspect=self.keep_aspect, mode="bilinear",
                                      spacing=spacing)
        if is_mask:
            net = (net > 0.5).float()
        return NetworkGridImage(full=image, net=net, info=info)

    def prepare_reference(
        self, reference: torch.Tensor, reference_mask: torch.Tensor, spacing: Sequence[float] | None = None
    ) -> tuple[NetworkGridImage, NetworkGridImage]:
        """The reference and its mask on the network grid, computed once for every follow-up of a patient.

        Raises:
            ValueError: the mask does not have the reference's shape, or it is empty.
        """
        if tuple(reference_mask.shape[-2:]) != tuple(reference.shape[-2:]):
            raise ValueError(f"`reference_mask` must have the reference's shape {tuple(reference.shape[-2:])}, got "
                             f"{tuple(reference_mask.shape[-2:])}.")
        if not bool((reference_mask > 0.5).any()):
            raise ValueError("`reference_mask` is empty: the reference needs a lung mask with at least one pixel.")
        ref = self.to_network_grid(reference, spacing)
        return ref, NetworkGridImage(full=reference_mask, net=self.to_network_grid(reference_mask, is_mask=True).net,
                                     info=ref.info)

    # -- stage 2 + 3: network and refinement on the network grid ---------------------------------------------------
    def predict(
        self,
        reference: torch.Tensor,
        floating: torch.Tensor,
        reference_mask: torch.Tensor,
        network: Callable[..., Any],
        timings: dict[str, float] | None = None,
    ) -> tuple[dict[str, torch.Tensor], bool]:
        """Network (+ refinement) on ``(B, 1, h, w)`` network-grid inputs; returns the named outputs and ``refined``.

        ``network`` is a :class:`~monai_jrs.networks.nets.JRSGenerator` (its 4-tuple forward), the stacked adapter
        :class:`~monai_jrs.networks.nets.JRSStackedGenerator` / an exported TorchScript module (one ``(B, 3, h, w)``
        tensor in, ``(B, 5, h, w)`` out), or any callable returning the named outputs as a mapping.
        """
        from monai_jrs.networks.nets import JRSGenerator, JRSStackedGenerator

        timings = timings if timings is not None else {}
        t = time.perf_counter()
        if isinstance(network, JRSStackedGenerator) or not isinstance(network, JRSGenerator):
            raw = network(torch.cat([reference, floating, reference_mask], dim=1))
            outputs = dict(raw) if isinstance(raw, Mapping) else stacked_to_dict(raw)
        else:
            outputs = JRSGenerator.outputs_to_dict(network(reference, floating, reference_mask))
        outputs = {k: v.float() for k, v in outputs.items()}
        timings["network_s"] = time.perf_counter() - t
        if self.refine is not None:
            t = time.perf_counter()
            with torch.enable_grad():
                ddf = self.refine(reference, floating, reference_mask, outputs[JRSKeys.DDF.value]).detach()
            outputs[JRSKeys.REGISTERED.value], outputs[JRSKeys.DDF.value] = warp(floating, ddf), ddf
            timings["refine_s"] = time.perf_counter() - t
        if self.refine is not None or self.mask_source == "reference":
            # the segmentation head saw the image registered by the unrefined field (or was not trained)
            outputs[JRSKeys.REGISTERED_MASK_PROB.value] = reference_mask.float()
            outputs[JRSKeys.REGISTERED_MASK.value] = reference_mask.float()
        return outputs, self.refine is not None

    # -- stage 4: back to every input's own grid -------------------------------------------------------------------
    def to_full_resolution(
        self,
        outputs: Mapping[str, torch.Tensor],
        floating_full: torch.Tensor,
        reference_info: GridInfo | Mapping[str, Any],
        floating_info: GridInfo | Mapping[str, Any],
        refined: bool = False,
        timings: dict[str, float] | None = None,
        field_only: bool = False,
    ) -> JRSResult:
        """Map the named network-grid outputs of one pair to full resolution.

        Args:
            outputs: named outputs of :meth:`predict`, each ``(1, C, h, w)``.
            floating_full: ``(1, Hf, Wf)`` floating image on its own grid (sampled for the registered image).
            reference_info, floating_info: the :class:`GridInfo` of each resize.
            refined: whether ``outputs`` come from a refinement.
            timings: stage timings, completed with ``resample_s``.
            field_only: map only the field (the registered image and masks are left empty, ``(1, 1, 0, 0)``):
                for a :meth:`refine_full_resolution` that recomputes them.
        """
        timings = timings if timings is not None else {}
        t = time.perf_counter()
        ref_info, flt_info = GridInfo.from_dict(reference_info), GridInfo.from_dict(floating_info)
        outputs = {k: v.detach().cpu().float() for k, v in outputs.items()}
        ddf_net, prob_net = outputs[JRSKeys.DDF.value], outputs[JRSKeys.REGISTERED_MASK_PROB.value]
        ddf = full_resolution_ddf(ddf_net, ref_info, flt_info)
        if field_only:
            empty = torch.zeros(1, 1, 0, 0)
            timings["resample_s"] = time.perf_counter() - t
            return JRSResult(network=outputs, ddf=ddf, registered=empty, registered_mask=empty, floating_mask=empty,
                             reference_info=ref_info, floating_info=flt_info, refined=refined, timings=timings)
        registered = _sample_image(floating_full.float().cpu()[None], identity_grid(list(ref_info.original_shape)) + ddf)
        registered_mask = _lungs(restore_to_original(prob_net, ref_info) > 0.5, self.num_components)
        # the registered mask carried back onto the floating image's network grid through the inverse field
        flt_mask_net = carry_mask_back(prob_net, ddf_net)
        floating_mask = _lungs(restore_to_original(flt_mask_net, flt_info) > 0.5, self.num_components)
        timings["resample_s"] = time.perf_counter() - t
        return JRSResult(
            network=outputs, ddf=ddf, registered=registered, registered_mask=registered_mask,
            floating_mask=floating_mask, reference_info=ref_info, floating_info=flt_info, refined=refined,
            timings=timings,
        )

    # -- stage 5: dense refinement at full resolution ---------------------------------------------------------------
    def refine_full_resolution(
        self,
        result: JRSResult,
        reference_full: torch.Tensor,
        reference_mask_full: torch.Tensor,
        floating_full: torch.Tensor,
        dense: Any | None = None,
    ) -> JRSResult:
        """Refine the full-resolution field of ``result`` with ``dense`` (default: :attr:`dense`); a new result.

        Args:
            result: output of :meth:`to_full_resolution`.
            reference_full: ``(1, H, W)`` reference on its own grid; ``reference_mask_full`` its lung mask.
            floating_full: ``(1, Hf, Wf)`` floating image on its own grid.
            dense: the refinement (see the class arguments); None: :attr:`dense`; neither: ``result`` unchanged.

        Returns:
            the refined :class:`JRSResult`: field, registered image, the reference mask (``num_components`` largest
            components) as registered mask, the floating mask carried back through the refined field, the
            refinement's ``quality`` and ``dense_s`` in the timings.
        """
        from monai_jrs.networks.blocks.dense_refinement import carry_mask_to_floating

        dense = dense if dense is not None else self.dense
        if dense is None:
            return result
        t = time.perf_counter()
        ref = reference_full.float().cpu()[None]
        mask = (reference_mask_full.float().cpu()[None] > 0.5).float()
        flt = floating_full.float().cpu()[None]
        with torch.enable_grad():
            ddf, stats = dense.refine(ref, flt, mask, result.ddf)
        ddf = ddf.detach()
        registered = _sample_image(flt, identity_grid(list(ddf.shape[2:])) + ddf)
        registered_mask = _lungs(mask > 0.5, self.num_components)
        floating_mask = _lungs(carry_mask_to_floating(registered_mask, ddf, flt.shape[2:], max_size=256) > 0.5,
                               self.num_components)
        timings = {**result.timings, "dense_s": time.perf_counter() - t}
        quality = {"ncc_chest": stats.ncc_chest[0], "ssd_before": stats.ssd_before[0],
                   "ssd_after": stats.ssd_after[0], "low_quality": bool(stats.low_quality[0]),
                   "affine_correction": stats.affine[0]}
        return dataclasses.replace(result, ddf=ddf, registered=registered, registered_mask=registered_mask,
                                   floating_mask=floating_mask, refined=True, timings=timings, quality=quality)

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        reference: torch.Tensor | NetworkGridImage,
        reference_mask: torch.Tensor | NetworkGridImage,
        floating: torch.Tensor,
        network: Callable[..., Any],
        reference_spacing: Sequence[float] | None = None,
        floating_spacing: Sequence[float] | None = None,
    ) -> JRSResult:
        """Register one full-resolution floating image onto the reference.

        Args:
            reference: ``(1, H, W)`` reference in ``[0, 1]``, or :meth:`prepare_reference` output (reused across the
                follow-ups of one patient).
            reference_mask: ``(1, H, W)`` {0, 1} lung mask of the reference (or its prepared form).
            floating: ``(1, Hf, Wf)`` follow-up in ``[0, 1]``, any size.
            network: the generator (see :meth:`predict`).
            reference_spacing, floating_spacing: ``(row_mm, col_mm)``, or None (recorded in the grid infos).

        Returns:
            the :class:`JRSResult`.
        """
        if not isinstance(reference, NetworkGridImage) or not isinstance(reference_mask, NetworkGridImage):
            reference, reference_mask = self.prepare_reference(reference, reference_mask, reference_spacing)
        flt = self.to_network_grid(floating, floating_spacing)
        timings: dict[str, float] = {}
        outputs, refined = self.predict(
            reference.net[None].to(self.device), flt.net[None].to(self.device),
            reference_mask.net[None].to(self.device), network, timings,
        )
        result = self.to_full_resolution(outputs, floating, reference.info, flt.info, refined, timings,
                                         field_only=self.dense is not None)
        return self.refine_full_resolution(result, reference.full, reference_mask.full, floating)
