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
"""JSON datalists for joint registration and segmentation, longitudinal pairing and patient-level splits.

Schema
------
A Decathlon-like JSON object (as read by :func:`monai.data.load_decathlon_datalist`) with optional metadata and
up to three sections, ``"training"``, ``"validation"`` and ``"test"``. Each section is a list of items, and every
item is one of two kinds:

* a **pair** (a longitudinal follow-up of one patient), keys from :class:`~monai_jrs.utils.enums.JRSKeys`:

  - ``"patient_id"`` (required, str),
  - ``"reference"`` (required): the reference image (first or annotated visit),
  - ``"reference_mask"`` (required): its {0, 1} lung mask (left + right lung = 1),
  - ``"floating"`` (required): the follow-up image to register onto the reference,
  - ``"floating_mask"`` (optional): ground-truth mask of the follow-up, for evaluation,
  - ``"visit"`` (optional, int or str): visit index or date of the floating image,
  - ``"label"`` (optional): ``"normal"`` or ``"diseased"``.

* a **single image** (for sets without follow-ups; training pairs are synthesised from it by the deformation
  transform, see :mod:`monai_jrs.data.dataset`):

  - ``"image"`` (required), ``"mask"`` (required), ``"patient_id"`` (optional), ``"label"`` (optional),
    ``"spacing"`` (optional, ``[row_mm, col_mm]``).

Path values are a string (a file, or a folder such as a DICOM series) or a list of strings (multi-channel, as in
MONAI). Relative paths resolve against ``base_dir`` (default: the folder of the JSON file), exactly as
:func:`monai.data.load_decathlon_datalist` does for ``"image"``. Other keys are kept unchanged. Like the Decathlon
format, a ``"test"`` section may list bare image paths, which become ``{"image": path}`` items.

Example::

    {
        "name": "follow-up chest X-rays",
        "description": "first visit = reference",
        "training": [
            {"patient_id": "P001", "reference": "P001/v0.dcm", "reference_mask": "P001/v0_lungs.nii.gz",
             "floating": "P001/v1.dcm", "visit": 1, "label": "normal"},
            {"patient_id": "MCUCXR_0001", "image": "CXR_png/MCUCXR_0001_0.png", "mask": "masks/MCUCXR_0001_0.png"}
        ],
        "validation": [],
        "test": []
    }

Why not call :func:`monai.data.load_decathlon_datalist` directly: it joins ``base_dir`` onto *every* string value
that happens to name an existing path, so a ``patient_id`` (or ``label``) equal to a folder name in ``base_dir``
would silently become a path. This module resolves only the path keys listed above, with the same joining rule.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

from monai_jrs.utils.enums import JRSKeys

__all__ = [
    "IMAGE_KEY",
    "MASK_KEY",
    "LABEL_KEY",
    "LABEL_VALUES",
    "PAIR_PATH_KEYS",
    "SINGLE_PATH_KEYS",
    "DATALIST_SECTIONS",
    "item_kind",
    "validate_jrs_item",
    "load_jrs_datalist",
    "write_jrs_datalist",
    "make_longitudinal_pairs",
    "split_by_patient",
]

logger = logging.getLogger(__name__)

#: key of the image of a single-image item.
IMAGE_KEY = "image"
#: key of the lung mask of a single-image item.
MASK_KEY = "mask"
#: key of the optional "normal"/"diseased" label (not a path, unlike Decathlon's segmentation "label").
LABEL_KEY = "label"
#: allowed values of :data:`LABEL_KEY`.
LABEL_VALUES = ("normal", "diseased")
#: sections of a datalist file.
DATALIST_SECTIONS = ("training", "validation", "test")

_PAIR_REQUIRED = (
    JRSKeys.PATIENT_ID.value,
    JRSKeys.REFERENCE.value,
    JRSKeys.REFERENCE_MASK.value,
    JRSKeys.FLOATING.value,
)
_SINGLE_REQUIRED = (IMAGE_KEY, MASK_KEY)
#: path-valued keys of a pair item.
PAIR_PATH_KEYS = (
    JRSKeys.REFERENCE.value,
    JRSKeys.REFERENCE_MASK.value,
    JRSKeys.FLOATING.value,
    JRSKeys.FLOATING_MASK.value,
)
#: path-valued keys of a single-image item.
SINGLE_PATH_KEYS = (IMAGE_KEY, MASK_KEY)


def item_kind(item: Mapping[str, Any]) -> str:
    """Return ``"pair"`` or ``"single"`` for a datalist item.

    Args:
        item: a datalist item.

    Raises:
        TypeError: when ``item`` is not a mapping.
        ValueError: when it has both or neither of the ``"reference"`` and ``"image"`` keys.
    """
    if not isinstance(item, Mapping):
        raise TypeError(f"a datalist item must be a dict, got {type(item).__name__}.")
    has_ref, has_img = JRSKeys.REFERENCE.value in item, IMAGE_KEY in item
    if has_ref and has_img:
        raise ValueError(
            f"a datalist item must be either a pair (with {JRSKeys.REFERENCE.value!r}) or a single image (with "
            f"{IMAGE_KEY!r}), got both keys: {sorted(item)}."
        )
    if not (has_ref or has_img):
        raise ValueError(
            f"a datalist item needs {JRSKeys.REFERENCE.value!r} (pair: {list(_PAIR_REQUIRED)}) or {IMAGE_KEY!r} "
            f"(single image: {list(_SINGLE_REQUIRED)}), got keys {sorted(item)}."
        )
    return "pair" if has_ref else "single"


def validate_jrs_item(item: Mapping[str, Any], index: int | None = None, check_files: bool = False) -> str:
    """Check one datalist item against the schema of this module.

    Args:
        item: a datalist item, with paths already resolved when ``check_files`` is True.
        index: position of the item in its section, used in error messages.
        check_files: also check that every path exists.

    Returns:
        the item kind, ``"pair"`` or ``"single"``.

    Raises:
        TypeError: when ``item`` is not a dict.
        ValueError: naming the item index and key when a required key is missing, a value has the wrong type,
            ``label`` is not one of :data:`LABEL_VALUES`, or (with ``check_files``) a file does not exist.
    """
    where = "datalist item" if index is None else f"datalist item {index}"
    try:
        kind = item_kind(item)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None
    required = _PAIR_REQUIRED if kind == "pair" else _SINGLE_REQUIRED
    missing = [k for k in required if k not in item]
    if missing:
        raise ValueError(f"{where} ({kind}) is missing required key(s) {missing}; it has {sorted(item)}.")
    pid = item.get(JRSKeys.PATIENT_ID.value)
    if pid is not None and (not isinstance(pid, str) or not pid):
        raise ValueError(f"{where}: {JRSKeys.PATIENT_ID.value!r} must be a non-empty string, got {pid!r}.")
    label = item.get(LABEL_KEY)
    if label is not None and label not in LABEL_VALUES:
        raise ValueError(f"{where}: {LABEL_KEY!r} must be one of {LABEL_VALUES}, got {label!r}.")
    for key in PAIR_PATH_KEYS if kind == "pair" else SINGLE_PATH_KEYS:
        if key not in item:
            continue
        paths = _as_path_list(item[key])
        if paths is None:
            raise ValueError(f"{where}: {key!r} must be a path string or a list of path strings, got {item[key]!r}.")
        if check_files:
            for p in paths:
                if not os.path.exists(p):
                    raise ValueError(f"{where}: file for key {key!r} not found: {p}")
    return kind


def load_jrs_datalist(
    path: str | os.PathLike,
    section: str = "training",
    base_dir: str | os.PathLike | None = None,
    check_files: bool = True,
) -> list[dict]:
    """Load and validate one section of a monai_jrs JSON datalist (schema in the module docstring).

    Args:
        path: the JSON file.
        section: the list to read, usually one of :data:`DATALIST_SECTIONS`.
        base_dir: folder that relative paths resolve against; default: the folder of ``path``.
        check_files: check that every referenced file or folder exists.

    Returns:
        a list of new dicts (pairs and/or single-image items) with absolute, normalised paths.

    Raises:
        ValueError: when the file does not exist or is not a JSON object, the section is missing or not a list, or an
            item is invalid (the message names the section, item index, key and file).

    Example::

        items = load_jrs_datalist("datalist.json", section="validation")
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        hint = ""
        if os.path.basename(path) in ("datalist.json", "datalist_images.json"):
            hint = (f" Generate the embedded dataset there with `python -m monai_jrs.data.embedded --output "
                    f"{os.path.dirname(path) or '.'}`, or point the bundle's --dataset_dir at your own dataset.")
        raise ValueError(f"datalist file {path!r} does not exist.{hint}")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"datalist file {path!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"datalist file {path!r} must hold a JSON object, got {type(data).__name__}.")
    if section not in data:
        raise ValueError(f"datalist section {section!r} not found in {path!r}; sections there: {sorted(data)}.")
    entries = data[section]
    if not isinstance(entries, list):
        raise ValueError(f"datalist section {section!r} in {path!r} must be a list, got {type(entries).__name__}.")
    base = os.path.dirname(os.path.abspath(path)) if base_dir is None else os.fspath(base_dir)
    out: list[dict] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str) and section == "test":  # Decathlon convention: bare test image paths
            entry = {IMAGE_KEY: entry}
        if not isinstance(entry, dict):
            raise ValueError(f"datalist {section!r} item {i} must be a dict, got {type(entry).__name__}: {entry!r}.")
        item = dict(entry)
        if section == "test" and _is_bare_test_image(item):
            # bare test images carry no mask; validate their path only
            _validate_paths_only(item, (IMAGE_KEY,), f"datalist {section!r} item {i}", base, check_files)
            out.append(item)
            continue
        try:
            kind = validate_jrs_item(item, index=i)
            for key in PAIR_PATH_KEYS if kind == "pair" else SINGLE_PATH_KEYS:
                if key in item:
                    item[key] = _resolve(base, item[key])
            validate_jrs_item(item, index=i, check_files=check_files)
        except (TypeError, ValueError) as e:
            raise ValueError(f"datalist {section!r} in {path!r}: {e}") from None
        out.append(item)
    logger.debug("loaded %d item(s) from section %r of %s", len(out), section, path)
    return out


def write_jrs_datalist(
    path: str | os.PathLike,
    training: Sequence[Mapping[str, Any]],
    validation: Sequence[Mapping[str, Any]] | None = None,
    test: Sequence[Mapping[str, Any]] | None = None,
    name: str = "monai_jrs datalist",
    description: str = "",
    relative: bool = True,
    overwrite: bool = False,
    check_files: bool = False,
) -> str:
    """Validate items and write them as a monai_jrs JSON datalist.

    Args:
        path: the JSON file to write; its folder is created when missing.
        training: items of the ``"training"`` section.
        validation: items of the ``"validation"`` section (written as ``[]`` when None).
        test: items of the ``"test"`` section (written as ``[]`` when None).
        name: the ``"name"`` metadata field.
        description: the ``"description"`` metadata field.
        relative: store paths that lie under the folder of ``path`` relative to it (so the dataset folder and its
            datalist can move together); other paths are stored absolute.
        overwrite: replace an existing file. By default an existing file is never overwritten.
        check_files: also check that all referenced files exist.

    Returns:
        the absolute path of the written file.

    Raises:
        FileExistsError: when ``path`` exists and ``overwrite`` is False.
        ValueError: when an item is invalid (the message names the section and item index).
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"datalist file {path!r} already exists; pass overwrite=True to replace it.")
    base = os.path.dirname(path)
    doc: dict[str, Any] = {"name": name, "description": description}
    for section, items in (("training", training), ("validation", validation), ("test", test)):
        rows = []
        for i, item in enumerate(items or []):
            try:
                if section == "test" and _is_bare_test_image(item):
                    _validate_paths_only(dict(item), (IMAGE_KEY,), f"datalist item {i}", base, check_files)
                    kind = "single"
                else:
                    kind = validate_jrs_item(item, index=i, check_files=check_files)
            except (TypeError, ValueError) as e:
                raise ValueError(f"datalist {section!r}: {e}") from None
            row = {k: (v.value if isinstance(v, JRSKeys) else v) for k, v in item.items()}
            for key in PAIR_PATH_KEYS if kind == "pair" else SINGLE_PATH_KEYS:
                if key in row:
                    row[key] = _store_path(base, row[key], relative)
            rows.append(row)
        doc[section] = rows
    os.makedirs(base, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)
    logger.info("wrote datalist %s (%s)", path, ", ".join(f"{s}: {len(doc[s])}" for s in DATALIST_SECTIONS))
    return path


def make_longitudinal_pairs(
    studies: Sequence[Mapping[str, Any]],
    image_key: str = IMAGE_KEY,
    mask_key: str = MASK_KEY,
) -> list[dict]:
    """Build reference/floating pairs from the studies (one image per visit) of several patients.

    For each patient the reference is the earliest visit that has a lung mask (usually the first visit, which is the
    annotated one in the intended use); every other visit of that patient becomes a floating image, including a
    visit earlier than the annotated one. Patients with a single study, or without any annotated study, are skipped
    with a log line.

    Visits are ordered by ``"visit"`` (int or str) when every study of the patient has one, else by ``"date"``
    (a :class:`datetime.date`, ``"YYYY-MM-DD"`` or DICOM ``"YYYYMMDD"``).

    Args:
        studies: dicts with ``"patient_id"``, ``"visit"`` and/or ``"date"``, ``image_key`` and optionally
            ``mask_key`` and ``"label"``.
        image_key: key of the image path in ``studies``.
        mask_key: key of the mask path in ``studies``.

    Returns:
        pair items ``{"patient_id", "reference", "reference_mask", "floating", "floating_mask"?, "visit",
        "reference_visit", "label"?}`` sorted by patient then visit; ``"visit"`` is the floating image's visit (or
        date as ``"YYYY-MM-DD"``), and ``"label"`` is the floating study's label when it has one.

    Raises:
        ValueError: when a study misses ``patient_id`` or the image, has neither visit nor date, has an unparsable
            date, or two studies of one patient share a visit.

    Example::

        pairs = make_longitudinal_pairs([
            {"patient_id": "P1", "visit": 0, "image": "p1_v0.png", "mask": "p1_v0_mask.png"},
            {"patient_id": "P1", "visit": 1, "image": "p1_v1.png"},
        ])
        # [{"patient_id": "P1", "reference": "p1_v0.png", "reference_mask": "p1_v0_mask.png",
        #   "floating": "p1_v1.png", "visit": 1, "reference_visit": 0}]
    """
    pid_key, visit_key = JRSKeys.PATIENT_ID.value, JRSKeys.VISIT.value
    by_patient: dict[str, list[Mapping[str, Any]]] = {}
    for i, s in enumerate(studies):
        if not isinstance(s, Mapping):
            raise ValueError(f"study {i} must be a dict, got {type(s).__name__}.")
        for k in (pid_key, image_key):
            if not s.get(k):
                raise ValueError(f"study {i} is missing {k!r}; it has keys {sorted(s)}.")
        if s.get(visit_key) is None and s.get("date") is None:
            raise ValueError(f"study {i} (patient {s[pid_key]!r}) needs a {visit_key!r} or a 'date'.")
        by_patient.setdefault(str(s[pid_key]), []).append(s)

    pairs: list[dict] = []
    n_single, n_unlabelled = 0, 0
    for pid in sorted(by_patient):
        group = by_patient[pid]
        if len(group) < 2:
            n_single += 1
            logger.info("patient %r has a single study; no longitudinal pair made", pid)
            continue
        use_visit = all(s.get(visit_key) is not None for s in group)
        keys = [_visit_sort_key(s, use_visit, visit_key) for s in group]
        if len(set(keys)) != len(keys):
            raise ValueError(f"patient {pid!r} has two studies with the same {'visit' if use_visit else 'date'}: "
                             f"{sorted(map(str, keys))}.")
        ordered = [s for _, s in sorted(zip(keys, group), key=lambda t: t[0])]
        labelled = [s for s in ordered if s.get(mask_key)]
        if not labelled:
            n_unlabelled += 1
            logger.warning("patient %r has no study with a %r; no reference, skipped", pid, mask_key)
            continue
        ref = labelled[0]
        for s in ordered:
            if s is ref:
                continue
            pair: dict[str, Any] = {
                pid_key: pid,
                JRSKeys.REFERENCE.value: ref[image_key],
                JRSKeys.REFERENCE_MASK.value: ref[mask_key],
                JRSKeys.FLOATING.value: s[image_key],
            }
            if s.get(mask_key):
                pair[JRSKeys.FLOATING_MASK.value] = s[mask_key]
            pair[visit_key] = _visit_value(s, use_visit, visit_key)
            pair["reference_visit"] = _visit_value(ref, use_visit, visit_key)
            if s.get(LABEL_KEY) is not None:
                pair[LABEL_KEY] = s[LABEL_KEY]
            pairs.append(pair)
    if n_single or n_unlabelled:
        logger.info("longitudinal pairs: %d made; skipped %d single-study and %d unannotated patient(s)",
                    len(pairs), n_single, n_unlabelled)
    return pairs


def split_by_patient(
    items: Sequence[Mapping[str, Any]],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> list[list[dict]]:
    """Split items into groups so that no patient appears in two groups.

    Patients (``"patient_id"``; items without one count as their own patient, keyed by their image path) are
    sorted, shuffled with ``random.Random(seed)`` and cut at ``round(cumsum(fractions) * n_patients)``. The result
    depends only on the set of patients, ``fractions`` and ``seed`` (not on the order of ``items``); items keep their
    input order inside each group.

    Args:
        items: datalist items (pairs or single images).
        fractions: non-negative fractions of patients per group, summing to 1, e.g. (train, validation, test).
        seed: seed of the shuffle.

    Returns:
        one list of items per fraction.

    Raises:
        ValueError: when ``fractions`` is empty, has a negative value or does not sum to 1, or an item has neither
            a patient id nor an image path.
    """
    fr = [float(f) for f in fractions]
    if not fr or any(f < 0 or not math.isfinite(f) for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {tuple(fractions)}.")
    pids = [_group_id(item, i) for i, item in enumerate(items)]
    unique = sorted(set(pids))
    random.Random(seed).shuffle(unique)
    n = len(unique)
    cuts = [0]
    acc = 0.0
    for f in fr:
        acc += f
        cuts.append(min(n, int(round(acc * n))))
    cuts[-1] = n
    group_of = {}
    for g in range(len(fr)):
        for p in unique[cuts[g]: cuts[g + 1]]:
            group_of[p] = g
        if fr[g] > 0 and cuts[g + 1] == cuts[g] and n:
            logger.warning("split %d (fraction %.3g) received no patient out of %d", g, fr[g], n)
    out: list[list[dict]] = [[] for _ in fr]
    for item, p in zip(items, pids):
        out[group_of[p]].append(dict(item))
    return out


def _as_path_list(value: Any) -> list[str] | None:
    """Return ``value`` as a list of path strings, or None when it is not a path or a list of paths."""
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)] if os.fspath(value) else None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, os.PathLike)) for v in value):
        return [os.fspath(v) for v in value]
    return None


def _resolve(base: str, value: Any) -> Any:
    """Join ``base`` onto relative path(s), like ``monai.data.decathlon_datalist._compute_path``."""
    if isinstance(value, (str, os.PathLike)):
        return os.path.normpath(os.path.join(base, os.path.expanduser(os.fspath(value))))
    if isinstance(value, (list, tuple)):
        return [_resolve(base, v) for v in value]
    return value


def _store_path(base: str, value: Any, relative: bool) -> Any:
    """Path(s) as written to a datalist: relative to ``base`` when below it and ``relative``, else absolute."""
    if isinstance(value, (list, tuple)):
        return [_store_path(base, v, relative) for v in value]
    p = os.path.abspath(os.fspath(value))
    if relative:
        try:
            rel = os.path.relpath(p, base)
        except ValueError:  # different drive on Windows
            return p
        if not rel.startswith(os.pardir):
            return rel.replace(os.sep, "/")
    return p


def _is_bare_test_image(item: Any) -> bool:
    """A test-section item with only an image (Decathlon style), no mask and no pair keys."""
    return isinstance(item, Mapping) and IMAGE_KEY in item and MASK_KEY not in item and JRSKeys.REFERENCE.value not in item


def _validate_paths_only(item: dict, keys: Sequence[str], where: str, base: str, check_files: bool) -> None:
    for key in keys:
        if _as_path_list(item.get(key)) is None:
            raise ValueError(
                f"{where}: {key!r} must be a path string or a list of path strings, got {item.get(key)!r}."
            )
        item[key] = _resolve(base, item[key])
        if check_files:
            for p in _as_path_list(item[key]) or []:
                if not os.path.exists(p):
                    raise ValueError(f"{where}: file for key {key!r} not found: {p}")


def _parse_date(value: Any) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    s = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"study date must be a date, 'YYYY-MM-DD' or DICOM 'YYYYMMDD', got {value!r}.")


def _visit_sort_key(study: Mapping[str, Any], use_visit: bool, visit_key: str) -> tuple:
    if use_visit:
        v = study[visit_key]
        # ints sort numerically, strings lexically; numbers before strings so mixed types still order
        return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))
    return (2, _parse_date(study["date"]).toordinal(), "")


def _visit_value(study: Mapping[str, Any], use_visit: bool, visit_key: str) -> Any:
    return study[visit_key] if use_visit else _parse_date(study["date"]).isoformat()


def _group_id(item: Mapping[str, Any], index: int) -> str:
    if not isinstance(item, Mapping):
        raise ValueError(f"item {index} must be a dict, got {type(item).__name__}.")
    pid = item.get(JRSKeys.PATIENT_ID.value)
    if pid:
        return f"pid:{pid}"
    paths = _as_path_list(item.get(IMAGE_KEY) or item.get(JRSKeys.REFERENCE.value))
    if not paths:
        raise ValueError(f"item {index} has neither {JRSKeys.PATIENT_ID.value!r} nor an image path to group it by.")
    return f"img:{os.path.normpath(paths[0])}"
