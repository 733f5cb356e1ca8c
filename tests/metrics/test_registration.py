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
"""TRE, folding and inverse consistency on fields with known answers."""

from __future__ import annotations

import math
import unittest
import warnings

import numpy as np
import torch
from parameterized import parameterized

from monai_jrs.metrics import (
    FoldingPercentageMetric,
    InverseConsistencyMetric,
    TargetRegistrationErrorMetric,
    folding_percentage,
    inside_fov,
    inverse_consistency_error,
    inverse_consistency_map,
    registration_error,
    registration_error_map,
)
from monai_jrs.utils.conventions import affine_to_ddf, invert_ddf, rotation_matrix


def _const(dr, dc, h=8, w=8, batch=1, dtype=torch.float32):
    ddf = torch.zeros(batch, 2, h, w, dtype=dtype)
    ddf[:, 0], ddf[:, 1] = dr, dc
    return ddf


def _ramp_field(h=10, w=10):
    """Row displacement taking the values 0..h*w-1 in raster order, zero column displacement."""
    ddf = torch.zeros(1, 2, h, w, dtype=torch.float64)
    ddf[0, 0] = torch.arange(h * w, dtype=torch.float64).reshape(h, w)
    return ddf


class TestTRE(unittest.TestCase):
    @parameterized.expand(
        [
            ["px", (3.0, 4.0), None, 5.0, "px"],
            ["mm_aniso", (3.0, 4.0), (2.0, 0.5), math.sqrt(6.0**2 + 2.0**2), "mm"],
            ["rows_only", (1.0, 0.0), (2.0, 0.5), 2.0, "mm"],  # channel 0 is rows: scaled by the row spacing
            ["cols_only", (0.0, 1.0), (2.0, 0.5), 0.5, "mm"],
        ]
    )
    def test_constant_fields(self, _, shift, spacing, expected, unit):
        out = registration_error(_const(0.0, 0.0), _const(*shift), spacing=spacing)
        self.assertEqual(out["unit"], unit)
        for key in ("tre_mean", "tre_p95", "tre_max"):
            self.assertEqual(out[key].shape, (1,))
            self.assertAlmostEqual(out[key].item(), expected, places=5)

    def test_symmetric_and_per_item_spacing(self):
        app, rec = _const(1.0, 2.0, batch=2), _const(-2.0, 6.0, batch=2)  # error (-3, 4)
        out = registration_error(rec, app, spacing=[[1.0, 1.0], [2.0, 0.5]])
        torch.testing.assert_close(out["tre_mean"], torch.tensor([5.0, math.sqrt(40.0)], dtype=torch.float64))

    def test_percentile_exact(self):
        # errors 0..99: mean 49.5, numpy-linear 95th percentile 94.05, max 99
        out = registration_error(_ramp_field(), torch.zeros(1, 2, 10, 10, dtype=torch.float64))
        self.assertAlmostEqual(out["tre_mean"].item(), 49.5, places=9)
        self.assertAlmostEqual(out["tre_p95"].item(), 94.05, places=9)
        self.assertAlmostEqual(out["tre_max"].item(), 99.0, places=9)
        out = registration_error(_ramp_field(), torch.zeros(1, 2, 10, 10, dtype=torch.float64), percentile=50)
        self.assertAlmostEqual(out["tre_p50"].item(), 49.5, places=9)

    def test_rotation_known_tre(self):
        # applied: rotation by theta about the centre, recovered: identity -> |R(p - c) - (p - c)| = 2 sin(theta/2) r
        h, w, theta = 16, 12, math.radians(30)
        app = affine_to_ddf(rotation_matrix(theta, dtype=torch.float64), (h, w))
        rr, cc = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
        expected = 2 * math.sin(theta / 2) * np.hypot(rr, cc)
        out = registration_error(app, torch.zeros_like(app))
        self.assertAlmostEqual(out["tre_mean"].item(), expected.mean(), places=9)
        self.assertAlmostEqual(out["tre_p95"].item(), np.percentile(expected, 95), places=9)
        np.testing.assert_allclose(registration_error_map(app, torch.zeros_like(app))[0, 0].numpy(), expected)

    def test_region_mask(self):
        rec = torch.zeros(1, 2, 8, 8)
        rec[..., :4] = 1.0  # error sqrt(2) on the left half, 0 on the right
        mask = torch.zeros(1, 1, 8, 8)
        mask[..., :4] = 1
        out = registration_error(torch.zeros_like(rec), rec, mask=mask, region_name="lung")
        self.assertAlmostEqual(out["tre_mean"].item(), math.sqrt(2) / 2, places=6)
        self.assertAlmostEqual(out["tre_lung_mean"].item(), math.sqrt(2), places=6)
        self.assertAlmostEqual(out["tre_lung_p95"].item(), math.sqrt(2), places=6)
        out = registration_error(torch.zeros_like(rec), rec, mask=1 - mask, region_name="heart")
        self.assertEqual(out["tre_heart_max"].item(), 0.0)

    def test_field_of_view(self):
        # applied: +3 rows on an 8-row image, so rows 5..7 map to rows 8..10, outside the floating image.
        app = _const(3.0, 0.0)
        rec = app.clone()
        rec[:, :, 5:] = 0.0  # wrong (error 3) exactly where there is nothing to register
        mask = torch.zeros(1, 1, 8, 8)
        mask[..., 4:6, :] = 1  # rows 4 (inside) and 5 (outside)
        out = registration_error(app, rec, mask=mask, exclude_outside_fov=True)
        self.assertAlmostEqual(out["fov_fraction"].item(), 5 / 8)
        self.assertAlmostEqual(out["tre_mean"].item(), 3.0 * 3 / 8, places=6)
        self.assertEqual(out["tre_fov_mean"].item(), 0.0)
        self.assertEqual(out["tre_fov_max"].item(), 0.0)
        self.assertAlmostEqual(out["tre_lung_mean"].item(), 1.5, places=6)
        self.assertEqual(out["tre_lung_fov_mean"].item(), 0.0)
        self.assertNotIn("tre_fov_mean", registration_error(app, rec))
        expected_fov = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
        expected_fov[..., :5, :] = True
        torch.testing.assert_close(inside_fov(app), expected_fov)

    def test_empty_region_nan(self):
        with self.assertWarns(RuntimeWarning):
            out = registration_error(_const(0, 0), _const(1, 0), mask=torch.zeros(1, 1, 8, 8))
        self.assertTrue(math.isnan(out["tre_lung_mean"].item()))
        self.assertEqual(out["tre_mean"].item(), 1.0)

    @parameterized.expand(
        [
            ["three_channels", torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), None],
            ["size_mismatch", torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 9), None],
            ["batch_mismatch", torch.zeros(2, 2, 8, 8), torch.zeros(1, 2, 8, 8), None],
            ["nan", torch.zeros(1, 2, 8, 8), torch.full((1, 2, 8, 8), float("nan")), None],
            ["inf", torch.full((1, 2, 8, 8), float("inf")), torch.zeros(1, 2, 8, 8), None],
            ["soft_mask", torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8), torch.full((1, 1, 8, 8), 0.3)],
            ["mask_shape", torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8), torch.ones(1, 1, 4, 4)],
            ["integer_ddf", torch.zeros(1, 2, 8, 8, dtype=torch.long), torch.zeros(1, 2, 8, 8), None],
        ]
    )
    def test_ill_input(self, _, app, rec, mask):
        with self.assertRaises(ValueError):
            registration_error(app, rec, mask=mask)
        with self.assertRaises(ValueError):
            inverse_consistency_error(app, rec, mask=mask)

    def test_bad_options(self):
        with self.assertRaises(ValueError):
            registration_error(_const(0, 0), _const(0, 0), percentile=120)
        with self.assertRaises(ValueError):
            registration_error(_const(0, 0), _const(0, 0), spacing=(1.0, -1.0))
        with self.assertRaises(TypeError):
            registration_error(np.zeros((1, 2, 8, 8)), _const(0, 0))

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(0)
        app = torch.rand(1, 2, 6, 6, generator=g, dtype=torch.float64)
        rec = (torch.rand(1, 2, 6, 6, generator=g, dtype=torch.float64) + 1.0).requires_grad_(True)
        self.assertTrue(torch.autograd.gradcheck(lambda r: registration_error_map(app, r, (0.5, 2.0)), (rec,)))

    def test_metric_class(self):
        metric = TargetRegistrationErrorMetric(spacing=(2.0, 0.5))
        metric(y_pred=_const(3.0, 4.0, batch=2), y=_const(0.0, 0.0, batch=2))  # sqrt(40) twice
        metric(y_pred=_const(1.0, 0.0), y=_const(0.0, 0.0))  # 2
        self.assertEqual(metric.unit, "mm")
        self.assertAlmostEqual(metric.aggregate().item(), (2 * math.sqrt(40.0) + 2.0) / 3, places=5)
        metric.reset()
        p95 = TargetRegistrationErrorMetric(percentile=95)
        p95(_ramp_field().float().mul(0).add(0), _ramp_field().float())
        self.assertAlmostEqual(p95.aggregate().item(), 94.05, places=3)
        self.assertEqual(p95.unit, "px")

    def test_metric_mask_channel_and_fov(self):
        rec = torch.zeros(1, 2, 8, 8)
        rec[..., :4] = 1.0
        mask = torch.zeros(1, 1, 8, 8)
        mask[..., :4] = 1
        packed = TargetRegistrationErrorMetric()
        packed(rec, torch.cat([torch.zeros_like(rec), mask], dim=1))  # mask as channel 2 of y
        kw = TargetRegistrationErrorMetric()
        kw(rec, torch.zeros_like(rec), mask=mask)
        self.assertAlmostEqual(packed.aggregate().item(), math.sqrt(2), places=6)
        self.assertAlmostEqual(kw.aggregate().item(), math.sqrt(2), places=6)
        with self.assertRaises(ValueError):
            packed(rec, torch.cat([torch.zeros_like(rec), mask], dim=1), mask=mask)
        app = _const(3.0, 0.0)
        bad = app.clone()
        bad[:, :, 5:] = 0.0
        fov_metric = TargetRegistrationErrorMetric(exclude_outside_fov=True)
        fov_metric(bad, app)
        self.assertEqual(fov_metric.aggregate().item(), 0.0)


class TestFolding(unittest.TestCase):
    def test_zero_field(self):
        self.assertEqual(folding_percentage(torch.zeros(2, 2, 8, 8)).tolist(), [0.0, 0.0])

    @parameterized.expand([["cols", 1], ["rows", 0]])
    def test_flip(self, _, axis):
        # a mirror p -> (N - 1) - p along one axis: ddf = N - 1 - 2p, Jacobian determinant -1 everywhere
        h, w = 6, 8
        coord = torch.arange(h if axis == 0 else w, dtype=torch.float32)
        ddf = torch.zeros(1, 2, h, w)
        ddf[0, axis] = (coord.numel() - 1 - 2 * coord).view(-1, 1) if axis == 0 else (w - 1 - 2 * coord)
        self.assertEqual(folding_percentage(ddf).item(), 100.0)

    @parameterized.expand([["shrink", -0.5, 0.0], ["collapse", -1.0, 100.0], ["expand", 1.0, 0.0]])
    def test_scaling(self, _, factor, expected):
        # ddf = factor * (p - c): determinant (1 + factor)^2; a collapse to a point (det 0) counts as folding
        ddf = affine_to_ddf(rotation_matrix(0.0, scale=1.0 + factor), (8, 8))
        self.assertEqual(folding_percentage(ddf).item(), expected)

    def test_partial_and_mask(self):
        # mirror the columns in the top 4 rows only: det = 1 + d(ddf_col)/dcol = -1 there, +1 below
        ddf = torch.zeros(1, 2, 8, 8)
        ddf[0, 1, :4] = 7 - 2 * torch.arange(8.0)
        top = torch.zeros(1, 1, 8, 8)
        top[..., :4, :] = 1
        self.assertEqual(folding_percentage(ddf).item(), 50.0)
        self.assertEqual(folding_percentage(ddf, mask=top).item(), 100.0)
        self.assertEqual(folding_percentage(ddf, mask=1 - top).item(), 0.0)
        metric = FoldingPercentageMetric()
        metric(ddf)  # 50
        metric(ddf, top)  # 100
        metric(torch.cat([ddf, ddf]), torch.cat([1 - top, top]))  # 0, 100
        self.assertAlmostEqual(metric.aggregate().item(), 62.5)
        self.assertEqual(tuple(metric.aggregate("none").shape), (4, 1))

    def test_ill_input(self):
        with self.assertRaises(ValueError):
            folding_percentage(torch.zeros(1, 3, 8, 8))
        with self.assertRaises(ValueError):
            folding_percentage(torch.full((1, 2, 8, 8), float("nan")))
        with self.assertRaises(ValueError):
            folding_percentage(torch.zeros(1, 2, 8, 8), mask=torch.ones(1, 1, 8, 7))
        with self.assertWarns(RuntimeWarning):
            self.assertTrue(math.isnan(folding_percentage(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 8, 8)).item()))


class TestInverseConsistency(unittest.TestCase):
    @parameterized.expand([[torch.float64, 1e-9], [torch.float32, 1e-4]])
    def test_affine_exact_inverse(self, dtype, tol):
        a = rotation_matrix(0.4, (3.0, -2.0), 1.1, dtype=torch.float64)
        fwd = affine_to_ddf(a, (24, 20)).to(dtype)
        bwd = affine_to_ddf(torch.linalg.inv(a), (24, 20)).to(dtype)
        out = inverse_consistency_error(fwd, bwd)
        self.assertLess(out["ice_max"].item(), tol)
        self.assertGreater(out["ice_fov_fraction"].item(), 0.5)
        # without the field-of-view restriction, border-extrapolated backward values break consistency
        self.assertGreater(inverse_consistency_error(fwd, bwd, exclude_outside_fov=False)["ice_max"].item(), 0.1)

    def test_mismatched_pair(self):
        a = rotation_matrix(0.4, dtype=torch.float64)
        fwd = affine_to_ddf(a, (24, 20))
        wrong = affine_to_ddf(rotation_matrix(-0.3, dtype=torch.float64), (24, 20))
        self.assertGreater(inverse_consistency_error(fwd, wrong)["ice_mean"].item(), 0.5)
        # translations t and s: |t + s| everywhere, in mm with anisotropic spacing
        out = inverse_consistency_error(_const(2.0, 1.0), _const(-1.0, 0.0), spacing=(2.0, 0.5))
        self.assertAlmostEqual(out["ice_mean"].item(), math.hypot(2.0, 0.5), places=6)
        self.assertEqual(out["unit"], "mm")

    def test_composition_order(self):
        # forward: +2 rows everywhere; backward: g(q) = (0.1 * q_row, 0) on the floating grid.
        # residual(p) = fwd(p) + g(p + fwd(p)) = 2 + 0.1 * (row + 2); the reverse order would give 2 + 0.1 * row.
        h, w = 10, 6
        fwd = _const(2.0, 0.0, h, w, dtype=torch.float64)
        bwd = torch.zeros(1, 2, h, w, dtype=torch.float64)
        bwd[0, 0] = 0.1 * torch.arange(h, dtype=torch.float64).view(-1, 1)
        err = inverse_consistency_map(fwd, bwd)[0, 0]
        expected = (2.0 + 0.1 * (torch.arange(h, dtype=torch.float64) + 2.0)).view(-1, 1).expand(h, w)
        torch.testing.assert_close(err[: h - 2], expected[: h - 2])  # rows whose image stays inside the image

    def test_numerical_inverse(self):
        # a smooth non-affine field and its fixed-point inverse from conventions.invert_ddf
        yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
        fwd = torch.stack([1.5 * torch.sin(xx / 5.0), 1.0 * torch.cos(yy / 4.0)])[None].double()
        bwd = invert_ddf(fwd, num_iters=50)
        self.assertLess(inverse_consistency_error(fwd, bwd)["ice_p95"].item(), 0.05)
        self.assertGreater(inverse_consistency_error(fwd, -fwd)["ice_p95"].item(), 0.2)

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(1)
        fwd = (torch.rand(1, 2, 6, 6, generator=g, dtype=torch.float64) * 0.6 + 0.2).requires_grad_(True)
        bwd = (torch.rand(1, 2, 6, 6, generator=g, dtype=torch.float64) + 1.0).requires_grad_(True)
        self.assertTrue(torch.autograd.gradcheck(inverse_consistency_map, (fwd, bwd)))

    def test_metric_class(self):
        metric = InverseConsistencyMetric(spacing=(1.0, 1.0))
        metric(_const(2.0, 1.0), _const(-1.0, 0.0))  # sqrt(2)
        metric(_const(2.0, 1.0), _const(-2.0, -1.0))  # 0
        self.assertAlmostEqual(metric.aggregate().item(), math.sqrt(2) / 2, places=6)
        self.assertEqual(metric.unit, "mm")
        mask = torch.zeros(1, 1, 8, 8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            metric(_const(0.0, 0.0), _const(0.0, 0.0), mask=mask)  # empty region -> NaN, skipped
        self.assertAlmostEqual(metric.aggregate().item(), math.sqrt(2) / 2, places=6)
        with self.assertRaises(ValueError):
            metric(_const(0.0, 0.0))


if __name__ == "__main__":
    unittest.main()
