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

import unittest
from unittest import mock

import numpy as np
import torch
from parameterized import parameterized
from PIL import ImageFont

from monai_jrs.visualize import ddf_to_rgb, make_grid, mask_contour, overlay_contours, to_uint8_gray
from monai_jrs.visualize import overlay
from monai_jrs.visualize.overlay import (
    GREEN,
    RED,
    YELLOW,
    add_legend,
    add_titles,
    ddf_color_wheel,
    default_font_size,
    legend_strip,
    title_strip,
)


def _grid(ncols=3, nrows=2, h=10, w=30, pad=2):
    tile = np.full((h, w, 3), 90, dtype=np.uint8)
    return make_grid([[tile] * ncols] * nrows, pad=pad)


def _full_color(d0, d1, max_magnitude):
    """``ddf_to_rgb`` colour of a uniform field ``(d0, d1)`` (channel 0 along rows, channel 1 along columns)."""
    field = np.zeros((2, 2, 2), np.float32)
    field[0], field[1] = d0, d1
    return ddf_to_rgb(field, max_magnitude=max_magnitude)[0, 0]


def _non_grey(img):
    """Pixels whose channels differ: only swatches and the DDF wheel are coloured, text is grey."""
    return (img[..., 0] != img[..., 1]) | (img[..., 1] != img[..., 2])


class TestOverlay(unittest.TestCase):
    def test_contour_of_square(self):
        m = torch.zeros(1, 1, 8, 8)
        m[..., 2:6, 2:6] = 1
        c = mask_contour(m)
        self.assertEqual(int(c.sum()), 12)  # 4x4 square: 16 pixels minus the 2x2 interior
        self.assertFalse(c[3, 3] or c[0, 0])

    def test_overlay_colours(self):
        img = torch.full((8, 8), 0.5)
        m = torch.zeros(8, 8)
        m[2:6, 2:6] = 1
        rgb = overlay_contours(img, [m], colors=((255, 0, 0),))
        self.assertEqual(rgb.shape, (8, 8, 3))
        self.assertEqual(tuple(rgb[2, 2]), (255, 0, 0))
        self.assertEqual(tuple(rgb[0, 0]), (128, 128, 128))

    def test_gray_clips_nan(self):
        g = to_uint8_gray(np.array([[np.nan, 2.0], [-1.0, 0.5]]))
        self.assertEqual(g[..., 0].tolist(), [[0, 255], [0, 128]])

    def test_ddf_rgb(self):
        ddf = torch.zeros(2, 4, 4)
        ddf[1] = 3.0
        rgb = ddf_to_rgb(ddf)
        self.assertEqual(rgb.shape, (4, 4, 3))
        self.assertEqual(int(rgb.max()), 255)
        self.assertEqual(int(ddf_to_rgb(torch.zeros(2, 4, 4)).max()), 0)

    @parameterized.expand([[torch.zeros(3, 4, 4)], [torch.zeros(4)]])
    def test_ddf_bad_shape(self, ddf):
        with self.assertRaises(ValueError):
            ddf_to_rgb(ddf)

    def test_grid(self):
        t = np.zeros((4, 5, 3), dtype=np.uint8)
        g = make_grid([[t, t], [t]], pad=1)
        self.assertEqual(g.shape, (2 * 5 + 1, 2 * 6 + 1, 3))
        with self.assertRaises(ValueError):
            make_grid([[t, np.zeros((3, 3, 3), dtype=np.uint8)]])


class TestTitles(unittest.TestCase):
    def test_shape_and_grid_kept(self):
        grid = _grid()
        out = add_titles(grid, ["ref", "flt", "reg"], tile_width=30, font_size=11)
        strip = title_strip(["ref", "flt", "reg"], 30, font_size=11)
        self.assertEqual(strip.shape[1], grid.shape[1])
        self.assertGreaterEqual(strip.shape[0], 11)
        self.assertEqual(out.shape, (strip.shape[0] + grid.shape[0], grid.shape[1], 3))
        np.testing.assert_array_equal(out[strip.shape[0] :], grid)  # the grid sits below, unchanged
        np.testing.assert_array_equal(out[: strip.shape[0]], strip)

    @parameterized.expand([[30, 2, ["a", "bb", "ccc"]], [[20, 44, 31], 3, ["A", "mid", "W"]], [64, 0, ["x", "y"]]])
    def test_each_column_has_its_title_centred(self, tile_width, pad, titles):
        widths = [tile_width] * len(titles) if isinstance(tile_width, int) else tile_width
        strip = title_strip(titles, tile_width, pad=pad, font_size=12)
        self.assertEqual(strip.shape[1], sum(widths) + (len(widths) + 1) * pad)
        self.assertFalse(_non_grey(strip).any())  # black text on white
        x = pad
        for w in widths:
            ink = strip[..., 0][:, x : x + w] < 128
            self.assertTrue(ink.any(), f"no title over the column at x={x}")
            cols = np.nonzero(ink.any(axis=0))[0]
            self.assertLessEqual(abs((cols.min() + cols.max()) / 2 - (w - 1) / 2), 2.0)  # centred over its column
            if pad:
                self.assertTrue((strip[:, x - pad : x] == 255).all())  # gaps between columns stay white
            x += w + pad

    def test_long_title_wraps_within_its_column(self):
        one = title_strip(["short", "x"], 60, font_size=12)
        two = title_strip(["a much longer title", "x"], 60, font_size=12)
        self.assertGreater(two.shape[0], one.shape[0])  # a second line
        self.assertTrue((two[:, 62:64] == 255).all())  # nothing spills into the gap before column 1

    def test_font_size_scales(self):
        big, small = title_strip(["abc"], 200, font_size=40), title_strip(["abc"], 200, font_size=12)
        self.assertGreater(big.shape[0], 2 * small.shape[0])
        self.assertEqual(default_font_size(2048), 102)
        self.assertEqual(default_font_size(16), 11)

    def test_bitmap_font_fallback(self):
        """Pillow < 10.1 has no ``load_default(size=...)``: the fixed bitmap font is enlarged instead."""
        real = ImageFont.load_default

        def old_pillow(*args, **kwargs):
            if args or kwargs:
                raise TypeError("load_default() got an unexpected keyword argument 'size'")
            return ImageFont.load_default_imagefont() if hasattr(ImageFont, "load_default_imagefont") else real()

        overlay._font.cache_clear(), overlay._line_height.cache_clear()
        try:
            with mock.patch.object(overlay.ImageFont, "load_default", old_pillow):
                font, scale = overlay._font(33)
                self.assertNotIsInstance(font, ImageFont.FreeTypeFont)
                self.assertEqual(scale, 3)
                strip = title_strip(["reference", "floating"], 120, font_size=33)
        finally:
            overlay._font.cache_clear(), overlay._line_height.cache_clear()
        self.assertEqual(strip.shape[1], 2 * 120 + 3 * 2)
        self.assertGreaterEqual(strip.shape[0], 33)
        self.assertTrue((strip[..., 0][:, 2:122] < 128).any() and (strip[..., 0][:, 124:244] < 128).any())

    @parameterized.expand(
        [
            [["a", "b"], 30, 2, "3 titles|one title per column|2 titles"],  # 3 columns, 2 titles
            [["a", "b", "c", "d"], 30, 2, "4 titles"],
            [["a", "b", "c"], 30, 1, "pad=1"],
            [["a", "b", "c"], [30, 30], 2, "one per column"],
            [[], 30, 2, "non-empty"],
            ["abc", 30, 2, "non-empty sequence"],
            [["a", "b", "c"], 0, 2, "positive"],
        ]
    )
    def test_bad_titles(self, titles, tile_width, pad, msg):
        with self.assertRaisesRegex(ValueError, msg.split("|")[-1] if "|" in msg else msg):
            add_titles(_grid(ncols=3), titles, tile_width, pad=pad)

    def test_bad_grid(self):
        with self.assertRaisesRegex(ValueError, r"uint8 RGB array of shape \(H, W, 3\)"):
            add_titles(_grid().astype(np.float32), ["a", "b", "c"], 30)
        with self.assertRaisesRegex(ValueError, "font_size"):
            add_titles(_grid(), ["a", "b", "c"], 30, font_size=2)


class TestLegend(unittest.TestCase):
    ENTRIES = [(RED, "reference mask"), (GREEN, "predicted registered mask"), (YELLOW, "floating mask warped")]

    def test_shape_and_grid_kept(self):
        grid = _grid()
        out = add_legend(grid, self.ENTRIES, font_size=11)
        strip = legend_strip(grid.shape[1], self.ENTRIES, font_size=11)
        self.assertEqual(out.shape, (grid.shape[0] + strip.shape[0], grid.shape[1], 3))
        np.testing.assert_array_equal(out[: grid.shape[0]], grid)
        np.testing.assert_array_equal(out[grid.shape[0] :], strip)
        np.testing.assert_array_equal(add_legend(grid), grid)  # nothing to explain: unchanged

    @parameterized.expand([[11], [24]])
    def test_swatches_have_exactly_the_colours(self, font_size):
        strip = legend_strip(600, self.ENTRIES, font_size=font_size)
        coloured = _non_grey(strip)
        for color, _ in self.ENTRIES:
            hit = np.all(strip == color, axis=-1)
            ys, xs = np.nonzero(hit)
            self.assertTrue(hit.any(), f"no swatch of colour {color}")
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            self.assertEqual(y1 - y0, x1 - x0)  # a square ...
            square = hit[y0:y1, x0:x1]
            self.assertTrue(square[0].all() and square[-1].all() and square[:, 0].all() and square[:, -1].all())
            self.assertFalse(square[square.shape[0] // 2, square.shape[1] // 2])  # ... hollow, like a contour
            coloured[y0:y1, x0:x1] &= ~hit[y0:y1, x0:x1]
        self.assertFalse(coloured.any())  # no other colour (anti-aliased text is grey)
        # swatches in the order of the entries, in reading order (left to right, then the next line)
        starts = [tuple(np.argwhere(np.all(strip == c, axis=-1)).min(axis=0)) for c, _ in self.ENTRIES]
        self.assertEqual(starts, sorted(starts))

    def test_wraps_when_narrow(self):
        wide, narrow = legend_strip(1000, self.ENTRIES, font_size=12), legend_strip(60, self.ENTRIES, font_size=12)
        self.assertEqual(narrow.shape[1], 60)
        self.assertGreater(narrow.shape[0], 2 * wide.shape[0])
        for color, _ in self.ENTRIES:  # every swatch still drawn
            self.assertTrue(np.all(narrow == color, axis=-1).any())

    def test_wheel_only_with_ddf(self):
        plain = legend_strip(600, self.ENTRIES, font_size=12)
        with_wheel = legend_strip(600, self.ENTRIES, ddf_max_magnitude=3.0, font_size=12)
        self.assertGreater(int(_non_grey(with_wheel).sum()), int(_non_grey(plain).sum()) + 100)
        for field in ((0.0, 3.0), (3.0, 0.0)):  # full right and full down appear on the wheel's rim
            color = _full_color(*field, max_magnitude=3.0)
            self.assertTrue(np.all(with_wheel == color, axis=-1).any(), f"{field}: {color}")
        # the caption gives the magnitude: other magnitude, same wheel colours, other text
        other = legend_strip(600, self.ENTRIES, ddf_max_magnitude=17.5, font_size=12)
        self.assertEqual(other.shape, with_wheel.shape)
        np.testing.assert_array_equal(_non_grey(other), _non_grey(with_wheel))
        self.assertFalse(np.array_equal(other, with_wheel))

    def test_wheel_right_of_centre_is_right(self):
        """In the legend, the wheel's right-pointing hue lies right of its down-pointing hue, which lies below."""
        strip = legend_strip(600, [], ddf_max_magnitude=1.0, font_size=14)
        right, down = _full_color(0.0, 1.0, 1.0), _full_color(1.0, 0.0, 1.0)
        ry, rx = np.nonzero(np.all(strip == right, axis=-1))
        dy, dx = np.nonzero(np.all(strip == down, axis=-1))
        self.assertGreater(rx.mean(), dx.mean() + 3)
        self.assertGreater(dy.mean(), ry.mean() + 3)

    @parameterized.expand(
        [
            [dict(width=0), "width"],
            [dict(entries=[((256, 0, 0), "x")]), "colour must be"],
            [dict(entries=[((255, 0), "x")]), "colour must be"],
            [dict(entries=[(RED, "x", "y")]), r"\(\(r, g, b\), label\)"],
            [dict(entries=["red"]), "legend entry 0"],
            [dict(ddf_max_magnitude=0.0), "ddf_max_magnitude"],
            [dict(ddf_max_magnitude=float("nan")), "ddf_max_magnitude"],
            [dict(ddf_max_magnitude=float("inf")), "positive finite"],
            [dict(font_size=1000), "font_size"],
        ]
    )
    def test_bad_legend(self, kwargs, msg):
        args = dict(width=100, entries=[(RED, "x")])
        args.update(kwargs)
        with self.assertRaisesRegex(ValueError, msg):
            legend_strip(**args)


class TestColorWheel(unittest.TestCase):
    @parameterized.expand(
        [
            ["right", (0.0, 1.0), (5, 10)],
            ["down", (1.0, 0.0), (10, 5)],
            ["left", (0.0, -1.0), (5, 0)],
            ["up", (-1.0, 0.0), (0, 5)],
            ["half right", (0.0, 0.4), (5, 7)],
            ["down-right", (0.6, 0.6), (8, 8)],
        ]
    )
    def test_hue_matches_ddf_to_rgb(self, _, direction, pixel):
        """Channel 0 of a DDF is along rows (down), channel 1 along columns (right), see utils.conventions."""
        m = 6.0
        wheel = ddf_color_wheel(11, max_magnitude=m)
        np.testing.assert_array_equal(wheel[pixel], _full_color(direction[0] * m, direction[1] * m, m))

    def test_centre_and_outside(self):
        wheel = ddf_color_wheel(21, 2.0)
        self.assertEqual(wheel.shape, (21, 21, 3))
        self.assertEqual(wheel.dtype, np.uint8)
        self.assertEqual(wheel[10, 10].tolist(), [0, 0, 0])
        self.assertEqual(wheel[0, 0].tolist(), [255, 255, 255])
        self.assertEqual(int(wheel[10, 20].max()), 255)  # full brightness on the rim
        np.testing.assert_array_equal(ddf_color_wheel(21, 2.0), ddf_color_wheel(21, 50.0))  # normalised to its scale

    @parameterized.expand([[2, 1.0, "size"], [7.5, 1.0, "size"], [9, 0.0, "max_magnitude"], [9, -1.0, "max_magnitude"],
                           [9, None, "max_magnitude"]])
    def test_bad_wheel(self, size, mag, msg):
        with self.assertRaisesRegex(ValueError, msg):
            ddf_color_wheel(size, mag)


if __name__ == "__main__":
    unittest.main()
