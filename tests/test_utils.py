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
"""Helpers shared by the monai_jrs test-suite (MONAI `tests/test_utils.py` style)."""

from __future__ import annotations

import importlib.util
import os
import tempfile
import unittest

import torch

__all__ = ["SkipIfNoModule", "skip_if_quick", "test_script_save", "eval_mode_ctx", "TEST_DEVICE"]

#: device used by tests that can use an accelerator; CI has none, so this is normally CPU.
TEST_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def SkipIfNoModule(name: str):  # noqa: N802 - mirrors MONAI's decorator name
    """Skip a test when an optional module is missing."""
    return unittest.skipUnless(importlib.util.find_spec(name) is not None, f"optional module {name!r} not installed")


#: skip slow tests when the environment variable QUICKTEST is set (CI runs them).
skip_if_quick = unittest.skipIf(os.environ.get("QUICKTEST", "").lower() in ("1", "true"), "QUICKTEST set")


class eval_mode_ctx:  # noqa: N801
    """Put modules in eval mode (and no_grad) for the duration of a block, restoring their state after."""

    def __init__(self, *nets: torch.nn.Module):
        self.nets = nets
        self.states: list[bool] = []

    def __enter__(self):
        self.states = [n.training for n in self.nets]
        for n in self.nets:
            n.eval()
        self._ng = torch.no_grad()
        self._ng.__enter__()
        return self

    def __exit__(self, *exc):
        self._ng.__exit__(*exc)
        for n, s in zip(self.nets, self.states):
            n.train(s)
        return False


def test_script_save(net: torch.nn.Module, *inputs: torch.Tensor, use_trace: bool = False, atol: float = 1e-5):
    """Script (or trace) ``net``, save and reload it on CPU, and check its outputs match eager mode."""
    net = net.cpu().eval()
    inputs = tuple(i.cpu() for i in inputs)
    with torch.no_grad():
        expected = net(*inputs)
        compiled = torch.jit.trace(net, inputs, strict=False) if use_trace else torch.jit.script(net)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "net.ts")
            torch.jit.save(compiled, path)
            loaded = torch.jit.load(path, map_location="cpu")
        got = loaded(*inputs)
    exp_flat = _flatten(expected)
    got_flat = _flatten(got)
    if len(exp_flat) != len(got_flat):
        raise AssertionError(f"scripted module returned {len(got_flat)} tensors, eager returned {len(exp_flat)}")
    for e, g in zip(exp_flat, got_flat):
        torch.testing.assert_close(g, e, atol=atol, rtol=1e-4)


test_script_save.__test__ = False  # not a pytest test


def _flatten(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flatten(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    return []
