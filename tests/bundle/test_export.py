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
"""Export of the bundle's inference network: TorchScript by ``torch.jit.script`` (MONAI's ``ckpt_export`` without
``--use_trace``, as model-zoo CI runs it), valid at any input size, and ONNX at a fixed size (``onnx_export``)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
import warnings
from pathlib import Path

import pytest
import torch
from parameterized import parameterized

from monai_jrs.networks.nets import JRSGenerator, JRSStackedGenerator
from monai_jrs.utils.conventions import rotation_matrix
from tests.networks.synthetic import deform_affine, synthetic_chest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundle"
CONFIGS = BUNDLE / "configs"
TINY = {"features": 8, "num_res_blocks": 1, "search_size": 32, "num_rotations": 36}
# two sizes per case: a scripted module must not be tied to the size it first ran at (a trace would be)
SIZES = [(48, 48), (40, 64)]


def _stacked(size: tuple[int, int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """``(B, 3, H, W)``: synthetic chest, a rotated and shifted copy, its 0/1 lung mask."""
    image, mask = synthetic_chest(size)
    matrix = rotation_matrix(torch.tensor([0.4]), torch.tensor([[3.0, -2.0]]))
    x = torch.cat([image, deform_affine(image, matrix), mask], dim=1).repeat(batch, 1, 1, 1)
    g = torch.Generator().manual_seed(seed)
    x[:, :2] = (x[:, :2] + 0.02 * torch.rand(x[:, :2].shape, generator=g)).clamp(0, 1)  # batch items differ
    return x


def _roundtrip(module: torch.nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script``, ``torch.jit.save`` and ``torch.jit.load`` (on CPU)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script / save / load are deprecated in favour of torch.export
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(module), buffer)
        buffer.seek(0)
        return torch.jit.load(buffer, map_location="cpu")


def _inference_network(**overrides) -> torch.nn.Module:
    """The ``network_def`` of ``configs/inference.json`` (the search's ``scales`` included), with id overrides."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update(overrides)
    return parser.get_parsed_content("network_def", instantiate=True)


def _load_shipped(net: torch.nn.Module) -> torch.nn.Module:
    state = torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state.get("model", state))  # a single-object ignite checkpoint is the bare state dict
    return net.eval()


def _bundle(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ...`` in a fresh interpreter, from the repository root."""
    cmd = [sys.executable, "-m", "monai.bundle", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def _export_args(kind: str, filepath: Path) -> list[str]:
    return [
        kind, "network_def", "--filepath", str(filepath), "--ckpt_file", str(BUNDLE / "models" / "model.pt"),
        "--meta_file", str(CONFIGS / "metadata.json"), "--config_file", str(CONFIGS / "inference.json"),
        "--bundle_root", str(BUNDLE),
    ]


class TestScript(unittest.TestCase):
    @parameterized.expand(
        [
            ["fusion_coarse", {"coarse_factor": 4, "seg_head": "fusion"}],
            ["learned_head", {"coarse_factor": 2, "seg_head": "learned", "num_res_blocks": 2}],
            ["full_resolution", {"coarse_factor": 1, "affine_refinement": "none", "max_rotation_deg": 30.0}],
            ["no_search", {"coarse_factor": 2, "global_alignment": "none", "integration_steps": 2,
                           "max_displacement": 3.0}],
            ["search_only", {"coarse_factor": 4, "affine_refinement": "none", "max_displacement": 2.0}],
        ]
    )
    def test_script_save_load_two_sizes(self, _, kwargs):
        torch.manual_seed(0)
        net = JRSStackedGenerator(**{**TINY, **kwargs})
        with torch.no_grad():  # weights away from their identity / zero initialisation, so every stage matters
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        net.eval()
        loaded = _roundtrip(net)
        for i, size in enumerate(SIZES):
            x = _stacked(size, batch=2, seed=i)
            with torch.no_grad():
                expected, got = net(x), loaded(x)
            self.assertEqual(tuple(got.shape), (2, 5, *size))
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)

    def test_bundle_configuration(self):
        # the bundle's network_def (fast preset) with the shipped weights, at three sizes in a row
        net = _load_shipped(_inference_network())
        loaded = _roundtrip(net)
        for size in [(64, 64), (48, 80), (64, 64)]:
            x = _stacked(size)
            with torch.no_grad():
                torch.testing.assert_close(loaded(x), net(x), atol=1e-5, rtol=0)

    def test_generator_three_inputs(self):
        net = JRSGenerator.from_preset("fast", **TINY).eval()
        loaded = _roundtrip(net)
        for size in SIZES:
            x = _stacked(size)
            args = (x[:, 0:1], x[:, 1:2], x[:, 2:3])
            with torch.no_grad():
                expected, got = net(*args), loaded(*args)
            self.assertEqual(len(got), 4)
            for e, g in zip(expected, got):
                torch.testing.assert_close(g, e, atol=1e-5, rtol=0)

    def test_scripted_input_errors(self):
        # the shape checks survive scripting (raised as torch.jit.Error, whose message names the ValueError)
        loaded = _roundtrip(JRSStackedGenerator(**TINY).eval())
        cases = {
            "two channels": (torch.rand(1, 2, 32, 32), r"\(B, 3, H, W\).*got \(1, 2, 32, 32\)"),
            "3-D": (torch.rand(3, 32, 32), r"\(B, 3, H, W\).*got \(3, 32, 32\)"),
            "too small": (torch.rand(1, 3, 6, 32), r"at least 8 x 8 pixels, got \(6, 32\)"),
        }
        for name, (x, pattern) in cases.items():
            with self.subTest(name), self.assertRaisesRegex(torch.jit.Error, "ValueError") as ctx:
                loaded(x)
            self.assertRegex(str(ctx.exception), pattern)


@pytest.mark.slow
class TestCkptExport(unittest.TestCase):
    """``python -m monai.bundle ckpt_export`` in script mode (no ``--use_trace``), as model-zoo CI runs it."""

    def test_ckpt_export_script(self):
        with tempfile.TemporaryDirectory() as tmp:
            ts = Path(tmp) / "model.ts"
            _bundle(*_export_args("ckpt_export", ts))
            extra = {"metadata.json": "", "inference.json": ""}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.load is deprecated
                exported = torch.jit.load(str(ts), map_location="cpu", _extra_files=extra)
        self.assertIsInstance(exported, torch.jit.ScriptModule)
        meta = json.loads(extra["metadata.json"])
        shipped_meta = json.loads((CONFIGS / "metadata.json").read_text())
        self.assertEqual(meta["version"], shipped_meta["version"])
        self.assertEqual(meta["network_data_format"], shipped_meta["network_data_format"])
        self.assertEqual(json.loads(extra["inference.json"])["network_def"]["_target_"],
                         "monai_jrs.networks.nets.JRSStackedGenerator")
        eager = _load_shipped(_inference_network())
        for size in [(96, 96), (80, 128)]:
            x = _stacked(size, batch=2)
            with torch.no_grad():
                got, expected = exported(x), eager(x)
            self.assertEqual(tuple(got.shape), (2, 5, *size))
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime", "onnxscript"))


@pytest.mark.slow
@unittest.skipUnless(_ONNX, "ONNX export test needs the optional packages onnx, onnxruntime and onnxscript")
class TestOnnxExport(unittest.TestCase):
    """``python -m monai.bundle onnx_export`` (torch.export-based exporter) for one fixed input size per export.

    The exported graph is valid at the size it was exported for only (like a trace): the shapes of the global
    search (search grid, FFT size, dilation of the chest window) are computed from the input size in Python.
    """

    @parameterized.expand([[(1, 3, 96, 96)], [(1, 3, 80, 128)]])
    def test_onnx_export_fixed_size(self, shape):
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            _bundle(*_export_args("onnx_export", path), "--input_shape", json.dumps(list(shape)))
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        eager = _load_shipped(_inference_network())
        x = _stacked(tuple(shape[2:]))
        with torch.no_grad():
            expected = eager(x)
        got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
        self.assertEqual(tuple(got.shape), (1, 5, *shape[2:]))
        # other float32 kernels (convolutions, FFT, grid_sample): ~1e-4 on the images, ~2e-4 px on the DDF seen
        torch.testing.assert_close(got[:, :2], expected[:, :2], atol=5e-4, rtol=0)
        torch.testing.assert_close(got[:, 3:], expected[:, 3:], atol=1e-3, rtol=0)
        # the Otsu mask may flip where the fused map lies within rounding of the threshold
        self.assertLess((got[:, 2] != expected[:, 2]).float().mean().item(), 1e-3)


if __name__ == "__main__":
    unittest.main()
