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
"""Tests of :mod:`monai_jrs.transforms.post`: the largest connected components of a mask (functional, array, dict)."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from monai_jrs.data.testing import make_chest_phantom
from monai_jrs.transforms import KeepLargestComponents, KeepLargestComponentsd, keep_largest_components


def _lungs_and_specks() -> tuple[np.ndarray, np.ndarray]:
    """The phantom's two lungs, and the same with three specks of different sizes added outside them."""
    _, lungs = make_chest_phantom((48, 56), noise=0.0)
    spotted = lungs.copy()
    spotted[1:4, 1:4] = True  # 9 px
    spotted[44:46, 50:52] = True  # 4 px
    spotted[1, 54] = True  # 1 px
    return lungs, spotted


class TestKeepLargestComponentsFunction(unittest.TestCase):
    def test_keeps_the_lungs(self):
        lungs, spotted = _lungs_and_specks()
        np.testing.assert_array_equal(keep_largest_components(spotted, 2), lungs)
        self.assertEqual(int(keep_largest_components(spotted, 3).sum()), int(lungs.sum()) + 9)
        self.assertIs(keep_largest_components(lungs, 2).dtype, np.dtype(bool))
        np.testing.assert_array_equal(keep_largest_components(lungs.astype(np.uint8), 5), lungs)  # fewer: unchanged


class TestKeepLargestComponents(unittest.TestCase):
    @parameterized.expand(
        [
            ("bool_numpy", lambda m: m, np.ndarray, np.dtype(bool)),
            ("uint8_numpy", lambda m: m.astype(np.uint8), np.ndarray, np.dtype(np.uint8)),
            ("float_tensor", lambda m: torch.from_numpy(m).float(), torch.Tensor, torch.float32),
            ("bool_tensor", lambda m: torch.from_numpy(m), torch.Tensor, torch.bool),
        ]
    )
    def test_same_type_out(self, _, convert, kind, dtype):
        lungs, spotted = _lungs_and_specks()
        out = KeepLargestComponents(count=2)(convert(spotted[None]))
        self.assertIsInstance(out, kind)
        self.assertEqual(out.dtype, dtype)
        self.assertEqual(tuple(out.shape), (1, *lungs.shape))
        arr = out.numpy() if isinstance(out, torch.Tensor) else out
        np.testing.assert_array_equal(arr[0] != 0, keep_largest_components(spotted, 2))

    def test_values_kept_and_channels_apart(self):
        lungs, spotted = _lungs_and_specks()
        prob = np.where(spotted, 0.8, 0.0).astype(np.float32)
        two = np.stack([prob, np.where(lungs, 0.6, 0.0).astype(np.float32)])
        out = KeepLargestComponents(count=1)(two)
        np.testing.assert_array_equal(np.unique(out[0]), np.float32([0.0, 0.8]))  # kept pixels keep their value
        np.testing.assert_array_equal(out[0] != 0, keep_largest_components(spotted, 1))
        np.testing.assert_array_equal(out[1] != 0, keep_largest_components(lungs, 1))

    def test_metatensor_meta_kept(self):
        _, spotted = _lungs_and_specks()
        x = MetaTensor(torch.from_numpy(spotted[None]).float(), meta={"filename_or_obj": "mask.png"})
        out = KeepLargestComponents()(x)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(out.meta["filename_or_obj"], "mask.png")

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "count"):
            KeepLargestComponents(count=0)
        with self.assertRaisesRegex(ValueError, "channel-first"):
            KeepLargestComponents()(np.zeros((8, 8)))
        with self.assertRaisesRegex(TypeError, "numpy array or torch.Tensor"):
            KeepLargestComponents()([[0, 1]])


class TestKeepLargestComponentsd(unittest.TestCase):
    def test_dict_matches_array(self):
        lungs, spotted = _lungs_and_specks()
        data = {"pred": torch.from_numpy(spotted[None]).float(), "other": spotted[None]}
        out = KeepLargestComponentsd("pred", count=2)(data)
        torch.testing.assert_close(out["pred"], KeepLargestComponents(2)(data["pred"]))
        np.testing.assert_array_equal(out["other"], spotted[None])  # untouched
        self.assertEqual(KeepLargestComponentsd(["pred", "missing"], allow_missing_keys=True)(data).keys(), data.keys())


if __name__ == "__main__":
    unittest.main()
