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
"""The real-radiograph development benchmark: pairs (ground-truth convention, ranges), exposure change, the
two-ellipse mask, the archive readers (on archives built here: no network), scoring and one end-to-end run."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from parameterized import parameterized
from PIL import Image
from scipy import ndimage

from monai_jrs.data.testing import make_chest_phantom, make_dx_dicom
from monai_jrs.metrics import inside_fov
from monai_jrs.utils.conventions import warp

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import real_dev  # noqa: E402


def _phantom(size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth ``(1, size, size)`` chest phantom in [0, 1] and its ``(1, size, size)`` lung mask."""
    img, mask = make_chest_phantom((size, size), smooth=True, noise=0.0, edge_softness=8.0, seed=seed)
    return torch.from_numpy(img.astype(np.float32))[None], torch.from_numpy(mask.astype(np.float32))[None]


def _write_png16(path: Path, image: torch.Tensor) -> Path:
    Image.fromarray(np.round(image.reshape(image.shape[-2:]).numpy() * 65535).astype(np.uint16)).save(path)
    return path


class TestPairs(unittest.TestCase):
    @parameterized.expand([("followup", 64, 0), ("followup", 96, 3), ("paper", 64, 1), ("paper", 96, 2)])
    def test_ground_truth_convention(self, protocol, size, seed):
        """floating(p + ddf_applied(p)) = reference(p) inside the field of view, away from the image border."""
        ref, mask = _phantom(size)
        flt, flt_mask, ddf, _ = real_dev.deform(ref, mask, protocol, seed)
        self.assertEqual(tuple(ddf.shape), (2, size, size))
        back = warp(flt[None], ddf[None], padding_mode="zeros")[0]
        # interior: the true correspondence lies at least 2 px inside the floating image
        inside = inside_fov(ddf[None] + 2.0) & inside_fov(ddf[None] - 2.0)
        err = (back - ref).abs()[inside[0]]
        self.assertGreater(inside.float().mean().item(), 0.2)
        self.assertLess(err.mean().item(), 0.01)
        self.assertLess(err.max().item(), 0.15)
        # the floating mask is the reference mask carried the same way
        back_mask = (warp(flt_mask[None], ddf[None], padding_mode="zeros") > 0.5)[0].float()
        agree = (back_mask == mask)[inside[0]].float().mean().item()
        self.assertGreater(agree, 0.97)

    @parameterized.expand([(p, s) for p in ("followup", "paper") for s in (64, 128)])
    def test_ranges_are_respected(self, protocol, size):
        ref, mask = _phantom(size)
        factor = size / real_dev.REFERENCE_GRID
        cfg = real_dev.PROTOCOLS[protocol]
        for seed in range(6):
            _, _, _, p = real_dev.deform(ref, mask, protocol, seed)
            lo, hi = cfg["rotation_range"]
            self.assertTrue(lo - 1e-6 <= abs(p["rotation_deg"]) <= hi + 1e-6, p)
            lo, hi = cfg["translation_range"]
            self.assertTrue(lo * factor - 1e-4 <= p["shift_px"] <= hi * factor + 1e-4, p)
            lo, hi = cfg["scale_range"]
            self.assertTrue(lo - 1e-9 <= abs(p["scale"] - 1.0) <= hi + 1e-9, p)
            lo, hi = cfg["elastic_range"]
            self.assertLessEqual(p["elastic_max_px"], hi * factor + 1e-3)
            self.assertGreaterEqual(p["elastic_max_px"], lo * factor - 1e-3)

    def test_protocol_ranges_match_the_brief(self):
        fu, paper = real_dev.PROTOCOLS["followup"], real_dev.PROTOCOLS["paper"]
        self.assertEqual((fu["rotation_range"], fu["translation_range"]), ((2.0, 10.0), (5.0, 25.0)))
        self.assertEqual(fu["scale_range"], (0.0, 0.07))
        self.assertLessEqual(fu["elastic_range"][1], 8.0)
        self.assertEqual((paper["rotation_range"], paper["translation_range"]), ((20.0, 180.0), (25.0, 40.0)))
        self.assertLessEqual(paper["elastic_range"][1], 15.0)

    def test_rotation_takes_both_signs(self):
        ref, mask = _phantom(64)
        signs = {math.copysign(1.0, real_dev.deform(ref, mask, "followup", s)[3]["rotation_deg"]) for s in range(12)}
        self.assertEqual(signs, {-1.0, 1.0})

    def test_pairs_are_seeded(self):
        ref, mask = _phantom(64)
        source = {"name": "x", "reference": ref[None], "reference_mask": mask[None]}
        a = real_dev.make_pairs(source, "followup", 2, seed=5)
        b = real_dev.make_pairs(source, "followup", 2, seed=5)
        c = real_dev.make_pairs(source, "followup", 2, seed=6)
        torch.testing.assert_close(a[1]["floating"], b[1]["floating"])
        torch.testing.assert_close(a[1]["ddf_applied"], b[1]["ddf_applied"])
        self.assertFalse(torch.allclose(a[0]["ddf_applied"], a[1]["ddf_applied"]))
        self.assertFalse(torch.allclose(a[0]["ddf_applied"], c[0]["ddf_applied"]))
        self.assertEqual(tuple(a[0]["floating"].shape), (1, 1, 64, 64))
        self.assertEqual(tuple(a[0]["ddf_applied"].shape), (1, 2, 64, 64))
        # seeds do not depend on which other images are in the run
        self.assertEqual(real_dev.pair_seed(0, "rg1", "paper", 3), real_dev.pair_seed(0, "rg1", "paper", 3))
        self.assertNotEqual(real_dev.pair_seed(0, "rg1", "paper", 3), real_dev.pair_seed(0, "montgomery", "paper", 3))


class TestExposure(unittest.TestCase):
    @parameterized.expand([(0,), (1,), (7,)])
    def test_exposure_change(self, seed):
        ref, _ = _phantom(64)
        out, params = real_dev.change_exposure(ref, seed)
        self.assertEqual(out.shape, ref.shape)
        self.assertGreaterEqual(out.min().item(), 0.0)
        self.assertLessEqual(out.max().item(), 1.0)
        self.assertGreater((out - ref).abs().mean().item(), 1e-3)
        for key, (lo, hi) in (("gamma", real_dev.EXPOSURE["gamma_range"]),
                              ("contrast", real_dev.EXPOSURE["contrast_range"]),
                              ("noise_std", real_dev.EXPOSURE["noise_std_range"])):
            self.assertTrue(lo <= params[key] <= hi, (key, params[key]))
        again, _ = real_dev.change_exposure(ref, seed)
        torch.testing.assert_close(out, again)

    def test_gamma_range(self):
        self.assertEqual(real_dev.EXPOSURE["gamma_range"], (0.7, 1.4))


class TestTwoEllipseMask(unittest.TestCase):
    @parameterized.expand([
        ("phantom64", 64, 0.0), ("phantom128", 128, 0.0), ("phantom_noisy", 96, 0.05), ("constant", 64, None),
    ])
    def test_mask_is_plausible(self, _, size, noise):
        if noise is None:
            image = torch.full((1, size, size), 0.5)  # nothing to find: the prior ellipses
        else:
            img, _ = make_chest_phantom((size, size), noise=noise, seed=1)
            image = torch.from_numpy(img.astype(np.float32))[None]
        mask, info = real_dev.two_ellipse_lung_mask(image)
        self.assertEqual(tuple(mask.shape), (1, size, size))
        self.assertTrue(set(mask.unique().tolist()) <= {0.0, 1.0})
        self.assertGreater(mask.mean().item(), 0.05)
        self.assertLess(mask.mean().item(), 0.6)
        labels, n = ndimage.label(mask[0].numpy() > 0.5)
        self.assertEqual(n, 2)
        centres = [np.nonzero(labels == i)[1].mean() for i in (1, 2)]
        self.assertLess(min(centres), info["midline"])
        self.assertGreater(max(centres), info["midline"])
        if noise is None:
            self.assertEqual([e["source"] for e in info["ellipses"]], ["prior", "prior"])

    def test_mask_overlaps_the_phantom_lungs(self):
        img, truth = make_chest_phantom((128, 128), noise=0.02, seed=0)
        mask, info = real_dev.two_ellipse_lung_mask(torch.from_numpy(img.astype(np.float32))[None])
        self.assertEqual([e["source"] for e in info["ellipses"]], ["detected", "detected"])
        m, t = mask[0].numpy() > 0.5, truth > 0
        dice = 2 * (m & t).sum() / (m.sum() + t.sum())
        self.assertGreater(dice, 0.7)

    def test_mirrored_when_one_side_is_missing(self):
        img, _ = make_chest_phantom((96, 96), noise=0.0, seed=0)
        img[:, 50:] = img[:, 50:].max()  # the image-right lung field disappears
        _, info = real_dev.two_ellipse_lung_mask(torch.from_numpy(img.astype(np.float32))[None])
        self.assertEqual(info["ellipses"][0]["source"], "detected")
        self.assertIn(info["ellipses"][1]["source"], ("mirrored", "detected"))

    def test_ellipse_mask_orientation(self):
        e = real_dev.ellipse_mask((41, 41), (20, 20), (15, 5), 0.0)
        self.assertTrue(e[6, 20] and not e[20, 6])  # long along rows
        e = real_dev.ellipse_mask((41, 41), (20, 20), (15, 5), math.pi / 2)
        self.assertTrue(e[20, 6] and not e[6, 20])  # rotated onto the columns


def _cr_dicom_bytes(tmp: Path, stored: np.ndarray) -> bytes:
    """A MONOCHROME1 CR, 15 of 16 bits, PixelSpacing 0.000\\0.000, window 15000/30000, as bytes."""
    import pydicom

    path = make_dx_dicom(tmp / "cr.dcm", stored, photometric="MONOCHROME1", imager_spacing=None, bits=16,
                         window=(15000.0, 30000.0), modality="CR")
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = 15, 14
    ds.PixelSpacing = ["0.000", "0.000"]
    ds.save_as(path)
    return path.read_bytes()


class TestArchives(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="rdev_test_")
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def test_monochrome1_dicom_with_zero_spacing_from_a_wheel(self):
        stored = np.full((40, 36), 30000, dtype=np.uint16)
        stored[10:30, 5:15] = 2000  # MONOCHROME1: low stored values are bright (bone), high ones dark (air)
        stored[0, 0], stored[-1, -1] = 0, 32767
        wheel = self.tmp / real_dev.PYDICOM_DATA_WHEEL
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(real_dev.RG1_MEMBER, _cr_dicom_bytes(self.tmp, stored))
            zf.writestr("pydicom_data-1.0.0.dist-info/LICENSE", "MIT")
        image, meta = real_dev.load_image_from_zip(wheel, real_dev.RG1_MEMBER)
        self.assertEqual(tuple(image.shape), (1, 40, 36))
        self.assertIsNone(meta["spacing"])  # 0.000 is "unknown", never 0
        self.assertEqual(meta["photometric"], "MONOCHROME1")
        self.assertGreaterEqual(image.min().item(), 0.0)
        self.assertLessEqual(image.max().item(), 1.0)
        # MONOCHROME1: small stored values are bright once inverted
        self.assertGreater(image[0, 20, 10].item(), image[0, 20, 30].item())
        self.assertTrue(any("spacing" in w for w in meta["warnings"]))
        self.assertIn(real_dev.RG1_MEMBER, meta["filename"])
        self.assertEqual(list(self.tmp.glob("**/*.dcm")), [self.tmp / "cr.dcm"])  # no copy left behind

    def test_png_from_a_zip_sdist(self):
        arr = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (52, 1))
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        sdist = self.tmp / "bob.med.tb-1.0.2.zip"
        with zipfile.ZipFile(sdist, "w") as zf:
            zf.writestr(real_dev.MONTGOMERY_MEMBER, buf.getvalue())
        image, meta = real_dev.load_image_from_zip(sdist, real_dev.MONTGOMERY_MEMBER)
        self.assertEqual(tuple(image.shape), (1, 52, 64))
        self.assertLess(image[0, 0, 0].item(), image[0, 0, -1].item())
        grid = real_dev.to_working_grid(image, 32)
        self.assertEqual(tuple(grid.shape), (1, 32, 32))
        image2, _ = real_dev.load_local_image(f"{sdist}::{real_dev.MONTGOMERY_MEMBER}")
        torch.testing.assert_close(image, image2)

    def test_reader_errors(self):
        sdist = self.tmp / "a.zip"
        with zipfile.ZipFile(sdist, "w") as zf:
            zf.writestr("x.txt", "x")
        with self.assertRaises(FileNotFoundError):
            real_dev.read_zip_member(sdist, "missing.png")
        with self.assertRaises(FileNotFoundError):
            real_dev.read_zip_member(self.tmp / "none.zip", "x.txt")
        (self.tmp / "bad.zip").write_bytes(b"not a zip")
        with self.assertRaises(ValueError):
            real_dev.read_zip_member(self.tmp / "bad.zip", "x.txt")

    def test_index_lookup_and_download_are_checked(self):
        page = ('<a href="https://files.pythonhosted.org/packages/aa/bob.med.tb-1.0.1.zip#sha256=00">1.0.1</a>'
                '<a href="https://files.pythonhosted.org/packages/bd/bob.med.tb-1.0.2.zip#sha256=abc">1.0.2</a>')
        payload = b"PK fake sdist"

        def fake_urlopen(request, timeout=None):
            url = request if isinstance(request, str) else request.full_url
            return io.BytesIO(page.encode() if url.endswith("/bob-med-tb/") else payload)

        with mock.patch.object(real_dev.urllib.request, "urlopen", side_effect=fake_urlopen):
            url, digest = real_dev.find_distribution_url("bob-med-tb", "bob.med.tb-1.0.2.zip")
            self.assertEqual((url, digest), ("https://files.pythonhosted.org/packages/bd/bob.med.tb-1.0.2.zip", "abc"))
            with self.assertRaises(FileNotFoundError):
                real_dev.find_distribution_url("bob-med-tb", "bob.med.tb-9.zip")
            with self.assertRaises(ValueError):  # the index's digest differs from the pinned one
                real_dev.fetch_bob_med_tb_sdist(self.tmp / "cache")
            import hashlib

            with mock.patch.object(real_dev, "BOB_SHA256", hashlib.sha256(payload).hexdigest()), \
                    mock.patch.object(real_dev, "find_distribution_url", return_value=(url, None)):
                path = real_dev.fetch_bob_med_tb_sdist(self.tmp / "cache")
                self.assertEqual(path.read_bytes(), payload)
        (self.tmp / "cache" / real_dev.BOB_SDIST).write_bytes(b"tampered")
        with self.assertRaises(ValueError):
            real_dev.fetch_bob_med_tb_sdist(self.tmp / "cache")

    def test_cached_wheel_is_not_downloaded_again(self):
        cache = self.tmp / "cache"
        cache.mkdir()
        (cache / real_dev.PYDICOM_DATA_WHEEL).write_bytes(b"wheel")
        digest = real_dev.sha256_file(cache / real_dev.PYDICOM_DATA_WHEEL)
        with mock.patch.object(real_dev.subprocess, "run") as run, \
                mock.patch.object(real_dev, "PYDICOM_DATA_SHA256", digest):
            self.assertEqual(real_dev.fetch_pydicom_data_wheel(cache), cache / real_dev.PYDICOM_DATA_WHEEL)
            run.assert_not_called()

    @parameterized.expand([
        (["a=x.png"], {"a": "x.png"}),
        (["a=b.zip::m/x.png", "c=y"], {"a": "b.zip::m/x.png", "c": "y"}),
    ])
    def test_parse_image_files(self, specs, expected):
        self.assertEqual(real_dev.parse_image_files(specs), expected)

    @parameterized.expand([(["a"],), (["=x"],), (["a=x", "a=y"],)])
    def test_parse_image_files_errors(self, specs):
        with self.assertRaises(ValueError):
            real_dev.parse_image_files(specs)


def _shifted_pair(size: int = 64, shift=(3.0, -4.0)) -> dict:
    ref, mask = _phantom(size)
    applied = torch.zeros(1, 2, size, size)
    applied[:, 0], applied[:, 1] = shift
    flt = warp(ref[None], -applied)  # reference(p) = floating(p + applied)
    flt_mask = (warp(mask[None], -applied, padding_mode="zeros") > 0.5).float()
    return {"image": "toy", "protocol": "followup", "pair": 0, "params": {"rotation_deg": 0.0},
            "reference": ref[None], "reference_mask": mask[None], "floating": flt, "floating_mask": flt_mask,
            "ddf_applied": applied}


class _Exact:
    name = "exact"

    def __call__(self, reference, floating, reference_mask):
        return {"ddf": self.ddf, "timings": {"network_s": 0.0}}


class TestScore(unittest.TestCase):
    @parameterized.expand([((3.0, -4.0),), ((0.0, 6.0),)])
    def test_known_field(self, shift):
        pair = _shifted_pair(shift=shift)
        before = real_dev.score(pair, torch.zeros(1, 2, 64, 64))
        for key in ("tre_fov_mean", "tre_fov_p95", "tre_lung_mean", "tre_lung_p95"):
            self.assertAlmostEqual(before[key], math.hypot(*shift), places=4)
        exact = real_dev.score(pair, pair["ddf_applied"])
        for key in ("tre_fov_mean", "tre_fov_p95", "tre_lung_mean", "tre_lung_p95", "folding_pct"):
            self.assertAlmostEqual(exact[key], 0.0, places=6)
        self.assertGreater(exact["dice"], 98.0)
        self.assertLess(before["dice"], exact["dice"])
        self.assertLess(exact["fov_fraction"], 1.0)

    def test_run_rows_and_summary(self):
        pair = _shifted_pair()
        exact = _Exact()
        exact.ddf = pair["ddf_applied"]
        methods = [real_dev.Identity(), exact]
        with tempfile.TemporaryDirectory(prefix="rdev_test_") as tmp:
            rows = real_dev.run(methods, [pair], Path(tmp))
            self.assertTrue(any(Path(tmp).glob("registered_*.png")))
        self.assertEqual([r["method"] for r in rows], ["before", "exact"])
        self.assertAlmostEqual(rows[0]["tre_fov_mean"], 5.0, places=4)
        self.assertAlmostEqual(rows[1]["tre_fov_mean"], 0.0, places=6)
        self.assertIn("file_io_s", rows[1])
        self.assertNotIn("file_io_s", rows[0])
        self.assertEqual(rows[1]["stage_network_s"], 0.0)
        self.assertIn("outputs", pair)
        md = real_dev.summarize(rows, ["before", "exact"])
        self.assertIn("### followup protocol (1 pairs: toy)", md)
        self.assertIn("| exact | 0.00 | 0.00 | 0.00 | 0.00 |", md)
        speed_md, speed = real_dev.speed_summary(rows, {}, ["before", "exact"], "toy")
        self.assertIn("| exact |", speed_md)
        self.assertGreater(speed["exact"]["marginal"], 0.0)

    def test_failing_method_is_recorded(self):
        pair = _shifted_pair()

        class Broken:
            name = "broken"

            def __call__(self, *a):
                raise RuntimeError("no convergence")

        rows = real_dev.run([Broken()], [pair])
        self.assertTrue(rows[0]["status"].startswith("failed: RuntimeError"))
        self.assertIn("| broken | – |", real_dev.summarize(rows, ["broken"]))


class TestDRRSource(unittest.TestCase):
    def test_first_image_per_test_patient_with_true_mask(self):
        with tempfile.TemporaryDirectory(prefix="rdev_test_") as tmp:
            root = Path(tmp)
            (root / "images").mkdir()
            (root / "masks").mkdir()
            items = []
            for pid in ("P1", "P2"):
                for visit in (0, 1):
                    img, mask = make_chest_phantom((48, 48), seed=visit)
                    _write_png16(root / "images" / f"{pid}_v{visit}.png", torch.from_numpy(img.astype(np.float32)))
                    Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{pid}_v{visit}.png")
                    items.append({"patient_id": pid, "image": f"images/{pid}_v{visit}.png",
                                  "mask": f"masks/{pid}_v{visit}.png", "label": "normal", "visit": visit})
            doc = {"name": "toy", "description": "toy DRRs", "training": [], "validation": [], "test": items}
            (root / "datalist_images.json").write_text(json.dumps(doc))
            sources = real_dev.load_drr_sources(root, 32)
        self.assertEqual([s["name"] for s in sources], ["drr-P1", "drr-P2"])
        self.assertEqual(tuple(sources[0]["reference"].shape), (1, 1, 32, 32))
        self.assertEqual(sources[0]["mask_kind"], "true (dataset)")
        self.assertGreater(sources[0]["reference_mask"].sum().item(), 0)


@pytest.mark.slow
class TestEndToEnd(unittest.TestCase):
    """main() at 64 px on generated local images (one a zip member), 1 pair per protocol, without elastix."""

    def test_main(self):
        with tempfile.TemporaryDirectory(prefix="rdev_test_") as tmp:
            root = Path(tmp)
            a, _ = _phantom(80, seed=0)
            b, _ = _phantom(72, seed=1)
            png_a = _write_png16(root / "a.png", a[:, :, 4:76])  # 80 x 72: centre-cropped to a square
            buf = io.BytesIO()
            Image.fromarray(np.round(b[0].numpy() * 255).astype(np.uint8)).save(buf, format="PNG")
            with zipfile.ZipFile(root / "b.zip", "w") as zf:
                zf.writestr("data/b.png", buf.getvalue())
            out = root / "report"
            result = real_dev.main([
                "--output", str(out), "--pairs", "1", "--threads", "1", "--seed", "0", "--size", "64",
                "--image-file", f"a={png_a}", "--image-file", f"b={root / 'b.zip'}::data/b.png", "--no-elastix",
            ])
            md = (out / "real_dev.md").read_text()
            with open(out / "real_dev.csv") as f:
                rows = list(csv.DictReader(f))
            self.assertTrue((out / "real_dev_examples.png").is_file())
            self.assertTrue((out / "real_dev_masks.png").is_file())
        names = ["before", "monai-jrs --no-refine", "monai-jrs"]
        self.assertEqual(len(rows), 2 * 2 * len(names))
        self.assertEqual({r["method"] for r in rows}, set(names))
        self.assertEqual({r["image"] for r in rows}, {"a", "b"})
        self.assertEqual({r["protocol"] for r in rows}, {"followup", "paper"})
        self.assertTrue(all(r["status"] == "ok" for r in rows))
        for r in rows:
            self.assertTrue(math.isfinite(float(r["tre_lung_mean"])))
            self.assertTrue(math.isfinite(float(r["tre_fov_p95"])))
        for name in names:
            self.assertIn(f"| {name} |", md)
        self.assertIn("### followup protocol (2 pairs: a, b)", md)
        self.assertIn("### paper protocol", md)
        self.assertIn("marginal s / pair", md)
        self.assertIn("network_s", md)
        self.assertIn("--size 64", md)
        for name in ("monai-jrs --no-refine", "monai-jrs"):
            m = result["marginals"][name]
            self.assertEqual(m["n"], 2)
            self.assertTrue(math.isfinite(m["marginal"]))


if __name__ == "__main__":
    unittest.main()
