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
"""A smooth chest-X-ray-like phantom for the transform tests."""

from __future__ import annotations

import torch

__all__ = ["make_phantom"]


def make_phantom(height: int = 64, width: int | None = None, dtype: torch.dtype = torch.float32):
    """Smooth ``(1, H, W)`` image in [0, 1] (bright body, two dark lungs) and its ``(1, H, W)`` {0, 1} lung mask.

    Edges are smooth over ~``H / 16`` px so that bilinear resampling errors stay small.
    """
    width = height if width is None else width
    r = torch.linspace(-1.0, 1.0, height, dtype=torch.float64)[:, None]
    c = torch.linspace(-1.0, 1.0, width, dtype=torch.float64)[None, :]
    soft = 8.0

    def ellipse(r0, c0, a, b):
        return ((r - r0) / a) ** 2 + ((c - c0) / b) ** 2

    body = torch.sigmoid(soft * (1.0 - ellipse(0.05, 0.0, 0.85, 0.8)))
    left, right = ellipse(-0.05, -0.38, 0.6, 0.25), ellipse(-0.05, 0.38, 0.6, 0.25)
    lungs = torch.sigmoid(soft * (1.0 - left)) + torch.sigmoid(soft * (1.0 - right))
    image = (0.15 + 0.7 * body - 0.45 * lungs).clamp(0.0, 1.0)
    mask = ((left < 1.0) | (right < 1.0)).to(dtype)
    return image[None].to(dtype), mask[None]
