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
"""Tests of the Secondary Capture writer and the contour overlay of :mod:`monai_jrs.data.writers`.

The source radiographs are DX files generated with :func:`monai_jrs.data.testing.make_dx_dicom`; every SC is read
back with pydicom.
"""

from __future__ import annotations

import datetime
import tempfile
import unittest
from pathlib import Path

import numpy as np
import pydicom
import torch
from parameterized import parameterized
from pydicom.uid import UID, SecondaryCaptureImageStorage

from monai_jrs import __version__
from monai_jrs.data.testing import make_chest_phantom, make_dx_dicom
from monai_jrs.data.writers import SC_COPIED_ATTRIBUTES, contour_overlay, write_secondary_capture
from monai_jrs.transforms import subtraction_to_display, temporal_subtraction
from monai_jrs.visualize.overlay import GREEN, RED, overlay_contours

SHAPE = (40, 48)
SERIES_UID = "1.2.826.0.1.3680043.8.498.10001"
SOP_UID = "1.2.826.0.1.3680043.8.498.10001.1"


class TestSecondaryCapture(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls._tmp.name)
        image, lungs = make_chest_phantom(SHAPE, noise=0.01, seed=5)
        cls.image, cls.lungs = image, lungs
        stored = np.round(image * 4095).astype(np.uint16)
        # the follow-up first: the SC files in its study; the reference (another study, same patient) second
        cls.follow_path = make_dx_dicom(cls.root / "in" / "follow.dcm", stored, imager_spacing=(0.2, 0.25),
                                        study_date="20240601", instance_number=1)
        cls.ref_path = make_dx_dicom(cls.root / "in" / "ref.dcm", stored, imager_spacing=(0.2, 0.25),
                                     study_date="20240101", instance_number=1)
        cls.follow, cls.ref = pydicom.dcmread(cls.follow_path), pydicom.dcmread(cls.ref_path)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def _out(self, name: str) -> Path:
        return self.root / "out" / name

    def _check_common(self, ds: pydicom.Dataset, sources: list[pydicom.Dataset]) -> None:
        self.assertEqual(ds.SOPClassUID, SecondaryCaptureImageStorage)
        self.assertEqual(ds.file_meta.MediaStorageSOPClassUID, SecondaryCaptureImageStorage)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                        "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
            self.assertIn(keyword, SC_COPIED_ATTRIBUTES)
            self.assertEqual(ds[keyword].value, sources[0][keyword].value, keyword)
        self.assertNotEqual(ds.StudyInstanceUID, sources[1].StudyInstanceUID)  # the first source's study only
        for seq in ("SourceImageSequence", "ReferencedImageSequence"):
            refs = [(item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID) for item in ds[seq].value]
            self.assertEqual(refs, [(s.SOPClassUID, s.SOPInstanceUID) for s in sources], seq)
        self.assertEqual(ds.SourceImageSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue, "121322")
        self.assertEqual(list(ds.ImageType), ["DERIVED", "SECONDARY"])
        self.assertEqual((ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions),
                         ("monai_jrs", "monai_jrs", __version__))
        self.assertEqual((ds.BurnedInAnnotation, ds.ConversionType, ds.Modality), ("NO", "WSD", "OT"))
        made = datetime.datetime.strptime(ds.ContentDate + ds.ContentTime.split(".")[0], "%Y%m%d%H%M%S")
        self.assertLess(abs((datetime.datetime.now() - made).total_seconds()), 120)

    def test_rgb_overlay_on_the_reference_grid(self):
        rgb = contour_overlay(self.image, [(self.lungs, RED)])
        path = write_secondary_capture(
            rgb, [self.follow, self.ref_path], self._out("overlay.dcm"), series_instance_uid=SERIES_UID,
            sop_instance_uid=SOP_UID, series_number=901, series_description="monai_jrs overlay", photometric="RGB",
            derivation_description="lung contours of the registered follow-up", grid_source=1,
        )
        self.assertEqual(path, self._out("overlay.dcm"))
        ds = pydicom.dcmread(path)
        self._check_common(ds, [self.follow, self.ref])
        np.testing.assert_array_equal(ds.pixel_array, rgb)
        self.assertEqual((ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsAllocated), ("RGB", 3, 8))
        self.assertEqual((ds.SeriesInstanceUID, ds.SOPInstanceUID), (SERIES_UID, SOP_UID))
        self.assertEqual(ds.file_meta.MediaStorageSOPInstanceUID, SOP_UID)
        self.assertEqual((ds.SeriesNumber, ds.SeriesDescription), (901, "monai_jrs overlay"))
        self.assertEqual(ds.DerivationDescription, "lung contours of the registered follow-up")
        self.assertEqual([float(v) for v in ds.ImagerPixelSpacing], [0.2, 0.25])  # from the grid source
        self.assertEqual(list(ds.PatientOrientation), list(self.ref.PatientOrientation))
        self.assertNotIn("WindowCenter", ds)

    @parameterized.expand([("uint8", np.uint8), ("uint16", np.uint16)])
    def test_monochrome2_subtraction(self, name, dtype):
        ref = torch.from_numpy(self.image).float()[None]
        follow = 0.8 * ref + 0.1
        follow[0, 10:13, 12:15] += 0.2
        display = subtraction_to_display(temporal_subtraction(ref, follow, mask=self.lungs[None]), window=0.2,
                                         dtype=dtype)
        path = write_secondary_capture(
            display, [self.follow_path, self.ref_path], self._out(f"subtraction_{name}.dcm"),
            series_instance_uid=SERIES_UID, sop_instance_uid=f"{SOP_UID}.{np.dtype(dtype).itemsize}", series_number=902,
            series_description="temporal subtraction",
            derivation_description="follow-up minus reference",
        )
        ds = pydicom.dcmread(path)
        self._check_common(ds, [self.follow, self.ref])
        np.testing.assert_array_equal(ds.pixel_array, display)
        self.assertEqual(ds.pixel_array.dtype, np.dtype(dtype))
        bits = 8 * np.dtype(dtype).itemsize
        self.assertEqual((ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored),
                         ("MONOCHROME2", 1, bits, bits))
        self.assertEqual((float(ds.WindowCenter), float(ds.WindowWidth)), (2.0 ** (bits - 1), 2.0**bits))
        self.assertNotIn("PixelSpacing", ds)  # not on a source grid: no spacing claimed
        self.assertNotIn("ImagerPixelSpacing", ds)
        self.assertGreater(int(ds.pixel_array[11, 13]), 2 ** (bits - 1))  # the new density is bright

    def test_refuses_overwrite(self):
        grey = np.full(SHAPE, 128, dtype=np.uint8)
        path = self._out("twice.dcm")
        write_secondary_capture(grey, [self.follow], path, series_instance_uid=SERIES_UID, sop_instance_uid=SOP_UID)
        before = path.read_bytes()
        with self.assertRaisesRegex(FileExistsError, "overwrite=True"):
            write_secondary_capture(grey + 1, [self.follow], path, series_instance_uid=SERIES_UID,
                                    sop_instance_uid=SOP_UID)
        self.assertEqual(path.read_bytes(), before)
        write_secondary_capture(grey + 1, [self.follow], path, series_instance_uid=SERIES_UID,
                                sop_instance_uid=SOP_UID, overwrite=True)
        np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, grey + 1)

    def test_generated_uids_when_none_given(self):
        grey = np.zeros(SHAPE, dtype=np.uint16)
        a = pydicom.dcmread(write_secondary_capture(grey, [self.follow], self._out("a.dcm")))
        b = pydicom.dcmread(write_secondary_capture(grey, [self.follow], self._out("b.dcm")))
        for ds in (a, b):
            self.assertTrue(UID(ds.SOPInstanceUID).is_valid and UID(ds.SeriesInstanceUID).is_valid)
        self.assertNotEqual(a.SOPInstanceUID, b.SOPInstanceUID)
        self.assertEqual(len(a.SourceImageSequence), 1)

    def test_bad_inputs(self):
        grey = np.zeros(SHAPE, dtype=np.uint8)
        cases = [
            (np.zeros(SHAPE, dtype=np.float32), {}, "uint8 or uint16 \\(H, W\\) pixel array, got a float32"),
            (np.zeros((*SHAPE, 3), dtype=np.uint16), {}, "uint8 \\(H, W, 3\\) pixel array, got a uint16"),
            (grey, {"photometric": "RGB"}, "RGB Secondary Capture needs a uint8 \\(H, W, 3\\)"),
            (grey, {"photometric": "YBR_FULL"}, "'RGB' or 'MONOCHROME2'"),
            (grey, {"sop_instance_uid": "1.2.abc"}, "`sop_instance_uid` must be a valid DICOM UID"),
            (grey, {"grid_source": 2}, "`grid_source` must be an index in \\[0, 0\\]"),
            (grey[:, :10], {"grid_source": 0}, r"\(Rows, Columns\) = \(40, 48\), but the pixel array is \(40, 10\)"),
        ]
        for i, (arr, kwargs, message) in enumerate(cases):
            with self.assertRaisesRegex(ValueError, message):
                write_secondary_capture(arr, [self.follow], self._out(f"bad{i}.dcm"), **kwargs)
        with self.assertRaisesRegex(ValueError, "`source_datasets` is empty"):
            write_secondary_capture(grey, [], self._out("bad_empty.dcm"))
        with self.assertRaisesRegex(ValueError, "not a readable DICOM file"):
            write_secondary_capture(grey, [self.root / "missing.dcm"], self._out("bad_missing.dcm"))
        self.assertEqual(sorted((self.root / "out").glob("bad*")), [])  # nothing written on errors


class TestContourOverlay(unittest.TestCase):
    def test_same_drawing_as_the_register_overlay(self):
        image, lungs = make_chest_phantom((32, 36), noise=0.0)
        other = np.roll(lungs, 2, axis=1)
        rgb = contour_overlay(torch.from_numpy(image)[None], [(lungs, RED), (torch.from_numpy(other)[None], GREEN)])
        self.assertEqual((rgb.shape, rgb.dtype), ((32, 36, 3), np.dtype(np.uint8)))
        expected = overlay_contours(image, [lungs, other], colors=(RED, GREEN), thickness=2)
        np.testing.assert_array_equal(rgb, expected)
        self.assertTrue(bool((rgb == GREEN).all(axis=-1).any()) and bool((rgb == RED).all(axis=-1).any()))
        thin = contour_overlay(image, [(lungs, RED)], thickness=1)
        self.assertLess(int((thin == RED).all(axis=-1).sum()), int((rgb == RED).all(axis=-1).sum()))

    def test_bad_masks(self):
        image = np.zeros((8, 8))
        with self.assertRaisesRegex(ValueError, r"`masks\[0\]` must have the image's shape \(8, 8\)"):
            contour_overlay(image, [(np.zeros((8, 7)), RED)])
        with self.assertRaisesRegex(ValueError, r"`masks\[0\]`: the colour must be \(r, g, b\)"):
            contour_overlay(image, [(np.zeros((8, 8)), (300, 0, 0))])
        with self.assertRaisesRegex(ValueError, r"`masks\[0\]` must be a \(mask, \(r, g, b\)\) pair"):
            contour_overlay(image, [np.zeros((8, 8))])
        with self.assertRaisesRegex(ValueError, "`thickness`"):
            contour_overlay(image, [], thickness=0)


if __name__ == "__main__":
    unittest.main()
