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
"""Tests of the robust normalisation of :mod:`monai_jrs.transforms.intensity` (functional, array, dict)."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from monai_jrs.transforms import NormalizeXRay, NormalizeXRayd, normalize_intensity


class TestNormalizeIntensity(unittest.TestCase):
    def test_range_and_types(self):
        rng = np.random.default_rng(0)
        arr = rng.normal(1000.0, 50.0, (32, 40))
        out = normalize_intensity(arr)
        self.assertIsInstance(out, np.ndarray)
        self.assertEqual((out.dtype, out.shape), (np.float32, arr.shape))
        self.assertEqual((float(out.min()), float(out.max())), (0.0, 1.0))
        t = normalize_intensity(torch.as_tensor(arr)[None])
        self.assertIsInstance(t, torch.Tensor)
        self.assertEqual((t.dtype, tuple(t.shape)), (torch.float32, (1, 32, 40)))
        np.testing.assert_allclose(t[0].numpy(), out)
        # order preserving: the brightest input pixel is (one of) the brightest output pixels
        self.assertEqual(out.flat[arr.argmax()], 1.0)

    def test_robust_to_outliers(self):
        # a smooth 64x64 ramp in [100, 200] plus 8 hot pixels (burned-in text) and 4 dead pixels
        base = np.tile(np.linspace(100.0, 200.0, 64), (64, 1))
        spoiled = base.copy()
        spoiled[0, :8] = 1e6
        spoiled[63, :4] = -1e5
        out = normalize_intensity(spoiled)
        naive = (spoiled - spoiled.min()) / (spoiled.max() - spoiled.min())
        self.assertLess(np.ptp(naive[1:63]), 0.01)  # min-max squashes the anatomy into 1% of the range...
        bulk = out[1:63]
        self.assertLess(bulk.min(), 0.02)  # ...the percentile clip keeps it spread over [0, 1]
        self.assertGreater(bulk.max(), 0.98)
        np.testing.assert_allclose(bulk, normalize_intensity(base)[1:63], atol=0.02)
        self.assertTrue(np.all(out[0, :8] == 1.0) and np.all(out[63, :4] == 0.0))

    def test_metatensor_kept(self):
        x = MetaTensor(torch.arange(20.0).reshape(1, 4, 5), meta={"filename": "a.dcm", "spacing": [0.1, 0.2]})
        out = NormalizeXRay(lower=0.0, upper=100.0)(x)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(out.meta["filename"], "a.dcm")
        torch.testing.assert_close(out.as_tensor(), (torch.arange(20.0) / 19.0).reshape(1, 4, 5))
        d = NormalizeXRayd(["a", "b"], allow_missing_keys=True)({"a": x})
        self.assertAlmostEqual(float(d["a"].max()), 1.0)

    def test_nearly_constant_warns(self):
        arr = np.zeros((20, 20))
        arr[3, 4] = 5.0  # the percentiles coincide
        with self.assertWarnsRegex(UserWarning, "coincide"):
            out = normalize_intensity(arr)
        self.assertEqual((out[3, 4], out.sum()), (1.0, 1.0))

    @parameterized.expand(
        [
            ("constant", np.full((4, 5), 3.0), {}, "constant"),
            ("nan", np.array([[0.0, math.nan], [1.0, 2.0]]), {}, "NaN"),
            ("inf", np.array([[0.0, math.inf], [1.0, 2.0]]), {}, "NaN or infinite"),
            ("empty", np.zeros((0, 5)), {}, "empty"),
            ("percentiles", np.eye(3), {"lower": 60.0, "upper": 40.0}, "percentiles"),
            ("percentile_range", np.eye(3), {"lower": -1.0}, "percentiles"),
        ]
    )
    def test_errors(self, _, arr, kwargs, msg):
        with self.assertRaisesRegex(ValueError, msg):
            normalize_intensity(arr, name="scan_007.dcm", **kwargs)

    def test_error_names_the_image(self):
        with self.assertRaisesRegex(ValueError, "scan_007.dcm"):
            normalize_intensity(np.ones((3, 3)), name="scan_007.dcm")
        x = MetaTensor(torch.ones(1, 3, 3), meta={"filename_or_obj": "/data/p1.png"})
        with self.assertRaisesRegex(ValueError, "/data/p1.png"):
            NormalizeXRay()(x)
        with self.assertRaisesRegex(ValueError, "percentiles"):
            NormalizeXRay(lower=10, upper=5)


if __name__ == "__main__":
    unittest.main()
