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
"""A small MONAI Label studies folder of synthetic longitudinal chest X-rays with known deformations.

- P1 (DICOM DX, dates in the headers): ``p1_v0`` 2023-01-05 (labelled, NIfTI written as 3D Slicer does),
  ``p1_v1`` 2023-06-10 (follow-up: rotated, shifted, another grid; not labelled), ``p1_v2`` 2024-01-20 (labelled
  with a deliberately different mask, so the "earliest" rule must not pick it).
- P2 (PNG, visits in ``visits.json``): ``p2_a`` visit 1 (labelled, PNG label), ``p2_b`` visit 2 (shifted, another
  grid; not labelled).
- P3 (DICOM DX): two visits, no label.

The expected mask of each follow-up is the reference mask moved by the same deformation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from monai_jrs.data.testing import make_dx_dicom
from tests.networks.synthetic import synthetic_chest

__all__ = ["make_studies", "moved"]


def moved(image: torch.Tensor, shift: tuple[float, float], angle_deg: float, size: tuple[int, int]) -> torch.Tensor:
    """``image`` (1, 1, H, W) rotated by ``angle_deg`` about its centre, shifted by ``shift`` (rows, cols) reference
    pixels and resampled onto a ``size`` grid covering the same field of view."""
    h, w = image.shape[2:]
    hf, wf = size
    r = torch.arange(hf, dtype=torch.float32) * (h - 1) / (hf - 1)
    c = torch.arange(wf, dtype=torch.float32) * (w - 1) / (wf - 1)
    rr, cc = torch.meshgrid(r, c, indexing="ij")
    # inverse map: output point q -> source point R^-1 (q - shift - centre) + centre
    a = math.radians(angle_deg)
    cr, ccn = (h - 1) / 2, (w - 1) / 2
    y, x = rr - shift[0] - cr, cc - shift[1] - ccn
    sr = math.cos(a) * y + math.sin(a) * x + cr
    sc = -math.sin(a) * y + math.cos(a) * x + ccn
    grid = torch.stack((sc * 2 / (w - 1) - 1, sr * 2 / (h - 1) - 1), dim=-1)[None]
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _write_slicer_label(mask: np.ndarray, image_path: Path, out: Path) -> None:
    """A label as 3D Slicer saves it: ITK array view (rows, cols) with the image's geometry."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image_path))
    reader.ReadImageInformation()
    arr = mask.astype(np.uint8)
    img = sitk.GetImageFromArray(arr[None] if reader.GetDimension() == 3 else arr)
    img.SetSpacing(reader.GetSpacing())
    img.SetOrigin(reader.GetOrigin())
    img.SetDirection(reader.GetDirection())
    out.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(out), useCompression=True)


def make_studies(root: str | Path) -> dict[str, np.ndarray]:
    """Write the studies folder (images, ``labels/final/``, ``visits.json``) under ``root``.

    Returns:
        the expected ``(rows, cols)`` lung mask of each unlabelled follow-up, by image id.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / "labels" / "final"
    image, mask = synthetic_chest((300, 260))
    expected = {}

    def dicom(name: str, img: torch.Tensor, patient: str, date: str) -> Path:
        stored = np.round(img[0, 0].numpy() * 4095).astype(np.uint16)
        return make_dx_dicom(root / f"{name}.dcm", stored, imager_spacing=(0.2, 0.2), patient_id=patient,
                             study_date=date)

    # P1: DICOM, earliest labelled visit is the reference
    p1_v0 = dicom("p1_v0", image, "P1", "20230105")
    _write_slicer_label(mask[0, 0].numpy(), p1_v0, final / "p1_v0.nii.gz")
    deform = ((8.0, -6.0), 4.0, (320, 280))
    dicom("p1_v1", moved(image, *deform), "P1", "20230610")
    expected["p1_v1"] = (moved(mask, *deform)[0, 0] > 0.5).numpy().astype(np.uint8)
    p1_v2 = dicom("p1_v2", moved(image, (-5.0, 5.0), -3.0, (300, 260)), "P1", "20240120")
    wrong = np.zeros((300, 260), np.uint8)
    wrong[40:120, 30:100] = 1
    _write_slicer_label(wrong, p1_v2, final / "p1_v2.nii.gz")

    # P2: PNG with a JSON visit mapping
    Image.fromarray((image[0, 0].numpy() * 65535).astype(np.uint16)).save(root / "p2_a.png")
    Image.fromarray(mask[0, 0].numpy().astype(np.uint8)).save(final / "p2_a.png")
    deform = ((9.0, -7.0), 0.0, (360, 312))
    Image.fromarray((moved(image, *deform)[0, 0].numpy() * 65535).astype(np.uint16)).save(root / "p2_b.png")
    expected["p2_b"] = (moved(mask, *deform)[0, 0] > 0.5).numpy().astype(np.uint8)
    visits = {"p2_a": {"patient_id": "P2", "visit": 1}, "p2_b": {"patient_id": "P2", "visit": 2}}
    (root / "visits.json").write_text(json.dumps(visits, indent=2), encoding="utf-8")

    # P3: no label at all
    dicom("p3_v0", image, "P3", "20220301")
    dicom("p3_v1", moved(image, (4.0, 4.0), 2.0, (300, 260)), "P3", "20220901")
    return expected
