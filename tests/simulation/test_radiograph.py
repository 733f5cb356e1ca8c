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
"""Tests of :mod:`monai_jrs.simulation.radiograph`: the acquisition model and lung opacities, on the test phantom."""

from __future__ import annotations

import datetime
import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_jrs.data.testing import make_chest_phantom
from monai_jrs.simulation import (
    OPACITY_KINDS,
    AcquisitionParams,
    attenuation_to_radiograph,
    burn_in_text,
    gaussian_blur,
    lung_opacity,
    sample_acquisition,
)


def _line_integral_and_lungs(shape=(64, 56)) -> tuple[torch.Tensor, torch.Tensor]:
    """A line-integral image ``L`` (dense body, air-filled lungs) and the lung mask, from the test phantom."""
    image, mask = make_chest_phantom(shape, noise=0.0)
    return torch.from_numpy(3.0 * image).float(), torch.from_numpy(mask).float()


class TestAcquisition(unittest.TestCase):
    def test_radiograph_range_and_reproducible(self):
        line_integral, lungs = _line_integral_and_lungs()
        params = sample_acquisition(np.random.default_rng(0), lung_bbox=(0.2, 0.8, 0.1, 0.9),
                                    date=datetime.date(2024, 1, 2))
        a = attenuation_to_radiograph(line_integral, params, np.random.default_rng(1))
        b = attenuation_to_radiograph(line_integral, params, np.random.default_rng(1))
        self.assertEqual((tuple(a.shape), a.dtype), ((64, 56), torch.float32))
        self.assertTrue(bool(a.min() >= 0.0) and bool(a.max() <= 1.0))
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        self.assertLess(float(a[lungs > 0].mean()), float(a[lungs == 0].mean()))  # lungs darker (MONOCHROME2)
        self.assertEqual(len(params.markers), 2)  # side marker and date
        self.assertEqual(params.markers[1][0], "2024-01-02")

    def test_no_processing_keeps_the_order_of_attenuation(self):
        line_integral, _ = _line_integral_and_lungs()
        params = AcquisitionParams(photons=1e12, edge_gain=0.0, detector_noise=0.0, window=(0.0, 100.0))
        out = attenuation_to_radiograph(line_integral, params, np.random.default_rng(0))
        order = torch.argsort(line_integral.flatten())
        self.assertTrue(bool((out.flatten()[order].diff() >= -1e-4).all()))  # monotone in L

    def test_blur_and_text(self):
        x = torch.zeros(21, 21)
        x[10, 10] = 1.0
        blurred = gaussian_blur(x, 2.0)
        self.assertAlmostEqual(float(blurred.sum()), 1.0, places=3)
        self.assertIs(gaussian_blur(x, 0.0), x)
        with self.assertRaisesRegex(ValueError, "2-D"):
            gaussian_blur(x[None], 1.0)
        text = burn_in_text(torch.zeros(40, 60), [("L", 0.1, 0.1, 0.3)])
        self.assertGreater(float(text.max()), 0.5)
        self.assertIs(burn_in_text(x, []), x)


class TestLungOpacity(unittest.TestCase):
    @parameterized.expand([(kind,) for kind in OPACITY_KINDS])
    def test_inside_the_lungs(self, kind):
        _, lungs = _line_integral_and_lungs()
        extra = lung_opacity(lungs, np.random.default_rng(3), kind, severity=1.0)
        self.assertEqual(tuple(extra.shape), tuple(lungs.shape))
        self.assertGreater(float(extra.max()), 0.0)
        self.assertEqual(float(extra[lungs == 0].abs().max()), 0.0)
        self.assertGreaterEqual(float(extra.min()), 0.0)

    def test_errors(self):
        _, lungs = _line_integral_and_lungs()
        with self.assertRaisesRegex(ValueError, "kind"):
            lung_opacity(lungs, np.random.default_rng(0), "fracture")
        with self.assertRaisesRegex(ValueError, "severity"):
            lung_opacity(lungs, np.random.default_rng(0), "nodule", severity=0.0)
        with self.assertRaisesRegex(ValueError, "non-empty"):
            lung_opacity(torch.zeros(8, 8), np.random.default_rng(0), "nodule")


if __name__ == "__main__":
    unittest.main()
