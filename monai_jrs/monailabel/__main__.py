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
"""``python -m monai_jrs.monailabel <monailabel arguments>``: the ``monailabel`` command, importable under pydicom 3.

Takes exactly the arguments of ``monailabel`` (``start_server --app ... --studies ... --conf k v``) and runs
``monailabel.main`` in this interpreter after :func:`~monai_jrs.monailabel.compat.install_pydicom_seg_compat`.
"""

from __future__ import annotations

import sys

from monai_jrs.monailabel.compat import install_pydicom_seg_compat
from monai_jrs.utils.deps import MissingDependencyError, require

if __name__ == "__main__":
    install_pydicom_seg_compat()
    try:
        main_module = require("monailabel.main", "python -m monai_jrs.monailabel")
    except MissingDependencyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    main_module.Main().run()
