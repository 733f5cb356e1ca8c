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
"""Dense full-resolution refinement: MIND-SSC against a direct computation, recovery of known fields (affine, scale,
elastic, rotated initial fields, floating images of another size), the regularisers, mask carry-back, bad input."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
import torch.nn.functional as F
from parameterized import parameterized

from monai_jrs.data.testing import make_synthetic_xray
from monai_jrs.networks.blocks import DenseRefinement, carry_mask_to_floating, mind_ssc
from monai_jrs.networks.blocks.dense_refinement import _bending, _diffusion, _normalised_grid
from monai_jrs.utils.conventions import affine_to_ddf, identity_grid, invert_ddf, jacobian_determinant, warp

FAST = dict(max_size=96, levels=(2, 1), affine_iterations=(40,), iterations=(40, 30), samples=0)


def _image(size=96, seed=3):
    image, mask = make_synthetic_xray((size, size), seed=seed)
    ref = torch.from_numpy(image.astype(np.float32))[None, None]
    return ref / ref.max(), torch.from_numpy(mask.astype(np.float32))[None, None]


def _affine(angle_deg=0.0, scale=1.0, shift=(0.0, 0.0), size=96):
    """Field ``p -> s R (p - c) + c + t - p`` (reference -> floating pixels) on a ``size`` grid."""
    a = math.radians(angle_deg)
    c = (size - 1) / 2
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale
    p = identity_grid([size, size])[0].reshape(2, -1)
    q = rot @ (p - c) + c + torch.tensor(shift)[:, None]
    return (q - p).reshape(1, 2, size, size)


def _floating(ref, true_ddf):
    """Floating image with ``floating(p + true_ddf(p)) = ref(p)`` (exposure changed: gamma 1.3, contrast 0.8)."""
    flt = warp(ref, invert_ddf(true_ddf, num_iters=10), padding_mode="zeros")
    return 0.8 * flt.clamp(0, 1) ** 1.3 + 0.05


def _tre(ddf, true_ddf, margin=12):
    return (ddf - true_ddf).norm(dim=1)[:, margin:-margin, margin:-margin].mean().item()


class TestMindSSC(unittest.TestCase):
    def test_matches_direct_computation(self):
        x = torch.rand(1, 1, 10, 9, generator=torch.Generator().manual_seed(0))
        d, r = 2, 1
        xp = F.pad(x, (d,) * 4, mode="replicate")[0, 0]
        nb = [(0, 1), (1, 0), (0, -1), (-1, 0)]
        pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
        shifted = [xp[d + a * d:d + a * d + 10, d + b * d:d + b * d + 9] for a, b in nb]
        dist = torch.stack([(shifted[i] - shifted[j]) ** 2 for i, j in pairs])[None]
        dist = F.avg_pool2d(F.pad(dist, (r,) * 4, mode="replicate"), 3, stride=1)
        var = dist.mean(1, keepdim=True)
        m = var.mean()
        var = var.clamp(min=float(m) * 1e-3, max=float(m) * 1e3 + 1e-6)
        expected = torch.exp(-dist / var)
        expected = expected / expected.amax(1, keepdim=True)
        torch.testing.assert_close(mind_ssc(x, radius=r, dilation=d), expected, atol=1e-6, rtol=1e-5)

    @parameterized.expand([[0.5, 0.0], [3.0, -1.0], [10.0, 2.0]])
    def test_linear_intensity_invariance(self, gain, offset):
        x = torch.rand(2, 1, 16, 16)
        torch.testing.assert_close(mind_ssc(gain * x + offset), mind_ssc(x), atol=1e-4, rtol=1e-4)

    def test_shape_range_and_errors(self):
        out = mind_ssc(torch.rand(2, 1, 12, 20))
        self.assertEqual(tuple(out.shape), (2, 6, 12, 20))
        self.assertLessEqual(out.max().item(), 1.0 + 1e-6)
        self.assertTrue(torch.allclose(out.amax(1), torch.ones(2, 12, 20)))
        with self.assertRaisesRegex(ValueError, r"\(B, 1, H, W\)"):
            mind_ssc(torch.rand(1, 3, 8, 8))
        with self.assertRaisesRegex(ValueError, "dilation"):
            mind_ssc(torch.rand(1, 1, 8, 8), dilation=0)


class TestRegularisers(unittest.TestCase):
    def test_bending_is_zero_for_affine_and_positive_otherwise(self):
        xn = _normalised_grid(9, 9, None).permute(0, 3, 1, 2)  # (1, 2, 9, 9) affine in the node coordinates
        px = torch.tensor([0.1, 0.1])
        affine = 0.3 * xn + 0.1 * xn.flip(1) + 0.05
        self.assertLess(_bending(affine, px).item(), 1e-9)
        self.assertGreater(_diffusion(affine, px).item(), 1e-3)  # diffusion penalises a scale, bending does not
        bump = torch.zeros(1, 2, 9, 9)
        bump[:, 0, 4, 4] = 0.1  # 0.1 / 0.1 = 1 px at one node of one channel
        # second differences (1, -2, 1) along rows and along columns, four cross differences of +-1
        d_rr = (1 + 4 + 1) / (2 * 7 * 9)
        d_rc = 4 / (2 * 8 * 8)
        self.assertAlmostEqual(_bending(bump, px).item(), 2 * d_rr + 2 * d_rc, places=6)
        self.assertAlmostEqual(_diffusion(bump, px).item(), 2 * 2 / (2 * 8 * 9), places=6)


class TestDenseRefinement(unittest.TestCase):
    @parameterized.expand([
        ["scale", dict(scale=1.07, shift=(3.0, -2.0))],
        ["rotation", dict(angle_deg=5.0, shift=(-2.0, 4.0))],
        ["shrink", dict(scale=0.94, angle_deg=-3.0)],
        ["magnification_plus_10pct", dict(scale=1.10, angle_deg=2.0)],
        ["magnification_minus_10pct", dict(scale=0.90, shift=(-3.0, 2.0))],
    ])
    def test_recovers_affine_from_identity(self, _, kw):
        ref, mask = _image()
        true = _affine(**kw)
        flt = _floating(ref, true)
        before = _tre(torch.zeros_like(true), true)
        ddf, stats = DenseRefinement(**FAST).refine(ref, flt, mask, torch.zeros_like(true))
        self.assertLess(_tre(ddf, true), 0.1 * before, f"before {before:.2f} px")
        self.assertLess(_tre(ddf, true), 0.4)
        self.assertGreater(stats.ncc_chest[0], 0.9)
        self.assertFalse(stats.low_quality[0])
        self.assertLess(stats.ssd_after[0], stats.ssd_before[0])

    def test_composes_with_a_large_rotation_of_the_initial_field(self):
        """Started from a field that already holds a 150-degree rotation, it corrects the residual (MIND is not
        rotation invariant: the features must be computed on the pre-warped floating image)."""
        ref, mask = _image()
        true = _affine(angle_deg=150.0, scale=1.04, shift=(2.0, 1.0))
        init = _affine(angle_deg=148.0, shift=(0.5, -1.5))
        ddf, _ = DenseRefinement(**FAST).refine(ref, _floating(ref, true), mask, init)
        self.assertGreater(_tre(init, true), 2.0)
        self.assertLess(_tre(ddf, true), 0.5)

    def test_recovers_a_smooth_elastic_field(self):
        ref, mask = _image()
        g = torch.Generator().manual_seed(1)
        coarse = torch.randn(1, 2, 4, 4, generator=g)
        elastic = F.interpolate(coarse, size=(96, 96), mode="bicubic", align_corners=True)
        true = _affine(scale=1.03) + 3.0 * elastic / elastic.norm(dim=1).max()
        ddf, _ = DenseRefinement(**FAST).refine(ref, _floating(ref, true), mask, torch.zeros_like(true))
        self.assertLess(_tre(ddf, true), 0.35 * _tre(torch.zeros_like(true), true))
        self.assertEqual((jacobian_determinant(ddf) <= 0).sum().item(), 0)

    def test_floating_of_another_size(self):
        """A floating image on a finer grid (1.5x the pixels): the field maps reference pixels to its pixels."""
        ref, mask = _image()
        true = _affine(scale=1.05, shift=(2.0, -3.0))
        flt = F.interpolate(_floating(ref, true), size=(144, 144), mode="bilinear", align_corners=False)
        true_big = ((identity_grid([96, 96]) + true) + 0.5) * 1.5 - 0.5 - identity_grid([96, 96])
        init = (identity_grid([96, 96]) + 0.5) * 1.5 - 0.5 - identity_grid([96, 96])  # the resize alone
        ddf, _ = DenseRefinement(**FAST).refine(ref, flt, mask, init)
        self.assertLess(_tre(ddf, true_big), 0.5)

    def test_identity_stays_identity(self):
        ref, mask = _image()
        ddf, _ = DenseRefinement(**FAST).refine(ref, ref, mask, torch.zeros(1, 2, 96, 96))
        # Adam normalises the tiny gradients of bilinear sampling at pixel centres: a drift of a few hundredths
        self.assertLess(ddf.abs().mean().item(), 0.08)
        self.assertLess(ddf.abs().max().item(), 0.4)

    def test_deterministic_with_sampling_and_dtype(self):
        ref, mask = _image()
        true = _affine(scale=1.05)
        flt = _floating(ref, true)
        kw = {**FAST, "samples": 2000, "seed": 4}
        a = DenseRefinement(**kw)(ref, flt, mask, torch.zeros(1, 2, 96, 96, dtype=torch.float64))
        b = DenseRefinement(**kw)(ref, flt, mask, torch.zeros(1, 2, 96, 96, dtype=torch.float64))
        self.assertEqual(a.dtype, torch.float64)
        torch.testing.assert_close(a, b)
        self.assertLess(_tre(a.float(), true), 0.6)

    def test_not_the_same_image_is_flagged(self):
        ref, mask = _image(seed=3)
        noise = torch.rand(1, 1, 96, 96, generator=torch.Generator().manual_seed(0))
        with self.assertLogs("monai_jrs.networks.blocks.dense_refinement", level="WARNING"):
            _, stats = DenseRefinement(**FAST).refine(ref, noise, mask, torch.zeros(1, 2, 96, 96))
        self.assertTrue(stats.low_quality[0])
        self.assertLess(stats.ncc_chest[0], 0.5)

    def test_empty_mask_uses_the_whole_image(self):
        ref, _ = _image()
        true = _affine(scale=1.05)
        ddf, _ = DenseRefinement(**FAST).refine(ref, _floating(ref, true), torch.zeros(1, 1, 96, 96),
                                                torch.zeros_like(true))
        self.assertLess(_tre(ddf, true), 0.5)

    @parameterized.expand([
        [dict(levels=(1, 2)), "levels"],
        [dict(levels=(2, 1), iterations=(3,)), "iterations"],
        [dict(affine_iterations=(1, 1, 1, 1)), "affine_iterations"],
        [dict(max_size=8), "max_size"],
        [dict(learning_rate=0.0), "learning rates"],
        [dict(outside_weight=2.0), "outside_weight"],
        [dict(regularization="tv"), "regularization"],
    ])
    def test_bad_arguments(self, kw, msg):
        with self.assertRaisesRegex(ValueError, msg):
            DenseRefinement(**kw)

    def test_bad_inputs(self):
        ref, mask = _image(size=32)
        with self.assertRaisesRegex(ValueError, "must agree"):
            DenseRefinement(**FAST).refine(ref, ref, mask[..., :16], torch.zeros(1, 2, 32, 32))
        nan = ref.clone()
        nan[..., 3, 3] = float("nan")
        with self.assertRaisesRegex(ValueError, "finite"):
            DenseRefinement(**FAST).refine(nan, ref, mask, torch.zeros(1, 2, 32, 32))
        with self.assertRaisesRegex(ValueError, "finite"):
            DenseRefinement(**FAST).refine(ref, nan, mask, torch.zeros(1, 2, 32, 32))
        with self.assertRaises(ValueError):
            DenseRefinement(**FAST).refine(ref, ref, mask, torch.zeros(1, 2, 16, 16))


class TestCarryMask(unittest.TestCase):
    @parameterized.expand([[0.0, (48, 48)], [160.0, (48, 48)], [10.0, (72, 60)]])
    def test_matches_the_true_floating_mask(self, angle, flt_shape):
        size = 48
        mask = torch.zeros(1, 1, size, size)
        mask[..., 12:36, 8:22] = 1
        mask[..., 12:36, 26:40] = 1
        ddf = affine_to_ddf(torch.tensor([[[math.cos(math.radians(angle)), -math.sin(math.radians(angle)), 0.0],
                                           [math.sin(math.radians(angle)), math.cos(math.radians(angle)), 0.0],
                                           [0.0, 0.0, 1.0]]]), (size, size))
        # reference pixels -> floating pixels of a (possibly) larger grid, same field of view
        sr, sc = flt_shape[0] / size, flt_shape[1] / size
        q = identity_grid([size, size]) + ddf
        q = torch.stack(((q[:, 0] + 0.5) * sr - 0.5, (q[:, 1] + 0.5) * sc - 0.5), 1)
        full = q - identity_grid([size, size])
        out = carry_mask_to_floating(mask, full, flt_shape)
        self.assertEqual(tuple(out.shape), (1, 1, *flt_shape))
        # the floating mask warped back through the field is the reference mask again
        back = F.grid_sample(out, torch.stack(((2 * q[:, 1] + 1) / flt_shape[1] - 1, (2 * q[:, 0] + 1) / flt_shape[0] - 1),
                                              -1), align_corners=False)
        dice = 2 * ((back > 0.5) & (mask > 0.5)).sum() / ((back > 0.5).sum() + (mask > 0.5).sum())
        self.assertGreater(dice.item(), 0.95)


if __name__ == "__main__":
    unittest.main()
