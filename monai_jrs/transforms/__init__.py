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
"""MONAI transforms of monai_jrs, each array transform with its dictionary twin (``...d``, ``...D``, ``...Dict``).

- :mod:`~monai_jrs.transforms.spatial`: resizing to the network grid and mapping results back (:class:`GridInfo`).
- :mod:`~monai_jrs.transforms.intensity`: robust normalisation, visit-to-visit appearance changes and SynthMorph-style
  appearance randomisation (:class:`RandSynthAppearance`).
- :mod:`~monai_jrs.transforms.deformation`: synthetic deformations (paper / follow-up protocols).
- :mod:`~monai_jrs.transforms.post`: post-processing of predicted masks.
- :mod:`~monai_jrs.transforms.subtraction`: temporal subtraction (registered follow-up minus reference, intensities
  matched; positive = follow-up denser) for interval change, and its display image.
- :mod:`~monai_jrs.transforms.io`: loading radiographs and lung masks, writing registration results.
"""

from __future__ import annotations

# io last: its loaders and writers (monai_jrs.data) use the spatial and intensity functions
from .deformation import (
    PROTOCOL_DEFAULTS,
    RandSyntheticDeformation,
    RandSyntheticDeformationd,
    RandSyntheticDeformationD,
    RandSyntheticDeformationDict,
    SyntheticDeformation,
    SyntheticDeformationError,
    affine_from_applied_operations,
    bspline_displacement,
    bspline_displacement_at,
    control_grid_shape,
    fov_mask,
    sampling_field_from_transform,
)
from .intensity import (
    SYNTH_APPEARANCE_PARTS,
    NormalizeXRay,
    NormalizeXRayd,
    NormalizeXRayD,
    NormalizeXRayDict,
    RandFollowUpAppearance,
    RandFollowUpAppearanced,
    RandFollowUpAppearanceD,
    RandFollowUpAppearanceDict,
    RandSynthAppearance,
    RandSynthAppearanced,
    RandSynthAppearanceD,
    RandSynthAppearanceDict,
    SynthAppearancePart,
    apply_intensity_lut,
    gaussian_mixture_lut,
    monotonic_lut,
    normalize_intensity,
    quantile_labels,
    robust_rescale,
    smooth_bias_field,
    sorted_quantiles,
)
from .post import (
    KeepLargestComponents,
    KeepLargestComponentsd,
    KeepLargestComponentsD,
    KeepLargestComponentsDict,
    keep_largest_components,
)
from .spatial import (
    GridInfo,
    ResizeToNetwork,
    ResizeToNetworkd,
    ResizeToNetworkD,
    ResizeToNetworkDict,
    ddf_to_original,
    full_resolution_ddf,
    resize_to_network,
    restore_to_original,
)
from .subtraction import (
    MATCH_METHODS,
    SIGN_CONVENTION,
    TemporalSubtraction,
    TemporalSubtractiond,
    TemporalSubtractionD,
    TemporalSubtractionDict,
    display_window,
    field_of_view_mask,
    match_intensity,
    subtraction_of,
    subtraction_to_display,
    temporal_subtraction,
)
from .io import (  # isort: skip
    LoadLungMask,
    LoadLungMaskd,
    LoadLungMaskD,
    LoadLungMaskDict,
    LoadXRay,
    LoadXRayd,
    LoadXRayD,
    LoadXRayDict,
    SaveRegistrationOutputs,
    SaveRegistrationOutputsd,
    SaveRegistrationOutputsD,
    SaveRegistrationOutputsDict,
)
