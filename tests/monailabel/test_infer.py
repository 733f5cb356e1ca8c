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
"""The ``jrs_lung`` infer task without a server: the label writer's geometry, the pydicom 3 import shim, and one call
of the task on MONAI Label's LocalDatastore with the shipped weights."""

from __future__ import annotations

import os
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel", reason="the monailabel extra is not installed (pip install .[monailabel])")
sitk = pytest.importorskip("SimpleITK")

from monai_jrs.monailabel.compat import install_pydicom_seg_compat  # noqa: E402

install_pydicom_seg_compat()

from monailabel.datastore.local import LocalDatastore  # noqa: E402

from monai_jrs.data.testing import make_dx_dicom, make_synthetic_xray  # noqa: E402
from monai_jrs.monailabel import (  # noqa: E402
    InvalidInferRequestError,
    JRSLungInferTask,
    ReferenceFinder,
    ReferenceNotFoundError,
    VisitResolver,
    image_id_of,
    write_label_like,
)
from tests.monailabel.studies import make_studies  # noqa: E402


class TestWriteLabelLike(unittest.TestCase):
    def test_geometry_follows_the_image(self):
        with tempfile.TemporaryDirectory() as tmp:
            img, mask = make_synthetic_xray((40, 30))
            dcm = make_dx_dicom(Path(tmp) / "a.dcm", img, imager_spacing=(0.3, 0.2))
            out = write_label_like(mask, dcm, Path(tmp) / "a_label.nii.gz")
            label, image = sitk.ReadImage(str(out)), sitk.ReadImage(str(dcm))
            self.assertEqual(label.GetSize(), image.GetSize())  # (cols, rows, 1)
            np.testing.assert_allclose(label.GetSpacing(), image.GetSpacing())
            np.testing.assert_array_equal(sitk.GetArrayFromImage(label)[0], mask)
            png = Path(tmp) / "b.png"
            sitk.WriteImage(sitk.GetImageFromArray(img), str(png))
            out = write_label_like(mask, png, Path(tmp) / "b_label.png")
            np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), mask)
            with self.assertRaisesRegex(ValueError, r"label shape \(30, 40\) \(rows, cols\) does not match"):
                write_label_like(mask.T, dcm, Path(tmp) / "c.nii.gz")


class TestCompat(unittest.TestCase):
    def test_pydicom_seg_imports(self):
        install_pydicom_seg_compat()
        self.assertFalse(install_pydicom_seg_compat())  # idempotent
        import pydicom.uid
        import pydicom_seg  # noqa: F401  (fails under pydicom 3 without the alias)

        self.assertEqual(sys.modules["pydicom._storage_sopclass_uids"].SegmentationStorage,
                         pydicom.uid.SegmentationStorage)


@pytest.mark.slow
class TestInferTask(unittest.TestCase):
    def test_call_on_local_datastore(self):
        with tempfile.TemporaryDirectory() as tmp:
            expected = make_studies(tmp)
            store = LocalDatastore(tmp, extensions=["*.nii.gz", "*.png", "*.dcm"], auto_reload=False)
            finder = ReferenceFinder(VisitResolver("auto", mapping=Path(tmp) / "visits.json"))
            task = JRSLungInferTask(store, finder=finder)
            self.assertTrue(task.is_valid())
            self.assertEqual(image_id_of(store, store.get_image_uri("p1_v1")), "p1_v1")
            # MONAILabelApp.infer passes the image URI; the task maps it back to the datastore id
            label_file, params = task({"image": store.get_image_uri("p1_v1")})
            try:
                mask = sitk.GetArrayFromImage(sitk.ReadImage(label_file)).reshape(expected["p1_v1"].shape)
            finally:
                os.remove(label_file)
            dice = 2 * (mask & expected["p1_v1"]).sum() / (mask.sum() + expected["p1_v1"].sum())
            self.assertGreater(dice, 0.9)
            self.assertEqual(params["reference_image"], "p1_v0")
            self.assertEqual(task({"image": "p1_v1", "reference_choice": "latest", "result_extension": ".nii",
                                   "skip_writer": True})[1]["reference"].image_id, "p1_v2")
            with self.assertRaisesRegex(InvalidInferRequestError, "`reference_choice` must be one of"):
                task({"image": "p1_v1", "reference_choice": "first"})
            label_file, _ = task({"image": "p2_b", "result_extension": ".png"})  # by id
            try:
                self.assertEqual(sitk.ReadImage(label_file).GetSize(), (312, 360))
            finally:
                os.remove(label_file)
            with self.assertRaisesRegex(ReferenceNotFoundError, "p3_v1"):
                task({"image": "p3_v1"})
            with self.assertRaisesRegex(ValueError, "`result_extension` must be one of"):
                JRSLungInferTask(store, result_extension=".dcm")


if __name__ == "__main__":
    unittest.main()
