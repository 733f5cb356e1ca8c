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
"""The throughput benchmark (benchmarks/throughput.py): the summary-line parser, the line fit, the synthetic
datalist and one tiny end-to-end run of the real command (no timing is asserted)."""

from __future__ import annotations

import json
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import throughput  # noqa: E402

ONE = ("3 pair(s) registered, 1 already complete, 0 failed, 6.1 s (0.49 pairs/s), peak memory 900 MiB\n"
       "metrics: /tmp/out/metrics.csv (0 of 4 pair(s) not done)\n")
TWO = ("W1202 some torchrun warning\n"
       "rank 0: 12 pair(s) registered, 0 already complete, 1 failed, 6.1 s (1.97 pairs/s), peak memory 900 MiB\n"
       "metrics: /tmp/out/metrics.csv (1 of 21 pair(s) not done)\n"
       "rank 1: 8 pair(s) registered, 0 already complete, 0 failed, 12.5 s (0.64 pairs/s), peak memory 1024 MiB\n")


class TestParseSummary(unittest.TestCase):
    def test_one_process(self):
        rows = throughput.parse_summary(ONE)
        self.assertEqual(rows, [{"rank": 0, "registered": 3, "skipped": 1, "failed": 0, "seconds": 6.1,
                                 "pairs_per_s": 0.49, "peak_mib": 900.0}])
        s = throughput.summarize(rows)
        self.assertEqual((s["pairs"], s["skipped"], s["failed"], s["ranks"]), (3, 1, 0, 1))
        self.assertEqual(s["pairs_per_s"], 0.49)  # the printed rate
        self.assertAlmostEqual(s["compute_s"], 6.1)
        self.assertEqual(s["peak_mib"], 900.0)

    def test_two_ranks_in_any_order(self):
        rows = throughput.parse_summary(TWO)
        self.assertEqual([r["rank"] for r in rows], [0, 1])
        self.assertEqual(rows[1], {"rank": 1, "registered": 8, "skipped": 0, "failed": 0, "seconds": 12.5,
                                   "pairs_per_s": 0.64, "peak_mib": 1024.0})
        self.assertEqual(rows[0]["failed"], 1)
        self.assertEqual(throughput.parse_summary("\n".join(reversed(TWO.splitlines()))), rows)
        s = throughput.summarize(rows)
        self.assertEqual((s["pairs"], s["failed"], s["ranks"], s["peak_mib"]), (20, 1, 2, 1024.0))
        self.assertAlmostEqual(s["compute_s"], 12.5)  # the slowest rank
        self.assertAlmostEqual(s["pairs_per_s"], 20 / 12.5)

    def test_older_line_without_rate_and_memory(self):
        rows = throughput.parse_summary("rank 1: 2 pair(s) registered, 0 already complete, 0 failed, 4.0 s\n")
        self.assertEqual(rows, [{"rank": 1, "registered": 2, "skipped": 0, "failed": 0, "seconds": 4.0,
                                 "pairs_per_s": None, "peak_mib": None}])
        s = throughput.summarize(rows)
        self.assertEqual((s["pairs_per_s"], s["peak_mib"]), (0.5, None))

    def test_no_summary(self):
        self.assertEqual(throughput.parse_summary("error: datalist x does not exist.\n"), [])
        with self.assertRaises(ValueError):
            throughput.summarize([])


class TestFitLine(unittest.TestCase):
    def test_exact_line(self):
        intercept, slope = throughput.fit_line([4, 8, 16], [7.0, 9.0, 13.0])  # 5 s + n x 0.5 s
        self.assertAlmostEqual(intercept, 5.0, places=12)
        self.assertAlmostEqual(slope, 0.5, places=12)

    def test_least_squares(self):
        intercept, slope = throughput.fit_line([0, 1, 2, 3], [1.0, 2.0, 2.0, 5.0])
        self.assertAlmostEqual(slope, 1.2, places=12)
        self.assertAlmostEqual(intercept, 0.7, places=12)

    def test_needs_two_distinct_x(self):
        with self.assertRaises(ValueError):
            throughput.fit_line([4, 4], [1.0, 2.0])
        with self.assertRaises(ValueError):
            throughput.fit_line([1, 2], [1.0])


class TestHelpers(unittest.TestCase):
    def test_make_datalist(self):
        with tempfile.TemporaryDirectory() as d:
            path = throughput.make_datalist(Path(d) / "data", 32, patients=2, followups=3)
            items = json.loads(path.read_text())
            self.assertEqual(len(items), 6)
            self.assertEqual(len({i["reference"] for i in items}), 2)
            self.assertEqual(len({i["floating"] for i in items}), 6)
            self.assertEqual([i["reference"] for i in items[:3]], [items[0]["reference"]] * 3)  # patient by patient
            flt = np.asarray(Image.open(items[0]["floating"]))
            ref = np.asarray(Image.open(items[0]["reference"]))
            self.assertEqual((flt.shape, flt.dtype, ref.dtype), ((32, 32), np.uint16, np.uint16))
            self.assertFalse(np.array_equal(flt, ref))
            self.assertEqual(set(np.unique(np.asarray(Image.open(items[0]["reference_mask"])))), {0, 255})
            sub = throughput.subset_datalist(path, 4, Path(d) / "sub.json")
            self.assertEqual(json.loads(sub.read_text()), items[:4])
            with self.assertRaises(ValueError):
                throughput.subset_datalist(path, 7, Path(d) / "sub7.json")

    def test_threads_and_command(self):
        self.assertEqual([throughput.threads_per_process(2, p) for p in (1, 2, 4)], [2, 1, 1])
        args = throughput.build_parser().parse_args(["--no-refine", "--device", "cuda"])
        one = throughput.register_command(Path("/d/p.json"), Path("/o"), 4, 1, args)
        self.assertEqual(one[1:5], ["-m", "monai_jrs.apps.cli", "register", "--datalist"])
        for flag in ("--no-refine", "--no-progress", "--overlay", "--subtraction"):
            self.assertIn(flag, one)
        self.assertEqual(one[one.index("--batch-size") + 1], "4")
        self.assertEqual(one[one.index("--device") + 1], "cuda")
        two = throughput.register_command(Path("/d/p.json"), Path("/o"), 4, 2, args)
        self.assertEqual(two[1:5], ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"])
        self.assertTrue(two[5].startswith("--master_port="))
        self.assertEqual(two[6:], one[1:])


@pytest.mark.slow
class TestEndToEnd(unittest.TestCase):
    def test_tiny_run(self):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "results.json"
            results = throughput.main([
                "--size", "64", "--patients", "1", "--followups", "2", "--batch-sizes", "1", "2", "--processes", "1",
                "--threads", "1", "--scaling-sizes", "64", "96", "--scaling-size-pairs", "1", "--scaling-pairs",
                "1", "2", "--scaling-batch", "2", "--elastix-pairs", "1", "--no-warmup", "--workdir", str(Path(d) / "w"),
                "--output", str(out)])
            saved = json.loads(out.read_text())
        self.assertEqual(saved["failed"], [])
        self.assertEqual([(c["processes"], c["batch_size"]) for c in saved["throughput"]], [(1, 1), (1, 2)])
        for c in saved["throughput"]:
            self.assertEqual((c["pairs"], c["failed"], c["skipped"], c["threads_per_process"]), (2, 0, 0, 1))
            self.assertGreater(c["pairs_per_s"], 0)
            self.assertGreater(c["wall_s"], c["compute_s"])
            self.assertGreater(c["peak_mib"], 0)
        self.assertAlmostEqual(saved["throughput"][0]["vs_baseline"], 1.0)
        self.assertEqual([r["size"] for r in saved["sizes"]], [64, 96])
        self.assertAlmostEqual(saved["sizes"][0]["vs_smallest"], 1.0)
        self.assertTrue(all(r["s_per_pair"] > 0 for r in saved["sizes"]))
        self.assertEqual([r["pairs"] for r in saved["pair_counts"]], [1, 2])
        self.assertEqual(set(saved["pair_fit"]), {"wall_startup_s", "wall_s_per_pair", "compute_startup_s",
                                                  "compute_s_per_pair"})
        elx = saved["elastix"]
        if elx["skipped"] is None:
            self.assertEqual(len(elx["seconds"]), 1)
            self.assertGreater(elx["pairs_per_s"], 0)
            self.assertGreater(saved["throughput"][0]["vs_elastix"], 0)
        env = saved["environment"]
        for key in ("torch", "cpu_count", "threads", "git_commit", "device"):
            self.assertIn(key, env)
        self.assertEqual((env["threads"], env["device"]), (1, "cpu"))
        self.assertIn("| processes |", results["report"])
        self.assertIn("Least squares", results["report"])


if __name__ == "__main__":
    unittest.main()
