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
"""JRSInferer: the full-resolution mapping on synthetic grids with exact expected values, and the pipeline stages."""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from monai_jrs.inferers import JRSInferer, dict_to_stacked, full_resolution_ddf, stacked_to_dict
from monai_jrs.networks.nets import JRSGenerator, JRSStackedGenerator
from monai_jrs.transforms import GridInfo, ddf_to_original, resize_to_network
from monai_jrs.utils.enums import JRSKeys
from tests.transforms.phantom import make_phantom

DDF, PROB, MASK, REG = (JRSKeys.DDF.value, JRSKeys.REGISTERED_MASK_PROB.value, JRSKeys.REGISTERED_MASK.value,
                        JRSKeys.REGISTERED.value)


def _info(shape, net, keep_aspect=False) -> GridInfo:
    return resize_to_network(torch.zeros(1, *shape), net, keep_aspect=keep_aspect)[1]


def _affine_field(net, a, b) -> torch.Tensor:
    """``d(u) = A u + b`` on an ``(h, w)`` network grid (exact under bilinear interpolation)."""
    u = torch.stack(torch.meshgrid(torch.arange(net[0]).double(), torch.arange(net[1]).double(), indexing="ij"))
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return (torch.einsum("ij,jhw->ihw", a, u) + b.view(2, 1, 1))[None]


class _StubNetwork:
    """A network that returns a fixed network-grid field, the reference mask as its segmentation, and no image."""

    def __init__(self, ddf: torch.Tensor) -> None:
        self.ddf = ddf

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = x[:, 2:3]
        return {REG: x[:, 1:2], PROB: mask, MASK: mask, DDF: self.ddf.to(x.dtype).expand(x.shape[0], -1, -1, -1)}


class TestFullResolutionDDF(unittest.TestCase):
    # (reference shape, floating shape, network grid, keep_aspect, A, b)
    CASES = [
        ("same_size_zero", (33, 33), (33, 33), (9, 9), False, [[0, 0], [0, 0]], [0, 0]),
        ("non_square_shift", (41, 61), (41, 61), (11, 16), False, [[0, 0], [0, 0]], [1.5, -2.0]),
        ("different_sizes", (9, 17), (17, 33), (5, 5), False, [[0.1, 0], [0, -0.05]], [0.25, 0.5]),
        ("letterbox_wide", (40, 80), (40, 80), (32, 32), True, [[0, 0], [0, 0]], [2.0, 1.0]),
        ("letterbox_tall_vs_wide", (90, 50), (60, 100), (24, 30), True, [[0.02, 0.01], [-0.01, 0.03]], [-1.0, 0.5]),
    ]

    @parameterized.expand(CASES)
    def test_exact_affine(self, _, ref_shape, flt_shape, net, keep_aspect, a, b):
        ref, flt = _info(ref_shape, net, keep_aspect), _info(flt_shape, net, keep_aspect)
        field = _affine_field(net, a, b)
        got = full_resolution_ddf(field, ref, flt)
        # expected, written out: u = p / s_ref + o_ref; q = s_flt * (u + A u + b - o_flt); ddf = q - p
        p = torch.stack(torch.meshgrid(torch.arange(ref_shape[0]).double(), torch.arange(ref_shape[1]).double(),
                                       indexing="ij"))
        s_r = torch.tensor(ref.scale_factors, dtype=torch.float64).view(2, 1, 1)
        s_f = torch.tensor(flt.scale_factors, dtype=torch.float64).view(2, 1, 1)
        o_r = torch.tensor([ref.padding[0], ref.padding[2]], dtype=torch.float64).view(2, 1, 1)
        o_f = torch.tensor([flt.padding[0], flt.padding[2]], dtype=torch.float64).view(2, 1, 1)
        u = p / s_r + o_r
        d = torch.einsum("ij,jhw->ihw", torch.tensor(a, dtype=torch.float64), u)
        d = d + torch.tensor(b, dtype=torch.float64).view(2, 1, 1)
        expected = s_f * (u + d - o_f) - p
        self.assertEqual(tuple(got.shape), (1, 2, *ref_shape))
        torch.testing.assert_close(got[0], expected, atol=1e-9, rtol=0)

    def test_values_by_hand(self):
        """A 3x3 grid of a 5x5 reference and a 9x9 floating image, zero field: reference pixel p -> floating 2p."""
        got = full_resolution_ddf(torch.zeros(1, 2, 3, 3), _info((5, 5), 3), _info((9, 9), 3))
        self.assertEqual(got[0, :, 4, 2].tolist(), [4.0, 2.0])  # (4, 2) -> (8, 4)
        self.assertEqual(got[0, :, 0, 0].tolist(), [0.0, 0.0])
        # letterbox: a 3 x 5 reference on a 5 x 5 grid has one padding row above and below
        ref = _info((3, 5), 5, keep_aspect=True)
        self.assertEqual(ref.padding, (1, 1, 0, 0))
        one_row_down = torch.zeros(1, 2, 5, 5)
        one_row_down[:, 0] = 1.0
        got = full_resolution_ddf(one_row_down, ref, ref)
        self.assertEqual(got[0, 0].unique().tolist(), [1.0])  # scale 1: one network pixel is one reference pixel
        self.assertEqual(got[0, 1].unique().tolist(), [0.0])

    @parameterized.expand([("plain", False), ("letterbox", True)])
    def test_same_grid_matches_ddf_to_original(self, _, keep_aspect):
        info = _info((50, 70), (20, 24), keep_aspect)
        field = torch.randn(1, 2, 20, 24, dtype=torch.float64)
        torch.testing.assert_close(full_resolution_ddf(field, info, info), ddf_to_original(field, info),
                                   atol=1e-9, rtol=0)

    def test_bad_shapes(self):
        ref, other = _info((20, 20), 8), _info((20, 20), 10)
        with self.assertRaisesRegex(ValueError, "must have shape"):
            full_resolution_ddf(torch.zeros(1, 2, 7, 8), ref, ref)
        with self.assertRaisesRegex(ValueError, "network grids must match"):
            full_resolution_ddf(torch.zeros(1, 2, 8, 8), ref, other)


class TestStackedAdapter(unittest.TestCase):
    def test_round_trip(self):
        pred = torch.arange(5 * 4 * 3, dtype=torch.float32).view(1, 5, 4, 3)
        d = stacked_to_dict(pred)
        self.assertEqual(sorted(d), sorted([REG, PROB, MASK, DDF]))
        self.assertEqual(tuple(d[DDF].shape), (1, 2, 4, 3))
        torch.testing.assert_close(d[DDF], pred[:, 3:5])
        torch.testing.assert_close(dict_to_stacked(d), pred)
        self.assertEqual(tuple(stacked_to_dict(pred[0])[PROB].shape), (1, 4, 3))  # unbatched

    def test_wrong_channels(self):
        with self.assertRaisesRegex(ValueError, r"must have shape \(B, 5, h, w\)"):
            stacked_to_dict(torch.zeros(1, 4, 3, 3))


class TestJRSInferer(unittest.TestCase):
    def test_letterbox_identity_across_resolutions(self):
        """The same anatomy at two resolutions, letterboxed: a zero network field must register them exactly.

        Ignoring the letterbox offset (as the written DDF once did) shifts the registered image by the padding.
        """
        ref, mask = make_phantom(60, 100, dtype=torch.float64)
        flt = torch.nn.functional.interpolate(ref[None], size=(119, 199), mode="bilinear", align_corners=True)[0]
        inferer = JRSInferer((48, 48), keep_aspect=True, num_components=0)
        result = inferer(ref.float(), mask.float(), flt.float(), _StubNetwork(torch.zeros(1, 2, 48, 48)))
        self.assertGreater(result.reference_info.padding[0], 0)
        torch.testing.assert_close(result.registered[0], ref.float(), atol=2e-3, rtol=0)
        expected_ddf = torch.stack(torch.meshgrid(torch.arange(60.0), torch.arange(100.0), indexing="ij")) * 1.0
        torch.testing.assert_close(result.ddf[0], expected_ddf, atol=1e-4, rtol=0)  # p -> 2p: ddf(p) = p
        self.assertEqual(tuple(result.floating_mask.shape), (1, 1, 119, 199))
        self.assertEqual(tuple(result.registered_mask.shape), (1, 1, 60, 100))
        # floating pixel 2p is reference pixel p: the two masks are one mask sampled at corresponding points
        torch.testing.assert_close(result.floating_mask[..., ::2, ::2], result.registered_mask)
        flt_mask = torch.nn.functional.interpolate(mask[None], size=(119, 199), mode="bilinear", align_corners=True)
        agree = ((result.floating_mask > 0.5) == (flt_mask > 0.5)).double().mean()
        self.assertGreater(float(agree), 0.97)  # the rest is the 48-pixel grid's resolution

    def test_generator_and_stacked_adapter_agree(self):
        torch.manual_seed(0)
        gen = JRSGenerator(features=4, num_res_blocks=1, coarse_factor=4).eval()
        stacked = JRSStackedGenerator(features=4, num_res_blocks=1, coarse_factor=4).eval()
        stacked.load_state_dict(gen.state_dict())
        ref, mask = make_phantom(40, 36)
        flt = torch.roll(ref, (2, -1), (1, 2))
        inferer = JRSInferer(32)
        a, b = inferer(ref, mask, flt, gen), inferer(ref, mask, flt, stacked)
        self.assertEqual(sorted(a.network), sorted([REG, PROB, MASK, DDF]))
        for k in a.network:
            torch.testing.assert_close(a.network[k], b.network[k])
        torch.testing.assert_close(a.ddf, b.ddf)
        self.assertIn("network_s", a.timings)
        self.assertIn("resample_s", a.timings)

    def test_refinement_replaces_field_and_masks(self):
        ref, mask = make_phantom(32)
        seg = torch.zeros(1, 1, 32, 32)  # a segmentation that finds nothing: refinement must not use it
        calls = []

        def refine(r, f, m, ddf):
            calls.append(tuple(ddf.shape))
            return ddf + 1.0

        class Net(_StubNetwork):
            def __call__(self, x):
                out = super().__call__(x)
                out[PROB] = out[MASK] = seg
                return out

        result = JRSInferer(32, refine=refine, num_components=0)(ref, mask, ref, Net(torch.zeros(1, 2, 32, 32)))
        self.assertEqual(calls, [(1, 2, 32, 32)])
        self.assertTrue(result.refined)
        torch.testing.assert_close(result.network[DDF], torch.ones(1, 2, 32, 32))
        torch.testing.assert_close(result.network[PROB], mask[None])
        self.assertIn("refine_s", result.timings)

    def test_mask_source_reference(self):
        ref, mask = make_phantom(32)

        class Net(_StubNetwork):
            def __call__(self, x):
                out = super().__call__(x)
                out[PROB] = out[MASK] = torch.zeros_like(out[PROB])
                return out

        net = Net(torch.zeros(1, 2, 32, 32))
        seg = JRSInferer(32, num_components=0)(ref, mask, ref, net)
        self.assertEqual(float(seg.floating_mask.sum()), 0.0)
        carried = JRSInferer(32, num_components=0, mask_source="reference")(ref, mask, ref, net)
        torch.testing.assert_close(carried.floating_mask[0], mask)

    def test_prepared_reference_is_reused(self):
        ref, mask = make_phantom(40, 30)
        inferer = JRSInferer(16)
        prepared = inferer.prepare_reference(ref, mask)
        net = _StubNetwork(torch.zeros(1, 2, 16, 16))
        a = inferer(*prepared, ref, net)
        b = inferer(ref, mask, ref, net)
        torch.testing.assert_close(a.ddf, b.ddf)
        torch.testing.assert_close(a.registered, b.registered)

    @parameterized.expand([
        ("empty_mask", torch.zeros(1, 20, 20), "empty"),
        ("mask_shape", torch.ones(1, 10, 20), "must have the reference's shape"),
    ])
    def test_bad_reference_mask(self, _, mask, message):
        with self.assertRaisesRegex(ValueError, message):
            JRSInferer(16).prepare_reference(torch.rand(1, 20, 20), mask)

    def test_bad_mask_source(self):
        with self.assertRaisesRegex(ValueError, "`mask_source` must be one of"):
            JRSInferer(16, mask_source="otsu")


class TestDeprecatedAliases(unittest.TestCase):
    def test_floating_mask_from_output(self):
        from monai_jrs.apps.registration import floating_mask_from_output

        ref, mask = make_phantom(40, 36)
        inferer = JRSInferer(32)
        result = inferer(ref, mask, ref, _StubNetwork(torch.zeros(1, 2, 32, 32)))
        with self.assertWarns(FutureWarning):
            old = floating_mask_from_output(dict_to_stacked(result.network), result.floating_info)
        torch.testing.assert_close(old, result.floating_mask[0])

if __name__ == "__main__":
    unittest.main()
