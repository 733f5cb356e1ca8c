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
"""MONAI Label app: lung masks for every later visit of a patient, by JRS registration to the annotated visit.

Start (see docs/monailabel.md)::

    monailabel start_server --app apps/monailabel_jrs --studies /data/cxr --conf reference_choice earliest

``--conf`` keys (all optional):
    - ``bundle_dir``: monai_jrs bundle folder (default: the repository's ``bundle/`` with the shipped weights).
    - ``device``: ``cpu`` / ``cuda`` (default: ``cuda`` when available).
    - ``reference_rule``: ``auto`` (JSON mapping first, DICOM headers second), ``dicom`` or ``json``.
    - ``reference_mapping``: JSON visit mapping (relative to ``--studies``); default ``visits.json`` when it exists.
    - ``reference_choice``: ``earliest`` (default), ``latest`` or ``nearest``.
    - ``reference_date_tags``: comma-separated DICOM date attributes in order (default
      ``StudyDate,AcquisitionDate,ContentDate,SeriesDate``).
    - ``label_tag``: datastore label tag of the annotations (default ``final``).
    - ``result_extension``: ``.nii.gz`` (default), ``.nii``, ``.nrrd`` or ``.png``.
    - ``network_size``: network grid (default: the bundle's).
    - ``preload``: ``true`` to load the network at start-up.
    - ``dicomweb_cache``: local cache of a DICOMweb PACS (default ``$MONAI_JRS_CACHE/dicomweb/<hash of the URL>``).
    - ``dicomweb_ttl``: seconds a PACS series listing is reused (default 5: new studies show within seconds).

``--studies http(s)://<pacs>/dicom-web`` serves a PACS through :class:`monai_jrs.monailabel.dicomweb.JRSDicomWebDatastore`
(images are the DX/CR series, labels the SEGs that reference them, saved labels go back by STOW-RS; see docs/pacs.md).
Credentials: ``MONAI_JRS_DICOMWEB_USERNAME``/``_PASSWORD``, ``MONAI_JRS_DICOMWEB_TOKEN`` or a netrc file, never on the
command line.

The local datastore serves ``*.dcm`` besides MONAI Label's default extensions (``MONAI_LABEL_DATASTORE_FILE_EXT``).
The app never downloads anything: the network comes from the local bundle, not from the MONAI model zoo, and the
DICOMweb datastore needs no dcmqi (MONAI Label's own one fetches it from GitHub at start-up).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from fastapi import HTTPException

from monai_jrs.monailabel import (
    InvalidInferRequestError,
    JRSLungInferTask,
    ReferenceFinder,
    ReferenceNotFoundError,
    VisitResolver,
)
from monai_jrs.data.dicomweb import PacsError
from monai_jrs.monailabel.compat import install_pydicom_seg_compat
from monai_jrs.monailabel.reference import DICOM_DATE_TAGS

install_pydicom_seg_compat()  # before any monailabel import (pydicom 3; see monai_jrs.monailabel.compat)

from monailabel.config import settings  # noqa: E402
from monailabel.datastore.local import LocalDatastore  # noqa: E402
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.datastore import Datastore  # noqa: E402
from monailabel.interfaces.tasks.infer_v2 import InferTask  # noqa: E402
from monailabel.utils.others.generic import strtobool  # noqa: E402

logger = logging.getLogger(__name__)

#: HTTP status of an infer request that has no labelled reference visit (the body's ``detail`` says why).
NO_REFERENCE_STATUS = 404
#: HTTP status of an infer request with an unsupported parameter value (``result_extension``, ``reference_choice``),
#: or whose image or reference label cannot be read (corrupt file, not a radiograph).
INVALID_REQUEST_STATUS = 422


class JRSLungApp(MONAILabelApp):
    """MONAI Label app with the ``jrs_lung`` infer task (:class:`monai_jrs.monailabel.JRSLungInferTask`)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.model_name = "jrs_lung"
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monai_jrs - JRS lung masks for follow-up chest X-rays",
            description="Registration-based lung segmentation: annotate one visit, get every later visit's lungs",
            version="0.1",
        )

    def init_datastore(self) -> Datastore:
        """The local datastore, also serving ``*.dcm`` (DICOM DX/CR files); DICOMweb and others as MONAI Label does."""
        if self.studies.startswith(("http://", "https://")):
            from monai_jrs.monailabel.dicomweb import JRSDicomWebDatastore

            cache = self.conf.get("dicomweb_cache") or (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
            return JRSDicomWebDatastore(self.studies.rstrip("/"), cache_dir=cache,
                                        ttl_s=float(self.conf.get("dicomweb_ttl", 5.0)))
        extensions = list(dict.fromkeys([*settings.MONAI_LABEL_DATASTORE_FILE_EXT, "*.dcm"]))
        return LocalDatastore(
            self.studies,
            extensions=extensions,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self) -> dict[str, InferTask]:
        conf = self.conf
        mapping: Any = conf.get("reference_mapping")
        if mapping:
            mapping = mapping if os.path.isabs(mapping) else os.path.join(self.studies, mapping)
            if not os.path.isfile(mapping):
                raise FileNotFoundError(f"--conf reference_mapping: expected a JSON visit mapping file, got {mapping} "
                                        "(missing).")
        elif os.path.isfile(os.path.join(self.studies, "visits.json")):
            mapping = os.path.join(self.studies, "visits.json")
        tags = conf.get("reference_date_tags", ",".join(DICOM_DATE_TAGS))
        date_tags = [t.strip() for t in tags.split(",") if t.strip()]
        finder = ReferenceFinder(
            VisitResolver(conf.get("reference_rule", "auto"), mapping=mapping or None, date_tags=date_tags),
            choice=conf.get("reference_choice", "earliest"),
            label_tag=conf.get("label_tag", "final"),
        )
        size = conf.get("network_size")
        task = JRSLungInferTask(
            self.datastore(),
            finder=finder,
            bundle_dir=conf.get("bundle_dir") or None,
            device=conf.get("device", "cuda" if torch.cuda.is_available() else "cpu"),
            size=int(size) if size else None,
            result_extension=conf.get("result_extension", ".nii.gz"),
            preload=strtobool(conf.get("preload", "false")),
        )
        logger.info("jrs_lung: bundle %s, reference rule %s, choice %s, mapping %s", task.bundle_dir,
                    finder.resolver.rule, finder.choice, mapping)
        return {self.model_name: task}

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer, keeping the datastore image id and answering HTTP 404 without a labelled reference."""
        request = dict(request)
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image):
            request.setdefault("image_id", image)
        try:
            return super().infer(request, datastore)
        except ReferenceNotFoundError as e:
            logger.warning("infer %s: %s", request.get("model"), e)
            raise HTTPException(status_code=NO_REFERENCE_STATUS, detail=str(e)) from e
        except InvalidInferRequestError as e:
            logger.warning("infer %s: %s", request.get("model"), e)
            raise HTTPException(status_code=INVALID_REQUEST_STATUS, detail=str(e)) from e
        except PacsError as e:
            logger.warning("infer %s: %s", request.get("model"), e)
            raise HTTPException(status_code=e.http_status, detail=str(e)) from e
        except ValueError as e:  # an unreadable image or label (corrupt DICOM, not a radiograph, NaNs)
            logger.warning("infer %s: %s", request.get("model"), e)
            raise HTTPException(status_code=INVALID_REQUEST_STATUS, detail=f"cannot use this image: {e}") from e
