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
from __future__ import annotations

from monai_jrs.utils.enums import SynthAppearancePart

from .array import SYNTH_APPEARANCE_PARTS, NormalizeXRay, RandFollowUpAppearance, RandSynthAppearance
from .dictionary import (
    NormalizeXRayd,
    NormalizeXRayD,
    NormalizeXRayDict,
    RandFollowUpAppearanced,
    RandFollowUpAppearanceD,
    RandFollowUpAppearanceDict,
    RandSynthAppearanced,
    RandSynthAppearanceD,
    RandSynthAppearanceDict,
)
from .functional import (
    apply_intensity_lut,
    gaussian_mixture_lut,
    monotonic_lut,
    normalize_intensity,
    quantile_labels,
    robust_rescale,
    smooth_bias_field,
    sorted_quantiles,
)
