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
"""Tests of :mod:`monai_jrs.data.io`: images and masks from PNG/JPEG/TIFF, NIfTI, NumPy, DICOM and DICOM SEG.

The MONAI transforms around these loaders are tested in ``tests/transforms/io``.

All files are generated in temporary folders; nothing binary is committed.
"""

from __future__ import annotations

import math
import tempfile
import unittest
import warnings
from pathlib import Path

import numpy as np
import torch
from parameterized import parameterized
from PIL import Image

from monai_jrs.data.io import from_collatable_meta, load_mask, load_xray, save_nifti, to_collatable_meta
from monai_jrs.transforms import LoadXRayd
from tests.test_utils import SkipIfNoModule

# (6, 11) with one bright pixel at (2, 7): a transpose changes the shape, a vertical flip moves the pixel to row 3
# and a horizontal flip to column 3.
SHAPE = (6, 11)
BRIGHT = (2, 7)


def _asym(dtype=np.uint16, peak: int = 4000) -> np.ndarray:
    a = (np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) % 7 * 10).astype(dtype)
    a[BRIGHT] = peak
    return a


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


class _TmpCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def _nifti(self, name, array, affine=None):
        import nibabel as nib

        p = self.root / name
        nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(p))
        return p


class TestLoadXRayFormats(_TmpCase):
    @parameterized.expand(
        [
            ("png8", "a.png", np.uint8, 250),
            ("png16", "a.png", np.uint16, 40000),
            ("tiff16", "a.tif", np.uint16, 40000),
            ("bmp8", "a.bmp", np.uint8, 250),
        ]
    )
    def test_pil_grey_full_depth_and_orientation(self, _, name, dtype, peak):
        a = _asym(dtype, peak)
        Image.fromarray(a).save(self.root / name)
        img, meta = load_xray(self.root / name, normalize=False)
        self.assertEqual(tuple(img.shape), (1, *SHAPE))
        self.assertEqual(img.dtype, torch.float32)
        np.testing.assert_array_equal(img[0].numpy(), a)  # 16-bit values kept, not reduced to 8 bits
        self.assertEqual(meta["dtype_in"], np.dtype(dtype).name)
        self.assertEqual((meta["format"], meta["original_shape"], meta["spacing"]), ("pil", SHAPE, None))

    @parameterized.expand([("RGB",), ("RGBA",), ("P",), ("LA",)])
    def test_colour_to_grey(self, mode):
        rgb = np.zeros((*SHAPE, 3), np.uint8)
        rgb[..., 0] = _asym(np.uint8, 250)
        rgb[0, 0] = (10, 100, 30)
        rgb[BRIGHT] = (250, 250, 250)
        im = Image.fromarray(rgb)
        if mode == "LA":
            im = Image.fromarray(rgb[..., 0]).convert("LA")
        elif mode != "RGB":
            im = im.convert(mode)
        im.save(self.root / "c.png")
        img, meta = load_xray(self.root / "c.png", normalize=False)
        self.assertEqual(tuple(img.shape), (1, *SHAPE))
        self.assertEqual(meta["dtype_in"], "uint8")
        if mode == "LA":
            expected = rgb[..., 0].astype(np.float64)
        else:
            back = np.asarray(im.convert("RGB"), dtype=np.float64)  # palette quantisation included
            expected = 0.299 * back[..., 0] + 0.587 * back[..., 1] + 0.114 * back[..., 2]  # ITU-R BT.601
        np.testing.assert_allclose(img[0].numpy(), expected, rtol=1e-6)
        self.assertEqual(np.unravel_index(img[0].numpy().argmax(), SHAPE), BRIGHT)

    def test_jpeg(self):
        Image.fromarray(_asym(np.uint8, 250)).save(self.root / "a.jpeg", quality=95)
        img, meta = load_xray(self.root / "a.jpeg")
        self.assertEqual(tuple(img.shape), (1, *SHAPE))
        self.assertEqual(np.unravel_index(img[0].numpy().argmax(), SHAPE), BRIGHT)
        self.assertEqual(meta["format"], "pil")

    def test_png_by_signature_without_extension_is_not_dicom(self):
        Image.fromarray(_asym(np.uint8, 250)).save(self.root / "a.png")
        (self.root / "a.png").rename(self.root / "image.data")
        img, meta = load_xray(self.root / "image.data", normalize=False)
        np.testing.assert_array_equal(img[0].numpy(), _asym(np.uint8, 250))
        self.assertEqual(meta["format"], "pil")

    def test_nifti_rows_cols_and_spacing(self):
        a = _asym().astype(np.float32)
        p = save_nifti(a, self.root / "a.nii.gz", spacing=(0.2, 0.5))
        img, meta = load_xray(p, normalize=False)
        np.testing.assert_array_equal(img[0].numpy(), a)
        self.assertEqual((meta["spacing"], meta["spacing_source"]), ((0.2, 0.5), "NIfTI header"))
        # a NIfTI written by other tools with the array stored as (cols, rows)
        q = self._nifti("t.nii", np.ascontiguousarray(a.T[:, :, None]), np.diag([0.5, 0.2, 1.0, 1.0]))
        img_t, meta_t = load_xray(q, normalize=False, nifti_layout="cols_rows")
        np.testing.assert_array_equal(img_t[0].numpy(), a)
        self.assertEqual(meta_t["spacing"], (0.2, 0.5))
        with self.assertRaisesRegex(ValueError, "nifti_layout"):
            load_xray(q, nifti_layout="xy")

    def test_nifti_without_spacing(self):
        p = self._nifti("plain.nii.gz", _asym().astype(np.int16))
        img, meta = load_xray(p, normalize=False)
        np.testing.assert_array_equal(img[0].numpy(), _asym())
        self.assertIsNone(meta["spacing"])

    @parameterized.expand([("hw", SHAPE), ("1hw", (1, *SHAPE))])
    def test_numpy(self, _, stored_shape):
        np.save(self.root / "a.npy", _asym().astype(np.float32).reshape(stored_shape))
        img, meta = load_xray(self.root / "a.npy", normalize=False)
        np.testing.assert_array_equal(img[0].numpy(), _asym())
        self.assertEqual((meta["format"], meta["dtype_in"]), ("numpy", "float32"))

    @SkipIfNoModule("pydicom")
    def test_dicom_file_and_folder(self):
        from monai_jrs.data.testing import make_dx_dicom, make_sr_dicom

        p = make_dx_dicom(self.root / "dcm" / "img.dcm", _asym(), imager_spacing=(0.15, 0.16))
        make_sr_dicom(self.root / "dcm" / "report.dcm")
        img, meta = load_xray(p, normalize=False)
        np.testing.assert_array_equal(img[0].numpy(), _asym())
        self.assertEqual((meta["spacing"], meta["spacing_source"]), ((0.15, 0.16), "ImagerPixelSpacing"))
        img_dir, meta_dir = load_xray(self.root / "dcm", normalize=False)  # one image (+ an SR) in the folder
        np.testing.assert_array_equal(img_dir.numpy(), img.numpy())
        self.assertEqual(meta_dir["filename"], str(p))

    @SkipIfNoModule("pydicom")
    def test_dicom_monochrome1_normalised(self):
        from monai_jrs.data.testing import make_dx_dicom

        a = _asym()
        m2, _ = load_xray(make_dx_dicom(self.root / "m2.dcm", a))
        m1, meta = load_xray(make_dx_dicom(self.root / "m1.dcm", a, photometric="MONOCHROME1"))
        self.assertEqual(meta["photometric"], "MONOCHROME1")
        torch.testing.assert_close(m1, 1.0 - m2, atol=1e-6, rtol=0)

    @SkipIfNoModule("pydicom")
    def test_dicom_missing_spacing_is_none(self):
        from monai_jrs.data.testing import make_dx_dicom

        p = make_dx_dicom(self.root / "ns.dcm", _asym(), imager_spacing=None)
        with self.assertWarnsRegex(UserWarning, "distances will be in pixels"):
            img, meta = load_xray(p)
        self.assertIsNone(meta["spacing"])
        self.assertEqual(tuple(img.shape), (1, *SHAPE))

    def test_normalised_range(self):
        np.save(self.root / "a.npy", _asym().astype(np.float64) * 3.0 - 50.0)
        img, _ = load_xray(self.root / "a.npy")
        self.assertAlmostEqual(float(img.min()), 0.0)
        self.assertAlmostEqual(float(img.max()), 1.0)
        self.assertEqual(np.unravel_index(img[0].numpy().argmax(), SHAPE), BRIGHT)


class TestLoadXRayErrors(_TmpCase):
    def _check(self, path, exc=ValueError, msg=""):
        with self.assertRaisesRegex(exc, msg) as cm:
            load_xray(path)
        self.assertIn(str(path), str(cm.exception))

    def test_missing(self):
        self._check(self.root / "missing.png", FileNotFoundError, "no such file")

    @parameterized.expand([("e.png",), ("e.nii.gz",), ("e.npy",), ("e.dcm",), ("e",)])
    def test_empty_file(self, name):
        (self.root / name).write_bytes(b"")
        self._check(self.root / name, ValueError, "empty")

    @parameterized.expand(
        [
            ("c.png", b"\x89PNG\r\n\x1a\n" + b"0" * 40, "cannot read the image"),
            ("c.jpg", b"\xff\xd8\xff" + b"0" * 40, "cannot read the image"),
            ("c.nii.gz", b"not gzip" * 40, "cannot read NIfTI"),
            ("c.nii", b"garbage!" * 60, "cannot read NIfTI"),
            ("c.npy", b"\x93NUMPY garbage", "cannot read NumPy"),
            ("c.dcm", b"garbage!" * 60, "not a readable DICOM"),
            ("noext", b"garbage!" * 60, "not a readable DICOM"),
        ]
    )
    def test_corrupt(self, name, content, msg):
        (self.root / name).write_bytes(content)
        self._check(self.root / name, ValueError, msg)

    def test_unsupported_extension(self):
        (self.root / "notes.txt").write_text("hello")
        self._check(self.root / "notes.txt", ValueError, "unsupported file type")
        Image.fromarray(_asym(np.uint8, 250)).save(self.root / "a.gif")
        self._check(self.root / "a.gif", ValueError, "unsupported file type")

    def test_non_numeric_and_bad_shape_numpy(self):
        np.save(self.root / "s.npy", np.array([["a", "b"], ["c", "d"]]))
        self._check(self.root / "s.npy", ValueError, "numeric")
        np.save(self.root / "o.npy", np.array([{}], dtype=object), allow_pickle=True)
        self._check(self.root / "o.npy", ValueError, "cannot read NumPy")
        np.save(self.root / "3d.npy", np.zeros((2, 4, 5)))
        self._check(self.root / "3d.npy", ValueError, "shape")
        self._nifti("3d.nii.gz", np.zeros((4, 5, 3), np.float32))
        self._check(self.root / "3d.nii.gz", ValueError, "2-D")

    @parameterized.expand([("nan", math.nan), ("inf", math.inf)])
    def test_non_finite(self, _, value):
        a = _asym().astype(np.float32)
        a[1, 1] = value
        np.save(self.root / "n.npy", a)
        self._check(self.root / "n.npy", ValueError, "NaN or infinite")
        save_nifti(a, self.root / "n.nii.gz")
        self._check(self.root / "n.nii.gz", ValueError, "NaN or infinite")

    def test_constant_image(self):
        np.save(self.root / "c.npy", np.full(SHAPE, 7.0))
        self._check(self.root / "c.npy", ValueError, "constant")
        img, _ = load_xray(self.root / "c.npy", normalize=False)  # only normalisation needs contrast
        self.assertTrue(torch.all(img == 7.0))

    def test_multiframe_tiff(self):
        frames = [Image.fromarray(_asym(np.uint8, 250)), Image.fromarray(_asym(np.uint8, 200))]
        frames[0].save(self.root / "m.tif", save_all=True, append_images=frames[1:])
        self._check(self.root / "m.tif", ValueError, "multi-frame")

    @SkipIfNoModule("pydicom")
    def test_non_image_dicom(self):
        from monai_jrs.data.testing import make_sr_dicom

        self._check(make_sr_dicom(self.root / "sr.dcm"), ValueError, "non-image DICOM")

    @SkipIfNoModule("pydicom")
    def test_folders(self):
        from monai_jrs.data.testing import make_dx_dicom, make_sr_dicom

        empty = self.root / "empty"
        empty.mkdir()
        self._check(empty, ValueError, "no single-frame DICOM image")
        make_sr_dicom(self.root / "sr_only" / "sr.dcm")
        self._check(self.root / "sr_only", ValueError, "no single-frame DICOM image")
        many = self.root / "many"
        make_dx_dicom(many / "a.dcm", _asym(), series_number=1)
        make_dx_dicom(many / "b.dcm", _asym(), series_number=2)
        self._check(many, ValueError, "holds 2 DICOM images")


class TestLoadMask(_TmpCase):
    def setUp(self):
        super().setUp()
        self.mask = np.zeros(SHAPE, np.uint8)
        self.mask[1:4, 5:9] = 1
        self.mask[BRIGHT] = 0  # a hole at the asymmetric position

    @parameterized.expand([("png", "m.png"), ("bmp", "m.bmp"), ("tif", "m.tif")])
    def test_pil_mask_0_255(self, _, name):
        Image.fromarray(self.mask * 255).save(self.root / name)
        m, meta = load_mask(self.root / name)
        self.assertEqual(m.dtype, torch.float32)
        np.testing.assert_array_equal(m[0].numpy(), self.mask)
        self.assertAlmostEqual(meta["foreground_fraction"], self.mask.mean(), places=6)

    def test_bilevel_png(self):
        Image.fromarray(self.mask.astype(bool)).save(self.root / "m.png")
        np.testing.assert_array_equal(load_mask(self.root / "m.png")[0][0].numpy(), self.mask)

    def test_palette_labels_and_rgb(self):
        labels = self.mask.copy()
        labels[4:6, 0:3] = 2  # e.g. a second structure
        im = Image.fromarray(labels, mode="L").convert("P")
        im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (253 * 3))
        im.save(self.root / "p.png")
        np.testing.assert_array_equal(load_mask(self.root / "p.png")[0][0].numpy(), labels > 0)
        np.testing.assert_array_equal(load_mask(self.root / "p.png", labels=[2])[0][0].numpy(), labels == 2)
        rgb = np.zeros((*SHAPE, 3), np.uint8)
        rgb[self.mask > 0] = (0, 0, 255)
        Image.fromarray(rgb).save(self.root / "rgb.png")
        np.testing.assert_array_equal(load_mask(self.root / "rgb.png")[0][0].numpy(), self.mask)

    def test_jpeg_mask_thresholded_with_warning(self):
        Image.fromarray(self.mask * 255).save(self.root / "m.jpg", quality=95)
        with self.assertWarnsRegex(UserWarning, "lossy"):
            m, _ = load_mask(self.root / "m.jpg")
        self.assertTrue(set(np.unique(m.numpy())) <= {0.0, 1.0})
        self.assertEqual(float(m[0][BRIGHT]), 0.0)
        self.assertEqual(float(m[0, 1, 5]), 1.0)

    def test_nifti_and_numpy(self):
        save_nifti(self.mask, self.root / "m.nii.gz", spacing=(0.2, 0.3))
        m, meta = load_mask(self.root / "m.nii.gz")
        np.testing.assert_array_equal(m[0].numpy(), self.mask)
        self.assertEqual(meta["spacing"], (0.2, 0.3))
        np.save(self.root / "b.npy", self.mask.astype(bool)[None])
        np.testing.assert_array_equal(load_mask(self.root / "b.npy")[0][0].numpy(), self.mask)
        labels = self.mask * 3
        np.save(self.root / "l.npy", labels)
        np.testing.assert_array_equal(load_mask(self.root / "l.npy", labels=[3])[0][0].numpy(), self.mask)

    def test_empty_mask(self):
        np.save(self.root / "e.npy", np.zeros(SHAPE, np.uint8))
        with self.assertRaisesRegex(ValueError, "empty") as cm:
            load_mask(self.root / "e.npy")
        self.assertIn("e.npy", str(cm.exception))
        m, meta = load_mask(self.root / "e.npy", allow_empty=True)
        self.assertEqual(float(m.sum()), 0.0)
        self.assertEqual(meta["foreground_fraction"], 0.0)
        np.save(self.root / "l.npy", self.mask)
        with self.assertRaisesRegex(ValueError, r"label in \[5\]"):
            load_mask(self.root / "l.npy", labels=[5])

    def test_shape_mismatch_names_both_files(self):
        np.save(self.root / "img.npy", _asym().astype(np.float32))
        _, ref = load_xray(self.root / "img.npy")
        np.save(self.root / "m.npy", self.mask.T)
        with self.assertRaisesRegex(ValueError, "does not match") as cm:
            load_mask(self.root / "m.npy", reference_meta=ref)
        self.assertIn(str(self.root / "m.npy"), str(cm.exception))
        self.assertIn(str(self.root / "img.npy"), str(cm.exception))

    def test_bad_mask_files(self):
        a = self.mask.astype(np.float32)
        a[0, 0] = math.nan
        np.save(self.root / "nan.npy", a)
        (self.root / "empty.png").write_bytes(b"")
        (self.root / "m.txt").write_text("0 1")
        save_nifti(np.zeros((2, *SHAPE), np.float32), self.root / "ddf.nii.gz")
        for name, exc, msg in [
            ("nan.npy", ValueError, "NaN"),
            ("empty.png", ValueError, "empty"),
            ("m.txt", ValueError, "unsupported"),
            ("missing.png", FileNotFoundError, "no such file"),
            ("ddf.nii.gz", ValueError, "2-D"),
        ]:
            with self.subTest(name), self.assertRaisesRegex(exc, msg) as cm:
                load_mask(self.root / name)
            self.assertIn(name, str(cm.exception))
        with self.assertRaisesRegex(ValueError, "folder"):
            load_mask(self.root)

    @SkipIfNoModule("pydicom")
    def test_spacing_from_reference_and_mismatch_warning(self):
        from monai_jrs.data.testing import make_dx_dicom

        _, ref = load_xray(make_dx_dicom(self.root / "img.dcm", _asym(), imager_spacing=(0.14, 0.15)))
        Image.fromarray(self.mask * 255).save(self.root / "m.png")
        _, meta = load_mask(self.root / "m.png", reference_meta=ref)
        self.assertEqual((meta["spacing"], meta["spacing_source"]), ((0.14, 0.15), "reference image"))
        self.assertEqual(meta["reference_filename"], str(self.root / "img.dcm"))
        save_nifti(self.mask, self.root / "m.nii.gz", spacing=(0.3, 0.3))
        with self.assertWarnsRegex(UserWarning, "differs from image spacing"):
            load_mask(self.root / "m.nii.gz", reference_meta=ref)

    @SkipIfNoModule("highdicom")
    def test_dicom_seg_round_trip(self):
        from monai_jrs.data.dicom import write_dicom_seg
        from monai_jrs.data.testing import make_dx_dicom

        src = make_dx_dicom(self.root / "img.dcm", _asym(), imager_spacing=(0.14, 0.15))
        _, ref = load_xray(src)
        seg = write_dicom_seg(self.mask, src, self.root / "seg.dcm")
        m, meta = load_mask(seg, reference_meta=ref)
        np.testing.assert_array_equal(m[0].numpy(), self.mask)
        self.assertEqual(meta["format"], "dicom_seg")
        self.assertEqual(meta["source_sop_instance_uid"], ref["SOPInstanceUID"])
        np.testing.assert_allclose(meta["spacing"], (0.14, 0.15))
        # a SEG of another image of the same size: usable, with a warning
        other = make_dx_dicom(self.root / "other.dcm", _asym())
        _, ref_other = load_xray(other)
        with self.assertWarnsRegex(UserWarning, "does not reference"):
            m2, _ = load_mask(seg, reference_meta=ref_other)
        np.testing.assert_array_equal(m2[0].numpy(), self.mask)
        with self.assertRaisesRegex(ValueError, "expected a DICOM SEG"):
            load_mask(src)

    @parameterized.expand(
        [
            ("both_tags", (0.14, 0.14), (0.1, 0.1), (0.14, 0.14)),  # the SEG stores PixelSpacing
            ("no_spacing", None, None, None),  # the SEG stores a 1 mm placeholder
        ]
    )
    @SkipIfNoModule("highdicom")
    def test_dicom_seg_spacing_follows_image(self, _, imager, pixel, expected):
        from monai_jrs.data.dicom import read_dicom_seg, write_dicom_seg
        from monai_jrs.data.testing import make_dx_dicom

        src = make_dx_dicom(self.root / "img.dcm", _asym(), imager_spacing=imager, pixel_spacing=pixel)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, ref = load_xray(src)
        seg = write_dicom_seg(self.mask, src, self.root / "seg.dcm")
        self.assertNotEqual(read_dicom_seg(seg)[1]["spacing"], expected)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "mask spacing differs" warning for the image's own SEG
            _, meta = load_mask(seg, reference_meta=ref)
        self.assertEqual(meta["spacing"], expected)


class TestSaveNifti(_TmpCase):
    def test_round_trip_and_ddf_layout(self):
        import nibabel as nib

        ddf = np.stack([np.full(SHAPE, 1.5, np.float32), np.full(SHAPE, -2.0, np.float32)])
        p = save_nifti(torch.as_tensor(ddf), self.root / "sub" / "ddf.nii.gz", spacing=(0.2, 0.4))
        img = nib.load(str(p))
        self.assertEqual(img.shape, (*SHAPE, 1, 1, 2))
        self.assertEqual(img.header.get_intent()[0], "vector")
        np.testing.assert_array_equal(np.moveaxis(np.asarray(img.dataobj)[:, :, 0, 0], -1, 0), ddf)
        np.testing.assert_allclose(img.affine, np.diag([0.2, 0.4, 1.0, 1.0]))
        q = save_nifti(np.ones((1, *SHAPE), bool), self.root / "m.nii")
        self.assertEqual(nib.load(str(q)).get_data_dtype(), np.uint8)

    def test_never_overwrites_unless_asked(self):
        p = save_nifti(_asym(), self.root / "a.nii.gz")
        content = p.read_bytes()
        with self.assertRaisesRegex(FileExistsError, "a.nii.gz"):
            save_nifti(_asym() * 0 + 1, p)
        self.assertEqual(p.read_bytes(), content)
        save_nifti(_asym() + 1, p, overwrite=True)
        np.testing.assert_array_equal(load_xray(p, normalize=False)[0][0].numpy(), _asym() + 1)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, ".nii"):
            save_nifti(_asym(), self.root / "a.png")
        with self.assertRaisesRegex(ValueError, "spacing"):
            save_nifti(_asym(), self.root / "a.nii", spacing=(0.0, 1.0))
        with self.assertRaisesRegex(ValueError, "shape"):
            save_nifti(np.zeros((1, 2, 3, 4)), self.root / "a.nii")
        self.assertFalse((self.root / "a.nii").exists())


class TestCollatableMeta(unittest.TestCase):
    def test_collatable_meta_round_trip(self):
        meta = {"spacing": None, "original_shape": (6, 11), "PatientID": None, "filename": "a.png"}
        out = to_collatable_meta(meta)
        self.assertEqual(out["original_shape"], [6, 11])
        self.assertEqual(out["PatientID"], "")
        self.assertEqual(from_collatable_meta(out), meta)
        batched = {"spacing": torch.tensor([0.2, 0.3], dtype=torch.float64), "original_shape": torch.tensor([6, 11])}
        back = from_collatable_meta(batched)
        self.assertEqual((back["spacing"], back["original_shape"]), ((0.2, 0.3), (6, 11)))


class TestLoadingNeverWrites(_TmpCase):
    @SkipIfNoModule("highdicom")
    def test_listing_unchanged(self):
        from monai_jrs.data.dicom import write_dicom_seg
        from monai_jrs.data.testing import make_dx_dicom

        folder = self.root / "in"
        folder.mkdir()
        a = _asym()
        mask = (a > 30).astype(np.uint8)
        Image.fromarray(a).save(folder / "a.png")
        Image.fromarray(mask * 255).save(folder / "m.png")
        np.save(folder / "a.npy", a)
        save_nifti(a, folder / "a.nii.gz", spacing=(0.2, 0.2))
        src = make_dx_dicom(folder / "dcm" / "a.dcm", a)
        write_dicom_seg(mask, src, folder / "seg" / "seg.dcm")
        before = _listing(folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in ("a.png", "a.npy", "a.nii.gz", "dcm/a.dcm", "dcm"):
                _, meta = load_xray(folder / name)
                load_mask(folder / "m.png", reference_meta=meta)
            load_mask(folder / "seg" / "seg.dcm")
            LoadXRayd("image")({"image": folder / "a.png"})
        self.assertEqual(_listing(folder), before)


if __name__ == "__main__":
    unittest.main()
