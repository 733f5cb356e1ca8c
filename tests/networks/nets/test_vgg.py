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
"""VGG16Features: the 13 maps, offline weight lookup (path, environment variable, torch hub cache), errors, freezing."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from unittest import mock

import torch
from parameterized import parameterized

from monai_jrs.networks.nets import VGG16Features
from monai_jrs.networks.nets.vgg import (
    VGG16_CONV_INDICES,
    VGG16_WEIGHTS_ENV,
    VGG16_WEIGHTS_FILENAME,
    find_vgg16_weights,
)
from tests.test_utils import test_script_save

# (channels, downsampling factor) of the 13 post-ReLU maps
EXPECTED_MAPS = [(64, 1), (64, 1), (128, 2), (128, 2), (256, 4), (256, 4), (256, 4)] + [(512, 8)] * 3 + [(512, 16)] * 3


def _random_vgg(seed: int = 0, **kwargs) -> VGG16Features:
    torch.manual_seed(seed)
    return VGG16Features(pretrained=False, **kwargs)


class _HubDir:
    """Point ``torch.hub`` at ``path`` and restore the previous directory afterwards."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.old = torch.hub.get_dir()
        torch.hub.set_dir(self.path)
        return self

    def __exit__(self, *exc):
        torch.hub.set_dir(self.old)
        return False


def _no_env():
    patcher = mock.patch.dict(os.environ)
    patcher.start()
    os.environ.pop(VGG16_WEIGHTS_ENV, None)
    return patcher


class TestVGG16Weights(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.source = _random_vgg(seed=1)
        state = {f"features.{k}": v.clone() for k, v in cls.source.features.state_dict().items()}
        state["classifier.0.weight"] = torch.zeros(4, 3)  # torchvision files also hold the classifier
        cls.path = os.path.join(cls.tmp, VGG16_WEIGHTS_FILENAME)
        torch.save(state, cls.path)
        # a torch hub cache holding the same file
        cls.hub = os.path.join(cls.tmp, "hub")
        os.makedirs(os.path.join(cls.hub, "checkpoints"))
        os.link(cls.path, os.path.join(cls.hub, "checkpoints", VGG16_WEIGHTS_FILENAME))
        cls.empty_hub = os.path.join(cls.tmp, "empty_hub")
        os.makedirs(cls.empty_hub)
        # files with the wrong layout (small)
        cls.missing_keys = os.path.join(cls.tmp, "missing.pth")
        partial = {"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}
        torch.save(partial, cls.missing_keys)
        cls.wrong_shapes = os.path.join(cls.tmp, "shapes.pth")
        tiny = {f"features.{i}.{p}": torch.zeros(2) for i in VGG16_CONV_INDICES for p in ("weight", "bias")}
        torch.save(tiny, cls.wrong_shapes)
        cls.not_a_dict = os.path.join(cls.tmp, "list.pth")
        torch.save([torch.zeros(2)], cls.not_a_dict)
        # a hub cache whose file has the wrong layout: loading it would raise ValueError
        cls.bad_hub = os.path.join(cls.tmp, "bad_hub")
        os.makedirs(os.path.join(cls.bad_hub, "checkpoints"))
        shutil.copy(cls.missing_keys, os.path.join(cls.bad_hub, "checkpoints", VGG16_WEIGHTS_FILENAME))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.addCleanup(_no_env().stop)

    def assert_same_weights(self, vgg: VGG16Features):
        expected = self.source.features.state_dict()
        got = vgg.features.state_dict()
        self.assertEqual(sorted(got), sorted(expected))
        self.assertEqual(len(got), 26)  # 13 conv layers x (weight, bias)
        for k, v in expected.items():
            torch.testing.assert_close(got[k], v, atol=0, rtol=0)

    def test_weights_path(self):
        with _HubDir(self.empty_hub):
            vgg = VGG16Features(weights_path=self.path)
        self.assert_same_weights(vgg)
        self.assertEqual(vgg.weights_file, self.path)
        # not the random initialisation of a fresh module
        self.assertGreater((vgg.features[0].weight - _random_vgg(seed=2).features[0].weight).abs().max().item(), 0.01)

    def test_environment_variable(self):
        with _HubDir(self.bad_hub), mock.patch.dict(os.environ, {VGG16_WEIGHTS_ENV: self.path}):
            vgg = VGG16Features()  # the env var wins over the hub cache
        self.assert_same_weights(vgg)
        self.assertEqual(vgg.weights_file, self.path)

    def test_torch_hub_cache(self):
        old = torch.hub.get_dir()
        with _HubDir(self.hub):
            vgg = VGG16Features(pretrained=True)
            hub_file = os.path.join(self.hub, "checkpoints", VGG16_WEIGHTS_FILENAME)
            self.assertEqual(find_vgg16_weights(), hub_file)
        self.assertEqual(torch.hub.get_dir(), old)  # restored
        self.assert_same_weights(vgg)
        self.assertEqual(vgg.weights_file, hub_file)

    def test_missing_env_file_falls_back_to_hub(self):
        missing = os.path.join(self.tmp, "nowhere.pth")
        with _HubDir(self.hub), mock.patch.dict(os.environ, {VGG16_WEIGHTS_ENV: missing}):
            with self.assertLogs("monai_jrs.networks.nets.vgg", level="WARNING") as logs:
                vgg = VGG16Features()
        self.assertIn(missing, "\n".join(logs.output))
        self.assert_same_weights(vgg)

    def test_weights_path_first(self):
        # an explicit path wins over the environment variable and the hub cache (both hold bad files here)
        with _HubDir(self.bad_hub), mock.patch.dict(os.environ, {VGG16_WEIGHTS_ENV: self.missing_keys}):
            self.assert_same_weights(VGG16Features(weights_path=self.path))

    def test_not_found(self):
        with _HubDir(self.empty_hub):
            with self.assertRaises(FileNotFoundError) as ctx:
                VGG16Features(pretrained=True)
        msg = str(ctx.exception)
        self.assertIn(VGG16_WEIGHTS_ENV, msg)
        self.assertIn(os.path.join(self.empty_hub, "checkpoints", VGG16_WEIGHTS_FILENAME), msg)
        self.assertIn("weights_path", msg)

    def test_not_found_env_path_listed(self):
        missing = os.path.join(self.tmp, "nowhere.pth")
        with _HubDir(self.empty_hub), mock.patch.dict(os.environ, {VGG16_WEIGHTS_ENV: missing}):
            with self.assertRaises(FileNotFoundError) as ctx, self.assertLogs("monai_jrs", level="WARNING"):
                VGG16Features()
        self.assertIn(missing, str(ctx.exception))
        self.assertIn(os.path.join(self.empty_hub, "checkpoints"), str(ctx.exception))

    def test_explicit_missing_path_is_never_replaced(self):
        missing = os.path.join(self.tmp, "typo.pth")
        with _HubDir(self.hub), mock.patch.dict(os.environ, {VGG16_WEIGHTS_ENV: self.path}):
            with self.assertRaises(FileNotFoundError) as ctx:
                VGG16Features(weights_path=missing, pretrained=False)  # weights_path implies loading
        self.assertIn(missing, str(ctx.exception))

    @parameterized.expand([["missing_keys"], ["wrong_shapes"], ["not_a_dict"]])
    def test_wrong_layout(self, attr):
        path = getattr(self, attr)
        with self.assertRaises(ValueError) as ctx:
            VGG16Features(weights_path=path)
        self.assertIn(path, str(ctx.exception))

    def test_wrong_layout_in_hub(self):
        with _HubDir(self.bad_hub), self.assertRaises(ValueError):
            VGG16Features()

    def test_state_dict_variants(self):
        # a dict without the "features." prefix, and one wrapped in {"state_dict": ...}, load the same weights
        bare = os.path.join(self.tmp, "bare.pth")
        torch.save(self.source.features.state_dict(), bare)
        vgg = _random_vgg(seed=3)
        vgg.load_weights(bare)
        self.assert_same_weights(vgg)
        wrapped = os.path.join(self.tmp, "wrapped.pth")
        torch.save({"state_dict": {f"features.{k}": v for k, v in self.source.features.state_dict().items()}}, wrapped)
        vgg = _random_vgg(seed=4)
        vgg.load_weights(wrapped)
        self.assert_same_weights(vgg)
        os.remove(bare)
        os.remove(wrapped)


class TestVGG16Features(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.vgg = _random_vgg(seed=0)

    @parameterized.expand([[(32, 48), 2], [(16, 16), 1], [(37, 21), 1]])
    def test_shape(self, size, batch):
        x = torch.rand(batch, 1, *size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            maps = self.vgg(x)
        self.assertEqual(len(maps), 13)
        self.assertEqual(VGG16Features.out_channels, tuple(c for c, _ in EXPECTED_MAPS))
        h, w = size
        for m, (c, f) in zip(maps, EXPECTED_MAPS):
            self.assertEqual(tuple(m.shape), (batch, c, h // f, w // f))
            self.assertGreaterEqual(m.min().item(), 0.0)  # post-ReLU
        # a prefix of the layers gives the same maps
        with torch.no_grad():
            first = self.vgg(x, num_layers=5)
        self.assertEqual(len(first), 5)
        for a, b in zip(first, maps[:5]):
            torch.testing.assert_close(a, b, atol=0, rtol=0)

    def test_layout(self):
        convs = [i for i, m in enumerate(self.vgg.features) if isinstance(m, torch.nn.Conv2d)]
        pools = [i for i, m in enumerate(self.vgg.features) if isinstance(m, torch.nn.MaxPool2d)]
        self.assertEqual(tuple(convs), VGG16_CONV_INDICES)
        self.assertEqual(pools, [4, 9, 16, 23, 30])
        self.assertEqual(len(self.vgg.features), 31)
        self.assertEqual(list(self.vgg.state_dict()), [f"features.{i}.{p}" for i in convs for p in ("weight", "bias")])

    def test_grey_and_normalisation(self):
        x = torch.rand(2, 1, 16, 24, generator=torch.Generator().manual_seed(1))
        rgb = _random_vgg(seed=0, in_channels=3)
        raw = _random_vgg(seed=0, in_channels=3, imagenet_normalize=False)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        with torch.no_grad():
            grey_maps = self.vgg(x, num_layers=4)
            rgb_maps = rgb(x.repeat(1, 3, 1, 1), num_layers=4)
            raw_maps = raw((x.repeat(1, 3, 1, 1) - mean) / std, num_layers=4)
        for g, r, n in zip(grey_maps, rgb_maps, raw_maps):
            torch.testing.assert_close(g, r, atol=1e-6, rtol=0)
            torch.testing.assert_close(g, n, atol=1e-6, rtol=0)

    def test_frozen_but_differentiable_input(self):
        vgg = _random_vgg(seed=0)
        self.assertTrue(all(not p.requires_grad for p in vgg.parameters()))
        self.assertFalse(vgg.training)
        parent = torch.nn.Sequential(vgg)
        parent.train()
        self.assertFalse(vgg.training)  # stays in eval mode
        x = torch.rand(1, 1, 16, 16, requires_grad=True)
        sum(m.mean() for m in vgg(x)).backward()
        self.assertIsNotNone(x.grad)
        self.assertGreater(x.grad.abs().sum().item(), 0.0)
        self.assertTrue(all(p.grad is None for p in vgg.parameters()))

    def test_script(self):
        test_script_save(self.vgg, torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2)))

    def test_ill_args(self):
        for in_channels in (0, 2, 4):
            with self.assertRaises(ValueError):
                VGG16Features(pretrained=False, in_channels=in_channels)

    @parameterized.expand(
        [
            ["channels", (1, 3, 16, 16), 13],
            ["ndim", (1, 16, 16), 13],
            ["layers_0", (1, 1, 16, 16), 0],
            ["layers_14", (1, 1, 16, 16), 14],
        ]
    )
    def test_ill_input(self, _, shape, num_layers):
        with self.assertRaises(ValueError):
            self.vgg(torch.rand(*shape), num_layers=num_layers)


if __name__ == "__main__":
    unittest.main()
