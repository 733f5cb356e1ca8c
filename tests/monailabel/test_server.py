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
"""End to end: a real MONAI Label server (``monailabel start_server`` through ``python -m monai_jrs.monailabel``) with
the ``apps/monailabel_jrs`` app and the shipped weights, on a generated studies folder (DICOM and PNG visits, reference
labels saved in ``labels/final``): ``GET /info/``, ``POST /infer/jrs_lung`` (Dice against the known deformation, the
result on the requested image's grid) and the error response for a patient without a labelled visit."""

from __future__ import annotations

import json
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel", reason="the monailabel extra is not installed (pip install .[monailabel])")
sitk = pytest.importorskip("SimpleITK")
requests = pytest.importorskip("requests")

from tests.monailabel.server import MonaiLabelServer  # noqa: E402
from tests.monailabel.studies import make_studies  # noqa: E402


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


@pytest.mark.slow
class TestMONAILabelServer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        cls.studies = root / "studies"
        cls.expected = make_studies(cls.studies)
        # no --host: the wrapper binds to 127.0.0.1 by default (tested below)
        cls.server = MonaiLabelServer(cls.studies, conf={"preload": "true"}, host=None)
        cls.server.start()
        cls.url = cls.server.url
        cls.startup_s = cls.server.startup_s

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tmp.cleanup()

    def test_binds_to_loopback_by_default(self):
        """Started without --host, the server listens on 127.0.0.1 only (monailabel's own default: 0.0.0.0)."""
        if not Path("/proc/net/tcp").is_file():
            self.skipTest("needs Linux /proc/net/tcp to read the listening address")
        listening = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            if Path(table).is_file():
                for line in Path(table).read_text().splitlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    addr, port = local.rsplit(":", 1)
                    if state == "0A" and int(port, 16) == self.server.port:  # 0A: LISTEN
                        listening.add(addr)
        self.assertEqual(listening, {"0100007F"}, listening)  # 127.0.0.1, little-endian hex
        self.assertNotIn("--host", self.server.command)

    def _post(self, path: str, params: dict | None = None) -> tuple[int, bytes, dict]:
        """POST like MONAI Label clients: a multipart form with ``params`` as a JSON string."""
        r = requests.post(self.url + path, files={"params": (None, json.dumps(params or {}))}, timeout=120)
        return r.status_code, r.content, dict(r.headers)

    def _mask(self, image_id: str) -> tuple[np.ndarray, sitk.Image]:
        status, body, _ = self._post(f"/infer/jrs_lung?image={image_id}&output=image")
        self.assertEqual(status, 200, body[:2000])
        out = Path(self.tmp.name) / f"{image_id}_mask.nii.gz"
        out.write_bytes(body)
        img = sitk.ReadImage(str(out))
        return sitk.GetArrayFromImage(img), img

    def test_info(self):
        with urllib.request.urlopen(self.url + "/info/", timeout=30) as r:
            info = json.loads(r.read())
        model = info["models"]["jrs_lung"]
        self.assertEqual(model["type"], "segmentation")
        self.assertEqual(model["labels"], {"lung": 1})
        self.assertEqual(model["dimension"], 2)
        self.assertEqual(model["config"]["reference_choice"], ["earliest", "latest", "nearest"])  # default first
        self.assertEqual(model["config"]["result_extension"][0], ".nii.gz")
        self.assertEqual(info["labels"], ["lung"])
        self.assertEqual(info["datastore"]["total"], 7)  # *.dcm served besides MONAI Label's default extensions
        self.assertEqual(info["datastore"]["label_tags"], {"final": 3})
        print(f"\nserver ready in {self.startup_s:.1f} s")

    def test_dicom_followup_mask(self):
        t = time.perf_counter()
        arr, img = self._mask("p1_v1")
        elapsed = time.perf_counter() - t
        ref = sitk.ReadImage(str(self.studies / "p1_v1.dcm"))
        # the requested image's own grid and geometry (not the reference's 300 x 260)
        self.assertEqual(img.GetSize(), ref.GetSize())
        np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-6)
        self.assertEqual(arr.dtype, np.uint8)
        self.assertEqual(set(np.unique(arr)), {0, 1})
        dice = _dice(arr.reshape(self.expected["p1_v1"].shape), self.expected["p1_v1"])
        print(f"\np1_v1 (DICOM, 4 deg + (8, -6) px, 300x260 -> 320x280): Dice {dice:.4f}, request {elapsed:.2f} s")
        self.assertGreater(dice, 0.9)
        status, body, _ = self._post("/infer/jrs_lung?image=p1_v1&output=json")
        self.assertEqual(status, 200)
        params = json.loads(body)
        self.assertEqual(params["reference_image"], "p1_v0")  # the earliest labelled visit, not p1_v2
        self.assertEqual(params["labelled_visits"], ["p1_v0", "p1_v2"])
        self.assertEqual(params["shape"], [320, 280])
        self.assertGreater(params["dice_reference_vs_registered_mask"], 0.9)
        # a request may choose another rule: the latest labelled visit is p1_v2
        status, body, _ = self._post("/infer/jrs_lung?image=p1_v1&output=json", {"reference_choice": "latest"})
        self.assertEqual((status, json.loads(body)["reference_image"]), (200, "p1_v2"))

    def test_png_followup_with_json_mapping(self):
        arr, img = self._mask("p2_b")
        self.assertEqual(img.GetSize()[:2], (312, 360))  # ITK (cols, rows) of the 360 x 312 PNG
        dice = _dice(arr.reshape(self.expected["p2_b"].shape), self.expected["p2_b"])
        print(f"\np2_b (PNG + visits.json, (9, -7) px, 300x260 -> 360x312): Dice {dice:.4f}")
        self.assertGreater(dice, 0.9)

    def test_no_labelled_reference(self):
        status, body, headers = self._post("/infer/jrs_lung?image=p3_v1")
        self.assertEqual(status, 404)
        self.assertIn("application/json", headers.get("content-type", headers.get("Content-Type", "")))
        detail = json.loads(body)["detail"]
        self.assertIn("no labelled reference for image 'p3_v1'", detail)
        self.assertIn("patient 'P3'", detail)
        status, body, _ = self._post("/infer/jrs_lung?image=not_there")
        self.assertEqual(status, 404)
        self.assertIn("not in the datastore", json.loads(body)["detail"])

    def test_invalid_parameters(self):
        status, body, _ = self._post("/infer/jrs_lung?image=p1_v1", {"reference_choice": "first"})
        self.assertEqual(status, 422)
        self.assertIn("`reference_choice` must be one of ('earliest', 'latest', 'nearest'), got 'first'",
                      json.loads(body)["detail"])
        status, body, _ = self._post("/infer/jrs_lung?image=p1_v1", {"result_extension": ".dcm"})
        self.assertEqual(status, 422)
        self.assertIn("`result_extension` must be one of", json.loads(body)["detail"])


if __name__ == "__main__":
    unittest.main()
