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
"""Public-set readers, tested on small fakes written in the real folder layouts (the real sets are not downloadable
here): 128 x 128 JSRT ``.IMG`` files with 64 x 64 SCR GIF masks, 48 x 40 Montgomery and Shenzhen PNGs."""

from __future__ import annotations

import hashlib
import os
import tempfile
import unittest

import numpy as np
from PIL import Image

from monai_jrs.data.public_datasets import (
    PublicDatasetLayout,
    detect_dataset_layout,
    list_jsrt,
    list_montgomery,
    list_public_dataset,
    list_shenzhen,
    merge_lung_masks,
    read_binary_mask,
    read_jsrt_img,
)


def _tree_digest(root: str) -> dict[str, str]:
    """Relative path -> sha256 of every file and folder below ``root`` (folders map to "dir")."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _png(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def _gif(path: str, mask01: np.ndarray) -> None:
    """SCR-style GIF: palette image with 0 = background and 255 = organ."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray((mask01 * 255).astype(np.uint8)).convert("P").save(path, format="GIF")


def _raw_values(side: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, size=(side, side), dtype=np.uint16)


def _left_right(shape, seed):
    """Two overlapping random-ish lung masks (the overlap checks that the union is used)."""
    rng = np.random.default_rng(seed)
    left = np.zeros(shape, np.uint8)
    right = np.zeros(shape, np.uint8)
    h, w = shape
    left[h // 8: h - h // 8, w // 8: w // 2 + 2] = 1
    right[h // 6: h - h // 5, w // 2 - 1: w - w // 8] = 1
    left[rng.integers(0, h, 5), rng.integers(0, w, 5)] = 1
    return left, right


class _FakeSets(unittest.TestCase):
    """Builds the three fake datasets below ``self.data`` and an output folder beside it."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        base = self._tmp.name
        self.data = os.path.join(base, "datasets")
        self.out = os.path.join(base, "cache")
        self.jsrt = os.path.join(self.data, "JSRT")
        self.mont = os.path.join(self.data, "NLM")
        self.shen = os.path.join(self.data, "Shenzhen")
        self.raw, self.masks = {}, {}
        # JSRT + SCR: two images with masks (one nodule, one non-nodule) and one without masks
        for i, stem in enumerate(["JPCLN001", "JPCNN001", "JPCLN002"]):
            raw = _raw_values(128, i)
            self.raw[stem] = raw
            p = os.path.join(self.jsrt, "All247images", f"{stem}.IMG")
            os.makedirs(os.path.dirname(p), exist_ok=True)
            raw.astype(">u2").tofile(p)
            if stem != "JPCLN002":
                left, right = _left_right((64, 64), i)
                self.masks[stem] = np.maximum(left, right)
                _gif(os.path.join(self.jsrt, "scratch", "masks", "left lung", f"{stem}.gif"), left)
                _gif(os.path.join(self.jsrt, "scratch", "masks", "right lung", f"{stem}.gif"), right)
                _gif(os.path.join(self.jsrt, "scratch", "masks", "heart", f"{stem}.gif"), 1 - left)
        # Montgomery: 0001 normal, 0002 abnormal, 0003 lacks its right mask
        for i, stem in enumerate(["MCUCXR_0001_0", "MCUCXR_0002_1", "MCUCXR_0003_0"]):
            img = np.random.default_rng(10 + i).integers(0, 255, size=(48, 40), dtype=np.uint8)
            _png(os.path.join(self.mont, "MontgomerySet", "CXR_png", f"{stem}.png"), img)
            left, right = _left_right((48, 40), 10 + i)
            self.masks[stem] = np.maximum(left, right)
            _png(os.path.join(self.mont, "MontgomerySet", "ManualMask", "leftMask", f"{stem}.png"), left * 255)
            if stem != "MCUCXR_0003_0":
                _png(os.path.join(self.mont, "MontgomerySet", "ManualMask", "rightMask", f"{stem}.png"), right * 255)
        # Shenzhen: 0001 and 0002 have Kaggle masks, 0003 has none; 0002's mask has a different size
        for i, stem in enumerate(["CHNCXR_0001_0", "CHNCXR_0002_1", "CHNCXR_0003_0"]):
            img = np.random.default_rng(20 + i).integers(0, 255, size=(48, 40), dtype=np.uint8)
            _png(os.path.join(self.shen, "ChinaSet_AllFiles", "CXR_png", f"{stem}.png"), img)
            left, right = _left_right((48, 40), 20 + i)
            self.masks[stem] = np.maximum(left, right)
            if stem == "CHNCXR_0001_0":
                _png(os.path.join(self.shen, "ChinaSet_AllFiles", "mask", f"{stem}_mask.png"), self.masks[stem] * 255)
            elif stem == "CHNCXR_0002_1":
                big = np.repeat(np.repeat(self.masks[stem], 2, 0), 2, 1)
                _png(os.path.join(self.shen, "ChinaSet_AllFiles", "mask", f"{stem}_mask.png"), big * 255)

    def tearDown(self):
        self._tmp.cleanup()


class TestReadJSRT(_FakeSets):
    def test_values_and_polarity(self):
        p = os.path.join(self.jsrt, "All247images", "JPCLN001.IMG")
        raw = self.raw["JPCLN001"]
        got = read_jsrt_img(p, invert=False)
        self.assertEqual((got.dtype, got.shape), (np.uint16, (128, 128)))
        np.testing.assert_array_equal(got, raw)
        np.testing.assert_array_equal(read_jsrt_img(p), 4095 - raw.astype(np.int32))
        np.testing.assert_array_equal(read_jsrt_img(p, shape=(64, 256), invert=False), raw.reshape(64, 256))

    def test_bad_files(self):
        p = os.path.join(self._tmp.name, "x.IMG")
        np.full((8, 8), 4000, dtype="<u2").tofile(p)  # little-endian: 4000 reads as 40975 big-endian
        with self.assertRaisesRegex(ValueError, "40975 > 4095"):
            read_jsrt_img(p)
        np.zeros(10, dtype=">u2").tofile(p)
        with self.assertRaisesRegex(ValueError, "not a square matrix"):
            read_jsrt_img(p)
        with self.assertRaisesRegex(ValueError, r"expected 4 x 4 x 2 = 32 bytes, got 20"):
            read_jsrt_img(p, shape=(4, 4))
        with self.assertRaisesRegex(ValueError, "bits"):
            read_jsrt_img(p, bits=0)


class TestMasks(unittest.TestCase):
    def test_read_binary_mask_formats(self):
        with tempfile.TemporaryDirectory() as d:
            m = np.zeros((6, 5), np.uint8)
            m[1:4, 2:5] = 1
            for name, arr in (("a.png", m), ("b.png", m * 255), ("c.png", m * 200 + (1 - m) * 60)):
                _png(os.path.join(d, name), arr)
                got = read_binary_mask(os.path.join(d, name))
                self.assertEqual(got.dtype, np.uint8)
                np.testing.assert_array_equal(got, m)
            _gif(os.path.join(d, "d.gif"), m)
            np.testing.assert_array_equal(read_binary_mask(os.path.join(d, "d.gif")), m)
            _png(os.path.join(d, "e.png"), np.zeros((3, 3), np.uint8))
            np.testing.assert_array_equal(read_binary_mask(os.path.join(d, "e.png")), np.zeros((3, 3)))
            Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(os.path.join(d, "f.png"))
            np.testing.assert_array_equal(read_binary_mask(os.path.join(d, "f.png")), np.zeros((3, 3)))

    def test_merge(self):
        a = np.array([[0, 1], [0, 0]], np.uint8)
        b = np.array([[0, 255], [1, 0]], np.uint8)
        np.testing.assert_array_equal(merge_lung_masks(a, b), [[0, 1], [1, 0]])
        with self.assertRaisesRegex(ValueError, "same shape"):
            merge_lung_masks(a, np.zeros((3, 2)))
        with self.assertRaisesRegex(ValueError, "at least one"):
            merge_lung_masks()


class TestJSRT(_FakeSets):
    def test_list_resample_to_mask(self):
        before = _tree_digest(self.data)
        with self.assertLogs("monai_jrs.data.public_datasets", level="INFO") as logs:
            items = list_jsrt(self.jsrt, self.out)
        self.assertIn("skipped 1 image(s) without both SCR lung masks (e.g. JPCLN002)", "\n".join(logs.output))
        self.assertEqual([it["patient_id"] for it in items], ["JPCLN001", "JPCNN001"])
        self.assertEqual([it["label"] for it in items], ["diseased", "normal"])
        for it in items:
            stem = it["patient_id"]
            self.assertTrue(it["image"].startswith(os.path.realpath(self.out)))
            self.assertEqual(it["spacing"], [0.35, 0.35])
            img = np.asarray(Image.open(it["image"])).astype(np.int64)
            # 2 x 2 block mean of the inverted raw values, rounded half to even (np.rint)
            inv = 4095 - self.raw[stem].astype(np.float64)
            expected = np.rint(inv.reshape(64, 2, 64, 2).mean(axis=(1, 3)))
            np.testing.assert_array_equal(img, expected)
            mask = np.asarray(Image.open(it["mask"]))
            self.assertEqual(mask.dtype, np.uint8)
            np.testing.assert_array_equal(mask, self.masks[stem])
        self.assertEqual(_tree_digest(self.data), before)

    def test_list_resample_to_image(self):
        items = list_jsrt(self.jsrt, self.out, resample_to="image", invert=False)
        it = items[0]
        self.assertEqual(it["spacing"], [0.175, 0.175])
        np.testing.assert_array_equal(np.asarray(Image.open(it["image"])), self.raw["JPCLN001"])
        up = np.repeat(np.repeat(self.masks["JPCLN001"], 2, 0), 2, 1)
        np.testing.assert_array_equal(np.asarray(Image.open(it["mask"])), up)

    def test_bad_args(self):
        with self.assertRaisesRegex(ValueError, "resample_to"):
            list_jsrt(self.jsrt, self.out, resample_to="nearest")
        with self.assertRaisesRegex(ValueError, "JSRT"):
            list_jsrt(self.mont, self.out)


class TestMontgomery(_FakeSets):
    def test_list(self):
        before = _tree_digest(self.data)
        for root in (self.mont, os.path.join(self.mont, "MontgomerySet")):
            with self.assertLogs("monai_jrs.data.public_datasets", level="INFO") as logs:
                items = list_montgomery(root, self.out)
            self.assertIn("skipped 1 image(s) without both lung masks", "\n".join(logs.output))
            self.assertEqual([it["patient_id"] for it in items], ["MCUCXR_0001", "MCUCXR_0002"])
            self.assertEqual([it["label"] for it in items], ["normal", "diseased"])
            for it in items:
                stem = os.path.splitext(os.path.basename(it["image"]))[0]
                self.assertEqual(it["image"], os.path.join(self.mont, "MontgomerySet", "CXR_png", f"{stem}.png"))
                np.testing.assert_array_equal(np.asarray(Image.open(it["mask"])), self.masks[stem])
                self.assertNotIn("spacing", it)  # fakes are not the documented 4020 x 4892
        self.assertEqual(_tree_digest(self.data), before)

    def test_cache_reuse_and_overwrite(self):
        (first, _) = list_montgomery(self.mont, self.out)
        _png(first["mask"], np.zeros((48, 40), np.uint8))  # tamper with the cached file
        (again, _) = list_montgomery(self.mont, self.out)
        self.assertEqual(np.asarray(Image.open(again["mask"])).sum(), 0)  # reused, not rewritten
        (fresh, _) = list_montgomery(self.mont, self.out, overwrite=True)
        np.testing.assert_array_equal(np.asarray(Image.open(fresh["mask"])), self.masks["MCUCXR_0001_0"])

    def test_output_inside_dataset_rejected(self):
        before = _tree_digest(self.data)
        for out in (os.path.join(self.mont, "cache"), self.mont, os.path.join(self.mont, "MontgomerySet", "x")):
            with self.assertRaisesRegex(ValueError, "inside the dataset folder"):
                list_montgomery(self.mont, out)
        self.assertEqual(_tree_digest(self.data), before)


class TestShenzhen(_FakeSets):
    def test_list(self):
        before = _tree_digest(self.data)
        with self.assertLogs("monai_jrs.data.public_datasets", level="INFO") as logs:
            items = list_shenzhen(self.shen, self.out)
        text = "\n".join(logs.output)
        self.assertIn("skipped 1 image(s) without a lung mask (e.g. CHNCXR_0003_0)", text)
        self.assertIn("resizing the mask", text)  # 0002's mask is 96 x 80
        self.assertEqual([it["patient_id"] for it in items], ["CHNCXR_0001", "CHNCXR_0002"])
        self.assertEqual([it["label"] for it in items], ["normal", "diseased"])
        for it in items:
            stem = os.path.splitext(os.path.basename(it["image"]))[0]
            np.testing.assert_array_equal(np.asarray(Image.open(it["mask"])), self.masks[stem])
        self.assertEqual(_tree_digest(self.data), before)

    def test_explicit_mask_dir_beside(self):
        # masks kept outside the set folder, passed explicitly; files named without "_mask"
        mdir = os.path.join(self._tmp.name, "kaggle_masks")
        _png(os.path.join(mdir, "CHNCXR_0003_0.png"), self.masks["CHNCXR_0003_0"] * 255)
        items = list_shenzhen(os.path.join(self.shen, "ChinaSet_AllFiles"), self.out, mask_dir=mdir)
        self.assertEqual([it["patient_id"] for it in items], ["CHNCXR_0003"])
        with self.assertRaisesRegex(ValueError, "mask folder not found"):
            list_shenzhen(self.shen, self.out, mask_dir=os.path.join(self._tmp.name, "nope"))


class TestLayoutDetection(_FakeSets):
    def test_detect(self):
        self.assertEqual(detect_dataset_layout(self.jsrt), PublicDatasetLayout.JSRT)
        self.assertEqual(detect_dataset_layout(self.mont), PublicDatasetLayout.MONTGOMERY)
        self.assertEqual(detect_dataset_layout(os.path.join(self.mont, "MontgomerySet")), "montgomery")
        self.assertEqual(detect_dataset_layout(self.shen), PublicDatasetLayout.SHENZHEN)
        self.assertEqual(detect_dataset_layout(os.path.join(self.shen, "ChinaSet_AllFiles")), "shenzhen")

    def test_unknown_and_ambiguous(self):
        with self.assertRaisesRegex(ValueError, "no known lung-mask dataset layout.*Montgomery.*Shenzhen.*JSRT"):
            detect_dataset_layout(os.path.join(self.jsrt, "All247images"))  # images without SCR masks
        with self.assertRaisesRegex(ValueError, "not a folder"):
            detect_dataset_layout(os.path.join(self.data, "missing"))
        # a Shenzhen set without any mask folder is not recognised
        os.rename(os.path.join(self.shen, "ChinaSet_AllFiles", "mask"), os.path.join(self._tmp.name, "moved"))
        with self.assertRaisesRegex(ValueError, "no known"):
            detect_dataset_layout(self.shen)
        # both NLM sets side by side
        os.rename(os.path.join(self._tmp.name, "moved"), os.path.join(self.shen, "ChinaSet_AllFiles", "mask"))
        os.rename(os.path.join(self.shen, "ChinaSet_AllFiles"), os.path.join(self.mont, "ChinaSet_AllFiles"))
        with self.assertRaisesRegex(ValueError, "several layouts.*montgomery.*shenzhen"):
            detect_dataset_layout(self.mont)

    def test_dispatch(self):
        items = list_public_dataset(self.shen, self.out)
        self.assertEqual(len(items), 2)
        items = list_public_dataset(self.jsrt, self.out, resample_to="image")
        self.assertEqual(items[0]["spacing"], [0.175, 0.175])

    def test_monai_loads_image_and_mask_on_one_grid(self):
        from monai.transforms import EnsureChannelFirstd, LoadImaged

        load = LoadImaged(["image", "mask"], image_only=True)
        chan = EnsureChannelFirstd(["image", "mask"])
        items = list_jsrt(self.jsrt, self.out) + list_montgomery(self.mont, self.out)
        for it in items:
            d = chan(load(dict(it)))
            self.assertEqual(d["image"].shape, d["mask"].shape)
            self.assertEqual(set(np.unique(d["mask"].numpy()).tolist()), {0.0, 1.0})


if __name__ == "__main__":
    unittest.main()
