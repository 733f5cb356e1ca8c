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
"""The smooth chest phantom of the transform and inferer tests: :func:`monai_jrs.data.testing.make_chest_phantom`."""

from __future__ import annotations

import torch

from monai_jrs.data.testing import make_chest_phantom

__all__ = ["make_phantom"]


def make_phantom(height: int = 64, width: int | None = None, dtype: torch.dtype = torch.float32):
    """Smooth ``(1, H, W)`` image in [0, 1] (bright body, two dark lungs) and its ``(1, H, W)`` {0, 1} lung mask.

    Edges are smooth over ~``H / 16`` px so that bilinear resampling errors stay small.
    """
    image, mask = make_chest_phantom(
        (height, height if width is None else width),
        body=(0.05, 0.0, 0.85, 0.8),
        lungs=((-0.05, -0.38, 0.6, 0.25), (-0.05, 0.38, 0.6, 0.25)),
        contrast=(0.15, 0.7, 0.45),
        ripple=0.0,
        edge_softness=8.0,
        noise=0.0,
    )
    return torch.from_numpy(image)[None].to(dtype), torch.from_numpy(mask)[None].to(dtype)
