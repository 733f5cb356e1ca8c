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
"""pytest configuration shared by the unit tests and the doctests of ``monai_jrs``.

Under pytest-xdist every worker would otherwise start one intra-op thread per core, so ``-n 2`` on a 2-core machine
runs 4 busy threads on 2 cores; OpenMP spin-waiting then makes small-tensor tests ~20x slower. Each worker gets an
equal share of the cores instead (a no-op without xdist).
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))


@pytest.fixture(autouse=True)
def _doctest_torch(doctest_namespace: dict) -> None:
    """Docstring examples use ``torch`` without importing it, like MONAI's."""
    doctest_namespace["torch"] = torch
    torch.manual_seed(0)
