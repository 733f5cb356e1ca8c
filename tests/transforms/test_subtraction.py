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
"""Tests of :mod:`monai_jrs.transforms.subtraction`: intensity matching, temporal subtraction (sign, magnitude, field
of view), its display image and the MONAI transforms, on small phantoms."""

from __future__ import annotations

import json
import os
import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized
from PIL import Image

from monai_jrs.data.testing import make_chest_phantom
from monai_jrs.data.writers import OUTPUT_FILES
from monai_jrs.transforms import (
    MATCH_METHODS,
    SIGN_CONVENTION,
    SaveRegistrationOutputs,
    TemporalSubtraction,
    TemporalSubtractiond,
    TemporalSubtractionD,
    display_window,
    field_of_view_mask,
    match_intensity,
    subtraction_to_display,
    temporal_subtraction,
)
from tests.transforms.io.test_save_registration_outputs import PairFixture

SHAPE = (96, 112)
NODULE = (40, 28)  # inside the left lung of the phantom (about 2800 lung pixels)


def _phantom() -> tuple[torch.Tensor, torch.Tensor]:
    """``(1, H, W)`` float32 reference and its lung mask."""
    image, lungs = make_chest_phantom(SHAPE, noise=0.02, seed=3)
    return torch.from_numpy(image).float()[None], torch.from_numpy(lungs).float()[None]


def _nodule(amplitude: float, sigma: float = 1.0) -> torch.Tensor:
    """A Gaussian blob of peak ``amplitude`` at :data:`NODULE`, ``(1, H, W)``."""
    rows, cols = torch.meshgrid(torch.arange(SHAPE[0]).float(), torch.arange(SHAPE[1]).float(), indexing="ij")
    return amplitude * torch.exp(-((rows - NODULE[0]) ** 2 + (cols - NODULE[1]) ** 2) / (2 * sigma**2))[None]


# follow-up = a * reference + b (another exposure), methods, input forms
AFFINE_CASES = [
    (f"{method}_{a}_{b}_{form}", method, a, b, form)
    for method in MATCH_METHODS
    for a, b in ((1.0, 0.0), (0.6, 0.25), (1.8, -0.3))
    for form in ("tensor", "numpy_2d", "float64")
]


def _form(x: torch.Tensor, form: str):
    if form == "numpy_2d":
        return x[0].numpy()
    if form == "float64":
        return x.double()
    return x


class TestTemporalSubtraction(unittest.TestCase):
    @parameterized.expand(AFFINE_CASES)
    def test_exposure_change_subtracts_to_zero(self, _, method, a, b, form):
        ref, lungs = _phantom()
        ref_in = _form(ref, form)
        follow = a * ref_in + b
        for mask in (None, _form(lungs, form)):
            diff = temporal_subtraction(ref_in, follow, mask=mask, method=method)
            self.assertIsInstance(diff, np.ndarray if form == "numpy_2d" else torch.Tensor)
            self.assertEqual(tuple(diff.shape), SHAPE if form == "numpy_2d" else (1, *SHAPE))
            tol = 1e-9 if form == "float64" else 2e-6
            self.assertLess(float(np.abs(np.asarray(diff)).max()), tol, f"{method}, mask={mask is not None}")
        matched = match_intensity(a * ref + b, ref, lungs, method=method)
        np.testing.assert_allclose(matched.numpy(), ref.numpy(), atol=2e-6)

    @parameterized.expand([(m, m) for m in MATCH_METHODS])
    def test_fit_parameters_reported(self, _, method):
        ref, lungs = _phantom()
        _, info = match_intensity(0.5 * ref + 0.2, ref, lungs, method=method, return_info=True)
        self.assertAlmostEqual(info["slope"], 2.0, places=5)  # reference = 2 * follow-up - 0.4
        self.assertAlmostEqual(info["intercept"], -0.4, places=5)
        self.assertEqual(info["method"], method)
        self.assertEqual(info["region"], "mask")
        self.assertEqual(info["region_pixels"], int(lungs.sum()))
        self.assertEqual(info["valid_percent"], 100.0)

    @parameterized.expand([(f"{m}_{s}", m, s) for m in MATCH_METHODS for s in (+1.0, -1.0)])
    def test_nodule_sign_and_magnitude(self, _, method, sign):
        """A new opacity (+) or a resolved one (-) of 0.2 reference units, under an exposure change.

        The blob covers 0.2 % of the lungs (its sum / lung area); it shifts the matched quantiles slightly, so its peak
        is recovered to 5 % (2 % lost here with "histogram"; a change covering 2 % of the lungs loses far more)."""
        ref, lungs = _phantom()
        a, b = 0.7, 0.1
        follow = a * (ref + sign * _nodule(0.2)) + b  # the change in reference units, then the follow-up exposure
        diff = temporal_subtraction(ref, follow, mask=lungs, method=method)
        peak = float(diff[0, NODULE[0], NODULE[1]])
        self.assertAlmostEqual(peak, sign * 0.2, delta=0.01)  # the documented sign: follow-up minus reference
        far = diff[0].clone()
        far[NODULE[0] - 8 : NODULE[0] + 9, NODULE[1] - 8 : NODULE[1] + 9] = 0
        self.assertLess(float(far.abs().max()), 0.01)  # nothing else changed
        display = subtraction_to_display(diff, window=0.2)
        self.assertEqual(display.dtype, np.uint8)
        self.assertEqual(display.shape, SHAPE)
        value = int(display[NODULE])
        self.assertGreater(value, 248) if sign > 0 else self.assertLess(value, 8)  # denser: bright, less dense: dark
        self.assertLess(abs(int(display[80, 10]) - 128), 3)  # unchanged: mid grey
        self.assertIn("positive (bright) = follow-up denser", SIGN_CONVENTION)

    @parameterized.expand([("no_smoothing", 0.0), ("smoothing", 1.5)])
    def test_zero_outside_the_field_of_view(self, _, sigma):
        ref, lungs = _phantom()
        ddf = torch.zeros(2, *SHAPE)
        ddf[1] = 10.0  # reference column c samples floating column c + 10: the last 10 columns see no data
        valid = field_of_view_mask(ddf, SHAPE)
        self.assertEqual(tuple(valid.shape), (1, *SHAPE))
        self.assertTrue(bool(valid[..., : SHAPE[1] - 10].all()) and not bool(valid[..., SHAPE[1] - 10 :].any()))
        follow = 0.8 * ref + 0.05
        follow[~valid] = 0.0  # the zero padding of the registered image
        diff, info = temporal_subtraction(ref, follow, mask=lungs, valid=valid, smooth_sigma=sigma, return_info=True)
        self.assertTrue(bool((diff[~valid] == 0).all()))
        self.assertAlmostEqual(info["valid_percent"], 100.0 * (SHAPE[1] - 10) / SHAPE[1], places=3)
        self.assertEqual(info["smooth_sigma"], sigma)
        # the padding is ignored by the matching and does not leak into the valid field through the smoothing
        self.assertLess(float(diff.abs().max()), 2e-6)
        self.assertEqual(int(subtraction_to_display(diff, window=0.1)[0, -1]), 128)
        # a nodule is still found with the padding there
        diff = temporal_subtraction(ref, follow + 0.8 * _nodule(0.2) * valid, mask=lungs, valid=valid)
        self.assertAlmostEqual(float(diff[0, NODULE[0], NODULE[1]]), 0.2, delta=0.01)
        self.assertTrue(bool((diff[~valid] == 0).all()))

    def test_field_of_view_other_floating_size_and_batch(self):
        ddf = torch.zeros(1, 2, 4, 5)
        ddf[:, 0] = 1.5  # rows sample 1.5 px lower in a floating image of 5 rows: rows 0..2 stay inside
        valid = field_of_view_mask(ddf, (5, 5))
        self.assertEqual(tuple(valid.shape), (1, 1, 4, 5))
        self.assertEqual(valid[0, 0, :, 0].tolist(), [True, True, True, False])
        self.assertEqual(valid.dtype, torch.bool)
        self.assertFalse(bool(field_of_view_mask(ddf, (5, 5), margin=1.0)[0, 0, 2, 0]))
        with self.assertRaisesRegex(ValueError, r"\(Hf, Wf\)"):
            field_of_view_mask(ddf, (5,))
        with self.assertRaisesRegex(ValueError, r"\(B, 2, H, W\)"):
            field_of_view_mask(torch.zeros(3, 4, 5), (4, 5))

    @parameterized.expand([("reference", 0), ("registered", 1)])
    def test_nan_input_raises(self, name, which):
        ref, lungs = _phantom()
        images = [ref.clone(), ref.clone()]
        images[which][0, 3, 4] = float("nan")
        with self.assertRaisesRegex(ValueError, rf"`{name}` must hold finite values, got 1 NaN"):
            temporal_subtraction(*images, mask=lungs)
        with self.assertRaisesRegex(ValueError, "finite"):
            subtraction_to_display(images[which])

    def test_bad_arguments_raise(self):
        ref, lungs = _phantom()
        with self.assertRaisesRegex(ValueError, r"spatial shape of `reference` \(96, 112\), got \(96, 50\)"):
            temporal_subtraction(ref, ref[..., :50])
        with self.assertRaisesRegex(ValueError, r"`mask` must have shape .* \(96, 112\), got \(1, 10, 10\)"):
            temporal_subtraction(ref, ref, mask=torch.ones(1, 10, 10))
        with self.assertRaisesRegex(ValueError, r"\(1, H, W\) or \(H, W\), got \(2, 96, 112\)"):
            temporal_subtraction(torch.cat([ref, ref]), torch.cat([ref, ref]))
        with self.assertRaisesRegex(ValueError, "`method` must be one of"):
            temporal_subtraction(ref, ref, method="zscore")
        with self.assertRaisesRegex(ValueError, "`smooth_sigma`"):
            TemporalSubtraction(smooth_sigma=-1.0)
        with self.assertRaisesRegex(ValueError, "`quantile_range`"):
            match_intensity(ref, ref, quantile_range=(50, 10))
        with self.assertRaisesRegex(ValueError, "`window` must be a positive"):
            subtraction_to_display(ref, window=0.0)
        with self.assertRaisesRegex(ValueError, "`dtype`"):
            subtraction_to_display(ref, dtype=np.int16)

    def test_empty_mask_falls_back_to_the_valid_field(self):
        ref, lungs = _phantom()
        follow = 0.5 * ref + 0.3 + _nodule(0.1)
        expected, _ = temporal_subtraction(ref, follow, return_info=True)
        with self.assertLogs("monai_jrs.transforms.subtraction", level="WARNING") as logs:
            diff, info = temporal_subtraction(ref, follow, mask=torch.zeros_like(lungs), return_info=True)
        self.assertIn("whole valid field", logs.output[0])
        self.assertEqual(info["region"], "valid")
        self.assertEqual(info["region_pixels"], SHAPE[0] * SHAPE[1])
        torch.testing.assert_close(diff, expected)
        # the display window falls back the same way
        self.assertEqual(display_window(diff, mask=torch.zeros_like(lungs)), display_window(diff))

    def test_empty_valid_field(self):
        ref, _ = _phantom()
        none = torch.zeros(1, *SHAPE, dtype=torch.bool)
        with self.assertLogs("monai_jrs.transforms.subtraction", level="WARNING"):
            diff, info = temporal_subtraction(ref, ref, valid=none, return_info=True)
        self.assertTrue(bool((diff == 0).all()))
        self.assertEqual((info["region"], info["valid_percent"]), ("none", 0.0))
        with self.assertRaisesRegex(ValueError, "`valid` holds no pixel"):
            match_intensity(ref, ref, valid=none)

    def test_display_values_and_window(self):
        diff = torch.tensor([[[0.0, 0.05, -0.05, 0.2, -0.2, 0.025]]])
        np.testing.assert_array_equal(subtraction_to_display(diff, window=0.05), [[128, 255, 1, 255, 1, 192]])
        wide = subtraction_to_display(diff, window=0.05, dtype=np.uint16)
        self.assertEqual(wide.dtype, np.uint16)
        np.testing.assert_array_equal(wide, [[32768, 65535, 1, 65535, 1, 32768 + 16384]])
        self.assertAlmostEqual(display_window(diff, percentile=100.0), 0.2, places=6)
        self.assertEqual(display_window(torch.zeros(1, 3, 3)), 1.0)  # no difference at all: any window shows grey
        mask = torch.tensor([[[0, 1, 1, 0, 0, 0]]])
        self.assertAlmostEqual(display_window(diff, mask=mask, percentile=100.0), 0.05)
        np.testing.assert_array_equal(subtraction_to_display(diff, mask=mask, percentile=100.0)[0, :3], [128, 255, 1])


class TestTemporalSubtractionTransforms(unittest.TestCase):
    def test_array_transform_matches_the_function(self):
        ref, lungs = _phantom()
        follow = 0.9 * ref + 0.02 + _nodule(0.1)
        out = TemporalSubtraction(method="linear", smooth_sigma=1.0)(ref, follow, lungs)
        torch.testing.assert_close(out, temporal_subtraction(ref, follow, lungs, method="linear", smooth_sigma=1.0))

    def test_dict_transform(self):
        ref, lungs = _phantom()
        meta_ref = MetaTensor(ref, affine=torch.diag(torch.tensor([0.2, 0.2, 1.0, 1.0])), meta={"filename_or_obj": "r"})
        follow = 1.3 * ref - 0.1 + _nodule(0.26)  # 0.2 in reference units
        valid = torch.ones(1, *SHAPE, dtype=torch.bool)
        valid[..., -3:] = False
        data = {"reference": meta_ref, "registered": follow, "lungs": lungs, "fov": valid, "other": 1}
        out = TemporalSubtractiond(mask_key="lungs", valid_key="fov", output_key="diff", info_key="diff_info")(data)
        self.assertIsInstance(out["diff"], MetaTensor)  # the reference's geometry
        self.assertEqual(out["diff"].meta["filename_or_obj"], "r")
        torch.testing.assert_close(out["diff"].affine, meta_ref.affine)
        self.assertAlmostEqual(float(out["diff"][0, NODULE[0], NODULE[1]]), 0.2, delta=0.01)
        self.assertTrue(bool((out["diff"][..., -3:] == 0).all()))
        self.assertEqual(out["diff_info"]["region"], "mask")
        self.assertEqual(out["other"], 1)
        self.assertNotIn("diff", data)  # the input dict is not modified
        expected = temporal_subtraction(ref, follow, lungs, valid)
        torch.testing.assert_close(out["diff"].as_tensor(), expected)
        self.assertIs(TemporalSubtractionD, TemporalSubtractiond)

    def test_dict_missing_keys(self):
        ref, _ = _phantom()
        with self.assertRaisesRegex(KeyError, "registered"):
            TemporalSubtractiond()({"reference": ref})
        with self.assertRaisesRegex(KeyError, "lungs"):
            TemporalSubtractiond(mask_key="lungs")({"reference": ref, "registered": ref})
        self.assertEqual(set(TemporalSubtractiond(allow_missing_keys=True)({"reference": ref})), {"reference"})
        out = TemporalSubtractiond(mask_key="lungs", allow_missing_keys=True)({"reference": ref, "registered": ref})
        self.assertLess(float(out["subtraction"].abs().max()), 1e-6)


class TestRegisterSubtractionFiles(PairFixture, unittest.TestCase):
    """``subtraction.nii.gz``, ``subtraction.png`` and ``metrics.json["subtraction"]`` of ``monai-jrs register``
    (written by :func:`~monai_jrs.data.writers.save_registration_result`), from an identity network output."""

    def setUp(self):
        super().setUp()
        prob = self.mask_net.as_tensor()
        ddf = torch.zeros(2, 32, 32)
        ddf[1] = 3.0  # network pixels: the right border of the reference grid sees no floating data
        self.pred = torch.cat([self.flt_net.as_tensor(), prob, (prob > 0.5).float(), ddf])

    def test_files_match_the_transform_and_metrics(self):
        import nibabel as nib

        metrics = SaveRegistrationOutputs(self.root / "out")(
            self.pred, self.ref, self.ref_mask, self.flt, self.ref_net.meta["grid_info"], self.flt_net.meta["grid_info"]
        )
        folder = self.root / "out" / "flt"
        self.assertTrue({"subtraction.nii.gz", "subtraction.png"} <= set(OUTPUT_FILES))
        self.assertEqual(sorted(os.listdir(folder)), sorted(OUTPUT_FILES))
        sub, reg = nib.load(str(folder / "subtraction.nii.gz")), nib.load(str(folder / "registered.nii.gz"))
        diff = np.asarray(sub.dataobj)
        self.assertEqual((diff.shape, diff.dtype), ((40, 36), np.dtype(np.float32)))  # reference grid, (rows, cols)
        np.testing.assert_array_equal(sub.affine, reg.affine)  # the geometry of registered.nii.gz
        self.assertEqual(sub.header.get_zooms(), reg.header.get_zooms())
        # the written difference is temporal_subtraction of the written registered image, in the written DDF's view
        ddf = np.moveaxis(np.asarray(nib.load(str(folder / "ddf.nii.gz")).dataobj)[:, :, 0, 0, :], -1, 0)
        valid = field_of_view_mask(torch.from_numpy(ddf.copy()), (48, 40))
        expected = temporal_subtraction(self.ref.as_tensor(), torch.from_numpy(np.asarray(reg.dataobj))[None],
                                        mask=self.ref_mask.as_tensor(), valid=valid)
        np.testing.assert_allclose(diff, expected[0].numpy(), atol=1e-6)
        self.assertFalse(bool(valid.all()))  # part of the grid lies outside the follow-up's field of view
        self.assertTrue(bool((diff[~valid[0].numpy()] == 0).all()))
        info = metrics["subtraction"]
        self.assertEqual(info["sign"], SIGN_CONVENTION)
        self.assertEqual(info["method"], "histogram")
        self.assertEqual(info["matched_in"], "reference lung mask inside the field of view")
        self.assertAlmostEqual(info["valid_percent"], 100.0 * float(valid.float().mean()), places=3)
        window = display_window(expected, mask=self.ref_mask.as_tensor(), valid=valid)
        self.assertAlmostEqual(info["display_window"], window, places=5)
        png = np.asarray(Image.open(folder / "subtraction.png"))
        np.testing.assert_array_equal(png, subtraction_to_display(expected, window=window))
        self.assertEqual(json.loads((folder / "metrics.json").read_text())["subtraction"], info)
        with self.assertRaises(FileExistsError):
            SaveRegistrationOutputs(self.root / "out")(
                self.pred, self.ref, self.ref_mask, self.flt, self.ref_net.meta["grid_info"],
                self.flt_net.meta["grid_info"],
            )

    def test_subtraction_can_be_skipped(self):
        from monai_jrs.data.writers import save_registration_result
        from monai_jrs.inferers import JRSInferer, stacked_to_dict
        from monai_jrs.transforms import GridInfo

        info = GridInfo.from_dict(self.ref_net.meta["grid_info"])
        result = JRSInferer(info.network_shape).to_full_resolution(
            stacked_to_dict(self.pred[None]), self.flt.as_tensor(), info, self.flt_net.meta["grid_info"]
        )
        meta = {"spacing": None, "filename": str(self.root / "ref.npy")}
        metrics = save_registration_result(result, self.root / "flt.npy", self.root / "plain", self.ref.as_tensor(),
                                           self.ref_mask.as_tensor(), meta, self.flt.as_tensor(), {}, subtraction=False)
        self.assertIsNone(metrics["subtraction"])
        self.assertEqual(sorted(os.listdir(self.root / "plain")),
                         sorted(set(OUTPUT_FILES) - {"subtraction.nii.gz", "subtraction.png"}))


if __name__ == "__main__":
    unittest.main()
