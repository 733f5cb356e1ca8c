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
"""Optional dependencies: one clear message naming the package and the extra that installs it.

Every module monai_jrs imports at run time is either in ``install_requires`` or listed in :data:`OPTIONAL_PACKAGES`
with the extra of ``setup.py`` that installs it (``tests/test_packaging.py`` checks both against the source).
Code that needs an optional package calls :func:`require` where it needs it, never at module import, so that
``import monai_jrs.<anything>`` works with the core install and the user gets :class:`MissingDependencyError`
(an ``ImportError``) with a ``pip install`` line instead of a traceback from deep inside.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

__all__ = ["OptionalPackage", "OPTIONAL_PACKAGES", "MissingDependencyError", "require"]


@dataclass(frozen=True)
class OptionalPackage:
    """An optional distribution: its PyPI name, the ``monai_jrs`` extra that installs it and a note for the user."""

    distribution: str
    extra: str
    note: str = ""


#: top-level import name -> the distribution and extra that provide it.
OPTIONAL_PACKAGES: dict[str, OptionalPackage] = {
    "itk": OptionalPackage("itk-elastix", "elastix"),
    "monailabel": OptionalPackage(
        "monailabel",
        "monailabel",
        "MONAI Label 0.8.5 needs torchvision: install `pip install torch==2.14.1 torchvision==0.29.1` first "
        "(docs/monailabel.md)",
    ),
    "SimpleITK": OptionalPackage("SimpleITK", "monailabel"),
    "dicomweb_client": OptionalPackage("dicomweb-client", "pacs", "a DICOMweb PACS (monai-jrs pacs, MONAI Label)"),
    "requests": OptionalPackage("requests", "pacs"),
    "fastapi": OptionalPackage("fastapi", "monailabel", "a dependency of monailabel"),
}


class MissingDependencyError(ImportError):
    """An optional package that a feature needs is not installed; the message says how to install it."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming its distribution and extra.

    Args:
        module: dotted module name; its top-level package must be a key of :data:`OPTIONAL_PACKAGES`.
        purpose: what needs it, for the message (e.g. ``"the elastix baseline"``).

    Returns:
        The imported module.

    Raises:
        ValueError: ``module`` is not a known optional package (a programming error).
        MissingDependencyError: the package is not installed (or fails to import; the cause is chained).

    Example::

        >>> require("no_such_package", "a doctest")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `module` must be one of the optional packages [...] (or a submodule), got 'no_such_package'.
    """
    top = module.split(".", 1)[0]
    if top not in OPTIONAL_PACKAGES:
        raise ValueError(
            f"`module` must be one of the optional packages {list(OPTIONAL_PACKAGES)} (or a submodule), got {module!r}."
        )
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pkg = OPTIONAL_PACKAGES[top]
        note = f" {pkg.note}." if pkg.note else ""
        raise MissingDependencyError(
            f"{purpose} needs the package '{pkg.distribution}', which is not installed or cannot be imported "
            f"({type(e).__name__}: {e}). Install it with: pip install 'monai_jrs[{pkg.extra}]' "
            f"(or pip install {pkg.distribution}).{note}"
        ) from e
