# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""End to end: ``monai-jrs pacs`` against a real Orthanc (DICOMweb, HTTP basic authentication) started here.

P1 has three visits (DX MONOCHROME2 with ImagerPixelSpacing, CR MONOCHROME1 without spacing, DX with PixelSpacing) and
a lung label SEG on the first; a fourth study holds a corrupt DX. The command registers the follow-ups and stores
per follow-up a SEG, an overlay SC and a temporal-subtraction SC; everything is read back from the PACS and checked
(Dice of the SEG against the known deformation, references to the sources, grids). Then: a second run stores nothing;
bad requests (unknown patient, no labelled visit, wrong password, PACS down, credentials in the URL) fail with a clear
message and exit status 2, and no credential appears in any output.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

requests = pytest.importorskip("requests")
pytest.importorskip("dicomweb_client", reason="the pacs extra is not installed (pip install .[pacs])")

import pydicom  # noqa: E402

from monai_jrs.data.dicom import read_dicom_seg, write_dicom_seg  # noqa: E402
from monai_jrs.data.dicomweb import DicomWebCredentials, DicomWebStore  # noqa: E402
from monai_jrs.data.testing import make_dx_dicom  # noqa: E402
from monai_jrs.utils.net import free_port  # noqa: E402
from tests.monailabel.server import REPO, MonaiLabelServer  # noqa: E402
from tests.pacs.orthanc import Orthanc, orthanc_unavailable  # noqa: E402
from tests.pacs.studies import make_pacs_studies  # noqa: E402

_SKIP = orthanc_unavailable()
USER, PASSWORD = "radiology", "c0rrect-h0rse-battery"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


@pytest.mark.slow
@unittest.skipIf(_SKIP is not None, _SKIP or "")
class TestPacsCommand(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        cls.visits = make_pacs_studies(root / "dicom")
        cls.pacs = Orthanc(users={USER: PASSWORD})
        cls.pacs.start()
        for v in cls.visits.values():
            cls.pacs.upload(v.path)
        # the annotated first visit: a label SEG in its study (as MONAI Label or Slicer would have stored it)
        v0 = cls.visits["p1_v0"]
        cls.pacs.upload(write_dicom_seg(v0.mask, v0.path, root / "label.dcm", series_description="Lung label"))
        # a corrupt DX of P1 (pixel data cut short) in a study of its own
        bad = make_dx_dicom(root / "dicom" / "p1_bad.dcm", np.zeros((64, 48), np.uint16), patient_id="P1",
                            study_date="20240301")
        ds = pydicom.dcmread(bad)
        ds.PixelData = ds.PixelData[:100]
        ds.save_as(bad)
        cls.pacs.upload(bad)
        cls.bad_series = str(ds.SeriesInstanceUID)
        cls.env = {**os.environ, "PYTHONPATH": str(REPO), "MONAI_JRS_CACHE": str(root / "cache"),
                   "MONAI_JRS_DICOMWEB_USERNAME": USER, "MONAI_JRS_DICOMWEB_PASSWORD": PASSWORD}
        cls.store = DicomWebStore(cls.pacs.dicomweb, credentials=DicomWebCredentials(USER, PASSWORD, source="test"),
                                  cache_dir=root / "test_cache")

    @classmethod
    def tearDownClass(cls):
        cls.pacs.stop()
        cls.tmp.cleanup()

    def _cli(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "monai_jrs.apps.cli", "pacs", *args, "--no-progress"],
                           capture_output=True, text=True, env=env or self.env, timeout=600)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)  # never a credential in any output
        return r

    def _cli_here(self, *args: str, env: dict | None = None) -> tuple[int, str, str]:
        """``monai-jrs pacs ARGS`` in this process: (exit status, stdout, stderr)."""
        from monai_jrs.apps.cli import main

        out, err = io.StringIO(), io.StringIO()
        with mock.patch.dict(os.environ, {**self.env, **(env or {})}), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            status = main(["pacs", *args, "--no-progress"])
        self.assertNotIn(PASSWORD, out.getvalue() + err.getvalue())
        return status, out.getvalue(), err.getvalue()

    def _derived(self, study_uid: str) -> dict[int, pydicom.Dataset]:
        """The derived instances (series 901-903) of a study, read back from the PACS."""
        out = {}
        for rec in self.store.series(study_uid=study_uid):
            if rec.series_number in (901, 902, 903):
                f = self.store.download(study_uid, rec.series_uid, folder="readback")
                out[rec.series_number] = pydicom.dcmread(f)
        return out

    def test_1_register_store_and_rerun(self):
        n0 = self.pacs.count_instances()
        local = Path(self.tmp.name) / "local"
        r = self._cli("--url", self.pacs.dicomweb, "--patient", "P1", "--output", str(local))
        print("\n" + r.stdout + r.stderr[-2000:])
        self.assertEqual(r.returncode, 1, r.stderr)  # the corrupt visit failed, the others were stored
        self.assertIn(f"{self.bad_series}  failed", r.stdout)
        self.assertEqual(self.pacs.count_instances(), n0 + 6)  # 3 objects x 2 follow-ups
        v0 = self.visits["p1_v0"]
        v0_sop = v0.sop_uid
        for name in ("p1_v1", "p1_v2"):
            v = self.visits[name]
            # --output keeps the monai-jrs register files of each follow-up
            self.assertTrue((local / v.series_uid / "subtraction.nii.gz").is_file())
            self.assertTrue((local / v.series_uid / "metrics.json").is_file())
            derived = self._derived(v.study_uid)
            self.assertEqual(sorted(derived), [901, 902, 903])
            seg, overlay, sub = derived[901], derived[902], derived[903]
            # the lung SEG of the follow-up, on its grid, referencing it
            buf = Path(self.tmp.name) / f"{name}_seg.dcm"
            seg.save_as(buf)
            mask, meta = read_dicom_seg(buf)
            self.assertEqual(meta["source_sop_instance_uid"], v.sop_uid)
            dice = _dice(mask, v.mask)
            print(f"{name}: SEG Dice {dice:.4f} against the known deformation")
            self.assertGreater(dice, 0.9)
            # the overlay: RGB on the follow-up grid, same study, referencing the follow-up
            self.assertEqual((overlay.Modality, overlay.PhotometricInterpretation), ("OT", "RGB"))
            self.assertEqual(overlay.pixel_array.shape, (*v.mask.shape, 3))
            self.assertEqual(overlay.StudyInstanceUID, v.study_uid)
            self.assertIn(v.sop_uid, {i.ReferencedSOPInstanceUID for i in overlay.SourceImageSequence})
            # the subtraction: MONOCHROME2 on the reference grid, referencing both visits
            self.assertEqual(sub.PhotometricInterpretation, "MONOCHROME2")
            self.assertEqual(sub.pixel_array.shape, v0.mask.shape)
            self.assertEqual({i.ReferencedSOPInstanceUID for i in sub.SourceImageSequence}, {v.sop_uid, v0_sop})
            # the same phantom, only moved: inside the lungs the subtraction is close to mid grey
            px = sub.pixel_array.astype(float)
            mid = 128 if sub.BitsStored == 8 else 32768
            inner = v0.mask.astype(bool)
            self.assertLess(np.median(np.abs(px[inner] - mid)), 0.1 * mid)
        # a second run computes and stores nothing
        r = self._cli("--url", self.pacs.dicomweb, "--patient", "P1")
        self.assertEqual(self.pacs.count_instances(), n0 + 6)
        self.assertEqual(r.stdout.count("present"), 2, r.stdout)
        # one study only
        r = self._cli("--url", self.pacs.dicomweb, "--study", self.visits["p1_v2"].study_uid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("present"), 1, r.stdout)
        self.assertEqual(self.pacs.count_instances(), n0 + 6)
        # the automatic SEGs never become a reference: "latest" still picks the annotated first visit
        r = self._cli("--url", self.pacs.dicomweb, "--patient", "P1", "--reference", "latest", "--dry-run")
        self.assertIn(f"reference series {v0.series_uid}", r.stdout)

    def test_3_ohif_shows_the_results(self):
        """OHIF served by MONAI Label (app on this PACS) lists P1's follow-up study and displays the overlay SC."""
        pytest.importorskip("monailabel", reason="the monailabel extra is not installed (pip install .[monailabel])")
        from tests.pacs.ohif import browser_unavailable, check_ohif

        reason = browser_unavailable()
        if reason:
            self.skipTest(reason)
        v = self.visits["p1_v1"]
        derived = {rec.series_number: rec.series_uid for rec in self.store.series(study_uid=v.study_uid)}
        if 902 not in derived:
            self.skipTest("test_1 did not store the overlay")
        shots = os.environ.get("MONAI_JRS_SCREENSHOTS")
        # the server's OHIF proxy and its datastore share MONAI Label's credential variables
        env = {"MONAI_JRS_CACHE": str(Path(self.tmp.name) / "server_cache"),
               "MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": PASSWORD}
        with MonaiLabelServer(self.pacs.dicomweb, env=env) as server:
            found = check_ohif(server.url, v.study_uid, "P1", derived[902], Path(shots) if shots else None,
                               row_text="Jun-10-2023")  # P1's visit of 2023-06-10 (OHIF's date format)
            log = server.log_text()
        self.assertNotIn(PASSWORD, log)
        self.assertIn("P1", found["study_list_row"])
        shown = found["series"]["displayed"]
        self.assertEqual([d["SeriesInstanceUID"] for d in shown], [derived[902]])
        self.assertGreater(found["series"]["canvas"]["colour"], 0.001)  # the yellow lung contour came through
        print(f"\nOHIF: {found['timings_s']}")

    def test_2_bad_requests(self):
        url = self.pacs.dicomweb
        empty_netrc = Path(self.tmp.name) / "empty_netrc"
        empty_netrc.write_text("")
        cases = [
            (("--url", url, "--patient", "NOBODY"), None, "has no DX/CR series of patient 'NOBODY'"),
            (("--url", url, "--study", "1.2.3.4"), None, "has no DX/CR series in study '1.2.3.4'"),
            (("--url", url, "--patient", "P2"), None, "no labelled reference"),
            (("--url", url, "--patient", "P1"), {"MONAI_JRS_DICOMWEB_PASSWORD": "wrong"}, "HTTP 401"),
            (("--url", url, "--patient", "P1"), {"MONAI_JRS_DICOMWEB_USERNAME": "", "MONAI_JRS_DICOMWEB_PASSWORD": "",
                                                 "MONAI_JRS_NETRC": str(empty_netrc)}, "HTTP 401 Unauthorized with no cred"),
            (("--url", f"http://127.0.0.1:{free_port()}/dicom-web", "--patient", "P1"), None, "is not reachable"),
            (("--url", url.replace("http://", f"http://{USER}:{PASSWORD}@"), "--patient", "P1"), None,
             "credentials in the DICOMweb URL are refused"),
        ]
        n = self.pacs.count_instances()
        for i, (args, env, text) in enumerate(cases):
            with self.subTest(args=args[2:], env=env):
                if i == 3:  # one in a process of its own: the real command line, its real output
                    r = self._cli(*args, env={**self.env, **(env or {})})
                    status, out, err = r.returncode, r.stdout, r.stderr
                else:  # the others in this process (each new interpreter costs ~10 s of imports)
                    status, out, err = self._cli_here(*args, env=env)
                self.assertEqual(status, 2, out + err)
                self.assertIn(text, err)
        self.assertEqual(self.pacs.count_instances(), n)  # nothing stored by a failed request


if __name__ == "__main__":
    unittest.main()
