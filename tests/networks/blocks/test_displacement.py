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
"""Displacement helpers of the generator and the conventions they build on: gradients, exact values, errors."""

from __future__ import annotations

import math
import unittest

import torch
from parameterized import parameterized
from torch.autograd import gradcheck

from monai_jrs.networks.blocks import bound_displacement, compose_affine_and_local, integrate_velocity, rescale_affine
from monai_jrs.utils.conventions import (
    affine_to_ddf,
    compose_ddf,
    identity_grid,
    jacobian_determinant,
    resize_ddf,
    rotation_matrix,
    warp,
)


def _rand(*shape, low=-0.45, high=0.45, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g, dtype=torch.float64) * (high - low) + low
    return x.requires_grad_(requires_grad)


def _linear_image(h, w, a=0.3, b=-0.2, c=1.0):
    """``a * row + b * col + c``: bilinear interpolation reproduces it exactly inside the grid."""
    grid = identity_grid((h, w), dtype=torch.float64)
    return (a * grid[:, :1] + b * grid[:, 1:] + c).contiguous()


class TestGradcheck(unittest.TestCase):
    """float64 ``gradcheck`` on tensors of at most 8 x 8 pixels."""

    @parameterized.expand([["border"], ["zeros"]])
    def test_warp(self, padding_mode):
        image = _rand(1, 2, 6, 7, low=0.0, high=1.0, seed=1)
        ddf = _rand(1, 2, 6, 7, low=-1.4, high=1.4, seed=2)  # non-integer sample points almost surely
        self.assertTrue(
            gradcheck(lambda i, d: warp(i, d, padding_mode=padding_mode), (image, ddf), fast_mode=True, atol=1e-6)
        )

    @parameterized.expand([[0], [1], [3]])
    def test_integrate_velocity(self, steps):
        velocity = _rand(1, 2, 6, 6, low=-1.5, high=1.5, seed=3)
        self.assertTrue(gradcheck(lambda v: integrate_velocity(v, steps), (velocity,), fast_mode=True, atol=1e-6))

    def test_bound_displacement(self):
        ddf = _rand(2, 2, 5, 4, low=-4.0, high=4.0, seed=4)
        self.assertTrue(gradcheck(lambda d: bound_displacement(d, (1.5, 2.5)), (ddf,), fast_mode=True))

    def test_compose_affine_and_local(self):
        matrix = rotation_matrix(0.3, (0.7, -1.1), 0.9, dtype=torch.float64).requires_grad_(True)
        local = _rand(1, 2, 6, 8, low=-2.0, high=2.0, seed=5)
        self.assertTrue(gradcheck(compose_affine_and_local, (matrix, local), fast_mode=True))

    @parameterized.expand([[(8, 7)], [(3, 4)], [(5, 5)]])
    def test_resize_ddf(self, out_shape):
        ddf = _rand(1, 2, 5, 5, low=-2.0, high=2.0, seed=6)
        self.assertTrue(gradcheck(lambda d: resize_ddf(d, out_shape), (ddf,), fast_mode=True))


class TestComposeAffineAndLocal(unittest.TestCase):
    def setUp(self):
        self.h, self.w = 13, 15
        # scale 0.6 keeps every affine sample point A(q) inside the grid (checked in the tests)
        self.matrix = rotation_matrix(0.2, (0.4, -0.3), 0.6, dtype=torch.float64)
        self.local = _rand(1, 2, self.h, self.w, low=-0.9, high=0.9, seed=7, requires_grad=False)
        self.affine_ddf = affine_to_ddf(self.matrix, (self.h, self.w))
        grid = identity_grid((self.h, self.w), dtype=torch.float64)
        src = grid + self.affine_ddf
        self.assertTrue(bool((src[:, 0] >= 0).all() and (src[:, 0] <= self.h - 1).all()))
        self.assertTrue(bool((src[:, 1] >= 0).all() and (src[:, 1] <= self.w - 1).all()))
        # pixels whose local sample point p + local(p) stays inside the grid
        pts = grid + self.local
        self.inside = (
            (pts[:, 0] >= 0) & (pts[:, 0] <= self.h - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= self.w - 1)
        ).unsqueeze(1)
        self.assertGreater(int(self.inside.sum()), 0.8 * self.h * self.w)
        self.assertLess(int(self.inside.sum()), self.h * self.w)  # some points leave the grid

    def test_formula(self):
        out = compose_affine_and_local(self.matrix, self.local)
        lin = self.matrix[0, :2, :2]
        expected = self.affine_ddf.clone()
        expected[0, 0] += lin[0, 0] * self.local[0, 0] + lin[0, 1] * self.local[0, 1]
        expected[0, 1] += lin[1, 0] * self.local[0, 0] + lin[1, 1] * self.local[0, 1]
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
        # the precomputed affine field gives the same result; a (B, 2, 3) matrix too
        torch.testing.assert_close(compose_affine_and_local(self.matrix, self.local, self.affine_ddf), out)
        torch.testing.assert_close(compose_affine_and_local(self.matrix[:, :2], self.local), out)

    def test_local_then_affine_exact(self):
        # registered(p) = f_aff(p + local(p)) with f_aff = warp(floating, affine_ddf); exact for a linear image
        floating = _linear_image(self.h, self.w)
        f_aff = warp(floating, self.affine_ddf, padding_mode="border")
        two_warps = warp(f_aff, self.local, padding_mode="border")
        one_warp = warp(floating, compose_affine_and_local(self.matrix, self.local), padding_mode="border")
        diff = (two_warps - one_warp).abs()[self.inside]
        self.assertLess(diff.max().item(), 1e-10)
        # and it is a non-trivial warp: the composed result differs from the affine-only one
        self.assertGreater((one_warp - f_aff).abs().max().item(), 0.1)

    def test_equals_compose_ddf_inside(self):
        ours = compose_affine_and_local(self.matrix, self.local)
        generic = compose_ddf(self.affine_ddf, self.local, padding_mode="border")
        inside = self.inside.expand(-1, 2, -1, -1)
        self.assertLess((ours - generic).abs()[inside].max().item(), 1e-10)
        # outside the grid compose_ddf clamps the affine field, the exact composition does not
        self.assertGreater((ours - generic).abs()[~inside].max().item(), 1e-3)

    def test_identity_matrix_returns_local(self):
        eye = torch.eye(3, dtype=torch.float64).unsqueeze(0)
        torch.testing.assert_close(compose_affine_and_local(eye, self.local), self.local, atol=1e-12, rtol=0)

    @parameterized.expand(
        [
            ["matrix_2d", torch.eye(3), torch.zeros(1, 2, 4, 4)],
            ["matrix_4x4", torch.eye(4).unsqueeze(0), torch.zeros(1, 2, 4, 4)],
            ["batch_mismatch", torch.eye(3).repeat(2, 1, 1), torch.zeros(1, 2, 4, 4)],
            ["ddf_channels", torch.eye(3).unsqueeze(0), torch.zeros(1, 3, 4, 4)],
            ["ddf_3d", torch.eye(3).unsqueeze(0), torch.zeros(2, 4, 4)],
        ]
    )
    def test_ill_shape(self, _, matrix, local):
        with self.assertRaises(ValueError):
            compose_affine_and_local(matrix, local)

    def test_ill_affine_ddf(self):
        with self.assertRaises(ValueError):
            compose_affine_and_local(torch.eye(3).unsqueeze(0), torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))


class TestIntegrateVelocity(unittest.TestCase):
    def test_zero_steps_is_identity(self):
        v = _rand(1, 2, 5, 6, requires_grad=False)
        torch.testing.assert_close(integrate_velocity(v, 0), v, atol=0, rtol=0)

    @parameterized.expand([[1], [4], [7]])
    def test_constant_velocity_is_translation(self, steps):
        # exp of a constant field is the same constant translation (border padding keeps it constant)
        v = torch.zeros(2, 2, 7, 9, dtype=torch.float64)
        v[0, 0], v[0, 1], v[1, 0], v[1, 1] = 1.25, -3.5, -0.5, 2.0
        torch.testing.assert_close(integrate_velocity(v, steps), v, atol=1e-12, rtol=0)

    def test_zero_velocity(self):
        out = integrate_velocity(torch.zeros(1, 2, 6, 6), 7)
        self.assertEqual(out.abs().max().item(), 0.0)

    def test_matches_manual_squaring(self):
        v = _rand(1, 2, 8, 8, low=-2.0, high=2.0, seed=8, requires_grad=False)
        d = v / 4.0
        d = d + warp(d, d, padding_mode="border")
        d = d + warp(d, d, padding_mode="border")
        torch.testing.assert_close(integrate_velocity(v, 2), d, atol=1e-12, rtol=0)

    def test_rotation_velocity_integrates_to_rotation(self):
        # v(x) = w [[0, -1], [1, 0]] (x - c) generates the rotation exp(w J) = rotation_matrix(w)
        grid = identity_grid((16, 16), dtype=torch.float64) - 7.5
        v = torch.stack((-grid[:, 1], grid[:, 0]), dim=1) * 0.3
        target = affine_to_ddf(rotation_matrix(0.3, dtype=torch.float64), (16, 16))
        centre = (..., slice(4, 12), slice(4, 12))  # away from the border, where the flow leaves the grid
        # measured max error on the centre: 0.172 (no integration), 0.024 (3 steps), 0.0015 (7 steps)
        self.assertGreater((integrate_velocity(v, 0) - target)[centre].abs().max().item(), 0.15)
        self.assertLess((integrate_velocity(v, 3) - target)[centre].abs().max().item(), 0.03)
        ddf = integrate_velocity(v, 7)
        self.assertLess((ddf - target)[centre].abs().max().item(), 3e-3)
        self.assertGreater(jacobian_determinant(ddf).min().item(), 0.0)

    def test_ill_args(self):
        with self.assertRaises(ValueError):
            integrate_velocity(torch.zeros(1, 2, 4, 4), -1)
        with self.assertRaises(ValueError):
            integrate_velocity(torch.zeros(1, 3, 4, 4), 2)


class TestBoundDisplacement(unittest.TestCase):
    def test_values(self):
        ddf = torch.tensor([-100.0, -1.0, 0.0, 0.5, 3.0], dtype=torch.float64).view(1, 1, 1, 5).repeat(1, 2, 1, 1)
        out = bound_displacement(ddf, (2.0, 4.0))
        torch.testing.assert_close(out[0, 0], 2.0 * torch.tanh(ddf[0, 0] / 2.0))
        torch.testing.assert_close(out[0, 1], 4.0 * torch.tanh(ddf[0, 1] / 4.0))
        self.assertEqual(out[0, 0, 0, 2].item(), 0.0)
        self.assertLessEqual(out[0, 0].abs().max().item(), 2.0)
        self.assertGreater(out[0, 0].abs().max().item(), 1.999)  # saturates at -100
        self.assertLessEqual(out[0, 1].abs().max().item(), 4.0)

    def test_near_identity_for_small_values(self):
        ddf = _rand(1, 2, 4, 4, low=-1e-3, high=1e-3, requires_grad=False)
        torch.testing.assert_close(bound_displacement(ddf, 5.0), ddf, atol=1e-9, rtol=0)

    @parameterized.expand([[0.0], [-1.0], [(1.0, 0.0)], [(1.0, 2.0, 3.0)], [float("nan")]])
    def test_ill_bound(self, bound):
        with self.assertRaises(ValueError):
            bound_displacement(torch.zeros(1, 2, 4, 4), bound)


class TestResizeDDF(unittest.TestCase):
    @parameterized.expand([[(5, 7), (9, 13)], [(9, 13), (5, 7)], [(4, 4), (10, 7)]])
    def test_constant_field_rescaled(self, small, big):
        ddf = torch.ones(1, 2, *small, dtype=torch.float64)
        ddf[:, 1] = -2.0
        out = resize_ddf(ddf, big)
        self.assertEqual(tuple(out.shape), (1, 2, *big))
        torch.testing.assert_close(out[:, 0], torch.full_like(out[:, 0], (big[0] - 1) / (small[0] - 1)))
        torch.testing.assert_close(out[:, 1], torch.full_like(out[:, 1], -2.0 * (big[1] - 1) / (small[1] - 1)))

    @parameterized.expand([[(5, 7), (17, 25)], [(8, 6), (15, 11)]])
    def test_affine_field_matches_rescale_affine(self, small, big):
        # resize_ddf of an affine field == affine field of rescale_affine(align_corners=True), exactly
        a = rotation_matrix(0.7, (1.5, -2.0), 1.1, dtype=torch.float64)
        a[0, 0, 1] += 0.05  # a little shear
        resized = resize_ddf(affine_to_ddf(a, small), big)
        direct = affine_to_ddf(rescale_affine(a, small, big, align_corners=True), big)
        torch.testing.assert_close(resized, direct, atol=1e-10, rtol=0)

    def test_same_size_returns_input(self):
        ddf = torch.zeros(1, 2, 5, 5)
        self.assertIs(resize_ddf(ddf, (5, 5)), ddf)


class TestRescaleAffine(unittest.TestCase):
    @parameterized.expand([[False], [True]])
    def test_round_trip(self, align_corners):
        a = rotation_matrix(torch.tensor([0.3, -2.0], dtype=torch.float64), [[1.0, 2.0], [-3.0, 0.5]])
        there = rescale_affine(a, (16, 24), (40, 33), align_corners)
        back = rescale_affine(there, (40, 33), (16, 24), align_corners)
        torch.testing.assert_close(back, a, atol=1e-12, rtol=0)

    def test_area_values(self):
        # S = diag(N / n): pure rotation by 90 degrees on a 2x anisotropic rescale, translation scaled per axis
        a = rotation_matrix(math.pi / 2, (1.0, 2.0), dtype=torch.float64)
        out = rescale_affine(a, (10, 20), (20, 20), align_corners=False)  # s = (2, 1)
        expected = torch.tensor([[[0.0, -2.0, 2.0], [0.5, 0.0, 2.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)

    def test_ill_shape(self):
        with self.assertRaises(ValueError):
            rescale_affine(torch.eye(3), (4, 4), (8, 8))
        with self.assertRaises(ValueError):
            rescale_affine(torch.eye(3).unsqueeze(0), (4, 4, 4), (8, 8))


if __name__ == "__main__":
    unittest.main()
