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
"""Find the annotated reference visit of a patient in a MONAI Label datastore.

A *visit* is one image of the datastore with a patient and, when known, an acquisition time and a visit number.
Visits come from the DICOM header of the image file (:class:`DicomVisitReader`) or, for non-DICOM studies
(PNG, NIfTI), from a JSON mapping file (:class:`JsonVisitMapping`); :class:`VisitResolver` tries the mapping first
and the DICOM header second. :class:`ReferenceFinder` then picks, among the **other** visits of the same patient
that have a saved label (``datastore.get_label_by_image_id(image_id, "final")``), the reference by a configurable
rule (:data:`REFERENCE_CHOICES`):

- ``"earliest"`` (default): the earliest labelled visit (clinicians annotate the first visit).
- ``"latest"``: the most recent labelled visit (the freshest annotation).
- ``"nearest"``: the labelled visit closest in time to the requested image (ties: the earlier one).

Ordering: visits are sorted by (time, visit number, image id); a visit without time sorts after every dated one
(and is used only when no dated labelled visit exists, with a warning), equal keys are broken by image id, also with
a warning. Only the datastore API is used (``list_images``, ``get_image_uri``, ``get_image_info``,
``get_label_by_image_id``, ``get_label_uri``), so the rule works with any MONAI Label datastore whose image URIs
are local files. A datastore may offer ``visit_of(image_id)``, ``has_image(image_id)`` and
``patient_images(patient_id)`` to avoid listing and downloading every image: the DICOMweb datastore
(:mod:`monai_jrs.monailabel.dicomweb`) answers them from QIDO-RS, so only the reference and the requested image are
ever fetched.

JSON mapping format (image ids are the datastore ids, i.e. file names without extension for the local datastore)::

    {
      "p1_visit0": {"patient_id": "P1", "date": "2023-01-05"},
      "p1_visit1": {"patient_id": "P1", "date": "2023-07-30T14:05:00"},
      "p2_a":      {"patient_id": "P2", "visit": 1},
      "p2_b":      {"patient_id": "P2", "visit": 2}
    }

``date`` accepts ISO 8601 dates/datetimes and DICOM ``YYYYMMDD[HHMMSS]``; ``visit`` is an integer (used when dates
are unknown or equal). The file is re-read when it changes, so it can be edited while the server runs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "REFERENCE_CHOICES",
    "DICOM_DATE_TAGS",
    "Visit",
    "Reference",
    "ReferenceNotFoundError",
    "DicomVisitReader",
    "JsonVisitMapping",
    "VisitResolver",
    "ReferenceFinder",
    "parse_visit_time",
]

logger = logging.getLogger(__name__)

#: the rules that pick the reference among the labelled visits of a patient.
REFERENCE_CHOICES: tuple[str, ...] = ("earliest", "latest", "nearest")
#: DICOM date attributes tried in order for the visit time, each paired with its time attribute.
DICOM_DATE_TAGS: tuple[str, ...] = ("StudyDate", "AcquisitionDate", "ContentDate", "SeriesDate")
_TIME_TAG = {"StudyDate": "StudyTime", "AcquisitionDate": "AcquisitionTime", "ContentDate": "ContentTime",
             "SeriesDate": "SeriesTime"}


class ReferenceNotFoundError(ValueError):
    """No labelled reference visit exists for the requested image (the message says why)."""


@dataclass(frozen=True)
class Visit:
    """One datastore image as a visit of a patient.

    Attributes:
        image_id: datastore image id.
        patient_id: patient identifier, None when unknown.
        time: acquisition (or study) time, None when unknown.
        number: visit number (JSON mapping only), None when unknown.
        source: where the visit came from: ``"json"``, ``"dicom"`` or ``"none"``.
    """

    image_id: str
    patient_id: str | None
    time: datetime | None = None
    number: int | None = None
    source: str = "none"

    def sort_key(self) -> tuple:
        """(undated last, time, unnumbered last, number, image id)."""
        return (self.time is None, self.time or datetime.min, self.number is None, self.number or 0, self.image_id)

    def describe(self) -> str:
        when = self.time.isoformat(sep=" ") if self.time is not None else "no date"
        num = f", visit {self.number}" if self.number is not None else ""
        return f"{self.image_id!r} ({when}{num})"


@dataclass(frozen=True)
class Reference:
    """The chosen reference of a requested image.

    Attributes:
        image_id: reference image id; ``image_uri``: its local file.
        label_id: id of its saved label; ``label_uri``: the label file.
        visit: the reference visit; ``requested``: the visit of the requested image.
        candidates: every labelled visit of the patient that was considered, sorted.
    """

    image_id: str
    image_uri: str
    label_id: str
    label_uri: str
    visit: Visit
    requested: Visit
    candidates: tuple[Visit, ...]


class _Datastore(Protocol):  # the part of monailabel.interfaces.datastore.Datastore used here
    def list_images(self) -> list[str]: ...

    def get_image_uri(self, image_id: str) -> str: ...

    def get_image_info(self, image_id: str) -> dict[str, Any]: ...

    def get_label_by_image_id(self, image_id: str, tag: str) -> str: ...

    def get_label_uri(self, label_id: str, label_tag: str) -> str: ...


def parse_visit_time(date: Any, time: Any = None) -> datetime | None:
    """Parse a visit date (and optional time) into a :class:`datetime`.

    Args:
        date: ISO 8601 date or datetime (``"2024-01-31"``, ``"2024-01-31T10:15:00"``), DICOM DA ``"20240131"`` or
            DICOM DT ``"20240131101500[.ffffff]"``; None or ``""`` means unknown.
        time: DICOM TM ``"HHMMSS[.ffffff]"`` (or ``"HH:MM:SS"``) combined with a date-only ``date``.

    Returns:
        the datetime (naive), or None when ``date`` is empty.

    Raises:
        ValueError: when ``date`` or ``time`` is not a valid date/time (the message shows the value).

    Example:
        >>> parse_visit_time("20240131", "101500")
        datetime.datetime(2024, 1, 31, 10, 15)
        >>> parse_visit_time("2024-01-31")
        datetime.datetime(2024, 1, 31, 0, 0)
    """
    if date is None or str(date).strip() == "":
        return None
    s = str(date).strip()
    try:
        if s.isdigit() and len(s) == 8:
            out = datetime.strptime(s, "%Y%m%d")
        elif len(s) >= 14 and s[:14].isdigit():
            out = datetime.strptime(s[:14], "%Y%m%d%H%M%S")
            if len(s) > 15 and s[14] == ".":
                out = out.replace(microsecond=int((s[15:21] + "000000")[:6]))
            return out
        else:
            out = datetime.fromisoformat(s)
            if out.tzinfo is not None:
                out = out.replace(tzinfo=None)
            if "T" in s or " " in s:
                return out
    except ValueError:
        raise ValueError(f"visit date must be ISO 8601 or DICOM YYYYMMDD[HHMMSS], got {date!r}.") from None
    if time is None or str(time).strip() == "":
        return out
    t = str(time).strip().replace(":", "")
    frac = ""
    if "." in t:
        t, frac = t.split(".", 1)
    if not t.isdigit() or len(t) not in (2, 4, 6):
        raise ValueError(f"visit time must be DICOM HHMMSS[.ffffff], got {time!r}.")
    t = t.ljust(6, "0")
    try:
        return out.replace(hour=int(t[:2]), minute=int(t[2:4]), second=int(t[4:6]),
                           microsecond=int((frac + "000000")[:6]) if frac.isdigit() else 0)
    except ValueError:
        raise ValueError(f"visit time must be DICOM HHMMSS[.ffffff], got {time!r}.") from None


class DicomVisitReader:
    """Visits from DICOM headers: PatientID and the first present date attribute (with its time).

    Headers are read without pixel data and cached per (file, size, modification time). Files that are not DICOM
    give ``None`` (the resolver then reports the visit as unknown).

    Args:
        date_tags: date attributes tried in order, each combined with its time attribute (StudyDate + StudyTime,
            AcquisitionDate + AcquisitionTime, ContentDate + ContentTime, SeriesDate + SeriesTime).

    Raises:
        ValueError: for a date tag outside :data:`DICOM_DATE_TAGS`.
    """

    def __init__(self, date_tags: Sequence[str] = DICOM_DATE_TAGS) -> None:
        bad = [t for t in date_tags if t not in _TIME_TAG]
        if bad or not date_tags:
            raise ValueError(f"`date_tags` must be a non-empty subset of {DICOM_DATE_TAGS}, got {tuple(date_tags)}.")
        self.date_tags = tuple(date_tags)
        self._cache: dict[tuple[str, int, int], tuple[str | None, datetime | None] | None] = {}
        self._lock = threading.Lock()

    def __call__(self, image_id: str, path: str | os.PathLike) -> Visit | None:
        """The visit of ``image_id`` stored at ``path``, or None when ``path`` is not a DICOM file."""
        p = Path(path)
        if not p.is_file():
            return None
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._read(p)
            found = self._cache[key]
        if found is None:
            return None
        return Visit(image_id, found[0], found[1], None, "dicom")

    def _read(self, p: Path) -> tuple[str | None, datetime | None] | None:
        import pydicom

        from monai_jrs.data.dicom import is_dicom_file

        if not is_dicom_file(p):
            return None
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        patient = str(ds.get("PatientID", "") or "").strip() or None
        when = None
        for tag in self.date_tags:
            value = ds.get(tag, None)
            if value:
                try:
                    when = parse_visit_time(value, ds.get(_TIME_TAG[tag], None))
                except ValueError as e:
                    logger.warning("%s: ignoring %s: %s", p, tag, e)
                    continue
                break
        return patient, when


class JsonVisitMapping:
    """Visits from a JSON file mapping image ids to ``{"patient_id", "date", "visit"}`` (see the module docstring).

    Args:
        path: the JSON file. It is re-read whenever its modification time changes.

    Raises:
        FileNotFoundError: the file does not exist (on first use).
        ValueError: malformed content (the message names the image id and the field).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._visits: dict[str, Visit] = {}
        self._lock = threading.Lock()

    def __call__(self, image_id: str) -> Visit | None:
        """The visit of ``image_id``, or None when the mapping does not list it."""
        return self.visits().get(image_id)

    def visits(self) -> dict[str, Visit]:
        """All visits of the mapping, by image id (re-read if the file changed)."""
        if not self.path.is_file():
            raise FileNotFoundError(f"visit mapping {self.path} does not exist; expected a JSON file "
                                    '{"<image id>": {"patient_id": ..., "date": ..., "visit": ...}}.')
        st = self.path.stat()
        with self._lock:
            if self._stamp != (st.st_size, st.st_mtime_ns):
                self._visits = self._parse(json.loads(self.path.read_text(encoding="utf-8")))
                self._stamp = (st.st_size, st.st_mtime_ns)
            return self._visits

    def _parse(self, content: Any) -> dict[str, Visit]:
        if not isinstance(content, dict):
            raise ValueError(f"{self.path}: expected a JSON object mapping image ids to visits, got "
                             f"{type(content).__name__}.")
        out = {}
        for image_id, entry in content.items():
            if not isinstance(entry, dict):
                raise ValueError(f"{self.path}: entry {image_id!r} must be an object with 'patient_id', got {entry!r}.")
            patient = entry.get("patient_id")
            if patient is None or str(patient).strip() == "":
                raise ValueError(f"{self.path}: entry {image_id!r} must have a non-empty 'patient_id', "
                                 f"got {patient!r}.")
            number = entry.get("visit")
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
                raise ValueError(f"{self.path}: entry {image_id!r}: 'visit' must be an integer, got {number!r}.")
            try:
                when = parse_visit_time(entry.get("date"), entry.get("time"))
            except ValueError as e:
                raise ValueError(f"{self.path}: entry {image_id!r}: {e}") from None
            out[str(image_id)] = Visit(str(image_id), str(patient), when, number, "json")
        return out


class VisitResolver:
    """The visit of a datastore image: the JSON mapping when it lists the image, else the DICOM header.

    Args:
        rule: {``"auto"``, ``"dicom"``, ``"json"``}: both sources (mapping first), DICOM headers only, or the mapping
            only.
        mapping: the JSON mapping file (required for ``"json"``; optional for ``"auto"``).
        date_tags: DICOM date attributes in order of preference (:class:`DicomVisitReader`).

    Raises:
        ValueError: for an unknown ``rule`` or ``rule="json"`` without ``mapping``.
    """

    RULES = ("auto", "dicom", "json")

    def __init__(
        self,
        rule: str = "auto",
        mapping: str | os.PathLike | None = None,
        date_tags: Sequence[str] = DICOM_DATE_TAGS,
    ) -> None:
        if rule not in self.RULES:
            raise ValueError(f"`rule` must be one of {self.RULES}, got {rule!r}.")
        if rule == "json" and mapping is None:
            raise ValueError("`rule='json'` needs a `mapping` file, got None.")
        self.rule = rule
        self.mapping = JsonVisitMapping(mapping) if mapping is not None and rule != "dicom" else None
        self.dicom = DicomVisitReader(date_tags) if rule != "json" else None

    def __call__(self, datastore: _Datastore, image_id: str) -> Visit:
        """The visit of ``image_id`` (``patient_id`` None when no source knows the image).

        A datastore that knows visits itself (a ``visit_of(image_id) -> Visit | None`` method, like the DICOMweb
        datastore, from QIDO-RS) is asked before any image is fetched for its DICOM header.
        """
        if self.mapping is not None:
            visit = self.mapping(image_id)
            if visit is not None:
                return visit
        visit_of = getattr(datastore, "visit_of", None)
        if self.dicom is not None and callable(visit_of):
            visit = visit_of(image_id)
            if visit is not None:
                return visit
        if self.dicom is not None:
            visit = self.dicom(image_id, datastore.get_image_uri(image_id))
            if visit is not None:
                return visit
        return Visit(image_id, None)


class ReferenceFinder:
    """Pick the labelled reference visit of the requested image's patient from a MONAI Label datastore.

    Args:
        resolver: gives the visit of each image (:class:`VisitResolver`).
        choice: one of :data:`REFERENCE_CHOICES` (see the module docstring).
        label_tag: datastore label tag of the annotations to use (MONAI Label's ``"final"``: the saved labels).

    Raises:
        ValueError: for an unknown ``choice``.

    Example::

        finder = ReferenceFinder(VisitResolver("auto", mapping="studies/visits.json"))
        ref = finder(app.datastore(), "p1_visit2")   # Reference(image_id="p1_visit0", label_uri=..., ...)
    """

    def __init__(
        self, resolver: VisitResolver | None = None, choice: str = "earliest", label_tag: str = "final"
    ) -> None:
        if choice not in REFERENCE_CHOICES:
            raise ValueError(f"`choice` must be one of {REFERENCE_CHOICES}, got {choice!r}.")
        self.resolver = resolver if resolver is not None else VisitResolver()
        self.choice = choice
        self.label_tag = label_tag

    def __call__(self, datastore: _Datastore, image_id: str) -> Reference:
        """The reference of ``image_id``.

        Raises:
            ReferenceNotFoundError: the image is unknown to the datastore, its patient is unknown, or no other
                visit of its patient has a saved label (the message lists what was found).
        """
        has_image = getattr(datastore, "has_image", None)
        if callable(has_image):  # a datastore that can look one image up (DICOMweb: QIDO-RS) need not list them all
            if not has_image(image_id):
                raise ReferenceNotFoundError(f"image {image_id!r} is not in the datastore.")
        else:
            images = list(datastore.list_images())
            if image_id not in images:
                raise ReferenceNotFoundError(f"image {image_id!r} is not in the datastore ({len(images)} images).")
        requested = self.resolver(datastore, image_id)
        if requested.patient_id is None:
            raise ReferenceNotFoundError(
                f"the patient of image {image_id!r} is unknown: expected a DICOM file with PatientID or an entry in "
                "the visit mapping (--conf reference_mapping <file.json>), got neither."
            )
        labelled = self.labelled_visits(datastore, requested.patient_id, exclude=(image_id,))
        if not labelled:
            others = [v for v in self.patient_visits(datastore, requested.patient_id) if v.image_id != image_id]
            names = ", ".join(v.image_id for v in sorted(others, key=Visit.sort_key)) or "none"
            raise ReferenceNotFoundError(
                f"no labelled reference for image {image_id!r}: expected another visit of patient "
                f"{requested.patient_id!r} with a saved {self.label_tag!r} label, got none (other visits: {names}). "
                "Annotate one visit of this patient and save the label first."
            )
        return self.reference(datastore, self.choose(requested, labelled), requested, labelled)

    def patient_visits(self, datastore: _Datastore, patient_id: str) -> list[Visit]:
        """Every visit of ``patient_id`` in the datastore (``patient_images`` when the datastore offers it)."""
        patient_images = getattr(datastore, "patient_images", None)
        if callable(patient_images) and self.resolver.mapping is None:
            images = list(patient_images(patient_id))  # DICOMweb: one QIDO-RS query by PatientID
        else:
            images = list(datastore.list_images())
        visits = (self.resolver(datastore, i) for i in images)
        return [v for v in visits if v.patient_id == patient_id]

    def labelled_visits(self, datastore: _Datastore, patient_id: str, exclude: Sequence[str] = ()) -> list[Visit]:
        """The visits of ``patient_id`` with a saved label (but those in ``exclude``), sorted by visit order."""
        return sorted((v for v in self.patient_visits(datastore, patient_id)
                       if v.image_id not in exclude and self._label_id(datastore, v.image_id)), key=Visit.sort_key)

    def reference(self, datastore: _Datastore, chosen: Visit, requested: Visit,
                  labelled: Sequence[Visit]) -> Reference:
        """The :class:`Reference` of ``requested`` once ``chosen`` is picked among ``labelled``."""
        label_id = self._label_id(datastore, chosen.image_id)
        return Reference(
            image_id=chosen.image_id,
            image_uri=str(datastore.get_image_uri(chosen.image_id)),
            label_id=label_id,
            label_uri=str(datastore.get_label_uri(label_id, self.label_tag)),
            visit=chosen,
            requested=requested,
            candidates=tuple(labelled),
        )

    def _label_id(self, datastore: _Datastore, image_id: str) -> str:
        return datastore.get_label_by_image_id(image_id, self.label_tag) or ""

    def choose(self, requested: Visit, labelled: Sequence[Visit]) -> Visit:
        """The reference of ``requested`` among ``labelled`` by :attr:`choice` (ties: smallest image id, warned)."""
        dated = [v for v in labelled if v.time is not None]
        pool = dated if dated else labelled
        if not dated:
            logger.warning("patient %s: no labelled visit has a date; ordering %s by visit number, then image id",
                           requested.patient_id, [v.image_id for v in labelled])
        choice = self.choice
        if choice == "nearest" and (requested.time is None or not dated):
            logger.warning("image %s: 'nearest' needs dates on the requested and the labelled visits; using "
                           "'earliest'", requested.image_id)
            choice = "earliest"
        rank = _RANKS[choice]
        best = min(pool, key=lambda v: (rank(v, requested), v.image_id))
        ties = [v.image_id for v in pool if v is not best and rank(v, requested) == rank(best, requested)]
        if ties:
            logger.warning("image %s: labelled visits %s tie under %r; using %s (smallest image id)",
                           requested.image_id, [best.image_id, *ties], choice, best.image_id)
        logger.info("image %s (patient %s): reference %s by %r among %s", requested.image_id, requested.patient_id,
                    best.describe(), choice, [v.image_id for v in labelled])
        return best


def _rank_earliest(v: Visit, requested: Visit) -> tuple:
    return v.sort_key()[:-1]


def _rank_latest(v: Visit, requested: Visit) -> tuple:
    age = -(v.time - datetime.min).total_seconds() if v.time is not None else 0.0
    return (v.time is None, age, v.number is None, -(v.number or 0))


def _rank_nearest(v: Visit, requested: Visit) -> tuple:
    return (abs((v.time - requested.time).total_seconds()), *v.sort_key()[:-1])  # type: ignore[operator]


_RANKS = {"earliest": _rank_earliest, "latest": _rank_latest, "nearest": _rank_nearest}
