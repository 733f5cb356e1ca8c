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
"""ResidualBlock: shapes, the (out, first) pair used by the generator, exact values, errors and TorchScript."""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from monai_jrs.networks.blocks import ResidualBlock
from tests.test_utils import eval_mode_ctx, test_script_save

TEST_CASES_SHAPE = [
    [{"features": 8}, (2, 8, 16, 16)],
    [{"features": 4}, (1, 4, 17, 23)],
    [{"features": 6, "kernel_size": 5}, (3, 6, 9, 12)],
    [{"features": 5, "norm": None, "act": ("leakyrelu", {"negative_slope": 0.2})}, (2, 5, 16, 8)],
    [{"features": 4, "norm": "instance", "act": "prelu"}, (2, 4, 11, 7)],
    [{"features": 3, "spatial_dims": 3}, (1, 3, 6, 5, 4)],
]


class TestResidualBlock(unittest.TestCase):
    @parameterized.expand(TEST_CASES_SHAPE)
    def test_shape(self, kwargs, shape):
        torch.manual_seed(0)
        block = ResidualBlock(**kwargs)
        x = torch.randn(*shape)
        with eval_mode_ctx(block):
            out, first = block.forward_features(x)
            self.assertEqual(tuple(out.shape), shape)
            self.assertEqual(tuple(first.shape), shape)
            torch.testing.assert_close(block(x), out, atol=0, rtol=0)

    def test_forward_features_pair(self):
        torch.manual_seed(0)
        block = ResidualBlock(features=4).eval()
        x = torch.randn(2, 4, 10, 12)
        with torch.no_grad():
            out, first = block.forward_features(x)
            torch.testing.assert_close(first, block.conv1(x), atol=0, rtol=0)  # activated first conv layer
            torch.testing.assert_close(out, torch.relu(x + block.conv2(first)), atol=0, rtol=0)
        self.assertGreaterEqual(first.min().item(), 0.0)  # post-ReLU maps
        self.assertGreaterEqual(out.min().item(), 0.0)
        self.assertGreater((out - first).abs().max().item(), 0.0)

    def test_skip_connection_exact(self):
        # zero second convolution, no norm: out = relu(x + 0)
        block = ResidualBlock(features=3, norm=None)
        for p in block.conv2.parameters():
            torch.nn.init.zeros_(p)
        x = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(block(x), torch.relu(x), atol=0, rtol=0)

    def test_structure(self):
        block = ResidualBlock(features=8)
        convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
        self.assertEqual(len(convs), 2)
        for conv in convs:
            self.assertEqual((conv.in_channels, conv.out_channels, conv.kernel_size), (8, 8, (3, 3)))
            self.assertEqual(conv.padding, (1, 1))
        self.assertEqual(sum(isinstance(m, torch.nn.BatchNorm2d) for m in block.modules()), 2)
        self.assertEqual(sum(isinstance(m, torch.nn.ReLU) for m in block.modules()), 2)

    def test_gradients(self):
        torch.manual_seed(0)
        block = ResidualBlock(features=4)
        x = torch.randn(2, 4, 8, 8, requires_grad=True)
        block(x).sum().backward()
        self.assertGreater(x.grad.abs().sum().item(), 0.0)
        self.assertTrue(all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters()))

    @parameterized.expand([[{"features": 0}], [{"features": -3}], [{"kernel_size": 2}], [{"kernel_size": 0}]])
    def test_ill_args(self, kwargs):
        with self.assertRaises(ValueError):
            ResidualBlock(**kwargs)

    @parameterized.expand([[(2, 4, 8, 8)], [(8,)], [(2, 8)]])
    def test_ill_shape(self, shape):
        block = ResidualBlock(features=8)
        with self.assertRaises(ValueError):
            block(torch.zeros(*shape))

    def test_script(self):
        torch.manual_seed(0)
        test_script_save(ResidualBlock(features=4), torch.randn(1, 4, 9, 11))


if __name__ == "__main__":
    unittest.main()
