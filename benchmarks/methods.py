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
"""The methods compared in the benchmarks, behind one call: ``method(reference, floating, reference_mask)``.

Every method takes ``(1, 1, H, W)`` float tensors on one grid (the reference lung mask in {0, 1}) and returns a dict:

- ``ddf``: ``(1, 2, H, W)`` recovered field in pixels, ``registered(p) = floating(p + ddf(p))``, channel 0 along rows
  (:mod:`monai_jrs.utils.conventions`); absent for pure segmentation methods;
- ``floating_mask``: ``(1, 1, H, W)`` lung mask of the floating image in {0, 1}, i.e. what a user gets as the
  follow-up's segmentation: the reference mask carried to the floating grid through the inverse field for the
  registration methods, the network's own prediction for the segmentation baseline.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_jrs import inferers
from monai_jrs.utils.deps import require

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundle"

Result = dict[str, torch.Tensor]


def carry_mask_back(mask: torch.Tensor, ddf: torch.Tensor) -> torch.Tensor:
    """``(1, 1, H, W)`` reference-grid mask -> floating grid through the inverse of ``ddf``, thresholded at 0.5.

    For the baselines that predict a field only (VoxelMorph); JRS-Net goes through :class:`JRSInferer`.
    """
    return (inferers.carry_mask_back(mask, ddf) > 0.5).float()


class Identity:
    """No registration: the "before" column (zero field; the reference mask taken as the floating mask)."""

    name = "before"

    def __call__(self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor) -> Result:
        ddf = torch.zeros(1, 2, *reference.shape[2:])
        return {"ddf": ddf, "floating_mask": reference_mask.float()}


class JRSMethod:
    """A JRS generator (``bundle/configs/train.json#network_def``) with weights from a checkpoint.

    Args:
        weights: checkpoint holding ``{"model": state_dict}`` or a plain state dict.
        name: column name.
        use_seg_head: take the floating mask from the generator's segmentation of the registered image (carried back
            through the inverse field, as ``monai-jrs register`` does); otherwise carry the reference mask back
            (for JRS-NoSeg, whose segmentation head is untrained).
        refine: optional test-time refinement ``refine(reference, floating, reference_mask, ddf) -> ddf`` on the
            network grid (:class:`~monai_jrs.networks.blocks.InstanceOptimization`).
        dense: optional full-resolution refinement (stage 5 of :class:`~monai_jrs.inferers.JRSInferer`,
            :class:`~monai_jrs.networks.blocks.DenseRefinement`: the default mode of ``monai-jrs register``).
    """

    def __init__(self, weights: str | Path, name: str = "JRS-Net", use_seg_head: bool = True,
                 refine: Callable[..., torch.Tensor] | None = None, dense: Any | None = None) -> None:
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(str(BUNDLE / "configs" / "train.json"))
        self.network = parser.get_parsed_content("network_def")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.network.load_state_dict(state.get("model", state))
        self.network.eval()
        self.name, self.use_seg_head, self.refine, self.dense = name, use_seg_head, refine, dense
        self._inferers: dict[tuple[int, int], inferers.JRSInferer] = {}

    def __call__(self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor) -> Result:
        shape = tuple(reference.shape[2:])
        if shape not in self._inferers:  # the pairs are on the network grid already: the inferer resizes nothing
            self._inferers[shape] = inferers.JRSInferer(
                shape, refine=self.refine, mask_source="segmentation" if self.use_seg_head else "reference",
                dense=self.dense,
            )
        result = self._inferers[shape](reference[0], reference_mask[0], floating[0], self.network)
        return {"ddf": result.ddf, "floating_mask": result.floating_mask}


class VoxelMorphMethod:
    """A VoxelMorph baseline of :mod:`benchmarks.baselines` (weights trained on both protocols or follow-ups only)."""

    def __init__(self, weights: str | Path, name: str = "VoxelMorph") -> None:
        from baselines import voxelmorph_network

        self.name = name
        self.network = voxelmorph_network()
        self.network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["model"])
        self.network.eval()

    @torch.no_grad()
    def __call__(self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor) -> Result:
        _, ddf = self.network(floating, reference)
        return {"ddf": ddf, "floating_mask": carry_mask_back(reference_mask, ddf)}


class UNetMethod:
    """The UNet segmentation baseline: segments the floating image directly (no field)."""

    name = "UNet"

    def __init__(self, weights: str | Path) -> None:
        from baselines import unet_network

        self.network = unet_network()
        self.network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["model"])
        self.network.eval()

    @torch.no_grad()
    def __call__(self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor) -> Result:
        return {"floating_mask": (self.network(floating) > 0).float()}


def elastix_parameter_object(final_grid_spacing: float = 5.0):
    """The paper's elastix settings: affine then multi-resolution B-spline, both with Mattes mutual information.

    B-spline grid spacings 80/40/20/10/5 pixels (``FinalGridSpacingInPhysicalUnits`` 5 with the schedule 16/8/4/2/1 on
    a unit-spacing image), image pyramid 4/3/2/1/1, bending-energy penalty; the affine stage uses 4 resolutions.
    """
    itk = require("itk", "the elastix baseline")
    params = itk.ParameterObject.New()
    affine = params.GetDefaultParameterMap("affine", 4)
    affine["Metric"] = ["AdvancedMattesMutualInformation"]
    bspline = params.GetDefaultParameterMap("bspline", 5, float(final_grid_spacing))
    bspline["Metric"] = ["AdvancedMattesMutualInformation", "TransformBendingEnergyPenalty"]
    bspline["FinalGridSpacingInPhysicalUnits"] = [str(final_grid_spacing)]
    bspline["GridSpacingSchedule"] = ["16", "8", "4", "2", "1"]
    bspline["ImagePyramidSchedule"] = ["4", "4", "3", "3", "2", "2", "1", "1", "1", "1"]
    params.AddParameterMap(affine)
    params.AddParameterMap(bspline)
    return params


class ElastixMethod:
    """itk-elastix with :func:`elastix_parameter_object`; the field comes from transformix.

    transformix's deformation field ``u`` on the fixed (reference) grid is in physical ``(x, y)`` order with
    ``moving(x + u(x))`` sampled at fixed point ``x``; on a unit-spacing, zero-origin image this is our DDF with the
    channels swapped: ``ddf = (u_y, u_x)``.
    """

    name = "elastix"

    def __init__(self, threads: int | None = None) -> None:
        itk = require("itk", "the elastix baseline")
        self._itk = itk
        if threads:
            itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(int(threads))
        self.params = elastix_parameter_object()

    def __call__(self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor) -> Result:
        itk = self._itk
        fixed = itk.image_view_from_array(np.ascontiguousarray(reference[0, 0].numpy(), dtype=np.float32))
        moving = itk.image_view_from_array(np.ascontiguousarray(floating[0, 0].numpy(), dtype=np.float32))
        _, transform = itk.elastix_registration_method(fixed, moving, parameter_object=self.params,
                                                       log_to_console=False)
        with tempfile.TemporaryDirectory() as tmp:  # transformix writes deformationField.nii to its output folder
            transformix = itk.TransformixFilter.New(moving)
            transformix.SetTransformParameterObject(transform)
            transformix.SetComputeDeformationField(True)
            transformix.SetLogToConsole(False)
            transformix.SetOutputDirectory(tmp)
            transformix.Update()
            field = itk.array_from_image(transformix.GetOutputDeformationField())  # (H, W, 2) as (x, y)
        ddf = torch.from_numpy(np.ascontiguousarray(field[..., ::-1].transpose(2, 0, 1))).float()[None]
        return {"ddf": ddf, "floating_mask": carry_mask_back(reference_mask, ddf)}
