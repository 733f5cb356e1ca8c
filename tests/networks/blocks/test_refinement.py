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
"""Instance optimisation of a DDF: the local NCC map against a direct computation, recovery of known fields, errors."""

from __future__ import annotations

import unittest

import numpy as np
import torch
import torch.nn.functional as F
from parameterized import parameterized
from torch.autograd import gradcheck

from monai_jrs.data.testing import make_synthetic_xray
from monai_jrs.networks.blocks import InstanceOptimization, chest_window, local_ncc_map
from monai_jrs.utils.conventions import warp


def _direct_ncc(x: torch.Tensor, y: torch.Tensor, k: int, eps: float = 1e-5) -> torch.Tensor:
    """Squared NCC per window by explicit loops over a replicate-padded image (independent of the box filter)."""
    pad = k // 2
    xp, yp = F.pad(x, (pad,) * 4, mode="replicate")[0, 0], F.pad(y, (pad,) * 4, mode="replicate")[0, 0]
    out = torch.zeros_like(x[0, 0])
    for i in range(x.shape[2]):
        for j in range(x.shape[3]):
            a, b = xp[i : i + k, j : j + k].flatten(), yp[i : i + k, j : j + k].flatten()
            cov = (a * b).mean() - a.mean() * b.mean()
            out[i, j] = cov**2 / (a.var(unbiased=False) * b.var(unbiased=False) + eps)
    return out[None, None]


def _pair(shift=(1.5, -2.0), size=64):
    image, mask = make_synthetic_xray((size, size), seed=3)
    ref = torch.from_numpy(image.astype(np.float32))[None, None]
    ref = ref / ref.max()
    applied = torch.zeros(1, 2, size, size)
    applied[:, 0], applied[:, 1] = shift
    flt = warp(ref, -applied)  # ref(p) = flt(p + applied) for a constant shift
    return ref, flt, torch.from_numpy(mask.astype(np.float32))[None, None], applied


class TestLocalNCC(unittest.TestCase):
    @parameterized.expand([[3], [5], [9]])
    def test_matches_direct_computation(self, k):
        g = torch.Generator().manual_seed(k)
        x, y = torch.rand(1, 1, 12, 11, generator=g), torch.rand(1, 1, 12, 11, generator=g)
        torch.testing.assert_close(local_ncc_map(x, y, k), _direct_ncc(x, y, k), atol=1e-5, rtol=1e-4)

    def test_affine_intensity_invariance(self):
        x = torch.rand(1, 1, 16, 16)
        self.assertGreater(local_ncc_map(x, 3 * x - 2, 5)[..., 2:-2, 2:-2].min().item(), 0.99)

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, 1, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.rand(1, 1, 6, 7, generator=g, dtype=torch.float64)
        self.assertTrue(gradcheck(lambda a: local_ncc_map(a, y, 3), (x,)))

    @parameterized.expand([[0], [4], [-3]])
    def test_bad_kernel(self, k):
        with self.assertRaisesRegex(ValueError, "kernel_size"):
            local_ncc_map(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), k)


class TestChestWindow(unittest.TestCase):
    def test_dilation_resize_and_empty_samples(self):
        m = torch.zeros(2, 1, 20, 20)
        m[0, 0, 8:12, 8:12] = 1
        w = chest_window(m, 0.1)  # radius 2 px
        self.assertEqual(int(w[0].sum()), 8 * 8)
        self.assertEqual(int(w[1].sum()), 20 * 20)  # empty mask: the whole image
        self.assertEqual(int(chest_window(m, 0.1, fill_empty=False)[1].sum()), 0)
        small = chest_window(m, 0.0, shape=(10, 10))  # area resampling, threshold 0.25
        self.assertEqual(tuple(small.shape), (2, 1, 10, 10))
        self.assertEqual(int(small[0].sum()), 4)
        self.assertEqual(int(chest_window(m, 0.0, min_radius=1)[0].sum()), 6 * 6)


class TestInstanceOptimization(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)

    @parameterized.expand([[(1.5, -2.0)], [(-2.5, 1.0)]])
    def test_recovers_residual_shift(self, shift):
        ref, flt, mask, applied = _pair(shift)
        start = torch.zeros_like(applied)
        refined = InstanceOptimization(iterations=60, control_spacing=8)(ref, flt, mask, start)
        lung = mask[0, 0] > 0
        err_before = (start - applied).norm(dim=1)[0][lung].mean().item()
        err_after = (refined - applied).norm(dim=1)[0][lung].mean().item()
        self.assertAlmostEqual(err_before, float(np.hypot(*shift)), places=4)
        self.assertLess(err_after, 0.25 * err_before)

    def test_keeps_a_correct_field(self):
        ref, flt, mask, applied = _pair((2.0, 1.0))
        refined = InstanceOptimization(iterations=20)(ref, flt, mask, applied)
        lung = mask[0, 0] > 0
        self.assertLess((refined - applied).norm(dim=1)[0][lung].mean().item(), 0.2)

    def test_output_contract(self):
        ref, flt, mask, applied = _pair()
        ddf = applied.double()
        out = InstanceOptimization(iterations=[2, 0], levels=2)(ref, flt, mask, ddf)
        self.assertEqual(out.dtype, torch.float64)
        self.assertEqual(out.shape, ddf.shape)
        self.assertFalse(out.requires_grad)
        # zero iterations: the input field unchanged
        torch.testing.assert_close(InstanceOptimization(iterations=0)(ref, flt, mask, ddf), ddf)
        # an empty mask falls back to the whole image
        self.assertTrue(torch.isfinite(InstanceOptimization(iterations=2)(ref, flt, mask * 0, ddf)).all())

    def test_correction_is_bounded(self):
        ref, flt, mask, applied = _pair()
        out = InstanceOptimization(iterations=30, learning_rate=5.0, max_correction=1.0)(ref, flt, mask, applied * 0)
        self.assertLessEqual(out.abs().max().item(), 1.0 + 1e-5)

    @parameterized.expand([
        [{"iterations": [1, 2, 3]}, "iterations"],
        [{"iterations": -1}, "iterations"],
        [{"levels": 0}, "levels"],
        [{"kernel_size": 4}, "kernel_size"],
        [{"learning_rate": 0.0}, "learning_rate"],
        [{"mask_margin": 1.5}, "mask_margin"],
    ])
    def test_bad_arguments(self, kwargs, word):
        with self.assertRaisesRegex(ValueError, word):
            InstanceOptimization(**kwargs)

    def test_bad_shapes(self):
        ref, flt, mask, applied = _pair()
        with self.assertRaisesRegex(ValueError, "share"):
            InstanceOptimization(iterations=1)(ref, flt[..., :32], mask, applied)


if __name__ == "__main__":
    unittest.main()
