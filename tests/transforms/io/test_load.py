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
"""Tests of the loading transforms of :mod:`monai_jrs.transforms.io` (array and dictionary forms)."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_jrs.data.io import from_collatable_meta, load_mask, load_xray
from monai_jrs.transforms import LoadLungMask, LoadLungMaskd, LoadXRay, LoadXRayd
from tests.data.test_io import SHAPE, _asym, _TmpCase
from tests.test_utils import SkipIfNoModule


class TestLoadTransforms(_TmpCase):
    @SkipIfNoModule("pydicom")
    def test_load_xray_and_mask_dict(self):
        from monai_jrs.data.testing import make_dx_dicom, make_synthetic_xray

        img, mask = make_synthetic_xray((20, 28))
        src = make_dx_dicom(self.root / "img.dcm", img, imager_spacing=(0.2, 0.25))
        Image.fromarray(mask * 255).save(self.root / "mask.png")
        data = {"image": str(src), "mask": str(self.root / "mask.png"), "id": "P1"}
        d = LoadXRayd("image", image_only=False)(data)
        d = LoadLungMaskd("mask", reference_keys="image")(d)
        self.assertIsInstance(d["image"], MetaTensor)
        self.assertEqual(tuple(d["image"].shape), (1, 20, 28))
        self.assertEqual(d["id"], "P1")
        self.assertEqual(d["image_meta_dict"]["spacing"], (0.2, 0.25))
        torch.testing.assert_close(d["image"].affine, torch.diag(torch.tensor([0.2, 0.25, 1.0], dtype=torch.float64)))
        self.assertEqual(d["image"].meta["filename_or_obj"], str(src))
        np.testing.assert_array_equal(d["mask"][0].numpy(), mask)
        self.assertEqual(d["mask"].meta["spacing"], [0.2, 0.25])  # inherited from the image
        torch.testing.assert_close(d["mask"].affine, d["image"].affine)

    def test_reference_key_errors(self):
        np.save(self.root / "m.npy", np.ones(SHAPE, np.uint8))
        with self.assertRaisesRegex(ValueError, "missing"):
            LoadLungMaskd("mask", reference_keys="image")({"mask": str(self.root / "m.npy")})
        with self.assertRaisesRegex(TypeError, "MetaTensor"):
            LoadLungMaskd("mask", reference_keys="image")({"mask": str(self.root / "m.npy"), "image": torch.zeros(1)})
        with self.assertRaisesRegex(ValueError, "reference_keys"):
            LoadLungMaskd(["a", "b", "c"], reference_keys=["x", "y"])

    def test_load_xray_transform_unknown_spacing(self):
        np.save(self.root / "a.npy", _asym())
        out = LoadXRay()(self.root / "a.npy")
        self.assertIsInstance(out, MetaTensor)
        torch.testing.assert_close(out.affine, torch.eye(3, dtype=torch.float64))
        self.assertTrue(all(math.isnan(s) for s in out.meta["spacing"]))  # collatable "unknown"
        self.assertIsNone(from_collatable_meta(out.meta)["spacing"])
        with self.assertRaisesRegex(ValueError, "percentiles"):
            LoadXRay(lower=50, upper=10)

    def test_load_lung_mask_array(self):
        np.save(self.root / "a.npy", _asym())
        np.save(self.root / "m.npy", (_asym() > 30).astype(np.uint8))
        image = LoadXRay()(self.root / "a.npy")
        mask = LoadLungMask()(self.root / "m.npy", image)
        self.assertIsInstance(mask, MetaTensor)
        expected, meta = load_mask(self.root / "m.npy", reference_meta=from_collatable_meta(image.meta))
        torch.testing.assert_close(mask.as_tensor(), expected, atol=0, rtol=0)
        self.assertEqual(mask.meta["filename_or_obj"], meta["filename"])
        # the same as the dictionary version, per key
        d = LoadLungMaskd("mask", reference_keys="image")({"image": image, "mask": self.root / "m.npy"})
        torch.testing.assert_close(d["mask"].as_tensor(), mask.as_tensor(), atol=0, rtol=0)
        self.assertEqual(from_collatable_meta(d["mask"].meta)["reference_filename"], str(self.root / "a.npy"))
        torch.testing.assert_close(d["mask"].affine, mask.affine)
        # the reference as loader meta, or as its shape only; image_only=False returns the raw meta too
        _, ref_meta = load_xray(self.root / "a.npy")
        out, raw = LoadLungMask(image_only=False)(self.root / "m.npy", ref_meta)
        torch.testing.assert_close(out.as_tensor(), mask.as_tensor(), atol=0, rtol=0)
        self.assertEqual(raw["reference_filename"], ref_meta["filename"])
        with self.assertRaisesRegex(ValueError, "does not match"):
            LoadLungMask()(self.root / "m.npy", {"original_shape": (SHAPE[0] + 1, SHAPE[1])})
        self.assertEqual(tuple(LoadLungMask()(self.root / "m.npy").shape), (1, *SHAPE))  # no reference, no check

    def test_load_lung_mask_options(self):
        labels = np.zeros(SHAPE, np.uint8)
        labels[1:3, 2:5], labels[4, 6:9] = 1, 2
        np.save(self.root / "labels.npy", labels)
        only_two = LoadLungMask(labels=[2])(self.root / "labels.npy")
        np.testing.assert_array_equal(only_two[0].numpy(), (labels == 2).astype(np.float32))
        np.save(self.root / "empty.npy", np.zeros(SHAPE, np.uint8))
        with self.assertRaisesRegex(ValueError, "empty"):
            LoadLungMask()(self.root / "empty.npy")
        self.assertEqual(float(LoadLungMask(allow_empty=True)(self.root / "empty.npy").sum()), 0.0)
        with self.assertRaisesRegex(ValueError, "nifti_layout"):
            LoadLungMask(nifti_layout="xy")
        self.assertTrue(math.isnan(float(only_two.meta["spacing"][0])))  # collatable "unknown" spacing


if __name__ == "__main__":
    unittest.main()
