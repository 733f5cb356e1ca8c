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
from __future__ import annotations

import os
import tempfile
import unittest

import torch
from ignite.engine import Engine
from PIL import Image

from monai_jrs.handlers import RegistrationSnapshotHandler, render_registration_grid


def _output(b=2, h=16, w=20):
    torch.manual_seed(0)
    mask = torch.zeros(b, 1, h, w)
    mask[..., 4:12, 3:9] = 1
    return {
        "reference": torch.rand(b, 1, h, w),
        "floating": torch.rand(b, 1, h, w),
        "registered": torch.rand(b, 1, h, w),
        "reference_mask": mask,
        "registered_mask": mask,
        "floating_mask": mask,
        "ddf": torch.randn(b, 2, h, w),
    }


class TestSnapshot(unittest.TestCase):
    def test_grid_shape(self):
        g = render_registration_grid(_output(3), max_rows=2)
        self.assertEqual(g.shape, (2 * (16 + 2) + 2, 5 * (20 + 2) + 2, 3))

    def test_missing_key(self):
        out = _output()
        del out["ddf"]
        with self.assertRaisesRegex(ValueError, "ddf"):
            render_registration_grid(out)

    def test_handler_writes_png(self):
        with tempfile.TemporaryDirectory() as d:
            engine = Engine(lambda e, b: _output())
            handler = RegistrationSnapshotHandler(d, prefix="val")
            handler.attach(engine)
            engine.run([0, 1], max_epochs=2)
            self.assertEqual(sorted(os.listdir(d)), ["val_epoch0001.png", "val_epoch0002.png"])
            self.assertEqual(Image.open(handler.last_path).mode, "RGB")


if __name__ == "__main__":
    unittest.main()
