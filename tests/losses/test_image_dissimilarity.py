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
"""Exact-value tests of the NMI and VGG feature losses."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_jrs.losses import NormalizedMutualInformationLoss, VGGFeatureLoss, normalize_feature_maps
from monai_jrs.networks.nets.vgg import VGG16Features


def _nmi_numpy(a: np.ndarray, b: np.ndarray, num_bins: int = 23, sigma_ratio: float = 0.5) -> float:
    """Independent float64 NMI with Gaussian Parzen windows (bins at linspace(0, 1), sigma = ratio * spacing)."""
    centres = np.linspace(0.0, 1.0, num_bins)
    sigma = sigma_ratio * (centres[1] - centres[0])

    def window(x):
        w = np.exp(-((np.clip(x.reshape(-1, 1), 0, 1) - centres[None]) ** 2) / (2 * sigma**2))
        return w / w.sum(axis=1, keepdims=True)

    wa, wb = window(a), window(b)
    pa, pb = wa.mean(0), wb.mean(0)
    pab = wa.T @ wb / wa.shape[0]

    def entropy(p):
        return -np.sum(p * np.log(p + 1e-7))

    return (entropy(pa) + entropy(pb) + 1e-7) / (entropy(pab) + 1e-7)


class TestNormalizedMutualInformationLoss(unittest.TestCase):
    @parameterized.expand([(23, 0.5), (8, 0.3), (32, 1.0)])
    def test_values_against_numpy(self, num_bins, sigma_ratio):
        rng = np.random.default_rng(0)
        a = rng.random((2, 1, 12, 9))
        b = np.clip(0.6 * a + 0.4 * rng.random((2, 1, 12, 9)), 0, 1)
        loss = NormalizedMutualInformationLoss(num_bins=num_bins, sigma_ratio=sigma_ratio, reduction="none")
        got = loss(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        expected = [2.0 - _nmi_numpy(a[i], b[i], num_bins, sigma_ratio) for i in range(2)]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    def test_identity_is_minimum_and_bijection_invariant(self):
        torch.manual_seed(0)
        x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
        loss = NormalizedMutualInformationLoss()
        same, inverted, noise = loss(x, x), loss(x, 1.0 - x), loss(x, torch.rand_like(x))
        self.assertAlmostEqual(float(same), float(inverted), places=7)  # invariant to the bijection x -> 1 - x (float32 bin centres)
        self.assertLess(float(same) + 0.3, float(noise))
        self.assertTrue(0.0 <= float(same) <= 1.0 and 0.0 <= float(noise) <= 1.0)

    def test_reduction(self):
        torch.manual_seed(1)
        a, b = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
        per = NormalizedMutualInformationLoss(reduction="none")(a, b)
        self.assertEqual(tuple(per.shape), (3,))
        self.assertAlmostEqual(float(NormalizedMutualInformationLoss(reduction="sum")(a, b)), float(per.sum()), 5)
        self.assertAlmostEqual(float(NormalizedMutualInformationLoss()(a, b)), float(per.mean()), 5)

    def test_gradcheck(self):
        torch.manual_seed(2)
        a = (0.1 + 0.8 * torch.rand(1, 1, 4, 4, dtype=torch.float64)).requires_grad_()
        b = 0.1 + 0.8 * torch.rand(1, 1, 4, 4, dtype=torch.float64)
        loss = NormalizedMutualInformationLoss(num_bins=6)
        self.assertTrue(torch.autograd.gradcheck(lambda t: loss(t, b), (a,), fast_mode=True))

    def test_ill_shape(self):
        with self.assertRaisesRegex(ValueError, "shape"):
            NormalizedMutualInformationLoss()(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


class TestNormalizeFeatureMaps(unittest.TestCase):
    def test_exact(self):
        f = torch.tensor([[[[1.0, 3.0], [5.0, 9.0]], [[2.0, 2.0], [2.0, 2.0]]]])  # (1, 2, 2, 2)
        out = normalize_feature_maps(f)
        torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
        torch.testing.assert_close(out[0, 1], torch.zeros(2, 2))  # a constant map becomes 0, not NaN


class TestVGGFeatureLoss(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.extractor = VGG16Features(pretrained=False)

    def test_identity_zero_and_positive(self):
        torch.manual_seed(3)
        x, y = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
        loss = VGGFeatureLoss(extractor=self.extractor)
        self.assertEqual(float(loss(x, x)), 0.0)
        self.assertGreater(float(loss(x, y)), 1e-4)

    def test_value_is_mean_over_layers_of_normalised_mse(self):
        torch.manual_seed(4)
        x, y = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
        feats_x, feats_y = self.extractor(x), self.extractor(y)
        expected = sum(
            float((normalize_feature_maps(a) - normalize_feature_maps(b)).pow(2).mean()) for a, b in zip(feats_x, feats_y)
        ) / 13
        got = float(VGGFeatureLoss(extractor=self.extractor)(x, y))
        self.assertAlmostEqual(got, expected, places=6)
        first = float(VGGFeatureLoss(extractor=self.extractor, layers=[0])(x, y))
        self.assertAlmostEqual(
            first, float((normalize_feature_maps(feats_x[0]) - normalize_feature_maps(feats_y[0])).pow(2).mean()), 6
        )

    def test_gradient_reaches_input_not_weights(self):
        x = torch.rand(1, 1, 16, 16, requires_grad=True)
        VGGFeatureLoss(extractor=self.extractor)(x, torch.rand(1, 1, 16, 16)).backward()
        self.assertGreater(float(x.grad.abs().sum()), 0.0)
        self.assertTrue(all(p.grad is None for p in self.extractor.parameters()))

    def test_missing_weights_is_a_clear_error(self):
        import os
        import tempfile
        from unittest import mock

        with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"MONAI_JRS_VGG16_WEIGHTS": ""}):
            old = torch.hub.get_dir()
            torch.hub.set_dir(d)
            try:
                with self.assertRaisesRegex(FileNotFoundError, "vgg16-397923af.pth"):
                    VGGFeatureLoss()
            finally:
                torch.hub.set_dir(old)

    @parameterized.expand([([],), ([13],), ([0, 0],), ([-1],)])
    def test_bad_layers(self, layers):
        with self.assertRaisesRegex(ValueError, "layers"):
            VGGFeatureLoss(extractor=self.extractor, layers=layers)

    def test_ill_shape(self):
        with self.assertRaisesRegex(ValueError, "shape"):
            VGGFeatureLoss(extractor=self.extractor)(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 8))


if __name__ == "__main__":
    unittest.main()
