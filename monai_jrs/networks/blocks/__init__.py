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
"""Building blocks of the JRS networks."""

from __future__ import annotations

from .dense_refinement import DenseRefinement, DenseRefinementStats, carry_mask_to_floating, mind_ssc
from .displacement import bound_displacement, compose_affine_and_local, integrate_velocity, rescale_affine
from .global_alignment import AffineRefinementNet, GlobalAlignment, chest_window
from .refinement import InstanceOptimization, local_ncc_map
from .residual import ResidualBlock
from .segmentation import FeatureFusionSegmentation, LearnedFeatureSegmentation, otsu_threshold

__all__ = [
    "AffineRefinementNet",
    "DenseRefinement",
    "DenseRefinementStats",
    "FeatureFusionSegmentation",
    "GlobalAlignment",
    "LearnedFeatureSegmentation",
    "ResidualBlock",
    "InstanceOptimization",
    "bound_displacement",
    "carry_mask_to_floating",
    "chest_window",
    "compose_affine_and_local",
    "integrate_velocity",
    "local_ncc_map",
    "mind_ssc",
    "otsu_threshold",
    "rescale_affine",
]
