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
"""Tests of :func:`monai_jrs.data.dicom.read_dicom_seg` with DICOM SEGs of other writers than :func:`write_dicom_seg`.

* dcmqi ``itkimage2segimage`` (the converter of 3D Slicer's DICOM SEG export and MONAI Label's DICOMweb datastore),
  run on a synthetic DX; skipped when the binary is not installed (``pip install dcmqi``).
* highdicom, called directly: BINARY, LABELMAP and FRACTIONAL, several segments, an empty segment.
* SEGs built with pydicom whose frames carry no per-frame source reference, and broken SEGs (error messages).

Every file is generated in a temporary folder; the read mask must equal the written one exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import subprocess
import unittest
import warnings
from pathlib import Path

import numpy as np
from parameterized import parameterized

from tests.data.test_io import _TmpCase
from tests.test_utils import SkipIfNoModule

# (rows, cols): not square, so a transposed mask fails; 47 x 63 frames are not byte-aligned at 1 bit per pixel.
SHAPE = (48, 64)
ODD_SHAPE = (47, 63)
SPACING = (0.2, 0.3)  # (row_mm, col_mm): different, so a swapped order is caught
# on PATH, or beside this interpreter (a virtual environment that is not activated)
DCMQI = shutil.which("itkimage2segimage") or shutil.which("itkimage2segimage", path=os.path.dirname(sys.executable))
SEG_UID = "1.2.840.10008.5.1.4.1.1.66.4"
SC_UID = "1.2.840.10008.5.1.4.1.1.7"


def _ellipse(shape=SHAPE, center=(20, 18), axes=(12, 12)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((((yy - center[0]) / axes[0]) ** 2 + ((xx - center[1]) / axes[1]) ** 2) <= 1).astype(np.uint8)


def _lungs(shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping ellipses; segment 1 has an isolated pixel near the top-right corner (flip detector)."""
    left = _ellipse(shape, (20, 18), (12, 12))
    right = _ellipse(shape, (24, 40), (14, 12))
    left[2, shape[1] - 4] = 1
    return left, right


def _source(folder: Path, mask: np.ndarray, ipp=None, iop=None, modality="DX") -> Path:
    """A DX/CR (or, ``modality="SC"``, Secondary Capture) of ``mask`` with optional ImagePosition/Orientation."""
    import pydicom

    from monai_jrs.data.testing import make_dx_dicom

    pixels = mask.astype(np.uint16) * 1000 + 500
    kind = "CR" if modality == "CR" else "DX"
    path = make_dx_dicom(folder / "img.dcm", pixels, imager_spacing=SPACING, modality=kind)
    if ipp is None and iop is None and modality != "SC":
        return path
    ds = pydicom.dcmread(path)
    if ipp is not None:
        ds.ImagePositionPatient = [f"{v:g}" for v in ipp]
    if iop is not None:
        ds.ImageOrientationPatient = [f"{v:g}" for v in iop]
    if modality == "SC":
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SC_UID
        ds.Modality = "OT"
        ds.ConversionType = "WSD"
    ds.save_as(path)
    return path


def _label_like(label: np.ndarray, image: Path, out: Path) -> Path:
    """The label on the geometry ITK reads from ``image``, as ``monai_jrs.monailabel.infer.write_label_like`` does."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image))
    reader.ReadImageInformation()
    img = sitk.GetImageFromArray(label.astype(np.uint8)[None])
    img.SetSpacing(reader.GetSpacing())
    img.SetOrigin(reader.GetOrigin())
    img.SetDirection(reader.GetDirection())
    sitk.WriteImage(img, str(out), useCompression=True)
    return out


def _dcmqi_metadata(path: Path, label_ids=(1,)) -> Path:
    """A dcmqi segmentation JSON with one segment per label ID (SCT Anatomical Structure / Lung)."""
    segments = [
        {
            "labelID": int(i),
            "SegmentDescription": f"Lung {i}",
            "SegmentAlgorithmType": "MANUAL",
            "SegmentedPropertyCategoryCodeSequence": {
                "CodeValue": "123037004", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Anatomical Structure"
            },
            "SegmentedPropertyTypeCodeSequence": {
                "CodeValue": "39607008", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Lung"
            },
            "recommendedDisplayRGBValue": [128, 174, 128],
        }
        for i in label_ids
    ]
    meta = {
        "ContentCreatorName": "Reader1",
        "ClinicalTrialSeriesID": "Session1",
        "ClinicalTrialTimePointID": "1",
        "SeriesDescription": "Lung segmentation",
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "BodyPartExamined": "CHEST",
        "segmentAttributes": [segments],
    }
    path.write_text(json.dumps(meta))
    return path


def _run_dcmqi(label_file: Path, dicom_dir: Path, metadata: Path, out: Path, *extra: str):
    cmd = [
        DCMQI, "--inputImageList", str(label_file), "--inputDICOMDirectory", str(dicom_dir),
        "--inputMetadata", str(metadata), "--outputDICOM", str(out), *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _hand_seg(
    path: Path,
    frames: np.ndarray,
    frame_segments,
    n_segments: int = 2,
    seg_type: str = "BINARY",
    sources=("1.2.826.0.1.3680043.8.498.1",),
    max_fractional: int = 100,
    number_of_frames: int | None = None,
    truncate: int = 0,
    with_identification: bool = True,
) -> Path:
    """A SEG built with pydicom, without per-frame source references (no DerivationImageSequence).

    ``frames`` ``(F, H, W)``; ``frame_segments[i]`` is the ReferencedSegmentNumber of frame ``i``.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels import pack_bits
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = np.asarray(frames)
    n, rows, cols = frames.shape
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SEG_UID
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SEG_UID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SEG"
    ds.Manufacturer = "hand"
    ds.SoftwareVersions = ["1", "2"]
    ds.PatientID = "JRS0001"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SegmentationType = seg_type
    if seg_type == "FRACTIONAL":
        ds.SegmentationFractionalType = "PROBABILITY"
        ds.MaximumFractionalValue = max_fractional
    segs = []
    for i in range(1, n_segments + 1):
        item = Dataset()
        item.SegmentNumber = i
        item.SegmentLabel = f"s{i}"
        item.SegmentAlgorithmType = "MANUAL"
        segs.append(item)
    ds.SegmentSequence = Sequence(segs)
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    refs = []
    for uid in sources:
        inst = Dataset()
        inst.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        inst.ReferencedSOPInstanceUID = uid
        refs.append(inst)
    series.ReferencedInstanceSequence = Sequence(refs)
    ds.ReferencedSeriesSequence = Sequence([series] if sources else [])
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [f"{s:g}" for s in SPACING]
    measures.SliceThickness = "1"
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for s in frame_segments:
        fg = Dataset()
        if with_identification:
            ident = Dataset()
            ident.ReferencedSegmentNumber = int(s)
            fg.SegmentIdentificationSequence = Sequence([ident])
        per_frame.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.NumberOfFrames = n if number_of_frames is None else number_of_frames
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    if seg_type == "BINARY":
        ds.BitsAllocated = ds.BitsStored = 1
        ds.HighBit = 0
        data = pack_bits(frames.astype(np.uint8).ravel())
    else:
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        data = frames.astype(np.uint8).tobytes()
    data = data[: len(data) - truncate] if truncate else data
    ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path




@SkipIfNoModule("highdicom")
@SkipIfNoModule("SimpleITK")
@unittest.skipIf(DCMQI is None, "dcmqi's itkimage2segimage is not on PATH (pip install dcmqi)")
class TestDcmqiSeg(_TmpCase):
    """Real dcmqi SEGs of a DX/CR/SC: dcmqi needs ImagePositionPatient in the source (see read_dicom_seg)."""

    def _dcmqi(self, label, src, label_ids=(1,), extra=(), check=True):
        lab = _label_like(label, src, self.root / "label.nii.gz")
        meta = _dcmqi_metadata(self.root / "meta.json", label_ids)
        out = self.root / "seg" / "seg.dcm"
        out.parent.mkdir(exist_ok=True)
        res = _run_dcmqi(lab, src.parent, meta, out, *extra)
        if check:
            self.assertEqual(res.returncode, 0, f"itkimage2segimage failed:\n{res.stdout}\n{res.stderr}")
        return out, res

    @parameterized.expand(
        [
            ("dx_ipp", "DX", (0, 0, 0), None, (), SPACING),
            ("dx_ipp_iop_coronal", "DX", (-100.5, 20, 200), (1, 0, 0, 0, 0, -1), (), SPACING),
            ("cr_ipp", "CR", (0, 0, 0), (1, 0, 0, 0, 1, 0), (), SPACING),
            # ITK ignores ImagerPixelSpacing in a Secondary Capture: dcmqi stores its 1 mm
            ("sc_ipp", "SC", (3, 4, 0), None, (), (1.0, 1.0)),
            ("dx_labelmap", "DX", (0, 0, 0), None, ("--segmentationType", "labelmap"), SPACING),
        ]
    )
    def test_single_segment_exact(self, _, modality, ipp, iop, extra, spacing):
        import pydicom

        from monai_jrs.data.dicom import read_dicom_seg

        mask, _ = _lungs()
        src = _source(self.root / "src", mask, ipp=ipp, iop=iop, modality=modality)
        out, _ = self._dcmqi(mask, src, extra=extra)
        read, meta = read_dicom_seg(out)
        self.assertEqual(read.dtype, np.uint8)
        np.testing.assert_array_equal(read, mask)
        self.assertEqual(meta["segment_numbers"], [1])
        self.assertEqual(meta["source_sop_instance_uid"], pydicom.dcmread(src).SOPInstanceUID)
        np.testing.assert_allclose(meta["spacing"], spacing)
        self.assertIn("dcmqi", meta["writer"])
        self.assertEqual(meta["original_shape"], SHAPE)

    @parameterized.expand([("binary", ()), ("labelmap", ("--segmentationType", "labelmap"))])
    def test_two_segments(self, _, extra):
        from monai_jrs.data.dicom import read_dicom_seg

        left, right = _lungs()
        label = left + 2 * right * (1 - left)  # one label image, labels 1 and 2 (a label map cannot overlap)
        src = _source(self.root / "src", label > 0, ipp=(0, 0, 0))
        out, _ = self._dcmqi(label, src, label_ids=(1, 2), extra=extra)
        read, meta = read_dicom_seg(out)
        np.testing.assert_array_equal(read, (label > 0).astype(np.uint8))
        self.assertEqual(meta["segment_numbers"], [1, 2])
        for n in (1, 2):
            with self.subTest(segment=n):
                np.testing.assert_array_equal(read_dicom_seg(out, segment_numbers=[n])[0], label == n)
        with self.assertRaisesRegex(ValueError, r"segment numbers \[3\] requested, the SEG has segments \[1, 2\]"):
            read_dicom_seg(out, segment_numbers=[3])

    def test_load_mask_with_reference(self):
        from monai_jrs.data.io import load_mask, load_xray

        mask, _ = _lungs()
        src = _source(self.root / "src", mask, ipp=(0, 0, 0))
        out, _ = self._dcmqi(mask, src)
        _, ref = load_xray(src)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the SEG references this image: no warning
            m, meta = load_mask(out, reference_meta=ref)
        self.assertEqual(tuple(m.shape), (1, *SHAPE))
        np.testing.assert_array_equal(m[0].numpy(), mask.astype(np.float32))
        self.assertEqual(meta["format"], "dicom_seg")
        self.assertEqual(meta["spacing"], tuple(ref["spacing"]))

    def test_plain_dx_without_image_position(self):
        """A DX without ImagePositionPatient: dcmqi 1.5.7 refuses it ("Tag not found")."""
        from monai_jrs.data.dicom import read_dicom_seg

        mask, _ = _lungs()
        src = _source(self.root / "src", mask)
        out, res = self._dcmqi(mask, src, check=False)
        if res.returncode != 0:
            self.assertIn("Tag not found", res.stdout + res.stderr)
            self.assertFalse(out.exists())
        else:  # a later dcmqi that accepts it must still give the mask back
            np.testing.assert_array_equal(read_dicom_seg(out)[0], mask)

    def test_unreferenced_seg(self):
        """``--referencesGeometryCheck 0`` accepts a plain DX but writes a SEG that references no image."""
        import pydicom

        from monai_jrs.data.dicom import read_dicom_seg
        from monai_jrs.data.io import load_mask, load_xray

        mask, _ = _lungs()
        src = _source(self.root / "src", mask)
        out, _ = self._dcmqi(mask, src, extra=("--referencesGeometryCheck", "0"))
        ds = pydicom.dcmread(out)
        self.assertNotIn("ReferencedSeriesSequence", ds)
        self.assertNotIn("DerivationImageSequence", ds.PerFrameFunctionalGroupsSequence[0])
        with self.assertLogs("monai_jrs.data.dicom", "WARNING") as logs:
            read, meta = read_dicom_seg(out)
        self.assertIn("references no source image", "\n".join(logs.output))
        np.testing.assert_array_equal(read, mask)
        self.assertIsNone(meta["source_sop_instance_uid"])
        with self.assertRaisesRegex(ValueError, r"is not referenced; the SEG references \[\]"):
            read_dicom_seg(out, source_sop_instance_uid=ds.StudyInstanceUID)
        _, ref = load_xray(src)
        with self.assertWarnsRegex(UserWarning, "does not reference the image"), self.assertLogs(
            "monai_jrs.data.dicom", "WARNING"
        ):
            m, _ = load_mask(out, reference_meta=ref)
        np.testing.assert_array_equal(m[0].numpy(), mask.astype(np.float32))


@SkipIfNoModule("highdicom")
class TestHighdicomSeg(_TmpCase):
    """SEGs written with highdicom directly (all three segmentation types), with and without per-frame references."""

    def setUp(self):
        super().setUp()
        import pydicom

        self.left, self.right = _lungs()
        self.src_path = _source(self.root / "src", np.maximum(self.left, self.right))
        self.src = pydicom.dcmread(self.src_path)

    def _write(self, pixel_array, seg_type, n_segments, name="seg.dcm", **kwargs) -> Path:
        import highdicom as hd
        from pydicom.sr.codedict import codes

        descriptions = [
            hd.seg.SegmentDescription(
                segment_number=i,
                segment_label=f"Lung {i}",
                segmented_property_category=codes.SCT.Organ,
                segmented_property_type=codes.SCT.Lung,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
            for i in range(1, n_segments + 1)
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # highdicom notes that it cannot omit every (empty) frame
            seg = hd.seg.Segmentation(
                source_images=[self.src],
                pixel_array=pixel_array,
                segmentation_type=seg_type,
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=7,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="test",
                manufacturer_model_name="highdicom",
                software_versions="0.28",
                device_serial_number="0",
                pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=list(SPACING), slice_thickness=1.0),
                **kwargs,
            )
        out = self.root / name
        seg.save_as(out)
        return out

    def _variant(self, seg_type: str, strip_refs: bool) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
        """A two-segment SEG; returns (path, union, segment 1, segment 2) as read back."""
        import pydicom

        left, right = self.left.astype(bool), self.right.astype(bool)
        if seg_type == "BINARY":  # overlapping segments
            path = self._write(np.stack([left, right], -1)[None], "BINARY", 2)
            s1, s2 = left, right
        elif seg_type == "LABELMAP":
            label = left + 2 * (right & ~left)
            path = self._write(label.astype(np.uint8), "LABELMAP", 2)
            s1, s2 = label == 1, label == 2
        else:  # FRACTIONAL: 0.7 is inside, 0.3 is outside
            frac = np.stack([left * 0.7, right * 0.3 + (right & ~left) * 0.6], -1)[None].astype(np.float32)
            path = self._write(frac, "FRACTIONAL", 2, max_fractional_value=255)
            s1, s2 = left, right & ~left
        if strip_refs:
            ds = pydicom.dcmread(path)
            for fg in ds.PerFrameFunctionalGroupsSequence:
                del fg.DerivationImageSequence
            ds.save_as(path)
        return path, (s1 | s2).astype(np.uint8), s1.astype(np.uint8), s2.astype(np.uint8)

    @parameterized.expand(
        [(t, strip) for t in ("BINARY", "LABELMAP", "FRACTIONAL") for strip in (False, True)],
        name_func=lambda f, n, p: f"{f.__name__}_{p.args[0].lower()}{'_no_frame_refs' if p.args[1] else ''}",
    )
    def test_variants_exact(self, seg_type, strip_refs):
        import pydicom

        from monai_jrs.data.dicom import read_dicom_seg

        path, union, s1, s2 = self._variant(seg_type, strip_refs)
        if strip_refs:
            self.assertNotIn("DerivationImageSequence", pydicom.dcmread(path).PerFrameFunctionalGroupsSequence[0])
        mask, meta = read_dicom_seg(path)
        self.assertEqual(mask.dtype, np.uint8)
        np.testing.assert_array_equal(mask, union)
        self.assertEqual(meta["segment_numbers"], [1, 2])
        self.assertEqual(meta["source_sop_instance_uid"], self.src.SOPInstanceUID)
        self.assertEqual(meta["writer"], "test / highdicom / 0.28")
        np.testing.assert_allclose(meta["spacing"], SPACING)
        np.testing.assert_array_equal(read_dicom_seg(path, segment_numbers=[1])[0], s1)
        np.testing.assert_array_equal(read_dicom_seg(path, segment_numbers=[2])[0], s2)
        np.testing.assert_array_equal(read_dicom_seg(path, segment_numbers=[2, 1])[0], union)

    @parameterized.expand([("frame_refs", False), ("no_frame_refs", True)])
    def test_empty_segment_is_zero_with_warning(self, _, strip_refs):
        import pydicom

        from monai_jrs.data.dicom import read_dicom_seg

        path = self._write(np.stack([self.left, np.zeros_like(self.left)], -1)[None].astype(bool), "BINARY", 2)
        if strip_refs:
            ds = pydicom.dcmread(path)
            for fg in ds.PerFrameFunctionalGroupsSequence:
                del fg.DerivationImageSequence
            ds.save_as(path)
        self.assertEqual(int(pydicom.dcmread(path).NumberOfFrames), 1)  # the empty frame is omitted
        with self.assertLogs("monai_jrs.data.dicom", "WARNING") as logs:
            mask, _ = read_dicom_seg(path, segment_numbers=[2])
        self.assertIn("segment 2 is empty", "\n".join(logs.output))
        self.assertEqual(mask.shape, SHAPE)
        self.assertEqual(int(mask.sum()), 0)
        np.testing.assert_array_equal(read_dicom_seg(path)[0], self.left)

    def test_spatial_locations_not_preserved(self):
        import pydicom

        from monai_jrs.data.dicom import read_dicom_seg

        path, *_ = self._variant("BINARY", strip_refs=False)
        ds = pydicom.dcmread(path)
        for fg in ds.PerFrameFunctionalGroupsSequence:
            fg.DerivationImageSequence[0].SourceImageSequence[0].SpatialLocationsPreserved = "NO"
        ds.save_as(path)
        with self.assertRaisesRegex(ValueError, r"SpatialLocationsPreserved \['NO'\]; expected 'YES'"):
            read_dicom_seg(path)


@SkipIfNoModule("pydicom")
class TestHandBuiltSeg(_TmpCase):
    """SEGs built with pydicom, without per-frame source references, and broken ones."""

    def setUp(self):
        super().setUp()
        self.s1, self.s2 = _lungs(ODD_SHAPE)

    def test_binary_frames_in_any_order(self):
        from monai_jrs.data.dicom import read_dicom_seg

        # frames not byte-aligned at 1 bit, segment 2 stored first
        path = _hand_seg(self.root / "seg.dcm", np.stack([self.s2, self.s1]), [2, 1])
        mask, meta = read_dicom_seg(path)
        np.testing.assert_array_equal(mask, self.s1 | self.s2)
        np.testing.assert_array_equal(read_dicom_seg(path, segment_numbers=[1])[0], self.s1)
        np.testing.assert_array_equal(read_dicom_seg(path, segment_numbers=[2])[0], self.s2)
        self.assertEqual(meta["original_shape"], ODD_SHAPE)
        self.assertEqual(meta["source_sop_instance_uid"], "1.2.826.0.1.3680043.8.498.1")
        self.assertEqual(meta["writer"], "hand / 1 2")
        np.testing.assert_allclose(meta["spacing"], SPACING)

    def test_fractional_threshold_half_maximum(self):
        from monai_jrs.data.dicom import read_dicom_seg

        values = np.zeros(ODD_SHAPE, np.uint8)
        values[self.s1 > 0] = 51  # > 100 / 2: inside
        values[(self.s2 > 0) & (self.s1 == 0)] = 50  # not above half the MaximumFractionalValue 100: outside
        path = _hand_seg(self.root / "seg.dcm", values[None], [1], n_segments=1, seg_type="FRACTIONAL")
        np.testing.assert_array_equal(read_dicom_seg(path)[0], self.s1)

    def test_size_mismatch_with_image(self):
        from monai_jrs.data.io import load_mask

        path = _hand_seg(self.root / "seg.dcm", self.s1[None], [1], n_segments=1)
        ref = {"original_shape": SHAPE, "filename": "img.dcm", "spacing": SPACING}
        with self.assertRaisesRegex(ValueError, r"mask shape \(47, 63\) \(rows, cols\) does not match the image"):
            load_mask(path, reference_meta=ref)

    @parameterized.expand(
        [
            ("frame_count", dict(number_of_frames=3), r"NumberOfFrames is 3 but PerFrameFunctionalGroups\w+ has 2"),
            ("short_pixel_data", dict(truncate=40), r"pixel data holds \d+ bytes; 2 frame\(s\) of 47 x 63 .* need 741"),
            ("two_frames_one_segment", dict(frame_segments=[1, 1]), r"segment 1 has 2 frames \(\[1, 2\]\)"),
            ("undefined_segment", dict(frame_segments=[1, 5]), r"frame 2 belongs to segment 5, which the"),
            ("no_identification", dict(with_identification=False), r"frame 1 has no SegmentIdentificationSequence"),
            ("two_sources", dict(sources=("1.2.3.1", "1.2.3.2")), r"references 2 source images; pass"),
        ]
    )
    def test_errors(self, _, kwargs, msg):
        from monai_jrs.data.dicom import read_dicom_seg

        args = {"frame_segments": [1, 2], **kwargs}
        path = _hand_seg(self.root / "bad.dcm", np.stack([self.s1, self.s2]), **args)
        with self.assertRaisesRegex(ValueError, msg) as cm:
            read_dicom_seg(path)
        self.assertIn(str(path), str(cm.exception))

    def test_two_sources_without_frame_references(self):
        from monai_jrs.data.dicom import read_dicom_seg

        path = _hand_seg(self.root / "seg.dcm", np.stack([self.s1, self.s2]), [1, 2], sources=("1.2.3.1", "1.2.3.2"))
        with self.assertRaisesRegex(ValueError, r"no per-frame source reference .* references 2 images; expected"):
            read_dicom_seg(path, source_sop_instance_uid="1.2.3.2")
        with self.assertRaisesRegex(ValueError, r"source image 1.2.3.9 is not referenced"):
            read_dicom_seg(path, source_sop_instance_uid="1.2.3.9")

    def test_not_a_seg(self):
        from monai_jrs.data.dicom import read_dicom_seg
        from monai_jrs.data.testing import make_dx_dicom

        src = make_dx_dicom(self.root / "img.dcm", self.s1.astype(np.uint16))
        with self.assertRaisesRegex(ValueError, r"expected a DICOM SEG .* got SOP class .* / Modality DX"):
            read_dicom_seg(src)


if __name__ == "__main__":
    unittest.main()
