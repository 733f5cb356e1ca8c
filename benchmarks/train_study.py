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
"""Training studies at one budget: the appearance-randomisation ablation and JRS vs JRS-NoSeg over seeds.

Every variant is the bundle's own training command (``python -m monai.bundle run training`` with
``configs/train.json``) with a few overrides, run in a subprocess on the same embedded dataset for the same number of
epochs (same iterations, same batch), with ``--val_interval`` equal to the number of epochs so that
``models/model.pt`` is the network at the end of the budget. Each trained network is then scored by
``benchmarks/real_dev.py`` with the network alone (``--no-refine``; that is what training changes): on the real
development radiographs (RG1, Montgomery; seeded follow-up and paper-protocol deformations at ``--size``) and on the
dataset's own DRR test patients (``--drr``), which are rendered from a CT and lung shapes that training never saw.

Variants (``--variants``):

- ``jrs``: the default training (segmentation term on, every appearance part);
- ``noseg``: ``--generator_loss#dice_weight 0.0`` (the paper's JRS-NoSeg ablation);
- ``appearance-none``: ``--appearance_parts []``;
- ``no-<part>``: every appearance part but one (``no-monotonic``, ``no-nonmonotonic``, ``no-labels``, ``no-bias``,
  ``no-blur``, ``no-noise``), and ``no-luts`` (neither intensity map).

Reported per variant: mean +- sd over seeds of the whole-field and lung TRE (px of the ``--size`` grid) per
benchmark and protocol, training wall time and the peak resident memory of the training process.

Usage::

    python benchmarks/train_study.py --dataset ./jrs_data --output docs/train_study \\
        --variants jrs noseg --seeds 0 1 2 --epochs 6
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("train_study")

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundle"
PARTS = ("monotonic", "nonmonotonic", "labels", "bias", "blur", "noise")
REAL_IMAGES = ("rg1", "montgomery")


def variant_overrides(variant: str) -> list[str]:
    """The ``monai.bundle run`` overrides of one variant.

    Raises:
        ValueError: for an unknown variant name.
    """
    if variant == "jrs":
        return []
    if variant == "noseg":
        return ["--generator_loss#dice_weight", "0.0"]
    if variant == "appearance-none":
        return ["--appearance_parts", "[]"]
    if variant == "no-luts":
        return ["--appearance_parts", repr([p for p in PARTS if p not in ("monotonic", "nonmonotonic")])]
    if variant.startswith("no-") and variant[3:] in PARTS:
        return ["--appearance_parts", repr([p for p in PARTS if p != variant[3:]])]
    known = ["jrs", "noseg", "appearance-none", "no-luts"] + [f"no-{p}" for p in PARTS]
    raise ValueError(f"unknown variant {variant!r}; expected one of {known}.")


def train(variant: str, seed: int, epochs: int, dataset: Path, run_dir: Path,
          warmup: int | None = None) -> dict[str, Any]:
    """Train one variant in a subprocess; returns wall seconds and peak RSS (MiB) of the training process."""
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(BUNDLE / "configs" / "train.json"),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--logging_file", str(BUNDLE / "configs" / "logging.conf"),
        "--bundle_root", str(run_dir), "--dataset_dir", str(dataset), "--seed", str(seed),
        "--train#trainer#max_epochs", str(epochs), "--val_interval", str(epochs),
        *variant_overrides(variant),
    ]
    if warmup is not None:
        cmd += ["--train#trainer#warmup_iterations", str(warmup)]
    run_dir.mkdir(parents=True, exist_ok=True)
    logger.info("training %s seed %d: %s", variant, seed, " ".join(cmd))
    start = time.perf_counter()
    with open(run_dir / "train.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(run_dir))
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"training {variant} seed {seed} failed; see {run_dir / 'train.log'}")
    return {"train_s": seconds, "peak_rss_mib": usage.ru_maxrss / 1024.0}


def make_bundle(run_dir: Path) -> Path:
    """A bundle folder (the shipped configs + the run's ``models/model.pt``) that ``--bundle`` can load."""
    out = run_dir / "bundle"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(BUNDLE / "configs", out / "configs")
    (out / "models").mkdir()
    shutil.copy2(run_dir / "models" / "model.pt", out / "models" / "model.pt")
    return out


def evaluate(bundle: Path | None, dataset: Path, out_dir: Path, pairs: int, size: int, threads: int,
             seed: int = 0) -> list[dict[str, Any]]:
    """``real_dev.py`` rows of the network alone (real radiographs and the dataset's DRR test patients)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import real_dev

    argv = ["--output", str(out_dir), "--pairs", str(pairs), "--size", str(size), "--threads", str(threads),
            "--seed", str(seed), "--methods", "jrs-norefine", "--no-elastix", "--examples", "0",
            "--drr", str(dataset)]
    if bundle is not None:
        argv += ["--bundle", str(bundle)]
    return real_dev.main(argv)["rows"]


def summarize_rows(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean whole-field and lung TRE per benchmark (real / drr) and protocol of one trained network."""
    out: dict[str, float] = {}
    for bench in ("real", "drr"):
        for protocol in ("followup", "paper"):
            sel = [r for r in rows if r.get("status") == "ok" and r["protocol"] == protocol
                   and (r["image"] in REAL_IMAGES) == (bench == "real")]
            for key in ("tre_fov_mean", "tre_lung_mean"):
                vals = [float(r[key]) for r in sel]
                out[f"{bench}_{protocol}_{key}"] = statistics.fmean(vals) if vals else float("nan")
    return out


def _ms(values: Sequence[float]) -> str:
    values = [float(v) for v in values if math.isfinite(float(v))]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} +- {statistics.stdev(values):.2f}"


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace, argv: Sequence[str]) -> str:
    """Markdown table: one row per variant, mean +- sd over its seeds."""
    cols = [(f"{b}_{p}_{k}", f"{b} {p} {'FOV' if 'fov' in k else 'lung'}") for b in ("real", "drr")
            for p in ("followup", "paper") for k in ("tre_fov_mean", "tre_lung_mean")]
    lines = [
        "# Training study (network alone, `--no-refine`)", "",
        f"Generated by `python benchmarks/train_study.py {' '.join(argv)}`. Each variant trained for {args.epochs} "
        f"epochs (warm-up {args.warmup if args.warmup is not None else 'as the bundle'} iterations) on "
        f"`{args.dataset}`, seeds {args.seeds}; TRE means in px of the {args.size} x {args.size} grid "
        f"({args.pairs} deformations per image and protocol); mean +- sd over seeds. real: RG1 and Montgomery "
        "(real radiographs, rough two-ellipse lung masks); drr: the dataset's test patients (a CT and lung shapes "
        "that training never saw).", "",
        "| variant | seeds | " + " | ".join(c[1] for c in cols) + " | train s | peak RSS MiB |",
        "|---|---:|" + "---:|" * (len(cols) + 2),
    ]
    for variant, runs in results.items():
        cells = [_ms([r[c[0]] for r in runs]) for c in cols]
        lines.append(f"| {variant} | {len(runs)} | " + " | ".join(cells)
                     + f" | {_ms([r['train_s'] for r in runs])} | {_ms([r['peak_rss_mib'] for r in runs])} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="embedded dataset folder (python -m monai_jrs.data.embedded)")
    ap.add_argument("--output", default="docs/train_study", help="report folder (runs go to OUTPUT/runs)")
    ap.add_argument("--variants", nargs="+", default=["jrs", "noseg"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=None,
                    help="warm-up iterations (default: the bundle's 100; a short budget needs fewer for the GAN "
                         "and segmentation terms to act at all)")
    ap.add_argument("--pairs", type=int, default=4, help="deformations per image and protocol in the evaluation")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep-runs", action="store_true", help="keep checkpoints and logs of every run")
    return ap


def main(argv: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for v in args.variants:
        variant_overrides(v)  # fail early on a typo
    dataset = Path(args.dataset).absolute()
    out = Path(args.output).absolute()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    done_path = out / "train_study.json"
    previous = json.loads(done_path.read_text()) if done_path.is_file() else {}
    for variant in args.variants:
        for seed in args.seeds:
            key = f"{variant}/seed{seed}/epochs{args.epochs}/warmup{args.warmup}"
            if key in previous:  # resumable: a finished run is not repeated
                results.setdefault(variant, []).append(previous[key])
                continue
            run_dir = out / "runs" / f"{variant}_seed{seed}"
            stats = train(variant, seed, args.epochs, dataset, run_dir, args.warmup)
            rows = evaluate(make_bundle(run_dir), dataset, run_dir / "eval", args.pairs, args.size, args.threads)
            stats.update(summarize_rows(rows))
            stats.update({"variant": variant, "seed": seed, "epochs": args.epochs})
            results.setdefault(variant, []).append(stats)
            previous[key] = stats
            done_path.write_text(json.dumps(previous, indent=1) + "\n")
            logger.info("%s: %s", key, {k: round(v, 3) for k, v in stats.items() if isinstance(v, float)})
            if not args.keep_runs:
                shutil.rmtree(run_dir, ignore_errors=True)
    # the report covers every finished run of this budget in the output folder (earlier invocations included)
    for key, stats in previous.items():
        variant, seed_part, epochs_part, warmup_part = key.split("/")
        if epochs_part == f"epochs{args.epochs}" and warmup_part == f"warmup{args.warmup}":
            runs = results.setdefault(variant, [])
            if all(r.get("seed") != stats.get("seed") for r in runs):
                runs.append(stats)
    text = report(results, args, argv)
    (out / "train_study.md").write_text(text)
    print(text)
    return results


if __name__ == "__main__":
    main()
