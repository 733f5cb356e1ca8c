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
"""Tests of :mod:`monai_jrs.data.dicom`: DX/CR reading (LUTs, MONOCHROME1, spacing), folder scans and DICOM SEG.

Every DICOM file is generated in a temporary folder with :mod:`monai_jrs.data.testing`; nothing binary is committed.
"""

from __future__ import annotations

import tempfile
import unittest
import warnings
from pathlib import Path

import numpy as np
from parameterized import parameterized

from tests.test_utils import SkipIfNoModule

# (6, 11) stored values with one bright pixel at (2, 7): a transpose changes the shape, a vertical flip moves it to
# row 3 and a horizontal flip to column 3, so any axis mix-up is caught.
SHAPE = (6, 11)
BRIGHT = (2, 7)


def _asym(max_value: int = 4000) -> np.ndarray:
    a = (np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) * 10).astype(np.uint16)
    a[BRIGHT] = max_value
    return a


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@SkipIfNoModule("pydicom")
class TestReadDicomXray(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def _dx(self, name="img.dcm", array=None, **kwargs):
        from monai_jrs.data.testing import make_dx_dicom

        return make_dx_dicom(self.root / name, _asym() if array is None else array, **kwargs)

    def test_rows_cols_order(self):
        from monai_jrs.data.dicom import read_dicom_xray

        arr, meta = read_dicom_xray(self._dx())
        self.assertEqual(arr.shape, SHAPE)
        self.assertEqual(np.unravel_index(arr.argmax(), arr.shape), BRIGHT)
        np.testing.assert_array_equal(arr, _asym())
        self.assertEqual(meta["original_shape"], SHAPE)
        self.assertEqual(meta["format"], "dicom")
        self.assertEqual(meta["dtype_in"], "uint16")
        self.assertFalse(meta["voi_applied"])
        self.assertEqual(meta["Modality"], "DX")
        self.assertEqual(meta["InstanceNumber"], 1)

    def test_monochrome1_inverted(self):
        from monai_jrs.data.dicom import read_dicom_xray

        a = _asym()
        m2, _ = read_dicom_xray(self._dx("m2.dcm", a))
        m1, meta = read_dicom_xray(self._dx("m1.dcm", a, photometric="MONOCHROME1"))
        self.assertEqual(meta["photometric"], "MONOCHROME1")
        np.testing.assert_array_equal(m1, a.max() + a.min() - a.astype(np.float64))
        # the brightest stored value becomes the darkest displayed one
        self.assertEqual(np.unravel_index(m1.argmin(), m1.shape), BRIGHT)
        np.testing.assert_array_equal(m1 + m2, np.full(SHAPE, float(a.max()) + a.min()))

    @parameterized.expand([((2.0, -100.0),), ((0.5, 10.0),), ((1.0, 0.0),)])
    def test_rescale_slope_intercept(self, rescale):
        from monai_jrs.data.dicom import read_dicom_xray

        a = _asym()
        arr, _ = read_dicom_xray(self._dx(array=a, rescale=rescale))
        np.testing.assert_allclose(arr, a.astype(np.float64) * rescale[0] + rescale[1])

    def test_window_applied(self):
        from monai_jrs.data.dicom import read_dicom_xray

        a = (np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) * 50).astype(np.uint16)  # 0 .. 3250
        c, w = 1000.0, 500.0
        arr, meta = read_dicom_xray(self._dx(array=a, window=(c, w)))
        self.assertTrue(meta["voi_applied"])
        # DICOM PS3.3 C.11.2.1.2.1 linear window, output range [0, 2**BitsStored - 1]
        expected = np.clip(((a - (c - 0.5)) / (w - 1) + 0.5) * 4095.0, 0.0, 4095.0)
        np.testing.assert_allclose(arr, expected, atol=1e-6)
        raw, meta_raw = read_dicom_xray(self.root / "img.dcm", apply_voi=False)
        self.assertFalse(meta_raw["voi_applied"])
        np.testing.assert_array_equal(raw, a)

    def test_window_after_rescale(self):
        from monai_jrs.data.dicom import read_dicom_xray

        a = (np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) * 50).astype(np.uint16)
        arr, _ = read_dicom_xray(self._dx(array=a, window=(1000.0, 500.0), rescale=(2.0, -100.0)))
        hu = a * 2.0 - 100.0  # the window applies to Modality LUT output
        lo, hi = -100.0, 4095 * 2.0 - 100.0
        expected = np.clip(((hu - 999.5) / 499.0 + 0.5) * (hi - lo) + lo, lo, hi)
        np.testing.assert_allclose(arr, expected, atol=1e-6)

    def test_voi_index(self):
        import pydicom

        from monai_jrs.data.dicom import read_dicom_xray

        a = (np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) * 50).astype(np.uint16)
        p = self._dx(array=a, window=(1000.0, 500.0))
        ds = pydicom.dcmread(p)
        ds.WindowCenter, ds.WindowWidth = ["1000", "2000"], ["500", "4001"]
        ds.save_as(p)
        first, _ = read_dicom_xray(p)
        second, _ = read_dicom_xray(p, voi_index=1)
        self.assertEqual(first[0, 0], 0.0)  # 0 is below the narrow window
        np.testing.assert_allclose(second, np.clip(((a - 1999.5) / 4000.0 + 0.5) * 4095.0, 0, 4095), atol=1e-6)

    def test_voi_lut_sequence(self):
        import pydicom
        from pydicom.dataset import Dataset

        from monai_jrs.data.dicom import read_dicom_xray

        a = _asym()
        p = self._dx(array=a)  # carries RescaleSlope/Intercept, so the Modality LUT output is float
        ds = pydicom.dcmread(p)
        item = Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        item.LUTData = [4095 - v for v in range(4096)]
        item["LUTData"].VR = "US"
        ds.VOILUTSequence = [item]
        ds.save_as(p)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "VOI LUT on a float input array" warning
            arr, meta = read_dicom_xray(p)
        self.assertTrue(meta["voi_applied"])
        np.testing.assert_array_equal(arr, 4095.0 - a)

    @parameterized.expand(
        [
            ("imager_only", (0.14, 0.2), None, (0.14, 0.2), "ImagerPixelSpacing"),
            ("pixel_only", None, (0.3, 0.1), (0.3, 0.1), "PixelSpacing"),
            ("both_prefers_imager", (0.14, 0.14), (0.1, 0.1), (0.14, 0.14), "ImagerPixelSpacing"),
            ("invalid_imager_falls_back", (0.0, 0.0), (0.3, 0.2), (0.3, 0.2), "PixelSpacing"),
        ]
    )
    def test_spacing(self, _, imager, pixel, expected, source):
        from monai_jrs.data.dicom import read_dicom_xray

        _, meta = read_dicom_xray(self._dx(imager_spacing=imager, pixel_spacing=pixel))
        np.testing.assert_allclose(meta["spacing"], expected)
        self.assertEqual(meta["spacing_source"], source)

    def test_spacing_preference(self):
        from monai_jrs.data.dicom import read_dicom_xray

        p = self._dx(imager_spacing=(0.14, 0.14), pixel_spacing=(0.1, 0.12))
        _, meta = read_dicom_xray(p, spacing_preference=("PixelSpacing", "ImagerPixelSpacing"))
        self.assertEqual((meta["spacing"], meta["spacing_source"]), ((0.1, 0.12), "PixelSpacing"))
        with self.assertRaisesRegex(ValueError, "spacing_preference"):
            read_dicom_xray(p, spacing_preference=("SliceThickness",))

    def test_missing_spacing_warns_and_is_none(self):
        from monai_jrs.data.dicom import read_dicom_xray

        p = self._dx(imager_spacing=None, pixel_spacing=None)
        with self.assertWarnsRegex(UserWarning, "spacing is unknown") as cm:
            arr, meta = read_dicom_xray(p)
        self.assertIn(str(p), str(cm.warning))
        self.assertIsNone(meta["spacing"])
        self.assertIsNone(meta["spacing_source"])
        self.assertEqual(arr.shape, SHAPE)

    def test_bad_files_name_the_file(self):
        from monai_jrs.data.dicom import read_dicom_xray
        from monai_jrs.data.testing import make_sr_dicom

        good = self._dx("good.dcm").read_bytes()
        cases = {
            "empty.dcm": (b"", "empty"),
            "random.dcm": (np.random.default_rng(0).bytes(600), "not a readable DICOM"),
            "truncated.dcm": (good[:-100], "cannot decode the pixel data"),
        }
        for name, (content, msg) in cases.items():
            (self.root / name).write_bytes(content)
        cases["sr.dcm"] = (None, "non-image DICOM object")
        make_sr_dicom(self.root / "sr.dcm")
        cases["multiframe.dcm"] = (None, "multi-frame")
        self._dx("multiframe.dcm", np.stack([_asym(), _asym()]))
        for name, (_, msg) in cases.items():
            with self.subTest(name), self.assertRaisesRegex(ValueError, msg) as cm:
                read_dicom_xray(self.root / name)
            self.assertIn(str(self.root / name), str(cm.exception))

    def test_missing_file_and_folder(self):
        from monai_jrs.data.dicom import read_dicom_xray

        with self.assertRaisesRegex(FileNotFoundError, "nope.dcm"):
            read_dicom_xray(self.root / "nope.dcm")
        with self.assertRaisesRegex(ValueError, "folder"):
            read_dicom_xray(self.root)

    def test_seg_is_not_an_image(self):
        from monai_jrs.data.dicom import read_dicom_xray, write_dicom_seg

        src = self._dx()
        seg = write_dicom_seg((_asym() > 200).astype(np.uint8), src, self.root / "seg.dcm")
        with self.assertRaisesRegex(ValueError, "DICOM SEG") as cm:
            read_dicom_xray(seg)
        self.assertIn(str(seg), str(cm.exception))

    def test_is_dicom_file(self):
        from monai_jrs.data.dicom import is_dicom_file

        (self.root / "short.dcm").write_bytes(b"DICM")
        (self.root / "text.txt").write_text("hello")
        self.assertTrue(is_dicom_file(self._dx("no_suffix")))
        for p in (self.root / "short.dcm", self.root / "text.txt", self.root, self.root / "missing.dcm"):
            self.assertFalse(is_dicom_file(p), p)


@SkipIfNoModule("pydicom")
class TestDicomFolders(unittest.TestCase):
    """A folder holding two patients, three series, an SR, a SEG, a PNG and a multi-frame file."""

    def setUp(self):
        from monai_jrs.data.dicom import write_dicom_seg
        from monai_jrs.data.testing import make_dx_dicom, make_sr_dicom

        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name) / "in"
        a = _asym()
        # names in the opposite of the expected order, to check the sort
        self.b1 = make_dx_dicom(self.root / "a_b1.dcm", a, patient_id="B", study_date="20240101", modality="CR")
        self.a2_series2 = make_dx_dicom(
            self.root / "b_a2.dcm", a + 1, patient_id="A", study_date="20240301", series_number=2
        )
        self.a1_i2 = make_dx_dicom(self.root / "sub" / "c.dcm", a + 2, patient_id="A", instance_number=2)
        self.a1_i1 = make_dx_dicom(self.root / "d", a + 3, patient_id="A", instance_number=1)
        make_sr_dicom(self.root / "report.dcm", patient_id="A")
        write_dicom_seg((a > 200).astype(np.uint8), self.b1, self.root / "seg.dcm")
        make_dx_dicom(self.root / "multi.dcm", np.stack([a, a]))
        (self.root / "notes.txt").write_text("not dicom")
        (self.root / "DICOMDIR").write_bytes(b"\0" * 10)

    def tearDown(self):
        self._tmp.cleanup()

    def test_list_one_image_per_file_sorted(self):
        from monai_jrs.data.dicom import list_dicom_images

        files = list_dicom_images(self.root)
        self.assertEqual(files, [self.a1_i1, self.a1_i2, self.a2_series2, self.b1])
        self.assertEqual(list_dicom_images(self.root, recursive=False), [self.a1_i1, self.a2_series2, self.b1])

    def test_scan_metadata_and_each_file_reads(self):
        from monai_jrs.data.dicom import read_dicom_xray, scan_dicom_folder

        infos = scan_dicom_folder(self.root)
        self.assertEqual([i["PatientID"] for i in infos], ["A", "A", "A", "B"])
        self.assertEqual([i["Modality"] for i in infos], ["DX", "DX", "DX", "CR"])
        self.assertEqual(len({i["SeriesInstanceUID"] for i in infos}), 3)
        for offset, info in zip((3, 2, 1, 0), infos):
            arr, meta = read_dicom_xray(info["path"])
            self.assertEqual(arr.shape, SHAPE)  # never stacked across files or series
            np.testing.assert_array_equal(arr, _asym() + offset)
            self.assertEqual(meta["SOPInstanceUID"], info["SOPInstanceUID"])

    def test_scan_never_writes(self):
        from monai_jrs.data.dicom import read_dicom_xray, scan_dicom_folder

        before = _listing(self.root)
        for info in scan_dicom_folder(self.root):
            read_dicom_xray(info["path"])
        self.assertEqual(_listing(self.root), before)

    def test_scan_bad_folder(self):
        from monai_jrs.data.dicom import scan_dicom_folder

        with self.assertRaisesRegex(ValueError, "folder"):
            scan_dicom_folder(self.root / "missing")
        with self.assertRaisesRegex(ValueError, "folder"):
            scan_dicom_folder(self.b1)
        empty = self.root.parent / "empty"
        empty.mkdir()
        self.assertEqual(scan_dicom_folder(empty), [])


@SkipIfNoModule("highdicom")
class TestDicomSeg(unittest.TestCase):
    def setUp(self):
        from monai_jrs.data.testing import make_dx_dicom, make_synthetic_xray

        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)
        img, mask = make_synthetic_xray((24, 40))
        mask[BRIGHT] = 1  # an isolated foreground pixel and a hole: the round trip must keep both
        mask[12, 10] = 0
        self.mask = mask
        self.src = make_dx_dicom(self.root / "src" / "img.dcm", img, imager_spacing=(0.2, 0.3))

    def tearDown(self):
        self._tmp.cleanup()

    @parameterized.expand([("BINARY",), ("LABELMAP",)])
    def test_round_trip_exact(self, seg_type):
        import pydicom

        from monai_jrs.data.dicom import read_dicom_seg, write_dicom_seg

        before = _listing(self.src.parent)
        out = write_dicom_seg(self.mask, self.src, self.root / "out" / "seg.dcm", segmentation_type=seg_type)
        self.assertEqual(_listing(self.src.parent), before)  # the source is never modified
        mask, meta = read_dicom_seg(out)
        self.assertEqual(mask.dtype, np.uint8)
        np.testing.assert_array_equal(mask, self.mask)
        self.assertEqual(meta["original_shape"], (24, 40))
        self.assertEqual(meta["segment_numbers"], [1])
        self.assertEqual(meta["source_sop_instance_uid"], pydicom.dcmread(self.src).SOPInstanceUID)
        np.testing.assert_allclose(meta["spacing"], (0.2, 0.3))  # the source has only ImagerPixelSpacing
        ds = pydicom.dcmread(out)
        self.assertEqual(ds.Modality, "SEG")
        labels = {int(item.SegmentNumber): item.SegmentLabel for item in ds.SegmentSequence}
        self.assertEqual(labels[1], "Lung")  # LABELMAP adds segment 0, the background

    def test_round_trip_tensor_and_channel(self):
        import torch

        from monai_jrs.data.dicom import read_dicom_seg, write_dicom_seg

        out = write_dicom_seg(torch.as_tensor(self.mask, dtype=torch.float32)[None], self.src, self.root / "s.dcm")
        np.testing.assert_array_equal(read_dicom_seg(out)[0], self.mask)

    def test_no_overwrite(self):
        from monai_jrs.data.dicom import read_dicom_seg, write_dicom_seg

        out = write_dicom_seg(self.mask, self.src, self.root / "seg.dcm")
        content = out.read_bytes()
        with self.assertRaisesRegex(FileExistsError, "seg.dcm"):
            write_dicom_seg(1 - self.mask, self.src, out)
        self.assertEqual(out.read_bytes(), content)
        write_dicom_seg(1 - self.mask, self.src, out, overwrite=True)
        np.testing.assert_array_equal(read_dicom_seg(out)[0], 1 - self.mask)

    def test_write_errors(self):
        from monai_jrs.data.dicom import write_dicom_seg
        from monai_jrs.data.testing import make_sr_dicom

        sr = make_sr_dicom(self.root / "sr.dcm")
        cases = [
            (self.mask * 2, self.src, "only 0 and 1"),
            (self.mask[:, :-1], self.src, "must equal the source image"),
            (self.mask[None, None], self.src, "shape"),
            (self.mask, sr, "non-image"),
        ]
        for mask, src, msg in cases:
            with self.subTest(msg), self.assertRaisesRegex(ValueError, msg):
                write_dicom_seg(mask, src, self.root / "bad.dcm")
        with self.assertRaisesRegex(ValueError, "segmentation_type"):
            write_dicom_seg(self.mask, self.src, self.root / "bad.dcm", segmentation_type="FRACTIONAL")
        with self.assertRaisesRegex(FileNotFoundError, "missing.dcm"):
            write_dicom_seg(self.mask, self.root / "missing.dcm", self.root / "bad.dcm")
        self.assertFalse((self.root / "bad.dcm").exists())

    def test_read_errors(self):
        from monai_jrs.data.dicom import read_dicom_seg, write_dicom_seg

        seg = write_dicom_seg(self.mask, self.src, self.root / "seg.dcm")
        with self.assertRaisesRegex(ValueError, "expected a DICOM SEG") as cm:
            read_dicom_seg(self.src)
        self.assertIn(str(self.src), str(cm.exception))
        with self.assertRaisesRegex(ValueError, r"segment numbers \[2\]"):
            read_dicom_seg(seg, segment_numbers=[2])
        with self.assertRaisesRegex(ValueError, "is not referenced"):
            read_dicom_seg(seg, source_sop_instance_uid="1.2.3")
        (self.root / "junk.dcm").write_bytes(b"junk" * 50)
        with self.assertRaisesRegex(ValueError, "junk.dcm"):
            read_dicom_seg(self.root / "junk.dcm")

    def test_empty_mask_round_trip(self):
        from monai_jrs.data.dicom import read_dicom_seg, write_dicom_seg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # highdicom notes that it cannot omit every (empty) frame
            out = write_dicom_seg(np.zeros_like(self.mask), self.src, self.root / "empty.dcm")
        mask, _ = read_dicom_seg(out)
        self.assertEqual(mask.shape, self.mask.shape)
        self.assertEqual(int(mask.sum()), 0)


if __name__ == "__main__":
    unittest.main()
