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
"""A PACS reached by DICOMweb (QIDO-RS, WADO-RS, STOW-RS): radiograph series, their visits and lung SEGs.

:class:`DicomWebStore` is what the MONAI Label datastore (:mod:`monai_jrs.monailabel.dicomweb`) and
``monai-jrs pacs`` (:mod:`monai_jrs.apps.pacs`) share:

- **Visits without downloads**: :meth:`DicomWebStore.image_series` is one QIDO-RS series query per modality
  (``DX``, ``CR`` by default), optionally for one patient or study; each :class:`SeriesRecord` carries PatientID and
  the study/series date and time, so the visits of a patient are known before any pixel is fetched.
- **Labels**: :meth:`DicomWebStore.segs_referencing` lists the SEG series of a study whose
  ReferencedSeriesSequence names a radiograph series (each SEG's metadata is read once and cached on disk: stored
  instances never change); :meth:`DicomWebStore.newest_seg` picks the newest by content date/time.
- **Files**: :meth:`DicomWebStore.download` fetches one instance by WADO-RS into a local cache (atomically, once per
  SOPInstanceUID); :meth:`DicomWebStore.store` uploads new instances by STOW-RS and checks the PACS's answer;
  :meth:`DicomWebStore.has_instance` tells whether a SOPInstanceUID is already stored (idempotent writes).
- Nothing in the PACS is ever modified or deleted: the store has no such operation.

Security: credentials come from the environment or a netrc file (:func:`resolve_credentials`), never from the URL
or the command line, and never appear in messages or logs (:class:`DicomWebCredentials` redacts itself). TLS
certificates are verified by default; ``MONAI_JRS_DICOMWEB_CA_BUNDLE`` names a CA file for a PACS with its own CA.

Errors are :class:`PacsError` subclasses whose message names the PACS (URL without credentials), what was asked and
why it failed: :class:`PacsUnavailableError` (no connection, timeout, HTTP 5xx), :class:`PacsAuthError` (HTTP 401 /
403), :class:`PacsNotFoundError` (HTTP 404 or an unknown UID) and :class:`PacsTLSError` (certificate not trusted).
Each carries ``http_status``: the status a server should answer with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import netrc
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monai_jrs.utils.deps import require

__all__ = [
    "IMAGE_MODALITIES",
    "ENV_USERNAME",
    "ENV_PASSWORD",
    "ENV_TOKEN",
    "ENV_NETRC",
    "ENV_CA_BUNDLE",
    "PacsError",
    "PacsUnavailableError",
    "PacsAuthError",
    "PacsNotFoundError",
    "PacsTLSError",
    "DicomWebCredentials",
    "resolve_credentials",
    "check_dicomweb_url",
    "SeriesRecord",
    "SegRecord",
    "DicomWebStore",
    "DicomWebVisitSource",
    "AUTOMATIC_SEG_DESCRIPTION",
    "derived_uid",
    "default_cache_dir",
]

logger = logging.getLogger(__name__)

#: modalities of the radiograph series a store lists (Digital X-Ray, Computed Radiography).
IMAGE_MODALITIES: tuple[str, ...] = ("DX", "CR")
#: environment variables with the PACS credentials (the ``MONAI_LABEL_DICOMWEB_*`` ones of MONAI Label are read too).
ENV_USERNAME = "MONAI_JRS_DICOMWEB_USERNAME"
ENV_PASSWORD = "MONAI_JRS_DICOMWEB_PASSWORD"
ENV_TOKEN = "MONAI_JRS_DICOMWEB_TOKEN"
#: a netrc-style file with ``machine <host> login <user> password <password>`` (default ``~/.netrc``).
ENV_NETRC = "MONAI_JRS_NETRC"
#: a PEM file of the certificate authorities to trust for an ``https://`` PACS (default: the system's / certifi's).
ENV_CA_BUNDLE = "MONAI_JRS_DICOMWEB_CA_BUNDLE"

_SEG_MODALITY = "SEG"
#: SeriesDescription of the lung SEGs that ``monai-jrs pacs`` computes: results, not annotations, so they never serve
#: as a reference label (an annotator who approves one saves it through MONAI Label, which stores it as a label).
AUTOMATIC_SEG_DESCRIPTION = "JRS lung (automatic, not reviewed)"
_SERIES_FIELDS = ("PatientID", "PatientName", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "SeriesNumber",
                  "SeriesDescription", "NumberOfSeriesRelatedInstances", "StudyInstanceUID", "Modality")


class PacsError(RuntimeError):
    """A DICOMweb request failed; ``http_status`` is what a server relaying it should answer (502 by default)."""

    http_status = 502


class PacsUnavailableError(PacsError):
    """The PACS cannot be reached (connection refused, timeout) or answered with a server error."""

    http_status = 503


class PacsAuthError(PacsError):
    """The PACS refused the credentials (HTTP 401 or 403)."""

    http_status = 401


class PacsNotFoundError(PacsError):
    """The requested study, series or instance is not in the PACS."""

    http_status = 404


class PacsTLSError(PacsError):
    """The PACS's TLS certificate could not be verified."""

    http_status = 502


@dataclass(frozen=True)
class DicomWebCredentials:
    """HTTP credentials of a PACS: basic (``username`` + ``password``) or a bearer ``token``.

    ``source`` says where they came from (e.g. ``"environment MONAI_JRS_DICOMWEB_USERNAME"``, ``"netrc ~/.netrc"``);
    the secret is never part of ``repr``/``str``.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if self.token is None and (self.username is None or self.password is None):
            raise ValueError("credentials need a bearer token or both a username and a password, got "
                             f"username={'set' if self.username else 'missing'}, "
                             f"password={'set' if self.password else 'missing'} ({self.source or 'no source'}).")

    def describe(self) -> str:
        """Who is authenticating, without the secret: ``"user 'ana' (environment ...)"`` or ``"a bearer token"``."""
        who = f"user {self.username!r}" if self.token is None else "a bearer token"
        return f"{who} from {self.source}" if self.source else who


def check_dicomweb_url(url: str) -> str:
    """Validate a DICOMweb base URL and return it without a trailing slash.

    Raises:
        ValueError: not ``http(s)://host[:port]/path``, or with credentials in it (``user:password@``: they would
            show in process lists, shell history and logs; use the environment or a netrc file).
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"expected a DICOMweb URL such as http://127.0.0.1:8042/dicom-web, got {url!r}.")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// DICOMweb URL, got {url!r}.")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "credentials in the DICOMweb URL are refused (they would show in process lists and logs): remove "
            f"'user:password@' from the URL and set {ENV_USERNAME}/{ENV_PASSWORD}, {ENV_TOKEN} or a netrc file "
            f"({ENV_NETRC})."
        )
    return url.strip().rstrip("/")


def resolve_credentials(url: str, env: Mapping[str, str] | None = None) -> DicomWebCredentials | None:
    """The credentials for ``url``: a bearer token, a user and password from the environment, or the netrc entry
    of the URL's host, in that order; None when there are none.

    Environment: :data:`ENV_TOKEN`; :data:`ENV_USERNAME` + :data:`ENV_PASSWORD` (or MONAI Label's
    ``MONAI_LABEL_DICOMWEB_USERNAME`` + ``MONAI_LABEL_DICOMWEB_PASSWORD``, so the server's OHIF proxy and the datastore
    share them); :data:`ENV_NETRC` (default ``~/.netrc`` when it exists).

    Raises:
        ValueError: a user without a password (or the reverse), or an unreadable netrc file; the message names the
            variable or file, never a secret.
    """
    env = os.environ if env is None else env
    token = env.get(ENV_TOKEN)
    if token:
        return DicomWebCredentials(token=token, source=f"environment {ENV_TOKEN}")
    for user_var, pass_var in ((ENV_USERNAME, ENV_PASSWORD),
                               ("MONAI_LABEL_DICOMWEB_USERNAME", "MONAI_LABEL_DICOMWEB_PASSWORD")):
        user, password = env.get(user_var), env.get(pass_var)
        if user or password:
            if not (user and password):
                raise ValueError(f"set both {user_var} and {pass_var}, got only "
                                 f"{user_var if user else pass_var}.")
            return DicomWebCredentials(user, password, source=f"environment {user_var}")
    path = env.get(ENV_NETRC) or os.path.join(os.path.expanduser("~"), ".netrc")
    if env.get(ENV_NETRC) and not os.path.isfile(path):
        raise ValueError(f"{ENV_NETRC}={path}: expected a netrc file, got none.")
    if os.path.isfile(path):
        try:
            entry = netrc.netrc(path).authenticators(urlsplit(url).hostname or "")
        except (netrc.NetrcParseError, OSError) as e:
            raise ValueError(f"netrc file {path} is unreadable: {getattr(e, 'msg', e)}.") from None
        if entry is not None:
            login, _, password = entry
            return DicomWebCredentials(login or None, password or None, source=f"netrc {path}")
    return None


def derived_uid(*parts: Any) -> str:
    """A DICOM UID determined by ``parts`` (``2.25.<integer>`` from their SHA-256): the same inputs give the same
    UID, so a derived object written twice is recognised as already stored.

    Example:
        >>> derived_uid("seg", "1.2.3") == derived_uid("seg", "1.2.3")
        True
        >>> derived_uid("seg", "1.2.3").startswith("2.25.")
        True
    """
    digest = hashlib.sha256("\\".join(str(p) for p in parts).encode("utf-8")).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))  # 128 bits, as in DICOM PS3.5 B.2


def default_cache_dir(url: str) -> Path:
    """``$MONAI_JRS_CACHE/dicomweb/<hash of the URL>`` (default ``~/.cache/monai_jrs``)."""
    root = Path(os.environ.get("MONAI_JRS_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "monai_jrs")))
    return root / "dicomweb" / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def _value(ds: Mapping[str, Any], tag: str) -> Any:
    """First value of a DICOM JSON attribute (PN as its Alphabetic string), or None."""
    item = ds.get(tag)
    if not item or not item.get("Value"):
        return None
    v = item["Value"][0]
    if isinstance(v, dict) and "Alphabetic" in v:
        return v["Alphabetic"]
    return v


_TAGS = {"StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "SOPInstanceUID": "00080018",
         "SOPClassUID": "00080016", "Modality": "00080060", "PatientID": "00100020", "PatientName": "00100010",
         "StudyDate": "00080020", "StudyTime": "00080030", "SeriesDate": "00080021", "SeriesTime": "00080031",
         "ContentDate": "00080023", "ContentTime": "00080033", "SeriesNumber": "00200011", "InstanceNumber": "00200013",
         "SeriesDescription": "0008103E", "NumberOfSeriesRelatedInstances": "00201209",
         "ReferencedSeriesSequence": "00081115", "Rows": "00280010", "Columns": "00280011"}


@dataclass(frozen=True)
class SeriesRecord:
    """A series as QIDO-RS describes it (no pixel data).

    Attributes:
        study_uid, series_uid: StudyInstanceUID, SeriesInstanceUID; ``modality``: Modality.
        patient_id, patient_name: PatientID, PatientName (None when absent).
        study_date, study_time, series_date, series_time: DICOM DA/TM strings ("" when absent).
        series_number: SeriesNumber; ``description``: SeriesDescription; ``n_instances``:
            NumberOfSeriesRelatedInstances (None when the PACS does not say).
    """

    study_uid: str
    series_uid: str
    modality: str
    patient_id: str | None = None
    patient_name: str | None = None
    study_date: str = ""
    study_time: str = ""
    series_date: str = ""
    series_time: str = ""
    series_number: int | None = None
    description: str = ""
    n_instances: int | None = None

    @classmethod
    def from_json(cls, ds: Mapping[str, Any]) -> SeriesRecord:
        """From one QIDO-RS DICOM JSON result."""
        def s(name: str) -> str:
            v = _value(ds, _TAGS[name])
            return "" if v is None else str(v).strip()

        def i(name: str) -> int | None:
            v = _value(ds, _TAGS[name])
            try:
                return int(v) if v is not None else None
            except (TypeError, ValueError):
                return None

        return cls(study_uid=s("StudyInstanceUID"), series_uid=s("SeriesInstanceUID"), modality=s("Modality"),
                   patient_id=s("PatientID") or None, patient_name=s("PatientName") or None,
                   study_date=s("StudyDate"), study_time=s("StudyTime"), series_date=s("SeriesDate"),
                   series_time=s("SeriesTime"), series_number=i("SeriesNumber"), description=s("SeriesDescription"),
                   n_instances=i("NumberOfSeriesRelatedInstances"))

    @property
    def time(self) -> datetime | None:
        """The visit time: StudyDate + StudyTime, else SeriesDate + SeriesTime; None when neither parses."""
        from monai_jrs.monailabel.reference import parse_visit_time

        for date, tm in ((self.study_date, self.study_time), (self.series_date, self.series_time)):
            try:
                when = parse_visit_time(date, tm or None)
            except ValueError:
                logger.warning("series %s: ignoring unparsable date %r / time %r", self.series_uid, date, tm)
                continue
            if when is not None:
                return when
        return None

    def info(self) -> dict[str, Any]:
        """The record as DICOM keywords (what ``get_image_info`` of the MONAI Label datastore returns)."""
        return {"StudyInstanceUID": self.study_uid, "SeriesInstanceUID": self.series_uid, "Modality": self.modality,
                "PatientID": self.patient_id, "PatientName": self.patient_name, "StudyDate": self.study_date,
                "StudyTime": self.study_time, "SeriesDate": self.series_date, "SeriesTime": self.series_time,
                "SeriesNumber": self.series_number, "SeriesDescription": self.description,
                "NumberOfSeriesRelatedInstances": self.n_instances}


@dataclass(frozen=True)
class SegRecord:
    """A DICOM SEG series of the PACS and the radiograph series it segments.

    Attributes:
        study_uid, series_uid, sop_uid: the SEG's UIDs (first instance).
        referenced_series: SeriesInstanceUIDs in its ReferencedSeriesSequence.
        content_time: ContentDate + ContentTime (else SeriesDate + SeriesTime) as ISO text, "" when unknown.
        description: SeriesDescription; ``manufacturer``: Manufacturer (who wrote it).
    """

    study_uid: str
    series_uid: str
    sop_uid: str
    referenced_series: tuple[str, ...]
    content_time: str = ""
    description: str = ""
    manufacturer: str = ""

    def sort_key(self) -> tuple[str, str]:
        """Oldest first: (content time, series UID)."""
        return (self.content_time, self.series_uid)


class DicomWebStore:
    """Radiographs, their visits and lung SEGs in a PACS reached by DICOMweb (see the module docstring).

    Args:
        url: DICOMweb base URL, e.g. ``http://127.0.0.1:8042/dicom-web`` (:func:`check_dicomweb_url`).
        credentials: explicit credentials; default :func:`resolve_credentials` (environment, netrc).
        cache_dir: local cache of downloaded instances and SEG metadata; default :func:`default_cache_dir`. It holds
            patient images: folders are created readable by the owner only (0700), files 0600.
        modalities: modalities of the radiograph series (:data:`IMAGE_MODALITIES`).
        ttl_s: how long a series listing is reused, in seconds (new studies appear after at most this long).
        timeout_s: timeout of each HTTP request.
        ca_bundle: CA certificates for ``https://`` (default :data:`ENV_CA_BUNDLE`, else the system's); TLS
            verification cannot be switched off.
        client: a ``dicomweb_client.DICOMwebClient`` to use instead of building one (tests).
        retries: how often a failed request (refused connection, HTTP 429/503/504) is retried, after 0.5 s, 1 s, ...

    Raises:
        ValueError: a malformed URL, credentials in the URL, or incomplete credentials.
        MissingDependencyError: ``dicomweb-client`` is not installed (``pip install monai_jrs[pacs]``).
    """

    def __init__(
        self,
        url: str,
        credentials: DicomWebCredentials | None = None,
        cache_dir: str | os.PathLike | None = None,
        modalities: Sequence[str] = IMAGE_MODALITIES,
        ttl_s: float = 5.0,
        timeout_s: float = 60.0,
        ca_bundle: str | os.PathLike | None = None,
        client: Any = None,
        retries: int = 1,
    ) -> None:
        self.url = check_dicomweb_url(url)
        self.credentials = credentials if credentials is not None else resolve_credentials(self.url)
        if not modalities:
            raise ValueError(f"`modalities` must name at least one modality, got {tuple(modalities)}.")
        self.modalities = tuple(str(m).upper() for m in modalities)
        self.ttl_s = float(ttl_s)
        self.timeout_s = float(timeout_s)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(self.url)
        ca = ca_bundle if ca_bundle is not None else os.environ.get(ENV_CA_BUNDLE)
        if ca is not None and not os.path.isfile(ca):
            raise ValueError(f"CA bundle {ca}: expected a PEM file of certificate authorities, got no such file.")
        self.ca_bundle = str(ca) if ca is not None else None
        if retries < 0:
            raise ValueError(f"`retries` must be >= 0, got {retries}.")
        self.retries = int(retries)
        self._client = client if client is not None else self._make_client()
        self._lock = threading.RLock()
        self._series_cache: dict[tuple, tuple[float, list[SeriesRecord]]] = {}
        self._by_uid: dict[str, SeriesRecord] = {}
        self._seg_cache: dict[str, SegRecord | None] | None = None

    def __repr__(self) -> str:
        who = self.credentials.describe() if self.credentials else "no credentials"
        return f"DicomWebStore({self.url!r}, {who})"

    # ------------------------------------------------------------------ connection
    def _make_client(self) -> Any:
        web = require("dicomweb_client", "a DICOMweb PACS")
        requests = require("requests", "a DICOMweb PACS")
        session = requests.Session()
        session.verify = self.ca_bundle if self.ca_bundle else True
        session.trust_env = False  # no proxies or netrc picked up behind our back; credentials are resolved above
        if self.credentials is not None:
            if self.credentials.token is not None:
                session.headers["Authorization"] = f"Bearer {self.credentials.token}"
            else:
                session.auth = (self.credentials.username, self.credentials.password)
        session.request = _with_timeout(session.request, self.timeout_s)  # type: ignore[method-assign]
        client = web.DICOMwebClient(url=self.url, session=session)
        # dicomweb-client retries every failed request 5 times with exponential waits (30 s on a refused
        # connection); answer quickly instead, retrying once after 0.5 s (429/503/504 and transport errors)
        client.set_http_retry_params(retry=self.retries > 0, max_attempts=self.retries + 1,
                                     wait_exponential_multiplier=250)
        return client

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a DICOMweb call, turning transport and HTTP failures into :class:`PacsError` with the reason."""
        import requests

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.SSLError as e:
            raise PacsTLSError(
                f"the TLS certificate of the PACS {self.url} could not be verified while {what} ({_short(e)}); set "
                f"{ENV_CA_BUNDLE} to the PEM file of the CA that signed it."
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise PacsUnavailableError(f"the PACS {self.url} is not reachable while {what} ({_short(e)}).") from None
        except requests.exceptions.HTTPError as e:
            status = e.response.status_code if e.response is not None else None
            reason = (e.response.reason if e.response is not None else "") or ""
            if status in (401, 403):
                who = self.credentials.describe() if self.credentials else "no credentials"
                raise PacsAuthError(
                    f"the PACS {self.url} refused access while {what}: HTTP {status} {reason} with {who}. Check "
                    f"{ENV_USERNAME}/{ENV_PASSWORD}, {ENV_TOKEN} or the netrc file ({ENV_NETRC})."
                ) from None
            if status == 404:
                raise PacsNotFoundError(f"the PACS {self.url} has no such object while {what} (HTTP 404).") from None
            err = PacsUnavailableError if status is not None and status >= 500 else PacsError
            raise err(f"the PACS {self.url} answered HTTP {status} {reason} while {what}.") from None

    # ------------------------------------------------------------------ QIDO
    def series(self, study_uid: str | None = None, modality: str | None = None,
               patient_id: str | None = None, series_uid: str | None = None) -> list[SeriesRecord]:
        """QIDO-RS series search (uncached)."""
        filters: dict[str, str] = {}
        if modality:
            filters["Modality"] = modality
        if patient_id:
            filters["PatientID"] = patient_id
        if series_uid:
            filters["SeriesInstanceUID"] = series_uid
        what = f"searching series {filters or ''}{' of study ' + study_uid if study_uid else ''}".strip()
        found = self._call(what, self._client.search_for_series, study_instance_uid=study_uid,
                           search_filters=filters, fields=list(_SERIES_FIELDS), get_remaining=True)
        return [SeriesRecord.from_json(ds) for ds in found or []]

    def image_series(self, patient_id: str | None = None, study_uid: str | None = None,
                     fresh: bool = False) -> list[SeriesRecord]:
        """The radiograph series (:attr:`modalities`), optionally of one patient or study, sorted by visit time.

        Listings are reused for :attr:`ttl_s` seconds unless ``fresh``.
        """
        key = (patient_id, study_uid)
        now = time.monotonic()
        with self._lock:
            hit = self._series_cache.get(key)
            if hit is not None and not fresh and now - hit[0] < self.ttl_s:
                return list(hit[1])
        found: dict[str, SeriesRecord] = {}
        for modality in self.modalities:
            for rec in self.series(study_uid=study_uid, modality=modality, patient_id=patient_id):
                if rec.series_uid and rec.modality.upper() in self.modalities:
                    found[rec.series_uid] = rec
        records = sorted(found.values(), key=lambda r: (r.time is None, r.time or datetime.min, r.series_uid))
        with self._lock:
            self._series_cache[key] = (now, records)
            self._by_uid.update({r.series_uid: r for r in records})
        return list(records)

    def record(self, series_uid: str) -> SeriesRecord:
        """The radiograph series ``series_uid`` (from the last listing, else one QIDO-RS query).

        Raises:
            PacsNotFoundError: no radiograph series with that UID.
        """
        with self._lock:
            rec = self._by_uid.get(series_uid)
        if rec is not None:
            return rec
        for rec in self.series(series_uid=series_uid):
            if rec.series_uid == series_uid and rec.modality.upper() in self.modalities:
                with self._lock:
                    self._by_uid[series_uid] = rec
                return rec
        raise PacsNotFoundError(f"the PACS {self.url} has no {'/'.join(self.modalities)} series {series_uid!r}.")

    def forget(self) -> None:
        """Drop the cached listings (the next listing asks the PACS again)."""
        with self._lock:
            self._series_cache.clear()

    def instances(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """The instances of a series as ``{"sop_uid", "sop_class_uid", "instance_number"}``, by InstanceNumber."""
        found = self._call(f"listing the instances of series {series_uid}", self._client.search_for_instances,
                           study_instance_uid=study_uid, series_instance_uid=series_uid,
                           fields=["SOPClassUID", "InstanceNumber"], get_remaining=True)
        out = []
        for ds in found or []:
            n = _value(ds, _TAGS["InstanceNumber"])
            out.append({"sop_uid": str(_value(ds, _TAGS["SOPInstanceUID"]) or ""),
                        "sop_class_uid": str(_value(ds, _TAGS["SOPClassUID"]) or ""),
                        "instance_number": int(n) if str(n).lstrip("-").isdigit() else None})
        return sorted(out, key=lambda d: (d["instance_number"] is None, d["instance_number"] or 0, d["sop_uid"]))

    def has_instance(self, study_uid: str, sop_uid: str) -> bool:
        """Whether the PACS holds the instance ``sop_uid`` in study ``study_uid``."""
        found = self._call(f"looking up instance {sop_uid}", self._client.search_for_instances,
                           study_instance_uid=study_uid, search_filters={"SOPInstanceUID": sop_uid})
        return any(str(_value(ds, _TAGS["SOPInstanceUID"])) == sop_uid for ds in found or [])

    # ------------------------------------------------------------------ SEG labels
    def segs_referencing(self, record: SeriesRecord) -> list[SegRecord]:
        """The SEG series of ``record``'s study that reference ``record``'s series, oldest first.

        Each SEG's metadata is fetched once (WADO-RS metadata) and cached in ``cache_dir/segs.json``.
        """
        segs = self.series(study_uid=record.study_uid, modality=_SEG_MODALITY)
        out = []
        for seg in segs:
            info = self._seg_info(seg)
            if info is not None and record.series_uid in info.referenced_series:
                out.append(info)
        return sorted(out, key=SegRecord.sort_key)

    def newest_seg(self, record: SeriesRecord, labels_only: bool = True) -> SegRecord | None:
        """The newest SEG referencing ``record``'s series (content date/time, then UID), or None.

        ``labels_only``: skip the automatic results of ``monai-jrs pacs`` (:data:`AUTOMATIC_SEG_DESCRIPTION`).
        """
        segs = [s for s in self.segs_referencing(record)
                if not (labels_only and s.description == AUTOMATIC_SEG_DESCRIPTION)]
        return segs[-1] if segs else None

    def seg(self, series_uid: str) -> SegRecord | None:
        """The SEG series ``series_uid`` (cached metadata, else one QIDO-RS query), or None when there is none."""
        with self._lock:
            cache = self._load_seg_cache()
            if cache.get(series_uid) is not None:
                return cache[series_uid]
        for rec in self.series(series_uid=series_uid, modality=_SEG_MODALITY):
            if rec.series_uid == series_uid:
                return self._seg_info(rec)
        return None

    def labelled_series(self) -> set[str]:
        """SeriesInstanceUIDs referenced by any SEG of the PACS (one QIDO-RS query; metadata of new SEGs only)."""
        out: set[str] = set()
        for seg in self.series(modality=_SEG_MODALITY):
            info = self._seg_info(seg)
            if info is not None and info.description != AUTOMATIC_SEG_DESCRIPTION:
                out.update(info.referenced_series)
        return out

    def _seg_info(self, seg: SeriesRecord) -> SegRecord | None:
        with self._lock:
            cache = self._load_seg_cache()
            if seg.series_uid in cache:
                return cache[seg.series_uid]
        meta = self._call(f"reading the metadata of SEG series {seg.series_uid}",
                          self._client.retrieve_series_metadata, seg.study_uid, seg.series_uid)
        info = None
        if meta:
            ds = meta[0]
            refs = []
            for item in (ds.get(_TAGS["ReferencedSeriesSequence"]) or {}).get("Value", []) or []:
                uid = _value(item, _TAGS["SeriesInstanceUID"])
                if uid:
                    refs.append(str(uid))
            if not refs:
                logger.warning("SEG series %s has no ReferencedSeriesSequence; it labels no radiograph",
                               seg.series_uid)
            date = _value(ds, _TAGS["ContentDate"]) or _value(ds, _TAGS["SeriesDate"]) or ""
            tm = _value(ds, _TAGS["ContentTime"]) or _value(ds, _TAGS["SeriesTime"]) or ""
            info = SegRecord(study_uid=seg.study_uid, series_uid=seg.series_uid,
                             sop_uid=str(_value(ds, _TAGS["SOPInstanceUID"]) or ""), referenced_series=tuple(refs),
                             content_time=f"{date}{str(tm).split('.')[0].ljust(6, '0')}" if date else "",
                             description=seg.description, manufacturer=str(_value(ds, "00080070") or ""))
        with self._lock:
            cache = self._load_seg_cache()
            cache[seg.series_uid] = info
            self._save_seg_cache(cache)
        return info

    def _load_seg_cache(self) -> dict[str, SegRecord | None]:
        if self._seg_cache is None:
            self._seg_cache = {}
            path = self.cache_dir / "segs.json"
            if path.is_file():
                try:
                    raw = json.loads(path.read_text(encoding="utf-8"))
                    self._seg_cache = {k: (SegRecord(**{**v, "referenced_series": tuple(v["referenced_series"])})
                                           if v else None) for k, v in raw.items()}
                except (ValueError, TypeError, KeyError) as e:
                    logger.warning("ignoring the unreadable SEG cache %s (%s)", path, e)
        return self._seg_cache

    def _save_seg_cache(self, cache: dict[str, SegRecord | None]) -> None:
        raw = {k: (dict(v.__dict__, referenced_series=list(v.referenced_series)) if v else None)
               for k, v in cache.items()}
        _atomic_write(self.cache_dir / "segs.json", json.dumps(raw, indent=1).encode("utf-8"))

    # ------------------------------------------------------------------ WADO / STOW
    def download(self, study_uid: str, series_uid: str, sop_uid: str | None = None,
                 folder: str = "instances") -> Path:
        """The local file of one instance (the series' first by InstanceNumber when ``sop_uid`` is None), fetched by
        WADO-RS once and cached as ``cache_dir/<folder>/<SOPInstanceUID>.dcm``.

        Raises:
            PacsNotFoundError: the series has no instance (or not ``sop_uid``).
        """
        if sop_uid is None:
            instances = self.instances(study_uid, series_uid)
            if not instances:
                raise PacsNotFoundError(f"the PACS {self.url} has no instance in series {series_uid}.")
            if len(instances) > 1:
                logger.warning("series %s holds %d instances; using the first by InstanceNumber (%s)", series_uid,
                               len(instances), instances[0]["sop_uid"])
            sop_uid = instances[0]["sop_uid"]
        path = self.cache_dir / folder / f"{sop_uid}.dcm"
        if path.is_file():
            return path
        ds = self._call(f"retrieving instance {sop_uid} of series {series_uid}", self._client.retrieve_instance,
                        study_uid, series_uid, sop_uid)
        import io

        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True) if _pydicom3() else ds.save_as(buf, write_like_original=False)
        _atomic_write(path, buf.getvalue())
        return path

    def store(self, datasets: Iterable[Any]) -> list[str]:
        """Upload new instances by STOW-RS (one request per study) and return their SOPInstanceUIDs.

        Raises:
            PacsError: the PACS reports a failed instance (FailedSOPSequence), with its failure reason code.
        """
        by_study: dict[str, list[Any]] = {}
        for ds in datasets:
            by_study.setdefault(str(ds.StudyInstanceUID), []).append(ds)
        stored = []
        for study_uid, items in by_study.items():
            answer = self._call(f"storing {len(items)} instance(s) in study {study_uid}", self._client.store_instances,
                                items, study_instance_uid=study_uid)
            failed = list(getattr(answer, "FailedSOPSequence", []) or []) if answer is not None else []
            if failed:
                reasons = ", ".join(f"{getattr(f, 'ReferencedSOPInstanceUID', '?')}: failure reason "
                                    f"{getattr(f, 'FailureReason', '?')}" for f in failed)
                raise PacsError(f"the PACS {self.url} refused {len(failed)} of {len(items)} instance(s) of study "
                                f"{study_uid}: {reasons}.")
            stored += [str(ds.SOPInstanceUID) for ds in items]
        self.forget()
        return stored


class DicomWebVisitSource:
    """The radiographs of a PACS as :class:`~monai_jrs.monailabel.reference.ReferenceFinder` reads a datastore:
    image id = SeriesInstanceUID, visits from QIDO-RS, the label of an image = its newest SEG (not an automatic
    result), files fetched on demand. The MONAI Label datastore (:mod:`monai_jrs.monailabel.dicomweb`) and
    ``monai-jrs pacs`` both find references through it.

    Args:
        store: the PACS.
    """

    def __init__(self, store: DicomWebStore) -> None:
        self.store = store

    def list_images(self) -> list[str]:
        """SeriesInstanceUIDs of the PACS's radiograph series (listing reused for ``store.ttl_s``)."""
        return [r.series_uid for r in self.store.image_series()]

    def has_image(self, image_id: str) -> bool:
        """Whether ``image_id`` is a radiograph series of the PACS (one QIDO-RS query at most)."""
        try:
            self.store.record(image_id)
        except PacsNotFoundError:
            return False
        return True

    def patient_images(self, patient_id: str) -> list[str]:
        """The radiograph series of one patient (one QIDO-RS query per modality)."""
        return [r.series_uid for r in self.store.image_series(patient_id=patient_id)]

    def visit_of(self, image_id: str) -> Any:
        """The :class:`~monai_jrs.monailabel.reference.Visit` of ``image_id`` from QIDO-RS (PatientID, StudyDate and
        StudyTime, else SeriesDate and SeriesTime), None for an unknown series or one without PatientID."""
        from monai_jrs.monailabel.reference import Visit

        try:
            rec = self.store.record(image_id)
        except PacsNotFoundError:
            return None
        return Visit(image_id, rec.patient_id, rec.time, None, "dicomweb") if rec.patient_id else None

    def get_image_uri(self, image_id: str) -> str:
        """The local ``.dcm`` of the series' first instance ("" for an unknown series)."""
        try:
            rec = self.store.record(image_id)
        except PacsNotFoundError:
            return ""
        return str(self.store.download(rec.study_uid, rec.series_uid, folder="images"))

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        """The QIDO-RS attributes of the series ({} for an unknown one)."""
        try:
            return self.store.record(image_id).info()
        except PacsNotFoundError:
            return {}

    def get_label_by_image_id(self, image_id: str, tag: str = "final") -> str:
        """The SeriesInstanceUID of the newest label SEG referencing the image ("" when none)."""
        try:
            rec = self.store.record(image_id)
        except PacsNotFoundError:
            return ""
        seg = self.store.newest_seg(rec)
        return seg.series_uid if seg is not None else ""

    def get_label_uri(self, label_id: str, label_tag: str = "final") -> str:
        """The local copy of the SEG series ``label_id`` ("" when there is none)."""
        seg = self.store.seg(label_id)
        if seg is None:
            return ""
        return str(self.store.download(seg.study_uid, seg.series_uid, seg.sop_uid or None, folder="segs"))


def _pydicom3() -> bool:
    import pydicom

    return int(pydicom.__version__.split(".")[0]) >= 3


def _with_timeout(request: Callable[..., Any], timeout_s: float) -> Callable[..., Any]:
    def wrapped(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout_s)
        return request(method, url, **kwargs)

    return wrapped


def _short(e: BaseException) -> str:
    """A one-line reason of a transport error (no request headers, hence no credentials)."""
    text = str(e)
    for marker in ("Caused by ", "] "):
        if marker in text:
            text = text.split(marker)[-1]
    text = text.strip(" ()\"'")[:200]
    return f"{type(e).__name__}: {text}"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file (mode 0600, in folders created 0700: patient data)."""
    os.makedirs(path.parent, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
