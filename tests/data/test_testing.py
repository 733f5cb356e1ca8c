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
"""Tests of :func:`monai_jrs.data.testing.make_chest_phantom`, the one chest phantom of the tests, and its users."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_jrs.data.testing import make_chest_phantom, make_synthetic_xray
from tests.engines.synthetic import jrs_sample
from tests.networks.synthetic import synthetic_chest
from tests.transforms.phantom import make_phantom


class TestChestPhantom(unittest.TestCase):
    def test_defaults_are_the_synthetic_xray(self):
        image, mask = make_chest_phantom((40, 48), seed=4)
        self.assertEqual((image.shape, image.dtype, mask.dtype), ((40, 48), np.float64, np.bool_))
        self.assertTrue(0.0 <= image.min() and image.max() <= 1.0)
        stored, stored_mask = make_synthetic_xray((40, 48), max_value=255, seed=4)
        np.testing.assert_array_equal(stored, np.round(image * 255).astype(np.uint16))
        np.testing.assert_array_equal(stored_mask, mask.astype(np.uint8))
        self.assertAlmostEqual(image[mask].mean(), 0.05 + 0.65 - 0.35, delta=0.05)  # dark lungs inside the body

    def test_noise_follows_the_seed(self):
        a, b, c = (make_chest_phantom((32, 32), seed=s)[0] for s in (1, 1, 2))
        np.testing.assert_array_equal(a, b)
        self.assertGreater(np.abs(a - c).max(), 0.0)
        clean = make_chest_phantom((32, 32), noise=0.0, ripple=0.0)[0]
        self.assertEqual(set(np.unique(clean).round(6).tolist()), {0.05, 0.35, 0.7})  # background, lungs, body

    def test_smooth_edges(self):
        hard = make_chest_phantom((64, 64), ripple=0.0, noise=0.0)[0]
        soft = make_chest_phantom((64, 64), ripple=0.0, noise=0.0, edge_softness=8.0)[0]
        self.assertLessEqual(len(np.unique(hard)), 3)  # background, body, lungs
        self.assertGreater(len(np.unique(soft)), 100)
        self.assertLess(np.abs(np.diff(soft, axis=1)).max(), np.abs(np.diff(hard, axis=1)).max())

    def test_asymmetric(self):
        sym, sym_mask = make_chest_phantom((64, 64), lungs=((0.0, -0.4, 0.6, 0.28), (0.0, 0.4, 0.6, 0.28)),
                                           ripple=0.0, noise=0.0)
        np.testing.assert_array_equal(sym, sym[:, ::-1])  # a mirror-symmetric phantom...
        asym, asym_mask = make_chest_phantom((64, 64), lungs=((0.0, -0.4, 0.6, 0.28), (0.0, 0.4, 0.6, 0.28)),
                                             ripple=0.0, noise=0.0, asymmetric=True, smooth=True)
        for flipped in (asym[:, ::-1], asym[::-1], asym[::-1, ::-1], asym.T):  # ...is not, with asymmetric=True
            self.assertGreater(np.abs(asym - flipped).mean(), 0.01)
        self.assertLess(asym_mask.sum(), sym_mask.sum())  # the heart is cut out of the lungs

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "at least"):
            make_chest_phantom((7, 20))


class TestPhantomUsers(unittest.TestCase):
    """The tests' phantoms are parameterisations of the shared one; lung pixel counts as before the unification."""

    @parameterized.expand(
        [
            ("synthetic_xray", lambda s: make_synthetic_xray(s)[1],
             [((64, 64), 1034), ((24, 40), 234), ((320, 288), 24178)]),
            ("transforms", lambda s: make_phantom(*s)[1], [((64, 64), 934), ((60, 100), 1370)]),
            ("networks", lambda s: synthetic_chest(s)[1], [((300, 260), 13400), ((96, 96), 1553), ((40, 44), 286)]),
        ]
    )
    def test_lung_pixel_counts(self, _, mask_of, expected):
        for shape, count in expected:
            self.assertEqual(int(mask_of(shape).sum()), count, shape)

    def test_engine_sample_uses_the_phantom_mask(self):
        sample = jrs_sample(torch.Generator().manual_seed(0))
        mask = torch.from_numpy(make_chest_phantom((32, 32), noise=0.0)[1]).float()[None]
        torch.testing.assert_close(sample["reference_mask"], mask)


if __name__ == "__main__":
    unittest.main()
