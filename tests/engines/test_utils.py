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
"""Tests of :class:`monai_jrs.engines.JRSPrepareBatch`."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import DataLoader, MetaTensor
from parameterized import parameterized

from monai_jrs.engines import JRSPrepareBatch
from monai_jrs.engines.utils import OPTIONAL_KEYS, REQUIRED_KEYS
from tests.test_utils import TEST_DEVICE


def _batch(seed: int = 0, optional: bool = True) -> dict:
    """A collated (B=2) JRS batch of 32x32 tensors in mixed types (MetaTensor, uint8, float64)."""
    g = torch.Generator().manual_seed(seed)
    batch = {
        "reference": MetaTensor(torch.rand(2, 1, 32, 32, generator=g), meta={"filename_or_obj": "ref.png"}),
        "floating": torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64),
        "reference_mask": (torch.rand(2, 1, 32, 32, generator=g) > 0.5).to(torch.uint8),
        "patient_id": ["p0", "p1"],
    }
    if optional:
        batch["floating_mask"] = MetaTensor((torch.rand(2, 1, 32, 32, generator=g) > 0.5).bool())
        batch["ddf_applied"] = torch.randn(2, 2, 32, 32, generator=g, dtype=torch.float64)
    return batch


class TestJRSPrepareBatch(unittest.TestCase):
    @parameterized.expand([("with_optional", True), ("required_only", False)])
    def test_keys_types_values(self, _, optional):
        batch = _batch(optional=optional)
        out = JRSPrepareBatch()(batch, torch.device("cpu"))
        expected_keys = set(REQUIRED_KEYS) | (set(OPTIONAL_KEYS) if optional else set())
        self.assertEqual(set(out), expected_keys)  # absent optional keys stay absent, extra keys are dropped
        for k, v in out.items():
            self.assertIs(type(v), torch.Tensor, k)  # MetaTensor metadata dropped
            self.assertEqual(v.dtype, torch.float32, k)
            self.assertEqual(v.device.type, "cpu", k)
            self.assertEqual(v.shape, batch[k].shape, k)
            expected = batch[k].as_tensor() if isinstance(batch[k], MetaTensor) else batch[k]
            torch.testing.assert_close(v, expected.float(), rtol=0, atol=0)

    def test_device(self):
        out = JRSPrepareBatch()(_batch(), TEST_DEVICE, non_blocking=False)
        for k, v in out.items():
            self.assertEqual(v.device.type, TEST_DEVICE.type, k)
        # device=None leaves the tensors where they are
        out = JRSPrepareBatch()(_batch(), None)
        self.assertTrue(all(v.device.type == "cpu" for v in out.values()))

    def test_dataloader_batch(self):
        g = torch.Generator().manual_seed(1)
        items = [
            {
                "reference": MetaTensor(torch.rand(1, 32, 32, generator=g)),
                "floating": MetaTensor(torch.rand(1, 32, 32, generator=g)),
                "reference_mask": MetaTensor((torch.rand(1, 32, 32, generator=g) > 0.5).float()),
            }
            for _ in range(2)
        ]
        batch = next(iter(DataLoader(items, batch_size=2)))
        self.assertIsInstance(batch["reference"], MetaTensor)
        out = JRSPrepareBatch()(batch, "cpu")
        self.assertEqual(set(out), set(REQUIRED_KEYS))
        for v in out.values():
            self.assertIs(type(v), torch.Tensor)
            self.assertEqual(tuple(v.shape), (2, 1, 32, 32))

    @parameterized.expand([(k,) for k in REQUIRED_KEYS])
    def test_missing_required_key(self, key):
        batch = _batch()
        del batch[key]
        with self.assertRaisesRegex(ValueError, key):
            JRSPrepareBatch()(batch, "cpu")

    @parameterized.expand(
        [
            ("list", [torch.zeros(2, 1, 32, 32)] * 3),
            ("tuple", (torch.zeros(2, 1, 32, 32),)),
            ("tensor", torch.zeros(2, 1, 32, 32)),
        ]
    )
    def test_not_a_dict(self, _, batch):
        with self.assertRaisesRegex(TypeError, "dictionaries"):
            JRSPrepareBatch()(batch, "cpu")

    @parameterized.expand(
        [
            ("required_numpy", "reference", np.zeros((2, 1, 32, 32), np.float32)),
            ("required_none", "floating", None),
            ("optional_list", "ddf_applied", [[0.0]]),
        ]
    )
    def test_non_tensor_value(self, _, key, value):
        batch = _batch()
        batch[key] = value
        with self.assertRaisesRegex(TypeError, key):
            JRSPrepareBatch()(batch, "cpu")

    def test_optional_none_is_absent(self):
        batch = _batch()
        batch["floating_mask"] = None
        out = JRSPrepareBatch()(batch, "cpu")
        self.assertNotIn("floating_mask", out)
        self.assertIn("ddf_applied", out)

    def test_custom_keys(self):
        batch = {"a": torch.ones(1, 1, 4, 4, dtype=torch.int64), "b": torch.zeros(1, 2, 4, 4)}
        out = JRSPrepareBatch(keys=("a",), optional_keys=("b", "c"))(batch, "cpu")
        self.assertEqual(set(out), {"a", "b"})
        self.assertEqual(out["a"].dtype, torch.float32)
        with self.assertRaisesRegex(ValueError, "'c'"):
            JRSPrepareBatch(keys=("a", "c"))(batch, "cpu")


if __name__ == "__main__":
    unittest.main()
