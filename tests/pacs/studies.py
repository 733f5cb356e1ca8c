# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""Synthetic longitudinal chest radiograph studies for a test PACS, with known deformations.

- P1 (three visits, one study each): ``v0`` 2023-01-05 DX MONOCHROME2 12 bit with ImagerPixelSpacing (the annotated
  reference), ``v1`` 2023-06-10 CR MONOCHROME1 16 bit (stored values inverted) without any spacing, rotated and
  shifted onto another grid, ``v2`` 2024-01-20 DX MONOCHROME2 with PixelSpacing only, shifted further.
- P2 (two visits): no label anywhere (the "patient without a labelled visit" case).

The expected lung mask of each follow-up is the reference mask moved by the same deformation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from monai_jrs.data.testing import make_dx_dicom
from tests.monailabel.studies import moved
from tests.networks.synthetic import synthetic_chest

__all__ = ["PacsVisit", "make_pacs_studies"]


@dataclass
class PacsVisit:
    """One generated visit: its file, patient, date, UIDs and expected lung mask ``(rows, cols)``."""

    name: str
    path: Path
    patient_id: str
    date: str
    study_uid: str
    series_uid: str
    sop_uid: str
    mask: np.ndarray


def make_pacs_studies(folder: str | Path, size: tuple[int, int] = (300, 260)) -> dict[str, PacsVisit]:
    """Write the DICOM files of P1 (``p1_v0``..``p1_v2``) and P2 (``p2_v0``, ``p2_v1``) into ``folder``."""
    import pydicom

    folder = Path(folder)
    image, mask = synthetic_chest(size)
    out: dict[str, PacsVisit] = {}

    def write(name: str, img: torch.Tensor, msk: torch.Tensor, patient: str, date: str, **kw) -> None:
        bits = kw.pop("bits", 12)
        stored = img[0, 0].numpy() * (2**bits - 1)
        if kw.get("photometric") == "MONOCHROME1":
            stored = (2**bits - 1) - stored
        p = make_dx_dicom(folder / f"{name}.dcm", np.round(stored).astype(np.uint16), patient_id=patient,
                          study_date=date, bits=bits, **kw)
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        out[name] = PacsVisit(name, p, patient, date, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                              str(ds.SOPInstanceUID), (msk[0, 0] > 0.5).numpy().astype(np.uint8))

    write("p1_v0", image, mask, "P1", "20230105", imager_spacing=(0.2, 0.2))
    d1 = ((8.0, -6.0), 4.0, (320, 280))
    write("p1_v1", moved(image, *d1), moved(mask, *d1), "P1", "20230610", photometric="MONOCHROME1", bits=16,
          imager_spacing=None, modality="CR")
    d2 = ((-6.0, 7.0), -3.0, size)
    write("p1_v2", moved(image, *d2), moved(mask, *d2), "P1", "20240120", imager_spacing=None,
          pixel_spacing=(0.2, 0.2))
    write("p2_v0", image, mask, "P2", "20220301")
    d3 = ((4.0, 4.0), 2.0, size)
    write("p2_v1", moved(image, *d3), moved(mask, *d3), "P2", "20220901")
    return out
