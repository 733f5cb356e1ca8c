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
from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Affine, Rand2DElastic, RandAffined
from parameterized import parameterized

from monai_jrs.transforms import (
    RandSyntheticDeformation,
    RandSyntheticDeformationd,
    SyntheticDeformation,
    SyntheticDeformationError,
    affine_from_applied_operations,
    bspline_displacement,
    bspline_displacement_at,
    control_grid_shape,
    fov_mask,
    sampling_field_from_transform,
)
from monai_jrs.utils import compose_ddf, identity_grid, warp
from tests.transforms.phantom import make_phantom


def _control_points(shape, spacing, max_disp, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cp = torch.randn((2, *control_grid_shape(shape, spacing)), generator=gen)
    field = bspline_displacement(cp, shape, spacing)
    return cp * (max_disp / field.norm(dim=0).max())


# (rotation, translation, scale, elastic max px) on a 64x64 phantom
CASES = [
    [0.0, (5.0, -3.0), 1.0, 0.0],
    [35.0, (0.0, 0.0), 1.0, 0.0],
    [-120.0, (8.0, 0.0), 1.0, 3.0],
    [4.0, (-2.0, 2.5), 1.07, 2.0],
    [180.0, (0.0, -9.0), 0.94, 4.0],
]


class TestBSpline(unittest.TestCase):
    def test_grid_shape(self):
        # n = ceil((N - 1) / s) + 3
        self.assertEqual(control_grid_shape((64, 48), 16), (7, 6))
        self.assertEqual(control_grid_shape((65, 17), (16, 8)), (7, 5))

    def test_partition_of_unity(self):
        # constant coefficients give exactly that constant displacement everywhere (B-spline partition of unity)
        cp = torch.ones(2, *control_grid_shape((20, 30), 7.0), dtype=torch.float64)
        cp[1] *= -2.5
        field = bspline_displacement(cp, (20, 30), 7.0)
        torch.testing.assert_close(field[0], torch.ones(20, 30, dtype=torch.float64), atol=1e-12, rtol=0)
        torch.testing.assert_close(field[1], torch.full((20, 30), -2.5, dtype=torch.float64), atol=1e-12, rtol=0)

    def test_linear_reproduction(self):
        # cubic B-splines reproduce linear functions: coefficients k * s give e(x) = x + offset-independent ramp
        shape, s = (16, 12), 5.0
        nh, nw = control_grid_shape(shape, s)
        k = torch.arange(nh, dtype=torch.float64)
        cp = torch.zeros(2, nh, nw, dtype=torch.float64)
        cp[0] = k[:, None] * 0.1
        field = bspline_displacement(cp, shape, s)
        diffs = field[0, 1:, 0] - field[0, :-1, 0]
        torch.testing.assert_close(diffs, torch.full_like(diffs, 0.1 / s), atol=1e-12, rtol=0)

    def test_margin_matches_interior(self):
        cp = _control_points((24, 20), 8.0, 3.0)
        full = bspline_displacement(cp, (24, 20), 8.0, margin=5)
        torch.testing.assert_close(full[:, 5:-5, 5:-5], bspline_displacement(cp, (24, 20), 8.0))

    def test_gradcheck(self):
        cp = torch.randn(2, *control_grid_shape((8, 8), 4.0), dtype=torch.float64, requires_grad=True)
        self.assertTrue(torch.autograd.gradcheck(lambda c: bspline_displacement(c, (8, 8), 4.0), (cp,)))

    def test_off_grid_evaluation(self):
        # bspline_displacement_at: the same field as on the grid, exact derivatives, zero beyond the support
        shape, s = (24, 20), 8.0
        cp = _control_points(shape, s, 3.0).double()
        grid = identity_grid(shape, dtype=torch.float64)[0]
        torch.testing.assert_close(
            bspline_displacement_at(cp, grid, shape, s), bspline_displacement(cp, shape, s), atol=1e-12, rtol=0
        )
        pts = torch.rand(2, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 60.0 - 18.0
        _, jac = bspline_displacement_at(cp, pts, shape, s, jacobian=True)
        auto = torch.autograd.functional.jacobian(lambda x: bspline_displacement_at(cp, x, shape, s).sum(1), pts)
        torch.testing.assert_close(jac, auto, atol=1e-12, rtol=0)
        far = torch.tensor([[-40.0, 70.0], [5.0, 5.0]], dtype=torch.float64)
        self.assertEqual(float(bspline_displacement_at(cp, far, shape, s).abs().max()), 0.0)

    def test_bad_shape(self):
        with self.assertRaisesRegex(ValueError, r"\(2, 7, 7\)"):
            bspline_displacement(torch.zeros(2, 5, 5), (64, 64), 16.0)
        with self.assertRaises(ValueError):
            bspline_displacement(torch.zeros(3, 7, 7), (64, 64), 16.0)
        with self.assertRaises(ValueError):
            control_grid_shape((64, 64), 0.0)


class TestSyntheticDeformation(unittest.TestCase):
    def setUp(self):
        self.img, self.mask = make_phantom(64)

    def test_identity_exact(self):
        deform = SyntheticDeformation(control_points=torch.zeros(2, *control_grid_shape((64, 64), 64.0)))
        self.assertTrue(deform.is_identity())
        flt, flt_mask, ddf = deform(self.img, self.mask)
        self.assertTrue(torch.equal(flt, self.img))
        self.assertTrue(torch.equal(flt_mask, self.mask))
        self.assertTrue(torch.equal(ddf, torch.zeros(2, 64, 64)))
        psi, ddf2 = deform.fields((64, 64))
        self.assertEqual(float(psi.abs().max()), 0.0)
        self.assertEqual(float(ddf2.abs().max()), 0.0)

    def test_translation_impulse(self):
        # content moves by +translation (rows, cols); the applied DDF is then -translation everywhere
        img = torch.zeros(1, 9, 11)
        img[0, 4, 5] = 1.0
        flt, _, ddf = SyntheticDeformation(translation=(2.0, -3.0))(img)
        self.assertEqual(tuple(torch.nonzero(flt[0] > 0.999)[0].tolist()), (6, 2))
        torch.testing.assert_close(ddf[0], torch.full((9, 11), 2.0))
        torch.testing.assert_close(ddf[1], torch.full((9, 11), -3.0))

    def test_rotation_direction(self):
        # +90 deg is counter-clockwise as displayed: the top rows end up on the left
        img = torch.zeros(1, 21, 21)
        img[0, :3] = 1.0
        flt, _, _ = SyntheticDeformation(rotation=90.0)(img)
        torch.testing.assert_close(flt[0, :, :3], torch.ones(21, 3), atol=1e-5, rtol=0)
        self.assertLess(float(flt[0, :, 4:].abs().max()), 1e-5)

    @parameterized.expand(CASES)
    def test_round_trip(self, rotation, translation, scale, elastic):
        cp = _control_points((64, 64), 16.0, elastic) if elastic else None
        deform = SyntheticDeformation(rotation, translation, scale, control_points=cp, control_spacing=16.0)
        flt, flt_mask, ddf = deform(self.img, self.mask)
        psi, ddf2 = deform.fields((64, 64))
        torch.testing.assert_close(ddf, ddf2)
        # floating image and mask are the warp of the reference with psi
        torch.testing.assert_close(flt, warp(self.img[None], psi[None], padding_mode="zeros")[0])
        ref_mask_warped = warp(self.mask[None], psi[None], padding_mode="zeros")[0] >= 0.5
        self.assertTrue(torch.equal(flt_mask.bool(), ref_mask_warped))
        # in the field of view (away from both borders) warping back reproduces the reference
        inner = torch.zeros(1, 64, 64, dtype=torch.bool)
        inner[:, 2:-2, 2:-2] = True
        fov = fov_mask(ddf, margin=1.0) & inner
        self.assertGreater(float(fov.float().mean()), 0.3)
        # The bounds are the floor of two bilinear resamplings of this phantom (its lung edges are ~2 px wide), not
        # a DDF error: for the 35 deg case the DDF is the exact inverse affine (composition residual 1e-14 px in
        # float64) and the round trip still errs by max 0.0310 / mean 0.00437; over CASES the worst measured values
        # are max 0.0402 / mean 0.00437 (the DDFs are exact to 3e-5 px, see test_applied_ddf_exact). Shifting the
        # DDF by 0.1 px raises the mean to 0.0053-0.0060 in every non-trivial case.
        back = warp(flt[None], ddf[None])[0]
        self.assertLess(float((back - self.img)[fov].abs().max()), 0.042)
        self.assertLess(float((back - self.img)[fov].abs().mean()), 0.0046)
        # both directions of the inverse: ddf o psi and psi o ddf vanish (in px)
        fwd = compose_ddf(psi[None], ddf[None])[0].norm(dim=0)  # ddf(p) + psi(p + ddf(p))
        self.assertLess(float(fwd[fov[0]].max()), 0.02)
        fov_flt = fov_mask(psi, margin=1.0)[0] & inner[0]
        bwd = compose_ddf(ddf[None], psi[None])[0].norm(dim=0)  # psi(q) + ddf(q + psi(q))
        self.assertLess(float(bwd[fov_flt].max()), 0.02)

    @parameterized.expand([[torch.float64, 2e-6], [torch.float32, 1e-4]])
    def test_applied_ddf_exact(self, dtype, tol):
        # with control points the applied DDF inverts psi's map exactly on the whole grid, in the field of view or
        # not: A(q + e(q)) == p at q = p + ddf(p). Measured here: 1.0e-6 px in float64, 3.2e-5 px in float32 (the
        # rounding level); the bilinear fixed-point inversion it replaced erred by 0.017 px in view, 0.58 px outside.
        shape, s = (64, 64), 16.0
        cp = _control_points(shape, s, 4.0).double()
        deform = SyntheticDeformation(-120.0, (8.0, 0.0), 0.94, control_points=cp, control_spacing=s)
        ddf = deform.applied_ddf(shape, dtype=dtype)
        self.assertEqual(ddf.dtype, dtype)
        grid = identity_grid(shape, dtype=torch.float64)[0]
        q = grid + ddf.double()
        a, c = deform.affine_matrix(), (shape[0] - 1) / 2.0
        mapped = torch.einsum("ij,jhw->ihw", a[:2, :2], q + bspline_displacement_at(cp, q, shape, s) - c)
        mapped = mapped + a[:2, 2].view(2, 1, 1) + c
        self.assertLess(float(fov_mask(ddf).float().mean()), 0.9)  # 14 % of the pixels lie outside the view
        self.assertLess(float((mapped - grid).norm(dim=0).max()), tol)

    def test_fast_inverse_close_to_exact(self):
        # exact_inverse=False keeps only the bilinear fixed point: cheaper, within a few hundredths of a pixel of the
        # exact inverse inside the field of view (measured 0.011 px max on this case)
        shape, s = (64, 64), 16.0
        cp = _control_points(shape, s, 4.0)
        exact = SyntheticDeformation(-120.0, (8.0, 0.0), 0.94, control_points=cp, control_spacing=s).applied_ddf(shape)
        fast = SyntheticDeformation(
            -120.0, (8.0, 0.0), 0.94, control_points=cp, control_spacing=s, exact_inverse=False
        ).applied_ddf(shape)
        fov = fov_mask(exact)[0]
        err = (fast - exact).norm(dim=0)[fov]
        self.assertLess(float(err.max()), 0.05)
        self.assertGreater(float(err.max()), 1e-5)  # the Newton refinement was really skipped

    def test_affine_part_exact(self):
        # without elastic part, psi equals the analytic affine map and ddf its exact inverse
        deform = SyntheticDeformation(rotation=30.0, translation=(3.0, 1.0), scale=1.1)
        psi, ddf = deform.fields((16, 16), dtype=torch.float64)
        fov = fov_mask(ddf)[0]
        self.assertGreater(int(fov.sum()), 100)
        residual = compose_ddf(psi[None], ddf[None])[0].norm(dim=0)  # bilinear lookup of an affine field is exact
        self.assertLess(float(residual[fov].max()), 1e-9)
        a = math.radians(30.0)
        expected = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], dtype=torch.float64) / 1.1
        torch.testing.assert_close(deform.affine_matrix()[:2, :2], expected)
        torch.testing.assert_close(deform.affine_matrix()[:2, 2], torch.tensor([-3.0, -1.0], dtype=torch.float64))

    def test_matches_monai_affine(self):
        deform = SyntheticDeformation(rotation=17.0, translation=(3.0, -2.0), scale=1.1)
        expected = Affine(**deform.monai_affine_params(), padding_mode="zeros", image_only=True)(self.img)
        torch.testing.assert_close(deform(self.img)[0], torch.as_tensor(expected), atol=1e-4, rtol=0)

    def test_replays_rand_affined(self):
        rand_affine = RandAffined(keys="img", prob=1.0, rotate_range=0.6, translate_range=(5, 4), scale_range=0.1,
                                  padding_mode="zeros")
        rand_affine.set_random_state(1)
        out = rand_affine({"img": MetaTensor(self.img.clone())})["img"]
        matrix = affine_from_applied_operations(out)
        self.assertFalse(torch.allclose(matrix, torch.eye(3, dtype=torch.float64)))
        torch.testing.assert_close(SyntheticDeformation(affine=matrix)(self.img)[0], out.as_tensor(), atol=1e-4,
                                   rtol=0)
        with self.assertRaises(ValueError):
            affine_from_applied_operations(MetaTensor(self.img))

    def test_replays_rand_2d_elastic(self):
        # Rand2DElastic's field recovered with the coordinate-image trick reproduces its output
        rand_elastic = Rand2DElastic(spacing=(16, 16), magnitude_range=(2, 2), prob=1.0, padding_mode="border")
        rand_elastic.set_random_state(3)
        field = sampling_field_from_transform(rand_elastic, (64, 64), margin=40)
        self.assertNotIsInstance(field, MetaTensor)
        self.assertGreater(float(field.abs().max()), 1.0)
        # the replay must use the same padding as the replayed transform: 301 of the 4096 output pixels sample
        # outside the image here, where "border" and "zeros" differ by up to 0.23
        for padding_mode in ("border", "zeros"):
            rand_elastic.set_random_state(3)
            expected = torch.as_tensor(rand_elastic(self.img, padding_mode=padding_mode))
            flt, _, ddf = SyntheticDeformation(elastic_field=field, padding_mode=padding_mode)(self.img)
            torch.testing.assert_close(flt, expected, atol=1e-5, rtol=0)
        inner = fov_mask(ddf, margin=1.0)[0, 6:-6, 6:-6]
        fwd = compose_ddf(field[None], ddf[None])[0].norm(dim=0)[6:-6, 6:-6]
        self.assertLess(float(fwd[inner].max()), 0.05)

    def test_meta_tensor_numpy_and_dtypes(self):
        meta = MetaTensor(self.img.clone(), meta={"patient": "p1"})
        deform = SyntheticDeformation(rotation=10.0, translation=(1.0, 2.0))
        flt, flt_mask, ddf = deform(meta, self.mask.to(torch.uint8))
        self.assertIsInstance(flt, MetaTensor)
        self.assertEqual(flt.meta["patient"], "p1")
        self.assertEqual(flt_mask.dtype, torch.uint8)
        self.assertTrue(set(torch.unique(flt_mask).tolist()) <= {0, 1})
        flt_np, _, _ = deform(self.img.numpy())
        self.assertIsInstance(flt_np, np.ndarray)
        np.testing.assert_allclose(flt_np, deform(self.img)[0].numpy(), atol=1e-6)
        flt64, _, ddf64 = deform(self.img.double())
        self.assertEqual((flt64.dtype, ddf64.dtype), (torch.float64, torch.float64))

    def test_nearest_mask(self):
        deform = SyntheticDeformation(rotation=25.0, mask_mode="nearest")
        _, flt_mask, _ = deform(self.img, self.mask)
        psi, _ = deform.fields((64, 64))
        self.assertTrue(torch.equal(flt_mask, warp(self.mask[None], psi[None], mode="nearest", padding_mode="zeros")[0]))

    def test_get_params_replay(self):
        deform = SyntheticDeformation(-40.0, (1.0, 3.0), 1.02, _control_points((64, 64), 32.0, 2.0), 32.0)
        again = SyntheticDeformation(**deform.get_params())
        self.assertTrue(torch.equal(deform(self.img)[0], again(self.img)[0]))

    @parameterized.expand(
        [
            [{"scale": 0.0}],
            [{"scale": -1.0}],
            [{"rotation": float("nan")}],
            [{"translation": (1.0, 2.0, 3.0)}],
            [{"affine": torch.eye(3), "rotation": 5.0}],
            [{"affine": torch.eye(4)}],
            [{"control_points": torch.zeros(3, 4, 4)}],
            [{"control_points": torch.zeros(2, 4, 4), "elastic_field": torch.zeros(2, 4, 4)}],
            [{"mode": "cubic"}],
            [{"padding_mode": "constant"}],
            [{"mask_mode": "area"}],
            [{"inverse_iters": 0}],
            [{"control_spacing": -4.0}],
        ]
    )
    def test_ill_args(self, kwargs):
        with self.assertRaises(ValueError):
            SyntheticDeformation(**kwargs)

    def test_ill_inputs(self):
        deform = SyntheticDeformation(rotation=5.0)
        with self.assertRaisesRegex(ValueError, "2D images only"):
            deform(torch.zeros(1, 8, 8, 8))  # 3D volume
        with self.assertRaisesRegex(ValueError, r"\(C, H, W\)"):
            deform(torch.zeros(8, 8))
        with self.assertRaisesRegex(ValueError, "spatial shape"):
            deform(torch.zeros(1, 8, 8), torch.zeros(1, 8, 9))
        with self.assertRaises(TypeError):
            deform([[0.0]])
        with self.assertRaisesRegex(ValueError, "control_points"):
            SyntheticDeformation(control_points=torch.zeros(2, 4, 4), control_spacing=16.0)(torch.zeros(1, 64, 64))
        with self.assertRaisesRegex(ValueError, "elastic_field"):
            SyntheticDeformation(elastic_field=torch.ones(2, 8, 8))(torch.zeros(1, 9, 9))


def _dice(a, b):
    a, b = torch.as_tensor(a) > 0.5, torch.as_tensor(b) > 0.5
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


class TestRandSyntheticDeformation(unittest.TestCase):
    def setUp(self):
        self.img, self.mask = make_phantom(64)

    def test_paper_protocol(self):
        # ranges at reference_size 256 scaled to 64 px: translation 6.25-10 px along one axis, elastic 0.25-3.75 px
        t = RandSyntheticDeformation(protocol="paper", reference_size=256)
        t.set_random_state(0)
        for _ in range(3):
            flt, flt_mask, ddf = t(self.img, self.mask)
            params = t.get_params()
            rotation = abs(params["rotation"])
            self.assertTrue(20.0 <= rotation <= 180.0 and rotation % 5.0 == 0.0, rotation)
            shift = sorted(abs(v) for v in params["translation"])
            self.assertEqual(shift[0], 0.0)
            self.assertTrue(6.25 <= shift[1] <= 10.0, shift)
            e = bspline_displacement(params["control_points"], (64, 64), params["control_spacing"])
            self.assertTrue(0.25 - 1e-4 <= float(e.norm(dim=0).max()) <= 3.75 + 1e-4)
            self.assertLess(t.last_dice, 0.70)
            self.assertAlmostEqual(t.last_dice, _dice(self.mask, flt_mask), places=12)
            # the returned triple is the deterministic replay of the kept parameters
            flt2, mask2, ddf2 = SyntheticDeformation(**params)(self.img, self.mask)
            self.assertTrue(torch.equal(flt, flt2) and torch.equal(flt_mask, mask2) and torch.equal(ddf, ddf2))

    def test_followup_protocol_and_seeding(self):
        outs = []
        for _ in range(2):
            t = RandSyntheticDeformation(protocol="followup", reference_size=256)
            t.set_random_state(7)
            outs.append(t(self.img))  # no mask needed: the Dice rule belongs to the paper protocol
            params = t.get_params()
            self.assertLessEqual(abs(params["rotation"]), 5.0)
            self.assertLessEqual(float(torch.tensor(params["translation"]).norm()), 2.5 + 1e-6)
            self.assertLessEqual(abs(params["scale"] - 1.0), 0.08)
            self.assertIsNone(t.last_dice)
        self.assertTrue(all(torch.equal(a, b) for a, b in zip(outs[0][::2], outs[1][::2])))

    def test_rejection_failure(self):
        t = RandSyntheticDeformation(protocol="paper", reference_size=256, dice_threshold=0.01, max_retries=2)
        t.set_random_state(0)
        with self.assertRaisesRegex(SyntheticDeformationError, "within 2 retries"):
            t(self.img, self.mask)
        t.on_failure = "keep_last"
        with self.assertLogs("monai_jrs.transforms.deformation.array", level="WARNING"):
            flt, flt_mask, _ = t(self.img, self.mask)
        self.assertEqual(t.last_num_rejected, 3)
        self.assertAlmostEqual(t.last_dice, _dice(self.mask, flt_mask), places=12)
        with self.assertRaisesRegex(ValueError, "mask"):
            RandSyntheticDeformation(protocol="paper")(self.img)

    def test_dictionary(self):
        t = RandSyntheticDeformationd(keys="reference", mask_key="reference_mask", reference_size=256,
                                      params_key="params")
        self.assertIs(t.set_random_state(3), t)
        out = t({"reference": self.img, "reference_mask": self.mask})
        ref = RandSyntheticDeformation(reference_size=256)
        ref.set_random_state(3)
        flt, flt_mask, ddf = ref(self.img, self.mask)
        self.assertTrue(torch.equal(out["floating"], flt) and torch.equal(out["floating_mask"], flt_mask))
        self.assertTrue(torch.equal(out["ddf_applied"], ddf))
        self.assertEqual(out["params"]["rotation"], ref.get_params()["rotation"])
        with self.assertRaises(ValueError):
            RandSyntheticDeformationd(mask_key=None)  # paper protocol without a mask


if __name__ == "__main__":
    unittest.main()
