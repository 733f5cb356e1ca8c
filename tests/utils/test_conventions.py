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
"""Impulse and identity tests that pin the DDF convention of :mod:`monai_jrs.utils.conventions`."""

from __future__ import annotations

import math
import unittest

import torch
from monai.networks.blocks import Warp
from parameterized import parameterized

from monai_jrs.utils import (
    affine_to_ddf,
    check_ddf,
    compose_ddf,
    identity_grid,
    invert_ddf,
    jacobian_determinant,
    resize_ddf,
    rotation_matrix,
    scale_ddf_to_physical,
    warp,
)


def _impulse(h=7, w=9, r=3, c=4):
    img = torch.zeros(1, 1, h, w)
    img[0, 0, r, c] = 1.0
    return img


class TestImpulseConvention(unittest.TestCase):
    """A single bright pixel at (3, 4); a constant DDF moves where it is sampled from."""

    def test_channel0_moves_rows(self):
        # registered(p) = floating(p + ddf(p)); ddf[:,0] = +1 samples one row below, so the impulse
        # appears one row *above* in the output: out[2, 4] = img[3, 4].
        ddf = torch.zeros(1, 2, 7, 9)
        ddf[:, 0] = 1.0
        out = warp(_impulse(), ddf, padding_mode="zeros")
        self.assertEqual(out[0, 0].nonzero().tolist(), [[2, 4]])

    def test_channel1_moves_cols(self):
        ddf = torch.zeros(1, 2, 7, 9)
        ddf[:, 1] = -2.0  # sample two columns to the left -> impulse appears two columns to the right
        out = warp(_impulse(), ddf, padding_mode="zeros")
        self.assertEqual(out[0, 0].nonzero().tolist(), [[3, 6]])

    def test_matches_monai_warp(self):
        torch.manual_seed(0)
        img = torch.rand(2, 3, 11, 13)
        ddf = torch.randn(2, 2, 11, 13) * 2
        for mode, pad in (("bilinear", "border"), ("bilinear", "zeros"), ("nearest", "reflection")):
            expected = Warp(mode=mode, padding_mode=pad)(img, ddf)
            torch.testing.assert_close(warp(img, ddf, mode=mode, padding_mode=pad), expected, atol=1e-5, rtol=0)

    def test_identity(self):
        img = torch.rand(1, 1, 8, 5)
        torch.testing.assert_close(warp(img, torch.zeros(1, 2, 8, 5)), img)

    def test_identity_grid(self):
        g = identity_grid((3, 4))
        self.assertEqual(tuple(g.shape), (1, 2, 3, 4))
        self.assertEqual(g[0, 0, 2, 1].item(), 2.0)  # channel 0 = row index
        self.assertEqual(g[0, 1, 2, 1].item(), 1.0)  # channel 1 = column index

    def test_gradcheck(self):
        torch.manual_seed(0)
        img = torch.rand(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
        ddf = (torch.rand(1, 2, 5, 6, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
        self.assertTrue(torch.autograd.gradcheck(lambda i, d: warp(i, d), (img, ddf), fast_mode=True))


class TestAffine(unittest.TestCase):
    def test_translation(self):
        m = rotation_matrix(0.0, translation=(1.5, -2.0))
        ddf = affine_to_ddf(m, (5, 6))
        torch.testing.assert_close(ddf[0, 0], torch.full((5, 6), 1.5))
        torch.testing.assert_close(ddf[0, 1], torch.full((5, 6), -2.0))

    def test_rotation_90_about_centre(self):
        # A[:2,:2] = [[0,-1],[1,0]]: output pixel (r, c) samples centre + (-(c-cc), (r-cr)).
        m = rotation_matrix(math.pi / 2)
        h = w = 5
        img = _impulse(h, w, r=0, c=2)  # top-centre pixel
        out = warp(img, affine_to_ddf(m, (h, w)), padding_mode="zeros")
        # out(p) = img(src(p)); src = (2 - (c - 2), 2 + (r - 2)) == (0, 2) at p = (2, 4)
        self.assertEqual(out[0, 0].round().nonzero().tolist(), [[2, 4]])

    def test_matches_monai_rand_affine_matrix(self):
        from monai.data import MetaTensor
        from monai.transforms import RandAffined

        img = torch.rand(1, 9, 11)
        aff = RandAffined("img", prob=1.0, rotate_range=0.5, translate_range=3, scale_range=0.1, padding_mode="border")
        aff.set_random_state(0)
        out = aff({"img": MetaTensor(img)})["img"]
        # the matrix MONAI records for a (C, H, W) image is exactly our centred (row, col) convention
        mat = out.applied_operations[-1]["extra_info"]["extra_info"]["affine"]
        ddf = affine_to_ddf(torch.as_tensor(mat, dtype=torch.float32)[None], (9, 11))
        ours = warp(img[None], ddf, padding_mode="border")[0]
        torch.testing.assert_close(ours, out.as_tensor(), atol=1e-4, rtol=0)


class TestComposeInvert(unittest.TestCase):
    def test_compose_translations(self):
        a = affine_to_ddf(rotation_matrix(0.0, translation=(1.0, 0.0)), (6, 6))
        b = affine_to_ddf(rotation_matrix(0.0, translation=(0.0, 2.0)), (6, 6))
        c = compose_ddf(a, b)
        torch.testing.assert_close(c[0, 0], torch.ones(6, 6))
        torch.testing.assert_close(c[0, 1], torch.full((6, 6), 2.0))

    def test_compose_equals_two_warps(self):
        torch.manual_seed(1)
        img = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 32, 32), 7, 1, 3)  # smooth: no aliasing
        smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 2, 32, 32), 9, 1, 4) * 3
        a = smooth
        b = smooth.flip(-1) * 0.5
        two = warp(warp(img, a), b)
        one = warp(img, compose_ddf(a, b))
        self.assertLess((two - one)[..., 4:-4, 4:-4].abs().mean().item(), 0.01)

    @parameterized.expand([[0.2], [1.2], [1.6], [2.5], [math.pi]])
    def test_invert_large_rotation_and_elastic(self, angle):
        # Newton inversion: exact for any rotation (fixed-point iteration diverges beyond 60 degrees)
        shape = (48, 40)
        m = rotation_matrix(torch.tensor([angle]), torch.tensor([[2.0, -3.0]]))
        g = torch.Generator().manual_seed(0)
        elastic = torch.nn.functional.avg_pool2d(torch.randn(1, 2, *shape, generator=g), 9, 1, 4) * 4
        for ddf in (affine_to_ddf(m, shape), compose_ddf(elastic, affine_to_ddf(m, shape))):
            inv = invert_ddf(ddf)
            pre = identity_grid(shape) + inv  # preimages on the reference grid, away from its border
            inside = (pre[:, 0] > 1) & (pre[:, 0] < shape[0] - 2) & (pre[:, 1] > 1) & (pre[:, 1] < shape[1] - 2)
            residual = (warp(ddf, inv) + inv).norm(dim=1)  # p + ddf(p) - q with p = q + inv(q)
            self.assertGreater(inside.float().mean().item(), 0.5)
            # float32 bilinear lookups of a finite-difference Jacobian: converged to ~1e-3 px at worst
            self.assertLess(residual[inside].max().item(), 1e-2)
            self.assertLess(residual[inside].mean().item(), 1e-4)

    def test_invert_methods_agree_on_small_fields(self):
        g = torch.Generator().manual_seed(1)
        ddf = torch.nn.functional.avg_pool2d(torch.randn(1, 2, 32, 32, generator=g), 9, 1, 4) * 2
        newton, fixed = invert_ddf(ddf), invert_ddf(ddf, num_iters=50, method="fixed_point")
        self.assertLess((newton - fixed)[..., 4:-4, 4:-4].abs().max().item(), 1e-3)
        with self.assertRaisesRegex(ValueError, "newton"):
            invert_ddf(ddf, method="splat")
        with self.assertRaisesRegex(ValueError, "num_iters"):
            invert_ddf(ddf, num_iters=0)

    def test_invert_rotation(self):
        m = rotation_matrix(0.2, translation=(1.0, -1.0))
        ddf = affine_to_ddf(m, (24, 24))
        inv = invert_ddf(ddf, num_iters=30)
        expected = affine_to_ddf(torch.linalg.inv(m), (24, 24))
        self.assertLess((inv - expected)[..., 4:-4, 4:-4].abs().max().item(), 1e-3)


class TestFieldOps(unittest.TestCase):
    @parameterized.expand([[(4, 5), (7, 9)], [(8, 8), (8, 8)], [(16, 12), (31, 23)]])
    def test_resize_affine_consistent(self, small, big):
        m = rotation_matrix(0.1, translation=(0.5, 1.0))
        m_big = m.clone()
        # the same physical transform on the bigger grid: translation and centre scale with (N-1)/(n-1)
        fr, fc = (big[0] - 1) / (small[0] - 1), (big[1] - 1) / (small[1] - 1)
        s = torch.diag(torch.tensor([fr, fc, 1.0]))
        m_big = s @ m[0] @ torch.linalg.inv(s)
        torch.testing.assert_close(resize_ddf(affine_to_ddf(m, small), big), affine_to_ddf(m_big[None], big), atol=1e-4, rtol=0)

    def test_jacobian(self):
        self.assertTrue(torch.allclose(jacobian_determinant(torch.zeros(1, 2, 5, 5)), torch.ones(1, 1, 5, 5)))
        scale = affine_to_ddf(rotation_matrix(0.0, scale=2.0), (9, 9))
        torch.testing.assert_close(jacobian_determinant(scale), torch.full((1, 1, 9, 9), 4.0))
        flip = affine_to_ddf(torch.tensor([[[-1.0, 0, 0], [0, 1, 0], [0, 0, 1]]]), (9, 9))
        self.assertTrue(bool((jacobian_determinant(flip) < 0).all()))

    def test_physical(self):
        out = scale_ddf_to_physical(torch.ones(1, 2, 3, 3), (0.5, 0.2))
        self.assertAlmostEqual(out[0, 0, 0, 0].item(), 0.5)
        self.assertAlmostEqual(out[0, 1, 0, 0].item(), 0.2, places=6)
        with self.assertRaisesRegex(ValueError, "positive"):
            scale_ddf_to_physical(torch.ones(1, 2, 3, 3), (0.0, 1.0))

    @parameterized.expand([[torch.zeros(1, 3, 4, 4)], [torch.zeros(2, 4, 4)], [torch.zeros(1, 2, 4, 4, dtype=torch.long)]])
    def test_ill_shape(self, ddf):
        with self.assertRaises(ValueError):
            check_ddf(ddf)

    def test_mismatched_image(self):
        with self.assertRaisesRegex(ValueError, "matching image"):
            warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 5, 4))


if __name__ == "__main__":
    unittest.main()
