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

import os
import tempfile
import unittest

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset, MetaTensor
from monai.transforms import EnsureChannelFirstd, LoadImaged, MapTransform, Randomizable
from PIL import Image

from monai_jrs.data.dataset import SynthesizePairD, SynthesizePaird, SynthesizePairDict, make_jrs_dataset

KEYS = ["reference", "reference_mask", "floating", "floating_mask", "image", "mask"]


class RollFloatingd(Randomizable, MapTransform):
    """Stand-in for the project's deformation transform: rolls floating + mask by a random (dy, dx) and records it."""

    def __init__(self):
        MapTransform.__init__(self, keys=["floating", "floating_mask"])
        self.calls = 0
        self.shift = (0, 0)

    def randomize(self, data=None):
        self.shift = (int(self.R.randint(1, 5)), int(self.R.randint(1, 5)))

    def __call__(self, data):
        self.calls += 1
        self.randomize()
        d = dict(data)
        for k in self.keys:
            d[k] = torch.roll(d[k], shifts=self.shift, dims=(-2, -1))
        d["ddf_applied"] = torch.tensor(self.shift, dtype=torch.float32)
        return d


class CountingLoadd(MapTransform):
    """Deterministic transform counting how often it runs (to check what a CacheDataset caches)."""

    def __init__(self):
        super().__init__(keys=KEYS, allow_missing_keys=True)
        self.calls = 0

    def __call__(self, data):
        self.calls += 1
        return dict(data)


class TestSynthesizePaird(unittest.TestCase):
    def test_single_to_pair(self):
        image = MetaTensor(torch.arange(36.0).reshape(1, 6, 6), meta={"filename_or_obj": "a.png"})
        mask = (image > 10).float()
        deform = RollFloatingd()
        t = SynthesizePaird(deform).set_random_state(seed=0)
        out = t({"image": image, "mask": mask, "patient_id": "A"})
        self.assertEqual(set(out), {"reference", "reference_mask", "floating", "floating_mask", "ddf_applied",
                                    "patient_id"})
        dy, dx = deform.shift
        torch.testing.assert_close(out["reference"], image)
        torch.testing.assert_close(out["reference_mask"], mask)
        torch.testing.assert_close(out["floating"], torch.roll(image, (dy, dx), dims=(-2, -1)))
        torch.testing.assert_close(out["floating_mask"], torch.roll(mask, (dy, dx), dims=(-2, -1)))
        self.assertEqual(out["floating"].meta["filename_or_obj"], "a.png")
        # the input tensors were copied, not deformed in place
        torch.testing.assert_close(image, torch.arange(36.0).reshape(1, 6, 6))

    def test_copy_is_independent(self):
        def add_one_in_place(d):
            d["floating"] += 1
            d["floating_mask"] += 1
            return d

        img, msk = np.zeros((1, 4, 4), np.float32), np.zeros((1, 4, 4), np.float32)
        out = SynthesizePaird(add_one_in_place)({"image": img, "mask": msk})
        self.assertEqual((float(out["reference"].sum()), float(out["floating"].sum())), (0.0, 16.0))
        self.assertEqual(float(out["reference_mask"].sum()), 0.0)

    def test_keep_source_and_custom_keys(self):
        out = SynthesizePaird(lambda d: d, image_key="img", mask_key="seg", keep_source=True)(
            {"img": torch.ones(1, 2, 2), "seg": torch.zeros(1, 2, 2)}
        )
        self.assertEqual(set(out), {"img", "seg", "reference", "reference_mask", "floating", "floating_mask"})

    def test_pairs_pass_through(self):
        deform = RollFloatingd()
        pair = {"reference": torch.ones(1, 4, 4), "reference_mask": torch.ones(1, 4, 4),
                "floating": torch.zeros(1, 4, 4), "patient_id": "P"}
        out = SynthesizePaird(deform)(pair)
        self.assertEqual(deform.calls, 0)
        self.assertIs(out["floating"], pair["floating"])

    def test_seed_forwarded(self):
        a, b = RollFloatingd(), RollFloatingd()
        d = {"image": torch.rand(1, 8, 8), "mask": torch.rand(1, 8, 8)}
        ta, tb = SynthesizePaird(a).set_random_state(seed=3), SynthesizePaird(b).set_random_state(seed=3)
        shifts_a = [(ta(d), a.shift)[1] for _ in range(4)]
        shifts_b = [(tb(d), b.shift)[1] for _ in range(4)]
        self.assertEqual(shifts_a, shifts_b)
        self.assertGreater(len(set(shifts_a)), 1)

    def test_errors(self):
        with self.assertRaisesRegex(TypeError, "deformation must be callable"):
            SynthesizePaird("rand_affine")
        with self.assertRaisesRegex(ValueError, "needs a pair.*'mask'"):
            SynthesizePaird(lambda d: d)({"image": torch.ones(1, 2, 2)})
        with self.assertRaisesRegex(TypeError, "must return a dict holding 'floating', got Tensor"):
            SynthesizePaird(lambda d: d["floating"])({"image": torch.ones(1, 2, 2), "mask": torch.ones(1, 2, 2)})
        with self.assertRaisesRegex(TypeError, r"with keys \['x'\]"):
            SynthesizePaird(lambda d: {"x": 1})({"image": torch.ones(1, 2, 2), "mask": torch.ones(1, 2, 2)})

    def test_aliases(self):
        self.assertIs(SynthesizePairD, SynthesizePaird)
        self.assertIs(SynthesizePairDict, SynthesizePaird)


class TestMakeJRSDataset(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        d = self._tmp.name
        rng = np.random.default_rng(0)

        def png(name, arr):
            p = os.path.join(d, name)
            Image.fromarray(arr).save(p)
            return p

        self.arrays = {n: rng.integers(0, 255, (16, 12), dtype=np.uint8) for n in ("s0", "s1", "r", "f")}
        masks = {n: (a > 127).astype(np.uint8) for n, a in self.arrays.items()}
        self.singles = [
            {
                "patient_id": f"S{i}",
                "image": png(f"s{i}.png", self.arrays[f"s{i}"]),
                "mask": png(f"s{i}_m.png", masks[f"s{i}"]),
            }
            for i in range(2)
        ]
        self.pair = {
            "patient_id": "P", "reference": png("r.png", self.arrays["r"]), "reference_mask": png("rm.png", masks["r"]),
            "floating": png("f.png", self.arrays["f"]), "floating_mask": png("fm.png", masks["f"]),
        }
        self.load = [LoadImaged(KEYS, allow_missing_keys=True, image_only=True),
                     EnsureChannelFirstd(KEYS, allow_missing_keys=True)]

    def tearDown(self):
        self._tmp.cleanup()

    def test_mixed_items(self):
        deform = RollFloatingd()
        ds = make_jrs_dataset(self.singles + [self.pair], self.load, deformation=deform, seed=0)
        self.assertIsInstance(ds, Dataset)
        self.assertNotIsInstance(ds, CacheDataset)
        s0, pair = ds[0], ds[2]
        self.assertNotIn("image", s0)
        # PIL reader gives (W, H): compare with the transposed array
        ref = torch.as_tensor(self.arrays["s0"].T[None].astype(np.float32))
        torch.testing.assert_close(s0["reference"].as_tensor().float(), ref)
        torch.testing.assert_close(s0["floating"].as_tensor().float(), torch.roll(ref, deform.shift, dims=(-2, -1)))
        torch.testing.assert_close(pair["floating"].as_tensor().float(),
                                   torch.as_tensor(self.arrays["f"].T[None].astype(np.float32)))
        self.assertNotIn("ddf_applied", pair)
        self.assertEqual(deform.calls, 1)  # only the single image was deformed

    def test_cache_keeps_loading_and_redraws_deformation(self):
        counter, deform = CountingLoadd(), RollFloatingd()
        ds = make_jrs_dataset(self.singles, self.load + [counter], deformation=deform, cache_rate=1.0, seed=1)
        self.assertIsInstance(ds, CacheDataset)
        self.assertEqual(counter.calls, 2)  # both items loaded once, into the cache
        shifts = []
        for _ in range(6):
            ds[0]
            shifts.append(deform.shift)
        self.assertEqual(counter.calls, 2)  # no reloading
        self.assertEqual(deform.calls, 6)  # a fresh deformation at every access
        self.assertGreater(len(set(shifts)), 1)

    def test_seed_reproducible(self):
        def run(seed):
            deform = RollFloatingd()
            ds = make_jrs_dataset(self.singles, self.load, deformation=deform, seed=seed)
            return [ds[i % 2]["floating"] for i in range(6)]

        a, b, c = run(7), run(7), run(8)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y)
        self.assertFalse(all(torch.equal(x, y) for x, y in zip(a, c)))

    def test_batches(self):
        def run():
            # monai.data.DataLoader re-seeds the transforms from torch's generator
            torch.manual_seed(0)
            ds = make_jrs_dataset(self.singles, self.load, deformation=RollFloatingd())
            return next(iter(DataLoader(ds, batch_size=2, num_workers=0)))

        a, b = run(), run()
        self.assertEqual(tuple(a["floating"].shape), (2, 1, 12, 16))
        self.assertEqual(a["patient_id"], ["S0", "S1"])
        torch.testing.assert_close(a["floating"], b["floating"])
        torch.testing.assert_close(a["ddf_applied"], b["ddf_applied"])

    def test_items_not_modified(self):
        items = [dict(i) for i in self.singles]
        ds = make_jrs_dataset(items, self.load, deformation=RollFloatingd())
        ds[0]
        self.assertEqual(items, self.singles)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "2 of 3 item.*single images; pass a deformation"):
            make_jrs_dataset(self.singles + [self.pair], self.load)
        with self.assertRaisesRegex(ValueError, "cache_rate"):
            make_jrs_dataset([self.pair], self.load, cache_rate=1.5)
        with self.assertRaisesRegex(TypeError, "item 0 must be a dict"):
            make_jrs_dataset(["a.png"], self.load)
        with self.assertRaisesRegex(ValueError, "item 1 is neither a pair"):
            make_jrs_dataset([self.pair, {"patient_id": "x"}], self.load)
        # pairs only: no deformation needed
        self.assertEqual(len(make_jrs_dataset([self.pair], self.load)), 1)


if __name__ == "__main__":
    unittest.main()
