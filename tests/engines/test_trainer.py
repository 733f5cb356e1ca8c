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
"""Tests of :class:`monai_jrs.engines.JRSTrainer` on tiny (B=2, 32x32) seeded batches."""

from __future__ import annotations

import math
import unittest
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.data import DataLoader
from parameterized import parameterized

from tests.engines.synthetic import jrs_sample as _sample
from monai_jrs.engines import JRSIterationEvents, JRSPrepareBatch, JRSTrainer, run_generator
from monai_jrs.engines.trainer import run_generator_on_inputs
from monai_jrs.losses import CycleConsistencyLoss, DiscriminatorAdversarialLoss, JRSGeneratorLoss
from monai_jrs.networks.nets import JRSDiscriminator, JRSGenerator
from monai_jrs.utils.conventions import invert_ddf, warp

# every term JRSGeneratorLoss reports with these weights (vgg off: no weights file; bending on)
LOSS_TERMS = ("nmi", "ssim", "adversarial", "log_dice", "ddf", "bending", "total")
GEN_KWARGS = {"features": 8, "num_res_blocks": 1, "coarse_factor": 4, "search_size": 32, "num_rotations": 8}
DISC_KWARGS = {"channels": (8,) * 8, "hidden_features": 8}

_NUM_THREADS = torch.get_num_threads()


def setUpModule():  # noqa: N802
    # tiny convolutions: thread start-up dominates, and CPU contention makes multi-threading much slower
    torch.set_num_threads(1)


def tearDownModule():  # noqa: N802
    torch.set_num_threads(_NUM_THREADS)


def _batches(n: int = 1, seed: int = 0, **kwargs) -> list[dict]:
    """A plain list of ``n`` collated batches (B=2)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        samples = [_sample(g, **kwargs) for _ in range(2)]
        out.append({k: torch.stack([s[k] for s in samples]) for k in samples[0]})
    return out


def _nets(seed: int = 0) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    return {
        "generator": JRSGenerator(**GEN_KWARGS),
        "reverse_generator": JRSGenerator(**GEN_KWARGS),
        "disc_reference": JRSDiscriminator(**DISC_KWARGS),
        "disc_floating": JRSDiscriminator(**DISC_KWARGS),
    }


def _params(*nets: torch.nn.Module | None) -> list[torch.nn.Parameter]:
    return [p for n in nets if n is not None for p in n.parameters()]


def _trainer(data, nets: dict, optimizer: str = "adam", lr: float = 1e-3, **kwargs) -> JRSTrainer:
    """A JRSTrainer over ``nets`` (keys of :func:`_nets`; a None value disables that network)."""
    opt = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    g_opt = opt(_params(nets.get("generator"), nets.get("reverse_generator")), lr=lr)
    with_d = nets.get("disc_reference") is not None
    d_params = _params(nets.get("disc_reference"), nets.get("disc_floating"))
    args = {
        "device": "cpu",
        "max_epochs": 1,
        "train_data_loader": data,
        "g_optimizer": g_opt,
        "generator_loss": JRSGeneratorLoss(vgg_weight=0.0, bending_weight=1.0),
        "d_optimizer": opt(d_params, lr=lr) if with_d else None,
        "d_loss_function": DiscriminatorAdversarialLoss() if with_d else None,
        "cycle_loss": CycleConsistencyLoss(),
        **nets,
    }
    args.update(kwargs)
    return JRSTrainer(**args)


def _snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _params_changed(before: dict[str, torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], p.detach()) for k, p in net.named_parameters())


def _bit_identical(before: dict[str, torch.Tensor], net: torch.nn.Module) -> bool:
    """Parameters *and* buffers (BatchNorm statistics) unchanged."""
    return all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def _change_norm(before: list[dict[str, torch.Tensor]], nets: list[torch.nn.Module]) -> float:
    sq = sum(float(((p.detach() - b[k]) ** 2).sum()) for b, n in zip(before, nets) for k, p in n.named_parameters())
    return math.sqrt(sq)


def _count_events(trainer: JRSTrainer) -> list[str]:
    fired: list[str] = []
    for event in (JRSIterationEvents.GENERATOR_COMPLETED, JRSIterationEvents.DISCRIMINATOR_COMPLETED):
        trainer.add_event_handler(event, lambda _, e=event: fired.append(e.name))
    return fired


def _record_outputs(trainer: JRSTrainer) -> list[dict]:
    outputs: list[dict] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    return outputs


class TestJRSTrainerIteration(unittest.TestCase):
    def test_full_iteration(self):
        nets = _nets()
        before = {k: _snapshot(n) for k, n in nets.items()}
        g = torch.Generator().manual_seed(0)
        loader = DataLoader([_sample(g) for _ in range(2)], batch_size=2)
        trainer = _trainer(loader, nets)
        trainer.run()
        self.assertEqual(trainer.state.iteration, 1)
        for name, net in nets.items():
            self.assertTrue(_params_changed(before[name], net), f"{name} was not updated")
        out = trainer.state.output
        expected = {"loss", "g_loss", "d_loss", "cycle"} | {f"g_{t}" for t in LOSS_TERMS}
        # ``ddf_applied`` lives on the reference grid, so F (reference -> floating grid) gets no DDF term
        expected |= {f"f_{t}" for t in LOSS_TERMS if t != "ddf"}
        self.assertTrue(expected <= set(out), f"missing {expected - set(out)}")
        self.assertNotIn("f_ddf", out)
        self.assertNotIn("warmup_mse", out)
        self.assertFalse(out["warmup"])
        for k in expected:
            self.assertIsInstance(out[k], float, k)
            self.assertTrue(math.isfinite(out[k]), k)
        self.assertEqual(out["loss"], out["g_loss"])
        # generator total = G terms + F terms + cycle (the cycle weight lives inside CycleConsistencyLoss)
        self.assertAlmostEqual(out["g_loss"], out["g_total"] + out["f_total"] + out["cycle"], places=4)
        self.assertGreater(out["d_loss"], 0.0)
        shapes = {"reference": 1, "floating": 1, "reference_mask": 1, "floating_mask": 1, "registered": 1}
        shapes.update({"registered_mask_prob": 1, "registered_mask": 1, "ddf": 2, "ddf_applied": 2})
        for k, c in shapes.items():
            self.assertIsInstance(out[k], torch.Tensor, k)
            self.assertEqual(tuple(out[k].shape), (2, c, 32, 32), k)
            self.assertFalse(out[k].requires_grad, k)

    @parameterized.expand([("default_warmup_loss", None), ("custom_warmup_loss", lambda o: o["ddf"].abs().mean())])
    def test_warmup_trains_g_only(self, _, warmup_loss):
        nets = _nets()
        before = {k: _snapshot(n) for k, n in nets.items()}
        trainer = _trainer(_batches(2), nets, warmup_iterations=2, warmup_loss=warmup_loss)
        fired = _count_events(trainer)
        outputs = _record_outputs(trainer)
        trainer.run()
        self.assertTrue(_params_changed(before["generator"], nets["generator"]))
        for name in ("reverse_generator", "disc_reference", "disc_floating"):
            self.assertTrue(_bit_identical(before[name], nets[name]), f"{name} changed during warm-up")
        self.assertEqual(fired, ["GENERATOR_COMPLETED"] * 2)
        for out in outputs:
            self.assertTrue(out["warmup"])
            self.assertIn("warmup_mse", out)
            self.assertFalse(any(k.startswith(("g_", "f_")) and k != "g_loss" for k in out), sorted(map(str, out)))
            self.assertNotIn("cycle", out)
            self.assertEqual(out["d_loss"], 0.0)
            self.assertEqual(out["loss"], out["warmup_mse"])
            # the output tensors are those the loss saw (before the optimizer step)
            if warmup_loss is None:
                expected = F.mse_loss(out["registered"], out["reference"])
                expected = expected + F.mse_loss(out["ddf"], out["ddf_applied"]) / 4.0**2  # ddf_scale = 4
            else:
                expected = warmup_loss(out)
            self.assertAlmostEqual(out["warmup_mse"], float(expected), places=5)

    def test_warmup_then_full_objective(self):
        nets = _nets()
        trainer = _trainer(_batches(2), nets, warmup_iterations=1)
        fired = _count_events(trainer)
        outputs = _record_outputs(trainer)
        snapshots: dict[str, dict] = {}
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED(once=1), lambda _: snapshots.update({k: _snapshot(n) for k, n in nets.items()})
        )
        trainer.run()
        self.assertEqual([o["warmup"] for o in outputs], [True, False])
        self.assertIn("warmup_mse", outputs[0])
        self.assertNotIn("warmup_mse", outputs[1])
        for k in ("g_nmi", "g_adversarial", "f_nmi", "f_adversarial", "cycle"):
            self.assertIn(k, outputs[1])
        self.assertGreater(outputs[1]["d_loss"], 0.0)
        for name, net in nets.items():  # the second (full) iteration updates all four networks
            self.assertTrue(_params_changed(snapshots[name], net), name)
        self.assertEqual(fired, ["GENERATOR_COMPLETED", "GENERATOR_COMPLETED", "DISCRIMINATOR_COMPLETED"])

    @parameterized.expand(
        [
            ("no_reverse", {"reverse_generator": None}),
            ("no_discriminators", {"disc_reference": None}),
            ("generator_only", {"reverse_generator": None, "disc_reference": None}),
        ]
    )
    def test_disabled_networks(self, _, disabled):
        nets = _nets()
        nets.update(disabled)
        before = {k: _snapshot(n) for k, n in nets.items() if n is not None}
        trainer = _trainer(_batches(1), nets)  # D_flt is always passed: it must be ignored without F or D_ref
        fired = _count_events(trainer)
        trainer.run()
        out = trainer.state.output
        self.assertTrue(math.isfinite(out["loss"]))
        self.assertTrue(_params_changed(before["generator"], nets["generator"]))
        self.assertIsNone(trainer.disc_floating)
        self.assertTrue(_bit_identical(before["disc_floating"], nets["disc_floating"]))
        self.assertIn("g_nmi", out)
        if nets["reverse_generator"] is None:
            self.assertFalse(any(str(k).startswith("f_") for k in out))
            self.assertNotIn("cycle", out)
        else:
            self.assertIn("f_nmi", out)
            self.assertIn("cycle", out)
            self.assertTrue(_params_changed(before["reverse_generator"], nets["reverse_generator"]))
        if nets["disc_reference"] is None:
            self.assertNotIn("g_adversarial", out)
            self.assertNotIn("f_adversarial", out)
            self.assertEqual(out["d_loss"], 0.0)
            self.assertEqual(fired, ["GENERATOR_COMPLETED"])
        else:
            self.assertIn("g_adversarial", out)
            self.assertTrue(_params_changed(before["disc_reference"], nets["disc_reference"]))
            self.assertEqual(fired, ["GENERATOR_COMPLETED", "DISCRIMINATOR_COMPLETED"])

    def test_floating_mask_derived(self):
        trainer = _trainer(_batches(1, floating_mask=False), _nets())
        trainer.run()
        out = trainer.state.output
        self.assertIn("floating_mask", out)
        self.assertIn("f_log_dice", out)
        flt_mask = out["floating_mask"]
        self.assertEqual(tuple(flt_mask.shape), (2, 1, 32, 32))
        self.assertTrue(bool(((flt_mask == 0) | (flt_mask == 1)).all()))
        # the reference mask carried onto the floating grid by the inverse of G's DDF
        expected = (warp(out["reference_mask"], invert_ddf(out["ddf"]), mode="bilinear") > 0.5).float()
        torch.testing.assert_close(flt_mask, expected)

    def test_floating_mask_from_batch(self):
        data = _batches(1)
        trainer = _trainer(data, _nets())
        trainer.run()
        torch.testing.assert_close(trainer.state.output["floating_mask"], data[0]["floating_mask"])

    def test_events_once_per_iteration(self):
        nets = _nets()
        trainer = _trainer(_batches(2), nets)
        fired = _count_events(trainer)
        before_g, before_d = _snapshot(nets["generator"]), _snapshot(nets["disc_reference"])
        at_g_step: list[tuple[bool, bool]] = []
        trainer.add_event_handler(
            JRSIterationEvents.GENERATOR_COMPLETED,
            lambda _: at_g_step.append(
                (_params_changed(before_g, nets["generator"]), _params_changed(before_d, nets["disc_reference"]))
            ),
        )
        trainer.run()
        self.assertEqual(fired, ["GENERATOR_COMPLETED", "DISCRIMINATOR_COMPLETED"] * 2)
        self.assertEqual(at_g_step[0], (True, False))  # G has stepped, D not yet

    def test_d_train_steps(self):
        nets = _nets()
        trainer = _trainer(_batches(1), nets, d_train_steps=2)
        fired = _count_events(trainer)
        trainer.run()
        self.assertEqual(fired, ["GENERATOR_COMPLETED", "DISCRIMINATOR_COMPLETED"])
        d_steps = {int(s["step"]) for s in trainer.d_optimizer.state.values()}
        g_steps = {int(s["step"]) for s in trainer.g_optimizer.state.values()}
        self.assertEqual(len(trainer.d_optimizer.state), len(_params(nets["disc_reference"], nets["disc_floating"])))
        self.assertEqual(d_steps, {2})
        self.assertEqual(g_steps, {1})

    def test_gradient_clipping(self):
        # SGD with lr=1 moves the parameters by -clipped_grad, whose total norm is at most clip_grad_norm:
        # ||delta(G, F)|| <= lr * clip and ||delta(D_ref, D_flt)|| <= lr * clip (one D step). The gradients here
        # are far larger than clip, so the bound is reached (up to float32 rounding of the tiny per-element steps;
        # 1e-3 rather than e.g. 1e-8 keeps those steps well above the parameters' resolution).
        lr, clip = 1.0, 1e-3
        changes = {}
        for clip_grad_norm in (clip, None):
            nets = _nets(seed=3)
            g_nets = [nets["generator"], nets["reverse_generator"]]
            d_nets = [nets["disc_reference"], nets["disc_floating"]]
            g_before, d_before = [_snapshot(n) for n in g_nets], [_snapshot(n) for n in d_nets]
            trainer = _trainer(_batches(1), nets, optimizer="sgd", lr=lr, clip_grad_norm=clip_grad_norm)
            trainer.run()
            changes[clip_grad_norm] = (_change_norm(g_before, g_nets), _change_norm(d_before, d_nets))
        bound = lr * clip
        for clipped in changes[clip]:
            self.assertLessEqual(clipped, bound * 1.01)
            self.assertGreater(clipped, bound * 0.99)
        for unclipped in changes[None]:
            self.assertGreater(unclipped, 10 * bound)

    def test_amp_cpu(self):
        nets = _nets()
        before = _snapshot(nets["generator"])
        trainer = _trainer(_batches(1), nets, amp=True)
        with warnings.catch_warnings():  # monai.engines.Trainer.run builds a (disabled) CUDA GradScaler
            warnings.simplefilter("ignore")
            trainer.run()
        self.assertIsNone(trainer.g_scaler)
        self.assertIsNone(trainer.d_scaler)
        out = trainer.state.output
        self.assertEqual(out["ddf"].dtype, torch.bfloat16)  # the forward ran under bfloat16 autocast
        for k, v in out.items():
            if isinstance(v, float):
                self.assertTrue(math.isfinite(v), k)
        self.assertIn("cycle", out)
        self.assertTrue(_params_changed(before, nets["generator"]))
        self.assertTrue(all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in _params(*nets.values())))


def _with_inputs(batches: list[dict], seed: int = 1, clean: bool = False) -> list[dict]:
    """``batches`` plus ``reference_input`` / ``floating_input``: a random monotonic remap (or copies of the clean
    images with ``clean=True``)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in batches:
        b = dict(b)
        for key in ("reference", "floating"):
            x = b[key]
            remapped = (1.0 - x**2 + 0.05 * torch.rand(x.shape, generator=g)).clamp(0, 1)
            b[f"{key}_input"] = x.clone() if clean else remapped
        out.append(b)
    return out


class _Recorder:
    """Forward (pre-)hooks recording what a module was called with."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls: list[tuple[torch.Tensor, ...]] = []
        module.register_forward_pre_hook(lambda _, args: self.calls.append(tuple(a.detach().clone() for a in args)))


def _loss_spy(loss: Callable) -> tuple[list[dict], Callable]:
    """A generator loss that records (copies of) the outputs it scores."""
    seen: list[dict] = []

    def spy(outputs, d_output):
        seen.append({k: v.detach().clone() for k, v in outputs.items() if isinstance(v, torch.Tensor)})
        return loss(outputs, d_output)

    return seen, spy


class TestJRSTrainerAppearanceInputs(unittest.TestCase):
    """``reference_input`` / ``floating_input``: the networks see them, the losses and the discriminators see the
    clean images."""

    def test_losses_and_discriminators_see_clean_images(self):
        nets = _nets()
        data = _with_inputs(_batches(1))
        batch = data[0]
        seen, spy = _loss_spy(JRSGeneratorLoss(vgg_weight=0.0, bending_weight=1.0))
        g_calls, f_calls = _Recorder(nets["generator"]), _Recorder(nets["reverse_generator"])
        d_ref_calls, d_flt_calls = _Recorder(nets["disc_reference"]), _Recorder(nets["disc_floating"])
        trainer = _trainer(data, nets, generator_loss=spy)
        trainer.run()
        out = trainer.state.output
        ref, flt = batch["reference"], batch["floating"]
        ref_in, flt_in = batch["reference_input"], batch["floating_input"]
        # the networks ran on the randomised inputs: G(ref_in, flt_in), F(flt_in, ref_in), then the cycle passes
        self.assertEqual(len(g_calls.calls), 2)
        self.assertEqual(len(f_calls.calls), 2)
        torch.testing.assert_close(g_calls.calls[0][0], ref_in, rtol=0, atol=0)
        torch.testing.assert_close(g_calls.calls[0][1], flt_in, rtol=0, atol=0)
        torch.testing.assert_close(f_calls.calls[0][0], flt_in, rtol=0, atol=0)
        torch.testing.assert_close(f_calls.calls[0][1], ref_in, rtol=0, atol=0)
        # cycle: F(flt_in, G's warped flt_in) and G(ref_in, F's warped ref_in)
        torch.testing.assert_close(f_calls.calls[1][0], flt_in, rtol=0, atol=0)
        torch.testing.assert_close(f_calls.calls[1][1], out["registered_input"], rtol=0, atol=0)
        torch.testing.assert_close(g_calls.calls[1][0], ref_in, rtol=0, atol=0)
        # the loss path: clean reference, registered = the clean floating warped with the predicted DDF
        self.assertEqual(len(seen), 2)  # G then F
        g_seen, f_seen = seen
        torch.testing.assert_close(g_seen["reference"], ref, rtol=0, atol=0)
        torch.testing.assert_close(g_seen["registered"], warp(flt, g_seen["ddf"]), rtol=0, atol=0)
        torch.testing.assert_close(g_seen["registered_input"], warp(flt_in, g_seen["ddf"]), rtol=1e-6, atol=1e-6)
        self.assertFalse(torch.allclose(g_seen["registered"], g_seen["registered_input"]))
        torch.testing.assert_close(f_seen["reference"], flt, rtol=0, atol=0)
        torch.testing.assert_close(f_seen["registered"], warp(ref, f_seen["ddf"]), rtol=0, atol=0)
        # the masks the loss scores are the generator's own, on the grid of the same DDF
        torch.testing.assert_close(g_seen["registered_mask_prob"], out["registered_mask_prob"], rtol=0, atol=0)
        # the engine output is what the loss saw
        for k in ("registered", "registered_input", "ddf", "registered_mask", "reference", "floating"):
            torch.testing.assert_close(out[k], g_seen.get(k, batch.get(k)), rtol=0, atol=0, msg=k)
        torch.testing.assert_close(out["reference_input"], ref_in, rtol=0, atol=0)
        torch.testing.assert_close(out["floating_input"], flt_in, rtol=0, atol=0)
        # discriminators: clean real images and the clean registered images (the generator pass, then the D step)
        for calls, real, fake in ((d_ref_calls, ref, g_seen["registered"]), (d_flt_calls, flt, f_seen["registered"])):
            self.assertEqual(len(calls.calls), 3)
            torch.testing.assert_close(calls.calls[0][0], fake, rtol=0, atol=0)
            torch.testing.assert_close(calls.calls[1][0], real, rtol=0, atol=0)
            torch.testing.assert_close(calls.calls[2][0], fake, rtol=0, atol=0)

    def test_warmup_loss_sees_clean_registered(self):
        data = _with_inputs(_batches(1))
        outputs: list[dict] = []

        def warmup_loss(o: dict) -> torch.Tensor:
            outputs.append({k: v.detach().clone() for k, v in o.items()})
            return F.mse_loss(o["registered"], o["reference"])

        trainer = _trainer(data, _nets(), warmup_iterations=1, warmup_loss=warmup_loss)
        trainer.run()
        (o,) = outputs
        torch.testing.assert_close(o["reference"], data[0]["reference"], rtol=0, atol=0)
        torch.testing.assert_close(o["registered"], warp(data[0]["floating"], o["ddf"]), rtol=0, atol=0)

    @parameterized.expand([("reference_only", "reference_input"), ("floating_only", "floating_input")])
    def test_one_input_key(self, _, key):
        data = _with_inputs(_batches(1))
        other = "floating_input" if key == "reference_input" else "reference_input"
        del data[0][other]
        nets = _nets()
        g_calls = _Recorder(nets["generator"])
        trainer = _trainer(data, nets)
        trainer.run()
        ref_seen, flt_seen = g_calls.calls[0][:2]
        expected_ref = data[0]["reference_input"] if key == "reference_input" else data[0]["reference"]
        expected_flt = data[0]["floating_input"] if key == "floating_input" else data[0]["floating"]
        torch.testing.assert_close(ref_seen, expected_ref, rtol=0, atol=0)
        torch.testing.assert_close(flt_seen, expected_flt, rtol=0, atol=0)
        out = trainer.state.output
        torch.testing.assert_close(out["registered"], warp(data[0]["floating"], out["ddf"]), rtol=0, atol=0)

    def test_clean_copies_equal_no_inputs(self):
        """Inputs equal to the clean images train as no inputs: the clean warp is the generator's own warp, so the
        forward pass is bit-identical; the gradients only differ by float rounding (in the cycle the warped image
        is one tensor without inputs, two equal ones with them; SGD, as Adam would blow up the rounding of the
        near-zero gradients, e.g. of a convolution bias followed by BatchNorm)."""
        results = []
        for data in (_batches(2), _with_inputs(_batches(2), clean=True)):
            nets = _nets()
            trainer = _trainer(data, nets, optimizer="sgd", lr=0.1, warmup_iterations=1)
            outputs = _record_outputs(trainer)
            trainer.run()
            results.append((nets, outputs))
        (nets_a, out_a), (nets_b, out_b) = results
        for name in nets_a:
            for (k, a), b in zip(nets_a[name].state_dict().items(), nets_b[name].state_dict().values()):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{name}.{k}")
        self.assertEqual(out_a[0]["warmup_mse"], out_b[0]["warmup_mse"])  # same step, same forward
        torch.testing.assert_close(out_a[0]["registered"], out_b[0]["registered"], rtol=0, atol=0)
        for k in ("g_loss", "d_loss", "cycle", "g_nmi", "f_nmi"):
            self.assertAlmostEqual(out_a[1][k], out_b[1][k], places=4, msg=k)
        self.assertNotIn("registered_input", out_a[-1])
        self.assertNotIn("reference_input", out_a[-1])
        self.assertIn("registered_input", out_b[-1])

    def test_without_inputs_unchanged(self):
        """No input keys: the warm-up loss is that of run_generator on the clean images (the code path before)."""
        nets = _nets()
        expected_net = _nets()["generator"].train()  # same seed: same initial weights
        data = _batches(1)
        trainer = _trainer(data, nets, warmup_iterations=1)
        trainer.run()
        b = data[0]
        with torch.no_grad():
            o = run_generator(expected_net, b["reference"], b["floating"], b["reference_mask"])
        expected = F.mse_loss(o["registered"], b["reference"]) + F.mse_loss(o["ddf"], b["ddf_applied"]) / 4.0**2
        self.assertEqual(trainer.state.output["warmup_mse"], float(expected))
        self.assertNotIn("registered_input", trainer.state.output)

    def test_prepare_batch_moves_inputs(self):
        batch = _with_inputs(_batches(1))[0]
        batch["reference_input"] = batch["reference_input"].double()
        out = JRSPrepareBatch()(batch, "cpu")
        self.assertEqual(out["reference_input"].dtype, torch.float32)
        torch.testing.assert_close(out["floating_input"], batch["floating_input"], rtol=0, atol=0)
        self.assertNotIn("reference_input", JRSPrepareBatch(input_keys=())(batch, "cpu"))

    def test_input_shape_mismatch(self):
        x = _batches(1)[0]
        net = _nets()["generator"]
        with self.assertRaisesRegex(ValueError, r"`floating_input` must have the shape of `floating`"):
            run_generator_on_inputs(net, x["reference"], x["floating"], x["reference_mask"],
                                    floating_input=x["floating"][..., :16])


class TestJRSTrainerConstructor(unittest.TestCase):
    @parameterized.expand(
        [
            ("no_d_optimizer", {"d_optimizer": None}, "d_optimizer"),
            ("no_d_loss_function", {"d_loss_function": None}, "d_loss_function"),
            ("negative_warmup", {"warmup_iterations": -1}, "warmup_iterations"),
            ("zero_d_train_steps", {"d_train_steps": 0}, "d_train_steps"),
        ]
    )
    def test_ill_arguments(self, _, kwargs, name):
        with self.assertRaisesRegex(ValueError, name):
            _trainer(_batches(1), _nets(), **kwargs)

    def test_generator_must_return_four(self):
        class _Bad(torch.nn.Module):
            def forward(self, reference, floating, reference_mask):
                return reference, floating

        x = _batches(1)[0]
        with self.assertRaisesRegex(ValueError, "must return"):
            run_generator(_Bad(), x["reference"], x["floating"], x["reference_mask"])
        with torch.no_grad():
            out = run_generator(_nets()["generator"].eval(), x["reference"], x["floating"], x["reference_mask"])
        self.assertEqual(set(out), {"registered", "registered_mask_prob", "registered_mask", "ddf"})


if __name__ == "__main__":
    unittest.main()
