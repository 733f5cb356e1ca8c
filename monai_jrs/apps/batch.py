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
"""Archive-scale registration: batched, resumable, multi-process (``monai-jrs register --datalist ...``).

:func:`run_batch` registers the pairs of a datalist (``{"reference", "reference_mask", "floating"}`` items) and writes
for each the files of ``monai-jrs register`` into ``OUT/<pair id>/``:

- **Work units**: the pairs of one reference (one patient) are grouped in datalist order and cut into chunks of at
  most ``batch_size`` follow-ups; a chunk is one forward pass of the network with the reference prepared once
  (expanded over the batch). The chunks depend only on the datalist and ``batch_size``, never on how many processes
  run or where a run was interrupted, so every pair is computed in the same batch each time: the outputs do not depend
  on the number of processes or on restarts (for the same number of threads per process).
- **Background I/O**: chunks are read by a MONAI :class:`~monai.data.ThreadDataLoader` (``num_workers`` loader
  processes, a loading thread) while the previous chunk computes, and written by a writer thread.
- **Resumable**: each pair is written into a hidden folder and renamed into place when complete, then recorded in
  ``manifest.rank<k>.jsonl``. A restart (same command) reads the manifests, checks each recorded folder, skips what is
  complete and computes the rest; a folder renamed but not yet recorded (a kill in between) is recognised by its
  ``metrics.json``. ``run.json`` fixes the settings of the folder (a restart with other settings is refused) and the
  run's timestamp, used as the creation date of the DICOM SEGs, whose UIDs derive from the pair, so that a resumed
  run writes the same bytes (``SOURCE_DATE_EPOCH`` sets the timestamp, as for reproducible builds).
- **Multi-process, multi-node**: under ``torchrun`` (``WORLD_SIZE`` > 1) ``torch.distributed`` is initialised (gloo
  on CPU, NCCL on GPU, ``cuda:LOCAL_RANK``) and the chunks are split over the ranks as
  :func:`monai.data.partition_dataset` splits without shuffling (rank k of N takes chunks k, k + N, ...; a rank
  without chunks waits); each rank writes its own pairs and manifest; rank 0 waits for all, then merges every pair's
  metrics into ``metrics.csv`` (one row per pair, in datalist order, failures with their reason).
- **Bad input**: a pair that cannot be read or registered is recorded as ``failed`` with its reason (manifest and
  CSV); the others complete; :attr:`BatchReport.failed` makes the command exit with status 1.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from monai_jrs.data import writers
from monai_jrs.data.io import load_mask, load_xray
from monai_jrs.utils.files import file_sha256

__all__ = ["PairItem", "BatchReport", "read_pairs", "pairs_from_items", "make_units", "run_batch", "merge_metrics", "CSV_COLUMNS",
           "dist_context"]

logger = logging.getLogger(__name__)

#: columns of ``metrics.csv`` (one row per pair; the values come from each pair's ``metrics.json``).
CSV_COLUMNS = ("index", "pair_id", "status", "reason", "reference", "floating", "dice_reference_vs_registered_mask",
               "dice_reference_vs_floating_mask", "folding_percent", "max_displacement_px", "ncc_chest", "low_quality",
               "total_s", "rank")
_PARTIAL = ".partial"


@dataclass(frozen=True)
class PairItem:
    """One pair of the datalist: its position, output name and files."""

    index: int
    pair_id: str
    reference: str
    reference_mask: str
    floating: str


@dataclass
class BatchReport:
    """What :func:`run_batch` did on this rank (``done``, ``skipped``: complete before, ``failed``: pair id ->
    reason) and, on rank 0, the merged ``metrics.csv``."""

    output_dir: Path
    rank: int = 0
    world_size: int = 1
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    csv_path: Path | None = None
    total_failed: int = 0


def read_pairs(datalist: str | os.PathLike, section: str | None = None) -> list[PairItem]:
    """The pairs of a datalist JSON: a list of ``{"reference", "reference_mask", "floating"}`` items or a monai_jrs
    datalist object with sections (``section``; default ``"test"``). Relative paths resolve against the file's folder.

    Missing files are not checked here: such a pair fails alone when it is read. Pair ids: :func:`pairs_from_items`.

    Raises:
        ValueError: unreadable JSON, a missing section, an item without the three keys.
    """
    path = Path(datalist)
    if not path.is_file():
        raise ValueError(f"datalist {path} does not exist.")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"datalist {path} is not valid JSON: {e}") from e
    if isinstance(content, dict):
        section = section or "test"
        if section not in content or not isinstance(content[section], list):
            raise ValueError(f"datalist {path}: expected a list under section {section!r}, sections there: "
                             f"{sorted(content)}.")
        items = content[section]
    elif isinstance(content, list):
        items = content
    else:
        raise ValueError(f"datalist {path}: expected a JSON list or object, got {type(content).__name__}.")
    return pairs_from_items(items, base_dir=path.parent, source=f"datalist {path}")


def pairs_from_items(
    items: Sequence[Mapping[str, Any]], base_dir: str | os.PathLike | None = None, unique_ids: bool = True,
    source: str = "pairs",
) -> list[PairItem]:
    """:class:`PairItem` s of ``{"reference", "reference_mask", "floating"}`` mappings (a datalist section, the
    bundle's ``@data``); relative paths resolve against ``base_dir`` (default: the working directory).

    Pair id = the floating file's stem (``image_stem``, the output folder of ``monai-jrs register`` and of the bundle's
    ``SaveRegistrationOutputsd``); with ``unique_ids``, stems that occur more than once get ``_<index>`` appended.

    Raises:
        ValueError: an item without the three keys as non-empty strings (or paths).
    """
    keys = ("reference", "reference_mask", "floating")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    rows = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or any(not isinstance(item.get(k), (str, os.PathLike)) or not
                                                os.fspath(item.get(k)) for k in keys):
            raise ValueError(f"{source}: item {i} must have string {keys}, got {item!r}.")
        rows.append([os.fspath(item[k]) if os.path.isabs(item[k]) else str((base / item[k]).resolve()) for k in keys])
    stems = [writers.image_stem(r[2]) for r in rows]
    counts = {s: stems.count(s) for s in stems}
    return [PairItem(i, stem if counts[stem] == 1 or not unique_ids else f"{stem}_{i}", *row)
            for i, (stem, row) in enumerate(zip(stems, rows))]


def make_units(pairs: Sequence[PairItem], batch_size: int) -> list[list[PairItem]]:
    """Chunks of at most ``batch_size`` pairs sharing a reference (and mask), in datalist order.

    Example:
        >>> p = [PairItem(i, f"f{i}", "r1" if i < 3 else "r2", "m", f"f{i}") for i in range(5)]
        >>> [[q.index for q in u] for u in make_units(p, 2)]
        [[0, 1], [2], [3, 4]]
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    groups: dict[tuple[str, str], list[PairItem]] = {}
    for p in pairs:
        groups.setdefault((p.reference, p.reference_mask), []).append(p)
    return [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]


class dist_context:  # noqa: N801 (a context manager used like a function)
    """``torch.distributed`` from the ``torchrun`` environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``): initialised
    on entry when ``WORLD_SIZE`` > 1 and not yet initialised, destroyed on exit if it initialised it."""

    def __init__(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self._owner = False

    def __enter__(self) -> dist_context:
        import torch.distributed as dist

        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
            self._owner = True
        return self

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.world_size > 1 and dist.is_initialized():
            dist.barrier()

    def __exit__(self, *exc: Any) -> None:
        import torch.distributed as dist

        if self._owner and dist.is_initialized():
            dist.destroy_process_group()


def _settings(registrar: Any, batch_size: int) -> dict[str, Any]:
    from monai_jrs import __version__

    weights = file_sha256(Path(registrar.bundle_dir) / "models" / "model.pt")
    return {"monai_jrs_version": __version__, "weights_sha256": weights, "network_size": registrar.size,
            "refine": registrar.refine is not None, "overlay": registrar.overlay,
            "subtraction": getattr(registrar, "subtraction", True), "batch_size": int(batch_size)}


def _run_json(out: Path, settings: dict[str, Any], rank: int, ctx: dist_context) -> dict[str, Any]:
    """Create (rank 0, when absent) and check (every rank) ``run.json``: the settings of the folder and its timestamp.

    Raises:
        ValueError: the folder was started with other settings (on every rank, so that none waits for the others).
    """
    path = out / "run.json"
    if rank == 0 and not path.is_file():
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        when = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch
                else _dt.datetime.now(_dt.timezone.utc)).replace(microsecond=0, tzinfo=None)
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps({"created": when.isoformat(), "settings": settings}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    ctx.barrier()
    run = json.loads(path.read_text(encoding="utf-8"))
    diff = {k: (run["settings"].get(k), v) for k, v in settings.items() if run["settings"].get(k) != v}
    if diff:
        raise ValueError(f"{out} was started with other settings {diff} (was, now); resume with the same settings "
                         "or write to a new folder.")
    return run


def _completed(out: Path) -> dict[str, dict[str, Any]]:
    """Pairs recorded as done in any manifest whose folder is complete, by pair id."""
    done: dict[str, dict[str, Any]] = {}
    for manifest in sorted(out.glob("manifest.rank*.jsonl")):
        for line in manifest.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if rec.get("status") == "done" and (out / rec["pair_id"] / "metrics.json").is_file():
                done[rec["pair_id"]] = rec
            elif rec.get("status") == "done":
                done.pop(rec["pair_id"], None)
    return done


def _load_unit(item: dict[str, Any]) -> dict[str, Any]:
    """Read a chunk ``{"unit": [PairItem, ...]}`` (in a loader worker): the reference and its mask once, each floating
    image, or the reasons why not."""
    unit = item["unit"]
    out: dict[str, Any] = {"unit": unit, "floating": {}, "errors": {}}
    try:
        out["reference"] = load_xray(unit[0].reference)
        out["reference_mask"] = load_mask(unit[0].reference_mask, reference_meta=out["reference"][1])[0]
    except (OSError, ValueError) as e:
        out["errors"] = {p.pair_id: f"reference: {type(e).__name__}: {e}" for p in unit}
        return out
    for p in unit:
        try:
            out["floating"][p.pair_id] = load_xray(p.floating)
        except (OSError, ValueError) as e:
            out["errors"][p.pair_id] = f"floating: {type(e).__name__}: {e}"
    return out


def run_batch(
    pairs: Sequence[PairItem],
    output_dir: str | os.PathLike,
    registrar: Any,
    batch_size: int = 4,
    num_workers: int = 0,
    progress: bool = True,
) -> BatchReport:
    """Register ``pairs`` (see the module docstring) with a loaded :class:`~monai_jrs.apps.JRSRegistrar`.

    Args:
        pairs: :func:`read_pairs` output.
        output_dir: output root (created); ``OUT/<pair id>/`` per pair, ``manifest.rank<k>.jsonl``, ``run.json``,
            ``metrics.csv``.
        registrar: the loaded network and its settings (refinement, overlay, subtraction).
        batch_size: follow-ups of one reference per forward pass.
        num_workers: loader processes (0: a loading thread only).
        progress: a progress bar with pairs/s and the ETA (rank 0).

    Returns:
        this rank's :class:`BatchReport` (rank 0 also merged ``metrics.csv``).
    """
    from monai.data import Dataset, ThreadDataLoader
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(output_dir).absolute()
    with dist_context() as ctx:
        rank, world = ctx.rank, ctx.world_size
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
        ctx.barrier()
        run = _run_json(out, _settings(registrar, batch_size), rank, ctx)
        report = BatchReport(out, rank, world)
        units = make_units(pairs, batch_size)
        # the split of monai.data.partition_dataset(shuffle=False, even_divisible=False), which refuses fewer chunks
        # than ranks: here a rank without chunks just waits for the others
        mine = units[rank::world]
        done = _completed(out)
        todo = []
        for unit in mine:
            missing = [p for p in unit if p.pair_id not in done and not _recover(out, p, rank)]
            report.skipped += [p.pair_id for p in unit if p not in missing]
            if missing:
                todo.append((unit, {p.pair_id for p in missing}))
        manifest = out / f"manifest.rank{rank}.jsonl"
        lock = threading.Lock()
        loader = ThreadDataLoader(Dataset([{"unit": u} for u, _ in todo], transform=_load_unit), batch_size=1,
                                  num_workers=num_workers, collate_fn=lambda x: x[0], buffer_size=2)
        bar = tqdm(total=sum(len(m) for _, m in todo), desc=f"registering (rank {rank}/{world})" if world > 1
                   else "registering", unit="pair", disable=not progress or rank != 0, smoothing=0.1)
        futures: list[Future] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jrs-writer") as writer:
            for (unit, missing), loaded in zip(todo, loader):
                for pair_id, reason in loaded["errors"].items():
                    if pair_id in missing:
                        _record(manifest, lock, {"pair_id": pair_id, "status": "failed", "reason": reason})
                        report.failed[pair_id] = reason
                        bar.update(1)
                try:
                    results = _register_unit(registrar, loaded)
                except (RuntimeError, ValueError) as e:  # the whole chunk (e.g. out of memory): report each pair
                    results = {p.pair_id: e for p in unit if p.pair_id in loaded["floating"]}
                for p in unit:
                    if p.pair_id not in missing or p.pair_id not in results:
                        continue
                    res = results[p.pair_id]
                    if isinstance(res, Exception):
                        reason = f"{type(res).__name__}: {res}"
                        _record(manifest, lock, {"pair_id": p.pair_id, "status": "failed", "reason": reason})
                        report.failed[p.pair_id] = reason
                        bar.update(1)
                        continue
                    futures.append(writer.submit(_write_pair, out, p, res, loaded, run, manifest, lock, report,
                                                 rank, bar, registrar.overlay, getattr(registrar, "subtraction", True)))
            for f in futures:
                f.result()
        bar.close()
        report.seconds = time.perf_counter() - t0
        ctx.barrier()
        if rank == 0:
            report.csv_path, report.total_failed = merge_metrics(out, pairs)
            try:
                (out / _PARTIAL).rmdir()  # empty once every pair is in place
            except OSError:
                pass
        ctx.barrier()
    return report


@torch.no_grad()
def _register_unit(registrar: Any, loaded: dict[str, Any]) -> dict[str, Any]:
    """One forward pass for the readable follow-ups of a chunk; then the full-resolution stages per pair."""
    inferer, unit = registrar.inferer, loaded["unit"]
    ref_img, ref_meta = loaded["reference"]
    ref, mask = inferer.prepare_reference(ref_img, loaded["reference_mask"], spacing=ref_meta.get("spacing"))
    ok = [p for p in unit if p.pair_id in loaded["floating"]]
    if not ok:
        return {}
    flts = {p.pair_id: inferer.to_network_grid(loaded["floating"][p.pair_id][0],
                                               loaded["floating"][p.pair_id][1].get("spacing")) for p in ok}
    n = len(ok)
    timings: dict[str, float] = {}
    batch_ref = ref.net[None].expand(n, -1, -1, -1).to(inferer.device)
    batch_mask = mask.net[None].expand(n, -1, -1, -1).to(inferer.device)
    batch_flt = torch.stack([flts[p.pair_id].net for p in ok]).to(inferer.device)
    outputs, refined = inferer.predict(batch_ref, batch_flt, batch_mask, registrar.network, timings)
    results: dict[str, Any] = {}
    for i, p in enumerate(ok):
        flt_img = loaded["floating"][p.pair_id][0]
        try:
            one = {k: v[i:i + 1] for k, v in outputs.items()}
            t = {"network_s": timings.get("network_s", 0.0) / n}  # the batch's forward pass, shared
            result = inferer.to_full_resolution(one, flt_img, ref.info, flts[p.pair_id].info, refined, t,
                                                field_only=inferer.dense is not None)
            results[p.pair_id] = inferer.refine_full_resolution(result, ref.full, mask.full, flt_img)
        except (RuntimeError, ValueError) as e:
            results[p.pair_id] = e
    return results


def _write_pair(out: Path, p: PairItem, result: Any, loaded: dict[str, Any], run: dict[str, Any], manifest: Path,
                lock: threading.Lock, report: BatchReport, rank: int, bar: Any, overlay: bool,
                subtraction: bool) -> None:
    """Write one pair into a hidden folder, rename it into place, record it (the writer thread)."""
    from monai_jrs.data.dicomweb import derived_uid

    ref_img, ref_meta = loaded["reference"]
    flt_img, flt_meta = loaded["floating"][p.pair_id]
    tmp = out / _PARTIAL / f"{p.pair_id}.rank{rank}"
    final = out / p.pair_id
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        key = (p.reference, p.reference_mask, p.floating, json.dumps(run, sort_keys=True))
        seg = {"series_instance_uid": derived_uid("batch-seg-series", *key),
               "sop_instance_uid": derived_uid("batch-seg-instance", *key),
               "content_datetime": _dt.datetime.fromisoformat(run["created"])}
        metrics = writers.save_registration_result(
            result, p.floating, tmp, ref_img, loaded["reference_mask"], ref_meta, flt_img, flt_meta, overwrite=False,
            timings=result.timings, overlay=overlay, subtraction=subtraction, dicom_seg=seg)
        metrics["output_dir"] = str(final)
        if metrics.get("dicom_seg"):
            metrics["dicom_seg"] = str(final / "floating_mask_seg.dcm")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        if final.exists():  # a complete folder that no manifest records and recovery rejected: keep it aside
            final.rename(out / _PARTIAL / f"{p.pair_id}.stale{int(time.time())}")
        os.replace(tmp, final)
        _record(manifest, lock, {"pair_id": p.pair_id, "status": "done"})
        report.done.append(p.pair_id)
    except (OSError, ValueError, RuntimeError) as e:
        reason = f"writing: {type(e).__name__}: {e}"
        _record(manifest, lock, {"pair_id": p.pair_id, "status": "failed", "reason": reason})
        report.failed[p.pair_id] = reason
    finally:
        bar.update(1)


def _recover(out: Path, p: PairItem, rank: int) -> bool:
    """A folder renamed into place but not recorded (killed in between): record it when its metrics.json is whole."""
    try:
        metrics = json.loads((out / p.pair_id / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if metrics.get("floating") != p.floating:
        return False
    _record(out / f"manifest.rank{rank}.jsonl", threading.Lock(), {"pair_id": p.pair_id, "status": "done"})
    return True


def _record(manifest: Path, lock: threading.Lock, rec: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk."""
    with lock, open(manifest, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())


def merge_metrics(output_dir: str | os.PathLike, pairs: Sequence[PairItem | Mapping[str, Any]]) -> tuple[Path, int]:
    """Write ``OUT/metrics.csv``: one row per pair in datalist order (:data:`CSV_COLUMNS`), from its ``metrics.json``
    or its failure.

    The status of a pair comes from the ``manifest.rank<k>.jsonl`` files of :func:`run_batch`; a pair no manifest
    names is ``done`` when ``OUT/<pair id>/metrics.json`` exists (the bundle's inference, which writes no manifest),
    else ``missing``.

    Args:
        output_dir: the output root.
        pairs: :class:`PairItem` s, or datalist items (the bundle's ``@data``; ids without ``_<index>`` suffixes, as
            ``SaveRegistrationOutputsd`` names its folders).

    Returns:
        the CSV path and the number of pairs not done.
    """
    out = Path(output_dir)
    if any(not isinstance(p, PairItem) for p in pairs):
        pairs = pairs_from_items(pairs, unique_ids=False)  # type: ignore[arg-type]
    status: dict[str, dict[str, Any]] = {}
    for manifest in sorted(out.glob("manifest.rank*.jsonl")):
        rank = manifest.name[len("manifest.rank"):-len(".jsonl")]
        for line in manifest.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            status[rec["pair_id"]] = {**rec, "rank": rank}  # the last record of a pair wins (a retry after a fix)
    rows, not_done = [], 0
    for p in pairs:
        rec = status.get(p.pair_id) or ({"status": "done"} if (out / p.pair_id / "metrics.json").is_file()
                                        else {"status": "missing", "reason": "not processed"})
        row: dict[str, Any] = {"index": p.index, "pair_id": p.pair_id, "status": rec["status"],
                               "reason": rec.get("reason", ""), "reference": p.reference, "floating": p.floating,
                               "rank": rec.get("rank", "")}
        metrics_path = out / p.pair_id / "metrics.json"
        if rec["status"] == "done" and metrics_path.is_file():
            m = json.loads(metrics_path.read_text(encoding="utf-8"))
            q = m.get("quality") or {}
            row.update({k: m.get(k) for k in ("dice_reference_vs_registered_mask", "dice_reference_vs_floating_mask",
                                              "folding_percent", "max_displacement_px")})
            row.update({"ncc_chest": q.get("ncc_chest"), "low_quality": q.get("low_quality"),
                        "total_s": (m.get("timings_s") or {}).get("total_s")})
        else:
            not_done += 1
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)  # a workflow finalised before it wrote anything lists every pair missing
    path = out / "metrics.csv"
    tmp = path.with_suffix(".part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
    os.replace(tmp, path)
    return path, not_done
