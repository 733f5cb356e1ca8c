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

import numpy as np
import torch
from ignite.engine import Engine
from parameterized import parameterized
from PIL import Image

from monai_jrs.handlers import RegistrationSnapshotHandler, render_registration_grid
from monai_jrs.handlers.snapshot import GRID_TITLES
from monai_jrs.visualize.overlay import GREEN, RED, YELLOW, ddf_to_rgb, default_font_size, legend_strip, title_strip

H, W, PAD = 16, 20, 2


def _tile(grid, top, row, col):
    """Tile ``(row, col)`` of a grid whose bare tiles start ``top`` px below its first row."""
    y, x = top + PAD + row * (H + PAD), PAD + col * (W + PAD)
    return grid[y : y + H, x : x + W]


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
        g = render_registration_grid(_output(3), max_rows=2, annotate=False)
        self.assertEqual(g.shape, (2 * (16 + 2) + 2, 5 * (20 + 2) + 2, 3))

    def test_annotated_layout(self):
        out = _output(3)
        bare = render_registration_grid(out, max_rows=2, annotate=False)
        g = render_registration_grid(out, max_rows=2)
        self.assertEqual(GRID_TITLES, ("reference", "floating", "registered", "difference |reg - ref|", "field (DDF)"))
        size = default_font_size(W)
        top = title_strip(GRID_TITLES, W, PAD, font_size=size).shape[0]
        self.assertEqual(g.shape[1], bare.shape[1])  # width unchanged
        self.assertGreater(g.shape[0], bare.shape[0] + top)  # titles on top, legend at the bottom
        np.testing.assert_array_equal(g[top : top + bare.shape[0]], bare)
        titles, legend = g[:top], g[top + bare.shape[0] :]
        for c in range(5):  # a title over every column
            self.assertTrue((titles[:, PAD + c * (W + PAD) : (c + 1) * (W + PAD), 0] < 128).any(), f"column {c}")
        for color in (RED, GREEN, YELLOW):  # the three contour colours
            self.assertTrue(np.all(legend == color, axis=-1).any(), f"no {color} swatch")
        # the legend's wheel and caption use the scale of the DDF tiles
        vmax = float(torch.hypot(out["ddf"][:2, 0], out["ddf"][:2, 1]).max())
        entries = [(RED, "reference mask"), (GREEN, "predicted registered mask"),
                   (YELLOW, "ground-truth floating mask (warped by the DDF on 'registered')")]
        expected = legend_strip(bare.shape[1], entries, ddf_max_magnitude=vmax, font_size=size)
        np.testing.assert_array_equal(legend, expected)

    def test_ddf_tiles_share_one_scale(self):
        out = _output(2)
        out["ddf"] = torch.zeros(2, 2, H, W)
        out["ddf"][0, 1], out["ddf"][1, 1] = 1.0, 2.0  # row 0: 1 px right, row 1: 2 px right
        g = render_registration_grid(out, annotate=False)
        np.testing.assert_array_equal(_tile(g, 0, 1, 4), ddf_to_rgb(out["ddf"][1]))  # the largest: full
        self.assertEqual(int(_tile(g, 0, 1, 4).max()), 255)
        self.assertEqual(int(_tile(g, 0, 0, 4).max()), 128)  # half the largest displacement: half brightness
        fixed = render_registration_grid(out, annotate=False, ddf_max_magnitude=4.0)
        self.assertEqual(int(_tile(fixed, 0, 0, 4).max()), 64)
        self.assertEqual(int(_tile(fixed, 0, 1, 4).max()), 128)

    def test_legend_lists_only_the_masks_given(self):
        out = _output()
        del out["registered_mask"], out["floating_mask"]
        bare = render_registration_grid(out, annotate=False)
        g = render_registration_grid(out)
        top = title_strip(GRID_TITLES, W, PAD, font_size=default_font_size(W)).shape[0]
        legend = g[top + bare.shape[0] :]
        self.assertTrue(np.all(legend == RED, axis=-1).any())
        self.assertFalse(np.all(legend == GREEN, axis=-1).any())

    def test_registered_mask_is_green_without_reference_mask(self):
        out = _output()
        del out["reference_mask"], out["floating_mask"]
        tile = _tile(render_registration_grid(out, annotate=False), 0, 0, 2)
        self.assertTrue(np.all(tile == GREEN, axis=-1).any())
        self.assertFalse(np.all(tile == RED, axis=-1).any())

    @parameterized.expand([[0.0], [-1.0], [float("nan")], [float("inf")]])
    def test_bad_ddf_scale(self, value):
        with self.assertRaisesRegex(ValueError, "ddf_max_magnitude"):
            render_registration_grid(_output(), ddf_max_magnitude=value)

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
            annotated = np.asarray(Image.open(handler.last_path))
            self.assertGreater(annotated.shape[0], 2 * (H + PAD) + PAD)

    def test_handler_bare(self):
        with tempfile.TemporaryDirectory() as d:
            engine = Engine(lambda e, b: _output())
            handler = RegistrationSnapshotHandler(d, annotate=False, ddf_max_magnitude=3.0)
            handler.attach(engine)
            engine.run([0], max_epochs=1)
            expected = render_registration_grid(_output(), annotate=False, ddf_max_magnitude=3.0)
            np.testing.assert_array_equal(np.asarray(Image.open(handler.last_path)), expected)


if __name__ == "__main__":
    unittest.main()
