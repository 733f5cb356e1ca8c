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
"""Tests of the SynthMorph-style appearance randomisation: the functional building blocks,
:class:`~monai_jrs.transforms.RandSynthAppearance` and :class:`~monai_jrs.transforms.RandSynthAppearanced`."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from parameterized import parameterized

from monai_jrs.data.testing import make_chest_phantom
from monai_jrs.transforms import (
    SYNTH_APPEARANCE_PARTS,
    RandSynthAppearance,
    RandSynthAppearanced,
    RandSynthAppearanceD,
    RandSynthAppearanceDict,
    SynthAppearancePart,
    apply_intensity_lut,
    gaussian_mixture_lut,
    monotonic_lut,
    quantile_labels,
    robust_rescale,
    smooth_bias_field,
    sorted_quantiles,
)

ALL_ON = {f"{p}_prob": 1.0 for p in SYNTH_APPEARANCE_PARTS}


def _chest(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(1, size, size)`` chest phantom in [0, 1] and its lung mask."""
    image, mask = make_chest_phantom((size, size))
    return torch.as_tensor(np.asarray(image, np.float32))[None], torch.as_tensor(np.asarray(mask, np.float32))[None]


def _only(part: str, **kwargs) -> RandSynthAppearance:
    """The transform with one part, always applied."""
    return RandSynthAppearance(parts=[part], **{f"{part}_prob": 1.0}, **kwargs)


class TestFunctional(unittest.TestCase):
    @parameterized.expand(
        [
            ("identity", [0.0, 1.0], [0.0, 1.0], [0.0, 0.25, 0.5, 1.0], [0.0, 0.25, 0.5, 1.0]),
            ("two_segments", [0.0, 0.5, 1.0], [0.0, 0.25, 1.0], [0.0, 0.25, 0.5, 0.75, 1.0],
             [0.0, 0.125, 0.25, 0.625, 1.0]),
            ("inverted", [0.0, 1.0], [1.0, 0.0], [0.0, 0.25, 1.0], [1.0, 0.75, 0.0]),
            ("clamped_outside", [0.25, 0.75], [0.0, 1.0], [0.0, 0.25, 0.5, 1.0], [0.0, 0.0, 0.5, 1.0]),
            ("non_monotonic", [0.0, 0.5, 1.0], [0.0, 1.0, 0.0], [0.25, 0.5, 0.75], [0.5, 1.0, 0.5]),
        ]
    )
    def test_lut_exact(self, _, xp, fp, x, expected):
        for dtype in (torch.float32, torch.float64):
            out = apply_intensity_lut(torch.tensor(x, dtype=dtype), xp, fp)
            self.assertEqual(out.dtype, dtype)
            torch.testing.assert_close(out, torch.tensor(expected, dtype=dtype), rtol=0, atol=0)
        np.testing.assert_array_equal(np.interp(x, xp, fp), expected)  # the numpy.interp semantics

    def test_lut_on_image_shape(self):
        x = torch.rand(2, 5, 7)
        out = apply_intensity_lut(x, torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, 0.1, 1.0]))
        self.assertEqual(out.shape, x.shape)
        np.testing.assert_allclose(out.numpy(), np.interp(x.numpy(), [0.0, 0.5, 1.0], [0.0, 0.1, 1.0]), atol=1e-6)

    @parameterized.expand(
        [
            ("one_knot", [0.0], [0.0], "one length >= 2"),
            ("lengths", [0.0, 1.0], [0.0, 0.5, 1.0], "one length"),
            ("not_increasing", [0.0, 0.5, 0.5], [0.0, 0.5, 1.0], "strictly increasing"),
            ("nan", [0.0, 1.0], [0.0, float("nan")], "finite"),
        ]
    )
    def test_lut_errors(self, _, xp, fp, msg):
        with self.assertRaisesRegex(ValueError, msg):
            apply_intensity_lut(torch.rand(4), xp, fp)

    def test_monotonic_lut(self):
        xp, fp = monotonic_lut([1.0, 3.0])
        np.testing.assert_array_equal(xp, [0.0, 0.5, 1.0])
        np.testing.assert_array_equal(fp, [0.0, 0.25, 1.0])
        _, fp_inv = monotonic_lut([1.0, 3.0], invert=True)
        np.testing.assert_array_equal(fp_inv, [1.0, 0.75, 0.0])
        for bad in ([], [1.0, 0.0], [1.0, -1.0], [float("inf")]):
            with self.assertRaisesRegex(ValueError, "increments"):
                monotonic_lut(bad)

    def test_gaussian_mixture_lut(self):
        xp, fp = gaussian_mixture_lut([0.3, 0.7], [0.1, 0.1], [1.0, -1.0], num_points=101)
        self.assertEqual((xp.shape, fp.shape), ((101,), (101,)))
        self.assertEqual((fp.min(), fp.max()), (0.0, 1.0))
        self.assertGreater(fp[30], fp[0])  # up at the positive bump ...
        self.assertLess(fp[70], fp[50])  # ... and down at the negative one: not monotonic
        _, flat = gaussian_mixture_lut([0.5], [0.1], [0.0], num_points=5)
        np.testing.assert_array_equal(flat, np.linspace(0, 1, 5))  # a flat sum is the identity
        with self.assertRaisesRegex(ValueError, "widths > 0"):
            gaussian_mixture_lut([0.5], [0.0], [1.0])
        with self.assertRaisesRegex(ValueError, "one length"):
            gaussian_mixture_lut([0.5, 0.2], [0.1], [1.0])

    def test_smooth_bias_field(self):
        field = smooth_bias_field(np.zeros((3, 3)), (8, 10))
        self.assertEqual((tuple(field.shape), field.dtype), ((8, 10), torch.float64))
        torch.testing.assert_close(field, torch.ones(8, 10, dtype=torch.float64), rtol=0, atol=0)  # exp(0)
        field = smooth_bias_field(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), (4, 4))
        torch.testing.assert_close(field[:, 0], torch.ones(4))
        torch.testing.assert_close(field[:, -1], torch.full((4,), float(np.e)))  # align_corners: exact at the corners
        self.assertTrue(bool((field > 0).all()))
        with self.assertRaisesRegex(ValueError, "at least 2x2"):
            smooth_bias_field(np.zeros((1, 3)), (4, 4))

    def test_sorted_quantiles_match_numpy(self):
        x = torch.rand(3, 17, 13, dtype=torch.float64)
        qs = [0.0, 0.5, 25.0, 50.0, 99.5, 100.0]
        np.testing.assert_allclose(sorted_quantiles(x, qs).numpy(), np.percentile(x.numpy(), qs), rtol=1e-12)

    def test_robust_rescale(self):
        x = torch.linspace(-1.0, 3.0, 101)
        out = robust_rescale(x, 0.0, 100.0)
        torch.testing.assert_close(out, torch.linspace(0.0, 1.0, 101))
        const = robust_rescale(torch.full((4, 4), 0.3))
        torch.testing.assert_close(const, torch.full((4, 4), 0.3))  # no division by zero
        self.assertTrue(bool(torch.isfinite(robust_rescale(torch.full((4, 4), 7.0))).all()))
        almost = torch.zeros(1000)
        almost[0] = 1.0  # the percentiles coincide: min-max
        self.assertEqual(float(robust_rescale(almost).max()), 1.0)

    def test_quantile_labels(self):
        x = torch.arange(16.0).reshape(4, 4)
        labels = quantile_labels(x, 4)
        self.assertEqual(labels.dtype, torch.int64)
        self.assertEqual(torch.bincount(labels.flatten()).tolist(), [4, 4, 4, 4])  # equal-sized classes
        self.assertTrue(bool((labels.flatten().diff() >= 0).all()))  # ordered by intensity
        mask = torch.zeros(4, 4)
        mask[1:3, 1:3] = 1.0
        with_mask = quantile_labels(x, 4, mask)
        self.assertTrue(bool((with_mask[mask > 0] == 4).all()))  # the lung is class N
        self.assertTrue(bool((with_mask[mask == 0] == labels[mask == 0]).all()))
        self.assertEqual(quantile_labels(torch.zeros(3, 3), 5).unique().numel(), 1)  # constant: one class
        with self.assertRaisesRegex(ValueError, "num_classes"):
            quantile_labels(x, 0)
        with self.assertRaisesRegex(ValueError, "shape of `image`"):
            quantile_labels(x, 2, torch.zeros(3, 3))


class TestRandSynthAppearance(unittest.TestCase):
    @parameterized.expand(
        [
            ("torch", lambda x: x, torch.Tensor),
            ("numpy32", lambda x: x.numpy(), np.ndarray),
            ("numpy64", lambda x: x.numpy().astype(np.float64), np.ndarray),
            ("meta", lambda x: MetaTensor(x, meta={"filename_or_obj": "cxr.png"}), MetaTensor),
        ]
    )
    def test_range_shape_type(self, _, to_type, expected_type):
        image, mask = _chest()
        img = to_type(image)
        t = RandSynthAppearance(**ALL_ON).set_random_state(3)
        out = t(img, mask=mask)
        self.assertIsInstance(out, expected_type)
        self.assertEqual(tuple(out.shape), (1, 32, 32))
        self.assertEqual(out.dtype, img.dtype)
        self.assertEqual(set(t.get_params()), set(SYNTH_APPEARANCE_PARTS))
        arr = np.asarray(out)
        self.assertTrue(np.all(np.isfinite(arr)))
        self.assertEqual((float(arr.min()), float(arr.max())), (0.0, 1.0))  # renormalised
        self.assertFalse(np.allclose(arr, np.asarray(image)))
        if isinstance(img, MetaTensor):
            self.assertEqual(out.meta["filename_or_obj"], "cxr.png")

    def test_exact_fixed_parameters(self):
        """Slope ratio 1: equal rises, the identity map; inverted with invert_prob=1; percentiles (0, 100): no clip."""
        x = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]])
        kwargs = {"monotonic_slope_ratio": 1.0, "monotonic_num_knots": (3, 3), "percentiles": (0.0, 100.0)}
        out = _only("monotonic", invert_prob=0.0, **kwargs).set_random_state(0)(x)
        torch.testing.assert_close(out, x, rtol=0, atol=1e-7)
        inv = _only("monotonic", invert_prob=1.0, **kwargs).set_random_state(0)(x)
        torch.testing.assert_close(inv, 1.0 - x, rtol=0, atol=1e-7)

    def test_output_matches_drawn_lut(self):
        x = torch.tensor([[[0.0, 0.1, 0.2, 0.4], [0.5, 0.7, 0.9, 1.0]]])
        t = _only("monotonic", invert_prob=0.0, percentiles=(0.0, 100.0)).set_random_state(5)
        out = t(x)
        xp, fp = monotonic_lut(**t.get_params()["monotonic"])
        torch.testing.assert_close(out, torch.as_tensor(np.interp(x.numpy(), xp, fp), dtype=torch.float32))

    @parameterized.expand([(f"seed{s}_{'inv' if inv else 'keep'}", s, inv) for s in (0, 1, 2) for inv in (False, True)])
    def test_monotonic_keeps_or_reverses_order(self, _, seed, invert):
        image, _ = _chest()
        t = _only("monotonic", invert_prob=float(invert)).set_random_state(seed)
        out = t(image)
        self.assertEqual(t.get_params()["monotonic"]["invert"], invert)
        ordered = out.flatten()[image.flatten().argsort()]
        diffs = ordered.diff()
        self.assertTrue(bool((diffs <= 0).all() if invert else (diffs >= 0).all()))
        # without clipping at the percentiles the order of distinct values is kept strictly
        strict = _only("monotonic", invert_prob=float(invert), percentiles=(0.0, 100.0)).set_random_state(seed)
        x = torch.linspace(0.0, 1.0, 50).reshape(1, 5, 10)
        d = strict(x).flatten().diff()
        self.assertTrue(bool((d < 0).all() if invert else (d > 0).all()))

    def test_nonmonotonic_can_reorder(self):
        x = torch.linspace(0.0, 1.0, 64).reshape(1, 8, 8)
        reordered = 0
        for seed in range(5):
            out = _only("nonmonotonic").set_random_state(seed)(x).flatten()
            d = out.diff()
            reordered += int(bool((d > 1e-6).any()) and bool((d < -1e-6).any()))  # goes up and down
        self.assertGreater(reordered, 0)

    def test_reproducible_and_seed_dependent(self):
        image, mask = _chest()
        a = RandSynthAppearance(**ALL_ON).set_random_state(7)
        b = RandSynthAppearance(**ALL_ON).set_random_state(7)
        c = RandSynthAppearance(**ALL_ON).set_random_state(8)
        outs_a = [a(image, mask) for _ in range(3)]
        outs_b = [b(image, mask) for _ in range(3)]
        for oa, ob in zip(outs_a, outs_b):
            torch.testing.assert_close(oa, ob, rtol=0, atol=0)
        self.assertFalse(torch.allclose(outs_a[0], outs_a[1]))  # a new draw per call
        self.assertFalse(torch.allclose(outs_a[0], c(image, mask)))

    @parameterized.expand([(p,) for p in SYNTH_APPEARANCE_PARTS])
    def test_each_part_alone(self, part):
        image, mask = _chest()
        t = RandSynthAppearance(parts=[part], **ALL_ON).set_random_state(0)
        out = t(image, mask=mask)
        self.assertEqual(list(t.get_params()), [part])
        self.assertFalse(torch.allclose(out, image, atol=1e-3), part)
        self.assertEqual((float(out.min()), float(out.max())), (0.0, 1.0))

    def test_switching_off_keeps_other_draws(self):
        """Same seed: the parameters of the parts left on do not depend on which parts are off (ablations)."""
        full = RandSynthAppearance(**ALL_ON).set_random_state(11)
        blur_only = RandSynthAppearance(parts=["blur"], **ALL_ON).set_random_state(11)
        no_labels = RandSynthAppearance(parts=[p for p in SYNTH_APPEARANCE_PARTS if p != "labels"], **ALL_ON)
        no_labels.set_random_state(11)
        for _ in range(3):
            full.randomize(), blur_only.randomize(), no_labels.randomize()
            p_full = full.get_params()
            self.assertEqual(blur_only.get_params(), {"blur": p_full["blur"]})
            self.assertEqual(no_labels.get_params(), {k: v for k, v in p_full.items() if k != "labels"})

    @parameterized.expand([("empty_parts", {"parts": []}), ("prob0", {"prob": 0.0}), ("parts_prob0", {
        **{f"{p}_prob": 0.0 for p in SYNTH_APPEARANCE_PARTS}})])
    def test_identity(self, _, kwargs):
        image, _ = _chest()
        t = RandSynthAppearance(**kwargs).set_random_state(0)
        self.assertIs(t(image), image)
        self.assertEqual(t.get_params(), {})

    def test_enum_and_string_parts(self):
        t = RandSynthAppearance(parts=[SynthAppearancePart.NOISE, "blur", "noise"])
        self.assertEqual(t.parts, ("blur", "noise"))  # application order, no duplicates
        self.assertEqual(RandSynthAppearance(parts="bias").parts, ("bias",))
        self.assertEqual(RandSynthAppearance().parts, SYNTH_APPEARANCE_PARTS)

    def test_mask_untouched_and_used_by_labels(self):
        image, mask = _chest()
        mask_before = mask.clone()
        t = _only("labels", labels_weight_range=(1.0, 1.0), labels_blur_range=(0.0, 0.0), percentiles=(0.0, 100.0))
        out = t.set_random_state(2)(image, mask=mask)
        torch.testing.assert_close(mask, mask_before, rtol=0, atol=0)
        self.assertEqual(out[mask > 0.5].unique().numel(), 1)  # purely synthetic: the lung is one class
        n = t.get_params()["labels"]["num_classes"]
        self.assertLessEqual(out.unique().numel(), n + 1)
        without = t.set_random_state(2)(image)
        self.assertGreater(without[mask > 0.5].unique().numel(), 1)  # no mask: the lungs split by intensity
        self.assertLessEqual(without.unique().numel(), n)

    @parameterized.expand([(p,) for p in SYNTH_APPEARANCE_PARTS] + [("all",)])
    def test_constant_image(self, part):
        parts = SYNTH_APPEARANCE_PARTS if part == "all" else [part]
        out = RandSynthAppearance(parts=parts, **ALL_ON).set_random_state(0)(torch.full((1, 16, 16), 0.4))
        self.assertTrue(bool(torch.isfinite(out).all()), part)
        self.assertTrue(bool((out >= 0).all() and (out <= 1).all()), part)

    @parameterized.expand(
        [
            ("nan", torch.tensor([[[0.0, float("nan")], [0.5, 1.0]]]), ValueError, "NaN or infinite"),
            ("inf", torch.tensor([[[0.0, float("inf")], [0.5, 1.0]]]), ValueError, "1 NaN or infinite"),
            ("2d", torch.rand(4, 4), ValueError, r"shape \(C, H, W\)"),
            ("4d", torch.rand(1, 1, 4, 4), ValueError, r"shape \(C, H, W\)"),
            ("empty", torch.rand(1, 0, 4), ValueError, "must not be empty"),
            ("list", [[[0.0]]], TypeError, "torch.Tensor or numpy array"),
        ]
    )
    def test_input_errors(self, _, img, error, msg):
        with self.assertRaisesRegex(error, msg):
            RandSynthAppearance()(img)

    def test_nan_raises_even_when_skipped(self):
        with self.assertRaisesRegex(ValueError, "NaN"):
            RandSynthAppearance(prob=0.0)(torch.full((1, 4, 4), float("nan")))

    def test_mask_errors(self):
        with self.assertRaisesRegex(ValueError, r"`mask` must have shape \(1, H, W\)"):
            RandSynthAppearance()(torch.rand(1, 8, 8), mask=torch.ones(1, 8, 4))
        with self.assertRaisesRegex(TypeError, "`mask`"):
            RandSynthAppearance()(torch.rand(1, 8, 8), mask=[[1]])

    @parameterized.expand(
        [
            ("bad_part", {"parts": ["monotonic", "gamma"]}, "`parts` must name parts among"),
            ("bad_parts_type", {"parts": 3}, "`parts` must be a sequence"),
            ("prob", {"prob": 1.5}, "`prob` must be a number in"),
            ("part_prob", {"noise_prob": -0.1}, "`noise_prob`"),
            ("invert_prob", {"invert_prob": "x"}, "`invert_prob`"),
            ("knots", {"monotonic_num_knots": (0, 3)}, "`monotonic_num_knots`"),
            ("knots_order", {"monotonic_num_knots": (4, 3)}, "min <= max"),
            ("knots_float", {"monotonic_num_knots": (2.5, 3)}, "integers"),
            ("slope_ratio", {"monotonic_slope_ratio": 0.5}, "`monotonic_slope_ratio`"),
            ("bump_width", {"nonmonotonic_width_range": (0.0, 0.1)}, "`nonmonotonic_width_range`"),
            ("classes", {"labels_num_classes": (0, 2)}, "`labels_num_classes`"),
            ("labels_weight", {"labels_weight_range": (0.5, 1.5)}, r"`labels_weight_range` must lie in \[0, 1\]"),
            ("smooth", {"labels_smooth_sigma": -1.0}, "`labels_smooth_sigma`"),
            ("sigma", {"blur_sigma_range": (1.0, 0.5)}, "`blur_sigma_range`"),
            ("noise", {"noise_std_range": (-0.1, 0.1)}, "`noise_std_range`"),
            ("grid", {"bias_grid_size": 1}, "`bias_grid_size`"),
            ("percentiles", {"percentiles": (50.0, 10.0)}, "`percentiles`"),
        ]
    )
    def test_constructor_errors(self, _, kwargs, msg):
        with self.assertRaisesRegex(ValueError, msg):
            RandSynthAppearance(**kwargs)


class TestRandSynthAppearanced(unittest.TestCase):
    @staticmethod
    def _data() -> dict:
        image, mask = _chest()
        return {"reference": image, "floating": image.clone(), "reference_mask": mask, "floating_mask": mask.clone(),
                "patient_id": "p0"}

    def test_output_keys_leave_originals(self):
        data = self._data()
        before = {k: v.clone() for k, v in data.items() if isinstance(v, torch.Tensor)}
        t = RandSynthAppearanced(output_keys=("reference_input", "floating_input"),
                                 mask_keys=("reference_mask", "floating_mask"), **ALL_ON).set_random_state(0)
        out = t(data)
        self.assertEqual(set(out), set(data) | {"reference_input", "floating_input"})
        for k, v in before.items():
            self.assertIs(out[k], data[k])
            torch.testing.assert_close(out[k], v, rtol=0, atol=0, msg=k)  # images and masks untouched
        for key in ("reference", "floating"):
            self.assertEqual(out[f"{key}_input"].shape, data[key].shape)
            self.assertFalse(torch.allclose(out[f"{key}_input"], data[key]))
        # independent draws per key: the same image becomes two different inputs
        self.assertFalse(torch.allclose(out["reference_input"], out["floating_input"]))

    def test_in_place(self):
        data = self._data()
        out = RandSynthAppearanced(keys="floating", **ALL_ON).set_random_state(0)(data)
        self.assertEqual(set(out), set(data))
        self.assertIs(out["reference"], data["reference"])
        self.assertFalse(torch.allclose(out["floating"], data["floating"]))

    def test_reproducible_in_compose(self):
        def run(seed):
            pipe = Compose([RandSynthAppearanced(output_keys=("reference_input", "floating_input"), **ALL_ON)])
            pipe.set_random_state(seed)
            return [pipe(self._data()) for _ in range(2)]

        a, b, c = run(0), run(0), run(1)
        for da, db in zip(a, b):
            for k in ("reference_input", "floating_input"):
                torch.testing.assert_close(da[k], db[k], rtol=0, atol=0)
        self.assertFalse(torch.allclose(a[0]["reference_input"], a[1]["reference_input"]))
        self.assertFalse(torch.allclose(a[0]["reference_input"], c[0]["reference_input"]))

    def test_skipped_writes_copies(self):
        data = self._data()
        out = RandSynthAppearanced(output_keys=("reference_input", "floating_input"), prob=0.0)(data)
        for key in ("reference", "floating"):
            torch.testing.assert_close(out[f"{key}_input"], data[key], rtol=0, atol=0)
            self.assertIsNot(out[f"{key}_input"], data[key])

    def test_no_part_drawn_writes_copies(self):
        data = self._data()
        off = {f"{p}_prob": 0.0 for p in SYNTH_APPEARANCE_PARTS}
        out = RandSynthAppearanced(output_keys=("reference_input", "floating_input"), **off)(data)
        self.assertIsNot(out["reference_input"], data["reference"])
        torch.testing.assert_close(out["reference_input"], data["reference"], rtol=0, atol=0)

    def test_empty_parts_writes_nothing(self):
        data = self._data()
        out = RandSynthAppearanced(output_keys=("reference_input", "floating_input"), parts=[])(data)
        self.assertEqual(set(out), set(data))
        for k in data:
            self.assertIs(out[k], data[k])

    def test_numpy_values(self):
        data = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in self._data().items()}
        t = RandSynthAppearanced(output_keys=("reference_input", "floating_input"),
                                 mask_keys=("reference_mask", None), **ALL_ON)
        out = t.set_random_state(0)(data)
        self.assertIsInstance(out["reference_input"], np.ndarray)
        self.assertEqual(out["reference_input"].dtype, np.float32)

    def test_missing_keys(self):
        data = self._data()
        del data["floating"], data["floating_mask"]
        with self.assertRaises(KeyError):
            RandSynthAppearanced(output_keys=("reference_input", "floating_input"))(dict(data))
        with self.assertRaisesRegex(KeyError, "mask key 'reference_mask2'"):
            RandSynthAppearanced(keys="reference", mask_keys="reference_mask2")(dict(data))
        out = RandSynthAppearanced(output_keys=("reference_input", "floating_input"),
                                   mask_keys=("reference_mask", "floating_mask"), allow_missing_keys=True)(dict(data))
        self.assertIn("reference_input", out)
        self.assertNotIn("floating_input", out)

    @parameterized.expand(
        [
            ("output_keys", {"output_keys": ("reference_input",)}, "`output_keys` must have one entry per key"),
            ("mask_keys", {"mask_keys": ("a", "b", "c")}, "`mask_keys` must be None or have one entry per key"),
            ("prob", {"prob": 2.0}, "`prob` must be a number in"),
            ("part", {"parts": ["contrast"]}, "`parts` must name parts among"),
        ]
    )
    def test_constructor_errors(self, _, kwargs, msg):
        with self.assertRaisesRegex(ValueError, msg):
            RandSynthAppearanced(**kwargs)

    def test_aliases(self):
        self.assertIs(RandSynthAppearanceD, RandSynthAppearanced)
        self.assertIs(RandSynthAppearanceDict, RandSynthAppearanced)


if __name__ == "__main__":
    unittest.main()
