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
"""Segmentation heads: Otsu against a loop-based NumPy reference, fusion + Otsu, soft surrogate, learned head."""

from __future__ import annotations

import unittest

import numpy as np
import torch
import torch.nn.functional as F
from parameterized import parameterized

from monai_jrs.networks.blocks import FeatureFusionSegmentation, LearnedFeatureSegmentation, otsu_threshold


def otsu_numpy(values: np.ndarray, num_bins: int = 256) -> float:
    """Independent Otsu: histogram over [min, max], bin centres, loop over splits, first maximum wins.

    Class sums are running sums, so splits inside a run of empty bins give exactly equal scores (a tie, resolved to
    the lowest split). Returns the upper edge of the last bin of the lower class (foreground is ``x > threshold``).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        return lo
    width = (hi - lo) / num_bins
    idx = np.clip(np.floor((v - lo) / (hi - lo) * num_bins), 0, num_bins - 1).astype(int)
    hist = np.bincount(idx, minlength=num_bins).astype(np.float64)
    centres = lo + (np.arange(num_bins) + 0.5) * width
    n_tot, s_tot = float(hist.sum()), float((hist * centres).sum())
    best_k, best, n0, s0 = 0, -1.0, 0.0, 0.0
    for k in range(num_bins - 1):
        n0 += hist[k]
        s0 += hist[k] * centres[k]
        n1 = n_tot - n0
        if n0 == 0 or n1 == 0:
            continue
        between = n0 * n1 * (s0 / n0 - (s_tot - s0) / n1) ** 2
        if between > best:
            best_k, best = k, between
    return lo + (best_k + 1) * width


def _bimodal(n0=300, n1=500, mu0=0.2, mu1=0.75, sigma=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(mu0, sigma, n0), rng.normal(mu1, sigma, n1)])


class TestOtsuThreshold(unittest.TestCase):
    def test_hand_computed(self):
        # 256 bins of width 1/256; 0.1 falls in bin 25. Every split between bins 25 and 229 separates
        # {0, 0, 0.1} from {0.9, 1, 1} equally well; the lowest wins -> upper edge of bin 25 = 26 / 256.
        x = torch.tensor([[0.0, 0.0, 0.1, 0.9, 1.0, 1.0]])
        thr = otsu_threshold(x)
        self.assertEqual(thr.shape, (1,))
        self.assertEqual(thr.item(), 26.0 / 256.0)
        self.assertEqual(thr.dtype, torch.float32)

    @parameterized.expand([[0, 256], [1, 256], [2, 64], [3, 17], [4, 2]])
    def test_matches_numpy_reference(self, seed, num_bins):
        values = _bimodal(seed=seed)
        expected = otsu_numpy(values, num_bins)
        thr = otsu_threshold(torch.from_numpy(values)[None], num_bins)
        self.assertEqual(thr.dtype, torch.float64)
        self.assertAlmostEqual(thr.item(), expected, places=12)
        # separates the two clusters exactly, at the upper edge of the bin holding the lower cluster's maximum
        low, high = values[:300], values[300:]
        self.assertTrue(bool((low <= thr.item()).all() and (high > thr.item()).all()))
        width = (values.max() - values.min()) / num_bins
        self.assertLessEqual(thr.item() - low.max(), width + 1e-12)

    def test_per_sample(self):
        a = _bimodal(seed=5)
        b = 10.0 * _bimodal(n0=700, n1=100, mu0=-0.3, mu1=0.4, seed=6) + 3.0
        x = torch.from_numpy(np.stack([a, b])).view(2, 1, 20, 40)
        thr = otsu_threshold(x)
        self.assertEqual(thr.shape, (2,))
        self.assertAlmostEqual(thr[0].item(), otsu_numpy(a), places=12)
        self.assertAlmostEqual(thr[1].item(), otsu_numpy(b), places=12)
        # each sample alone gives the same threshold
        self.assertEqual(otsu_threshold(x[1:]).item(), thr[1].item())

    def test_two_values_split(self):
        x = torch.tensor([[3.0] * 5 + [7.0] * 11])
        thr = otsu_threshold(x, num_bins=4)
        self.assertEqual(thr.item(), 4.0)  # lowest split: upper edge of the first bin
        self.assertEqual(int((x > thr).sum()), 11)

    def test_constant_sample(self):
        x = torch.full((2, 1, 4, 4), 0.3)
        x[1] = torch.linspace(0, 1, 16).view(1, 4, 4)
        thr = otsu_threshold(x)
        self.assertEqual(thr[0].item(), x[0, 0, 0, 0].item())
        self.assertEqual(int((x[0] > thr[0]).sum()), 0)
        self.assertTrue(0.0 < thr[1].item() < 1.0)

    def test_not_differentiable(self):
        x = torch.rand(1, 10, requires_grad=True)
        self.assertFalse(otsu_threshold(x).requires_grad)

    @parameterized.expand(
        [
            ["int", torch.ones(1, 4, dtype=torch.int64), 256],
            ["empty", torch.zeros(0, 4), 256],
            ["empty_sample", torch.zeros(2, 0), 256],
            ["scalar", torch.tensor(1.0), 256],
            ["one_bin", torch.rand(1, 4), 1],
            ["list", [[0.0, 1.0]], 256],
        ]
    )
    def test_ill_input(self, _, x, num_bins):
        with self.assertRaises(ValueError):
            otsu_threshold(x, num_bins)


def _minmax(t: torch.Tensor) -> torch.Tensor:
    flat = t.reshape(t.shape[0], -1)
    lo, hi = flat.min(1)[0].view(-1, 1, 1, 1), flat.max(1)[0].view(-1, 1, 1, 1)
    return (t - lo) / (hi - lo)


class TestFeatureFusionSegmentation(unittest.TestCase):
    def setUp(self):
        g = torch.Generator().manual_seed(0)
        self.features = [
            torch.randn(2, 3, 8, 10, generator=g),
            torch.rand(2, 5, 8, 10, generator=g) * 7.0 - 2.0,
            torch.randn(2, 1, 8, 10, generator=g) * 0.01,
        ]

    def test_fuse_values(self):
        head = FeatureFusionSegmentation()
        fused = head.fuse(self.features)
        expected = _minmax(sum(_minmax(f.mean(dim=1, keepdim=True)) for f in self.features))
        self.assertEqual(tuple(fused.shape), (2, 1, 8, 10))
        torch.testing.assert_close(fused, expected, atol=1e-6, rtol=0)
        for b in range(2):
            self.assertAlmostEqual(fused[b].min().item(), 0.0, places=6)
            self.assertAlmostEqual(fused[b].max().item(), 1.0, places=6)

    def test_each_layer_normalised(self):
        # an affine change of one layer's scale does not change the fused map; a constant layer adds nothing
        head = FeatureFusionSegmentation()
        base = head.fuse(self.features)
        scaled = [self.features[0], 1000.0 * self.features[1] + 5.0, self.features[2]]
        torch.testing.assert_close(head.fuse(scaled), base, atol=1e-5, rtol=0)
        with_const = self.features + [torch.full((2, 4, 8, 10), 3.0)]
        torch.testing.assert_close(head.fuse(with_const), base, atol=1e-6, rtol=0)
        # ... but every layer counts: dropping one changes the map
        self.assertGreater((head.fuse(self.features[:2]) - base).abs().max().item(), 0.05)

    @parameterized.expand([[None, (8, 10)], [(8, 10), (8, 10)], [(32, 40), (32, 40)], [(17, 23), (17, 23)]])
    def test_forward_binary_and_surrogate(self, spatial_shape, out_shape):
        temperature = 0.1
        head = FeatureFusionSegmentation(temperature=temperature)
        prob, mask = head(self.features, spatial_shape)
        self.assertEqual(tuple(prob.shape), (2, 1, *out_shape))
        self.assertEqual(tuple(mask.shape), (2, 1, *out_shape))
        fused = head.fuse(self.features)
        thr = otsu_threshold(fused).view(-1, 1, 1, 1)
        if spatial_shape is not None:
            fused = F.interpolate(fused, size=list(spatial_shape), mode="bilinear", align_corners=False)
        torch.testing.assert_close(mask, (fused > thr).float(), atol=0, rtol=0)
        torch.testing.assert_close(prob, torch.sigmoid((fused - thr) / temperature), atol=1e-6, rtol=0)
        self.assertTrue(set(mask.unique().tolist()) == {0.0, 1.0})
        self.assertTrue(bool(((prob >= 0) & (prob <= 1)).all()))
        torch.testing.assert_close((prob > 0.5).float(), mask)  # the surrogate agrees with the hard mask

    def test_recovers_bright_region(self):
        # layers that all light up one rectangle (plus noise): the mask is exactly that rectangle
        g = torch.Generator().manual_seed(3)
        region = torch.zeros(1, 1, 12, 16)
        region[..., 3:9, 5:12] = 1.0
        feats = [region * s + 0.05 * torch.rand(1, c, 12, 16, generator=g) for s, c in ((1.0, 4), (3.0, 2), (0.2, 8))]
        _, mask = FeatureFusionSegmentation()(feats)
        torch.testing.assert_close(mask, region, atol=0, rtol=0)

    def test_surrogate_differentiable(self):
        feats = [f.clone().requires_grad_(True) for f in self.features]
        prob, mask = FeatureFusionSegmentation(temperature=0.2)(feats, (16, 20))
        self.assertFalse(mask.requires_grad)
        (prob * torch.linspace(-1, 1, 320).view(1, 1, 16, 20)).sum().backward()
        for f in feats:
            self.assertIsNotNone(f.grad)
            self.assertTrue(bool(torch.isfinite(f.grad).all()))
            self.assertGreater(f.grad.abs().sum().item(), 0.0)

    @parameterized.expand([[{"temperature": 0.0}], [{"temperature": -1.0}], [{"num_bins": 1}]])
    def test_ill_args(self, kwargs):
        with self.assertRaises(ValueError):
            FeatureFusionSegmentation(**kwargs)

    @parameterized.expand(
        [
            ["empty", []],
            ["tensor", torch.zeros(1, 2, 4, 4)],
            ["spatial_mismatch", [torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5)]],
            ["batch_mismatch", [torch.zeros(1, 2, 4, 4), torch.zeros(2, 2, 4, 4)]],
            ["ndim", [torch.zeros(1, 2, 4)]],
        ]
    )
    def test_ill_features(self, _, feats):
        with self.assertRaises(ValueError):
            FeatureFusionSegmentation()(feats)


class TestLearnedFeatureSegmentation(unittest.TestCase):
    @parameterized.expand([[(4, 2), None, (6, 7)], [(3,), (12, 14), (12, 14)], [(1, 1, 1), (17, 23), (17, 23)]])
    def test_shape(self, channels, spatial_shape, out_shape):
        torch.manual_seed(0)
        head = LearnedFeatureSegmentation(sum(channels))
        feats = [torch.randn(2, c, 6, 7) for c in channels]
        prob, mask = head(feats, spatial_shape)
        self.assertEqual(tuple(prob.shape), (2, 1, *out_shape))
        self.assertEqual(tuple(mask.shape), (2, 1, *out_shape))
        self.assertTrue(bool(((prob > 0) & (prob < 1)).all()))
        torch.testing.assert_close(mask, (prob > 0.5).float(), atol=0, rtol=0)

    def test_values(self):
        head = LearnedFeatureSegmentation(3)
        with torch.no_grad():
            head.conv.weight.copy_(torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1))
            head.conv.bias.fill_(0.25)
        g = torch.Generator().manual_seed(1)
        feats = [torch.randn(1, 2, 5, 6, generator=g), torch.randn(1, 1, 5, 6, generator=g)]
        x = torch.cat(feats, dim=1)
        logits = x[:, :1] - 2.0 * x[:, 1:2] + 0.5 * x[:, 2:3] + 0.25
        prob, mask = head(feats)
        torch.testing.assert_close(prob, torch.sigmoid(logits), atol=1e-6, rtol=0)
        # conv at feature resolution then upsampling == upsampling then conv (both linear)
        prob_up, _ = head(feats, (11, 13))
        x_up = F.interpolate(x, size=[11, 13], mode="bilinear", align_corners=False)
        torch.testing.assert_close(prob_up, torch.sigmoid(head.conv(x_up)), atol=1e-6, rtol=0)

    def test_gradients(self):
        torch.manual_seed(0)
        head = LearnedFeatureSegmentation(4)
        prob, _ = head([torch.randn(2, 4, 5, 5)], (9, 9))
        prob.sum().backward()
        self.assertGreater(head.conv.weight.grad.abs().sum().item(), 0.0)

    def test_ill(self):
        with self.assertRaises(ValueError):
            LearnedFeatureSegmentation(0)
        with self.assertRaises(ValueError):
            LearnedFeatureSegmentation(5)([torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)])
        with self.assertRaises(ValueError):
            LearnedFeatureSegmentation(4)([torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 3, 4)])


if __name__ == "__main__":
    unittest.main()
