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
"""Tests of the combined content and generator losses (weights, terms, gradients, bundle-config use)."""

from __future__ import annotations

import math
import unittest

import torch
from monai.bundle import ConfigParser
from monai.losses import BendingEnergyLoss, SSIMLoss
from parameterized import parameterized

from monai_jrs.losses import JRSContentLoss, JRSGeneratorLoss, NormalizedMutualInformationLoss
from monai_jrs.networks import JRSGenerator
from monai_jrs.utils.enums import JRSKeys


def _outputs(seed: int = 0, size: int = 24) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(2, 1, size, size, generator=g)
    mask = (torch.rand(2, 1, size, size, generator=g) > 0.5).float()
    return {
        JRSKeys.REFERENCE: ref,
        JRSKeys.REFERENCE_MASK: mask,
        JRSKeys.REGISTERED: torch.rand(2, 1, size, size, generator=g),
        JRSKeys.REGISTERED_MASK_PROB: torch.rand(2, 1, size, size, generator=g),
        JRSKeys.DDF: torch.randn(2, 2, size, size, generator=g),
        JRSKeys.DDF_APPLIED: torch.zeros(2, 2, size, size),
    }


class TestJRSContentLoss(unittest.TestCase):
    def test_terms_and_weights(self):
        torch.manual_seed(0)
        x, y = torch.rand(2, 1, 24, 24), torch.rand(2, 1, 24, 24)
        loss = JRSContentLoss(nmi_weight=2.0, ssim_weight=0.5, vgg_weight=0.25, vgg_pretrained=False)
        terms = loss.compute_terms(x, y)
        self.assertEqual(sorted(terms), ["nmi", "ssim", "vgg"])
        self.assertAlmostEqual(float(terms["nmi"]), float(NormalizedMutualInformationLoss()(x, y)), places=6)
        self.assertAlmostEqual(float(terms["ssim"]), float(SSIMLoss(spatial_dims=2)(x, y)), places=6)
        expected = 2.0 * terms["nmi"] + 0.5 * terms["ssim"] + 0.25 * terms["vgg"]
        self.assertAlmostEqual(float(loss(x, y)), float(expected), places=5)

    def test_zero_weight_terms_not_built(self):
        loss = JRSContentLoss(vgg_weight=0.0)  # no VGG weights file needed
        self.assertIsNone(loss.vgg)
        x = torch.rand(1, 1, 16, 16)
        self.assertEqual(sorted(loss.compute_terms(x, x)), ["nmi", "ssim"])
        self.assertAlmostEqual(float(JRSContentLoss(nmi_weight=0, vgg_weight=0)(x, x)), 0.0, places=6)  # 1 - SSIM(x,x)
        with self.assertRaisesRegex(ValueError, "no active term"):
            JRSContentLoss(nmi_weight=0, ssim_weight=0, vgg_weight=0)(x, x)

    def test_negative_weight(self):
        with self.assertRaisesRegex(ValueError, "ssim_weight"):
            JRSContentLoss(ssim_weight=-1.0, vgg_weight=0)

    def test_injected_terms_exact(self):
        """Injected terms: the loss is exactly sum_k w_k * term_k; missing weights are 1; a zero weight drops it."""
        x, y = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
        l1 = torch.nn.L1Loss()  # |0 - 1| = 1
        mse = lambda p, t: ((p - t) ** 2).mean() * 3.0  # noqa: E731 - a plain callable works too: 3
        loss = JRSContentLoss(terms={"l1": l1, "mse3": mse, "off": torch.nn.L1Loss()},
                              weights={"l1": 0.5, "off": 0.0})
        self.assertEqual(loss.weights, {"l1": 0.5, "mse3": 1.0, "off": 0.0})
        self.assertEqual(sorted(loss.compute_terms(x, y)), ["l1", "mse3"])
        self.assertEqual(float(loss(x, y)), 0.5 * 1.0 + 1.0 * 3.0)
        self.assertIsNone(loss.nmi)
        self.assertIn("l1", dict(loss.named_modules()).get("terms"))  # modules are registered (move with .to())

    def test_injected_terms_from_config(self):
        parser = ConfigParser({"loss": {
            "_target_": "monai_jrs.losses.JRSContentLoss",
            "terms": {"lncc": {"_target_": "monai.losses.LocalNormalizedCrossCorrelationLoss", "spatial_dims": 2,
                               "kernel_size": 3}},
            "weights": {"lncc": 2.0},
        }})
        loss = parser.get_parsed_content("loss")
        x = torch.rand(1, 1, 12, 12)
        self.assertEqual(sorted(loss.compute_terms(x, x)), ["lncc"])
        self.assertAlmostEqual(float(loss(x, x)), -2.0, places=4)  # LNCC loss of identical images is -1

    @parameterized.expand([
        ("unknown_weight", {"terms": {"a": torch.nn.L1Loss()}, "weights": {"b": 1.0}}, "not in `terms`"),
        ("weights_without_terms", {"weights": {"nmi": 1.0}}, "`weights` needs `terms`"),
        ("not_callable", {"terms": {"a": 3.0}}, "must be a loss"),
        ("negative", {"terms": {"a": torch.nn.L1Loss()}, "weights": {"a": -1.0}}, "`a` must be a weight >= 0"),
    ])
    def test_injected_terms_errors(self, _, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            JRSContentLoss(**kwargs)

    def test_generator_loss_takes_an_injected_content_loss(self):
        from monai_jrs.losses import JRSGeneratorLoss

        x = torch.rand(1, 1, 16, 16)
        outputs = {"reference": x, "reference_mask": torch.ones(1, 1, 16, 16), "registered": torch.zeros_like(x),
                   "registered_mask_prob": torch.ones(1, 1, 16, 16), "ddf": torch.zeros(1, 2, 16, 16)}
        gen = JRSGeneratorLoss(content=torch.nn.L1Loss(), adversarial_weight=0, dice_weight=0, ddf_weight=0)
        total, terms = gen(outputs)
        self.assertAlmostEqual(float(total), float(x.mean()), places=6)
        self.assertEqual(sorted(terms), ["content", "total"])

    def test_from_bundle_config(self):
        parser = ConfigParser(
            {"loss": {"_target_": "monai_jrs.losses.JRSContentLoss", "vgg_weight": 0.0, "nmi_weight": 0.5}}
        )
        loss = parser.get_parsed_content("loss")
        self.assertIsInstance(loss, JRSContentLoss)
        self.assertEqual(loss.weights, {"nmi": 0.5, "ssim": 1.0})


class TestJRSGeneratorLoss(unittest.TestCase):
    def test_total_is_weighted_sum_of_terms(self):
        out = _outputs()
        w = {"adversarial_weight": 0.5, "dice_weight": 2.0, "ddf_weight": 3.0, "bending_weight": 0.1}
        loss = JRSGeneratorLoss(vgg_weight=0.0, **w)
        d_out = torch.full((2, 1), 0.5)
        total, terms = loss(out, d_out)
        self.assertEqual(sorted(terms), ["adversarial", "bending", "ddf", "log_dice", "nmi", "ssim", "total"])
        self.assertAlmostEqual(terms["adversarial"], math.log(2.0), places=6)
        self.assertAlmostEqual(terms["bending"], float(BendingEnergyLoss()(out[JRSKeys.DDF])), places=5)
        expected = (
            terms["nmi"] + terms["ssim"] + 0.5 * terms["adversarial"] + 2.0 * terms["log_dice"]
            + 3.0 * terms["ddf"] + 0.1 * terms["bending"]
        )
        self.assertAlmostEqual(float(total), expected, places=4)
        self.assertAlmostEqual(terms["total"], float(total), places=6)

    @parameterized.expand(
        [
            ("no_discriminator", {}, None, "adversarial"),
            ("no_ddf_applied", {"drop": JRSKeys.DDF_APPLIED}, torch.full((2, 1), 0.5), "ddf"),
            ("zero_dice_weight", {"dice_weight": 0.0}, torch.full((2, 1), 0.5), "log_dice"),
            ("default_no_bending", {}, torch.full((2, 1), 0.5), "bending"),
        ]
    )
    def test_inactive_terms(self, _, kwargs, d_out, absent):
        out = _outputs()
        drop = kwargs.pop("drop", None)
        if drop is not None:
            out.pop(drop)
        _, terms = JRSGeneratorLoss(vgg_weight=0.0, **kwargs)(out, d_out)
        self.assertNotIn(absent, terms)

    def test_bending_energy_exact(self):
        # ddf channel 0 = a * row^2: second difference along rows is 2a everywhere, all others 0,
        # so MONAI's bending energy (mean over both channels) is (2a)^2 / 2 = 2 a^2.
        a = 0.3
        rows = torch.arange(8.0).view(1, 1, 8, 1).expand(1, 1, 8, 8)
        ddf = torch.cat([a * rows**2, torch.zeros_like(rows)], dim=1).expand(2, -1, -1, -1)
        out = _outputs(size=8)
        out[JRSKeys.DDF] = ddf
        _, terms = JRSGeneratorLoss(nmi_weight=1.0, ssim_weight=0.0, vgg_weight=0.0, bending_weight=1.0)(out)
        self.assertAlmostEqual(terms["bending"], 2 * a**2, places=5)

    def test_missing_keys(self):
        out = _outputs()
        out.pop(JRSKeys.REGISTERED_MASK_PROB)
        with self.assertRaisesRegex(ValueError, "registered_mask_prob"):
            JRSGeneratorLoss(vgg_weight=0.0)(out)

    def test_perfect_registration_has_small_loss(self):
        out = _outputs()
        out[JRSKeys.REGISTERED] = out[JRSKeys.REFERENCE]
        out[JRSKeys.REGISTERED_MASK_PROB] = out[JRSKeys.REFERENCE_MASK]
        out[JRSKeys.DDF] = out[JRSKeys.DDF_APPLIED]
        _, terms = JRSGeneratorLoss(vgg_weight=0.0, bending_weight=1.0)(out)
        self.assertAlmostEqual(terms["ssim"], 0.0, places=5)
        self.assertEqual(terms["log_dice"], 0.0)
        self.assertEqual(terms["ddf"], 0.0)
        self.assertEqual(terms["bending"], 0.0)

    def test_gradients_reach_the_generator(self):
        torch.manual_seed(0)
        net = JRSGenerator(features=8, num_res_blocks=1, search_size=32, seg_head="learned")
        ref, flt = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
        mask = (ref > 0.5).float()
        registered, prob, _, ddf = net(ref, flt, mask)
        out = {
            JRSKeys.REFERENCE: ref, JRSKeys.REFERENCE_MASK: mask, JRSKeys.REGISTERED: registered,
            JRSKeys.REGISTERED_MASK_PROB: prob, JRSKeys.DDF: ddf, JRSKeys.DDF_APPLIED: torch.ones_like(ddf),
        }
        total, _ = JRSGeneratorLoss(vgg_weight=0.0, bending_weight=1.0)(out, torch.full((2, 1), 0.3))
        total.backward()
        self.assertGreater(float(net.ddf_head.weight.grad.abs().sum()), 0.0)
        self.assertGreater(float(net.seg_head.conv.weight.grad.abs().sum()), 0.0)  # via -log Dice


if __name__ == "__main__":
    unittest.main()
