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
One difference: ``start_server`` binds to ``127.0.0.1`` unless ``--host`` (``-i``) says otherwise (``monailabel``'s own
default is ``0.0.0.0``, every network interface), so a server started for one workstation is not reachable from the
hospital network by accident.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: the address ``start_server`` binds to when no ``--host`` is given.
DEFAULT_HOST = "127.0.0.1"


def with_default_host(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--host 127.0.0.1`` added to a ``start_server`` command that names no host.

    Example:
        >>> with_default_host(["start_server", "--app", "a"])
        ['start_server', '--app', 'a', '--host', '127.0.0.1']
        >>> with_default_host(["start_server", "-i", "0.0.0.0"])
        ['start_server', '-i', '0.0.0.0']
    """
    argv = list(argv)
    if "start_server" not in argv:
        return argv
    if any(a in ("-i", "--host") or a.startswith("--host=") for a in argv):
        return argv
    return [*argv, "--host", DEFAULT_HOST]

from monai_jrs.monailabel.compat import install_pydicom_seg_compat
from monai_jrs.utils.deps import MissingDependencyError, require

if __name__ == "__main__":
    install_pydicom_seg_compat()
    try:
        main_module = require("monailabel.main", "python -m monai_jrs.monailabel")
    except MissingDependencyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *with_default_host(sys.argv[1:])]
    main_module.Main().run()
