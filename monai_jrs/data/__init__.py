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
"""Data of monai_jrs: loaders (radiographs, lung masks, DICOM and DICOM SEG), datalists, paired datasets.

The writers of registration results (:mod:`monai_jrs.data.writers`), the embedded dataset
(:mod:`monai_jrs.data.embedded`, rendered with the radiograph simulator :mod:`monai_jrs.simulation`), the
public-dataset readers (:mod:`monai_jrs.data.public_datasets`) and the test fixtures (:mod:`monai_jrs.data.testing`)
are imported on demand: ``import monai_jrs.data.embedded``. The MONAI transforms (loading, resizing to the network
grid, normalisation) are in :mod:`monai_jrs.transforms`; this package does not import it, as its io transforms import
the loaders here.
"""

from __future__ import annotations

from monai_jrs.utils.deprecate_utils import moved_names

from . import io, preprocessing
from .datalist import (
    DATALIST_SECTIONS,
    IMAGE_KEY,
    LABEL_KEY,
    LABEL_VALUES,
    MASK_KEY,
    PAIR_PATH_KEYS,
    SINGLE_PATH_KEYS,
    item_kind,
    load_jrs_datalist,
    make_longitudinal_pairs,
    split_by_patient,
    validate_jrs_item,
    write_jrs_datalist,
)
from .dataset import SynthesizePairD, SynthesizePaird, SynthesizePairDict, make_jrs_dataset, materialize
from .dicom import (
    NON_IMAGE_MODALITIES,
    SEG_SOP_CLASS_UIDS,
    SPACING_TAGS,
    is_dicom_file,
    list_dicom_images,
    read_dicom_seg,
    read_dicom_xray,
    scan_dicom_folder,
    write_dicom_seg,
)
from .io import (
    NIFTI_EXTENSIONS,
    PIL_EXTENSIONS,
    from_collatable_meta,
    load_mask,
    load_xray,
    save_nifti,
    to_collatable_meta,
)
__all__ = [
    "DATALIST_SECTIONS",
    "IMAGE_KEY",
    "LABEL_KEY",
    "LABEL_VALUES",
    "MASK_KEY",
    "PAIR_PATH_KEYS",
    "SINGLE_PATH_KEYS",
    "item_kind",
    "load_jrs_datalist",
    "make_longitudinal_pairs",
    "split_by_patient",
    "validate_jrs_item",
    "write_jrs_datalist",
    "SynthesizePairD",
    "SynthesizePaird",
    "SynthesizePairDict",
    "make_jrs_dataset",
    "materialize",
    "NON_IMAGE_MODALITIES",
    "SEG_SOP_CLASS_UIDS",
    "SPACING_TAGS",
    "is_dicom_file",
    "list_dicom_images",
    "read_dicom_seg",
    "read_dicom_xray",
    "scan_dicom_folder",
    "write_dicom_seg",
    "NIFTI_EXTENSIONS",
    "PIL_EXTENSIONS",
    "from_collatable_meta",
    "load_mask",
    "load_xray",
    "save_nifti",
    "to_collatable_meta",
]

#: the transforms once re-exported here moved to monai_jrs.transforms (old paths deprecated, removed in 0.2.0).
__getattr__ = moved_names(__name__, {**io.__getattr__.moved, **preprocessing.__getattr__.moved})
