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
"""Tests of benchmarks/train_study.py (variants, summaries, report) and benchmarks/refine_budget.py (budgets)."""

from __future__ import annotations

import argparse
import ast
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import refine_budget  # noqa: E402
import train_study  # noqa: E402

from monai.bundle import ConfigParser  # noqa: E402

TRAIN = Path(__file__).resolve().parents[2] / "bundle" / "configs" / "train.json"


@pytest.mark.parametrize(
    "variant, parts",
    [
        ("appearance-none", []),
        ("no-luts", ["labels", "bias", "blur", "noise"]),
        ("no-labels", ["monotonic", "nonmonotonic", "bias", "blur", "noise"]),
        ("no-noise", ["monotonic", "nonmonotonic", "labels", "bias", "blur"]),
    ],
)
def test_appearance_variants(variant, parts):
    args = train_study.variant_overrides(variant)
    assert args[0] == "--appearance_parts"
    assert ast.literal_eval(args[1]) == parts


def test_variants_match_the_bundle():
    """The overrides name ids that exist in train.json, and `jrs` is the default config itself."""
    p = ConfigParser()
    p.read_config(str(TRAIN))
    assert sorted(p["appearance_parts"]) == sorted(train_study.PARTS)
    assert p["generator_loss"]["dice_weight"] != 0.0
    assert train_study.variant_overrides("jrs") == []
    assert train_study.variant_overrides("noseg") == ["--generator_loss#dice_weight", "0.0"]
    with pytest.raises(ValueError, match="unknown variant 'no-colour'"):
        train_study.variant_overrides("no-colour")


def _row(image, protocol, fov, lung, status="ok"):
    return {"image": image, "protocol": protocol, "tre_fov_mean": fov, "tre_lung_mean": lung, "status": status}


def test_summarize_and_report():
    rows = [_row("rg1", "followup", 2.0, 1.0), _row("montgomery", "followup", 4.0, 3.0),
            _row("drr-P000", "followup", 1.0, 0.5), _row("rg1", "paper", 9.0, 9.0, status="failed: x"),
            _row("drr-P000", "paper", 3.0, 2.0)]
    s = train_study.summarize_rows(rows)
    assert s["real_followup_tre_fov_mean"] == 3.0 and s["real_followup_tre_lung_mean"] == 2.0
    assert s["drr_followup_tre_fov_mean"] == 1.0 and s["drr_paper_tre_lung_mean"] == 2.0
    assert math.isnan(s["real_paper_tre_fov_mean"])  # the failed pair is not averaged
    runs = [{**s, "train_s": 10.0, "peak_rss_mib": 100.0}, {**s, "real_followup_tre_fov_mean": 5.0, "train_s": 12.0,
                                                             "peak_rss_mib": 110.0}]
    args = argparse.Namespace(epochs=2, dataset="d", seeds=[0, 1], size=64, pairs=1, warmup=10)
    text = train_study.report({"jrs": runs}, args, ["--epochs", "2"])
    assert "| jrs | 2 | 4.00 +- 1.41 |" in text
    assert "11.00 +- 1.41" in text


@pytest.mark.parametrize("scale, affine, dense, total", [(1.0, [30, 10], [30, 20, 10], 100),
                                                          (0.5, [15, 5], [15, 10, 5], 50),
                                                          (0.1, [3, 1], [3, 2, 1], 10)])
def test_refine_budgets(scale, affine, dense, total):
    r = refine_budget.scaled_refinement(scale)
    assert r.affine_iterations == affine and r.iterations == dense
    assert refine_budget.steps(scale) == total


def test_refine_budget_zero_is_the_network_alone():
    assert refine_budget.scaled_refinement(0.0) is None and refine_budget.steps(0.0) == 0
