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
"""End-to-end tests of ``monai-jrs register`` and :func:`monai_jrs.apps.register` with the shipped bundle weights, on
generated PNG and DICOM DX inputs (MONOCHROME1/2, with and without spacing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from monai_jrs.apps import JRSRegistrar
from monai_jrs.data.testing import make_dx_dicom
from monai_jrs.data.writers import OUTPUT_FILES
from monai_jrs.metrics import compute_dice_score
from tests.networks.synthetic import synthetic_chest


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "monai_jrs.apps.cli", "register", *args, "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=600)


def _shifted(image: torch.Tensor, shift: tuple[float, float], size: tuple[int, int]) -> torch.Tensor:
    """``image`` (1, 1, H, W) resampled onto a ``size`` grid covering the same field of view, content moved by
    ``shift`` (rows, cols) reference pixels: floating(q) = image(q * s - shift) with s = (H-1)/(Hf-1)."""
    h, w = image.shape[2:]
    hf, wf = size
    r = torch.arange(hf, dtype=torch.float32) * (h - 1) / (hf - 1) - shift[0]
    c = torch.arange(wf, dtype=torch.float32) * (w - 1) / (wf - 1) - shift[1]
    rr, cc = torch.meshgrid(r, c, indexing="ij")
    grid = torch.stack((cc * 2 / (w - 1) - 1, rr * 2 / (h - 1) - 1), dim=-1)[None]
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _nii(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.mark.slow
class TestRegisterCLI(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        cls.inputs = root / "inputs"
        cls.inputs.mkdir()
        image, mask = synthetic_chest((300, 260))
        cls.ref_image, cls.ref_mask = image, mask
        Image.fromarray((image[0, 0].numpy() * 65535).astype(np.uint16)).save(cls.inputs / "ref.png")
        Image.fromarray(mask[0, 0].numpy().astype(np.uint8) * 255).save(cls.inputs / "ref_mask.png")
        # follow-ups: the same anatomy shifted, on a different (higher-resolution) grid
        cls.shift = (9.0, -7.0)
        flt = _shifted(image, cls.shift, (360, 312))
        cls.flt_mask = (_shifted(mask, cls.shift, (360, 312)) > 0.5).float()
        Image.fromarray((flt[0, 0].numpy() * 65535).astype(np.uint16)).save(cls.inputs / "flt.png")
        stored = np.round(flt[0, 0].numpy() * 4095).astype(np.uint16)
        cls.dicom_dir = cls.inputs / "dicom"
        make_dx_dicom(cls.dicom_dir / "flt_m2.dcm", stored, imager_spacing=(0.2, 0.2), instance_number=1)
        make_dx_dicom(cls.dicom_dir / "flt_m1.dcm", 4095 - stored, photometric="MONOCHROME1", imager_spacing=None,
                      instance_number=2)
        cls.listing = sorted(str(p) for p in cls.inputs.rglob("*"))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def tearDown(self):
        self.assertEqual(sorted(str(p) for p in self.inputs.rglob("*")), self.listing)  # inputs never touched

    def test_png_full_resolution_outputs(self):
        out = Path(self.tmp.name) / "out_png"
        proc = _cli("--reference", str(self.inputs / "ref.png"), "--reference-mask", str(self.inputs / "ref_mask.png"),
                    "--floating", str(self.inputs / "flt.png"), "--output", str(out))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        folder = out / "flt"
        self.assertEqual(sorted(os.listdir(folder)), sorted(OUTPUT_FILES))
        registered, ddf = _nii(folder / "registered.nii.gz"), _nii(folder / "ddf.nii.gz")
        self.assertEqual(registered.shape, (300, 260))  # reference grid, (rows, cols)
        self.assertEqual(ddf.shape, (300, 260, 1, 1, 2))
        self.assertEqual(_nii(folder / "registered_mask.nii.gz").shape, (300, 260))
        self.assertEqual(_nii(folder / "floating_mask.nii.gz").shape, (360, 312))  # floating grid
        subtraction = _nii(folder / "subtraction.nii.gz")
        self.assertEqual((subtraction.shape, subtraction.dtype), ((300, 260), np.dtype(np.float32)))  # reference grid
        self.assertEqual(np.asarray(Image.open(folder / "subtraction.png")).shape, (300, 260))
        ddf_t, err = self._lung_tre(folder)
        self.assertLess(float(err.mean()), 2.0, f"mean TRE in the lungs {float(err.mean()):.2f} px")
        p = torch.stack(torch.meshgrid(torch.arange(300.0), torch.arange(260.0), indexing="ij"))[None]
        # the floating ground-truth mask carried by the DDF onto the reference grid matches the reference mask
        hf, wf = 359, 311
        q = p + ddf_t
        grid = torch.stack((q[:, 1] * 2 / wf - 1, q[:, 0] * 2 / hf - 1), dim=-1)
        warped = (F.grid_sample(self.flt_mask, grid, align_corners=True) > 0.5).float()
        self.assertGreater(float(compute_dice_score(warped, self.ref_mask)[0]), 0.9)
        metrics = json.loads((folder / "metrics.json").read_text())
        self.assertGreater(metrics["dice_reference_vs_registered_mask"], 0.8)
        self.assertLess(metrics["folding_percent"], 0.5)
        self.assertIsNone(metrics["spacing_reference_mm"])
        # same anatomy: the subtraction is small in the lungs; the shift leaves part of the grid outside the follow-up
        lungs = self.ref_mask[0, 0].numpy() > 0.5
        self.assertLess(float(np.abs(subtraction[lungs]).mean()), 0.05)
        self.assertLess(metrics["subtraction"]["valid_percent"], 100.0)
        self.assertGreater(metrics["subtraction"]["valid_percent"], 90.0)
        self.assertEqual(metrics["subtraction"]["method"], "histogram")
        for k in ("load_floating_s", "network_s", "resample_s", "write_s", "total_s"):
            self.assertGreaterEqual(metrics["timings_s"][k], 0.0)

    def _lung_tre(self, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """The written DDF and its error in the reference lungs against the true mapping."""
        ddf = _nii(folder / "ddf.nii.gz")
        ddf_t = torch.from_numpy(np.moveaxis(ddf[:, :, 0, 0, :], -1, 0))[None].float()
        # the true mapping: reference pixel p samples the floating pixel (p + shift) / s
        s = torch.tensor([299 / 359, 259 / 311]).view(1, 2, 1, 1)
        p = torch.stack(torch.meshgrid(torch.arange(300.0), torch.arange(260.0), indexing="ij"))[None]
        true = (p + torch.tensor(self.shift).view(1, 2, 1, 1)) / s - p
        lungs = self.ref_mask.bool().expand(1, 2, -1, -1)
        return ddf_t, (ddf_t - true)[lungs].view(2, -1).norm(dim=0)

    def test_refine_stays_subpixel(self):
        """The default (full-resolution dense refinement) against --no-refine (the network alone); --no-overlay,
        --no-subtraction."""
        args = ["--reference", str(self.inputs / "ref.png"), "--reference-mask", str(self.inputs / "ref_mask.png"),
                "--floating", str(self.inputs / "flt.png")]
        plain, refined = Path(self.tmp.name) / "out_plain", Path(self.tmp.name) / "out_refined"
        for out, extra in ((plain, ["--no-refine", "--no-overlay", "--no-subtraction"]), (refined, [])):
            proc = _cli(*args, "--output", str(out), *extra)
            self.assertEqual(proc.returncode, 0, proc.stderr)
        err_plain, err_refined = self._lung_tre(plain / "flt")[1].mean(), self._lung_tre(refined / "flt")[1].mean()
        # on this synthetic phantom pair the network alone is already sub-pixel (0.49 px with the model of issue 14,
        # the refinement 0.62 px): the refinement must stay sub-pixel and not lose more than a quarter pixel; on real
        # radiographs it lowers the error (docs/real_dev: 2.92 -> 0.71 px)
        self.assertLess(float(err_refined), float(err_plain) + 0.25, f"{err_refined:.3f} vs {err_plain:.3f} px")
        self.assertLess(float(err_refined), 1.0)
        metrics = json.loads((refined / "flt" / "metrics.json").read_text())
        plain_metrics = json.loads((plain / "flt" / "metrics.json").read_text())
        self.assertGreater(metrics["timings_s"]["dense_s"], 0.0)
        self.assertNotIn("dense_s", plain_metrics["timings_s"])
        self.assertTrue(metrics["refined"])
        self.assertFalse(plain_metrics["refined"])
        self.assertGreater(metrics["quality"]["ncc_chest"], 0.8)
        self.assertFalse(metrics["quality"]["low_quality"])
        self.assertEqual(plain_metrics["quality"], {})
        self.assertTrue((refined / "flt" / "overlay.png").is_file())
        self.assertFalse((plain / "flt" / "overlay.png").exists())
        self.assertTrue((refined / "flt" / "subtraction.nii.gz").is_file())
        self.assertFalse((plain / "flt" / "subtraction.nii.gz").exists())
        self.assertFalse((plain / "flt" / "subtraction.png").exists())
        self.assertIsNone(plain_metrics["subtraction"])
        self.assertGreater(metrics["dice_reference_vs_registered_mask"], 0.95)  # the reference mask itself
        self.assertLess(metrics["folding_percent"], 0.5)

    def test_dicom_folder_monochrome_spacing_and_seg(self):
        import highdicom as hd
        import pydicom

        out = Path(self.tmp.name) / "out_dicom"
        proc = _cli("--reference", str(self.inputs / "ref.png"), "--reference-mask", str(self.inputs / "ref_mask.png"),
                    "--floating", str(self.dicom_dir), "--output", str(out))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        m1, m2 = out / "flt_m1", out / "flt_m2"
        # MONOCHROME1 is inverted on reading: both follow-ups give the same registration
        r1, r2 = _nii(m1 / "registered.nii.gz"), _nii(m2 / "registered.nii.gz")
        self.assertLess(float(np.abs(r1 - r2).mean()), 0.02)
        self.assertEqual(json.loads((m2 / "metrics.json").read_text())["spacing_floating_mm"], [0.2, 0.2])
        self.assertIsNone(json.loads((m1 / "metrics.json").read_text())["spacing_floating_mm"])
        for folder, name in ((m1, "flt_m1.dcm"), (m2, "flt_m2.dcm")):
            seg = hd.seg.segread(str(folder / "floating_mask_seg.dcm"))
            src = pydicom.dcmread(self.dicom_dir / name)
            self.assertEqual(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID,
                             src.SOPInstanceUID)
            mask = _nii(folder / "floating_mask.nii.gz")
            np.testing.assert_array_equal(np.asarray(seg.pixel_array).reshape(mask.shape), mask)

    def test_bundle_inference_on_dicom_folder(self):
        # the bundle's inference.json runs the same pipeline on a datalist built from a DICOM folder of follow-ups
        out = Path(self.tmp.name) / "out_bundle"
        data = (f"$monai_jrs.apps.registration.followup_items('{self.inputs / 'ref.png'}', "
                f"'{self.inputs / 'ref_mask.png'}', ['{self.dicom_dir}'])")
        proc = subprocess.run(
            [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
             "--bundle_root", ".", "--output_dir", str(out), "--data", data],
            cwd=Path(__file__).resolve().parents[2] / "bundle", capture_output=True, text=True, timeout=600,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        cli_out = Path(self.tmp.name) / "out_dicom_cli"
        self.assertEqual(_cli("--reference", str(self.inputs / "ref.png"), "--reference-mask",
                              str(self.inputs / "ref_mask.png"), "--floating", str(self.dicom_dir),
                              "--output", str(cli_out)).returncode, 0)
        for stem in ("flt_m1", "flt_m2"):
            self.assertEqual(sorted(os.listdir(out / stem)), sorted([*OUTPUT_FILES, "floating_mask_seg.dcm"]))
            ddf_bundle, ddf_cli = _nii(out / stem / "ddf.nii.gz"), _nii(cli_out / stem / "ddf.nii.gz")
            self.assertEqual(ddf_bundle.shape, (300, 260, 1, 1, 2))
            # same network and mapping; only the resizing of the inputs differs slightly (MetaTensor path)
            self.assertLess(float(np.abs(ddf_bundle - ddf_cli).mean()), 0.5)

    def test_no_overwrite_then_overwrite(self):
        out = Path(self.tmp.name) / "out_twice"
        args = ["--reference", str(self.inputs / "ref.png"), "--reference-mask", str(self.inputs / "ref_mask.png"),
                "--floating", str(self.inputs / "flt.png"), "--output", str(out)]
        self.assertEqual(_cli(*args).returncode, 0)
        stamp = os.stat(out / "flt" / "ddf.nii.gz").st_mtime_ns
        proc = _cli(*args)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("--overwrite", proc.stderr)
        self.assertEqual(os.stat(out / "flt" / "ddf.nii.gz").st_mtime_ns, stamp)
        self.assertEqual(_cli(*args, "--overwrite").returncode, 0)

    def test_bad_inputs(self):
        out = Path(self.tmp.name) / "out_bad"
        corrupt = Path(self.tmp.name) / "bad" / "corrupt.dcm"
        corrupt.parent.mkdir()
        corrupt.write_bytes(b"DICM" * 10)
        cases = [
            (["--floating", str(Path(self.tmp.name) / "missing.png")], "missing.png"),
            (["--floating", str(corrupt)], "corrupt.dcm"),
        ]
        for extra, needle in cases[:2]:
            proc = _cli("--reference", str(self.inputs / "ref.png"), "--reference-mask",
                        str(self.inputs / "ref_mask.png"), *extra, "--output", str(out))
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertIn(needle, proc.stderr)
        # a mask of another size than the reference
        proc = _cli("--reference", str(self.inputs / "ref.png"), "--reference-mask", str(self.inputs / "flt.png"),
                    "--floating", str(self.inputs / "flt.png"), "--output", str(out))
        self.assertEqual(proc.returncode, 2)
        self.assertIn("does not match", proc.stderr)
        # outputs inside an input DICOM folder, or in the folder of an input file itself, are refused
        for output in (self.dicom_dir / "out", self.inputs):
            proc = _cli("--reference", str(self.inputs / "ref.png"), "--reference-mask",
                        str(self.inputs / "ref_mask.png"), "--floating", str(self.dicom_dir), "--output", str(output))
            self.assertEqual(proc.returncode, 2)
            self.assertIn("inside the input folder", proc.stderr)
        self.assertFalse(out.exists())

    def test_not_a_chest_is_flagged_in_metrics(self):
        """A floating image that is not the reference's chest (noise) is registered but flagged low quality."""
        noise = (np.random.default_rng(0).random((300, 260)) * 65535).astype(np.uint16)
        path = Path(self.tmp.name) / "noise.png"
        Image.fromarray(noise).save(path)
        out = Path(self.tmp.name) / "out_noise"
        with self.assertLogs("monai_jrs.networks.blocks.dense_refinement", level="WARNING"):
            metrics = JRSRegistrar(overlay=False).register(self.inputs / "ref.png", self.inputs / "ref_mask.png",
                                                           [path], out, progress=False)[0]
        self.assertTrue(metrics["quality"]["low_quality"])
        self.assertLess(metrics["quality"]["ncc_chest"], 0.5)
        self.assertTrue(json.loads((out / "noise" / "metrics.json").read_text())["quality"]["low_quality"])

    def test_python_api_and_console_script(self):
        registrar = JRSRegistrar()
        out = Path(self.tmp.name) / "out_api"
        results = registrar.register(self.inputs / "ref.png", self.inputs / "ref_mask.png", [self.inputs / "flt.png"],
                                     out, progress=False)
        self.assertEqual(len(results), 1)
        self.assertEqual(results[0]["output_dir"], str(out / "flt"))
        exe = shutil.which("monai-jrs")
        self.assertIsNotNone(exe, "the monai-jrs console script is installed by `pip install -e .`")
        help_text = subprocess.run([exe, "register", "--help"], capture_output=True, text=True).stdout
        self.assertIn("--reference-mask", help_text)


if __name__ == "__main__":
    unittest.main()
