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
"""Deprecated aliases of names that moved to another module, kept for one release.

A module whose public names moved away defines ``__getattr__ = moved_names(__name__, {...})``: every access to a moved
name there, ``from old.module import name`` included, returns the object from its new module and emits a
``FutureWarning`` that names the new path. Importing the old module itself stays silent.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["DEPRECATED_SINCE", "REMOVED_IN", "moved_names"]

#: version in which the moved paths were deprecated, and the one that removes them.
DEPRECATED_SINCE, REMOVED_IN = "0.1.0", "0.2.0"


def moved_names(old_module: str, new_modules: Mapping[str, Iterable[str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving the names that moved out of ``old_module``, with a ``FutureWarning``.

    Args:
        old_module: the old module's ``__name__``.
        new_modules: new module path -> the names that moved there (each keeps its name). The returned function
            keeps it as its ``moved`` attribute (so another old path can serve the same names).

    Example::

        >>> getattr_ = moved_names("pkg.old", {"math": ["pi"]})
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     value = getattr_("pi")
        >>> round(value, 2), caught[0].category.__name__
        (3.14, 'FutureWarning')
        >>> print(caught[0].message)
        pkg.old.pi has moved to math.pi (deprecated since 0.1.0); the old path will be removed in 0.2.0.
    """
    moved = {new: tuple(names) for new, names in new_modules.items()}
    where = {name: new for new, names in moved.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        new = where[name]
        warnings.warn(
            f"{old_module}.{name} has moved to {new}.{name} (deprecated since {DEPRECATED_SINCE}); "
            f"the old path will be removed in {REMOVED_IN}.",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new), name)

    __getattr__.moved = moved  # type: ignore[attr-defined]
    return __getattr__
