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
"""Seeded tiny JRS samples shared by the engine tests."""

from __future__ import annotations

import torch

from monai_jrs.data.testing import make_chest_phantom

__all__ = ["jrs_sample"]


def jrs_sample(
    g: torch.Generator, floating_mask: bool = True, ddf_applied: bool = True, max_shift: int = 2
) -> dict:
    """One un-batched JRS sample: (1, 32, 32) images and masks, (2, 32, 32) applied DDF.

    The lung mask is that of :func:`~monai_jrs.data.testing.make_chest_phantom`; the images are it plus uniform noise,
    the floating one shifted along the columns.
    """
    mask = torch.from_numpy(make_chest_phantom((32, 32), noise=0.0)[1]).float()[None]
    shift = int(torch.randint(-max_shift, max_shift + 1, (1,), generator=g))
    d = {
        "reference": (0.5 * mask + 0.3 * torch.rand(1, 32, 32, generator=g)).clamp(0, 1),
        "floating": (0.5 * mask.roll(shift, -1) + 0.3 * torch.rand(1, 32, 32, generator=g)).clamp(0, 1),
        "reference_mask": mask,
    }
    if floating_mask:
        d["floating_mask"] = mask.roll(shift, -1)
    if ddf_applied:
        d["ddf_applied"] = torch.randn(2, 32, 32, generator=g)
    return d
