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
"""Every bundle command of ``bundle/docs/README.md`` runs as written, each in a fresh interpreter.

The commands are read from the document's ``bash`` blocks (so a renamed id, file or option in the docs fails here),
run from a folder laid out as the repository root (``bundle/`` and a small ``./jrs_data``), with only speed overrides
appended (a 64-pixel dataset, one short epoch, a tiny network for the training runs). The dataset-generation line
is the one exception: with its default parameters it takes minutes, and ``.ci/fresh_machine.sh`` runs it for real
(together with the README's main command) in a brand-new virtual environment.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import pytest
import torch

from monai_jrs.data.embedded import generate_embedded_dataset
from monai_jrs.utils.net import free_port

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "bundle" / "docs" / "README.md"
SIZE = ["--image_size", "64"]
TRAIN_FAST = ["--features", "8", "--num_res_blocks", "1", "--batch_size", "2", "--num_workers", "0",
              "--train#trainer#max_epochs", "1", "--val_interval", "1", "--train#trainer#warmup_iterations", "1"]


def documented_commands(text: str) -> list[str]:
    """The shell commands of the ``bash`` blocks of a Markdown text, continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


@pytest.mark.slow
class TestDocumentedBundleCommands(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.commands = documented_commands(DOC.read_text())
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)
        (cls.root / "bundle").symlink_to(REPO / "bundle")
        generate_embedded_dataset(cls.root / "jrs_data", num_patients=4, num_visits=2, image_size=64, progress=False)
        cls.bundle_before = sorted(p.relative_to(REPO / "bundle") for p in (REPO / "bundle").rglob("*"))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _find(self, *needles: str) -> str:
        found = [c for c in self.commands if all(n in c for n in needles)]
        self.assertEqual(len(found), 1, f"expected one documented command with {needles}, got {found}")
        return found[0]

    def _run(self, command: str, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
        argv = shlex.split(command) + list(extra)
        if argv[0] == "torchrun":  # the same launcher, bound to loopback on a free port
            argv = [sys.executable, "-m", "torch.distributed.run", "--master_addr=127.0.0.1",
                    f"--master_port={free_port()}", *argv[1:]]
        elif argv[0] == "python":
            argv[0] = sys.executable
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(argv, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout)
        self.assertEqual(proc.returncode, 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return proc

    def test_every_command_is_covered(self):
        """Each documented command is one that a test below runs (a new one must get a test)."""
        covered = [("monai_jrs.data.embedded",), ("run training", "train.json'", "multi_gpu"),
                   ("run training", "bundle/configs/train.json "), ("run evaluating",), ("inference.json ", "--output_dir"),
                   ("inference.json'", "multi_gpu_inference"),
                   ("ckpt_export",), ("onnx_export",)]
        for command in self.commands:
            self.assertTrue(any(all(n in command for n in needles) for needles in covered), command)

    def test_train_then_multi_process(self):
        self._run(self._find("run training", "bundle/configs/train.json "), *SIZE, *TRAIN_FAST)
        self.assertTrue((self.root / "jrs_run" / "models" / "checkpoint_final.pt").is_file())
        ddp = self._find("torchrun", "multi_gpu_train.json")
        self._run(ddp, *SIZE, *TRAIN_FAST, "--bundle_root", "./jrs_run_ddp")
        self.assertTrue((self.root / "jrs_run_ddp" / "models" / "checkpoint_final.pt").is_file())

    def test_evaluate_and_infer_with_the_shipped_model(self):
        self._run(self._find("run evaluating"), *SIZE)
        self.assertIn("val_registration_dice", (self.root / "jrs_eval" / "metrics.csv").read_text())
        self._run(self._find("inference.json ", "--output_dir"), *SIZE)
        outputs = sorted(p for p in (self.root / "jrs_out").iterdir() if p.is_dir())
        self.assertTrue(outputs and all((d / "metrics.json").is_file() for d in outputs), outputs)
        self.assertTrue((self.root / "jrs_out" / "metrics.csv").is_file())
        self._run(self._find("torchrun", "multi_gpu_inference.json"), *SIZE)
        self.assertEqual(sorted(p.name for p in (self.root / "jrs_out_ddp").iterdir()),
                         sorted(p.name for p in (self.root / "jrs_out").iterdir()))
        self.assertEqual(self.bundle_before, sorted(p.relative_to(REPO / "bundle") for p in (REPO / "bundle").rglob("*")))

    def test_torchscript_export_runs_at_two_sizes(self):
        self._run(self._find("ckpt_export"))
        ts = torch.jit.load(str(self.root / "model.ts"))
        for shape in ((1, 3, 96, 96), (1, 3, 80, 128)):
            x = torch.rand(*shape)
            x[:, 2] = (x[:, 2] > 0.5).float()
            with torch.no_grad():
                self.assertEqual(tuple(ts(x).shape), (shape[0], 5, *shape[2:]))

    @unittest.skipUnless(all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript")),
                         "onnx_export needs the onnx extra (onnx, onnxruntime, onnxscript)")
    def test_onnx_export(self):
        self._run(self._find("onnx_export"))
        self.assertGreater((self.root / "model.onnx").stat().st_size, 100_000)


class TestDocumentedCommandsParser(unittest.TestCase):
    def test_parser(self):
        text = "x\n```bash\n# note\npython -m a \\\n    --b c\n\ntorchrun -m d\n```\n```python\nno\n```\n"
        self.assertEqual(documented_commands(text), ["python -m a --b c", "torchrun -m d"])

    def test_document_has_the_commands(self):
        commands = documented_commands(DOC.read_text())
        self.assertGreaterEqual(len(commands), 7, commands)
