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

import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_jrs.visualize import ddf_to_rgb, make_grid, mask_contour, overlay_contours, to_uint8_gray


class TestOverlay(unittest.TestCase):
    def test_contour_of_square(self):
        m = torch.zeros(1, 1, 8, 8)
        m[..., 2:6, 2:6] = 1
        c = mask_contour(m)
        self.assertEqual(int(c.sum()), 12)  # 4x4 square: 16 pixels minus the 2x2 interior
        self.assertFalse(c[3, 3] or c[0, 0])

    def test_overlay_colours(self):
        img = torch.full((8, 8), 0.5)
        m = torch.zeros(8, 8)
        m[2:6, 2:6] = 1
        rgb = overlay_contours(img, [m], colors=((255, 0, 0),))
        self.assertEqual(rgb.shape, (8, 8, 3))
        self.assertEqual(tuple(rgb[2, 2]), (255, 0, 0))
        self.assertEqual(tuple(rgb[0, 0]), (128, 128, 128))

    def test_gray_clips_nan(self):
        g = to_uint8_gray(np.array([[np.nan, 2.0], [-1.0, 0.5]]))
        self.assertEqual(g[..., 0].tolist(), [[0, 255], [0, 128]])

    def test_ddf_rgb(self):
        ddf = torch.zeros(2, 4, 4)
        ddf[1] = 3.0
        rgb = ddf_to_rgb(ddf)
        self.assertEqual(rgb.shape, (4, 4, 3))
        self.assertEqual(int(rgb.max()), 255)
        self.assertEqual(int(ddf_to_rgb(torch.zeros(2, 4, 4)).max()), 0)

    @parameterized.expand([[torch.zeros(3, 4, 4)], [torch.zeros(4)]])
    def test_ddf_bad_shape(self, ddf):
        with self.assertRaises(ValueError):
            ddf_to_rgb(ddf)

    def test_grid(self):
        t = np.zeros((4, 5, 3), dtype=np.uint8)
        g = make_grid([[t, t], [t]], pad=1)
        self.assertEqual(g.shape, (2 * 5 + 1, 2 * 6 + 1, 3))
        with self.assertRaises(ValueError):
            make_grid([[t, np.zeros((3, 3, 3), dtype=np.uint8)]])


if __name__ == "__main__":
    unittest.main()
