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
"""JRSGenerator and JRSDiscriminator: shapes, identity, the warp path, global alignment, export and errors."""

from __future__ import annotations

import itertools
import math
import os
import tempfile
import unittest
import warnings

import torch
from parameterized import parameterized

from monai_jrs.networks.blocks import (
    FeatureFusionSegmentation,
    GlobalAlignment,
    bound_displacement,
    compose_affine_and_local,
    integrate_velocity,
)
from monai_jrs.networks.nets import JRS_GENERATOR_PRESETS, JRSDiscriminator, JRSGenerator
from monai_jrs.utils.conventions import affine_to_ddf, compose_ddf, identity_grid, resize_ddf, rotation_matrix, warp
from monai_jrs.utils.enums import JRSKeys
from tests.networks.synthetic import deform_affine, synthetic_chest
from tests.test_utils import eval_mode_ctx, test_script_save

SMALL = {"features": 8, "num_res_blocks": 1, "search_size": 32}


def _inputs(size, batch=1, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(batch, channels, *size, generator=g)
    flt = torch.rand(batch, channels, *size, generator=g)
    mask = (torch.rand(batch, 1, *size, generator=g) > 0.5).float()
    return ref, flt, mask


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = (a > 0.5).float(), (b > 0.5).float()
    return (2.0 * (a * b).sum() / (a.sum() + b.sum())).item()


# sizes x presets x seg heads; the other options cycle so that every value of each appears several times
_OPTIONS = itertools.cycle(
    [
        {"global_alignment": "search", "affine_refinement": "learned"},
        {"global_alignment": "none", "affine_refinement": "none", "integration_steps": 3},
        {"global_alignment": "search", "affine_refinement": "none", "max_displacement": 2.0},
        {"global_alignment": "none", "affine_refinement": "learned", "integration_steps": 2, "max_displacement": 4.0},
        {"global_alignment": "search", "affine_refinement": "learned", "integration_steps": 1},
    ]
)
TEST_CASES_SHAPE = [
    [preset, seg_head, size, batch, next(_OPTIONS)]
    for size, batch in (((16, 16), 2), ((17, 23), 1), ((32, 48), 2), ((45, 31), 1), ((8, 8), 1))
    for preset in ("paper", "fast")
    for seg_head in ("fusion", "learned")
]


class TestJRSGenerator(unittest.TestCase):
    @parameterized.expand(TEST_CASES_SHAPE)
    def test_shape(self, preset, seg_head, size, batch, options):
        torch.manual_seed(0)
        net = JRSGenerator.from_preset(preset, seg_head=seg_head, **SMALL, **options)
        ref, flt, mask = _inputs(size, batch)
        with eval_mode_ctx(net):
            registered, prob, binary, ddf = net(ref, flt, mask)
        self.assertEqual(tuple(registered.shape), (batch, 1, *size))
        self.assertEqual(tuple(prob.shape), (batch, 1, *size))
        self.assertEqual(tuple(binary.shape), (batch, 1, *size))
        self.assertEqual(tuple(ddf.shape), (batch, 2, *size))
        for t in (registered, prob, binary, ddf):
            self.assertTrue(bool(torch.isfinite(t).all()))
        # the registered image is the floating image warped by the returned field, nothing else
        torch.testing.assert_close(registered, warp(flt, ddf, padding_mode="border"), atol=0, rtol=0)
        self.assertTrue(set(binary.unique().tolist()) <= {0.0, 1.0})
        self.assertTrue(bool(((prob >= 0) & (prob <= 1)).all()))

    @parameterized.expand([[(16, 16), 2], [(17, 23), 1], [(32, 48), 3]])
    def test_multichannel_and_train_mode(self, size, channels):
        torch.manual_seed(0)
        net = JRSGenerator.from_preset("fast", in_channels=channels, **SMALL)
        ref, flt, mask = _inputs(size, batch=2, channels=channels)
        registered, prob, binary, ddf = net(ref, flt, mask)  # train mode, with gradients
        self.assertEqual(tuple(registered.shape), (2, channels, *size))
        self.assertEqual(tuple(ddf.shape), (2, 2, *size))
        (registered.mean() + prob.mean() + ddf.pow(2).mean()).backward()
        self.assertGreater(net.ddf_head.weight.grad.abs().sum().item(), 0.0)
        self.assertGreater(net.stem.conv.weight.grad.abs().sum().item(), 0.0)

    def test_forward_dict(self):
        torch.manual_seed(0)
        net = JRSGenerator.from_preset("fast", **SMALL).eval()
        ref, flt, mask = _inputs((16, 20))
        with torch.no_grad():
            out = net.forward_dict(ref, flt, mask)
            tup = net(ref, flt, mask)
        keys = [JRSKeys.REGISTERED, JRSKeys.REGISTERED_MASK_PROB, JRSKeys.REGISTERED_MASK, JRSKeys.DDF]
        self.assertEqual(list(out), [k.value for k in keys])
        for k, t in zip(keys, tup):
            torch.testing.assert_close(out[k.value], t, atol=0, rtol=0)
        with self.assertRaises(ValueError):
            JRSGenerator.outputs_to_dict(tup[:3])
        with self.assertRaises(ValueError):
            JRSGenerator.outputs_to_dict(out)

    @parameterized.expand(
        [[p, s, r] for p in ("paper", "fast") for s in ((16, 16), (17, 23), (45, 31)) for r in ("none", "learned")]
    )
    def test_identity_at_init(self, preset, size, refinement):
        # no global search and an identity-initialised refinement: the flow head (Normal(0, 1e-5)) gives ddf ~ 0
        # measured max |ddf| <= 2.5e-4 over these cases
        torch.manual_seed(0)
        net = JRSGenerator.from_preset(preset, global_alignment="none", affine_refinement=refinement, **SMALL)
        ref, flt, mask = _inputs(size, batch=2)
        with eval_mode_ctx(net):
            registered, _, _, ddf = net(ref, flt, mask)
        self.assertLess(ddf.abs().max().item(), 2e-3)
        self.assertLess((registered - flt).abs().max().item(), 2e-3)
        self.assertEqual(net.ddf_head.bias.abs().max().item(), 0.0)
        self.assertLess(net.ddf_head.weight.std().item(), 2e-5)

    @parameterized.expand([["paper", 0], ["paper", 3], ["fast", 0], ["fast", 3]])
    def test_max_displacement_bounds_field(self, preset, steps):
        torch.manual_seed(0)
        net = JRSGenerator.from_preset(
            preset, global_alignment="none", affine_refinement="none", max_displacement=1.5, integration_steps=steps,
            **SMALL,
        ).eval()
        with torch.no_grad():
            net.ddf_head.weight.normal_(0.0, 1.0)  # a strong head: unbounded fields reach 3-18 px
        ref, flt, mask = _inputs((17, 23), batch=2)
        with torch.no_grad():
            ddf = net(ref, flt, mask)[3]
            net.max_displacement = None
            unbounded = net(ref, flt, mask)[3]
        self.assertGreater(unbounded.abs().max().item(), 3.0)
        self.assertLessEqual(ddf.abs().max().item(), 1.5 + 1e-5)  # per component, full-resolution pixels
        self.assertGreater(ddf.abs().max().item(), 1.4)  # and the bound is reached

    @parameterized.expand([["fusion", 0, None], ["fusion", 2, 2.0], ["learned", 3, 1.0]])
    def test_stages_compose_as_documented(self, seg_head, steps, max_displacement):
        # local head -> bound (coarse pixels) -> scaling and squaring -> resize -> exact affine composition
        torch.manual_seed(0)
        net = JRSGenerator.from_preset(
            "fast", seg_head=seg_head, integration_steps=steps, max_displacement=max_displacement, **SMALL
        ).eval()
        with torch.no_grad():
            net.ddf_head.weight.normal_(0.0, 0.05)
            net.global_stage.refinement_net.head.bias.copy_(torch.tensor([0.02, -0.05, 0.3, 0.04, 0.01, -0.2]))
        captured: dict[str, list[torch.Tensor]] = {"local": [], "maps": []}
        hooks = [net.ddf_head.register_forward_hook(lambda m, i, o: captured["local"].append(o))]
        hooks.append(net.stem.register_forward_hook(lambda m, i, o: captured["maps"].append(o)))
        for block in net.res_blocks:
            hooks.append(block.conv1.register_forward_hook(lambda m, i, o: captured["maps"].append(o)))
            hooks.append(block.act.register_forward_hook(lambda m, i, o: captured["maps"].append(o)))
        image, mask = synthetic_chest((40, 44))
        floating = deform_affine(image, rotation_matrix(math.radians(50.0), (3.0, -4.0)))
        with torch.no_grad():
            registered, prob, binary, ddf = net(image, floating, mask)
            for h in hooks:
                h.remove()
            matrix = net.global_stage(image, floating, mask)  # the search window is the dilated reference mask
            local = captured["local"][0]
            coarse = net.coarse_shape(40, 44)
            self.assertEqual(tuple(local.shape[2:]), coarse)
            if max_displacement is not None:
                local = bound_displacement(
                    local, [max_displacement * (coarse[0] - 1) / 39, max_displacement * (coarse[1] - 1) / 43]
                )
            local = resize_ddf(integrate_velocity(local, steps), (40, 44))
            expected = compose_affine_and_local(matrix, local)
        self.assertGreater(local.abs().max().item(), 0.1)  # the local stage contributes
        torch.testing.assert_close(ddf, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(registered, warp(floating, ddf, padding_mode="border"), atol=0, rtol=0)
        # segmentation from the activations of all 1 + 2 * num_res_blocks convolution layers
        self.assertEqual(len(captured["maps"]), net.num_feature_layers)
        self.assertEqual(net.num_feature_layers, 3)
        if seg_head == "fusion":
            exp_prob, exp_mask = FeatureFusionSegmentation(temperature=0.05)(captured["maps"], (40, 44))
            torch.testing.assert_close(prob, exp_prob, atol=1e-6, rtol=0)
            torch.testing.assert_close(binary, exp_mask, atol=0, rtol=0)

    @parameterized.expand(
        [
            [64, 35.0, (10.0, -12.0)],
            [64, 90.0, (-20.0, 15.0)],
            [64, -135.0, (25.0, 25.0)],
            [96, 180.0, (-15.0, -25.0)],
            [96, -60.0, (0.0, -40.0)],
        ]
    )
    def test_global_alignment_recovers_large_motion(self, size, degrees, shift):
        # measured (fast preset, affine_refinement="none"): TRE mean <= 0.52 px, Dice(recovered, ideal) >= 0.988
        image, mask = synthetic_chest(size)
        s = size / 96.0
        applied = rotation_matrix(math.radians(degrees), (shift[0] * s, shift[1] * s))
        floating, floating_mask = deform_affine(image, applied), deform_affine(mask, applied)
        torch.manual_seed(0)
        net = JRSGenerator.from_preset("fast", features=8, num_res_blocks=1, search_size=64, affine_refinement="none")
        with eval_mode_ctx(net):
            registered, _, _, ddf = net(image, floating, mask)
        ddf_applied = affine_to_ddf(applied, (size, size))
        tre = (ddf - ddf_applied).norm(dim=1)
        self.assertLess(tre.mean().item(), 1.0)
        self.assertLess(tre.max().item(), 1.6)
        ideal = warp(floating_mask, ddf_applied, padding_mode="zeros")
        recovered = warp(floating_mask, ddf, padding_mode="zeros")
        self.assertLess(_dice(floating_mask, mask), 0.35)
        self.assertGreater(_dice(recovered, ideal), 0.97)
        self.assertGreater(_dice(recovered, mask), 0.8)
        self.assertGreater(_dice(recovered, mask), _dice(ideal, mask) - 0.03)
        # inside the lungs the registered image matches the reference
        inside = mask.bool() & (ideal > 0.5)
        self.assertLess((registered - image)[inside].abs().mean().item(), 0.05)

    def test_reverse_generator(self):
        # F is another instance of the same class, called the other way round: F(floating, reference, floating_mask)
        # measured (search_size=64): TRE of F vs the inverse affine <= 0.09 px, mean |F o G| <= 0.08 px
        image, mask = synthetic_chest(64)
        applied = rotation_matrix(math.radians(60.0), (4.0, -6.0))
        floating, floating_mask = deform_affine(image, applied), deform_affine(mask, applied)
        torch.manual_seed(0)
        options = {"features": 8, "num_res_blocks": 1, "search_size": 64, "affine_refinement": "none"}
        gen_g = JRSGenerator.from_preset("fast", **options).eval()
        gen_f = JRSGenerator.from_preset("fast", **options).eval()
        with torch.no_grad():
            _, _, _, ddf_g = gen_g(image, floating, mask)
            reg_f, prob_f, mask_f, ddf_f = gen_f(floating, image, (floating_mask > 0.5).float())
        for t, c in ((reg_f, 1), (prob_f, 1), (mask_f, 1), (ddf_f, 2)):
            self.assertEqual(tuple(t.shape), (1, c, 64, 64))
        torch.testing.assert_close(reg_f, warp(image, ddf_f, padding_mode="border"), atol=0, rtol=0)
        inverse = affine_to_ddf(torch.linalg.inv(applied), (64, 64))
        self.assertLess((ddf_f - inverse).norm(dim=1).mean().item(), 0.5)
        # the two fields are inverse to each other where G's samples stay in the grid: F o G ~ identity
        cycle = compose_ddf(ddf_f, ddf_g)
        pts = identity_grid((64, 64)) + ddf_g
        inside = ((pts[:, 0] > 1) & (pts[:, 0] < 62) & (pts[:, 1] > 1) & (pts[:, 1] < 62)).unsqueeze(1)
        self.assertGreater(int(inside.sum()), 3000)
        self.assertLess(cycle.norm(dim=1, keepdim=True)[inside].mean().item(), 0.3)

    def test_presets(self):
        self.assertEqual(JRS_GENERATOR_PRESETS["paper"], {"features": 64, "num_res_blocks": 8, "coarse_factor": 1})
        self.assertEqual(JRS_GENERATOR_PRESETS["fast"], {"features": 32, "num_res_blocks": 4, "coarse_factor": 4})
        paper = JRSGenerator.from_preset("paper")
        convs = [m for m in paper.res_blocks.modules() if isinstance(m, torch.nn.Conv2d)]
        self.assertEqual(len(convs), 16)  # 8 residual blocks = 16 3x3 convolutions with 64 maps
        self.assertTrue(all(c.kernel_size == (3, 3) and c.in_channels == c.out_channels == 64 for c in convs))
        self.assertEqual(sum(isinstance(m, torch.nn.BatchNorm2d) for m in paper.res_blocks.modules()), 16)
        self.assertEqual(paper.coarse_shape(45, 31), (45, 31))
        self.assertEqual(paper.stem.conv.in_channels, 3)  # reference, floating, reference mask
        fast = JRSGenerator.from_preset("fast", seg_head="learned")
        self.assertEqual((fast.features, fast.num_res_blocks, fast.coarse_factor), (32, 4, 4))
        self.assertEqual(fast.coarse_shape(45, 31), (11, 8))
        self.assertEqual(fast.coarse_shape(8, 5), (2, 2))
        self.assertEqual(fast.seg_head.conv.in_channels, 9 * 32)  # stem + 2 per block
        over = JRSGenerator.from_preset("paper", features=8, coarse_factor=2)
        self.assertEqual((over.features, over.num_res_blocks, over.coarse_factor), (8, 8, 2))

    def test_global_stage_structure(self):
        self.assertIsNone(JRSGenerator(global_alignment="none", affine_refinement="none", **SMALL).global_stage)
        search_only = JRSGenerator(global_alignment="search", affine_refinement="none", **SMALL).global_stage
        self.assertEqual(len(list(search_only.parameters())), 0)
        learned_only = JRSGenerator(global_alignment="none", affine_refinement="learned", **SMALL).global_stage
        self.assertFalse(learned_only.exhaustive_search)
        self.assertGreater(len(list(learned_only.parameters())), 0)

    def test_trace_save_load(self):
        # traced in eval mode, saved, loaded: matches eager mode, also on new inputs of the same size (the global
        # search result is not frozen into the trace)
        torch.manual_seed(0)
        net = JRSGenerator.from_preset(
            "fast", integration_steps=2, max_displacement=3.0, num_rotations=36, **SMALL
        ).eval()
        image, mask = synthetic_chest((32, 48))
        floating = deform_affine(image, rotation_matrix(math.radians(120.0), (5.0, -7.0)))
        other = deform_affine(image, rotation_matrix(math.radians(-40.0), (-3.0, 6.0)))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # check_trace=False: the comparison with eager mode below is the check (and half the cost)
            traced = torch.jit.trace(net, (image, floating, mask), strict=False, check_trace=False)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "generator.ts")
                torch.jit.save(traced, path)
                loaded = torch.jit.load(path, map_location="cpu")
            for flt in (floating, other):
                expected, got = net(image, flt, mask), loaded(image, flt, mask)
                self.assertEqual(len(got), 4)
                for e, g in zip(expected, got):
                    torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)
            self.assertGreater((expected[3] - net(image, floating, mask)[3]).abs().max().item(), 1.0)

    @parameterized.expand(
        [
            [{"features": 0}], [{"features": 2.5}], [{"features": True}], [{"num_res_blocks": -1}],
            [{"coarse_factor": 0}], [{"in_channels": 0}], [{"integration_steps": -1}], [{"max_displacement": 0.0}],
            [{"max_displacement": -2.0}], [{"max_displacement": float("nan")}], [{"global_alignment": "rigid"}],
            [{"affine_refinement": "yes"}], [{"seg_head": "unet"}], [{"search_size": 4}], [{"num_rotations": 0}],
            [{"max_rotation_deg": 270.0}], [{"seg_temperature": 0.0}],
        ]
    )
    def test_ill_args(self, kwargs):
        with self.assertRaises(ValueError):
            JRSGenerator(**{**SMALL, **kwargs})

    def test_ill_preset(self):
        with self.assertRaises(ValueError):
            JRSGenerator.from_preset("huge")

    def test_ill_inputs(self):
        net = JRSGenerator.from_preset("fast", **SMALL).eval()
        ref, flt, mask = _inputs((16, 16))
        nan = ref.clone()
        nan[0, 0, 3, 4] = float("nan")
        inf = flt.clone()
        inf[0, 0, 0, 0] = float("inf")
        cases = {
            "nan_ref": (nan, flt, mask),
            "inf_flt": (ref, inf, mask),
            "nan_mask": (ref, flt, mask * float("nan")),
            "mask_above_1": (ref, flt, mask * 1.5),
            "mask_negative": (ref, flt, mask - 0.1),
            "mask_channels": (ref, flt, mask.repeat(1, 2, 1, 1)),
            "ref_channels": (ref.repeat(1, 2, 1, 1), flt, mask),
            "flt_size": (ref, flt[..., :15], mask),
            "flt_batch": (ref, flt.repeat(2, 1, 1, 1), mask),
            "mask_size": (ref, flt, mask[..., :15, :]),
            "3d": (ref[0], flt[0], mask[0]),
            "tiny": (ref[..., :7, :], flt[..., :7, :], mask[..., :7, :]),
            "int": (ref.long(), flt, mask),
        }
        for name, args in cases.items():
            with self.subTest(name), self.assertRaises(ValueError):
                net(*args)


class _FixedShift(torch.nn.Module):
    """A global stage of one's own: always the same translation (rows, cols) in pixels."""

    def __init__(self, shift: tuple[float, float]) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(shift))

    def forward(self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor) -> torch.Tensor:
        m = torch.eye(3, dtype=reference.dtype, device=reference.device).repeat(reference.shape[0], 1, 1)
        m[:, :2, 2] = self.shift.to(reference.dtype)
        return m


class TestInjectedGlobalStage(unittest.TestCase):
    def test_injected_stage_is_used(self):
        torch.manual_seed(0)
        net = JRSGenerator(features=4, num_res_blocks=1, coarse_factor=4, global_stage=_FixedShift((3.0, -2.0))).eval()
        self.assertIsInstance(net.global_stage, _FixedShift)
        x = torch.rand(2, 1, 32, 32)
        with torch.no_grad():
            _, _, _, ddf = net(x, x, torch.ones(2, 1, 32, 32))
        # the local head starts near zero (Normal(0, 1e-5) weights): the field is the injected translation
        torch.testing.assert_close(ddf[:, 0], torch.full((2, 32, 32), 3.0), atol=1e-3, rtol=0)
        torch.testing.assert_close(ddf[:, 1], torch.full((2, 32, 32), -2.0), atol=1e-3, rtol=0)

    def test_default_checkpoint_loads_into_injected_global_alignment(self):
        torch.manual_seed(0)
        default = JRSGenerator(features=4, num_res_blocks=1, coarse_factor=4, search_size=32, num_rotations=8)
        injected = JRSGenerator(features=4, num_res_blocks=1, coarse_factor=4,
                                global_stage=GlobalAlignment(search_size=32, num_rotations=8))
        injected.load_state_dict(default.state_dict())  # strict: same parameter names
        x = torch.rand(1, 1, 32, 32)
        mask = (torch.rand(1, 1, 32, 32) > 0.3).float()
        with torch.no_grad():
            for a, b in zip(default.eval()(x, x.flip(-1), mask), injected.eval()(x, x.flip(-1), mask)):
                torch.testing.assert_close(a, b)

    def test_injected_stage_from_bundle_config(self):
        from monai.bundle import ConfigParser

        parser = ConfigParser({"net": {
            "_target_": "monai_jrs.networks.nets.JRSGenerator", "features": 4, "num_res_blocks": 1,
            "global_stage": {"_target_": "monai_jrs.networks.blocks.GlobalAlignment", "search_size": 16,
                             "num_rotations": 4, "refinement": "none"},
        }})
        net = parser.get_parsed_content("net")
        self.assertIsInstance(net.global_stage, GlobalAlignment)
        self.assertEqual(net.global_stage.num_rotations, 4)

    def test_not_a_module(self):
        with self.assertRaisesRegex(ValueError, "`global_stage` must be an nn.Module"):
            JRSGenerator(features=4, num_res_blocks=1, global_stage=lambda r, f, m: None)


class TestJRSDiscriminator(unittest.TestCase):
    @parameterized.expand([[(17, 23), 2], [(64, 64), 1], [(33, 80), 3], [(4, 4), 2], [(1, 1), 2], [(2, 9), 1]])
    def test_shape(self, size, batch):
        torch.manual_seed(0)
        net = JRSDiscriminator()
        x = torch.rand(batch, 1, *size)
        with eval_mode_ctx(net):
            out = net(x)
        self.assertEqual(tuple(out.shape), (batch, 1))
        self.assertTrue(bool(((out >= 0) & (out <= 1)).all()))

    def test_logits(self):
        torch.manual_seed(0)
        probs = JRSDiscriminator(hidden_features=16).eval()
        logits = JRSDiscriminator(hidden_features=16, sigmoid=False).eval()
        logits.load_state_dict(probs.state_dict())
        with torch.no_grad():
            logits.classifier[-1].bias.fill_(3.0)
            probs.classifier[-1].bias.fill_(3.0)
            x = torch.rand(4, 1, 24, 20)
            z, p = logits(x), probs(x)
        torch.testing.assert_close(p, torch.sigmoid(z), atol=1e-6, rtol=0)
        self.assertGreater(z.min().item(), 1.0)  # raw logits, not squashed to [0, 1]

    def test_structure(self):
        net = JRSDiscriminator()
        convs = [m for m in net.features.modules() if isinstance(m, torch.nn.Conv2d)]
        self.assertEqual(len(convs), 8)
        self.assertEqual([c.out_channels for c in convs], [64, 64, 128, 128, 256, 256, 512, 512])
        self.assertEqual([c.stride for c in convs], [(1, 1), (2, 2)] * 4)
        self.assertTrue(all(c.kernel_size == (3, 3) for c in convs))
        # a stride-2 convolution precedes each doubling of the feature maps
        for i in range(1, 7, 2):
            self.assertEqual(convs[i].stride, (2, 2))
            self.assertEqual(convs[i + 1].out_channels, 2 * convs[i].out_channels)
        self.assertEqual(sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()), 7)  # not after the first
        leaky = [m for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
        self.assertEqual(len(leaky), 9)
        self.assertTrue(all(m.negative_slope == 0.2 for m in leaky))
        dense = [m for m in net.classifier.modules() if isinstance(m, torch.nn.Linear)]
        self.assertEqual([(d.in_features, d.out_features) for d in dense], [(512, 1024), (1024, 1)])

    def test_3d_and_channels(self):
        net = JRSDiscriminator(in_channels=2, channels=(4, 8), strides=(1, 2), hidden_features=8, spatial_dims=3)
        with eval_mode_ctx(net):
            self.assertEqual(tuple(net(torch.rand(2, 2, 9, 8, 7)).shape), (2, 1))

    def test_gradients(self):
        torch.manual_seed(0)
        net = JRSDiscriminator(channels=(8, 8, 16, 16), strides=(1, 2, 1, 2), hidden_features=16)
        x = torch.rand(2, 1, 16, 16, requires_grad=True)
        net(x).sum().backward()
        self.assertGreater(x.grad.abs().sum().item(), 0.0)
        self.assertGreater(net.features[0].conv.weight.grad.abs().sum().item(), 0.0)

    def test_script(self):
        torch.manual_seed(0)
        net = JRSDiscriminator(channels=(8, 8, 16, 16), strides=(1, 2, 1, 2), hidden_features=16)
        test_script_save(net, torch.rand(2, 1, 17, 23))

    @parameterized.expand(
        [
            [{"spatial_dims": 1}], [{"channels": (8, 16), "strides": (1,)}], [{"channels": (), "strides": ()}],
            [{"channels": (8, 0), "strides": (1, 2)}], [{"channels": (8, 8), "strides": (1, 0)}],
            [{"hidden_features": 0}], [{"in_channels": 0}],
        ]
    )
    def test_ill_args(self, kwargs):
        with self.assertRaises(ValueError):
            JRSDiscriminator(**kwargs)

    @parameterized.expand([["channels", (1, 2, 8, 8)], ["ndim_3", (1, 8, 8)], ["ndim_5", (1, 1, 8, 8, 8)]])
    def test_ill_shape(self, _, shape):
        with self.assertRaises(ValueError):
            JRSDiscriminator(hidden_features=8).eval()(torch.rand(*shape))

    def test_ill_type(self):
        with self.assertRaises(ValueError):
            JRSDiscriminator(hidden_features=8)([[0.0]])


if __name__ == "__main__":
    unittest.main()
