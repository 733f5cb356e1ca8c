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
"""String enums used as dictionary keys across monai_jrs (like MONAI's `GanKeys` / `AdversarialKeys`)."""

from __future__ import annotations

from monai.utils.enums import StrEnum

__all__ = ["JRSKeys", "DeformationProtocol", "SynthAppearancePart"]


class JRSKeys(StrEnum):
    """Keys of data dictionaries and of the generator/engine outputs.

    Data (inputs):
        REFERENCE: reference image ``I_ref`` (first visit), ``(C, H, W)`` per item.
        FLOATING: floating image ``I_flt`` (follow-up), to be registered onto the reference grid.
        REFERENCE_MASK: lung mask of the reference, {0, 1}.
        FLOATING_MASK: lung mask of the floating image (ground truth when known, e.g. synthetic pairs).
        DDF_APPLIED: the applied deformation ``I_Def-App`` ``(2, H, W)`` (see :mod:`monai_jrs.utils.conventions`).
        PATIENT_ID, VISIT: identifiers from a datalist.
        REFERENCE_INPUT, FLOATING_INPUT: optional appearance-randomised copies of the reference and floating images
            (:class:`~monai_jrs.transforms.RandSynthAppearanced`); when a training batch holds them the generators
            see these, while every loss and the discriminators use the clean images (see
            :class:`~monai_jrs.engines.JRSTrainer`).

    Outputs:
        REGISTERED: floating image warped onto the reference grid ``I_trans``.
        REGISTERED_MASK_PROB: soft lung mask of the registered image, in [0, 1].
        REGISTERED_MASK: binary lung mask of the registered image.
        DDF: recovered deformation ``I_Def-Recv``.
        REGISTERED_INPUT: the generator's own warped input when it ran on appearance-randomised inputs
            (``warp(floating_input, ddf)``); ``REGISTERED`` is then the clean floating image warped by the same DDF.
    """

    REFERENCE = "reference"
    FLOATING = "floating"
    REFERENCE_MASK = "reference_mask"
    FLOATING_MASK = "floating_mask"
    DDF_APPLIED = "ddf_applied"
    PATIENT_ID = "patient_id"
    VISIT = "visit"
    REFERENCE_INPUT = "reference_input"
    FLOATING_INPUT = "floating_input"
    REGISTERED = "registered"
    REGISTERED_MASK_PROB = "registered_mask_prob"
    REGISTERED_MASK = "registered_mask"
    DDF = "ddf"
    REGISTERED_INPUT = "registered_input"


class DeformationProtocol(StrEnum):
    """Synthetic deformation protocols.

    PAPER: Mahapatra et al. -- translation +/-[25, 40] px, rotation +/-[20, 180] deg in 5 deg steps, B-spline elastic
        +/-[1, 15] px, pairs kept only when Dice(original mask, deformed mask) < 0.70.
    FOLLOWUP: a milder repeat-visit protocol (few-degree rotation, small shifts, scale, soft elastic).
    """

    PAPER = "paper"
    FOLLOWUP = "followup"


class SynthAppearancePart(StrEnum):
    """Parts of :class:`~monai_jrs.transforms.RandSynthAppearance` (SynthMorph-style appearance randomisation), in
    the order they are applied.

    MONOTONIC: random monotonic intensity map (piecewise-linear, optional polarity flip).
    NONMONOTONIC: smooth random non-monotonic intensity map (sum of Gaussian bumps).
    LABELS: synthetic image from intensity-quantile classes (and the lung mask), blended with the mapped image.
    BIAS: smooth multiplicative bias field.
    BLUR: Gaussian blur.
    NOISE: additive Gaussian and signal-dependent (Poisson-like) noise.
    """

    MONOTONIC = "monotonic"
    NONMONOTONIC = "nonmonotonic"
    LABELS = "labels"
    BIAS = "bias"
    BLUR = "blur"
    NOISE = "noise"
