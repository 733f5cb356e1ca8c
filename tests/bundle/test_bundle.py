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
"""End-to-end tests of the MONAI bundle: training (smoke, resume, 2-process gloo), evaluation, inference, export,
metadata, run through the real ``python -m monai.bundle`` command line on a tiny embedded dataset."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata

from monai_jrs.data.embedded import generate_embedded_dataset
from monai_jrs.data.writers import OUTPUT_FILES
from monai_jrs.utils.net import free_port
from tests.apps.test_batch import _outputs

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundle"
CONFIGS = BUNDLE / "configs"
SCHEMA = Path(__file__).resolve().parent / "meta_schema.json"
# a tiny network and grid so that a CPU epoch takes seconds
TINY = ["--image_size", "32", "--features", "8", "--num_res_blocks", "1", "--batch_size", "2", "--num_workers", "0"]


def _bundle(*args: str, torchrun: int = 0, timeout: int = 600) -> subprocess.CompletedProcess:
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={torchrun}", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", "-m", "monai.bundle", *args]
    else:
        cmd = [sys.executable, "-m", "monai.bundle", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=BUNDLE, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.mark.slow
class TestBundleWorkflows(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        cls.data = generate_embedded_dataset(root / "data", num_patients=4, num_visits=2, image_size=32, progress=False)
        cls.run_dir = root / "run"
        cls.common = ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf",
                      "--bundle_root", str(cls.run_dir), "--dataset_dir", str(cls.data.parent), *TINY]
        cls.train = _bundle("run", "training", "--config_file", "configs/train.json", *cls.common,
                            "--train#trainer#max_epochs", "2", "--val_interval", "1",
                            "--train#trainer#warmup_iterations", "1", "--log_every", "1")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_training_outputs(self):
        log = self.train.stdout + self.train.stderr
        models = sorted(os.listdir(self.run_dir / "models"))
        self.assertIn("model.pt", models)  # best validation Dice
        self.assertIn("checkpoint_final.pt", models)
        self.assertIn("val_registration_dice", log)
        self.assertIn("cycle:", log)  # the full objective (with the cycle term) ran after the warm-up iteration
        self.assertIn("g_adversarial:", log)
        self.assertTrue((self.run_dir / "eval" / "snapshots" / "snapshot_epoch0002.png").is_file())
        self.assertTrue(any(f.startswith("events.out.tfevents") for f in os.listdir(self.run_dir / "eval")))
        ckpt = torch.load(self.run_dir / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=False)
        self.assertEqual(
            sorted(ckpt), ["d_optimizer", "disc_floating", "disc_reference", "g_optimizer", "model", "reverse_model", "trainer"]
        )
        self.assertEqual(ckpt["trainer"]["iteration"], 2 * ckpt["trainer"]["epoch_length"])  # 2 epochs done

    def test_resume_after_interruption(self):
        run_dir = Path(self.tmp.name) / "resume"
        shutil.copytree(self.run_dir, run_dir)
        os.remove(run_dir / "models" / "checkpoint_final.pt")  # as after a crash: only the per-epoch checkpoint
        common = [a if a != str(self.run_dir) else str(run_dir) for a in self.common]
        proc = _bundle("run", "training", "--config_file", "configs/train.json", *common,
                       "--train#trainer#max_epochs", "3", "--val_interval", "1")
        log = proc.stdout + proc.stderr
        self.assertIn("resumed from", log)
        self.assertIn("Epoch[3] Complete", log)
        self.assertNotIn("Epoch[1] Complete", log)
        self.assertNotIn("Epoch[2] Complete", log)
        ckpt = torch.load(run_dir / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=False)
        self.assertEqual(ckpt["trainer"]["iteration"], 3 * ckpt["trainer"]["epoch_length"])

    def test_evaluate(self):
        out = Path(self.tmp.name) / "evaluate"
        common = [a if a != str(self.run_dir) else str(self.run_dir) for a in self.common]
        _bundle("run", "evaluating", "--config_file", "['configs/train.json','configs/evaluate.json']", *common,
                "--output_dir", str(out))
        metrics = (out / "metrics.csv").read_text()
        for name in ("val_registration_dice", "val_dice_before", "val_hd95_px", "val_tre_px", "val_folding_pct"):
            self.assertIn(name, metrics)
        self.assertTrue((out / "val_registration_dice_raw.csv").is_file())

    def test_inference_and_export(self):
        out = Path(self.tmp.name) / "inference"
        _bundle("run", "--config_file", "configs/inference.json", "--bundle_root", str(self.run_dir),
                "--dataset_dir", str(self.data.parent), "--output_dir", str(out), "--image_size", "32",
                "--features", "8", "--num_res_blocks", "1")
        pairs = json.loads(self.data.read_text())["test"]
        for pair in pairs:  # the same files as `monai-jrs register`, at the input resolution
            folder = out / Path(pair["floating"]).stem
            self.assertEqual(sorted(os.listdir(folder)), sorted(OUTPUT_FILES))
            self.assertEqual(json.loads((folder / "metrics.json").read_text())["floating_shape"], [32, 32])
        ts = Path(self.tmp.name) / "model.ts"
        _bundle("ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(self.run_dir / "models" / "model.pt"),
                "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json",
                "--use_trace", "True", "--input_shape", "[1, 3, 32, 32]", "--features", "8", "--num_res_blocks", "1")
        exported = torch.jit.load(str(ts))
        parser = ConfigParser()
        parser.read_config(str(BUNDLE / "configs" / "inference.json"))
        parser.update({"features": 8, "num_res_blocks": 1})
        eager = parser.get_parsed_content("network_def", instantiate=True).eval()  # the search's scales included
        state = torch.load(self.run_dir / "models" / "model.pt", map_location="cpu", weights_only=True)
        eager.load_state_dict(state.get("model", state))  # a single-object ignite checkpoint is the bare state dict
        x = torch.rand(2, 3, 32, 32)
        x[:, 2] = (x[:, 2] > 0.5).float()
        with torch.no_grad():
            torch.testing.assert_close(exported(x), eager(x), atol=1e-4, rtol=1e-4)

    def test_multi_process_inference(self):
        """``multi_gpu_inference.json`` under torchrun (2 processes, gloo): every pair once, each rank its share, the
        same files as one process, rank 0's ``metrics.csv`` over all pairs; a rank without pairs (1 pair, 2 ranks)
        waits for the others."""
        args = ["--bundle_root", str(self.run_dir), "--dataset_dir", str(self.data.parent), "--image_size", "32",
                "--features", "8", "--num_res_blocks", "1", "--logging_file", "configs/logging.conf"]
        multi = "['configs/inference.json','configs/multi_gpu_inference.json']"
        root = Path(self.tmp.name)
        _bundle("run", "--config_file", "configs/inference.json", *args, "--output_dir", str(root / "infer1"),
                "--data_section", "training")
        proc = _bundle("run", "--config_file", multi, *args, "--output_dir", str(root / "infer2"),
                       "--data_section", "training", torchrun=2)
        _bundle("run", "--config_file", multi, *args, "--output_dir", str(root / "infer2_one_pair"), torchrun=2)
        content = json.loads(self.data.read_text())
        for folder, section in (("infer1", "training"), ("infer2", "training"), ("infer2_one_pair", "test")):
            rows = list(csv.DictReader(open(root / folder / "metrics.csv")))
            self.assertEqual([r["pair_id"] for r in rows], [Path(p["floating"]).stem for p in content[section]])
            self.assertEqual({r["status"] for r in rows}, {"done"}, folder)
            self.assertEqual({k.split("/")[0] for k in _outputs(root / folder)}, {r["pair_id"] for r in rows})
        self.assertGreaterEqual(len(content["training"]), 2)
        self.assertEqual(_outputs(root / "infer2"), _outputs(root / "infer1"))
        self.assertEqual((proc.stdout + proc.stderr).count("Restored all variables"), 2)  # both ranks loaded the model

    def test_multi_process_gloo(self):
        run_dir = Path(self.tmp.name) / "ddp"
        common = [a if a != str(self.run_dir) else str(run_dir) for a in self.common]
        proc = _bundle("run", "training", "--config_file", "['configs/train.json','configs/multi_gpu_train.json']",
                       *common, "--train#trainer#max_epochs", "1", "--val_interval", "1",
                       "--train#trainer#warmup_iterations", "0", torchrun=2)
        self.assertTrue((run_dir / "models" / "checkpoint_final.pt").is_file())
        state = torch.load(run_dir / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=False)["model"]
        self.assertFalse(any(k.startswith("module.") for k in state))  # saved unwrapped, loadable without DDP
        self.assertIn("val_registration_dice", proc.stdout + proc.stderr)


class TestBundleFiles(unittest.TestCase):
    def test_verify_metadata(self):
        with tempfile.TemporaryDirectory() as d:
            schema = Path(d) / "schema.json"
            shutil.copy(SCHEMA, schema)  # the schema URL is unreachable offline; an existing file is not downloaded
            verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(schema))
            broken = json.loads((CONFIGS / "metadata.json").read_text())
            del broken["network_data_format"]["inputs"]["image"]["dtype"]  # required by meta_schema_20240725
            (Path(d) / "broken.json").write_text(json.dumps(broken))
            with self.assertRaisesRegex(ValueError, "is not of type"):
                verify_metadata(meta_file=str(Path(d) / "broken.json"), filepath=str(schema))

    def test_required_properties(self):
        from monai.bundle.properties import InferProperties, TrainProperties
        from monai.utils import BundleProperty, BundlePropertyConfig

        for name, props in (("train.json", TrainProperties), ("inference.json", InferProperties)):
            parser = ConfigParser()
            parser.read_config(str(CONFIGS / name))
            for prop, desc in props.items():
                if desc[BundleProperty.REQUIRED]:
                    self.assertIn(desc[BundlePropertyConfig.ID], parser, f"{name}: required id of {prop!r}")
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.json"))
        for target in ("network_def", "train#trainer", "validate#evaluator", "generator_loss", "cycle_loss"):
            self.assertTrue(parser[target]["_target_"].startswith(("monai_jrs.", "monai.")), target)

    def test_paper_preset(self):
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "paper.json")])
        net = parser.get_parsed_content("network_def")
        self.assertEqual((net.features, net.num_res_blocks, net.coarse_factor), (64, 8, 1))  # the paper's generator
        disc = parser.get_parsed_content("disc_reference_def")
        self.assertEqual([m.conv.out_channels for m in disc.features], [64, 64, 128, 128, 256, 256, 512, 512])
        with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"MONAI_JRS_VGG16_WEIGHTS": ""}):
            old = torch.hub.get_dir()
            torch.hub.set_dir(d)
            try:  # the paper's VGG term needs local ImageNet weights: a clear error, never a silent change of loss
                with self.assertRaisesRegex(RuntimeError, "JRSGeneratorLoss") as ctx:
                    parser.get_parsed_content("generator_loss")
                self.assertIn("VGG16 ImageNet weights", str(ctx.exception.__cause__))
            finally:
                torch.hub.set_dir(old)
        inference = ConfigParser()
        inference.read_config([str(CONFIGS / "inference.json"), str(CONFIGS / "paper.json")])
        self.assertEqual(inference.get_parsed_content("network_def").features, 64)

    def test_shipped_model_loads(self):
        path = BUNDLE / "models" / "model.pt"
        self.assertTrue(path.is_file(), "bundle/models/model.pt (the trained fast preset) must be shipped")
        self.assertLess(path.stat().st_size, 25 * 2**20)  # model-zoo limit for files in the bundle
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "inference.json"))
        net = parser.get_parsed_content("network_def")
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("model", state))  # strict: the training and inference configs build the same network
        net.eval()
        from tests.networks.synthetic import deform_affine, synthetic_chest
        from monai_jrs.metrics import compute_dice_score
        from monai_jrs.utils.conventions import rotation_matrix, warp

        image, mask = synthetic_chest(256)
        matrix = rotation_matrix(torch.tensor([0.5]), torch.tensor([[12.0, -8.0]]))
        floating, floating_mask = deform_affine(image, matrix), (deform_affine(mask, matrix) > 0.5).float()
        with torch.no_grad():
            out = net(torch.cat([image, floating, mask], dim=1))
        self.assertEqual(tuple(out.shape), (1, 5, 256, 256))
        self.assertTrue(bool(torch.isfinite(out).all()))
        warped = (warp(floating_mask, out[:, 3:5]) > 0.5).float()
        self.assertLess(float(compute_dice_score(floating_mask, mask)), 0.6)  # a 29 degree rotation and a shift
        self.assertGreater(float(compute_dice_score(warped, mask)), 0.9)


if __name__ == "__main__":
    unittest.main()


class TestConfigStructure(unittest.TestCase):
    """One definition per component and per run list; a literal dataset_dir (parsing starts no generator)."""

    def test_copies_are_macros_and_distinct_instances(self):
        raw = json.loads((CONFIGS / "train.json").read_text())
        self.assertEqual(raw["reverse_network_def"], "%network_def")
        self.assertEqual(raw["disc_floating_def"], "%disc_reference_def")
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.json"))
        g, f = parser.get_parsed_content("network_def"), parser.get_parsed_content("reverse_network_def")
        self.assertIsNot(g, f)
        self.assertEqual([p.shape for p in g.parameters()], [p.shape for p in f.parameters()])

    def test_one_run_list_per_workflow(self):
        for name, alias in (("train.json", "training"), ("evaluate.json", "evaluating")):
            raw = json.loads((CONFIGS / name).read_text())
            self.assertIsInstance(raw["run"], list, name)
            self.assertEqual(raw[alias], "@run", name)
        self.assertNotIn("training", json.loads((CONFIGS / "multi_gpu_train.json").read_text()))

    def test_literal_dataset_dir_and_clear_error(self):
        for name in ("train.json", "inference.json"):
            self.assertEqual(json.loads((CONFIGS / name).read_text())["dataset_dir"], "./jrs_data", name)
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "inference.json"))
        with tempfile.TemporaryDirectory() as d:
            parser["dataset_dir"] = os.path.join(d, "missing")
            with self.assertRaises(RuntimeError) as cm:  # MONAI wraps the loader's error
                parser.get_parsed_content("data")
        self.assertRegex(str(cm.exception.__cause__), r"python -m monai_jrs.data.embedded --output .*missing")

    def test_one_place_per_preset(self):
        """The generator presets live in JRS_GENERATOR_PRESETS only; the configs name them and show the global stage."""
        from monai_jrs.networks.blocks import GlobalAlignment
        from monai_jrs.networks.nets import JRS_GENERATOR_PRESETS

        for files, preset in ((["train.json"], "fast"), (["inference.json"], "fast"),
                              (["train.json", "paper.json"], "paper")):
            raws = [json.loads((CONFIGS / f).read_text()) for f in files]
            for raw in raws:
                for key in ("features", "num_res_blocks", "coarse_factor"):
                    self.assertNotIsInstance(raw.get(key, ""), int, f"{files}: {key} is a literal")
            parser = ConfigParser()
            parser.read_config([str(CONFIGS / f) for f in files])
            net = parser.get_parsed_content("network_def")
            self.assertEqual(parser["preset"], preset)
            got = {k: getattr(net, k) for k in JRS_GENERATOR_PRESETS[preset]}
            self.assertEqual(got, JRS_GENERATOR_PRESETS[preset], files)
            self.assertIsInstance(net.global_stage, GlobalAlignment)

