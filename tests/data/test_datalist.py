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
from __future__ import annotations

import datetime
import json
import os
import random
import tempfile
import unittest

from parameterized import parameterized

from monai_jrs.data.datalist import (
    load_jrs_datalist,
    make_longitudinal_pairs,
    split_by_patient,
    validate_jrs_item,
    write_jrs_datalist,
)


def _touch(path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")
    return path


class TestDatalistIO(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = self._tmp.name
        self.data = os.path.join(self.root, "data")
        for rel in ("P1/v0.png", "P1/v0_mask.png", "P1/v1.png", "P1/v1_mask.png", "S/img.png", "S/img_mask.png"):
            _touch(os.path.join(self.data, rel))
        self.pair = {
            "patient_id": "P1",
            "reference": os.path.join(self.data, "P1/v0.png"),
            "reference_mask": os.path.join(self.data, "P1/v0_mask.png"),
            "floating": os.path.join(self.data, "P1/v1.png"),
            "floating_mask": os.path.join(self.data, "P1/v1_mask.png"),
            "visit": 1,
            "label": "diseased",
        }
        self.single = {"image": os.path.join(self.data, "S/img.png"), "mask": os.path.join(self.data, "S/img_mask.png")}

    def tearDown(self):
        self._tmp.cleanup()

    def _write_json(self, doc, name="dl.json"):
        path = os.path.join(self.data, name)
        with open(path, "w") as f:
            json.dump(doc, f)
        return path

    def test_round_trip(self):
        path = os.path.join(self.data, "datalist.json")
        out = write_jrs_datalist(path, [self.pair, self.single], validation=[self.single], name="n", description="d")
        self.assertEqual(out, path)
        with open(path) as f:
            doc = json.load(f)
        self.assertEqual(doc["name"], "n")
        self.assertEqual(doc["description"], "d")
        self.assertEqual(doc["test"], [])
        # stored relative to the datalist folder, with forward slashes
        self.assertEqual(doc["training"][0]["reference"], "P1/v0.png")
        self.assertEqual(doc["training"][1]["mask"], "S/img_mask.png")
        self.assertEqual(load_jrs_datalist(path), [self.pair, self.single])
        self.assertEqual(load_jrs_datalist(path, section="validation"), [self.single])

    def test_write_absolute_when_outside_or_not_relative(self):
        path = os.path.join(self.root, "lists", "dl.json")
        write_jrs_datalist(path, [self.single])  # data folder is not below lists/
        with open(path) as f:
            self.assertEqual(json.load(f)["training"][0]["image"], self.single["image"])
        path2 = os.path.join(self.data, "abs.json")
        write_jrs_datalist(path2, [self.single], relative=False)
        with open(path2) as f:
            self.assertEqual(json.load(f)["training"][0]["image"], self.single["image"])

    def test_never_overwrites(self):
        path = os.path.join(self.data, "dl.json")
        write_jrs_datalist(path, [self.single])
        with open(path) as f:
            before = f.read()
        with self.assertRaises(FileExistsError):
            write_jrs_datalist(path, [self.pair])
        with open(path) as f:
            self.assertEqual(f.read(), before)
        write_jrs_datalist(path, [self.pair], overwrite=True)
        self.assertEqual(load_jrs_datalist(path), [self.pair])

    def test_write_rejects_invalid_item(self):
        bad = dict(self.pair)
        del bad["floating"]
        path = os.path.join(self.data, "bad.json")
        with self.assertRaisesRegex(ValueError, r"'training'.*item 1.*'floating'"):
            write_jrs_datalist(path, [self.single, bad])
        self.assertFalse(os.path.exists(path))

    def test_relative_resolution(self):
        doc = {"training": [{"patient_id": "P1", "reference": "P1/v0.png", "reference_mask": "./P1/v0_mask.png",
                             "floating": ["P1/v1.png"], "floating_mask": "P1/../P1/v1_mask.png"}]}
        # the JSON lives in a different folder; base_dir points at the data
        path = os.path.join(self.root, "elsewhere.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        (item,) = load_jrs_datalist(path, base_dir=self.data)
        self.assertEqual(item["reference"], os.path.join(self.data, "P1", "v0.png"))
        self.assertEqual(item["reference_mask"], os.path.join(self.data, "P1", "v0_mask.png"))
        self.assertEqual(item["floating"], [os.path.join(self.data, "P1", "v1.png")])
        self.assertEqual(item["floating_mask"], os.path.join(self.data, "P1", "v1_mask.png"))
        # default base_dir: the JSON's folder -> files are not there
        with self.assertRaisesRegex(ValueError, "not found"):
            load_jrs_datalist(path)

    def test_non_path_fields_untouched(self):
        # a patient id or label that names an existing folder must not become a path
        os.makedirs(os.path.join(self.data, "normal"), exist_ok=True)
        item = {"patient_id": "P1", "image": "S/img.png", "mask": "S/img_mask.png", "label": "normal", "extra": "P1"}
        (out,) = load_jrs_datalist(self._write_json({"training": [item]}))
        self.assertEqual((out["patient_id"], out["label"], out["extra"]), ("P1", "normal", "P1"))

    def test_test_section_bare_paths(self):
        out = load_jrs_datalist(self._write_json({"test": ["S/img.png"]}), section="test")
        self.assertEqual(out, [{"image": os.path.join(self.data, "S", "img.png")}])
        # image-only items are accepted in "test" (and round-trip), but not in "training"
        path = write_jrs_datalist(os.path.join(self.data, "t.json"), [], test=out)
        self.assertEqual(load_jrs_datalist(path, section="test"), out)
        with self.assertRaisesRegex(ValueError, "missing required key"):
            write_jrs_datalist(os.path.join(self.data, "t2.json"), out)

    @parameterized.expand(
        [
            ("missing_key", {"patient_id": "P", "reference": "P1/v0.png", "floating": "P1/v1.png"},
             r"item 1 \(pair\) is missing.*'reference_mask'"),
            ("missing_mask", {"image": "S/img.png"}, r"item 1 \(single\) is missing.*'mask'"),
            ("both_kinds", {"image": "S/img.png", "mask": "S/img_mask.png", "reference": "P1/v0.png"}, "both keys"),
            ("neither", {"patient_id": "P"}, r"item 1.*needs 'reference'"),
            ("bad_label", {"image": "S/img.png", "mask": "S/img_mask.png", "label": "sick"}, "label.*'sick'"),
            ("bad_pid", {"image": "S/img.png", "mask": "S/img_mask.png", "patient_id": 7}, "patient_id.*7"),
            ("bad_path", {"image": 3, "mask": "S/img_mask.png"}, "'image' must be a path"),
            ("missing_file", {"image": "S/nope.png", "mask": "S/img_mask.png"},
             r"item 1: file for key 'image' not found: .*nope\.png"),
            ("not_dict", ["S/img.png"], "item 1 must be a dict"),
        ]
    )
    def test_validation_errors(self, _, bad, regex):
        path = self._write_json({"training": [{"image": "S/img.png", "mask": "S/img_mask.png"}, bad]})
        with self.assertRaisesRegex(ValueError, regex):
            load_jrs_datalist(path)

    def test_check_files_off(self):
        path = self._write_json({"training": [{"image": "S/nope.png", "mask": "S/nope_mask.png"}]})
        (item,) = load_jrs_datalist(path, check_files=False)
        self.assertEqual(item["image"], os.path.join(self.data, "S", "nope.png"))

    def test_file_level_errors(self):
        with self.assertRaisesRegex(ValueError, "does not exist"):
            load_jrs_datalist(os.path.join(self.root, "none.json"))
        with self.assertRaisesRegex(ValueError, r"section 'validation' not found.*\['training'\]"):
            load_jrs_datalist(self._write_json({"training": []}), section="validation")
        with self.assertRaisesRegex(ValueError, "must be a list"):
            load_jrs_datalist(self._write_json({"training": {"image": "a"}}))
        with self.assertRaisesRegex(ValueError, "JSON object"):
            load_jrs_datalist(self._write_json([1, 2]))
        bad = os.path.join(self.data, "broken.json")
        with open(bad, "w") as f:
            f.write("{not json")
        with self.assertRaisesRegex(ValueError, "not valid JSON"):
            load_jrs_datalist(bad)

    def test_validate_item_kinds(self):
        self.assertEqual(validate_jrs_item(self.pair, check_files=True), "pair")
        self.assertEqual(validate_jrs_item(self.single, check_files=True), "single")
        with self.assertRaisesRegex(TypeError, "must be a dict"):
            validate_jrs_item(["a"], index=3)


class TestLongitudinalPairs(unittest.TestCase):
    def test_first_visit_reference(self):
        studies = [
            {"patient_id": "B", "visit": 2, "image": "b2.png", "mask": "b2m.png"},
            {"patient_id": "A", "visit": 1, "image": "a1.png", "label": "diseased"},
            {"patient_id": "A", "visit": 0, "image": "a0.png", "mask": "a0m.png"},
            {"patient_id": "B", "visit": 10, "image": "b10.png"},
            {"patient_id": "A", "visit": 3, "image": "a3.png", "mask": "a3m.png"},
        ]
        expected = [
            {"patient_id": "A", "reference": "a0.png", "reference_mask": "a0m.png", "floating": "a1.png",
             "visit": 1, "reference_visit": 0, "label": "diseased"},
            {"patient_id": "A", "reference": "a0.png", "reference_mask": "a0m.png", "floating": "a3.png",
             "floating_mask": "a3m.png", "visit": 3, "reference_visit": 0},
            # numeric ordering: 2 before 10
            {"patient_id": "B", "reference": "b2.png", "reference_mask": "b2m.png", "floating": "b10.png",
             "visit": 10, "reference_visit": 2},
        ]
        self.assertEqual(make_longitudinal_pairs(studies), expected)

    def test_labelled_visit_is_reference(self):
        studies = [
            {"patient_id": "A", "date": "2020-01-05", "image": "a0.png"},
            {"patient_id": "A", "date": "20200301", "image": "a1.png", "mask": "a1m.png"},
            {"patient_id": "A", "date": datetime.date(2021, 1, 1), "image": "a2.png"},
        ]
        out = make_longitudinal_pairs(studies)
        self.assertEqual([p["floating"] for p in out], ["a0.png", "a2.png"])
        self.assertTrue(all(p["reference"] == "a1.png" and p["reference_mask"] == "a1m.png" for p in out))
        self.assertEqual([p["visit"] for p in out], ["2020-01-05", "2021-01-01"])
        self.assertEqual(out[0]["reference_visit"], "2020-03-01")

    def test_skips_with_log(self):
        studies = [
            {"patient_id": "solo", "visit": 0, "image": "s.png", "mask": "sm.png"},
            {"patient_id": "nomask", "visit": 0, "image": "n0.png"},
            {"patient_id": "nomask", "visit": 1, "image": "n1.png"},
        ]
        with self.assertLogs("monai_jrs.data.datalist", level="INFO") as logs:
            self.assertEqual(make_longitudinal_pairs(studies), [])
        text = "\n".join(logs.output)
        self.assertIn("'solo' has a single study", text)
        self.assertIn("'nomask' has no study with a 'mask'", text)

    @parameterized.expand(
        [
            ("no_pid", [{"visit": 0, "image": "a.png"}], "missing 'patient_id'"),
            ("no_image", [{"patient_id": "A", "visit": 0}], "missing 'image'"),
            ("no_visit", [{"patient_id": "A", "image": "a.png"}], "needs a 'visit' or a 'date'"),
            ("dup", [{"patient_id": "A", "visit": 1, "image": "a.png", "mask": "m"},
                     {"patient_id": "A", "visit": 1, "image": "b.png"}], "same visit"),
            ("bad_date", [{"patient_id": "A", "date": "05/01/2020", "image": "a.png", "mask": "m"},
                          {"patient_id": "A", "date": "2020-01-01", "image": "b.png"}], "YYYY-MM-DD"),
        ]
    )
    def test_bad_studies(self, _, studies, regex):
        with self.assertRaisesRegex(ValueError, regex):
            make_longitudinal_pairs(studies)


class TestSplitByPatient(unittest.TestCase):
    def setUp(self):
        rng = random.Random(123)
        # 30 patients with 1 to 4 items each
        self.items = [
            {"patient_id": f"P{p:02d}", "image": f"P{p:02d}_{k}.png", "mask": f"P{p:02d}_{k}_m.png"}
            for p in range(30)
            for k in range(rng.randint(1, 4))
        ]

    def test_no_leak_and_complete(self):
        splits = split_by_patient(self.items, (0.8, 0.1, 0.1), seed=0)
        pids = [{it["patient_id"] for it in s} for s in splits]
        self.assertEqual([len(p) for p in pids], [24, 3, 3])
        for a in range(3):
            for b in range(a + 1, 3):
                self.assertFalse(pids[a] & pids[b], f"patients shared by splits {a} and {b}")
        self.assertEqual(sum(len(s) for s in splits), len(self.items))
        self.assertEqual(
            sorted(it["image"] for s in splits for it in s), sorted(it["image"] for it in self.items)
        )

    def test_deterministic_and_order_independent(self):
        a = split_by_patient(self.items, seed=5)
        b = split_by_patient(list(reversed(self.items)), seed=5)
        key = [sorted(it["image"] for it in s) for s in a]
        self.assertEqual(key, [sorted(it["image"] for it in s) for s in b])
        self.assertEqual(a, split_by_patient(self.items, seed=5))
        c = split_by_patient(self.items, seed=6)
        self.assertNotEqual(key, [sorted(it["image"] for it in s) for s in c])

    def test_items_keep_order(self):
        (train,) = split_by_patient(self.items, fractions=(1.0,))
        self.assertEqual(train, self.items)

    def test_items_without_patient_id(self):
        items = [{"image": f"img{i}.png", "mask": "m.png"} for i in range(10)] + [
            {"image": "img0.png", "mask": "other.png"}
        ]
        tr, va = split_by_patient(items, (0.5, 0.5), seed=1)
        self.assertEqual((len({i["image"] for i in tr}), len({i["image"] for i in va})), (5, 5))
        self.assertFalse({i["image"] for i in tr} & {i["image"] for i in va})

    @parameterized.expand([((0.5, 0.4),), ((1.2, -0.2),), ((),), ((float("nan"), 1.0),)])
    def test_bad_fractions(self, fractions):
        with self.assertRaisesRegex(ValueError, "fractions"):
            split_by_patient(self.items, fractions)


if __name__ == "__main__":
    unittest.main()
