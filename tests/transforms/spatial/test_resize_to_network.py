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
"""Tests of :mod:`monai_jrs.transforms.spatial`: resizing to the network grid and back (functional, array, dict)."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from monai.data import MetaTensor, decollate_batch, list_data_collate
from parameterized import parameterized

from monai_jrs.transforms import (
    GridInfo,
    ResizeToNetwork,
    ResizeToNetworkd,
    ddf_to_original,
    resize_to_network,
    restore_to_original,
)

ORIG = (97, 129)  # non-square original grid: (N - 1) = (96, 128)
SPACING = (0.1, 0.2)


def _smooth(shape=ORIG, dtype=torch.float32) -> torch.Tensor:
    """A smooth (1, H, W) image in about [0.1, 0.9], without symmetry."""
    r, c = torch.meshgrid(
        torch.linspace(0, 1, shape[0], dtype=torch.float64), torch.linspace(0, 1, shape[1], dtype=torch.float64),
        indexing="ij",
    )  # fmt: skip
    img = 0.5 + 0.3 * torch.sin(2 * math.pi * 0.7 * r + 0.3) * torch.cos(2 * math.pi * 0.5 * c) + 0.1 * r
    return img[None].to(dtype)


def _blob(shape, centre, sigma=3.0) -> torch.Tensor:
    r, c = torch.meshgrid(torch.arange(shape[0], dtype=torch.float64), torch.arange(shape[1], dtype=torch.float64),
                          indexing="ij")  # fmt: skip
    return torch.exp(-((r - centre[0]) ** 2 + (c - centre[1]) ** 2) / (2 * sigma**2))[None]


def _centroid(x: torch.Tensor) -> tuple[float, float]:
    x = x[0].double()
    r, c = torch.meshgrid(torch.arange(x.shape[0], dtype=torch.float64), torch.arange(x.shape[1], dtype=torch.float64),
                          indexing="ij")  # fmt: skip
    return float((x * r).sum() / x.sum()), float((x * c).sum() / x.sum())


class TestResizeToNetwork(unittest.TestCase):
    def test_shapes_and_grid_info(self):
        img = _smooth()
        out, info = resize_to_network(img, 33, spacing=SPACING)
        self.assertEqual(tuple(out.shape), (1, 33, 33))
        self.assertNotIsInstance(out, MetaTensor)
        self.assertEqual(info.original_shape, ORIG)
        self.assertEqual((info.network_shape, info.content_shape, info.padding), ((33, 33), (33, 33), (0, 0, 0, 0)))
        self.assertEqual(info.scale_factors, (96 / 32, 128 / 32))
        np.testing.assert_allclose(info.network_spacing, (0.1 * 3.0, 0.2 * 4.0))  # spacing * (N - 1) / (n - 1)
        self.assertEqual(info.original_spacing, SPACING)
        batched, info_b = resize_to_network(torch.stack([img, 1 - img]), (20, 40))
        self.assertEqual(tuple(batched.shape), (2, 1, 20, 40))
        self.assertIsNone(info_b.network_spacing)
        torch.testing.assert_close(batched[1], 1 - resize_to_network(img, (20, 40))[0], atol=1e-6, rtol=0)

    def test_spacing_from_metatensor(self):
        x = MetaTensor(_smooth(), meta={"spacing": [0.1, 0.2]})
        _, info = resize_to_network(x, 49)
        np.testing.assert_allclose(info.network_spacing, (0.2, 0.2 * 128 / 48))
        _, info_nan = resize_to_network(MetaTensor(_smooth(), meta={"spacing": [math.nan, math.nan]}), 49)
        self.assertIsNone(info_nan.original_spacing)

    def test_keep_aspect_letterbox(self):
        img = _smooth()
        out, info = resize_to_network(img, 33, keep_aspect=True, spacing=SPACING, pad_value=-1.0)
        self.assertEqual((info.content_shape, info.padding), ((25, 33), (4, 4, 0, 0)))
        self.assertEqual(info.scale_factors, (4.0, 4.0))  # one scale for both axes
        np.testing.assert_allclose(info.network_spacing, (0.4, 0.8))
        self.assertTrue(torch.all(out[:, :4] == -1.0) and torch.all(out[:, -4:] == -1.0))
        self.assertTrue(torch.all(out[:, 4:-4] > 0.0))

    @parameterized.expand(
        [
            ("bilinear_s3", "bilinear", 97, 33),
            ("bicubic_s3", "bicubic", 97, 33),
            ("bilinear_s8", "bilinear", 257, 33),
            ("bicubic_s8", "bicubic", 257, 33),
            ("bilinear_fraction", "bilinear", 100, 12),
            ("upsample", "bilinear", 17, 49),
        ]
    )
    def test_pixel_centres_follow_align_corners(self, _, mode, big_n, n):
        # network pixel i must sit at original pixel i * (N - 1) / (n - 1), along rows and along cols, including when
        # downsampling is anti-aliased (torch's antialias=True shifts it by (s - 1) / 2 original pixels)
        ramp = torch.arange(big_n, dtype=torch.float64)
        rows, _ = resize_to_network(ramp.view(1, -1, 1).expand(1, big_n, 5).contiguous(), (n, 5), mode=mode)
        cols, _ = resize_to_network(ramp.view(1, 1, -1).expand(1, 5, big_n).contiguous(), (5, n), mode=mode)
        s = (big_n - 1) / (n - 1)
        margin = 2  # the first/last two network pixels see a truncated (bicubic) filter
        expected = torch.arange(n, dtype=torch.float64) * s
        torch.testing.assert_close(rows[0, margin:-margin, 2], expected[margin:-margin], atol=1e-9, rtol=0)
        torch.testing.assert_close(cols[0, 2, margin:-margin], expected[margin:-margin], atol=1e-9, rtol=0)

    @parameterized.expand([("plain", False), ("letterbox", True)])
    def test_blob_position_bookkeeping(self, _, keep_aspect):
        centre = (30.0, 85.0)
        net, info = resize_to_network(_blob((161, 241), centre, sigma=8.0), (41, 51), keep_aspect=keep_aspect)
        r, c = _centroid(net)
        back = ((r - info.padding[0]) * info.scale_factors[0], (c - info.padding[2]) * info.scale_factors[1])
        np.testing.assert_allclose(back, centre, atol=0.05)

    def test_orientation_non_square(self):
        img = _blob((40, 90), (8.0, 70.0))
        net, _ = resize_to_network(img.float(), (20, 30))
        self.assertEqual(np.unravel_index(int(net[0].argmax()), (20, 30)), (round(8 * 19 / 39), round(70 * 29 / 89)))

    def test_antialiasing(self):
        board = ((torch.arange(96)[:, None] + torch.arange(96)[None]) % 2).float()[None]  # Nyquist checkerboard
        out, _ = resize_to_network(board, 24)
        torch.testing.assert_close(out, torch.full_like(out, 0.5), atol=0.1, rtol=0)
        const, _ = resize_to_network(torch.full((2, 61, 35), 0.7), (13, 50), mode="bicubic")
        torch.testing.assert_close(const, torch.full_like(const, 0.7))

    def test_nearest_keeps_labels(self):
        mask = (_blob((97, 129), (40.0, 50.0), sigma=15.0) > 0.5).float()
        net, info = resize_to_network(mask, 33, mode="nearest")
        self.assertEqual(set(net.unique().tolist()), {0.0, 1.0})
        # nearest samples the align-corners positions: network pixel (i, j) = original (3 i, 4 j)
        torch.testing.assert_close(net, mask[:, ::3, ::4])
        back = restore_to_original(net, info, mode="nearest")
        self.assertEqual(set(back.unique().tolist()), {0.0, 1.0})
        self.assertGreater(float((back == mask).float().mean()), 0.97)

    def test_gradient_flows(self):
        x = torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
        self.assertTrue(torch.autograd.gradcheck(lambda v: resize_to_network(v, (3, 5))[0], (x,)))

    @parameterized.expand(
        [
            ("int_dtype", torch.zeros(1, 8, 8, dtype=torch.uint8), 4, {}, ValueError, "floating point"),
            ("2d", torch.zeros(8, 8), 4, {}, ValueError, "shape"),
            ("too_small", torch.zeros(1, 1, 8), 4, {}, ValueError, "at least 2x2"),
            ("size", torch.zeros(1, 8, 8), 1, {}, ValueError, "size"),
            ("size_len", torch.zeros(1, 8, 8), (4, 4, 4), {}, ValueError, "size"),
            ("mode", torch.zeros(1, 8, 8), 4, {"mode": "area"}, ValueError, "mode"),
            ("spacing", torch.zeros(1, 8, 8), 4, {"spacing": (0.1, -1.0)}, ValueError, "spacing"),
            ("numpy", np.zeros((1, 8, 8)), 4, {}, TypeError, "torch.Tensor"),
        ]
    )
    def test_errors(self, _, x, size, kwargs, exc, msg):
        with self.assertRaisesRegex(exc, msg):
            resize_to_network(x, size, **kwargs)


class TestRestoreToOriginal(unittest.TestCase):
    @parameterized.expand(
        [
            ("bilinear_33", 33, False, "bilinear", 0.003, 0.012),
            ("bilinear_64", 64, False, "bilinear", 0.001, 0.005),
            ("bicubic_64", 64, False, "bicubic", 0.0015, 0.005),
            ("letterbox_64", 64, True, "bilinear", 0.0012, 0.006),
            ("rect_48x80", (48, 80), False, "bilinear", 0.001, 0.006),
        ]
    )
    def test_round_trip_smooth_image(self, _, size, keep_aspect, mode, tol_inside, tol_all):
        img = _smooth()
        net, info = resize_to_network(img, size, keep_aspect=keep_aspect, mode=mode)
        back = restore_to_original(net, info, mode=mode)
        self.assertEqual(tuple(back.shape), (1, *ORIG))
        err = (back - img).abs()
        self.assertLess(float(err[:, 5:-5, 5:-5].max()), tol_inside)  # smooth content comes back in place
        self.assertLess(float(err.max()), tol_all)  # edges: the truncated anti-aliasing filter

    def test_identity_when_sizes_match(self):
        img = _smooth((20, 30))
        net, info = resize_to_network(img, (20, 30))
        torch.testing.assert_close(net, img, atol=0, rtol=0)
        torch.testing.assert_close(restore_to_original(net, info), img, atol=0, rtol=0)
        torch.testing.assert_close(ddf_to_original(torch.ones(2, 20, 30), info), torch.ones(2, 20, 30))

    def test_batched_and_dict_info(self):
        img = torch.stack([_smooth(), _smooth().flip(-1)])
        net, info = resize_to_network(img, 40)
        back = restore_to_original(net, info.to_dict())
        self.assertEqual(tuple(back.shape), (2, 1, *ORIG))
        torch.testing.assert_close(back[1], restore_to_original(net[1], info), atol=1e-6, rtol=0)

    def test_wrong_shape(self):
        _, info = resize_to_network(_smooth(), 32)
        with self.assertRaisesRegex(ValueError, r"network shape \(32, 32\)"):
            restore_to_original(torch.zeros(1, 31, 32), info)


class TestDDFToOriginal(unittest.TestCase):
    @parameterized.expand(
        [
            ("square_net", 33, False),
            ("rect_net", (25, 48), False),
            ("letterbox", 33, True),
        ]
    )
    def test_constant_ddf_scales(self, _, size, keep_aspect):
        img = _smooth()
        _, info = resize_to_network(img, size, keep_aspect=keep_aspect, spacing=SPACING)
        d = (1.5, -2.25)  # network pixels, channel 0 along H, channel 1 along W
        ddf = torch.empty(2, *info.network_shape)
        ddf[0], ddf[1] = d
        out = ddf_to_original(ddf, info)
        self.assertEqual(tuple(out.shape), (2, *ORIG))
        h_c, w_c = info.content_shape
        torch.testing.assert_close(out[0], torch.full(ORIG, d[0] * 96 / (h_c - 1)))  # d * (N - 1) / (n - 1)
        torch.testing.assert_close(out[1], torch.full(ORIG, d[1] * 128 / (w_c - 1)))
        # the same displacement in mm on both grids
        mm_net = torch.tensor(d) * torch.tensor(info.network_spacing)
        mm_orig = out[:, 0, 0] * torch.tensor(SPACING)
        torch.testing.assert_close(mm_orig, mm_net.float())

    def test_linear_field_geometry(self):
        # a network field u(i, j) = (0.1 i, -0.05 j) (scaling about pixel (0, 0)) is U(I, J) = (0.1 I, -0.05 J) on the
        # original grid: the points move to the same physical places
        _, info = resize_to_network(_smooth(), (33, 17))
        i, j = torch.meshgrid(torch.arange(33.0), torch.arange(17.0), indexing="ij")
        out = ddf_to_original(torch.stack([0.1 * i, -0.05 * j])[None], info)
        big_i, big_j = torch.meshgrid(torch.arange(97.0), torch.arange(129.0), indexing="ij")
        torch.testing.assert_close(out[0], torch.stack([0.1 * big_i, -0.05 * big_j]), atol=1e-4, rtol=1e-5)

    def test_errors(self):
        _, info = resize_to_network(_smooth(), 16)
        with self.assertRaisesRegex(ValueError, r"\(2, h, w\)"):
            ddf_to_original(torch.zeros(3, 16, 16), info)
        with self.assertRaisesRegex(ValueError, "network shape"):
            ddf_to_original(torch.zeros(1, 2, 16, 15), info)


class TestGridInfoAndDictTransform(unittest.TestCase):
    def test_grid_info_dict_round_trip(self):
        _, info = resize_to_network(_smooth(), 24, keep_aspect=True)
        d = info.to_dict()
        self.assertTrue(all(math.isnan(s) for s in d["original_spacing"]))
        self.assertEqual(GridInfo.from_dict(d), info)
        self.assertIs(GridInfo.from_dict(info), info)
        with self.assertRaisesRegex(ValueError, "missing"):
            GridInfo.from_dict({"original_shape": (2, 2)})

    def test_resize_to_network_dict_collate_and_restore(self):
        mask = (_blob(ORIG, (40.0, 50.0), sigma=15.0) > 0.5).float()
        items = []
        for k in range(2):
            img = MetaTensor(_smooth() + 0.01 * k, meta={"spacing": [0.1, 0.2], "filename": f"{k}.dcm"})
            items.append({"image": img, "mask": MetaTensor(mask.to(torch.uint8), meta={"spacing": [0.1, 0.2]})})
        t = ResizeToNetworkd(["image", "mask"], size=33, mode=["bilinear", "nearest"])
        out = [t(item) for item in items]
        self.assertEqual(tuple(out[0]["image"].shape), (1, 33, 33))
        self.assertEqual(out[0]["image"].meta["filename"], "0.dcm")
        self.assertEqual(set(out[0]["mask"].unique().tolist()), {0.0, 1.0})
        torch.testing.assert_close(
            out[0]["image"].affine, torch.diag(torch.tensor([0.3, 0.8, 1.0], dtype=torch.float64))
        )
        batch = list_data_collate(out)
        for k, item in enumerate(decollate_batch(batch)):
            info = GridInfo.from_dict(item["image"].meta["grid_info"])
            self.assertEqual(info, GridInfo.from_dict(out[k]["image"].meta["grid_info"]))
            back = restore_to_original(item["image"].as_tensor(), info)
            self.assertLess(float((back - items[k]["image"].as_tensor()).abs()[:, 5:-5, 5:-5].max()), 0.003)

    def test_bad_mode(self):
        with self.assertRaisesRegex(ValueError, "mode"):
            ResizeToNetworkd("image", 32, mode="area")


class TestResizeToNetworkArray(unittest.TestCase):
    def test_matches_functional_and_records_grid_info(self):
        img = MetaTensor(_smooth(), meta={"spacing": [0.1, 0.2], "filename": "a.dcm"})
        out = ResizeToNetwork(33, keep_aspect=True)(img)
        expected, info = resize_to_network(img, 33, keep_aspect=True)
        self.assertIsInstance(out, MetaTensor)
        torch.testing.assert_close(out.as_tensor(), expected, atol=0, rtol=0)
        self.assertEqual(GridInfo.from_dict(out.meta["grid_info"]), info)
        self.assertEqual(out.meta["filename"], "a.dcm")
        np.testing.assert_array_equal(out.meta["spatial_shape"], (33, 33))
        torch.testing.assert_close(out.affine, torch.diag(torch.tensor([0.4, 0.8, 1.0], dtype=torch.float64)))
        back = restore_to_original(out.as_tensor(), out.meta["grid_info"])
        self.assertEqual(tuple(back.shape), (1, *ORIG))

    def test_same_as_dict_version(self):
        mask = (_blob(ORIG, (40.0, 50.0), sigma=15.0) > 0.5).to(torch.uint8)
        item = {"image": MetaTensor(_smooth(), meta={"spacing": [0.1, 0.2]}), "mask": mask.numpy()}
        d = ResizeToNetworkd(["image", "mask"], size=(20, 40), mode=["bicubic", "nearest"])(item)
        for key, mode in (("image", "bicubic"), ("mask", "nearest")):
            out = ResizeToNetwork((20, 40))(item[key], mode=mode)
            torch.testing.assert_close(out.as_tensor(), d[key].as_tensor(), atol=0, rtol=0)
            self.assertEqual(out.meta["grid_info"], d[key].meta["grid_info"])

    def test_bad_mode(self):
        with self.assertRaisesRegex(ValueError, "mode"):
            ResizeToNetwork(32, mode="area")
        with self.assertRaisesRegex(ValueError, "mode"):
            ResizeToNetwork(32)(torch.zeros(1, 8, 8), mode="area")
        with self.assertRaisesRegex(ValueError, "size"):
            ResizeToNetwork(1)


if __name__ == "__main__":
    unittest.main()
