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
"""Tests of :class:`monai_jrs.engines.JRSEvaluator` on tiny (B=2, 32x32) seeded batches."""

from __future__ import annotations

import unittest

import torch
from ignite.engine import Events
from monai.data import DataLoader
from monai.handlers import MeanDice, from_engine
from parameterized import parameterized

from tests.engines.synthetic import jrs_sample
from monai_jrs.engines import WARPED_FLOATING_MASK, JRSEvaluator
from monai_jrs.networks.nets import JRSGenerator
from monai_jrs.utils.conventions import warp

GEN_KWARGS = {"features": 8, "num_res_blocks": 1, "coarse_factor": 4, "search_size": 32, "num_rotations": 8}

_NUM_THREADS = torch.get_num_threads()


def setUpModule():  # noqa: N802
    torch.set_num_threads(1)  # tiny convolutions: multi-threading only adds overhead


def tearDownModule():  # noqa: N802
    torch.set_num_threads(_NUM_THREADS)


def _loader(num_samples: int = 4, floating_mask: bool = True, seed: int = 0) -> DataLoader:
    """A DataLoader (B=2) over seeded 32x32 samples: two lung-like boxes, the floating ones shifted."""
    g = torch.Generator().manual_seed(seed)
    items = [jrs_sample(g, floating_mask=floating_mask, max_shift=3) for _ in range(num_samples)]
    return DataLoader(items, batch_size=2)


def _generator(seed: int = 0) -> JRSGenerator:
    torch.manual_seed(seed)
    return JRSGenerator(**GEN_KWARGS)


class _ModeRecorder(torch.nn.Module):
    """Wrap a generator and record (training, grad enabled) at each forward."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.calls: list[tuple[bool, bool, bool]] = []

    def forward(self, reference, floating, reference_mask):
        self.calls.append((self.training, self.net.training, torch.is_grad_enabled()))
        return self.net(reference, floating, reference_mask)


def _record_outputs(engine: JRSEvaluator) -> list[dict]:
    outputs: list[dict] = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    return outputs


def _dice(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample Dice of binary ``(B, 1, H, W)`` masks."""
    inter = (a * b).flatten(1).sum(1)
    return 2 * inter / (a.flatten(1).sum(1) + b.flatten(1).sum(1))


class TestJRSEvaluator(unittest.TestCase):
    def test_outputs(self):
        loader = _loader()
        evaluator = JRSEvaluator("cpu", loader, _generator())
        outputs = _record_outputs(evaluator)
        evaluator.run()
        self.assertEqual(len(outputs), 2)
        for out, batch in zip(outputs, loader):
            for k in ("reference", "floating", "reference_mask", "floating_mask", "ddf_applied"):
                torch.testing.assert_close(out[k], batch[k].as_tensor() if hasattr(batch[k], "as_tensor") else batch[k])
            for k, c in (("registered", 1), ("registered_mask_prob", 1), ("registered_mask", 1), ("ddf", 2)):
                self.assertEqual(tuple(out[k].shape), (2, c, 32, 32), k)
                self.assertFalse(out[k].requires_grad, k)
            self.assertEqual(WARPED_FLOATING_MASK, "warped_floating_mask")
            expected = warp(out["floating_mask"], out["ddf"], mode="nearest")
            torch.testing.assert_close(out[WARPED_FLOATING_MASK], expected, rtol=0, atol=0)
            self.assertTrue(bool(((out[WARPED_FLOATING_MASK] == 0) | (out[WARPED_FLOATING_MASK] == 1)).all()))

    def test_no_floating_mask(self):
        evaluator = JRSEvaluator("cpu", _loader(num_samples=2, floating_mask=False), _generator())
        evaluator.run()
        out = evaluator.state.output
        self.assertNotIn("floating_mask", out)
        self.assertNotIn(WARPED_FLOATING_MASK, out)
        self.assertIn("ddf", out)

    def test_metrics(self):
        loader = _loader()
        evaluator = JRSEvaluator(
            "cpu",
            loader,
            _generator(),
            key_val_metric={
                "reg_dice": MeanDice(
                    include_background=True, output_transform=from_engine([WARPED_FLOATING_MASK, "reference_mask"])
                )
            },
            additional_metrics={
                "seg_dice": MeanDice(
                    include_background=True, output_transform=from_engine(["registered_mask", WARPED_FLOATING_MASK])
                )
            },
        )
        outputs = _record_outputs(evaluator)
        evaluator.run()
        reg = torch.cat([_dice(o[WARPED_FLOATING_MASK], o["reference_mask"]) for o in outputs]).mean()
        seg = torch.cat([_dice(o["registered_mask"], o[WARPED_FLOATING_MASK]) for o in outputs]).mean()
        self.assertAlmostEqual(evaluator.state.metrics["reg_dice"], float(reg), places=5)
        self.assertAlmostEqual(evaluator.state.metrics["seg_dice"], float(seg), places=5)
        self.assertEqual(evaluator.state.key_metric_name, "reg_dice")
        self.assertAlmostEqual(evaluator.state.best_metric, float(reg), places=5)
        self.assertGreater(float(reg), 0.5)  # near-identity generator, shifts of at most 3 pixels

    @parameterized.expand([("eval", False, False), ("train", True, True)])
    def test_network_mode(self, mode, expected_training, expected_grad):
        net = _ModeRecorder(_generator())
        net.train()
        evaluator = JRSEvaluator("cpu", _loader(), net, mode=mode)
        evaluator.run()
        self.assertEqual(net.calls, [(expected_training, expected_training, expected_grad)] * 2)
        self.assertTrue(net.training)  # the mode is restored after each iteration

    def test_amp_cpu(self):
        evaluator = JRSEvaluator("cpu", _loader(num_samples=2), _generator(), amp=True)
        evaluator.run()
        out = evaluator.state.output
        self.assertEqual(out["ddf"].dtype, torch.bfloat16)  # the generator ran under bfloat16 autocast
        for k in ("registered", "ddf", WARPED_FLOATING_MASK):
            self.assertTrue(bool(torch.isfinite(out[k].float()).all()), k)

    def test_none_batch(self):
        evaluator = JRSEvaluator("cpu", _loader(num_samples=2), _generator())
        with self.assertRaisesRegex(ValueError, "batch data"):
            evaluator._iteration(evaluator, None)


if __name__ == "__main__":
    unittest.main()
