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
"""Tests of the writing transforms of :mod:`monai_jrs.transforms.io`: the files of ``monai-jrs register``."""

from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

from monai_jrs.data.testing import make_synthetic_xray
from monai_jrs.data.writers import OUTPUT_FILES, image_stem
from monai_jrs.transforms import (
    LoadLungMask,
    LoadXRay,
    ResizeToNetwork,
    SaveRegistrationOutputs,
    SaveRegistrationOutputsd,
)


class PairFixture:
    """A small reference/floating pair loaded and resized to a 32 px network grid, with an identity "network output"
    ``self.pred`` (registered = floating on the network grid, the reference mask, zero DDF)."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)
        image, mask = make_synthetic_xray((40, 36), seed=1)
        np.save(self.root / "ref.npy", image)
        np.save(self.root / "ref_mask.npy", mask)
        np.save(self.root / "flt.npy", np.roll(make_synthetic_xray((48, 40), seed=2)[0], 1, axis=1))
        self.ref, self.flt = LoadXRay()(self.root / "ref.npy"), LoadXRay()(self.root / "flt.npy")
        self.ref_mask = LoadLungMask()(self.root / "ref_mask.npy", self.ref)
        resize = ResizeToNetwork(32)
        self.ref_net, self.mask_net, self.flt_net = resize(self.ref), resize(self.ref_mask), resize(self.flt)
        prob = self.mask_net.as_tensor()
        # an identity "network output": registered = floating on the network grid, the reference mask, zero DDF
        self.pred = torch.cat([self.flt_net.as_tensor(), prob, (prob > 0.5).float(), torch.zeros(2, 32, 32)])

    def tearDown(self):
        self._tmp.cleanup()


class TestSaveRegistrationOutputs(PairFixture, unittest.TestCase):
    def _array(self, out: Path, **kwargs):
        return SaveRegistrationOutputs(out, **kwargs)(
            self.pred, self.ref, self.ref_mask, self.flt, self.ref_net.meta["grid_info"], self.flt_net.meta["grid_info"]
        )

    def test_array_writes_the_register_files(self):
        metrics = self._array(self.root / "out")
        folder = self.root / "out" / "flt"
        self.assertEqual(image_stem(self.root / "flt.npy"), "flt")
        self.assertEqual(sorted(os.listdir(folder)), sorted(OUTPUT_FILES))
        self.assertEqual(metrics["output_dir"], str(folder))
        self.assertEqual((metrics["reference_shape"], metrics["floating_shape"]), ([40, 36], [48, 40]))
        self.assertEqual(metrics["network_size"], [32, 32])
        self.assertGreater(metrics["dice_reference_vs_registered_mask"], 0.9)  # the reference mask, round-tripped
        self.assertEqual(metrics["folding_percent"], 0.0)
        with self.assertRaises(FileExistsError):
            self._array(self.root / "out")
        self.assertEqual(self._array(self.root / "out", overwrite=True)["reference_shape"], [40, 36])

    def test_dict_version_writes_the_same(self):
        array_metrics = self._array(self.root / "a")
        item = {
            "pred": self.pred, "reference": self.ref_net, "reference_mask": self.mask_net, "floating": self.flt_net,
            "reference_full": self.ref, "reference_mask_full": self.ref_mask, "floating_full": self.flt,
        }  # fmt: skip
        out = SaveRegistrationOutputsd("pred", self.root / "d")(item)
        dict_metrics = out["pred_metrics"]
        self.assertEqual(sorted(os.listdir(self.root / "d" / "flt")), sorted(OUTPUT_FILES))
        for k in ("dice_reference_vs_registered_mask", "dice_reference_vs_floating_mask", "max_displacement_px",
                  "reference", "floating", "spacing_reference_mm", "spacing_floating_mm"):
            self.assertEqual(dict_metrics[k], array_metrics[k], k)
        for name in ("ddf.nii.gz", "registered_mask.nii.gz", "floating_mask.nii.gz"):
            written = [(self.root / out / "flt" / name).read_bytes() for out in ("a", "d")]
            self.assertEqual(written[0], written[1], name)

    def test_bad_prediction(self):
        with self.assertRaisesRegex(ValueError, r"\(5, h, w\)"):
            SaveRegistrationOutputs(self.root)(
                self.pred[:4], self.ref, self.ref_mask, self.flt, self.ref_net.meta["grid_info"],
                self.flt_net.meta["grid_info"],
            )


if __name__ == "__main__":
    unittest.main()
