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
"""MONAI Label integration: registration-based lung segmentation of follow-up visits (``pip install .[monailabel]``).

The reference rule (:mod:`~monai_jrs.monailabel.reference`) needs no MONAI Label; the infer task
(:mod:`~monai_jrs.monailabel.infer`) needs it when built. The server app is ``apps/monailabel_jrs/main.py``.
"""

from __future__ import annotations

from .infer import RESULT_EXTENSIONS, InvalidInferRequestError, JRSLungInferTask, image_id_of, write_label_like
from .reference import (
    DICOM_DATE_TAGS,
    REFERENCE_CHOICES,
    DicomVisitReader,
    JsonVisitMapping,
    Reference,
    ReferenceFinder,
    ReferenceNotFoundError,
    Visit,
    VisitResolver,
    parse_visit_time,
)

__all__ = [
    "JRSLungInferTask",
    "InvalidInferRequestError",
    "RESULT_EXTENSIONS",
    "image_id_of",
    "write_label_like",
    "DICOM_DATE_TAGS",
    "REFERENCE_CHOICES",
    "DicomVisitReader",
    "JsonVisitMapping",
    "Reference",
    "ReferenceFinder",
    "ReferenceNotFoundError",
    "Visit",
    "VisitResolver",
    "parse_visit_time",
]
