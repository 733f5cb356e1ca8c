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
"""Exact-value tests of the adversarial, segmentation, DDF and cycle terms."""

from __future__ import annotations

import math
import unittest

import torch
from parameterized import parameterized

from monai_jrs.losses import (
    CycleConsistencyLoss,
    DDFConsistencyLoss,
    DiscriminatorAdversarialLoss,
    GeneratorAdversarialLoss,
    LogDiceLoss,
)

LOG2 = math.log(2.0)


class TestGeneratorAdversarialLoss(unittest.TestCase):
    @parameterized.expand(
        [
            ("non_saturating", False, torch.tensor([[0.5], [0.5]]), LOG2),  # -log D = log 2
            ("non_saturating", False, torch.tensor([[1.0], [0.25]]), 0.5 * math.log(4.0)),
            ("minimax", False, torch.tensor([[0.5], [0.5]]), -LOG2),  # log(1 - D)
            ("non_saturating", True, torch.tensor([[0.0]]), LOG2),  # logit 0 = probability 1/2
            ("minimax", True, torch.tensor([[0.0]]), -LOG2),
        ]
    )
    def test_values(self, mode, logits, output, expected):
        got = GeneratorAdversarialLoss(mode=mode, logits=logits)(output)
        self.assertAlmostEqual(float(got), expected, places=6)

    def test_bad_inputs(self):
        with self.assertRaisesRegex(ValueError, r"\[0, 1\]"):
            GeneratorAdversarialLoss()(torch.tensor([[1.5]]))
        with self.assertRaises(ValueError):
            GeneratorAdversarialLoss(mode="wgan")


class TestDiscriminatorAdversarialLoss(unittest.TestCase):
    @parameterized.expand(
        [
            (torch.tensor([[1.0]]), torch.tensor([[0.0]]), 0.0),  # perfect discriminator
            (torch.tensor([[0.5]]), torch.tensor([[0.5]]), LOG2),  # (log 2 + log 2) / 2
            (torch.tensor([[0.5], [1.0]]), torch.tensor([[0.0], [0.75]]), 0.5 * (0.5 * LOG2 + 0.5 * math.log(4.0))),
        ]
    )
    def test_values(self, real, fake, expected):
        self.assertAlmostEqual(float(DiscriminatorAdversarialLoss()(real, fake)), expected, places=6)

    def test_logits_match_probabilities(self):
        torch.manual_seed(0)
        lr, lf = torch.randn(4, 1), torch.randn(4, 1)
        a = DiscriminatorAdversarialLoss(logits=True)(lr, lf)
        b = DiscriminatorAdversarialLoss()(torch.sigmoid(lr), torch.sigmoid(lf))
        self.assertAlmostEqual(float(a), float(b), places=5)

    def test_none_reduction_needs_equal_batches(self):
        out = DiscriminatorAdversarialLoss(reduction="none")(torch.full((3, 1), 0.5), torch.full((3, 1), 0.5))
        torch.testing.assert_close(out, torch.full((3,), LOG2))
        with self.assertRaisesRegex(ValueError, "equal size"):
            DiscriminatorAdversarialLoss(reduction="none")(torch.full((3, 1), 0.5), torch.full((2, 1), 0.5))


class TestLogDiceLoss(unittest.TestCase):
    def test_perfect_is_zero(self):
        m = torch.zeros(2, 1, 6, 6)
        m[:, :, 1:4, 2:5] = 1
        self.assertEqual(float(LogDiceLoss()(m, m)), 0.0)

    def test_half_overlap(self):
        pred, target = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
        pred[0, 0, 0, :] = 1  # 4 pixels
        target[0, 0, 0, :2] = 1
        target[0, 0, 1, :2] = 1  # 4 pixels, 2 shared -> Dice = 4 / 8
        smooth = 1e-5
        expected = -math.log((4 + smooth) / (8 + smooth))
        self.assertAlmostEqual(float(LogDiceLoss(smooth=smooth)(pred, target)), expected, places=6)

    def test_empty_cases_are_finite(self):
        empty, full = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
        self.assertEqual(float(LogDiceLoss()(empty, empty)), 0.0)
        self.assertAlmostEqual(float(LogDiceLoss(smooth=1e-5)(empty, full)), -math.log(1e-5 / (16 + 1e-5)), places=4)

    def test_gradcheck(self):
        torch.manual_seed(1)
        p = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
        t = (torch.rand(1, 1, 5, 5, dtype=torch.float64) > 0.5).double()
        self.assertTrue(torch.autograd.gradcheck(lambda x: LogDiceLoss()(x, t), (p,), fast_mode=True))

    def test_bad_inputs(self):
        with self.assertRaisesRegex(ValueError, "shape"):
            LogDiceLoss()(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5))
        with self.assertRaisesRegex(ValueError, "smooth"):
            LogDiceLoss(smooth=0)


class TestDDFConsistencyLoss(unittest.TestCase):
    def test_identical_is_zero(self):
        ddf = torch.randn(2, 2, 5, 7)
        self.assertEqual(float(DDFConsistencyLoss()(ddf, ddf)), 0.0)

    @parameterized.expand([(2.0, 2.0, math.log(1.5)), (2.0, 1.0, math.log(3.0)), (4.0, 1.0, math.log(9.0))])
    def test_constant_error(self, error, scale, expected):
        # error e along rows only: squared error per pixel e^2, MSE over the 2 components e^2 / 2,
        # loss = log(1 + MSE / scale^2)
        target = torch.zeros(1, 2, 4, 4)
        pred = target.clone()
        pred[:, 0] = error
        loss = DDFConsistencyLoss(scale=scale)
        self.assertAlmostEqual(float(loss(pred, target)), expected, places=6)
        self.assertAlmostEqual(float(loss.normalized_mse(pred, target)), 1 - math.exp(-expected), places=6)

    def test_mask(self):
        target = torch.zeros(1, 2, 4, 4)
        pred = target.clone()
        pred[:, 1, :2] = 2.0  # error only in the top half
        mask = torch.zeros(1, 1, 4, 4)
        mask[..., 2:, :] = 1
        self.assertEqual(float(DDFConsistencyLoss(scale=1.0)(pred, target, mask)), 0.0)
        mask[..., :2, :] = 1
        self.assertAlmostEqual(float(DDFConsistencyLoss(scale=1.0)(pred, target, mask)), math.log(2.0), places=6)

    def test_gradcheck(self):
        torch.manual_seed(2)
        p = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
        t = torch.randn(1, 2, 4, 4, dtype=torch.float64)
        self.assertTrue(torch.autograd.gradcheck(lambda x: DDFConsistencyLoss()(x, t), (p,), fast_mode=True))

    def test_bad_inputs(self):
        with self.assertRaisesRegex(ValueError, r"\(B, 2, H, W\)"):
            DDFConsistencyLoss()(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
        with self.assertRaisesRegex(ValueError, "mask"):
            DDFConsistencyLoss()(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4), torch.ones(1, 2, 4, 4))
        with self.assertRaisesRegex(ValueError, "scale"):
            DDFConsistencyLoss(scale=-1)


class TestCycleConsistencyLoss(unittest.TestCase):
    def test_values(self):
        x, y = torch.rand(2, 1, 5, 5), torch.rand(2, 1, 5, 5)
        self.assertAlmostEqual(float(CycleConsistencyLoss()(x + 0.1, x, y - 0.2, y)), 10 * (0.1 + 0.2), places=5)
        self.assertAlmostEqual(float(CycleConsistencyLoss(lambda_cycle=1.0)(x, x, y + 0.5, y)), 0.5, places=6)
        self.assertEqual(float(CycleConsistencyLoss()(x, x, y, y)), 0.0)

    def test_bad_inputs(self):
        with self.assertRaisesRegex(ValueError, "shape"):
            CycleConsistencyLoss()(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5), torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
        with self.assertRaisesRegex(ValueError, "lambda_cycle"):
            CycleConsistencyLoss(lambda_cycle=-1)


if __name__ == "__main__":
    unittest.main()
