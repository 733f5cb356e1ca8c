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
"""Dice and HD95 on constructed masks with hand-computed values."""

from __future__ import annotations

import math
import unittest
import warnings

import numpy as np
import torch
from monai.metrics import DiceMetric
from parameterized import parameterized

from monai_jrs.metrics import DiceScoreMetric, HD95Metric, compute_dice_score, compute_hd95


def _square(h=32, w=32, r0=5, c0=5, side=12, batch=1):
    m = torch.zeros(batch, 1, h, w)
    m[..., r0 : r0 + side, c0 : c0 + side] = 1.0
    return m


def _disc(radius, size=64):
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    c = (size - 1) / 2.0
    return (((yy - c) ** 2 + (xx - c) ** 2).sqrt() < radius).float()[None, None]


def _pixel(r, c, h=16, w=16):
    m = torch.zeros(1, 1, h, w)
    m[0, 0, r, c] = 1.0
    return m


def _brute_force_hd(a: np.ndarray, b: np.ndarray, spacing=(1.0, 1.0), q=95.0) -> float:
    """Independent reference: 4-neighbour boundaries, all pairwise distances, max of the directed percentiles."""

    def boundary(m):
        p = np.pad(m, 1)
        inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        return np.argwhere(m & ~inner).astype(np.float64) * np.asarray(spacing)

    ea, eb = boundary(a.astype(bool)), boundary(b.astype(bool))
    d = np.sqrt(((ea[:, None, :] - eb[None, :, :]) ** 2).sum(-1))
    return float(max(np.percentile(d.min(1), q), np.percentile(d.min(0), q)))


# [y_pred, y, expected Dice]; rows 0-1 vs row 0 of a 4x4: 2 * 4 / (8 + 4)
_half = torch.zeros(1, 1, 4, 4)
_half[..., :2, :] = 1
_row = torch.zeros(1, 1, 4, 4)
_row[..., :1, :] = 1
_empty = torch.zeros(1, 1, 4, 4)
DICE_CASES = [
    ["identical", _half, _half, 1.0],
    ["subset", _half, _row, 2.0 / 3.0],
    ["disjoint", _row, _row.flip(2), 0.0],
    ["both_empty", _empty, _empty, 1.0],
    ["pred_empty", _empty, _half, 0.0],
    ["true_empty", _half, _empty, 0.0],
    ["bool_and_int", _half.bool(), _row.long(), 2.0 / 3.0],
]


class TestDice(unittest.TestCase):
    @parameterized.expand(DICE_CASES)
    def test_values(self, _, y_pred, y, expected):
        out = compute_dice_score(y_pred, y)
        self.assertEqual(out.shape, (1, 1))
        self.assertAlmostEqual(out.item(), expected, places=6)

    def test_ignore_empty_like_monai_default(self):
        # ignore_empty=True: NaN whenever the ground truth is empty (MONAI's DiceMetric default), else as usual.
        self.assertTrue(math.isnan(compute_dice_score(_empty, _empty, ignore_empty=True).item()))
        self.assertTrue(math.isnan(compute_dice_score(_half, _empty, ignore_empty=True).item()))
        self.assertEqual(compute_dice_score(_empty, _half, ignore_empty=True).item(), 0.0)

    @parameterized.expand([[False], [True]])
    def test_matches_monai(self, ignore_empty):
        g = torch.Generator().manual_seed(0)
        pred = (torch.rand(6, 1, 12, 12, generator=g) > 0.5).float()
        true = (torch.rand(6, 1, 12, 12, generator=g) > 0.6).float()
        pred[1], true[2], pred[3], true[3] = 0, 0, 0, 0  # one-empty and both-empty items
        ours = compute_dice_score(pred, true, ignore_empty=ignore_empty)
        monai = DiceMetric(include_background=True, reduction="none", ignore_empty=ignore_empty)(pred, true)
        torch.testing.assert_close(ours, monai.float(), equal_nan=True)

    @parameterized.expand(
        [
            ["two_channels", torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)],
            ["three_dims", torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)],
            ["size_mismatch", torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5)],
            ["batch_mismatch", torch.zeros(2, 1, 4, 4), torch.zeros(1, 1, 4, 4)],
            ["soft", torch.full((1, 1, 4, 4), 0.5), torch.zeros(1, 1, 4, 4)],
            ["nan", torch.full((1, 1, 4, 4), float("nan")), torch.zeros(1, 1, 4, 4)],
        ]
    )
    def test_ill_input(self, _, y_pred, y):
        with self.assertRaises(ValueError):
            compute_dice_score(y_pred, y)
        with self.assertRaises(ValueError):
            compute_hd95(y_pred, y)

    def test_type_error(self):
        with self.assertRaises(TypeError):
            compute_dice_score(np.zeros((1, 1, 4, 4)), _half)

    def test_metric_aggregation(self):
        metric = DiceScoreMetric()
        metric(torch.cat([_half, _row]), torch.cat([_half, _row.flip(2)]))  # 1.0, 0.0
        metric(_half, _row)  # 2/3
        self.assertAlmostEqual(metric.aggregate().item(), (1.0 + 0.0 + 2.0 / 3.0) / 3.0, places=6)
        self.assertEqual(tuple(metric.aggregate("none").shape), (3, 1))
        metric.reset()
        with self.assertRaises(ValueError):
            metric.aggregate()

    def test_metric_nan_skipped_and_list_input(self):
        metric = DiceScoreMetric(ignore_empty=True, get_not_nans=True)
        metric([_half[0], _half[0]], [_row[0], _empty[0]])  # list of channel-first items: 2/3 and NaN
        value, not_nans = metric.aggregate()
        self.assertAlmostEqual(value.item(), 2.0 / 3.0, places=6)
        self.assertEqual(not_nans.item(), 1.0)

    def test_metric_needs_y(self):
        with self.assertRaises(ValueError):
            DiceScoreMetric()(_half)


class TestHD95(unittest.TestCase):
    def test_identical(self):
        self.assertEqual(compute_hd95(_square(), _square()).item(), 0.0)
        self.assertEqual(compute_hd95(_square(), _square(), spacing=(0.3, 0.7)).item(), 0.0)

    def test_single_pixels_anisotropic(self):
        # (3, 4) vs (6, 8): 3 rows * 2.0 mm and 4 cols * 0.5 mm -> sqrt(6^2 + 2^2)
        out = compute_hd95(_pixel(3, 4), _pixel(6, 8), spacing=(2.0, 0.5))
        self.assertAlmostEqual(out.item(), math.sqrt(40.0), places=5)
        self.assertAlmostEqual(compute_hd95(_pixel(3, 4), _pixel(6, 8)).item(), 5.0, places=5)

    @parameterized.expand([[1, 0], [2, 0], [3, 0], [0, 1], [0, 2], [0, 3]])
    def test_shifted_squares(self, dr, dc):
        # Shifting a 12 px square by k px maps every boundary pixel onto a boundary pixel k px away, so no distance
        # exceeds k * spacing; the whole leading side (12 of 44 boundary pixels, > 5 %) is exactly k px away, so the
        # 95th percentile and the maximum are both k * spacing along the shift axis.
        spacing = (2.0, 0.5)
        a, b = _square(), _square(r0=5 + dr, c0=5 + dc)
        expected_mm = dr * spacing[0] + dc * spacing[1]
        self.assertAlmostEqual(compute_hd95(a, b, spacing=spacing).item(), expected_mm, places=5)
        self.assertAlmostEqual(compute_hd95(a, b, spacing=spacing, percentile=100).item(), expected_mm, places=5)
        self.assertAlmostEqual(compute_hd95(a, b).item(), float(dr + dc), places=5)
        self.assertAlmostEqual(compute_hd95(b, a, spacing=spacing).item(), expected_mm, places=5)  # symmetric

    def test_per_item_spacing(self):
        a, b = _square(batch=2), torch.cat([_square(r0=7), _square(r0=7)])
        out = compute_hd95(a, b, spacing=[[1.5, 1.0], [0.25, 3.0]])
        torch.testing.assert_close(out, torch.tensor([[3.0], [0.5]]))

    def test_concentric_discs(self):
        # radii 10 and 16 px: boundaries ~6 px apart, +/- one pixel of discretisation.
        small, big = _disc(10), _disc(16)
        px = compute_hd95(small, big).item()
        self.assertLessEqual(abs(px - 6.0), 1.0)
        # isotropic spacing scales every distance exactly
        self.assertAlmostEqual(compute_hd95(small, big, spacing=(0.3, 0.3)).item(), 0.3 * px, places=4)
        self.assertAlmostEqual(px, _brute_force_hd(small[0, 0].numpy(), big[0, 0].numpy()), places=4)

    @parameterized.expand([[0, (1.0, 1.0)], [1, (0.4, 1.7)], [2, (2.0, 0.5)]])
    def test_matches_brute_force(self, seed, spacing):
        g = torch.Generator().manual_seed(seed)
        a = torch.zeros(1, 1, 20, 24)
        b = torch.zeros(1, 1, 20, 24)
        for m in (a, b):  # two random rectangles per mask
            for _ in range(2):
                r0, c0 = torch.randint(0, 12, (2,), generator=g).tolist()
                hh, ww = torch.randint(3, 8, (2,), generator=g).tolist()
                m[..., r0 : r0 + hh, c0 : c0 + ww] = 1
        ref = _brute_force_hd(a[0, 0].numpy(), b[0, 0].numpy(), spacing)
        self.assertAlmostEqual(compute_hd95(a, b, spacing=spacing).item(), ref, places=4)

    def test_empty_is_nan_with_warning(self):
        a = _square()
        for y_pred, y in ((a, torch.zeros_like(a)), (torch.zeros_like(a), a), (torch.zeros_like(a),) * 2):
            with self.assertWarns(RuntimeWarning):
                self.assertTrue(math.isnan(compute_hd95(y_pred, y).item()))

    @parameterized.expand([[(1.0,)], [(1.0, 2.0, 3.0)], [(0.0, 1.0)], [(-1.0, 1.0)], [(float("nan"), 1.0)], [[[1, 1]] * 3]])
    def test_bad_spacing(self, spacing):
        with self.assertRaises(ValueError):
            compute_hd95(_square(batch=2), _square(batch=2), spacing=spacing)

    def test_bad_percentile(self):
        with self.assertRaises(ValueError):
            compute_hd95(_square(), _square(), percentile=101)
        with self.assertRaises(ValueError):
            HD95Metric(percentile=-1)
        with self.assertRaises(ValueError):
            HD95Metric(spacing=(0.0, 1.0))

    def test_metric_aggregation_and_unit(self):
        metric = HD95Metric(spacing=(2.0, 0.5))
        self.assertIsNone(metric.unit)
        metric(_square(), _square(r0=6))  # 2 mm
        metric(_square(), _square(c0=9))  # 2 mm (4 cols * 0.5)
        metric(_square(), _square(r0=8), spacing=(1.0, 1.0))  # per-call spacing overrides: 3 mm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            metric(_square(), torch.zeros(1, 1, 32, 32))  # NaN, skipped by aggregate
        self.assertEqual(metric.unit, "mm")
        self.assertAlmostEqual(metric.aggregate().item(), 7.0 / 3.0, places=5)
        with self.assertRaises(ValueError):  # pixels in a millimetre round
            metric(_square(), _square(), spacing=None)
        metric.reset()
        self.assertIsNone(metric.unit)
        metric(_square(), _square(r0=6), spacing=None)
        self.assertEqual(metric.unit, "px")
        self.assertAlmostEqual(metric.aggregate().item(), 1.0, places=5)


if __name__ == "__main__":
    unittest.main()
