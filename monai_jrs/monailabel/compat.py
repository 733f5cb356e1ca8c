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
"""Make MONAI Label 0.8.5 importable beside pydicom 3 (which monai_jrs and highdicom need).

MONAI Label 0.8.5 imports ``pydicom_seg`` at start-up (``monailabel/datastore/utils/convert.py``, reached from the
server's ``/infer`` endpoint module), and pydicom-seg 0.4.1 imports ``pydicom._storage_sopclass_uids``, a module
pydicom 3.0 removed (MONAILabel issue #1841). The storage SOP class UIDs it needs live in :mod:`pydicom.uid` since
pydicom 2.3, so :func:`install_pydicom_seg_compat` registers an alias module built from :mod:`pydicom.uid`.
Only the import is fixed: pydicom-seg's own DICOM SEG reading/writing (used by MONAI Label for DICOMweb datastores) is
not tested under pydicom 3; monai_jrs writes DICOM SEG with highdicom.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types

__all__ = ["install_pydicom_seg_compat"]

logger = logging.getLogger(__name__)

_ALIAS = "pydicom._storage_sopclass_uids"


def install_pydicom_seg_compat() -> bool:
    """Register ``pydicom._storage_sopclass_uids`` as an alias of the storage UIDs of :mod:`pydicom.uid` if missing.

    Returns:
        True when the alias was installed, False when pydicom already provides the module (pydicom < 3) or the alias
        is in place.
    """
    if _ALIAS in sys.modules:
        return False
    import pydicom.uid

    if importlib.util.find_spec(_ALIAS) is not None:
        return False
    module = types.ModuleType(_ALIAS, "Storage SOP class UIDs (alias of pydicom.uid for pydicom-seg under pydicom 3)")
    for name in dir(pydicom.uid):
        value = getattr(pydicom.uid, name)
        if name[:1].isupper() and isinstance(value, pydicom.uid.UID):
            setattr(module, name, value)
    sys.modules[_ALIAS] = module
    logger.debug("installed %s as an alias of pydicom.uid (pydicom %s)", _ALIAS, pydicom.__version__)
    return True
