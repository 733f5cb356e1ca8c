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
"""A MONAI Label datastore on a DICOMweb PACS for radiographs: ``--studies http(s)://<pacs>/dicom-web``.

Why not MONAI Label's own ``DICOMWebDatastore``: it converts every image to NIfTI (losing the DICOM header the
reference rule reads), lists labels by downloading the metadata of every SEG on every call, writes labels with dcmqi
(which fails on DX images without ImagePositionPatient), downloads dcmqi from GitHub at start-up, and caches series
listings for two hours. :class:`JRSDicomWebDatastore` instead:

- **images**: datastore image id = SeriesInstanceUID of a ``DX``/``CR`` series (as OHIF and MONAI Label clients use);
  :meth:`~JRSDicomWebDatastore.get_image_uri` is the instance's own ``.dcm`` file, fetched by WADO-RS once into the
  cache;
- **visits** (PatientID, study date and time) come from QIDO-RS (:meth:`~JRSDicomWebDatastore.visit_of`,
  :meth:`~JRSDicomWebDatastore.patient_images`), so finding a reference downloads only the reference and the
  requested image;
- **the reference label** of a visit is the newest SEG (content date/time) whose ReferencedSeriesSequence names the
  visit's series, in the same study; each SEG's metadata is read once;
- **saving a final label** converts the uploaded label (NIfTI/NRRD/PNG on the image grid as 3D Slicer saves it, or
  a DICOM SEG of the image) into a highdicom SEG referencing the image and stores it by STOW-RS. Its UIDs derive from
  the image and the mask, so saving the same label twice stores it once. Other tags (``original`` from
  ``save_label`` inference) stay in the local cache;
- **new studies** show after at most ``ttl_s`` seconds (default 5);
- **nothing in the PACS is deleted or modified**: ``remove_image``/``remove_label`` answer HTTP 405;
- PACS failures answer the HTTP status of :class:`~monai_jrs.data.dicomweb.PacsError` (503 unreachable, 401 refused
  credentials, 404 unknown) with the reason; credentials come from the environment or a netrc file
  (:func:`~monai_jrs.data.dicomweb.resolve_credentials`) and never appear in logs.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from monai_jrs.data.dicomweb import (
    IMAGE_MODALITIES,
    DicomWebCredentials,
    DicomWebStore,
    DicomWebVisitSource,
    PacsError,
    PacsNotFoundError,
    derived_uid,
)
from monai_jrs.utils.deps import require

__all__ = ["JRSDicomWebDatastore", "FINAL_TAG", "LABEL_SERIES_DESCRIPTION"]

logger = logging.getLogger(__name__)

_ml = require("monailabel.interfaces.datastore", "the MONAI Label DICOMweb datastore")


def _http(status: int, detail: str) -> Exception:
    """A FastAPI ``HTTPException`` (MONAI Label answers it with ``status`` and ``{"detail": detail}``)."""
    from fastapi import HTTPException  # a dependency of monailabel

    return HTTPException(status_code=status, detail=detail)

#: MONAI Label's tag of the saved (approved) labels: these go to the PACS as DICOM SEG.
FINAL_TAG = "final"
#: SeriesDescription of the SEGs this datastore stores.
LABEL_SERIES_DESCRIPTION = "Lung label (MONAI Label)"
_LABEL_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".png", ".dcm")

F = TypeVar("F", bound=Callable[..., Any])


def _http_errors(fn: F) -> F:
    """Answer PACS failures and bad requests with an HTTP status and the reason (MONAI Label endpoints call the
    datastore directly, so the datastore raises ``HTTPException`` itself)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PacsError as e:
            logger.warning("%s: %s", fn.__name__, e)
            raise _http(e.http_status, str(e)) from e

    return wrapped  # type: ignore[return-value]


class JRSDicomWebDatastore(DicomWebVisitSource, _ml.Datastore):
    """MONAI Label datastore on a DICOMweb PACS (see the module docstring).

    Args:
        url: DICOMweb base URL (``http://127.0.0.1:8042/dicom-web``).
        cache_dir: local cache of fetched instances and of labels with other tags; default
            :func:`~monai_jrs.data.dicomweb.default_cache_dir`.
        credentials: default: environment / netrc (:func:`~monai_jrs.data.dicomweb.resolve_credentials`).
        ttl_s: seconds a series listing is reused (new studies appear after at most this long).
        modalities: modalities of the radiograph series.
        store: a ready :class:`~monai_jrs.data.dicomweb.DicomWebStore` (instead of ``url`` and the rest).
    """

    def __init__(
        self,
        url: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        credentials: DicomWebCredentials | None = None,
        ttl_s: float = 5.0,
        modalities: Sequence[str] = IMAGE_MODALITIES,
        store: DicomWebStore | None = None,
    ) -> None:
        if store is None:
            if url is None:
                raise ValueError("expected a DICOMweb `url` or a `store`, got neither.")
            store = DicomWebStore(url, credentials=credentials, cache_dir=cache_dir, modalities=modalities,
                                  ttl_s=ttl_s)
        super().__init__(store)
        self._name = f"DICOMweb {store.url}"
        self._description = f"radiographs ({'/'.join(store.modalities)}) of the PACS {store.url}"
        self._lock = threading.RLock()
        self._info_path = store.cache_dir / "datastore_info.json"
        logger.info("DICOMweb datastore %r, cache %s, listings reused for %.1f s", store, store.cache_dir, store.ttl_s)

    # ------------------------------------------------------------------ names
    def name(self) -> str:
        return self._name

    def set_name(self, name: str) -> None:
        self._name = name

    def description(self) -> str:
        return self._description

    def set_description(self, description: str) -> None:
        self._description = description

    # ------------------------------------------------------------------ images and visits
    # list_images, has_image, patient_images, visit_of, get_image_uri: DicomWebVisitSource (HTTP errors: see below)

    def get_image(self, image_id: str, params: Any = None) -> Any:
        uri = self.get_image_uri(image_id)
        return io.BytesIO(Path(uri).read_bytes()) if uri else None

    @_http_errors
    def get_image_info(self, image_id: str) -> dict[str, Any]:
        info = super().get_image_info(image_id)
        return {**info, **self._local_info().get("images", {}).get(image_id, {})} if info else {}

    @_http_errors
    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """Store an uploaded DX/CR DICOM file in the PACS (nothing when it is there already); returns its series."""
        import pydicom

        from monai_jrs.data.dicom import is_dicom_file, read_dicom_xray

        if not is_dicom_file(image_filename):
            raise _http(415, f"{image_id!r}: the PACS datastore stores DICOM radiographs "
                                                        "only, got a file that is not DICOM.")
        try:
            read_dicom_xray(image_filename)
        except ValueError as e:
            raise _http(422, f"{image_id!r}: not a usable radiograph: {e}") from e
        ds = pydicom.dcmread(image_filename)
        if str(ds.get("Modality", "")).upper() not in self.store.modalities:
            raise _http(422, f"{image_id!r}: expected Modality in "
                                                        f"{self.store.modalities}, got {ds.get('Modality')!r}.")
        if not self.store.has_instance(str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)):
            self.store.store([ds])
        else:
            logger.info("add_image %s: instance %s is already in the PACS; nothing stored", image_id,
                        ds.SOPInstanceUID)
        return str(ds.SeriesInstanceUID)

    def remove_image(self, image_id: str) -> None:
        raise _http(405, "the PACS datastore never deletes anything from the PACS; "
                                                    f"remove {image_id!r} in the PACS itself.")

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        self._update_local_info("images", image_id, info)

    # ------------------------------------------------------------------ labels
    @_http_errors
    def get_label_by_image_id(self, image_id: str, tag: str) -> str:
        """``final``: the SeriesInstanceUID of the newest SEG referencing the image; other tags: the local label."""
        if tag != FINAL_TAG:
            return image_id if self._local_label(image_id, tag) is not None else ""
        return super().get_label_by_image_id(image_id, tag)

    def get_labels_by_image_id(self, image_id: str) -> dict[str, str]:
        out = {}
        final = self.get_label_by_image_id(image_id, FINAL_TAG)
        if final:
            out[FINAL_TAG] = final
        tags_root = self.store.cache_dir / "labels"
        if tags_root.is_dir():
            for tag_dir in sorted(tags_root.iterdir()):
                if tag_dir.name != FINAL_TAG and self._local_label(image_id, tag_dir.name) is not None:
                    out[tag_dir.name] = image_id
        return out

    @_http_errors
    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """``final``: the local copy of the SEG series ``label_id``; other tags: the local label file."""
        if label_tag != FINAL_TAG:
            p = self._local_label(label_id, label_tag)
            return str(p) if p is not None else ""
        return super().get_label_uri(label_id, label_tag)

    def get_label(self, label_id: str, label_tag: str, params: Any = None) -> Any:
        uri = self.get_label_uri(label_id, label_tag)
        return io.BytesIO(Path(uri).read_bytes()) if uri else None

    @_http_errors
    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if label_tag == FINAL_TAG:
            seg = self.store.seg(label_id)
            if seg is not None:
                info = {"StudyInstanceUID": seg.study_uid, "SeriesInstanceUID": seg.series_uid,
                        "SOPInstanceUID": seg.sop_uid, "ReferencedSeriesInstanceUIDs": list(seg.referenced_series),
                        "ContentDateTime": seg.content_time, "SeriesDescription": seg.description,
                        "Manufacturer": seg.manufacturer}
        return {**info, **self._local_info().get("labels", {}).get(f"{label_tag}/{label_id}", {})}

    @_http_errors
    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Radiograph series with a final SEG (``label_tag`` None or ``final``) or a local label of ``label_tag``."""
        images = self.list_images()
        if label_tag not in (None, FINAL_TAG):
            return [i for i in images if self._local_label(i, label_tag) is not None]
        referenced = self.store.labelled_series()
        return [i for i in images if i in referenced]

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        labelled = set(self.get_labeled_images(label_tag, labels))
        return [i for i in self.list_images() if i not in labelled]

    @_http_errors
    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Save a label of ``image_id``: ``final`` labels go to the PACS as a SEG (returns its SeriesInstanceUID),
        other tags into the local cache (returns ``image_id``).

        Raises:
            HTTPException: 404 unknown image; 415 unsupported label file; 422 a label that does not fit the image
                (wrong size, empty, a SEG of another image).
        """
        try:
            rec = self.store.record(image_id)
        except PacsNotFoundError:
            raise _http(404, f"image {image_id!r} is not a {'/'.join(self.store.modalities)}"
                                                        f" series of the PACS {self.store.url}.") from None
        name = os.path.basename(label_filename).lower()
        ext = next((e for e in _LABEL_EXTENSIONS if name.endswith(e)), "")
        if label_tag != FINAL_TAG:
            if not ext:
                raise _http(415, f"label files must be one of {_LABEL_EXTENSIONS}, got "
                                                            f"{os.path.basename(label_filename)!r}.")
            dest = self.store.cache_dir / "labels" / label_tag / f"{image_id}{ext}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            for old in dest.parent.glob(f"{image_id}.*"):
                old.unlink()
            shutil.copyfile(label_filename, dest)
            self._update_local_info("labels", f"{label_tag}/{image_id}", label_info or {})
            return image_id
        image_path = self.store.download(rec.study_uid, rec.series_uid, folder="images")
        seg_ds = self._final_seg(image_id, image_path, label_filename, ext)
        if self.store.has_instance(str(seg_ds.StudyInstanceUID), str(seg_ds.SOPInstanceUID)):
            logger.info("save_label %s: this label is already in the PACS as SEG %s; nothing stored", image_id,
                        seg_ds.SeriesInstanceUID)
        else:
            self.store.store([seg_ds])
            logger.info("save_label %s: stored SEG series %s in study %s", image_id, seg_ds.SeriesInstanceUID,
                        seg_ds.StudyInstanceUID)
        self._update_local_info("labels", f"{FINAL_TAG}/{seg_ds.SeriesInstanceUID}", label_info or {})
        return str(seg_ds.SeriesInstanceUID)

    def _final_seg(self, image_id: str, image_path: Path, label_filename: str, ext: str) -> Any:
        """The SEG dataset to store for an uploaded final label."""
        import pydicom

        from monai_jrs.data.dicom import SEG_SOP_CLASS_UIDS, is_dicom_file, read_dicom_seg, write_dicom_seg
        from monai_jrs.data.io import load_mask, load_xray

        image = pydicom.dcmread(image_path, stop_before_pixels=True)
        if is_dicom_file(label_filename):
            ds = pydicom.dcmread(label_filename)
            if str(ds.get("SOPClassUID", "")) not in SEG_SOP_CLASS_UIDS:
                raise _http(415, f"a DICOM label must be a SEG, got SOP class "
                                                            f"{ds.get('SOPClassUID')} / Modality {ds.get('Modality')}.")
            try:
                read_dicom_seg(label_filename, source_sop_instance_uid=str(image.SOPInstanceUID))
            except ValueError as e:
                raise _http(422, f"the SEG does not label image {image_id!r}: {e}") from e
            return ds  # stored as it is, with its own UIDs
        if ext not in _LABEL_EXTENSIONS:
            raise _http(415, f"label files must be one of {_LABEL_EXTENSIONS} on the image "
                                                        f"grid, got {os.path.basename(label_filename)!r}.")
        try:
            _, meta = load_xray(image_path)
            mask, _ = load_mask(label_filename, reference_meta=meta, nifti_layout="cols_rows")
        except ValueError as e:
            raise _http(422, f"the label does not fit image {image_id!r}: {e}") from e
        arr = np.asarray(mask[0] if mask.ndim == 3 else mask).astype(np.uint8)
        if not arr.any():
            raise _http(422, f"the label of image {image_id!r} is empty; nothing stored.")
        digest = derived_uid("label", image.SOPInstanceUID, arr.shape, np.packbits(arr).tobytes().hex())
        with tempfile.TemporaryDirectory(prefix="jrs_seg_") as tmp:
            out = write_dicom_seg(arr, image_path, Path(tmp) / "seg.dcm", series_number=900,
                                  series_description=LABEL_SERIES_DESCRIPTION,
                                  series_instance_uid=derived_uid("label-series", digest),
                                  sop_instance_uid=derived_uid("label-instance", digest))
            return pydicom.dcmread(out)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        raise _http(405, "the PACS datastore never deletes anything from the PACS; "
                                                    f"label {label_id!r} stays (a newer saved label replaces it).")

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        self._update_local_info("labels", f"{label_tag}/{label_id}", info)

    # ------------------------------------------------------------------ datastore-wide
    def datalist(self) -> list[dict[str, Any]]:
        """``[{"image": local .dcm, "label": local SEG}]`` of every labelled radiograph (fetched on demand)."""
        out = []
        for image_id in self.get_labeled_images():
            label_id = self.get_label_by_image_id(image_id, FINAL_TAG)
            out.append({"image": self.get_image_uri(image_id), "label": self.get_label_uri(label_id, FINAL_TAG)})
        return out

    def get_dataset_archive(self, limit_cases: int | None) -> str:
        raise _http(501, "the PACS datastore offers no dataset archive; export the "
                                                    "studies from the PACS.")

    def refresh(self) -> None:
        self.store.forget()

    @_http_errors
    def status(self) -> dict[str, Any]:
        images = self.list_images()
        labelled = self.get_labeled_images()
        return {"total": len(images), "completed": len(labelled), "label_tags": {FINAL_TAG: len(labelled)}}

    def json(self) -> dict[str, Any]:
        return {"name": self._name, "url": self.store.url, "modalities": list(self.store.modalities),
                "cache_dir": str(self.store.cache_dir)}

    # ------------------------------------------------------------------ local side-store
    def _local_label(self, image_id: str, tag: str) -> Path | None:
        folder = self.store.cache_dir / "labels" / tag
        for ext in _LABEL_EXTENSIONS:
            p = folder / f"{image_id}{ext}"
            if p.is_file():
                return p
        return None

    def _local_info(self) -> dict[str, Any]:
        with self._lock:
            if self._info_path.is_file():
                try:
                    return json.loads(self._info_path.read_text(encoding="utf-8"))
                except ValueError:
                    logger.warning("ignoring the unreadable %s", self._info_path)
            return {}

    def _update_local_info(self, kind: str, key: str, info: dict[str, Any]) -> None:
        with self._lock:
            data = self._local_info()
            data.setdefault(kind, {}).setdefault(key, {}).update(json.loads(json.dumps(info, default=str)))
            self._info_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._info_path.with_suffix(".part")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, self._info_path)


# the read side inherited from DicomWebVisitSource answers PACS failures with their HTTP status too
for _name in ("list_images", "has_image", "patient_images", "visit_of", "get_image_uri"):
    setattr(JRSDicomWebDatastore, _name, _http_errors(getattr(DicomWebVisitSource, _name)))
del _name
