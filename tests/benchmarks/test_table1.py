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
"""The Table-1 benchmark: method wrappers (field conventions), scoring, baseline training and a real end-to-end run."""

from __future__ import annotations

import csv
import importlib.metadata
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_jrs.data.embedded import generate_embedded_dataset
from monai_jrs.data.testing import make_synthetic_xray
from monai_jrs.utils.conventions import warp

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import baselines  # noqa: E402
import methods  # noqa: E402
import table1  # noqa: E402

def _has_elastix() -> bool:
    try:
        importlib.metadata.version("itk-elastix")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


HAS_ELASTIX = _has_elastix()


def _shifted_pair(size=64, shift=(3.0, -5.0)):
    image, mask = make_synthetic_xray((size, size), seed=0)
    ref = torch.from_numpy(image.astype(np.float32))[None, None]
    ref = ref / ref.max()
    applied = torch.zeros(1, 2, size, size)
    applied[:, 0], applied[:, 1] = shift
    flt = warp(ref, -applied)  # ref(p) = flt(p + applied)
    flt_mask = warp(torch.from_numpy(mask.astype(np.float32))[None, None], -applied, mode="nearest",
                    padding_mode="zeros")
    return {"reference": ref, "floating": flt, "reference_mask": torch.from_numpy(mask.astype(np.float32))[None, None],
            "floating_mask": flt_mask, "ddf_applied": applied}


class TestScore(unittest.TestCase):
    def test_exact_field_scores_perfectly(self):
        pair = _shifted_pair()
        row = table1.score(pair, {"ddf": pair["ddf_applied"], "floating_mask": pair["floating_mask"]})
        self.assertAlmostEqual(row["tre_mean"], 0.0, places=6)
        self.assertAlmostEqual(row["folding_pct"], 0.0, places=6)
        self.assertGreater(row["dice"], 99.0)
        self.assertEqual(row["seg_dice"], 100.0)
        before = table1.score(pair, methods.Identity()(pair["reference"], pair["floating"], pair["reference_mask"]))
        self.assertAlmostEqual(before["tre_mean"], float(np.hypot(3.0, 5.0)), places=4)
        self.assertLess(before["dice"], row["dice"])

    def test_segmentation_only_method_has_no_field_metrics(self):
        pair = _shifted_pair()
        row = table1.score(pair, {"floating_mask": pair["floating_mask"]})
        self.assertEqual(set(row), {"seg_dice"})

    def test_summary_marks_best(self):
        rows = [
            {"method": "before", "protocol": "paper", "label": "normal", "dice": 50.0, "seconds": 0.0},
            {"method": "A", "protocol": "paper", "label": "normal", "dice": 90.0, "seconds": 2.0},
            {"method": "B", "protocol": "paper", "label": "normal", "dice": 95.0, "seconds": 1.0},
        ]
        md = table1.summarize(rows, ["before", "A", "B"])
        self.assertIn("### paper protocol, normal (1 pairs)", md)
        self.assertIn("| B | **95.0** |", md)
        self.assertIn("| before | 50.0 |", md)


class TestMethodConventions(unittest.TestCase):
    def test_carry_mask_back_inverts_the_field(self):
        pair = _shifted_pair()
        carried = methods.carry_mask_back(pair["reference_mask"], pair["ddf_applied"])
        inter = (carried * pair["floating_mask"]).sum()
        dice = 2 * inter / (carried.sum() + pair["floating_mask"].sum())
        self.assertGreater(dice.item(), 0.99)

    def test_voxelmorph_field_follows_our_convention(self):
        net = baselines.voxelmorph_network().eval()
        flt, ref = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
        with torch.no_grad():
            warped, ddf = net(flt, ref)
        # MONAI's VoxelMorph warps with zero padding; inside the image the sampling is the same either way
        torch.testing.assert_close(warped, warp(flt, ddf, padding_mode="zeros"), atol=1e-5, rtol=0)

    @unittest.skipUnless(HAS_ELASTIX, "itk-elastix not installed")
    def test_elastix_field_follows_our_convention(self):
        pair = _shifted_pair(size=96)
        out = methods.ElastixMethod(threads=1)(pair["reference"], pair["floating"], pair["reference_mask"])
        centre = out["ddf"][0, :, 30:66, 30:66].mean(dim=(1, 2))
        torch.testing.assert_close(centre, torch.tensor([3.0, -5.0]), atol=0.1, rtol=0)


@pytest.mark.slow
class TestEndToEnd(unittest.TestCase):
    """Baselines trained for one epoch and the whole report, on a 4-patient 32-px embedded dataset."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        cls.data = generate_embedded_dataset(root / "data", num_patients=4, num_visits=2, image_size=32, progress=False)
        cls.weights = root / "weights"
        baselines.train_voxelmorph(str(cls.data.parent), cls.weights, torch.device("cpu"), max_epochs=1, image_size=32)
        baselines.train_voxelmorph(str(cls.data.parent), cls.weights, torch.device("cpu"), max_epochs=1, image_size=32,
                                   paper_protocol_weight=0.0, tag="_followup")
        baselines.train_unet(str(cls.data.parent), cls.weights, torch.device("cpu"), max_epochs=1, image_size=32)
        # JRS-NoSeg: any generator checkpoint of the bundle's architecture will do for the plumbing
        (cls.weights / "noseg.pt").write_bytes((BENCH.parent / "bundle" / "models" / "model.pt").read_bytes())

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_baseline_checkpoints(self):
        for name in ("voxelmorph.pt", "voxelmorph_followup.pt", "unet.pt"):
            ckpt = torch.load(self.weights / name, map_location="cpu", weights_only=True)
            self.assertEqual(ckpt["epochs"], 1)
            self.assertIn("model", ckpt)

    def test_report(self):
        out = Path(self.tmp.name) / "report"
        names = ["before", "JRS-Net", "JRS-Net+IO", "JRS-NoSeg", "VoxelMorph", "VoxelMorph-FU", "UNet"]
        if HAS_ELASTIX:
            names.append("elastix")
        cmd = [sys.executable, str(BENCH / "table1.py"), "--dataset_dir", str(self.data.parent), "--output", str(out),
               "--weights", str(self.weights), "--limit", "2", "--repeats", "1", "--threads", "1",
               "--image_size", "32", "--methods", *names]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        with open(out / "table1.csv") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), len(names) * 2 * 2)  # methods x protocols x pairs
        self.assertEqual({r["method"] for r in rows}, set(names))
        # at 32 px the paper protocol's 25-40 px shifts can move every lung pixel out of view: TRE is then NaN
        jrs = [r for r in rows if r["method"] == "JRS-Net" and r["protocol"] == "followup"]
        self.assertTrue(all(0 <= float(r["dice"]) <= 100 and float(r["tre_mean"]) >= 0 for r in jrs))
        self.assertTrue(all(r["tre_mean"] == "" for r in rows if r["method"] == "UNet"))
        md = (out / "table1.md").read_text()
        for heading in ("### paper protocol, all (2 pairs)", "### followup protocol, all (2 pairs)"):
            self.assertIn(heading, md)
        self.assertIn("| JRS-Net+IO |", md)
        png = np.asarray(Image.open(out / "table1_examples.png"))
        self.assertEqual(png.ndim, 3)
        self.assertGreater(png.shape[1], 32 * 4)


if __name__ == "__main__":
    unittest.main()
