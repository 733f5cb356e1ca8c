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
"""Networks of monai_jrs: JRS-GAN generator and discriminator, their blocks, and the VGG16 feature extractor."""

from __future__ import annotations

from .blocks import (
    AffineRefinementNet,
    FeatureFusionSegmentation,
    GlobalAlignment,
    LearnedFeatureSegmentation,
    ResidualBlock,
    bound_displacement,
    compose_affine_and_local,
    integrate_velocity,
    otsu_threshold,
    rescale_affine,
)
from .nets import JRS_GENERATOR_PRESETS, JRSDiscriminator, JRSGenerator, VGG16Features

__all__ = [
    "AffineRefinementNet",
    "FeatureFusionSegmentation",
    "GlobalAlignment",
    "JRSDiscriminator",
    "JRSGenerator",
    "JRS_GENERATOR_PRESETS",
    "LearnedFeatureSegmentation",
    "ResidualBlock",
    "VGG16Features",
    "bound_displacement",
    "compose_affine_and_local",
    "integrate_velocity",
    "otsu_threshold",
    "rescale_affine",
]
