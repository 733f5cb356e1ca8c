# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""``monai-jrs register --datalist``: batched, resumable, multi-process (:mod:`monai_jrs.apps.batch`).

Unit tests of the datalist, the chunks and the CSV merge; end to end (slow): one process; the same job killed with
SIGKILL mid-run and restarted; two processes under ``torchrun`` and with ``--processes 2`` on gloo; one of two
workers killed and the run restarted. Every output file is compared with the uninterrupted one-process run
(``metrics.json`` without its timings and output paths, which are measurements and locations, not results). One
floating file is corrupt and one missing: those pairs fail with their reason in the manifest and ``metrics.csv``, the
others complete, the exit status is 1.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import numpy as np
import pytest
from parameterized import parameterized
from PIL import Image

from monai_jrs.apps.batch import CSV_COLUMNS, PairItem, make_units, merge_metrics, pairs_from_items, read_pairs
from monai_jrs.data.testing import make_dx_dicom
from monai_jrs.utils.net import free_port

REPO = Path(__file__).resolve().parents[2]


class TestDatalist(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def _write(self, content) -> Path:
        p = self.root / "pairs.json"
        p.write_text(json.dumps(content))
        return p

    def test_list_and_sections(self):
        items = [{"reference": "r.png", "reference_mask": "m.png", "floating": f"a/f{i}.png"} for i in range(3)]
        pairs = read_pairs(self._write(items))
        self.assertEqual([p.pair_id for p in pairs], ["f0", "f1", "f2"])
        self.assertEqual(pairs[0].reference, str((self.root / "r.png").resolve()))  # relative to the datalist
        self.assertEqual(len(read_pairs(self._write({"test": items, "training": []}))), 3)
        self.assertEqual(read_pairs(self._write({"val": items}), "val")[2].index, 2)

    def test_stem_collisions_get_the_index(self):
        items = [{"reference": "r.png", "reference_mask": "m.png", "floating": f"{d}/image.dcm"} for d in "ab"]
        self.assertEqual([p.pair_id for p in read_pairs(self._write(items))], ["image_0", "image_1"])

    @parameterized.expand([
        ("no_file", None, "does not exist"),
        ("not_json", "{", "not valid JSON"),
        ("no_section", {"training": []}, "section 'test'"),
        ("bad_item", [{"reference": "r.png"}], "item 0 must have"),
        ("scalar", 3, "expected a JSON list or object"),
    ])
    def test_errors(self, _, content, message):
        path = self.root / "missing.json"
        if content is not None:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        with self.assertRaisesRegex(ValueError, message):
            read_pairs(path)

    def test_processes_flag_is_not_passed_to_the_workers(self):
        from monai_jrs.apps.cli import _without_processes

        argv = ["register", "--datalist", "p.json", "--processes", "2", "-o", "OUT", "--processes=3", "--no-progress"]
        self.assertEqual(_without_processes(argv), ["register", "--datalist", "p.json", "-o", "OUT", "--no-progress"])

    def test_processes_bad_request(self):
        from monai_jrs.apps.cli import main

        with self.assertRaises(SystemExit):  # argparse: not an int
            main(["register", "--datalist", "p.json", "-o", str(self.root), "--processes", "two"])
        self.assertEqual(main(["register", "--datalist", "p.json", "-o", str(self.root), "--processes", "0"]), 2)

    def test_units_group_by_reference_in_order(self):
        refs = ["r1", "r2", "r1", "r1", "r2"]
        pairs = [PairItem(i, f"f{i}", r, "m", f"f{i}") for i, r in enumerate(refs)]
        self.assertEqual([[p.index for p in u] for u in make_units(pairs, 2)], [[0, 2], [3], [1, 4]])
        self.assertEqual([[p.index for p in u] for u in make_units(pairs, 1)], [[0], [2], [3], [1], [4]])
        with self.assertRaisesRegex(ValueError, "batch_size"):
            make_units(pairs, 0)

    def test_merge_metrics(self):
        pairs = [PairItem(i, f"f{i}", "r", "m", f"f{i}.png") for i in range(3)]
        (self.root / "f0").mkdir()
        (self.root / "f0" / "metrics.json").write_text(json.dumps(
            {"dice_reference_vs_registered_mask": 0.9, "folding_percent": 0.0, "quality": {"ncc_chest": 0.8},
             "timings_s": {"total_s": 1.5}}))
        (self.root / "manifest.rank0.jsonl").write_text(
            json.dumps({"pair_id": "f0", "status": "done"}) + "\n"
            + json.dumps({"pair_id": "f1", "status": "failed", "reason": "floating: bad"}) + "\n{cut")
        path, not_done = merge_metrics(self.root, pairs)
        rows = list(csv.DictReader(open(path)))
        self.assertEqual(not_done, 2)
        self.assertEqual(list(rows[0]), list(CSV_COLUMNS))
        self.assertEqual([(r["pair_id"], r["status"]) for r in rows], [("f0", "done"), ("f1", "failed"),
                                                                      ("f2", "missing")])
        self.assertEqual((rows[0]["dice_reference_vs_registered_mask"], rows[0]["ncc_chest"], rows[0]["total_s"]),
                         ("0.9", "0.8", "1.5"))
        self.assertEqual(rows[1]["reason"], "floating: bad")

    def test_merge_metrics_of_datalist_items_without_manifest(self):
        """The bundle's inference: ``@data`` items, status from each pair's ``metrics.json``, ids without suffixes;
        the output folder is created when nothing was written."""
        items = [{"reference": "/d/r.png", "reference_mask": "/d/m.png", "floating": f"/d/{s}.png", "visit": 1}
                 for s in ("a", "b")]
        out = self.root / "never_ran"
        path, not_done = merge_metrics(out, items)
        self.assertEqual((not_done, [r["status"] for r in csv.DictReader(open(path))]), (2, ["missing", "missing"]))
        (out / "b").mkdir()
        (out / "b" / "metrics.json").write_text(json.dumps({"folding_percent": 0.25, "timings_s": {}}))
        path, not_done = merge_metrics(out, items)
        rows = list(csv.DictReader(open(path)))
        self.assertEqual(not_done, 1)
        self.assertEqual([(r["pair_id"], r["status"], r["folding_percent"], r["floating"]) for r in rows],
                         [("a", "missing", "", "/d/a.png"), ("b", "done", "0.25", "/d/b.png")])
        same_stem = [dict(items[0]), {**items[0], "reference": "/e/r.png"}]
        self.assertEqual([p.pair_id for p in pairs_from_items(same_stem, unique_ids=False)], ["a", "a"])
        self.assertEqual([p.pair_id for p in pairs_from_items(same_stem)], ["a_0", "a_1"])
        with self.assertRaisesRegex(ValueError, "bundle data: item 1 must have"):
            pairs_from_items([items[0], {"floating": "x.png"}], source="bundle data")


def _make_job(root: Path) -> tuple[Path, int]:
    """Two patients (DICOM and PNG) x several follow-ups, one corrupt and one missing floating file."""
    from tests.monailabel.studies import moved
    from tests.networks.synthetic import synthetic_chest

    image, mask = synthetic_chest((120, 104))
    items = []
    for patient, fmt in (("A", "dcm"), ("B", "png")):
        ref = root / f"{patient}_v0.{fmt}"
        if fmt == "dcm":
            make_dx_dicom(ref, np.round(image[0, 0].numpy() * 4095).astype(np.uint16), patient_id=patient)
        else:
            Image.fromarray((image[0, 0].numpy() * 255).astype(np.uint8)).save(ref)
        Image.fromarray(mask[0, 0].numpy().astype(np.uint8)).save(root / f"{patient}_mask.png")
        for v in range(1, 6):
            moved_img = moved(image, (2.0 * v - 5, 6.0 - 2 * v), 1.5 * v - 4, (112 + 4 * v, 104))[0, 0].numpy()
            flt = root / f"{patient}_v{v}.{fmt}"
            if fmt == "dcm":
                make_dx_dicom(flt, np.round(np.clip(moved_img, 0, 1) * 4095).astype(np.uint16), patient_id=patient,
                              study_date=f"2024010{v}")
            else:
                Image.fromarray((np.clip(moved_img, 0, 1) * 255).astype(np.uint8)).save(flt)
            items.append({"reference": ref.name, "reference_mask": f"{patient}_mask.png", "floating": flt.name})
    (root / "corrupt.dcm").write_bytes(b"DICM" + b"\0" * 300)
    items.insert(3, {"reference": "A_v0.dcm", "reference_mask": "A_mask.png", "floating": "corrupt.dcm"})
    items.append({"reference": "B_v0.png", "reference_mask": "B_mask.png", "floating": "gone.png"})
    (root / "pairs.json").write_text(json.dumps(items, indent=1))
    return root / "pairs.json", len(items)


def _env() -> dict[str, str]:
    # the same timestamp (SEG creation dates) and threads per process in every run
    return {**os.environ, "PYTHONPATH": str(REPO), "SOURCE_DATE_EPOCH": "1700000000", "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore"}


def _register(datalist: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "monai_jrs.apps.cli", "register", "--datalist", str(datalist),
                             "--output", str(out), "--batch-size", "2", "--no-progress", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _outputs(folder: Path) -> dict[str, object]:
    """Every output file's content; ``metrics.json`` without timings and paths; no manifests, CSV or run.json."""
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_dir() or "/" not in rel:  # top-level files: manifests, metrics.csv, run.json
            continue
        if p.name == "metrics.json":
            m = json.loads(p.read_text())
            for k in ("timings_s", "output_dir", "dicom_seg"):
                m.pop(k, None)
            out[rel] = m
        else:
            out[rel] = p.read_bytes()
    return out


@pytest.mark.slow
class TestBatchedEqualsOnePair(unittest.TestCase):
    """A chunk of follow-ups in one forward pass gives each pair the result of ``JRSRegistrar.register`` on that pair
    alone (the network's outputs differ by float rounding only: oneDNN picks kernels by batch size)."""

    def test_network_outputs(self):
        import nibabel as nib

        from monai_jrs.apps import JRSRegistrar
        from monai_jrs.apps.batch import run_batch
        from tests.monailabel.studies import moved
        from tests.networks.synthetic import synthetic_chest

        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            image, mask = synthetic_chest((96, 88))
            Image.fromarray((image[0, 0].numpy() * 255).astype(np.uint8)).save(root / "ref.png")
            Image.fromarray(mask[0, 0].numpy().astype(np.uint8)).save(root / "mask.png")
            items = []
            for v in range(3):  # follow-ups of other sizes: each is resized on its own grid
                flt = moved(image, (3.0 - 2 * v, 2.0 * v - 2), 4.0 * v - 4, (92 + 4 * v, 88))[0, 0].numpy()
                Image.fromarray((np.clip(flt, 0, 1) * 255).astype(np.uint8)).save(root / f"f{v}.png")
                items.append({"reference": str(root / "ref.png"), "reference_mask": str(root / "mask.png"),
                              "floating": str(root / f"f{v}.png")})
            registrar = JRSRegistrar(refine=False, overlay=False, subtraction=False)
            report = run_batch(pairs_from_items(items), root / "batched", registrar, batch_size=3, progress=False)
            self.assertEqual(sorted(report.done), ["f0", "f1", "f2"])
            registrar.register(root / "ref.png", root / "mask.png", [root / f"f{v}.png" for v in range(3)],
                               root / "single", progress=False)
            for v in range(3):
                def load(folder: str, name: str) -> np.ndarray:
                    return np.asarray(nib.load(root / folder / f"f{v}" / name).dataobj, dtype=np.float64)

                for name in ("ddf.nii.gz", "registered.nii.gz"):
                    np.testing.assert_allclose(load("batched", name), load("single", name), rtol=0, atol=1e-3,
                                               err_msg=f"f{v}/{name}")
                for name in ("registered_mask.nii.gz", "floating_mask.nii.gz"):  # a rounding may flip an edge pixel
                    a, b = load("batched", name), load("single", name)
                    self.assertEqual(a.shape, b.shape)
                    self.assertLessEqual(float((a != b).mean()), 1e-3, f"f{v}/{name}")


@pytest.mark.slow
class TestBatchRuns(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)
        (cls.root / "data").mkdir()
        cls.datalist, cls.n = _make_job(cls.root / "data")
        cls.ref_out = cls.root / "one_process"
        proc = _register(cls.datalist, cls.ref_out)
        cls.stdout, cls.stderr = proc.communicate(timeout=600)
        cls.returncode = proc.returncode
        cls.reference = _outputs(cls.ref_out)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_one_process_with_bad_inputs(self):
        self.assertEqual(self.returncode, 1, self.stderr[-3000:])  # some pairs failed
        rows = list(csv.DictReader(open(self.ref_out / "metrics.csv")))
        self.assertEqual(len(rows), self.n)
        status = {r["pair_id"]: (r["status"], r["reason"]) for r in rows}
        self.assertEqual(status["corrupt"][0], "failed")
        self.assertIn("floating", status["corrupt"][1])
        self.assertEqual(status["gone"][0], "failed")
        self.assertIn("no such file", status["gone"][1])
        done = [r for r in rows if r["status"] == "done"]
        self.assertEqual(len(done), self.n - 2)
        self.assertEqual([int(r["index"]) for r in rows], list(range(self.n)))
        for r in done:
            self.assertGreater(float(r["ncc_chest"]), 0.8)  # the refinement matched the chest
        self.assertIn(f"{self.n - 2} pair(s) registered", self.stdout)
        self.assertIn("failed corrupt:", self.stderr)
        self.assertTrue((self.ref_out / "A_v1" / "floating_mask_seg.dcm").is_file())
        self.assertFalse((self.ref_out / ".partial").exists())
        # a rerun computes nothing and changes nothing
        proc = _register(self.datalist, self.ref_out)
        out, err = proc.communicate(timeout=600)
        self.assertIn(f"0 pair(s) registered, {self.n - 2} already complete, 2 failed", out)
        self.assertEqual(_outputs(self.ref_out), self.reference)
        # other settings are refused for this folder
        proc = _register(self.datalist, self.ref_out, "--no-refine")
        out, err = proc.communicate(timeout=600)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("was started with other settings", err)

    def test_killed_and_resumed_run_gives_the_same_outputs(self):
        out = self.root / "killed"
        proc = _register(self.datalist, out)
        manifest = out / "manifest.rank0.jsonl"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.is_file() and manifest.read_text().count('"done"') >= 2:
                break
            time.sleep(0.02)
        self.assertIsNone(proc.poll(), "the run ended before it could be killed")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        before = manifest.read_text().count('"done"')
        self.assertLess(before, self.n - 2)
        proc = _register(self.datalist, out)
        stdout, stderr = proc.communicate(timeout=600)
        self.assertEqual(proc.returncode, 1, stderr[-3000:])
        self.assertIn("already complete", stdout)
        print(f"\nkilled after {before} pair(s); the restart did the rest: {stdout.strip().splitlines()[0]}")
        self.assertEqual(_outputs(out), self.reference)

    def test_two_processes_on_gloo(self):
        torchrun = shutil.which("torchrun") or shutil.which("torchrun", path=os.path.dirname(sys.executable))
        if torchrun is None:
            self.skipTest("torchrun is not installed")
        # torchrun, one chunk for two ranks: rank 1 has nothing to do and waits
        one = self.root / "data" / "one_pair.json"
        one.write_text(json.dumps([json.loads(self.datalist.read_text())[0]]))
        proc = subprocess.run([torchrun, "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
                               "-m", "monai_jrs.apps.cli", "register", "--datalist", str(one), "--output",
                               str(self.root / "one_pair_two_processes"), "--batch-size", "2", "--no-progress"],
                              capture_output=True, text=True, env=_env(), timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertIn("rank 1: 0 pair(s) registered", proc.stdout)
        rows = list(csv.DictReader(open(self.root / "one_pair_two_processes" / "metrics.csv")))
        self.assertEqual([(r["pair_id"], r["status"], r["rank"]) for r in rows], [("A_v1", "done", "0")])

        # --processes 2: the command starts its two workers itself
        out = self.root / "two_processes"
        proc = subprocess.run([sys.executable, "-m", "monai_jrs.apps.cli", "register", "--datalist",
                               str(self.datalist), "--output", str(out), "--processes", "2", "--batch-size", "2",
                               "--no-progress"], capture_output=True, text=True, env=_env(), timeout=300)
        self.assertEqual(proc.returncode, 1, proc.stderr[-3000:])  # the two bad pairs
        self.assertNotIn("Traceback", proc.stderr)
        # other settings: every worker refuses (none waits for the others), status 2
        refused = subprocess.run([sys.executable, "-m", "monai_jrs.apps.cli", "register", "--datalist",
                                  str(self.datalist), "--output", str(out), "--processes", "2", "--batch-size", "3",
                                  "--no-progress"], capture_output=True, text=True, env=_env(), timeout=120)
        self.assertEqual(refused.returncode, 2, refused.stderr[-3000:])
        self.assertEqual(refused.stderr.count("was started with other settings"), 2, refused.stderr[-3000:])
        self.assertIn("rank 0:", proc.stdout)
        self.assertIn("rank 1:", proc.stdout)
        self.assertEqual(sorted(p.name for p in out.glob("manifest.rank*.jsonl")),
                         ["manifest.rank0.jsonl", "manifest.rank1.jsonl"])
        rows = list(csv.DictReader(open(out / "metrics.csv")))
        self.assertEqual({r["rank"] for r in rows if r["status"] == "done"}, {"0", "1"})
        self.assertEqual(_outputs(out), self.reference)

    def test_a_killed_worker_stops_the_others_and_the_rerun_completes(self):
        out = self.root / "worker_killed"
        launcher = _register(self.datalist, out, "--processes", "2")
        manifest = out / "manifest.rank1.jsonl"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and launcher.poll() is None:
            if manifest.is_file() and '"done"' in manifest.read_text():
                break
            time.sleep(0.02)
        workers = _children(launcher.pid)
        self.assertEqual(len(workers), 2, "the launcher should run two workers")
        rank1 = [pid for pid in workers if b"RANK=1\0" in Path(f"/proc/{pid}/environ").read_bytes()]
        self.assertEqual(len(rank1), 1)
        os.kill(rank1[0], signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=120)
        self.assertEqual(launcher.returncode, 3, stderr[-3000:])
        self.assertIn("a worker process exited with status -9; the others were stopped", stderr)
        self.assertEqual([pid for pid in workers if Path(f"/proc/{pid}").exists()
                          and _state(pid) != "Z"], [], "a worker outlived the launcher")
        rerun = _register(self.datalist, out, "--processes", "2")
        stdout, stderr = rerun.communicate(timeout=600)
        self.assertEqual(rerun.returncode, 1, stderr[-3000:])
        self.assertIn("already complete", stdout)
        self.assertEqual(_outputs(out), self.reference)


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name: state, parent pid, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _state(pid: int) -> str:
    """The process state letter (``Z``: a zombie)."""
    return _stat(pid)[0]


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from ``/proc``)."""
    kids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if int(_stat(int(entry.name))[1]) == pid:
                kids.append(int(entry.name))
        except OSError:  # the process ended meanwhile
            continue
    return kids


if __name__ == "__main__":
    unittest.main()
