# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""End to end: a real Orthanc PACS (DICOMweb) and a real MONAI Label server with the ``apps/monailabel_jrs`` app on
it (``--studies http://127.0.0.1:<port>/dicom-web``), both started here on 127.0.0.1.

The annotator's loop, as 3D Slicer drives it: save the lung label of the first visit (``PUT /datastore/label``, a
NIfTI on the image grid) -> it lands in the PACS as a DICOM SEG referencing the image's series; infer the next visit
(``POST /infer/jrs_lung``, Dice against the known deformation); save that result as its label; infer the third visit
from the newest labelled visit. Then the bad requests (unknown image, patient without a labelled visit, a corrupt
instance, duplicate saves, delete attempts, PACS down) and that the server keeps serving.
"""

from __future__ import annotations

import json
import tempfile
import time
import unittest
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel", reason="the monailabel extra is not installed (pip install .[monailabel])")
sitk = pytest.importorskip("SimpleITK")
requests = pytest.importorskip("requests")

import pydicom  # noqa: E402

from monai_jrs.data.testing import make_dx_dicom, make_sr_dicom  # noqa: E402
from tests.monailabel.server import MonaiLabelServer  # noqa: E402
from tests.pacs.orthanc import Orthanc, orthanc_unavailable  # noqa: E402
from tests.pacs.studies import make_pacs_studies  # noqa: E402

_SKIP = orthanc_unavailable()


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def _label_like(mask: np.ndarray, image_path: Path, out: Path) -> Path:
    """A label as 3D Slicer saves it: ITK array view (rows, cols) with the image's geometry."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image_path))
    reader.ReadImageInformation()
    img = sitk.GetImageFromArray(mask.astype(np.uint8)[None] if reader.GetDimension() == 3 else mask.astype(np.uint8))
    img.SetSpacing(reader.GetSpacing())
    img.SetOrigin(reader.GetOrigin())
    img.SetDirection(reader.GetDirection())
    sitk.WriteImage(img, str(out), useCompression=True)
    return out


@pytest.mark.slow
@unittest.skipIf(_SKIP is not None, _SKIP or "")
class TestMONAILabelOnOrthanc(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        cls.visits = make_pacs_studies(root / "dicom")
        cls.pacs = Orthanc()
        cls.pacs.start()
        for v in cls.visits.values():
            cls.pacs.upload(v.path)
        cls.server = MonaiLabelServer(cls.pacs.dicomweb, conf={"preload": "true", "dicomweb_ttl": "1"},
                                      env={"MONAI_JRS_CACHE": str(root / "cache")})
        try:
            cls.server.start()
        except Exception:
            cls.pacs.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.pacs.stop()
        cls.tmp.cleanup()

    # ------------------------------------------------------------------ helpers
    def _infer(self, image: str, params: dict | None = None, output: str = "image") -> requests.Response:
        return requests.post(f"{self.server.url}/infer/jrs_lung", params={"image": image, "output": output},
                             files={"params": (None, json.dumps(params or {}))}, timeout=180)

    def _save_label(self, image: str, label: Path) -> requests.Response:
        with open(label, "rb") as f:
            return requests.put(f"{self.server.url}/datastore/label", params={"image": image, "tag": "final"},
                                files={"label": (label.name, f), "params": (None, "{}")}, timeout=60)

    def _segs(self, series_uid: str) -> list[str]:
        """SEG series in the PACS that reference ``series_uid`` (read straight from Orthanc's DICOMweb)."""
        out = []
        found = requests.get(f"{self.pacs.dicomweb}/series", params={"Modality": "SEG"}, timeout=30).json()
        for s in found:
            study, series = s["0020000D"]["Value"][0], s["0020000E"]["Value"][0]
            meta = requests.get(f"{self.pacs.dicomweb}/studies/{study}/series/{series}/metadata", timeout=30).json()
            refs = [r["0020000E"]["Value"][0] for r in meta[0].get("00081115", {}).get("Value", [])]
            if series_uid in refs:
                out.append(series)
        return out

    def _mask_of(self, response: requests.Response, name: str) -> np.ndarray:
        self.assertEqual(response.status_code, 200, response.content[:2000])
        out = Path(self.tmp.name) / f"{name}.nii.gz"
        out.write_bytes(response.content)
        return sitk.GetArrayFromImage(sitk.ReadImage(str(out))).reshape(self.visits[name].mask.shape)

    # ------------------------------------------------------------------ the loop
    def test_1_info_lists_the_pacs(self):
        info = self.server.info()
        self.assertEqual(info["datastore"]["total"], 5)  # the five DX/CR series, nothing downloaded
        self.assertEqual(info["datastore"]["completed"], 0)
        log = self.server.log_text()
        self.assertNotIn("dcmqi", log.lower())  # no dcmqi download at start-up
        self.assertNotIn("github", log.lower())
        print(f"\nMONAI Label on Orthanc ready in {self.server.startup_s:.1f} s")

    def test_2_annotate_infer_annotate_infer(self):
        v0, v1, v2 = self.visits["p1_v0"], self.visits["p1_v1"], self.visits["p1_v2"]
        # no label yet: a clear 404 with the reason
        r = self._infer(v1.series_uid)
        self.assertEqual(r.status_code, 404, r.text)
        self.assertIn("no labelled reference", r.json()["detail"])

        # 1. the annotator saves the first visit's label (NIfTI as Slicer saves it)
        label = _label_like(v0.mask, v0.path, Path(self.tmp.name) / "p1_v0_label.nii.gz")
        r = self._save_label(v0.series_uid, label)
        self.assertEqual(r.status_code, 200, r.text)
        seg_series = r.json()["label"]
        self.assertEqual(self._segs(v0.series_uid), [seg_series])  # a SEG in the PACS referencing the series
        # saving the identical label again stores nothing twice
        n = self.pacs.count_instances()
        r = self._save_label(v0.series_uid, label)
        self.assertEqual((r.status_code, r.json()["label"]), (200, seg_series))
        self.assertEqual(self.pacs.count_instances(), n)

        # 2. infer the next visit (CR, MONOCHROME1, no spacing, rotated, another grid)
        t = time.perf_counter()
        mask1 = self._mask_of(self._infer(v1.series_uid), "p1_v1")
        dice1 = _dice(mask1, v1.mask)
        r = self._infer(v1.series_uid, output="json")
        params = r.json()
        self.assertEqual(params["reference_image"], v0.series_uid)
        self.assertEqual(params["reference_label"], seg_series)
        print(f"\np1_v1 (CR MONOCHROME1, no spacing, 4 deg + (8, -6) px): Dice {dice1:.4f}, "
              f"{time.perf_counter() - t:.2f} s for two requests")
        self.assertGreater(dice1, 0.9)

        # 3. the annotator accepts it: saved as the second visit's label
        label1 = _label_like(mask1, v1.path, Path(self.tmp.name) / "p1_v1_label.nii.gz")
        r = self._save_label(v1.series_uid, label1)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(len(self._segs(v1.series_uid)), 1)

        # 4. the third visit, from the latest labelled visit (seen within the listing TTL)
        mask2 = self._mask_of(self._infer(v2.series_uid, {"reference_choice": "latest"}), "p1_v2")
        params = self._infer(v2.series_uid, {"reference_choice": "latest"}, output="json").json()
        self.assertEqual(params["reference_image"], v1.series_uid)
        self.assertEqual(params["labelled_visits"], [v0.series_uid, v1.series_uid])
        dice2 = _dice(mask2, v2.mask)
        print(f"p1_v2 (from p1_v1's saved label): Dice {dice2:.4f}")
        self.assertGreater(dice2, 0.85)
        self.assertEqual(self.server.info()["datastore"]["completed"], 2)

    def test_3_bad_requests(self):
        # unknown image
        r = self._infer("1.2.3.4.5")
        self.assertEqual(r.status_code, 404, r.text)
        self.assertIn("not in the datastore", r.json()["detail"])
        # a patient without a labelled visit
        r = self._infer(self.visits["p2_v1"].series_uid)
        self.assertEqual(r.status_code, 404, r.text)
        self.assertIn("patient 'P2'", r.json()["detail"])
        # a label that does not fit the image, an empty label, a non-label file
        v = self.visits["p2_v0"]
        wrong = _label_like(np.ones((10, 12), np.uint8), v.path, Path(self.tmp.name) / "wrong.nii.gz")
        img = sitk.ReadImage(str(wrong))
        sitk.WriteImage(img, str(wrong))
        empty = _label_like(np.zeros_like(v.mask), v.path, Path(self.tmp.name) / "empty.nii.gz")
        n = self.pacs.count_instances()
        for path, status, text in ((empty, 422, "is empty"), (wrong, 422, "does not fit")):
            r = self._save_label(v.series_uid, path)
            self.assertEqual(r.status_code, status, r.text)
            self.assertIn(text, r.json()["detail"])
        junk = Path(self.tmp.name) / "junk.txt"
        junk.write_text("not a label")
        r = self._save_label(v.series_uid, junk)
        self.assertEqual(r.status_code, 415, r.text)
        self.assertEqual(self.pacs.count_instances(), n)  # nothing stored
        # nothing is ever deleted
        r = requests.delete(f"{self.server.url}/datastore/image", params={"id": v.series_uid}, timeout=30)
        self.assertEqual(r.status_code, 405, r.text)
        self.assertEqual(self.pacs.count_instances(), n)
        # a corrupt instance (pixel data cut short) of a labelled patient: 422 with the reason
        root = Path(self.tmp.name)
        bad = make_dx_dicom(root / "bad.dcm", np.zeros((64, 48), np.uint16), patient_id="P1", study_date="20240301")
        ds = pydicom.dcmread(bad)
        ds.PixelData = ds.PixelData[:100]
        ds.save_as(bad)
        self.pacs.upload(bad)
        # a non-image instance (a text SR) is no image of the datastore
        sr = pydicom.dcmread(make_sr_dicom(root / "sr.dcm", patient_id="P1", study_date="20240301"))
        self.pacs.upload(root / "sr.dcm")
        time.sleep(1.2)  # the listing TTL of this server (--conf dicomweb_ttl 1): new studies show within seconds
        self.assertEqual(self.server.info()["datastore"]["total"], 6)
        r = self._infer(str(ds.SeriesInstanceUID))
        self.assertEqual(r.status_code, 422, r.text)
        self.assertIn("cannot use this image", r.json()["detail"])
        r = self._infer(str(sr.SeriesInstanceUID))
        self.assertEqual(r.status_code, 404, r.text)
        # duplicate uploads through MONAI Label (PUT /datastore/image) store nothing twice
        n = self.pacs.count_instances()
        for _ in range(2):
            with open(self.visits["p2_v0"].path, "rb") as f:
                r = requests.put(f"{self.server.url}/datastore/image", params={"image": "p2_v0"},
                                 files={"file": ("p2_v0.dcm", f), "params": (None, "{}")}, timeout=60)
            self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(self.pacs.count_instances(), n)
        with open(junk, "rb") as f:
            r = requests.put(f"{self.server.url}/datastore/image", params={"image": "junk"},
                             files={"file": ("junk.txt", f), "params": (None, "{}")}, timeout=60)
        self.assertEqual(r.status_code, 415, r.text)
        # the server keeps serving
        self.assertEqual(self.server.info()["datastore"]["total"], 6)
        self.assertTrue(self.server.alive())

    def test_4_pacs_down(self):
        """The PACS goes away: requests answer 503 with the reason, the server keeps running."""
        self.pacs.stop()
        time.sleep(1.2)  # past the listing TTL
        r = self._infer(self.visits["p1_v1"].series_uid)
        self.assertEqual(r.status_code, 503, r.text)
        self.assertIn("is not reachable", r.json()["detail"])
        r = requests.get(f"{self.server.url}/info/", timeout=30)
        self.assertEqual(r.status_code, 503, r.text)
        self.assertTrue(self.server.alive())


if __name__ == "__main__":
    unittest.main()
