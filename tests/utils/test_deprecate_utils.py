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
"""Deprecated aliases of the moved modules and names: the same objects, with a ``FutureWarning`` naming the new path."""

from __future__ import annotations

import importlib
import subprocess
import sys
import unittest
import warnings

from parameterized import parameterized

from monai_jrs.simulation import drr, radiograph
from monai_jrs.utils.deprecate_utils import moved_names

_SPATIAL = ["GridInfo", "resize_to_network", "restore_to_original", "ddf_to_original", "full_resolution_ddf",
            "ResizeToNetworkd", "ResizeToNetworkD", "ResizeToNetworkDict"]
_INTENSITY = ["normalize_intensity", "NormalizeXRayd", "NormalizeXRayD", "NormalizeXRayDict"]
_LOADERS = ["LoadXRay", "LoadXRayd", "LoadXRayD", "LoadXRayDict", "LoadLungMaskd", "LoadLungMaskD", "LoadLungMaskDict"]
_PREPROCESSING = [
    *[(n, "monai_jrs.transforms.spatial") for n in _SPATIAL],
    *[(n, "monai_jrs.transforms.intensity") for n in ["NormalizeXRay", *_INTENSITY]],
    ("keep_largest_components", "monai_jrs.transforms.post"),
]

#: (old module, name, new module) of every deprecated alias.
ALIASES = [
    *[("monai_jrs.data.preprocessing", n, new) for n, new in _PREPROCESSING],
    *[("monai_jrs.data.io", n, "monai_jrs.transforms.io") for n in _LOADERS],
    *[("monai_jrs.data", n, "monai_jrs.transforms.io") for n in _LOADERS],
    *[("monai_jrs.data", n, new) for n, new in _PREPROCESSING],
    *[("monai_jrs.data.drr", n, "monai_jrs.simulation.drr") for n in drr.__all__],
    *[("monai_jrs.data.radiograph", n, "monai_jrs.simulation.radiograph") for n in radiograph.__all__],
    ("monai_jrs.apps.registration", "OUTPUT_FILES", "monai_jrs.data.writers"),
    ("monai_jrs.apps.registration", "save_registration_result", "monai_jrs.data.writers"),
    ("monai_jrs.apps.registration", "SaveRegistrationOutputsd", "monai_jrs.transforms.io"),
]
OLD_MODULES = sorted({old for old, _, _ in ALIASES})


class TestMovedNames(unittest.TestCase):
    @parameterized.expand([(f"{old}.{name}", old, name, new) for old, name, new in ALIASES])
    def test_alias_is_the_moved_object_and_warns(self, _, old, name, new):
        module = importlib.import_module(old)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = getattr(module, name)
        self.assertIs(value, getattr(importlib.import_module(new), name))
        self.assertEqual([w.category for w in caught], [FutureWarning])
        message = str(caught[0].message)
        self.assertIn(f"{old}.{name} has moved to {new}.{name}", message)
        self.assertIn("the old path will be removed in 0.2.0", message)

    @parameterized.expand([(old,) for old in OLD_MODULES])
    def test_every_alias_is_listed(self, old):
        """Each old module serves exactly the aliases listed here (a new or forgotten alias fails this test)."""
        moved = importlib.import_module(old).__getattr__.moved
        served = {name: new for new, names in moved.items() for name in names}
        self.assertEqual(served, {name: new for o, name, new in ALIASES if o == old})

    def test_from_import_warns(self):
        with self.assertWarnsRegex(FutureWarning, "monai_jrs.transforms.spatial.GridInfo"):
            from monai_jrs.data.preprocessing import GridInfo
        from monai_jrs.transforms import GridInfo as new

        self.assertIs(GridInfo, new)

    def test_unknown_name_and_submodules(self):
        import monai_jrs.data
        import monai_jrs.data.preprocessing

        with self.assertRaisesRegex(AttributeError, "no attribute 'nothing'"):
            monai_jrs.data.preprocessing.nothing  # noqa: B018
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            from monai_jrs.data import embedded, writers  # submodules are not aliases: no warning

        self.assertTrue(callable(embedded.generate_embedded_dataset) and callable(writers.save_registration_result))

    def test_importing_the_old_modules_is_silent(self):
        code = "; ".join(f"import {m}" for m in OLD_MODULES)
        proc = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True,
                              text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_helper(self):
        getattr_ = moved_names("pkg.old", {"math": ["pi", "tau"]})
        self.assertEqual(getattr_.moved, {"math": ("pi", "tau")})
        with self.assertWarns(FutureWarning):
            self.assertEqual(getattr_("tau"), 2 * getattr_("pi"))
        with self.assertRaises(AttributeError):
            getattr_("e")


if __name__ == "__main__":
    unittest.main()
