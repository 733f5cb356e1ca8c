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
"""Packaging: every run-time import is a declared dependency, every subpackage and the bundle are packaged.

scipy was once imported in five places without being in ``install_requires``; CI stayed green because the test extras
installed it. These tests read the source (``ast``) and ``setup.py`` instead of the environment, so an undeclared
import fails here whatever happens to be installed. The fresh-machine install itself is proven by ``.ci/run``
(a new virtual environment with the core install only, and a wheel installed into another).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import unittest
import zipfile
from pathlib import Path

import pytest
from parameterized import parameterized

from monai_jrs.utils.deps import OPTIONAL_PACKAGES, MissingDependencyError, require

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "monai_jrs"

#: import name -> distribution name, where they differ or are not obvious.
IMPORT_TO_DISTRIBUTION = {
    "PIL": "pillow",
    "ignite": "pytorch-ignite",
    "yaml": "pyyaml",
    "itk": "itk-elastix",
}


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _requirement_name(req: str) -> str:
    return _normalise(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])


def _setup_requirements() -> tuple[set[str], dict[str, set[str]]]:
    """``install_requires`` and ``extras_require`` of setup.py, read without running it."""
    tree = ast.parse((REPO / "setup.py").read_text())
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("install_requires", "extras_require"):
                found[name] = ast.literal_eval(node.value)
    core = {_requirement_name(r) for r in found["install_requires"]}  # type: ignore[union-attr]
    extras = {k: {_requirement_name(r) for r in v} for k, v in found["extras_require"].items()}  # type: ignore[union-attr]
    return core, extras


def _imports(path: Path) -> list[tuple[str, bool]]:
    """Top-level names of the absolute imports of a module, each with whether it runs at module import time.

    Imports inside functions, and under ``if TYPE_CHECKING:``, do not run when the module is imported.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, at_import: bool) -> None:
        for child in ast.iter_child_nodes(node):
            lazy = at_import
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                lazy = False
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name.split(".")[0], at_import) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.append((child.module.split(".")[0], at_import))
            visit(child, lazy)

    visit(tree, True)
    return out


def _third_party(name: str) -> bool:
    return name not in sys.stdlib_module_names and name not in ("monai_jrs", "__future__")


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "bundle" not in p.relative_to(PACKAGE).parts)


class TestDeclaredDependencies(unittest.TestCase):
    def test_every_import_is_declared(self):
        core, extras = _setup_requirements()
        problems = []
        for path in SOURCES:
            rel = path.relative_to(REPO)
            for name, at_import in _imports(path):
                if not _third_party(name):
                    continue
                dist = _normalise(IMPORT_TO_DISTRIBUTION.get(name, name))
                if dist in core:
                    continue
                if name not in OPTIONAL_PACKAGES:
                    problems.append(f"{rel}: imports {name!r} (distribution {dist!r}), which setup.py does not declare")
                    continue
                opt = OPTIONAL_PACKAGES[name]
                if _normalise(opt.distribution) not in extras.get(opt.extra, set()):
                    problems.append(f"{rel}: {name!r} is said to come with extra {opt.extra!r}, which lacks it")
                if at_import:
                    problems.append(f"{rel}: imports optional {name!r} at module import; import it where it is used")
        self.assertEqual(problems, [], "\n".join(problems))

    def test_checker_sees_lazy_and_eager_imports(self):
        """The AST walk itself: a function-level import is lazy, a module-level one eager, TYPE_CHECKING skipped."""
        src = "import scipy\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import nope\n" \
              "def f():\n    import itk\n    from monailabel.x import y\n"
        path = Path(self._tmp()) / "m.py"
        path.write_text(src)
        self.assertEqual(_imports(path), [("scipy", True), ("typing", True), ("itk", False), ("monailabel", False)])

    def _tmp(self) -> str:
        import tempfile

        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_bundle_config_imports_are_declared(self):
        """``$import x`` lines and ``_target_`` modules of the bundle configs are core dependencies."""
        core, _ = _setup_requirements()
        problems = []
        for cfg in sorted((REPO / "bundle" / "configs").glob("*.json")):
            text = cfg.read_text()
            names = set(re.findall(r"\$import ([A-Za-z_]\w*)", text))
            names |= {t.split(".")[0] for t in re.findall(r'"_target_":\s*"([\w.]+)"', text)}
            for name in sorted(names):
                if _third_party(name) and _normalise(IMPORT_TO_DISTRIBUTION.get(name, name)) not in core:
                    problems.append(f"{cfg.name}: {name!r} is not in install_requires")
        self.assertEqual(problems, [], "\n".join(problems))

    def test_every_package_folder_has_init(self):
        """``find_packages`` skips a folder without ``__init__.py`` (``monai_jrs.data`` was once left out)."""
        missing = [
            str(d.relative_to(REPO))
            for d in [PACKAGE, *PACKAGE.rglob("*")]
            if d.is_dir() and d.name != "__pycache__" and "bundle" not in d.relative_to(PACKAGE).parts
            and any(d.glob("*.py")) and not (d / "__init__.py").is_file()
        ]
        self.assertEqual(missing, [])


class TestShippedBundle(unittest.TestCase):
    def test_default_bundle_dir_is_the_repository_bundle(self):
        from monai_jrs.apps.registration import default_bundle_dir

        root = default_bundle_dir()
        self.assertEqual(root.resolve(), (REPO / "bundle").resolve())
        self.assertTrue((root / "configs" / "inference.json").is_file())
        self.assertTrue((root / "models" / "model.pt").is_file())

    def test_package_link_points_at_the_bundle(self):
        """One copy of the bundle: ``monai_jrs/bundle`` is a link to ``bundle/``, not a second tree that can drift."""
        link = PACKAGE / "bundle"
        self.assertTrue(link.is_symlink(), "monai_jrs/bundle must be a symbolic link to ../bundle")
        self.assertEqual(link.resolve(), (REPO / "bundle").resolve())


class TestOptionalDependencies(unittest.TestCase):
    @parameterized.expand([("itk", "the elastix baseline"), ("monailabel", "the MONAI Label app")])
    def test_message_names_package_and_extra(self, module, purpose):
        opt = OPTIONAL_PACKAGES[module]
        saved = sys.modules.get(module)
        sys.modules[module] = None  # type: ignore[assignment]  # makes `import module` raise ImportError
        try:
            with self.assertRaises(MissingDependencyError) as cm:
                require(module, purpose)
        finally:
            if saved is None:
                sys.modules.pop(module, None)
            else:
                sys.modules[module] = saved
        msg = str(cm.exception)
        self.assertIn(purpose, msg)
        self.assertIn(f"'{opt.distribution}'", msg)
        self.assertIn(f"pip install 'monai_jrs[{opt.extra}]'", msg)
        self.assertIsInstance(cm.exception, ImportError)

    def test_unknown_module_is_a_value_error(self):
        with self.assertRaisesRegex(ValueError, "must be one of the optional packages"):
            require("numpy", "x")

    def test_extras_of_setup_hold_each_optional_package(self):
        _, extras = _setup_requirements()
        for name, opt in OPTIONAL_PACKAGES.items():
            self.assertIn(_normalise(opt.distribution), extras[opt.extra], name)


@pytest.mark.slow
class TestWheel(unittest.TestCase):
    """``pip wheel .`` holds every subpackage and the bundle as real files (the link resolved)."""

    def test_wheel_contents(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "src"  # a copy, so that the build leaves no build/ folder in the checkout
            shutil.copytree(PACKAGE, src / "monai_jrs", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copytree(REPO / "bundle", src / "bundle")
            for name in ("setup.py", "setup.cfg", "README.md", "LICENSE"):
                shutil.copy2(REPO / name, src / name)
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", d, str(src)],
                check=True, capture_output=True, text=True, timeout=600,
            )
            (wheel,) = Path(d).glob("monai_jrs-*.whl")
            with zipfile.ZipFile(wheel) as zf:
                names = set(zf.namelist())
                packaged = {str(Path(n).parent) for n in names if n.endswith("/__init__.py")}
                expected = {
                    str(p.parent.relative_to(REPO)) for p in PACKAGE.rglob("__init__.py")
                    if "bundle" not in p.relative_to(PACKAGE).parts
                }
                self.assertEqual(expected - packaged, set())
                for rel in ("configs/inference.json", "configs/train.json", "configs/metadata.json", "models/model.pt",
                            "docs/README.md", "LICENSE"):
                    self.assertIn(f"monai_jrs/bundle/{rel}", names)
                    self.assertEqual(zf.read(f"monai_jrs/bundle/{rel}"), (REPO / "bundle" / rel).read_bytes(), rel)
                json.loads(zf.read("monai_jrs/bundle/configs/metadata.json"))
                stray = [n for n in names if n.startswith("monai_jrs/bundle/") and not re.match(
                    r"monai_jrs/bundle/(LICENSE|configs/[\w.]+\.(json|conf)|docs/[\w.]+\.(md|txt)|models/model\.pt)$", n)]
                self.assertEqual(stray, [])
