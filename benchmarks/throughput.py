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
"""Archive-scale throughput of ``monai-jrs register --datalist``: pairs per second against batch size, processes,
image size and number of pairs, beside elastix on the same pairs, all in the same run.

Data: ``--patients`` synthetic chest radiographs (:func:`monai_jrs.data.testing.make_synthetic_xray`, 16-bit PNG,
``N x N``) with their lung masks, each with ``--followups`` follow-ups made from it by a rotation of a few degrees and a
shift (and other noise); the datalist is a JSON list of ``{"reference", "reference_mask", "floating"}`` items.

Each configuration runs the real command in a subprocess, ``python -m monai_jrs.apps.cli register --datalist ...
--no-progress`` (under ``python -m torch.distributed.run --nproc_per_node=P`` on loopback and a free port for
``P`` > 1 processes), with the bundle's default weights and a fresh output folder (the command is resumable: a reused
folder would skip everything). ``OMP_NUM_THREADS`` = ``--threads`` / processes, so every configuration uses the same
cores. Measured per configuration:

- ``wall_s``: the whole command (Python and MONAI import, model load, process group, every pair, ``metrics.csv``);
- ``compute_s``, ``pairs_per_s``: what the command prints itself (``N pair(s) registered, ..., T s (R pairs/s), peak
  memory M MiB``, one line per rank): the time inside :func:`monai_jrs.apps.batch.run_batch` (for several processes
  the slowest rank, and all ranks' pairs over it);
- ``peak_mib``: the largest peak resident memory of a process (``ru_maxrss`` of each rank; loader processes of
  ``--num-workers`` > 0 are not counted).

Sections of the report (a Markdown table each; ``--output results.json`` has every number and the environment):

1. **Throughput** at ``--size`` (default 512): every ``--processes`` x ``--batch-sizes``, with the ratio of pairs/s to
   the 1-process batch-1 configuration and to elastix;
2. **elastix** (itk-elastix, the paper's affine + B-spline settings, ``benchmarks/methods.py``) on the first
   ``--elastix-pairs`` pairs, ``--threads`` ITK threads, median seconds per pair (registration only, images already
   read); skipped with a message when itk-elastix is not installed;
3. **Cost against image size**: 1 process, batch ``--scaling-batch``, ``--scaling-size-pairs`` pairs at each of
   ``--scaling-sizes``: seconds per pair and the ratio to the smallest size;
4. **Cost against number of pairs**: 1 process, batch ``--scaling-batch`` at ``--size``, ``--scaling-pairs`` pairs:
   the whole command's seconds, and the least-squares line ``wall = start-up + n x seconds per pair``.

An untimed warm-up run (one pair) comes first (``--no-warmup``: none), so that the first configuration does not pay
for a cold file cache. Benchmarks never assert timings: the numbers depend on the machine and on what else runs on it.

The chunk of follow-ups of one reference is the unit of work that the ranks share: with the default single reference
and batch 16 there is one chunk, so a second process has nothing to do (the command's behaviour there is what the
report shows; a configuration whose command fails is listed as failed with its error, the others still run).

Run: ``python benchmarks/throughput.py [--size 512] [--patients 1 --followups 16] [--batch-sizes 1 4 16]
[--processes 1 2] [--threads 2] [--device cpu|cuda] [--no-refine] [--output results.json]``. The defaults take about
8-10 minutes on a 2-core CPU (about 3 s per pair at 512 px with the refinement); ``--patients 2`` doubles the
throughput runs; ``--no-refine`` (the network alone) is several times faster per pair. With ``--device cuda`` the
command runs on ``cuda:LOCAL_RANK``: process counts above the number of GPUs are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from methods import elastix_parameter_object  # noqa: E402 (benchmarks/methods.py)

from monai_jrs.data.testing import make_synthetic_xray  # noqa: E402
from monai_jrs.utils.conventions import affine_to_ddf, rotation_matrix, warp  # noqa: E402
from monai_jrs.utils.deps import MissingDependencyError, require  # noqa: E402
from monai_jrs.utils.net import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

#: the summary line that ``monai-jrs register --datalist`` prints per rank (``rank k: `` only with several ranks;
#: the pairs/s and peak-memory parts are optional so that older versions of the command still parse).
SUMMARY = re.compile(
    r"^(?:rank (?P<rank>\d+): )?(?P<registered>\d+) pair\(s\) registered, (?P<skipped>\d+) already complete, "
    r"(?P<failed>\d+) failed, (?P<seconds>\d+(?:\.\d+)?) s"
    r"(?: \((?P<pairs_per_s>\d+(?:\.\d+)?) pairs/s\))?(?:, peak memory (?P<peak_mib>\d+(?:\.\d+)?) MiB)?\s*$",
    re.MULTILINE,
)


def make_datalist(folder: str | os.PathLike, size: int, patients: int, followups: int, seed: int = 0) -> Path:
    """Write ``patients`` references (image + lung mask) with ``followups`` follow-ups each as 16-bit PNGs under
    ``folder`` and the datalist ``folder/pairs.json`` (absolute paths, patient by patient); returns its path.

    A follow-up is the reference drawn with other noise, rotated by up to 5 degrees and shifted by up to 4 % of the
    size (as ``benchmarks/bench_register.py``).
    """
    if size < 8 or patients < 1 or followups < 1:
        raise ValueError(f"need size >= 8, patients >= 1, followups >= 1; got {size}, {patients}, {followups}.")
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, size])
    items = []
    for p in range(patients):
        image, mask = make_synthetic_xray((size, size), max_value=65535, seed=seed * 100_003 + p)
        ref_p, mask_p = folder / f"p{p:03d}_reference.png", folder / f"p{p:03d}_mask.png"
        Image.fromarray(image).save(ref_p)
        Image.fromarray(mask * 255).save(mask_p)
        for f in range(followups):
            noisy, _ = make_synthetic_xray((size, size), max_value=65535, seed=seed * 100_003 + 1000 * (p + 1) + f)
            angle = np.deg2rad(rng.uniform(-5, 5))
            shift = rng.uniform(-0.04, 0.04, size=2) * size
            mat = torch.linalg.inv(rotation_matrix(torch.tensor([angle]), torch.from_numpy(shift[None]).float()))
            flt = warp(torch.from_numpy(noisy.astype(np.float32))[None, None], affine_to_ddf(mat, (size, size)))
            flt_p = folder / f"p{p:03d}_followup{f:03d}.png"
            Image.fromarray(np.clip(np.round(flt[0, 0].numpy()), 0, 65535).astype(np.uint16)).save(flt_p)
            items.append({"reference": str(ref_p), "reference_mask": str(mask_p), "floating": str(flt_p)})
    path = folder / "pairs.json"
    path.write_text(json.dumps(items, indent=1), encoding="utf-8")
    return path


def subset_datalist(datalist: str | os.PathLike, n: int, path: str | os.PathLike) -> Path:
    """The first ``n`` items of ``datalist`` written to ``path``."""
    items = json.loads(Path(datalist).read_text(encoding="utf-8"))
    if n > len(items):
        raise ValueError(f"{datalist} has {len(items)} pairs, {n} asked.")
    path = Path(path)
    path.write_text(json.dumps(items[:n], indent=1), encoding="utf-8")
    return path


def parse_summary(stdout: str) -> list[dict[str, Any]]:
    """The summary lines of ``monai-jrs register --datalist`` in ``stdout``, one dict per rank sorted by rank:
    ``rank``, ``registered``, ``skipped``, ``failed`` (ints), ``seconds``, ``pairs_per_s``, ``peak_mib`` (floats;
    the last two ``None`` when the line has no such part).

    Example:
        >>> parse_summary("rank 1: 2 pair(s) registered, 0 already complete, 0 failed, 1.5 s (1.33 pairs/s), "
        ...               "peak memory 512 MiB")[0]["pairs_per_s"]
        1.33
    """
    rows = []
    for m in SUMMARY.finditer(stdout):
        g = m.groupdict()
        rows.append({
            "rank": int(g["rank"] or 0), "registered": int(g["registered"]), "skipped": int(g["skipped"]),
            "failed": int(g["failed"]), "seconds": float(g["seconds"]),
            "pairs_per_s": None if g["pairs_per_s"] is None else float(g["pairs_per_s"]),
            "peak_mib": None if g["peak_mib"] is None else float(g["peak_mib"]),
        })
    return sorted(rows, key=lambda r: r["rank"])


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One configuration from its ranks' summary lines: ``pairs`` (registered, all ranks), ``skipped``, ``failed``,
    ``compute_s`` (the slowest rank), ``pairs_per_s`` (``pairs / compute_s``; the printed rate for one process),
    ``peak_mib`` (the largest of the ranks, ``None`` if not printed), ``ranks``."""
    if not rows:
        raise ValueError("no summary line")
    pairs = sum(r["registered"] for r in rows)
    compute = max(r["seconds"] for r in rows)
    if len(rows) == 1 and rows[0]["pairs_per_s"] is not None:
        rate = rows[0]["pairs_per_s"]
    else:
        rate = pairs / compute if compute > 0 else float("nan")
    peaks = [r["peak_mib"] for r in rows if r["peak_mib"] is not None]
    return {"pairs": pairs, "skipped": sum(r["skipped"] for r in rows), "failed": sum(r["failed"] for r in rows),
            "compute_s": compute, "pairs_per_s": rate, "peak_mib": max(peaks) if peaks else None, "ranks": len(rows)}


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``y = intercept + slope * x``; returns ``(intercept, slope)``.

    Example:
        >>> fit_line([1, 2, 3], [5, 7, 9])
        (3.0, 2.0)
    """
    x, y = [float(v) for v in xs], [float(v) for v in ys]
    if len(x) != len(y):
        raise ValueError(f"xs and ys must have the same length, got {len(x)} and {len(y)}.")
    if len(set(x)) < 2:
        raise ValueError("a line needs at least two distinct x values.")
    mx, my = sum(x) / len(x), sum(y) / len(y)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
    return my - slope * mx, slope


def register_command(datalist: Path, output: Path, batch_size: int, processes: int, args: argparse.Namespace
                     ) -> list[str]:
    """The argv of one configuration (``torch.distributed.run`` for ``processes`` > 1)."""
    cmd = [sys.executable]
    if processes > 1:
        cmd += ["-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--master_addr=127.0.0.1",
                f"--master_port={free_port()}"]
    cmd += ["-m", "monai_jrs.apps.cli", "register", "--datalist", str(datalist), "--output", str(output),
            "--batch-size", str(batch_size), "--num-workers", str(args.num_workers), "--device", args.device,
            "--no-progress", "--refine" if args.refine else "--no-refine",
            "--overlay" if args.overlay else "--no-overlay",
            "--subtraction" if args.subtraction else "--no-subtraction"]
    if args.bundle:
        cmd += ["--bundle", str(args.bundle)]
    return cmd


def threads_per_process(threads: int, processes: int) -> int:
    """``OMP_NUM_THREADS`` of each process so that processes x threads = ``threads`` (at least 1)."""
    return max(1, threads // processes)


def run_register(datalist: Path, output: Path, batch_size: int, processes: int, args: argparse.Namespace,
                 expected: int) -> dict[str, Any]:
    """Run one configuration into the fresh folder ``output``; its measurements (see the module docstring).

    Raises:
        RuntimeError: the command failed, printed no summary, or did not register ``expected`` pairs.
    """
    if output.exists():
        raise RuntimeError(f"{output} exists: every configuration needs a fresh folder (the command resumes).")
    n_threads = threads_per_process(args.threads, processes)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(n_threads),
           "MKL_NUM_THREADS": str(n_threads)}
    cmd = register_command(datalist, output, batch_size, processes, args)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t
    rows = parse_summary(proc.stdout)
    if proc.returncode != 0 or len(rows) != processes:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode} and {len(rows)} summary line(s) for "
                           f"{processes} process(es):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    summary = summarize(rows)
    if summary["pairs"] != expected or summary["failed"] or summary["skipped"]:
        raise RuntimeError(f"{' '.join(cmd)}: expected {expected} pairs registered, got {summary}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {"processes": processes, "threads_per_process": n_threads, "batch_size": batch_size, "wall_s": wall,
            **summary, "per_rank": rows}


def elastix_seconds(items: Sequence[dict[str, str]], threads: int) -> list[float]:
    """Seconds of itk-elastix (``methods.elastix_parameter_object``) on each pair, images already read."""
    itk = require("itk", "the elastix column of the throughput benchmark")
    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(int(threads))
    params = elastix_parameter_object()
    out = []
    for item in items:
        fixed = itk.imread(item["reference"], itk.F)
        moving = itk.imread(item["floating"], itk.F)
        t = time.perf_counter()
        itk.elastix_registration_method(fixed, moving, parameter_object=params, log_to_console=False)
        out.append(time.perf_counter() - t)
    return out


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """What the numbers depend on: versions, CPUs, threads, device, git commit of this checkout."""
    import monai

    from monai_jrs import __version__

    def git(*a: str) -> str | None:
        try:
            p = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    try:
        import importlib.metadata

        elastix = importlib.metadata.version("itk-elastix")
    except importlib.metadata.PackageNotFoundError:
        elastix = None
    status = git("status", "--porcelain", "--untracked-files=no")
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
           "monai": monai.__version__, "monai_jrs": __version__, "itk_elastix": elastix, "cpu_count": os.cpu_count(),
           "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
           "threads": args.threads, "device": args.device, "git_commit": git("rev-parse", "HEAD"),
           "git_dirty": None if status is None else bool(status)}
    if args.device == "cuda" and torch.cuda.is_available():
        env["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return env


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image size of the throughput runs (default 512)")
    ap.add_argument("--patients", type=int, default=1, help="references (default 1)")
    ap.add_argument("--followups", type=int, default=16, help="follow-ups per reference (default 16)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads in all (processes x OMP_NUM_THREADS)")
    ap.add_argument("--num-workers", type=int, default=0, help="--num-workers of the command (default 0)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the command's, the shipped bundle)")
    ap.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                    help="the command's full-resolution refinement (default, as the command; --no-refine: faster)")
    ap.add_argument("--overlay", action=argparse.BooleanOptionalAction, default=True, help="(the command's default)")
    ap.add_argument("--subtraction", action=argparse.BooleanOptionalAction, default=True,
                    help="(the command's default)")
    ap.add_argument("--elastix-pairs", type=int, default=2, help="pairs for elastix (0: none; default 2)")
    ap.add_argument("--scaling-sizes", type=int, nargs="*", default=[256, 512, 1024, 2048],
                    help="image sizes of the cost-against-size runs (none: skip)")
    ap.add_argument("--scaling-size-pairs", type=int, default=2, help="pairs at each scaling size (default 2)")
    ap.add_argument("--scaling-pairs", type=int, nargs="*", default=[2, 4, 8],
                    help="pair counts of the cost-against-pairs runs at --size (none: skip)")
    ap.add_argument("--scaling-batch", type=int, default=4, help="batch size of the scaling runs (default 4)")
    ap.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                    help="an untimed one-pair run first (default)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed to one command")
    ap.add_argument("--workdir", default=None, help="keep data and outputs here (default: a temporary folder)")
    ap.add_argument("--output", default=None, help="write every number and the environment to this JSON file")
    return ap


def _last_error(text: str) -> str:
    """The last line of a failed command's output that names an error (for the report)."""
    lines = [ln.strip() for ln in text.splitlines() if re.search(r"(Error|error|Exception)\b:", ln)
             and "ChildFailedError" not in ln]
    return (lines[-1] if lines else text.strip().splitlines()[0])[:300]


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and x != x) else format(x, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def render(results: dict[str, Any]) -> str:
    """The Markdown report of :func:`main`'s results."""
    env, s = results["environment"], results["settings"]
    lines = ["# monai-jrs register --datalist: throughput", "",
             f"torch {env['torch']}, {env['cpus_usable']} usable CPUs, {s['threads']} threads in all, device "
             f"{s['device']}, refine {s['refine']}, overlay {s['overlay']}, subtraction {s['subtraction']}, "
             f"commit {(env['git_commit'] or 'unknown')[:12]}{' (modified)' if env['git_dirty'] else ''}.", ""]
    base, elx = results["baseline"], results["elastix"]
    lines += [f"## Throughput at {s['size']} px ({s['patients']} reference(s) x {s['followups']} follow-ups = "
              f"{s['pairs']} pairs)", "",
              f"Ratios: pairs/s over {base['label']} ({_fmt(base['pairs_per_s'], '.3f')} pairs/s) and over elastix. "
              "Wall: the whole command (import, model load, ...); compute: what the command prints (slowest rank).",
              "", "| processes | threads/process | batch | pairs | wall s | compute s | pairs/s | peak MiB/process "
              f"| vs {base['label']} | vs elastix |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in results["throughput"]:
        lines.append(f"| {c['processes']} | {c['threads_per_process']} | {c['batch_size']} | {c['pairs']} | "
                     f"{c['wall_s']:.1f} | {c['compute_s']:.1f} | {_fmt(c['pairs_per_s'], '.3f')} | "
                     f"{_fmt(c['peak_mib'], '.0f')} | {_fmt(c['vs_baseline'])} | {_fmt(c['vs_elastix'])} |")
    for f in results["failed"]:
        lines.append(f"| {f['processes']} | | {f['batch_size']} | | | | failed: `{_last_error(f['error'])}` | | | |")
    if elx["skipped"]:
        lines.append(f"| elastix | | | | | | skipped: {elx['skipped']} | | | |")
    else:
        lines.append(f"| elastix | {s['threads']} (ITK) | 1 | {len(elx['seconds'])} | | "
                     f"{sum(elx['seconds']):.1f} | {_fmt(elx['pairs_per_s'], '.3f')} | | "
                     f"{_fmt(_ratio(elx['pairs_per_s'], base['pairs_per_s']))} | 1.00 |")
        lines += ["", f"elastix: median {elx['median_s']:.2f} s per pair over {len(elx['seconds'])} pair(s) "
                  "(registration only, images already read)."]
    if results["sizes"]:
        small = results["sizes"][0]["size"]
        lines += ["", f"## Cost against image size (1 process, batch {s['scaling_batch']}, "
                  f"{s['scaling_size_pairs']} pairs per size)", "",
                  f"| size | pairs | wall s | compute s | s/pair | vs {small} px |", "|---:|---:|---:|---:|---:|---:|"]
        for r in results["sizes"]:
            lines.append(f"| {r['size']} | {r['pairs']} | {r['wall_s']:.1f} | {r['compute_s']:.1f} | "
                         f"{r['s_per_pair']:.3f} | {_fmt(r['vs_smallest'])} |")
    if results["pair_counts"]:
        fit = results["pair_fit"]
        lines += ["", f"## Cost against number of pairs ({s['size']} px, 1 process, batch {s['scaling_batch']})", "",
                  "| pairs | wall s | compute s | wall s/pair |", "|---:|---:|---:|---:|"]
        for r in results["pair_counts"]:
            lines.append(f"| {r['pairs']} | {r['wall_s']:.1f} | {r['compute_s']:.1f} | {r['wall_s'] / r['pairs']:.2f} |")
        if fit is not None:
            lines += ["", f"Least squares: wall = {fit['wall_startup_s']:.2f} s + n x {fit['wall_s_per_pair']:.3f} s "
                      f"(start-up: import, model load, ...); compute = {fit['compute_startup_s']:.2f} s + n x "
                      f"{fit['compute_s_per_pair']:.3f} s."]
    lines += ["", f"Benchmark: {results['benchmark_s']:.0f} s in all."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); prints the report and returns every number (also written to
    ``--output``)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if min(args.batch_sizes + args.processes) < 1 or args.threads < 1 or args.size < 32:
        raise SystemExit("--batch-sizes, --processes, --threads must be >= 1 and --size >= 32.")
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    processes = list(dict.fromkeys(args.processes))
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available.")
        gpus = torch.cuda.device_count()
        for p in [p for p in processes if p > gpus]:
            print(f"skipping {p} processes: {gpus} GPU(s) (each rank takes cuda:LOCAL_RANK)")
        processes = [p for p in processes if p <= gpus]
    for p in processes:
        if args.threads % p:
            print(f"note: {args.threads} threads do not divide over {p} processes: {threads_per_process(args.threads, p)}"
                  " thread(s) each")
    n_main = args.patients * args.followups
    scaling_pairs = sorted(set(args.scaling_pairs))
    results: dict[str, Any] = {"settings": {**vars(args), "pairs": n_main, "processes": processes},
                               "environment": environment(args)}
    with tempfile.TemporaryDirectory(prefix="jrs_throughput_") as tmp:
        root = Path(args.workdir).absolute() if args.workdir else Path(tmp)
        runs = root / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        # a pool at --size large enough for every run there, patient by patient: its first n_main pairs are the
        # --patients x --followups of the throughput runs
        need = max([n_main, args.elastix_pairs, *scaling_pairs])
        pool = make_datalist(root / f"data{args.size}", args.size, -(-need // args.followups), args.followups)
        main_list = subset_datalist(pool, n_main, root / f"pairs{args.size}_{n_main}.json")

        def fresh(name: str) -> Path:
            out, k = runs / name, 1
            while out.exists():
                out, k = runs / f"{name}_{k}", k + 1
            return out

        if args.warmup:
            run_register(subset_datalist(pool, 1, root / "warmup.json"), fresh("warmup"), 1, 1, args, 1)
        configs, failures = [], []
        for p in processes:
            for b in dict.fromkeys(args.batch_sizes):
                try:
                    c = run_register(main_list, fresh(f"p{p}_b{b}"), b, p, args, n_main)
                except RuntimeError as e:  # recorded, the other configurations still run
                    failures.append({"processes": p, "batch_size": b, "error": str(e)})
                    print(f"{p} process(es), batch {b}: FAILED: {_last_error(str(e))}", flush=True)
                    continue
                configs.append(c)
                print(f"{p} process(es), batch {b}: {c['pairs_per_s']:.3f} pairs/s, wall {c['wall_s']:.1f} s",
                      flush=True)
        elx: dict[str, Any] = {"skipped": None, "seconds": [], "median_s": None, "pairs_per_s": None}
        if args.elastix_pairs < 1:
            elx["skipped"] = "--elastix-pairs 0"
        else:
            try:
                items = json.loads(pool.read_text(encoding="utf-8"))[:args.elastix_pairs]
                elx["seconds"] = elastix_seconds(items, args.threads)
                elx["median_s"] = statistics.median(elx["seconds"])
                elx["pairs_per_s"] = 1.0 / elx["median_s"]
            except MissingDependencyError as e:
                elx["skipped"] = f"itk-elastix is not installed ({e})"
                print(f"elastix skipped: {e}")
        base = next((c for c in configs if c["processes"] == 1 and c["batch_size"] == 1), configs[0] if configs
                    else None)
        label = "none" if base is None else f"{base['processes']} process(es) batch {base['batch_size']}"
        for c in configs:
            c["vs_baseline"] = _ratio(c["pairs_per_s"], base["pairs_per_s"])
            c["vs_elastix"] = _ratio(c["pairs_per_s"], elx["pairs_per_s"])
        sizes = []
        for size in sorted(set(args.scaling_sizes)):
            data = make_datalist(root / f"scaling{size}", size, 1, args.scaling_size_pairs, seed=1)
            r = run_register(data, fresh(f"size{size}"), args.scaling_batch, 1, args, args.scaling_size_pairs)
            r.update(size=size, s_per_pair=r["compute_s"] / r["pairs"], wall_s_per_pair=r["wall_s"] / r["pairs"])
            sizes.append(r)
            print(f"size {size}: {r['s_per_pair']:.3f} s per pair", flush=True)
        for r in sizes:
            r["vs_smallest"] = _ratio(r["s_per_pair"], sizes[0]["s_per_pair"])
        counts = []
        for n in scaling_pairs:
            r = run_register(subset_datalist(pool, n, root / f"pairs{args.size}_{n}.json"), fresh(f"n{n}"),
                             args.scaling_batch, 1, args, n)
            counts.append(r)
            print(f"{n} pairs: wall {r['wall_s']:.1f} s", flush=True)
        fit = None
        if len(counts) >= 2:
            ns = [r["pairs"] for r in counts]
            w0, w1 = fit_line(ns, [r["wall_s"] for r in counts])
            c0, c1 = fit_line(ns, [r["compute_s"] for r in counts])
            fit = {"wall_startup_s": w0, "wall_s_per_pair": w1, "compute_startup_s": c0, "compute_s_per_pair": c1}
    results.update(throughput=configs, failed=failures, elastix=elx, sizes=sizes, pair_counts=counts, pair_fit=fit,
                   baseline={"label": label, "pairs_per_s": None if base is None else base["pairs_per_s"]},
                   benchmark_s=time.perf_counter() - start)
    report = render(results)
    results["report"] = report
    print("\n" + report)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
