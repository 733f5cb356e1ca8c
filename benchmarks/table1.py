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
"""Table 1 of Mahapatra et al. on the embedded dataset's held-out patients, against baselines, in one run.

Pairs: every test image of the embedded dataset (``datalist_images.json``, section ``test``) deformed ``--repeats``
times per protocol with :class:`~monai_jrs.transforms.RandSyntheticDeformationd` (``paper``: rotations of 20-180
degrees, shifts of 25-40 px, scaling and elastic deformation; ``followup``: up to 5 degrees, 10 px and a milder
elastic field), then given follow-up appearance changes (:class:`~monai_jrs.transforms.RandFollowUpAppearanced`,
probability 0.8), the bundle's evaluation recipe with a fixed seed. Normal and diseased images are reported apart.

Columns (methods, all on the same pairs, same CPU threads, same run): ``before`` (no registration), ``JRS-Net``
(the shipped ``bundle/models/model.pt``), ``JRS-Net+IO`` (the same with test-time refinement, see
:class:`monai_jrs.networks.blocks.InstanceOptimization`), ``monai-jrs`` (the default mode of ``monai-jrs register``:
the network, then :class:`monai_jrs.networks.blocks.DenseRefinement` over the whole image), ``JRS-NoSeg`` (the ablation without the segmentation loss,
same training budget), ``VoxelMorph`` (trained on both protocols, as JRS), ``VoxelMorph-FU`` (trained on the
follow-up protocol only) and ``UNet`` (see ``benchmarks/baselines.py``, same budget) and ``elastix``
(affine + multi-resolution B-spline with mutual information, the paper's settings; ``pip install itk-elastix``).

Metrics per pair (:func:`monai_jrs.metrics.evaluate_registration`; distances in pixels of the 256 grid, 1.70 mm):

- ``dice``/``hd95``: the floating lung mask warped by the recovered field vs the reference lung mask;
- ``tre_mean``/``tre_p95``: |recovered - applied field| inside the reference lung mask, at pixels whose true
  correspondence lies inside the floating image;
- ``tre_fov_mean``: the same over the whole field of view (every pixel whose true correspondence lies inside the
  floating image), at the full resolution of the pairs;
- ``folding_pct``: pixels with a non-positive Jacobian determinant, in percent of the image;
- ``seg_dice``: the method's lung mask of the floating image vs its ground truth (segmentation use);
- ``seconds``: wall time of the method's call on the pair (tensors in memory), after one warm-up pair.

Writes ``table1.md``, ``table1.csv`` (one row per pair and method) and ``table1_examples.png`` to ``--output``::

    python benchmarks/table1.py --dataset_dir DIR --output docs/table1
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from methods import (  # noqa: E402
    BUNDLE,
    ElastixMethod,
    Identity,
    JRSMethod,
    UNetMethod,
    VoxelMorphMethod,
)

from monai_jrs.metrics import evaluate_registration  # noqa: E402
from monai_jrs.metrics.segmentation import compute_dice_score  # noqa: E402
from monai_jrs.utils.conventions import warp  # noqa: E402

logger = logging.getLogger(__name__)

PROTOCOLS = ("paper", "followup")
GROUPS = ("normal", "diseased")
#: (csv key, Markdown header, format, higher is better)
COLUMNS = (
    ("dice", "Dice %", "{:.1f}", True),
    ("hd95", "HD95 px", "{:.2f}", False),
    ("tre_mean", "TRE mean px", "{:.2f}", False),
    ("tre_p95", "TRE p95 px", "{:.2f}", False),
    ("tre_fov_mean", "TRE whole field px", "{:.2f}", False),
    ("folding_pct", "folding %", "{:.3f}", False),
    ("seg_dice", "floating-mask Dice %", "{:.1f}", True),
    ("seconds", "s / pair", "{:.3f}", False),
)


def make_pairs(dataset_dir: str, protocol: str, repeats: int, seed: int, limit: int | None = None,
               section: str = "test", image_size: int | None = None) -> list[dict]:
    """Deformed pairs of one protocol from a datalist section: reference, floating, masks, ddf_applied, label, ids."""
    from monai.bundle import ConfigParser

    from monai_jrs.data.datalist import load_jrs_datalist
    from monai_jrs.data.dataset import make_jrs_dataset, materialize
    from monai_jrs.transforms import RandFollowUpAppearanced, RandSyntheticDeformationd

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser["dataset_dir"] = str(dataset_dir)
    if image_size is not None:
        parser["image_size"] = int(image_size)
    items = load_jrs_datalist(str(Path(dataset_dir) / "datalist_images.json"), section)
    items = (items[:limit] if limit else items) * repeats
    deformation = RandSyntheticDeformationd(protocol=protocol, on_failure="keep_last")
    ds = make_jrs_dataset(items, load_transform=parser.get_parsed_content("load"), deformation=deformation,
                          transform=[RandFollowUpAppearanced(keys="floating", prob=0.8)], seed=seed)
    pairs = []
    for i, d in enumerate(materialize(ds)):
        pairs.append({
            "pair": i, "protocol": protocol, "label": d["label"], "patient_id": d["patient_id"], "visit": d["visit"],
            **{k: torch.as_tensor(d[k]).float()[None] for k in
               ("reference", "reference_mask", "floating", "floating_mask", "ddf_applied")},
        })
    return pairs


def score(pair: dict, out: dict) -> dict[str, float]:
    """Metrics of one method's output on one pair (see the module docstring)."""
    row: dict[str, float] = {}
    ref_mask = pair["reference_mask"]
    if "ddf" in out:
        ddf = out["ddf"].float()
        registered_mask = (warp(pair["floating_mask"], ddf, padding_mode="zeros") > 0.5).float()
        m = evaluate_registration(ddf, pair["ddf_applied"], mask_pred=registered_mask, mask_true=ref_mask,
                                  lung_mask=ref_mask, exclude_outside_fov=True)
        row.update(dice=100 * m["dice"], hd95=m["hd95"], tre_mean=m["tre_lung_fov_mean"],
                   tre_p95=m["tre_lung_fov_p95"], tre_fov_mean=m["tre_fov_mean"], folding_pct=m["folding_pct"])
    row["seg_dice"] = 100 * compute_dice_score(out["floating_mask"], pair["floating_mask"]).item()
    return row


def _failed_output(pair: dict) -> dict:
    """What a user gets from a registration that raised: no correction (zero field, the reference mask carried)."""
    ref = pair["reference"]
    return {"ddf": torch.zeros(1, 2, *ref.shape[2:]), "floating_mask": pair["reference_mask"]}


def run(methods: list, pairs: list[dict]) -> list[dict]:
    """Every method on every pair; one result row per (pair, method), with the timing.

    A method that raises on a pair (e.g. elastix's internal error on tiny images) is scored as no correction and
    its row has ``failed = 1``, with a logged warning; the benchmark goes on.
    """
    rows = []
    for method in methods:
        p0 = pairs[0]
        try:
            method(p0["reference"], p0["floating"], p0["reference_mask"])  # warm-up (lazy init, allocator)
        except Exception as e:  # noqa: BLE001 -- a failing baseline must not end the benchmark
            logger.warning("%s failed on the warm-up pair: %s", method.name, str(e).splitlines()[0])
        for pair in pairs:
            t = time.perf_counter()
            failed = 0
            try:
                out = method(pair["reference"], pair["floating"], pair["reference_mask"])
            except Exception as e:  # noqa: BLE001
                logger.warning("%s failed on pair %d (%s): %s", method.name, pair["pair"], pair["protocol"],
                               str(e).splitlines()[0])
                out, failed = _failed_output(pair), 1
            seconds = time.perf_counter() - t
            rows.append({"method": method.name, "protocol": pair["protocol"], "label": pair["label"],
                         "pair": pair["pair"], "patient_id": pair["patient_id"], "visit": pair["visit"],
                         **score(pair, out), "seconds": seconds, "failed": failed})
            pair.setdefault("outputs", {})[method.name] = out
        logger.info("%s on %d %s pairs done", method.name, len(pairs), pairs[0]["protocol"])
    return rows


def summarize(rows: list[dict], method_names: list[str]) -> str:
    """Markdown tables: one per protocol and group (plus all pairs), methods as rows, best value in bold."""
    groups = defaultdict(list)
    for r in rows:
        for g in (r["label"], "all"):
            groups[(r["protocol"], g, r["method"])].append(r)
    lines = []
    for protocol in sorted({r["protocol"] for r in rows}, key=PROTOCOLS.index):
        for group in (*GROUPS, "all"):
            rs = {m: groups.get((protocol, group, m), []) for m in method_names}
            n = len(next((v for v in rs.values() if v), []))
            if not n:
                continue
            means = {m: {k: _mean([r.get(k, math.nan) for r in v]) for k, *_ in COLUMNS} for m, v in rs.items() if v}
            lines += [f"### {protocol} protocol, {group} ({n} pairs)", "",
                      "| method | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |",
                      "|---|" + "---|" * len(COLUMNS)]
            for m, vals in means.items():
                cells = []
                for key, _, fmt, higher in COLUMNS:
                    v = vals[key]
                    cands = [means[o][key] for o in means if o != "before" and not math.isnan(means[o][key])]
                    best = (max if higher else min)(cands) if cands and m != "before" else None
                    txt = "–" if math.isnan(v) else fmt.format(v)
                    cells.append(f"**{txt}**" if best is not None and not math.isnan(v) and v == best else txt)
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.fmean(vals) if vals else math.nan


def write_examples(pairs_by_protocol: dict[str, list[dict]], method_names: list[str], path: Path) -> None:
    """A PNG grid: per example pair, reference | floating | each method's registered image with lung contours.

    One row per protocol and group (the first pair of each). Contours: red = reference lung mask (on the reference and
    registered tiles) or floating lung mask (on the floating tile); green = floating mask warped by the method's field.
    A header names the columns, and each row starts with its protocol and group.
    """
    from PIL import Image, ImageDraw

    from monai_jrs.visualize.overlay import make_grid, overlay_contours

    rows, row_names, columns = [], [], ["reference", "floating"]
    for protocol, pairs in pairs_by_protocol.items():
        for label in GROUPS:
            pair = next((p for p in pairs if p["label"] == label and "outputs" in p), None)
            if pair is None:
                continue
            ref, ref_mask = pair["reference"][0, 0], pair["reference_mask"][0, 0]
            tiles = [overlay_contours(ref, [ref_mask]), overlay_contours(pair["floating"][0, 0], [pair["floating_mask"][0, 0]])]
            for m in method_names:
                out = pair["outputs"].get(m, {})
                if "ddf" not in out:
                    continue
                if m not in columns:
                    columns.append(m)
                reg = warp(pair["floating"], out["ddf"])[0, 0]
                reg_mask = (warp(pair["floating_mask"], out["ddf"], padding_mode="zeros") > 0.5)[0, 0].float()
                tiles.append(overlay_contours(reg, [ref_mask, reg_mask]))
            rows.append(tiles)
            row_names.append(f"{protocol}, {label}")
    pad, header = 2, 16
    grid = make_grid(rows, pad=pad)
    tile_h, tile_w = rows[0][0].shape[:2]
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + header), "white")
    canvas.paste(Image.fromarray(grid), (0, header))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(columns):
        draw.text((pad + c * (tile_w + pad) + 4, 2), name, fill="black")
    for r, name in enumerate(row_names):
        draw.text((pad + 4, header + pad + r * (tile_h + pad) + 4), name, fill="yellow")
    canvas.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset_dir", required=True, help="embedded dataset (python -m monai_jrs.data.embedded)")
    ap.add_argument("--output", default="docs/table1")
    ap.add_argument("--weights", default=str(Path(__file__).resolve().parent / "weights"),
                    help="folder with noseg.pt, voxelmorph.pt, unet.pt (benchmarks/baselines.py)")
    ap.add_argument("--jrs_weights", default=str(BUNDLE / "models" / "model.pt"))
    ap.add_argument("--repeats", type=int, default=2, help="deformations per test image and protocol")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N test images (smoke runs)")
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    ap.add_argument("--methods", nargs="+", default=None, help="subset of method names")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for every method")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--image_size", type=int, default=None, help="network grid (default: the bundle's, 256)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    weights = Path(args.weights)

    from monai_jrs.networks.blocks import DenseRefinement, InstanceOptimization

    candidates = [
        ("before", lambda: Identity()),
        ("JRS-Net", lambda: JRSMethod(args.jrs_weights)),
        ("JRS-Net+IO", lambda: JRSMethod(args.jrs_weights, name="JRS-Net+IO", refine=InstanceOptimization())),
        ("monai-jrs", lambda: JRSMethod(args.jrs_weights, name="monai-jrs", dense=DenseRefinement())),
        ("JRS-NoSeg", lambda: JRSMethod(weights / "noseg.pt", name="JRS-NoSeg", use_seg_head=False)),
        ("VoxelMorph", lambda: VoxelMorphMethod(weights / "voxelmorph.pt")),
        ("VoxelMorph-FU", lambda: VoxelMorphMethod(weights / "voxelmorph_followup.pt", name="VoxelMorph-FU")),
        ("elastix", lambda: ElastixMethod(threads=args.threads)),
        ("UNet", lambda: UNetMethod(weights / "unet.pt")),
    ]
    methods = []
    for name, make in candidates:
        if args.methods and name not in args.methods:
            continue
        try:
            methods.append(make())
        except (FileNotFoundError, ImportError) as e:
            logger.warning("skipping %s: %s", name, e)
    names = [m.name for m in methods]
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, pairs_by_protocol = [], {}
    for k, protocol in enumerate(args.protocols):
        pairs = make_pairs(args.dataset_dir, protocol, args.repeats, args.seed + k, args.limit,
                           image_size=args.image_size)
        pairs_by_protocol[protocol] = pairs
        rows += run(methods, pairs)
    keys = ["method", "protocol", "label", "pair", "patient_id", "visit"] + [k for k, *_ in COLUMNS]
    with open(out_dir / "table1.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    header = (f"Generated by `python benchmarks/table1.py --dataset_dir DIR --output {args.output} "
              f"--repeats {args.repeats} --threads {args.threads} --seed {args.seed}`; torch {torch.__version__}, "
              f"{args.threads} CPU threads. Distances in pixels of the 256 grid (1.70 mm per pixel). "
              "Bold: best method (the 'before' row excluded).\n\n")
    (out_dir / "table1.md").write_text(header + summarize(rows, names))
    write_examples(pairs_by_protocol, names, out_dir / "table1_examples.png")
    print(header + summarize(rows, names))


if __name__ == "__main__":
    main()
