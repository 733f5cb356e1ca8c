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
"""GlobalAlignment: recovery of large rotations and shifts on a synthetic chest, identity, options and errors."""

from __future__ import annotations

import math
import unittest

import torch
from parameterized import parameterized

from monai_jrs.networks.blocks import AffineRefinementNet, GlobalAlignment
from monai_jrs.utils.conventions import affine_to_ddf, rotation_matrix, warp
from tests.networks.synthetic import deform_affine, synthetic_chest


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = (a > 0.5).float(), (b > 0.5).float()
    return (2.0 * (a * b).sum() / (a.sum() + b.sum())).item()


def _angle_deg(matrix: torch.Tensor) -> float:
    return math.degrees(math.atan2(matrix[0, 1, 0].item(), matrix[0, 0, 0].item()))


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


# (size, rotation in degrees, shift in pixels of a 96-pixel image (scaled to the image height))
# Measured (search_size=64): TRE mean <= 0.52 px, max <= 1.09 px; Dice(recovered, ideal) >= 0.981;
# angle error <= 0.64 degrees; Dice before alignment 0.01-0.30.
RECOVERY_CASES = [
    [64, 35.0, (10.0, -12.0)],
    [64, 90.0, (-20.0, 15.0)],
    [64, -135.0, (25.0, 25.0)],
    [64, 180.0, (-15.0, -25.0)],
    [96, 35.0, (10.0, -12.0)],
    [96, 90.0, (-20.0, 15.0)],
    [96, -135.0, (25.0, 25.0)],
    [96, 180.0, (-15.0, -25.0)],
    [96, 20.0, (40.0, 0.0)],
    [96, -60.0, (0.0, -40.0)],
    [96, 145.0, (-30.0, 30.0)],
    [(80, 96), 90.0, (-20.0, 15.0)],
    [(80, 96), -135.0, (25.0, 25.0)],
    [(80, 96), 180.0, (-15.0, -25.0)],
]


class TestGlobalAlignmentRecovery(unittest.TestCase):
    @parameterized.expand(RECOVERY_CASES)
    def test_search_recovers_affine(self, size, degrees, shift):
        image, mask = synthetic_chest(size)
        h, w = image.shape[2:]
        s = h / 96.0
        applied = rotation_matrix(math.radians(degrees), (shift[0] * s, shift[1] * s))
        floating, floating_mask = deform_affine(image, applied), deform_affine(mask, applied)
        self.assertLess(_dice(floating_mask, mask), 0.35)  # a large motion

        stage = GlobalAlignment(search_size=64, refinement="none")
        matrix, score = stage.search(image, floating)
        self.assertEqual(tuple(matrix.shape), (1, 3, 3))
        self.assertEqual(tuple(score.shape), (1,))
        self.assertTrue(0.9 < score.item() <= 1.0)

        ddf, ddf_applied = affine_to_ddf(matrix, (h, w)), affine_to_ddf(applied, (h, w))
        tre = (ddf - ddf_applied).norm(dim=1)
        self.assertLess(tre.mean().item(), 1.0)
        self.assertLess(tre.max().item(), 1.6)
        self.assertLess(_angle_diff(_angle_deg(matrix), degrees), 1.5)

        # the mask comes back: as well as the applied matrix itself can bring it back (lung parts may have
        # left the field of view), and close to the reference mask
        recovered = warp(floating_mask, ddf, padding_mode="zeros")
        ideal = warp(floating_mask, ddf_applied, padding_mode="zeros")
        self.assertGreater(_dice(recovered, ideal), 0.97)
        self.assertGreater(_dice(recovered, mask), _dice(ideal, mask) - 0.03)
        self.assertGreater(_dice(recovered, mask), 0.8)

    def test_reference_mask_window_ignores_distractors(self):
        # a follow-up with a bright collimator band and a burnt-in marker block that the reference does not have:
        # the window of the dilated reference lung mask keeps them out of the score
        image, mask = synthetic_chest(96)
        applied = rotation_matrix(math.radians(6.0), (7.0, -9.0))
        floating = deform_affine(image, applied)
        floating[..., :14, :] = 1.0  # collimator band
        floating[..., 78:94, 0:20] = 1.0  # marker block
        # measured: 0.17 px mean TRE in the lungs with the window, 55.8 px without it (the band wins)
        stage = GlobalAlignment(search_size=64, refinement="none")
        matrix, _ = stage.search(image, floating, mask)
        tre = (affine_to_ddf(matrix, (96, 96)) - affine_to_ddf(applied, (96, 96))).norm(dim=1)[mask[:, 0] > 0]
        self.assertLess(tre.mean().item(), 1.0)
        torch.testing.assert_close(stage(image, floating, mask), matrix)  # forward = search without refinement
        # window geometry: the mask dilated by mask_margin of the grid; an all-empty mask means the whole image
        window = stage.search_weight(mask, (64, 64))
        self.assertEqual(tuple(window.shape), (1, 1, 64, 64))
        self.assertGreater(float(window.mean()), float(torch.nn.functional.interpolate(mask, size=[64, 64]).mean()))
        self.assertIsNone(stage.search_weight(torch.zeros_like(mask), (64, 64)))
        self.assertIsNone(stage.search_weight(None, (64, 64)))

    def test_forward_equals_search_without_refinement(self):
        image, _ = synthetic_chest(64)
        floating = deform_affine(image, rotation_matrix(math.radians(-100.0), (6.0, -9.0)))
        for refinement in ("none", "learned"):  # the learned stage starts at the identity
            stage = GlobalAlignment(search_size=32, refinement=refinement)
            torch.testing.assert_close(stage(image, floating), stage.search(image, floating)[0], atol=1e-5, rtol=0)

    def test_identity(self):
        image, _ = synthetic_chest((48, 40))
        matrix, score = GlobalAlignment(search_size=32, refinement="none").search(image, image)
        torch.testing.assert_close(matrix, torch.eye(3).unsqueeze(0), atol=1e-3, rtol=0)
        self.assertAlmostEqual(score.item(), 1.0, places=4)

    def test_batch_matches_single(self):
        image, _ = synthetic_chest(64)
        mats = [rotation_matrix(math.radians(70.0), (5.0, 3.0)), rotation_matrix(math.radians(-160.0), (-8.0, 10.0))]
        flts = torch.cat([deform_affine(image, m) for m in mats])
        stage = GlobalAlignment(search_size=32, refinement="none")
        batch, _ = stage.search(image.repeat(2, 1, 1, 1), flts)
        for i in range(2):
            single, _ = stage.search(image, flts[i : i + 1])
            torch.testing.assert_close(batch[i : i + 1], single, atol=1e-4, rtol=0)

    def test_limited_rotation_range(self):
        # with max_rotation_deg=30 only [-30, 30] is searched: 20 degrees is found, 120 degrees cannot be
        image, _ = synthetic_chest(64)
        stage = GlobalAlignment(search_size=32, num_rotations=13, max_rotation_deg=30.0, refinement="none")
        self.assertAlmostEqual(stage.angle_step, math.radians(5.0), places=6)
        small = deform_affine(image, rotation_matrix(math.radians(20.0), (3.0, -2.0)))
        self.assertLess(_angle_diff(_angle_deg(stage.search(image, small)[0]), 20.0), 1.5)
        large = deform_affine(image, rotation_matrix(math.radians(120.0)))
        self.assertLessEqual(abs(_angle_deg(stage.search(image, large)[0])), 30.0 + 2.5 + 1e-3)

    def test_no_exhaustive_search_is_identity(self):
        g = torch.Generator().manual_seed(0)
        ref, flt = torch.rand(2, 1, 20, 24, generator=g), torch.rand(2, 1, 20, 24, generator=g)
        out = GlobalAlignment(search_size=16, exhaustive_search=False, refinement="none")(ref, flt)
        torch.testing.assert_close(out, torch.eye(3).repeat(2, 1, 1), atol=0, rtol=0)


class TestGlobalAlignment(unittest.TestCase):
    @parameterized.expand(
        [
            [(16, 16), "none", 2], [(17, 23), "learned", 1], [(32, 48), "none", 2], [(45, 31), "learned", 2],
            [(8, 8), "learned", 1], [(5, 70), "none", 1],
        ]
    )
    def test_shape(self, size, refinement, batch):
        g = torch.Generator().manual_seed(1)
        ref, flt = torch.rand(batch, 2, *size, generator=g), torch.rand(batch, 2, *size, generator=g)
        stage = GlobalAlignment(search_size=32, num_rotations=36, refinement=refinement)
        out = stage(ref, flt)
        self.assertEqual(tuple(out.shape), (batch, 3, 3))
        torch.testing.assert_close(out[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(batch, 3), atol=0, rtol=0)
        _, score = stage.search(ref, flt)
        self.assertEqual(tuple(score.shape), (batch,))
        self.assertTrue(bool(((score >= -1) & (score <= 1)).all()))

    @parameterized.expand(
        [[(96, 96), 64, (64, 64)], [(45, 31), 32, (32, 22)], [(20, 30), 64, (20, 30)], [(31, 100), 16, (5, 16)]]
    )
    def test_search_shape(self, size, search_size, expected):
        self.assertEqual(GlobalAlignment(search_size=search_size).search_shape(*size), expected)

    def test_angles(self):
        stage = GlobalAlignment(num_rotations=72)
        degrees = torch.rad2deg(stage.angles.double())
        self.assertEqual(len(degrees), 72)
        torch.testing.assert_close(degrees, torch.arange(-36, 36, dtype=torch.float64) * 5.0, atol=1e-4, rtol=0)
        self.assertNotIn("angles", stage.state_dict())  # a non-persistent buffer

    def test_learned_refinement_trains(self):
        image, _ = synthetic_chest(32)
        floating = deform_affine(image, rotation_matrix(math.radians(30.0), (2.0, 1.0)))
        stage = GlobalAlignment(search_size=32, refinement="learned", refinement_features=4)
        self.assertIsInstance(stage.refinement_net, AffineRefinementNet)
        stage(image, floating).pow(2).sum().backward()
        self.assertGreater(stage.refinement_net.head.weight.grad.abs().sum().item(), 0.0)
        self.assertIsNone(GlobalAlignment(refinement="none").refinement_net)
        self.assertEqual(len(list(GlobalAlignment(refinement="none").parameters())), 0)

    @parameterized.expand(
        [
            [{"search_size": 7}], [{"num_rotations": 0}], [{"max_rotation_deg": 0.0}], [{"max_rotation_deg": 181.0}],
            [{"refinement": "affine"}], [{"max_shift_fraction": 0.0}], [{"max_shift_fraction": 1.0}],
            [{"min_overlap": 0.0}], [{"min_overlap": 1.5}], [{"mask_margin": -0.1}], [{"mask_margin": 0.5}],
        ]
    )
    def test_ill_args(self, kwargs):
        with self.assertRaises(ValueError):
            GlobalAlignment(**kwargs)

    @parameterized.expand(
        [
            ["spatial", torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 17)],
            ["batch", torch.zeros(2, 1, 16, 16), torch.zeros(1, 1, 16, 16)],
            ["ndim", torch.zeros(1, 16, 16), torch.zeros(1, 16, 16)],
            ["tiny", torch.zeros(1, 1, 3, 16), torch.zeros(1, 1, 3, 16)],
            ["int", torch.zeros(1, 1, 16, 16, dtype=torch.int64), torch.zeros(1, 1, 16, 16, dtype=torch.int64)],
        ]
    )
    def test_ill_shape(self, _, ref, flt):
        stage = GlobalAlignment(search_size=16, refinement="none")
        with self.assertRaises(ValueError):
            stage(ref, flt)
        with self.assertRaises(ValueError):
            stage.search(ref, flt)


class TestAffineRefinementNet(unittest.TestCase):
    def test_starts_at_identity(self):
        net = AffineRefinementNet(features=4)
        out = net(torch.rand(3, 2, 20, 28, generator=torch.Generator().manual_seed(0)))
        torch.testing.assert_close(out, torch.eye(3).repeat(3, 1, 1), atol=0, rtol=0)

    def test_residual_structure(self):
        net = AffineRefinementNet(in_channels=3, features=4)
        with torch.no_grad():
            net.head.bias.copy_(torch.arange(6.0))
        out = net(torch.rand(2, 3, 16, 16))
        expected = torch.tensor([[1.0, 1.0, 2.0], [3.0, 5.0, 5.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
        torch.testing.assert_close(out, expected, atol=0, rtol=0)
        self.assertEqual(sum(isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2) for m in net.modules()), 4)

    @parameterized.expand([[{"in_channels": 0}], [{"features": 0}]])
    def test_ill_args(self, kwargs):
        with self.assertRaises(ValueError):
            AffineRefinementNet(**kwargs)


if __name__ == "__main__":
    unittest.main()


class TestScaleSearch(unittest.TestCase):
    """The search over scales (``scales``) recovers a magnification that the rigid search cannot."""

    def _pair(self, scale: float, angle_deg: float = 4.0):
        from monai_jrs.utils.conventions import rotation_matrix

        torch.manual_seed(0)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, 96), torch.linspace(-1, 1, 96), indexing="ij")
        img = torch.exp(-((yy - 0.2) ** 2 + (xx + 0.3) ** 2) / 0.05) + 0.7 * torch.exp(-((yy + 0.3) ** 2 + (xx - 0.35) ** 2) / 0.02)
        img = img + 0.5 * ((yy.abs() < 0.6) & (xx.abs() < 0.5)).float()
        ref = img[None, None]
        mat = rotation_matrix(torch.tensor([math.radians(angle_deg)]), torch.tensor([[3.0, -2.0]]), torch.tensor([scale]))
        flt = warp(ref, affine_to_ddf(torch.linalg.inv(mat), (96, 96)), padding_mode="zeros")
        return ref, flt, mat

    @parameterized.expand([(0.92,), (1.0,), (1.08,)])
    def test_recovers_scale(self, scale):
        ref, flt, mat = self._pair(scale)
        stage = GlobalAlignment(search_size=96, num_rotations=36, refinement="none",
                                scales=(0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15))
        found = stage(ref, flt)
        s_found = float(torch.linalg.det(found[0, :2, :2]).sqrt())
        self.assertAlmostEqual(s_found, scale, delta=0.02)  # A maps reference points to floating ones: A = mat
        rigid = GlobalAlignment(search_size=96, num_rotations=36, refinement="none")
        self.assertAlmostEqual(float(torch.linalg.det(rigid(ref, flt)[0, :2, :2]).sqrt()), 1.0, places=5)

    def test_single_scale_is_the_rigid_search(self):
        ref, flt, _ = self._pair(1.05)
        a = GlobalAlignment(search_size=48, num_rotations=36, refinement="none")(ref, flt)
        b = GlobalAlignment(search_size=48, num_rotations=36, refinement="none", scales=(1.0,))(ref, flt)
        self.assertTrue(torch.equal(a, b))

    @parameterized.expand([((),), ((1.0, 0.9),), ((0.0, 1.0),)])
    def test_bad_scales(self, scales):
        with self.assertRaisesRegex(ValueError, "scales"):
            GlobalAlignment(scales=scales)

    def test_state_dict_compatible(self):
        """Weights of a rigid stage load into a scale-searching one (the scales buffer is not persistent)."""
        a = GlobalAlignment(search_size=32, refinement="learned")
        b = GlobalAlignment(search_size=32, refinement="learned", scales=(0.9, 1.0, 1.1))
        b.load_state_dict(a.state_dict())
        self.assertNotIn("scales", a.state_dict())
