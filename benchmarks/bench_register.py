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
"""Seconds per pair of ``monai-jrs register`` (end to end, and the network alone) beside elastix, same pairs, same run.

Pairs: synthetic chest radiographs (:func:`monai_jrs.data.testing.make_synthetic_xray`) at ``N x N`` and a follow-up
made from each by a rotation of a few degrees and a shift, saved as 16-bit PNG. For each size ``N``:

- ``jrs_end_to_end``: :meth:`monai_jrs.apps.JRSRegistrar.register` on the files (loading, resizing, network,
  full-resolution field and warps, NIfTI/PNG/JSON writing), model loaded once, median over pairs;
- ``jrs_network``: the generator's forward pass alone at the bundle's network size (256) and at ``N``;
- ``elastix``: itk-elastix, affine then multi-resolution B-spline with mutual information (the paper's settings:
  grid spacings 80/40/20/10/5 mm-equivalent pixels, downsampling 4/3/2/1/1), on the same pairs.

Ratios are printed against elastix measured in the same run. Run: ``python benchmarks/bench_register.py
[--sizes 256 512 1024] [--pairs 3] [--threads 2]``. Needs ``pip install itk-elastix`` for the elastix column.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from methods import elastix_parameter_object  # noqa: E402 (benchmarks/ is on sys.path when run as a script)

from monai_jrs.apps import JRSRegistrar
from monai_jrs.data.testing import make_synthetic_xray
from monai_jrs.utils.conventions import affine_to_ddf, rotation_matrix, warp
from monai_jrs.utils.deps import MissingDependencyError, require


def _pairs(size: int, n: int, folder: Path) -> list[tuple[Path, Path, Path]]:
    out = []
    rng = np.random.default_rng(size)
    for i in range(n):
        image, mask = make_synthetic_xray((size, size), max_value=65535, seed=i)
        angle = np.deg2rad(rng.uniform(-5, 5))
        shift = rng.uniform(-0.04, 0.04, size=2) * size
        mat = torch.linalg.inv(rotation_matrix(torch.tensor([angle]), torch.from_numpy(shift[None]).float()))
        flt = warp(torch.from_numpy(image.astype(np.float32))[None, None], affine_to_ddf(mat, (size, size)))
        ref_p, mask_p, flt_p = folder / f"ref{size}_{i}.png", folder / f"mask{size}_{i}.png", folder / f"flt{size}_{i}.png"
        Image.fromarray(image).save(ref_p)
        Image.fromarray(mask * 255).save(mask_p)
        Image.fromarray(np.round(flt[0, 0].numpy()).astype(np.uint16)).save(flt_p)
        out.append((ref_p, mask_p, flt_p))
    return out


def _elastix(ref_p: Path, flt_p: Path) -> float:
    itk = require("itk", "the elastix column of the benchmark")
    fixed = itk.imread(str(ref_p), itk.F)
    moving = itk.imread(str(flt_p), itk.F)
    params = elastix_parameter_object()
    t = time.perf_counter()
    itk.elastix_registration_method(fixed, moving, parameter_object=params, log_to_console=False)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                        help="the default full-resolution dense refinement (--no-refine: the network alone)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        require("itk", "the elastix column of the benchmark")
        has_elastix = True
    except MissingDependencyError as e:
        has_elastix = False
        print(f"no elastix column: {e}")
    registrar = JRSRegistrar(refine=args.refine)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for size in args.sizes:
            pairs = _pairs(size, args.pairs, root)
            registrar.register(*pairs[0][:2], [pairs[0][2]], root / "warmup", progress=False)  # warm-up
            e2e = []
            for i, (ref_p, mask_p, flt_p) in enumerate(pairs):
                t = time.perf_counter()
                registrar.register(ref_p, mask_p, [flt_p], root / f"out{size}_{i}", progress=False)
                e2e.append(time.perf_counter() - t)
            net_times = {}
            for grid in sorted({registrar.size, size}):
                x = torch.rand(1, 3, grid, grid)
                x[:, 2] = (x[:, 2] > 0.5).float()
                with torch.no_grad():
                    registrar.network(x)
                    ts = []
                    for _ in range(3):
                        t = time.perf_counter()
                        registrar.network(x)
                        ts.append(time.perf_counter() - t)
                net_times[grid] = statistics.median(ts)
            elx = [_elastix(r, f) for r, _, f in pairs] if has_elastix else []
            rows.append((size, statistics.median(e2e), net_times, statistics.median(elx) if elx else None))
    print(f"\nCPU threads: {args.threads}; pairs per size: {args.pairs}; network grid of the bundle: {registrar.size}")
    print(f"{'size':>6} {'jrs end-to-end s':>17} {'net@256 s':>10} {'net@N s':>9} {'elastix s':>10} {'elastix/jrs':>12}")
    for size, e2e, nets, elx in rows:
        ratio = f"{elx / e2e:12.1f}" if elx else f"{'n/a':>12}"
        elx_s = f"{elx:10.2f}" if elx else f"{'n/a':>10}"
        print(f"{size:>6} {e2e:17.3f} {nets[registrar.size]:10.3f} {nets[size]:9.3f} {elx_s} {ratio}")


if __name__ == "__main__":
    main()
