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
"""The reference rule of the MONAI Label app (no server): DICOM headers, JSON mapping, choices, ties, missing dates,
no label; and the same rule on MONAI Label's real ``LocalDatastore`` when monailabel is installed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest
from datetime import datetime
from pathlib import Path

import numpy as np
from parameterized import parameterized

from monai_jrs.data.testing import make_dx_dicom, make_synthetic_xray
from monai_jrs.monailabel.reference import (
    DicomVisitReader,
    JsonVisitMapping,
    ReferenceFinder,
    ReferenceNotFoundError,
    Visit,
    VisitResolver,
    parse_visit_time,
)


class FakeDatastore:
    """The part of MONAI Label's datastore API the rule uses; images are files, labels a {image id: label id} dict."""

    def __init__(self, images: dict[str, str], labels: dict[str, str]) -> None:
        self.images, self.labels = images, labels

    def list_images(self) -> list[str]:
        return list(self.images)

    def get_image_uri(self, image_id: str) -> str:
        return self.images.get(image_id, "")

    def get_image_info(self, image_id: str) -> dict:
        return {"path": self.images.get(image_id, "")}

    def get_label_by_image_id(self, image_id: str, tag: str) -> str:
        return self.labels.get(image_id, "") if tag == "final" else ""

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        return f"/labels/{label_tag}/{label_id}.nii.gz"


def _dicom(folder: Path, name: str, patient: str, date: str | None, time: str | None = "120000", **tags) -> str:
    import pydicom

    img, _ = make_synthetic_xray((16, 16))
    path = make_dx_dicom(folder / f"{name}.dcm", img, patient_id=patient, study_date=date or "20000101")
    ds = pydicom.dcmread(path)
    if date is None:  # no date at all
        for t in ("StudyDate", "SeriesDate", "ContentDate", "AcquisitionDate"):
            if t in ds:
                delattr(ds, t)
    if time is None:
        ds.StudyTime = ""
    elif time != "120000":
        ds.StudyTime = time
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.save_as(path, enforce_file_format=True)
    return str(path)


class TestParseVisitTime(unittest.TestCase):
    @parameterized.expand([
        ("20240131", None, datetime(2024, 1, 31)),
        ("20240131", "101530", datetime(2024, 1, 31, 10, 15, 30)),
        ("20240131", "1015", datetime(2024, 1, 31, 10, 15)),
        ("20240131", "10:15:30.25", datetime(2024, 1, 31, 10, 15, 30, 250000)),
        ("20240131101530.5", None, datetime(2024, 1, 31, 10, 15, 30, 500000)),
        ("2024-01-31", None, datetime(2024, 1, 31)),
        ("2024-01-31T10:15:00", "999999", datetime(2024, 1, 31, 10, 15)),  # a full datetime ignores `time`
        ("2024-01-31T10:15:00+02:00", None, datetime(2024, 1, 31, 10, 15)),
        ("", "101500", None),
        (None, None, None),
    ])
    def test_values(self, date, time, expected):
        self.assertEqual(parse_visit_time(date, time), expected)

    @parameterized.expand([("31/01/2024", None), ("20241340", None), ("20240131", "25"), ("20240131", "1x")])
    def test_ill(self, date, time):
        with self.assertRaisesRegex(ValueError, "got"):
            parse_visit_time(date, time)


class TestDicomRule(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def _store(self, visits, labelled):
        images = {name: _dicom(self.tmp, name, *args) for name, args in visits.items()}
        return FakeDatastore(images, {k: k for k in labelled})

    def test_earliest_labelled_visit(self):
        ds = self._store({"a_late": ("P1", "20230601"), "a_first": ("P1", "20230101"), "a_mid": ("P1", "20230301"),
                          "b_first": ("P2", "20220101")}, labelled=["a_late", "a_first", "b_first"])
        ref = ReferenceFinder()(ds, "a_mid")
        self.assertEqual((ref.image_id, ref.label_id), ("a_first", "a_first"))
        self.assertEqual(ref.label_uri, "/labels/final/a_first.nii.gz")
        self.assertEqual(ref.image_uri, ds.images["a_first"])
        self.assertEqual([v.image_id for v in ref.candidates], ["a_first", "a_late"])  # never another patient
        self.assertEqual(ref.requested, Visit("a_mid", "P1", datetime(2023, 3, 1, 12), None, "dicom"))
        # the requested image itself is never its own reference, even when labelled
        self.assertEqual(ReferenceFinder()(ds, "a_first").image_id, "a_late")

    def test_choices(self):
        ds = self._store({"v0": ("P1", "20230101"), "v1": ("P1", "20230301"), "v2": ("P1", "20230401"),
                          "v3": ("P1", "20231201")}, labelled=["v0", "v2", "v3"])
        self.assertEqual(ReferenceFinder(choice="earliest")(ds, "v1").image_id, "v0")
        self.assertEqual(ReferenceFinder(choice="latest")(ds, "v1").image_id, "v3")
        self.assertEqual(ReferenceFinder(choice="nearest")(ds, "v1").image_id, "v2")  # 31 days vs 59

    def test_time_of_day_and_nearest_equal_distance(self):
        ds = self._store({"am": ("P1", "20230101", "080000"), "pm": ("P1", "20230101", "180000"),
                          "q": ("P1", "20230101", "130000")}, labelled=["am", "pm"])
        self.assertEqual(ReferenceFinder(choice="earliest")(ds, "q").image_id, "am")
        self.assertEqual(ReferenceFinder(choice="latest")(ds, "q").image_id, "pm")
        self.assertEqual(ReferenceFinder(choice="nearest")(ds, "q").image_id, "am")  # 5 h either way: the earlier

    def test_tie_broken_by_image_id_with_warning(self):
        ds = self._store({"z_view": ("P1", "20230101"), "a_view": ("P1", "20230101"), "f": ("P1", "20230601")},
                         labelled=["z_view", "a_view"])
        with self.assertLogs("monai_jrs.monailabel.reference", "WARNING") as logs:
            self.assertEqual(ReferenceFinder()(ds, "f").image_id, "a_view")
        self.assertIn("'z_view'", "\n".join(logs.output))

    def test_missing_dates(self):
        # an undated labelled visit is used only when no labelled visit has a date
        ds = self._store({"undated": ("P1", None), "dated": ("P1", "20230601"), "f": ("P1", "20230701")},
                         labelled=["undated", "dated"])
        self.assertEqual(ReferenceFinder()(ds, "f").image_id, "dated")
        ds = self._store({"u2": ("P1", None), "u1": ("P1", None), "g": ("P1", "20230701")}, labelled=["u2", "u1"])
        with self.assertLogs("monai_jrs.monailabel.reference", "WARNING") as logs:
            self.assertEqual(ReferenceFinder()(ds, "g").image_id, "u1")
        self.assertIn("no labelled visit has a date", "\n".join(logs.output))
        # 'nearest' without a date on the requested image falls back to 'earliest'
        ds = self._store({"h0": ("P1", "20230101"), "h1": ("P1", "20230901"), "hq": ("P1", None)},
                         labelled=["h0", "h1"])
        with self.assertLogs("monai_jrs.monailabel.reference", "WARNING"):
            self.assertEqual(ReferenceFinder(choice="nearest")(ds, "hq").image_id, "h0")

    def test_date_tag_preference(self):
        # StudyDate first by default; AcquisitionDate first when configured
        ds = self._store({"x": ("P1", "20230101", "120000"), "y": ("P1", "20230201", "120000"),
                          "q": ("P1", "20230301")}, labelled=["x", "y"])
        import pydicom

        for name, acq in (("x", "20240101"), ("y", "20230115")):
            d = pydicom.dcmread(ds.images[name])
            d.AcquisitionDate, d.AcquisitionTime = acq, "000000"
            d.save_as(ds.images[name], enforce_file_format=True)
        self.assertEqual(ReferenceFinder()(ds, "q").image_id, "x")
        by_acq = VisitResolver("dicom", date_tags=("AcquisitionDate", "StudyDate"))
        self.assertEqual(ReferenceFinder(by_acq)(ds, "q").image_id, "y")

    def test_no_label_and_unknown_patient(self):
        ds = self._store({"p_a": ("P1", "20230101"), "p_b": ("P1", "20230601"), "o": ("P2", "20230101")},
                         labelled=["o"])
        with self.assertRaisesRegex(ReferenceNotFoundError, r"no labelled reference for image 'p_b'.*'P1'.*p_a"):
            ReferenceFinder()(ds, "p_b")
        with self.assertRaisesRegex(ReferenceNotFoundError, "not in the datastore"):
            ReferenceFinder()(ds, "missing")
        png = self.tmp / "plain.png"
        png.write_bytes(b"\x89PNG\r\n\x1a\n")
        ds.images["plain"] = str(png)
        with self.assertRaisesRegex(ReferenceNotFoundError, "patient of image 'plain' is unknown"):
            ReferenceFinder()(ds, "plain")
        self.assertTrue(issubclass(ReferenceNotFoundError, ValueError))

    def test_header_cache_follows_file_changes(self):
        reader = DicomVisitReader()
        path = _dicom(self.tmp, "c", "P1", "20230101")
        self.assertEqual(reader("c", path).patient_id, "P1")
        os.remove(path)
        path = _dicom(self.tmp, "c", "P9", "20230101", time="235959")
        self.assertEqual(reader("c", path).patient_id, "P9")
        self.assertIsNone(reader("nope", self.tmp / "nope.dcm"))

    def test_ill_args(self):
        with self.assertRaisesRegex(ValueError, "`choice` must be one of"):
            ReferenceFinder(choice="first")
        with self.assertRaisesRegex(ValueError, "`rule` must be one of"):
            VisitResolver("pacs")
        with self.assertRaisesRegex(ValueError, "needs a `mapping`"):
            VisitResolver("json")
        with self.assertRaisesRegex(ValueError, "`date_tags` must be"):
            DicomVisitReader(("PatientBirthDate",))


class TestJsonRule(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.mapping = self.tmp / "visits.json"
        images = {}
        for name in ("a0", "a1", "a2", "b0", "b1", "c0"):
            images[name] = str(self.tmp / f"{name}.png")
            Path(images[name]).write_bytes(b"")
        self.ds = FakeDatastore(images, {"a1": "a1", "a2": "a2", "b0": "b0", "b1": "b1"})

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def _write(self, content):
        self.mapping.write_text(json.dumps(content), encoding="utf-8")

    def test_dates_visits_and_reload(self):
        self._write({"a0": {"patient_id": "A", "date": "2023-05-01"}, "a1": {"patient_id": "A", "date": "2023-03-01"},
                     "a2": {"patient_id": "A", "date": "20230401"}, "b0": {"patient_id": "B", "visit": 2},
                     "b1": {"patient_id": "B", "visit": 1}, "c0": {"patient_id": "C", "visit": 1}})
        finder = ReferenceFinder(VisitResolver("json", mapping=self.mapping))
        self.assertEqual(finder(self.ds, "a0").image_id, "a1")
        nearest = ReferenceFinder(VisitResolver("json", mapping=self.mapping), "nearest")
        self.assertEqual(nearest(self.ds, "a0").image_id, "a2")
        with self.assertLogs("monai_jrs.monailabel.reference", "WARNING"):  # visit numbers only
            self.assertEqual(finder(self.ds, "b0").image_id, "b1")
        with self.assertRaisesRegex(ReferenceNotFoundError, "patient 'C'"):
            finder(self.ds, "c0")
        # edited while the server runs: re-read
        self._write({"a0": {"patient_id": "A", "date": "2023-05-01"}, "a1": {"patient_id": "A", "date": "2023-03-01"},
                     "a2": {"patient_id": "A", "date": "2022-01-01T09:00:00"}})
        os.utime(self.mapping, ns=(1, 10**18))
        self.assertEqual(finder(self.ds, "a0").image_id, "a2")
        with self.assertRaisesRegex(ReferenceNotFoundError, "patient of image 'b0' is unknown"):
            finder(self.ds, "b0")

    def test_auto_prefers_mapping_then_dicom(self):
        self._write({"a0": {"patient_id": "A", "date": "2023-05-01"}, "a1": {"patient_id": "A", "date": "2023-03-01"}})
        dcm = _dicom(self.tmp, "a9", "A", "20200101")
        self.ds.images["a9"], self.ds.labels["a9"] = dcm, "a9"
        finder = ReferenceFinder(VisitResolver("auto", mapping=self.mapping))
        self.assertEqual(finder(self.ds, "a0").image_id, "a9")  # the DICOM visit of the same patient is earlier
        self.assertEqual(ReferenceFinder(VisitResolver("json", mapping=self.mapping))(self.ds, "a0").image_id, "a1")

    @parameterized.expand([
        ([], "expected a JSON object"),
        ({"a0": "A"}, "entry 'a0' must be an object"),
        ({"a0": {"date": "2023-01-01"}}, "non-empty 'patient_id'"),
        ({"a0": {"patient_id": "A", "visit": "2"}}, "'visit' must be an integer"),
        ({"a0": {"patient_id": "A", "visit": True}}, "'visit' must be an integer"),
        ({"a0": {"patient_id": "A", "date": "01.02.2023"}}, "entry 'a0': visit date must be ISO 8601"),
    ])
    def test_ill_mapping(self, content, message):
        self._write(content)
        with self.assertRaisesRegex(ValueError, message):
            JsonVisitMapping(self.mapping).visits()

    def test_missing_mapping(self):
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            ReferenceFinder(VisitResolver("json", mapping=self.tmp / "none.json"))(self.ds, "a0")


class TestLocalDatastore(unittest.TestCase):
    """The rule through MONAI Label's own LocalDatastore (labels found by the datastore API, not by path)."""

    def test_local_datastore(self):
        try:
            from monai_jrs.monailabel.compat import install_pydicom_seg_compat

            install_pydicom_seg_compat()
            from monailabel.datastore.local import LocalDatastore
        except ImportError:
            self.skipTest("monailabel is not installed (pip install .[monailabel])")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for name, date in (("v0", "20230101"), ("v1", "20230601"), ("v2", "20231201")):
                _dicom(root, name, "P1", date)
            store = LocalDatastore(tmp, extensions=["*.nii.gz", "*.dcm", "*.png"], auto_reload=False)
            self.assertEqual(sorted(store.list_images()), ["v0", "v1", "v2"])
            with self.assertRaises(ReferenceNotFoundError):
                ReferenceFinder()(store, "v2")
            label = root / "label_upload.nii.gz"
            import nibabel as nib

            nib.save(nib.Nifti1Image(np.ones((16, 16), np.uint8), np.eye(4)), str(label))
            store.save_label("v1", str(label), "final", {})
            store.save_label("v0", str(label), "original", {})  # a model's proposal, not an annotation
            ref = ReferenceFinder()(store, "v2")
            self.assertEqual((ref.image_id, ref.label_id), ("v1", "v1"))
            self.assertEqual(Path(ref.label_uri), (root / "labels" / "final" / "v1.nii.gz").resolve())
            self.assertEqual(Path(ref.image_uri), (root / "v1.dcm").resolve())
            self.assertEqual(ReferenceFinder(label_tag="original")(store, "v2").image_id, "v0")


if __name__ == "__main__":
    unittest.main()
