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
"""``monai-jrs pacs``: register every follow-up of a patient in a DICOMweb PACS and store the results back.

For a patient (``--patient``) or one of their studies (``--study``), :func:`run_pacs`:

1. lists the patient's radiograph series (``DX``/``CR``) by QIDO-RS: their visits, without downloading them;
2. picks the reference visit by the rule of the MONAI Label app (:class:`~monai_jrs.monailabel.ReferenceFinder`:
   the earliest, latest or nearest visit with a label SEG; the automatic SEGs this command writes never count);
3. registers every other visit (or those of ``--study``) onto it with the bundle (:class:`~monai_jrs.apps.JRSRegistrar`,
   full-resolution refinement by default) and stores, as **new series in the follow-up's study** that reference the
   source images:

   - a DICOM SEG of the follow-up's lungs (``SeriesDescription`` :data:`~monai_jrs.data.dicomweb.AUTOMATIC_SEG_DESCRIPTION`,
     series number 901);
   - a Secondary Capture overlay: the follow-up with the lung contour (series 902, RGB, readable in any viewer);
   - a Secondary Capture **temporal subtraction**: registered follow-up minus reference after intensity matching,
     on the reference grid (series 903; mid grey = no change, bright = denser at follow-up).

Idempotent: every UID derives from the follow-up and reference instances, the reference label, the model weights and
the settings (:func:`~monai_jrs.data.dicomweb.derived_uid`); what the PACS already holds is not computed or stored
again, so a second run stores nothing. Nothing in the PACS is modified or deleted. ``--output`` also keeps the files
of ``monai-jrs register`` for each follow-up.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_jrs.data.dicomweb import (
    AUTOMATIC_SEG_DESCRIPTION,
    DicomWebStore,
    DicomWebVisitSource,
    PacsError,
    PacsNotFoundError,
    SeriesRecord,
    derived_uid,
)
from monai_jrs.utils.files import file_sha256

__all__ = ["run_pacs", "PacsRun", "FollowUpResult", "DERIVED_SERIES", "NoReferenceError"]

logger = logging.getLogger(__name__)

#: the derived series each follow-up gets: kind -> (SeriesNumber, SeriesDescription).
DERIVED_SERIES: dict[str, tuple[int, str]] = {
    "seg": (901, AUTOMATIC_SEG_DESCRIPTION),
    "overlay": (902, "JRS lung contours (overlay)"),
    "subtraction": (903, "JRS temporal subtraction"),
}
#: contour colour of the follow-up's lungs in the overlay (yellow).
OVERLAY_COLOUR = (255, 220, 0)


class NoReferenceError(ValueError):
    """The patient has no visit with a label SEG to register to (the message lists the visits)."""


@dataclass
class FollowUpResult:
    """What happened to one follow-up series.

    Attributes:
        series_uid, study_uid, date: the follow-up; ``status``: ``"stored"``, ``"present"`` (everything was in the
            PACS already), ``"failed"`` or ``"dry-run"``; ``reason``: why it failed.
        stored: SOPInstanceUIDs stored by this run, by kind; ``uids``: the derived (series, instance) UIDs by kind.
        metrics: registration metrics (Dice of the reference mask, lung fraction, timings).
    """

    series_uid: str
    study_uid: str
    date: str
    status: str = ""
    reason: str = ""
    stored: dict[str, str] = field(default_factory=dict)
    uids: dict[str, tuple[str, str]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class PacsRun:
    """The result of :func:`run_pacs`: the patient, the reference and one :class:`FollowUpResult` per follow-up."""

    patient_id: str
    reference_series: str
    reference_label: str
    followups: list[FollowUpResult]
    seconds: float = 0.0

    @property
    def failed(self) -> list[FollowUpResult]:
        return [f for f in self.followups if f.status == "failed"]

    def summary(self) -> str:
        """A table for the terminal."""
        lines = [f"patient {self.patient_id}: reference series {self.reference_series} (label SEG "
                 f"{self.reference_label}), {len(self.followups)} follow-up(s), {self.seconds:.1f} s"]
        for f in self.followups:
            extra = f.reason if f.status == "failed" else (
                f"stored {len(f.stored)} new instance(s)" if f.status == "stored" else "")
            q = f.metrics.get("quality") or {}
            qa = f", chest NCC {q['ncc_chest']:.3f}" if isinstance(q.get("ncc_chest"), float) else ""
            qa += " LOW QUALITY: check the pair" if q.get("low_quality") else ""
            qa += f", {f.metrics['register_s']:.2f} s" if "register_s" in f.metrics else ""
            lines.append(f"  {f.date or '?':>8}  {f.series_uid}  {f.status}{qa}  {extra}".rstrip())
        return "\n".join(lines)


def run_pacs(
    url: str,
    patient_id: str | None = None,
    study_uid: str | None = None,
    reference_choice: str = "earliest",
    output_dir: str | os.PathLike | None = None,
    bundle_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    size: int | None = None,
    refine: bool = True,
    dry_run: bool = False,
    store: DicomWebStore | None = None,
    progress: bool = True,
) -> PacsRun:
    """Register the follow-ups of a patient in a PACS to the reference visit and store the results back.

    Args:
        url: DICOMweb base URL (credentials from the environment or netrc, see :mod:`monai_jrs.data.dicomweb`).
        patient_id: PatientID: every visit but the reference is a follow-up.
        study_uid: a StudyInstanceUID: its radiograph series are the follow-ups (the patient is the study's).
        reference_choice: ``earliest`` (default), ``latest`` or ``nearest`` labelled visit
            (:data:`~monai_jrs.monailabel.REFERENCE_CHOICES`; ``nearest`` per follow-up).
        output_dir: also keep the ``monai-jrs register`` files under ``output_dir/<follow-up series UID>/``.
        bundle_dir, device, size, refine: as for ``monai-jrs register``.
        dry_run: find the reference and the follow-ups and report what would be stored, without registering.
        store: a ready :class:`DicomWebStore` (default: built from ``url``).
        progress: show a progress bar.

    Returns:
        the :class:`PacsRun`.

    Raises:
        ValueError: neither or both of ``patient_id`` and ``study_uid``; an unknown ``reference_choice``.
        PacsNotFoundError: no radiograph of that patient or study.
        NoReferenceError: no visit of the patient has a label SEG.
        PacsError: the PACS is unreachable or refuses the credentials.
    """
    from tqdm.auto import tqdm

    from monai_jrs.monailabel.reference import REFERENCE_CHOICES, ReferenceFinder

    if (patient_id is None) == (study_uid is None):
        raise ValueError(f"give exactly one of a patient or a study, got patient={patient_id!r}, study={study_uid!r}.")
    if reference_choice not in REFERENCE_CHOICES:
        raise ValueError(f"`reference_choice` must be one of {REFERENCE_CHOICES}, got {reference_choice!r}.")
    t0 = time.perf_counter()
    store = store if store is not None else DicomWebStore(url)
    source = DicomWebVisitSource(store)
    if study_uid is not None:
        in_study = store.image_series(study_uid=study_uid, fresh=True)
        if not in_study:
            raise PacsNotFoundError(f"the PACS {store.url} has no {'/'.join(store.modalities)} series in study "
                                    f"{study_uid!r}.")
        patients = sorted({r.patient_id or "" for r in in_study})
        if len(patients) != 1 or not patients[0]:
            raise ValueError(f"study {study_uid} must belong to one patient with a PatientID, got {patients}.")
        patient_id = patients[0]
    visits = store.image_series(patient_id=patient_id, fresh=True)
    if not visits:
        raise PacsNotFoundError(f"the PACS {store.url} has no {'/'.join(store.modalities)} series of patient "
                                f"{patient_id!r}.")
    candidates = in_study if study_uid is not None else visits
    finder = ReferenceFinder(choice=reference_choice)
    labelled = finder.labelled_visits(source, str(patient_id))
    if not labelled:
        raise NoReferenceError(
            f"no labelled reference for patient {patient_id!r}: expected a visit with a lung label SEG (not an "
            f"automatic one) among its {len(visits)} radiograph series, got none. Annotate one visit (MONAI Label, "
            "3D Slicer) first."
        )

    def reference_of(rec: SeriesRecord) -> Any:
        """The reference of a follow-up: the patient's for earliest/latest, the nearest other labelled visit."""
        requested = source.visit_of(rec.series_uid)
        pool = [v for v in labelled if v.image_id != rec.series_uid] if reference_choice == "nearest" else labelled
        if not pool:
            raise NoReferenceError(f"no other labelled visit than {rec.series_uid} for patient {patient_id!r}.")
        return finder.reference(source, finder.choose(requested, pool), requested, pool)

    first = reference_of(candidates[0])
    followups = [r for r in candidates if reference_choice == "nearest" or r.series_uid != first.image_id]
    registrar = None
    digest = ""
    results: list[FollowUpResult] = []
    work = tempfile.TemporaryDirectory(prefix="monai_jrs_pacs_")
    try:
        for rec in tqdm(followups, desc="pacs", unit="follow-up", disable=not progress):
            res = FollowUpResult(rec.series_uid, rec.study_uid, rec.study_date or rec.series_date)
            results.append(res)
            try:
                ref = first if reference_choice != "nearest" else reference_of(rec)
                if registrar is None and not dry_run:
                    from monai_jrs.apps.registration import JRSRegistrar

                    registrar = JRSRegistrar(bundle_dir, device=device, size=size, refine=refine, overlay=False)
                    digest = file_sha256(Path(registrar.bundle_dir) / "models" / "model.pt")[:16]
                res.uids = _derived_uids(store, rec, ref, digest, refine, size)
                present = {k for k, (_, sop) in res.uids.items() if store.has_instance(rec.study_uid, sop)}
                if present == set(res.uids):
                    res.status = "present"
                    continue
                if dry_run:
                    res.status = "dry-run"
                    res.reason = f"would store {sorted(set(res.uids) - present)}"
                    continue
                _register_and_store(store, registrar, rec, ref, res, present, Path(work.name),
                                    Path(output_dir) if output_dir is not None else None)
                res.status = "stored"
            except PacsError as e:
                if isinstance(e, PacsNotFoundError):
                    res.status, res.reason = "failed", str(e)
                    continue
                raise  # the PACS is down or refuses us: no point in trying the next follow-up
            except (ValueError, OSError) as e:  # an unreadable instance: report it, go on with the others
                logger.warning("follow-up %s failed: %s", rec.series_uid, e)
                res.status, res.reason = "failed", f"{type(e).__name__}: {e}"
    finally:
        work.cleanup()
    return PacsRun(str(patient_id), first.image_id, first.label_id, results, time.perf_counter() - t0)


def _derived_uids(store: DicomWebStore, rec: SeriesRecord, ref: Any, digest: str, refine: bool,
                  size: int | None) -> dict[str, tuple[str, str]]:
    """(SeriesInstanceUID, SOPInstanceUID) of each derived object, from everything that determines its content."""
    from monai_jrs import __version__

    flt_sop = store.instances(rec.study_uid, rec.series_uid)
    if not flt_sop:
        raise PacsNotFoundError(f"series {rec.series_uid} has no instance.")
    ref_rec = store.record(ref.image_id)
    ref_sop = store.instances(ref_rec.study_uid, ref_rec.series_uid)[0]["sop_uid"]
    key = ("monai_jrs pacs", flt_sop[0]["sop_uid"], ref_sop, ref.label_id, digest, bool(refine), size, __version__)
    return {kind: (derived_uid(*key, kind, "series"), derived_uid(*key, kind, "instance")) for kind in DERIVED_SERIES}


def _register_and_store(store: DicomWebStore, registrar: Any, rec: SeriesRecord, ref: Any, res: FollowUpResult,
                        present: set[str], work: Path, output_dir: Path | None) -> None:
    """Register one follow-up, write its derived objects and store the missing ones."""
    import pydicom

    from monai_jrs.data import writers
    from monai_jrs.data.dicom import write_dicom_seg
    from monai_jrs.data.io import load_mask, load_xray
    from monai_jrs.metrics import compute_dice_score
    from monai_jrs.transforms.subtraction import subtraction_of

    flt_path = store.download(rec.study_uid, rec.series_uid, folder="images")
    t = time.perf_counter()
    ref_img, ref_meta = load_xray(ref.image_uri)
    ref_mask, _ = load_mask(ref.label_uri, reference_meta=ref_meta)
    flt_img, flt_meta = load_xray(flt_path)
    with torch.no_grad():
        prepared = registrar.inferer.prepare_reference(ref_img, ref_mask, spacing=ref_meta.get("spacing"))
        result = registrar.inferer(*prepared, flt_img, registrar.network, floating_spacing=flt_meta.get("spacing"))
    flt_mask = result.floating_mask[0, 0].numpy().astype(np.uint8)
    diff, display, _ = subtraction_of(result, ref_img, ref_mask, tuple(flt_img.shape[-2:]))
    register_s = time.perf_counter() - t
    if output_dir is not None:
        writers.save_registration_result(result, flt_path, output_dir / rec.series_uid, ref_img, ref_mask, ref_meta,
                                         flt_img, flt_meta, overwrite=False)
    sources = [pydicom.dcmread(flt_path, stop_before_pixels=True), pydicom.dcmread(ref.image_uri, stop_before_pixels=True)]
    files: dict[str, Path] = {}
    (seg_series, seg_sop), n_seg = res.uids["seg"], DERIVED_SERIES["seg"]
    if "seg" not in present:
        files["seg"] = write_dicom_seg(flt_mask, flt_path, work / f"{seg_sop}.dcm", series_number=n_seg[0],
                                       series_description=n_seg[1], series_instance_uid=seg_series,
                                       sop_instance_uid=seg_sop)
    if "overlay" not in present:
        rgb = writers.contour_overlay(flt_img[0].clamp(0, 1).numpy(), [(flt_mask, OVERLAY_COLOUR)])
        (series, sop), (number, text) = res.uids["overlay"], DERIVED_SERIES["overlay"]
        files["overlay"] = writers.write_secondary_capture(
            rgb, sources[:1], work / f"{sop}.dcm", series_instance_uid=series, sop_instance_uid=sop,
            series_number=number, series_description=text, photometric="RGB", grid_source=0,
            derivation_description="lung contour of the JRS registration to the reference visit")
    if "subtraction" not in present:
        (series, sop), (number, text) = res.uids["subtraction"], DERIVED_SERIES["subtraction"]
        files["subtraction"] = writers.write_secondary_capture(
            display, sources, work / f"{sop}.dcm", series_instance_uid=series, sop_instance_uid=sop,
            series_number=number, series_description=f"{text} vs {ref.visit.time.date() if ref.visit.time else 'ref'}",
            photometric="MONOCHROME2", grid_source=1,
            derivation_description="registered follow-up minus reference after intensity matching (reference grid)")
    datasets = [pydicom.dcmread(p) for p in files.values()]
    stored = store.store(datasets) if datasets else []
    res.stored = dict(zip(files, stored))
    res.metrics = {
        "dice_reference_vs_registered_mask": float(compute_dice_score(result.registered_mask[0][None],
                                                                      ref_mask[None])[0]),
        "lung_fraction": float(flt_mask.mean()),
        "register_s": round(register_s, 3),
        "quality": dict(result.quality),
    }
    logger.info("follow-up %s: stored %s", rec.series_uid, sorted(res.stored))


def main_pacs(args: Any) -> int:
    """The ``monai-jrs pacs`` command (arguments from :func:`monai_jrs.apps.cli.build_parser`)."""
    import sys

    try:
        run = run_pacs(args.url, patient_id=args.patient, study_uid=args.study, reference_choice=args.reference,
                       output_dir=args.output, bundle_dir=args.bundle, device=args.device, size=args.size,
                       refine=args.refine, dry_run=args.dry_run, progress=not args.no_progress)
    except (PacsError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(run.summary())
    return 1 if run.failed else 0

