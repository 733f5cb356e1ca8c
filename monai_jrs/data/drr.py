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
"""Deprecated (since 0.1.0, removed in 0.2.0): the DRR renderer moved to
:mod:`monai_jrs.simulation.drr`.

The old names (every name of the new module's ``__all__``) still work here, with a ``FutureWarning``.
"""

from __future__ import annotations

from monai_jrs.simulation import drr as _new
from monai_jrs.utils.deprecate_utils import moved_names

__all__: list[str] = []

__getattr__ = moved_names(__name__, {_new.__name__: _new.__all__})
