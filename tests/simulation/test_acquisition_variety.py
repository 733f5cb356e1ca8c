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
"""Tests of the acquisition variety of :mod:`monai_jrs.simulation.radiograph` on tiny synthetic line integrals.

Exam settings, scatter, grid lines, tone curves, range compression, the tilted collimator, radiopaque devices and
the extra burnt-in text; and that the neutral values reproduce the original model bit for bit.
"""

from __future__ import annotations

import datetime
import json
import unittest
from dataclasses import asdict, replace

import numpy as np
import torch
from parameterized import parameterized

from monai_jrs.simulation import (
    DEVICE_KINDS,
    TONE_CURVES,
    AcquisitionParams,
    Device,
    ExamSetting,
    add_scatter,
    attenuation_to_radiograph,
    burn_in_text,
    gaussian_blur,
    grid_pattern,
    lung_bbox_fractions,
    render_devices,
    sample_acquisition,
    sample_devices,
    sample_setting,
    tone_curve,
)
from monai_jrs.simulation.radiograph import _field_mask, _spline

SIZE = 64
BBOX = (0.2, 0.7, 0.15, 0.85)


def _blob(size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth line integral (dense body with a denser midline, two air-filled lungs) and its lung mask."""
    r = (torch.arange(size, dtype=torch.float32)[:, None] + 0.5) / size
    c = (torch.arange(size, dtype=torch.float32)[None, :] + 0.5) / size
    body = 4.0 * torch.exp(-(((c - 0.5) / 0.38) ** 4) - (((r - 0.5) / 0.6) ** 4))
    rows = ((r - 0.45) / 0.25) ** 2
    lungs = (rows + ((c - 0.3) / 0.13) ** 2 < 1) | (rows + ((c - 0.7) / 0.13) ** 2 < 1)
    line_integral = body - 2.0 * gaussian_blur(lungs.float(), 1.5) + 1.0 * torch.exp(-(((c - 0.5) / 0.06) ** 2))
    return line_integral.clamp(min=0.0), lungs


def _reference_sample(rng, lung_bbox=None, date=None, side_marker=True) -> AcquisitionParams:
    """The original ``sample_acquisition`` (before the acquisition variety), verbatim."""
    r0, r1, c0, c1 = lung_bbox if lung_bbox is not None else (0.2, 0.8, 0.2, 0.8)
    margin = 0.03
    top = float(rng.uniform(0.0, max(0.0, r0 - margin))) if rng.random() < 0.6 else 0.0
    bottom = float(rng.uniform(0.0, max(0.0, 1.0 - r1 - margin) * 0.8)) if rng.random() < 0.6 else 0.0
    left = float(rng.uniform(0.0, max(0.0, c0 - margin) * 0.7)) if rng.random() < 0.5 else 0.0
    right = float(rng.uniform(0.0, max(0.0, 1.0 - c1 - margin) * 0.7)) if rng.random() < 0.5 else 0.0
    markers = []
    if side_marker:
        text = "L" if rng.random() < 0.7 else "R"
        col = (1.0 - right - 0.09) if text == "L" else (left + 0.03)
        markers.append((text, float(top + 0.02), float(col), float(rng.uniform(0.05, 0.08))))
    if date is not None:
        col = float(left + 0.03) if rng.random() < 0.5 else float(max(c1, 0.55))
        markers.append((date.isoformat(), float(1.0 - bottom - 0.06), col, 0.035))
    return AcquisitionParams(
        photons=float(10 ** rng.uniform(4.0, 5.3)),
        window=(float(rng.uniform(0.0, 2.0)), float(rng.uniform(99.0, 100.0))),
        edge_gain=float(rng.uniform(0.2, 1.2)),
        edge_sigma=float(rng.uniform(0.02, 0.06)),
        gamma=float(np.exp(rng.normal(0.0, 0.2))),
        detector_noise=float(rng.uniform(0.0, 0.01)),
        collimation=(top, bottom, left, right),
        collimation_value=float(rng.uniform(0.75, 1.0)),
        markers=markers,
    )


def _reference_radiograph(line_integral, params, rng) -> torch.Tensor:
    """The original ``attenuation_to_radiograph`` (before the acquisition variety), verbatim."""
    h, w = line_integral.shape
    lin = line_integral.float().clamp(min=0.0)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    lin = lin + torch.randn(h, w, generator=gen) * torch.exp(lin.clamp(max=8.0) / 2.0) / np.sqrt(params.photons)
    top, bottom, left, right = params.collimation
    r0, r1 = int(round(top * h)), h - int(round(bottom * h))
    c0, c1 = int(round(left * w)), w - int(round(right * w))
    field_mask = torch.zeros(h, w, dtype=torch.bool)
    field_mask[r0:r1, c0:c1] = True
    lo, hi = np.percentile(lin[field_mask].numpy(), params.window)
    img = (lin - float(lo)) / max(float(hi - lo), 1e-6)
    if params.edge_gain > 0:
        img = img + params.edge_gain * (img - gaussian_blur(img, params.edge_sigma * min(h, w)))
    img = img.clamp(0.0, 1.0) ** params.gamma
    img = img + params.detector_noise * torch.randn(h, w, generator=gen)
    outside = (~field_mask).float()
    if outside.any():
        outside = gaussian_blur(outside, 0.004 * min(h, w))
        img = img * (1.0 - outside) + params.collimation_value * outside
    img = burn_in_text(img, params.markers)
    return img.clamp(0.0, 1.0).float()


def _clean(**kwargs) -> AcquisitionParams:
    """Parameters without noise, edge enhancement or clipping of the window."""
    values = dict(photons=1e12, edge_gain=0.0, detector_noise=0.0, window=(0.0, 100.0))
    values.update(kwargs)
    return AcquisitionParams(**values)


class TestNeutral(unittest.TestCase):
    @parameterized.expand([(seed,) for seed in range(8)])
    def test_bit_identical_to_the_original_model(self, seed):
        line_integral, lungs = _blob()
        date = datetime.date(2022, 2, 3) if seed % 2 else None
        ref_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed)
        ref = _reference_sample(ref_rng, lung_bbox=BBOX, date=date, side_marker=seed % 3 > 0)
        params = sample_acquisition(rng, lung_bbox=BBOX, date=date, side_marker=seed % 3 > 0)
        self.assertEqual(asdict(params), asdict(ref))  # the variety fields stay neutral
        self.assertEqual(ref_rng.random(), rng.random())  # and no extra draws
        out = attenuation_to_radiograph(line_integral, params, np.random.default_rng(seed))
        torch.testing.assert_close(out, _reference_radiograph(line_integral, ref, np.random.default_rng(seed)),
                                   atol=0, rtol=0)

    @parameterized.expand([("erect",), ("portable",)])
    def test_setting_keeps_the_original_draws_first(self, setting):
        legacy = sample_acquisition(np.random.default_rng(4), lung_bbox=BBOX)
        varied = sample_acquisition(np.random.default_rng(4), lung_bbox=BBOX, setting=setting)
        for name in ("window", "edge_gain", "edge_sigma", "gamma", "detector_noise", "collimation_value"):
            self.assertEqual(getattr(varied, name), getattr(legacy, name), name)
        self.assertEqual(varied.setting, setting)
        if setting == "erect":
            self.assertEqual(varied.photons, legacy.photons)
        else:
            self.assertLess(varied.photons, legacy.photons)  # bedside exposures are noisier
            self.assertEqual(varied.view, "AP")


class TestSetting(unittest.TestCase):
    def test_fractions_and_geometry(self):
        exams = [sample_setting(np.random.default_rng(s)) for s in range(600)]
        portable = [e for e in exams if e.setting == "portable"]
        self.assertAlmostEqual(len(portable) / len(exams), 0.3, delta=0.06)
        self.assertTrue(all(e.view == "AP" and 1000.0 <= e.sid_mm <= 1150.0 and e.breathing < 1.0 for e in portable))
        self.assertTrue(any(e.supine for e in portable) and not all(e.supine for e in portable))
        erect = [e for e in exams if e.setting == "erect"]
        self.assertTrue(all(e == ExamSetting() for e in erect))  # PA, 1800 / 150 mm, full inspiration
        self.assertEqual(sample_setting(np.random.default_rng(3)), sample_setting(np.random.default_rng(3)))
        self.assertEqual(sample_setting(np.random.default_rng(0), portable_fraction=1.0).setting, "portable")

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "portable_fraction"):
            sample_setting(np.random.default_rng(0), portable_fraction=1.5)
        with self.assertRaisesRegex(ValueError, "setting"):
            sample_acquisition(np.random.default_rng(0), setting="icu")
        with self.assertRaisesRegex(ValueError, "view"):
            sample_acquisition(np.random.default_rng(0), setting=ExamSetting(view="LAT"))
        with self.assertRaisesRegex(ValueError, "field_mm"):
            sample_acquisition(np.random.default_rng(0), setting="erect", field_mm=0.0)


class TestSampledVariety(unittest.TestCase):
    @parameterized.expand([("erect",), ("portable",), ("sampled",)])
    def test_reproducible_and_json(self, setting):
        line_integral, lungs = _blob()
        for seed in range(6):
            exam = sample_setting(np.random.default_rng(seed)) if setting == "sampled" else setting
            kw = dict(lung_mask=lungs, date=datetime.date(2021, 1, 1), setting=exam)
            a = sample_acquisition(np.random.default_rng(seed), **kw)
            b = sample_acquisition(np.random.default_rng(seed), **kw)
            self.assertEqual(asdict(a), asdict(b))
            img_a = attenuation_to_radiograph(line_integral, a, np.random.default_rng(seed))
            img_b = attenuation_to_radiograph(line_integral, b, np.random.default_rng(seed))
            torch.testing.assert_close(img_a, img_b, atol=0, rtol=0)
            self.assertEqual((tuple(img_a.shape), img_a.dtype), ((SIZE, SIZE), torch.float32))
            self.assertTrue(bool(img_a.min() >= 0.0) and bool(img_a.max() <= 1.0))
            # plain JSON, and the manifest's dict renders the same image
            restored = AcquisitionParams(**json.loads(json.dumps(asdict(a))))
            img_c = attenuation_to_radiograph(line_integral, restored, np.random.default_rng(seed))
            torch.testing.assert_close(img_a, img_c, atol=0, rtol=0)
        other = sample_acquisition(np.random.default_rng(99), lung_mask=lungs, setting="portable")
        self.assertNotEqual(asdict(other), asdict(a))

    def test_portable_draws(self):
        params = [sample_acquisition(np.random.default_rng(s), lung_bbox=BBOX, setting="portable") for s in range(80)]
        erect = [sample_acquisition(np.random.default_rng(s), lung_bbox=BBOX, setting="erect") for s in range(80)]
        self.assertGreater(np.mean([p.scatter for p in params]), np.mean([p.scatter for p in erect]))
        self.assertGreater(np.mean([len(p.devices) for p in params]), 3 * np.mean([len(p.devices) for p in erect]))
        with_grid = [np.mean([p.grid_amplitude > 0 for p in group]) for group in (params, erect)]
        self.assertGreater(with_grid[0], with_grid[1])
        self.assertTrue(any(p.collimation_angle != 0 for p in params))
        self.assertFalse(any(p.collimation_angle != 0 for p in erect))
        self.assertEqual({p.tone_curve for p in params}, set(TONE_CURVES))
        texts = {m[0] for p in params for m in p.markers}
        self.assertTrue({"PORTABLE", "AP"} <= texts)
        self.assertTrue(all(2.0 <= p.grid_period <= 4.0 for p in params if p.grid_amplitude > 0))
        exam = ExamSetting(view="AP", setting="portable", supine=True)
        supine = sample_acquisition(np.random.default_rng(1), lung_bbox=BBOX, setting=exam)
        self.assertTrue(supine.supine and supine.view == "AP")

    def test_text_blocks_outside_the_lungs_and_apart(self):
        r0, r1, c0, c1 = BBOX
        for seed in range(60):
            p = sample_acquisition(np.random.default_rng(seed), lung_bbox=BBOX, date=datetime.date(2020, 5, 6),
                                   setting="portable" if seed % 2 else "erect")
            extra = p.markers[2:]  # after the side marker and the date
            for text, row, col, height in extra:
                self.assertTrue(0.0 <= row and row + height <= 1.0 and 0.0 <= col <= 1.0, (text, row, col))
                inside_rows, inside_cols = row + height > r0 - 0.01 and row < r1 + 0.01, col < c1 + 0.01
                self.assertFalse(inside_rows and inside_cols and col + 0.5 * height * len(text) > c0 - 0.01, text)
            rows = sorted((row, row + height, col) for _, row, col, height in extra)
            for (a0, a1, ca), (b0, b1, cb) in zip(rows, rows[1:]):
                self.assertTrue(b0 >= a1 - 1e-9 or ca != cb)  # stacked lines of one block do not overlap

    def test_tilted_collimator_keeps_the_lungs(self):
        for seed in range(40):
            p = sample_acquisition(np.random.default_rng(seed), lung_bbox=BBOX, setting="portable")
            if p.collimation_angle == 0:
                continue
            mask = _field_mask(100, 100, p.collimation, p.collimation_angle)
            r0, r1, c0, c1 = (int(round(100 * v)) for v in BBOX)
            self.assertTrue(bool(mask[r0 + 1 : r1, c0 + 1 : c1].all()))  # the costophrenic angles are kept
            self.assertFalse(bool(mask.all()))


class TestScatter(unittest.TestCase):
    def test_contrast_falls_monotonically(self):
        line_integral, lungs = _blob()
        contrasts, previous = [], line_integral
        for ratio in (0.0, 0.1, 0.3, 0.6, 1.0, 2.0):
            eff = add_scatter(line_integral, ratio, sigma=0.12)
            self.assertTrue(bool((eff <= line_integral + 1e-5).all()))  # scatter only adds photons
            self.assertTrue(bool((eff <= previous + 1e-5).all()))
            contrasts.append(float(eff[~lungs].mean() - eff[lungs].mean()))
            previous = eff
        self.assertTrue(all(b < a for a, b in zip(contrasts, contrasts[1:])), contrasts)
        self.assertIs(add_scatter(line_integral, 0.0), line_integral)

    def test_scatter_in_the_pipeline_lowers_displayed_detail(self):
        line_integral, lungs = _blob()
        r = torch.arange(SIZE, dtype=torch.float32)[:, None]
        detail = 0.3 * (torch.sin(r) > 0.9).float() * lungs.float()  # a fine structure inside the lungs
        spans = []
        for ratio in (0.0, 0.5, 1.5):
            params = _clean(scatter=ratio, window=(0.5, 99.5))
            a = attenuation_to_radiograph(line_integral + detail, params, np.random.default_rng(0))
            b = attenuation_to_radiograph(line_integral, params, np.random.default_rng(0))
            spans.append(float((a - b)[lungs].abs().mean()))
        self.assertTrue(spans[0] > spans[1] > spans[2], spans)

    def test_errors(self):
        line_integral, _ = _blob()
        with self.assertRaisesRegex(ValueError, "ratio"):
            add_scatter(line_integral, -0.1)
        with self.assertRaisesRegex(ValueError, "sigma"):
            add_scatter(line_integral, 0.5, sigma=0.0)
        with self.assertRaisesRegex(ValueError, "2-D"):
            add_scatter(line_integral[None], 0.5)


class TestGrid(unittest.TestCase):
    @parameterized.expand([(20, 0.0), (30, 0.0), (16, 90.0), (25, 90.0)])
    def test_period_visible_in_the_fft(self, cycles, angle):
        line_integral, _ = _blob()
        period = SIZE / cycles
        params = _clean(grid_amplitude=0.02, grid_period=period, grid_angle=angle, grid_phase=0.3)
        out = attenuation_to_radiograph(line_integral, params, np.random.default_rng(0))
        profile = out.double().mean(dim=0 if angle == 0.0 else 1)  # average along the lines
        spectrum = torch.fft.rfft(profile - profile.mean()).abs()
        spectrum[: SIZE // 5] = 0.0  # the anatomy's low frequencies (grid periods are 2-4 px: SIZE / 4 and up)
        self.assertEqual(int(spectrum.argmax()), cycles)
        flat = attenuation_to_radiograph(line_integral, _clean(), np.random.default_rng(0))
        self.assertLess(float((out - flat).abs().max()), 0.05)  # a small amplitude

    def test_beat_and_orientation(self):
        g = grid_pattern((SIZE, SIZE), 0.1, 2.5, angle=0.0, beat=0.8, beat_period=SIZE / 4)
        spectrum = torch.fft.rfft(g[0].double()).abs()
        top2 = set(torch.topk(spectrum, 2).indices.tolist())
        self.assertEqual(top2, {4, int(round(SIZE / 2.5))})
        self.assertTrue(torch.allclose(g[0], g[-1]))  # vertical lines: every row the same
        tilted = grid_pattern((SIZE, SIZE), 0.1, 3.0, angle=2.0)
        self.assertFalse(torch.allclose(tilted[0], tilted[-1]))
        self.assertLessEqual(float(g.abs().max()), 0.1 * 1.8 + 1e-6)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "period"):
            grid_pattern((8, 8), 0.1, 1.5)
        with self.assertRaisesRegex(ValueError, "amplitude"):
            grid_pattern((8, 8), -0.1, 3.0)
        line_integral, _ = _blob()
        with self.assertRaisesRegex(ValueError, "grid_period"):
            attenuation_to_radiograph(line_integral, AcquisitionParams(grid_amplitude=0.1, grid_period=1.0),
                                      np.random.default_rng(0))


class TestToneCurve(unittest.TestCase):
    @parameterized.expand(
        [(kind, slope, centre, width) for kind in TONE_CURVES for slope, centre, width in
         ((3.0, 0.5, 0.7), (8.0, 0.4, 0.6), (20.0, 0.6, 0.9), (1e-3, 0.5, 1.0))]
    )
    def test_monotone_and_ends(self, kind, slope, centre, width):
        x = torch.linspace(0.0, 1.0, 1001)
        y = tone_curve(x, kind, slope, centre, width)
        self.assertEqual(y.dtype, x.dtype)
        self.assertTrue(bool((y.diff() >= -1e-6).all()))
        self.assertAlmostEqual(float(y[0]), 0.0, places=5)
        self.assertAlmostEqual(float(y[-1]), 1.0, places=5)
        if kind != "none" and slope > 1:
            self.assertGreater(float((y - x).abs().max()), 0.02)  # it does change the look

    def test_pipeline_and_errors(self):
        line_integral, _ = _blob()
        base = attenuation_to_radiograph(line_integral, _clean(), np.random.default_rng(0))
        curved = attenuation_to_radiograph(line_integral, _clean(tone_curve="sigmoid", tone_slope=8.0),
                                           np.random.default_rng(0))
        order = torch.argsort(base.flatten())
        self.assertTrue(bool((curved.flatten()[order].diff() >= -1e-5).all()))  # the LUT keeps the order
        self.assertGreater(float((curved - base).abs().max()), 0.02)
        with self.assertRaisesRegex(ValueError, "kind"):
            tone_curve(torch.zeros(3), "log")
        with self.assertRaisesRegex(ValueError, "slope"):
            tone_curve(torch.zeros(3), "sigmoid", slope=0.0)
        with self.assertRaisesRegex(ValueError, "width"):
            tone_curve(torch.zeros(3), "film", width=1.5)
        with self.assertRaisesRegex(ValueError, "tone_curve"):
            attenuation_to_radiograph(line_integral, AcquisitionParams(tone_curve="log"), np.random.default_rng(0))


class TestProcessing(unittest.TestCase):
    def test_fine_unsharp_mask_and_range_compression(self):
        line_integral, lungs = _blob()
        base = attenuation_to_radiograph(line_integral, _clean(window=(1.0, 99.0)), np.random.default_rng(0))
        fine = attenuation_to_radiograph(
            line_integral, _clean(window=(1.0, 99.0), edge_gain_fine=1.0, edge_sigma_fine=0.02),
            np.random.default_rng(0),
        )
        self.assertGreater(float((fine - base).abs().max()), 0.01)
        clipped = attenuation_to_radiograph(line_integral, _clean(window=(1.0, 90.0)), np.random.default_rng(0))
        compressed = attenuation_to_radiograph(line_integral, _clean(window=(1.0, 90.0), range_compression=0.5),
                                               np.random.default_rng(0))
        self.assertLess(float((compressed >= 0.999).float().mean()), float((clipped >= 0.999).float().mean()))

    @parameterized.expand(
        [
            ("photons", dict(photons=0.0)),
            ("view", dict(view="LAT")),
            ("setting", dict(setting="icu")),
            ("scatter", dict(scatter=-0.5)),
            ("grid_amplitude", dict(grid_amplitude=-1.0)),
            ("edge_gain_fine", dict(edge_gain_fine=-1.0)),
            ("range_compression", dict(range_compression=1.0)),
            ("collimation_angle", dict(collimation_angle=60.0)),
        ]
    )
    def test_bad_values(self, name, kwargs):
        line_integral, _ = _blob()
        with self.assertRaisesRegex(ValueError, name):
            attenuation_to_radiograph(line_integral, AcquisitionParams(**kwargs), np.random.default_rng(0))


class TestDevices(unittest.TestCase):
    @parameterized.expand([(kind, setting) for kind in DEVICE_KINDS for setting in ("erect", "portable")])
    def test_drawn_only_where_placed(self, kind, setting):
        _, lungs = _blob()
        bbox = lung_bbox_fractions(lungs)
        devices = sample_devices(np.random.default_rng(7), setting, bbox,
                                 probabilities={k: float(k == kind) for k in DEVICE_KINDS})
        self.assertGreater(len(devices), 0)
        self.assertTrue(all(d.kind == kind for d in devices))
        size = 4 * SIZE  # big enough to resolve thin lines
        extra = render_devices((size, size), devices)
        self.assertEqual((tuple(extra.shape), extra.dtype), ((size, size), torch.float32))
        self.assertGreaterEqual(float(extra.min()), 0.0)
        self.assertGreater(float(extra.max()), 0.2)
        # zero away from the devices: farther than their size (plus blur) from the curve through their points
        rows, cols = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
        pix = torch.stack([cols.flatten(), rows.flatten()], 1).double()
        near = torch.zeros(size * size, dtype=torch.bool)
        for d in devices:
            pts = np.asarray(d.points) * size
            curve = torch.from_numpy(_spline(pts[:, ::-1].copy(), step=0.5))
            reach = 1.3 * d.width * size + 4 * 0.0022 * size + 3.0
            near |= torch.cdist(pix, curve).min(dim=1).values <= reach
        self.assertEqual(float(extra.flatten()[~near].abs().max()), 0.0)
        self.assertGreater(float(extra.flatten()[near].max()), 0.2)
        # inside the image: every device covers some pixels, and its end (tip, electrode, generator) lies inside
        for d in devices:
            tip = d.points[0] if kind in ("ecg", "pacemaker") else d.points[-1]
            self.assertTrue(0.0 <= tip[0] <= 1.0 and 0.0 <= tip[1] <= 1.0, (kind, tip))
            self.assertGreater(float(render_devices((size, size), [d]).sum()), 0.0)

    def test_placement_relative_to_the_lungs(self):
        r0, r1, c0, c1 = BBOX
        mid = 0.5 * (c0 + c1)
        everything = {k: 1.0 for k in DEVICE_KINDS}
        for seed in range(20):
            devices = {d.kind: d for d in sample_devices(np.random.default_rng(seed), "portable", BBOX,
                                                         probabilities=everything)}
            ett = devices["ett"].points[-1]
            self.assertTrue(r0 < ett[0] < r0 + 0.3 * (r1 - r0) and abs(ett[1] - mid) < 0.03)
            ng = devices["ng_tube"].points
            self.assertGreater(ng[-1][1], mid)  # the stomach is on the patient's left = image right
            self.assertGreater(ng[-1][0], r1 - 0.15)
            cvc = devices["cvc"].points[-1]
            self.assertTrue(cvc[1] < mid and r0 < cvc[0] < 0.5 * (r0 + r1))  # superior vena cava
            pacer = devices["pacemaker"].points[0]
            self.assertLess(pacer[0], r0 + 0.2 * (r1 - r0))

    def test_devices_are_bright_and_only_add(self):
        line_integral, _ = _blob()
        everything = {k: 1.0 for k in DEVICE_KINDS}
        devices = sample_devices(np.random.default_rng(2), "portable", BBOX, probabilities=everything)
        extra = render_devices(line_integral.shape, devices)
        params = _clean(window=(0.0, 99.0))
        plain = attenuation_to_radiograph(line_integral, params, np.random.default_rng(0))
        with_devices = attenuation_to_radiograph(
            line_integral, replace(params, devices=devices), np.random.default_rng(0)
        )
        drawn = extra > 0.3
        self.assertGreater(float((with_devices - plain)[drawn].mean()), 0.05)
        # the same as adding the attenuation to L by hand
        by_hand = attenuation_to_radiograph(line_integral + extra, params, np.random.default_rng(0))
        torch.testing.assert_close(with_devices, by_hand, atol=1e-6, rtol=0)

    def test_records_and_errors(self):
        device = Device("cvc", [(0.1, 0.2), (0.4, 0.45)], width=0.01, attenuation=0.8)
        a = render_devices((32, 32), [device])
        b = render_devices((32, 32), [json.loads(json.dumps(asdict(device)))])
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        self.assertEqual(float(render_devices((32, 32), []).abs().sum()), 0.0)
        self.assertEqual(float(render_devices((32, 32), [Device("cvc", [(2.0, 2.0), (3.0, 3.0)])]).sum()), 0.0)
        for bad, pattern in (
            (Device("stent", [(0.1, 0.1), (0.2, 0.2)]), "kind"),
            (Device("cvc", [(0.1, 0.1)]), "points"),
            (Device("cvc", [(0.1, float("nan")), (0.2, 0.2)]), "points"),
            (Device("ecg", [(0.1, 0.1), (0.2, 0.2)], width=0.0), "width"),
            (Device("ecg", [(0.1, 0.1), (0.2, 0.2)], attenuation=-1.0), "attenuation"),
            ({"kind": "cvc", "points": [(0.1, 0.1), (0.2, 0.2)], "colour": 1}, "keys"),
        ):
            with self.assertRaisesRegex(ValueError, pattern):
                render_devices((16, 16), [bad])
        with self.assertRaisesRegex(ValueError, "setting"):
            sample_devices(np.random.default_rng(0), "icu")
        with self.assertRaisesRegex(ValueError, "probabilities"):
            sample_devices(np.random.default_rng(0), probabilities={"stent": 1.0})
        with self.assertRaisesRegex(ValueError, "lung_bbox"):
            sample_devices(np.random.default_rng(0), lung_bbox=(0.5, 0.4, 0.2, 0.8))
        with self.assertRaisesRegex(ValueError, "non-empty"):
            lung_bbox_fractions(torch.zeros(8, 8))


if __name__ == "__main__":
    unittest.main()


def test_film_tone_curve_then_gamma_stays_finite():
    """Regression: the film curve at a steep slope left -1e-17 at the toe, and the display gamma made it NaN."""
    from monai_jrs.simulation.radiograph import tone_curve

    x = torch.linspace(0.0, 1.0, 4097)
    y = tone_curve(x, "film", slope=16.640749381936644, centre=0.5116089407571922, width=0.6098622765552122)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.isfinite(y**0.7818905382871989).all()
