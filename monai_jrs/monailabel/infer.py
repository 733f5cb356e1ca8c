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
"""MONAI Label infer task ``jrs_lung``: the lung mask of a follow-up radiograph by registration to the patient's
annotated visit.

For a requested datastore image, :class:`JRSLungInferTask` finds the reference (:class:`ReferenceFinder`: another
visit of the same patient with a saved ``final`` label), registers the requested image to it with the JRS generator of
a monai_jrs bundle (the shipped ``bundle/`` by default) and returns the lung mask of the **requested** image on its
own grid.

Pixel layout (one convention end to end): an image and a label correspond pixel for pixel when their arrays, as ITK
reads them (``GetArrayFromImage``: ``(rows, cols)``), match. That is how 3D Slicer and MONAI Label's own writer treat
2D files: DICOM and PNG are read as the viewer shows them; NIfTI images and labels are read with
``nifti_layout="cols_rows"`` (NIfTI axis 0 = ITK x = columns). The result label is written with SimpleITK with the
requested image's size, spacing, origin and direction (a 2D or single-slice image as ITK reads it), so Slicer
overlays it on the image without resampling. Values: 0 background, 1 lung.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai.utils import optional_import

from monai_jrs.apps.registration import JRSRegistrar, default_bundle_dir
from monai_jrs.data.io import load_mask, load_xray
from monai_jrs.metrics import compute_dice_score
from monai_jrs.monailabel.reference import REFERENCE_CHOICES, Reference, ReferenceFinder, ReferenceNotFoundError
from monai_jrs.utils.deps import require
from monai_jrs.utils.enums import JRSKeys

# the `monailabel` extra; without it this module imports, and building the task raises a MissingDependencyError
# that names the extra (monai_jrs.utils.deps.require in JRSLungInferTask.__init__)
BasicInferTask, _ = optional_import("monailabel.tasks.infer.basic_infer", name="BasicInferTask", as_type="base")

__all__ = ["JRSLungInferTask", "InvalidInferRequestError", "RESULT_EXTENSIONS", "image_id_of", "write_label_like"]

logger = logging.getLogger(__name__)

#: label file formats the task writes (``result_extension`` in the request or the task config).
RESULT_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".png")


class InvalidInferRequestError(ValueError):
    """A request parameter of ``jrs_lung`` has an unsupported value (the message says expected vs got)."""


def image_id_of(datastore: Any, image: str) -> str | None:
    """The datastore id of an image given by id or by its local URI (what ``MONAILabelApp.infer`` passes on).

    Args:
        datastore: a MONAI Label datastore.
        image: an image id or the ``get_image_uri`` of one.

    Returns:
        the id, or None when the datastore holds no such image (e.g. an uploaded file).
    """
    images = datastore.list_images()
    if image in images:
        return image
    target = os.path.realpath(image)
    for image_id in images:
        uri = datastore.get_image_uri(image_id)
        if uri and os.path.realpath(uri) == target:
            return image_id
    return None


def write_label_like(mask: np.ndarray, image_path: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Write a ``(rows, cols)`` label with the geometry ITK reads from ``image_path`` (size, spacing, origin,
    direction).

    Args:
        mask: ``(rows, cols)`` integer label, rows/cols as ITK's array view of the image.
        image_path: the image the label belongs to (DICOM, PNG, NIfTI, ... anything SimpleITK reads).
        output: the label file; the format follows its extension (:data:`RESULT_EXTENSIONS`).

    Returns:
        the path written.

    Raises:
        ValueError: the mask shape differs from the image's ``(rows, cols)``, or the image is not 2D / single-slice.
    """
    sitk = require("SimpleITK", "writing a MONAI Label result on the image's geometry")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image_path))
    reader.ReadImageInformation()
    size = reader.GetSize()
    if len(size) not in (2, 3) or (len(size) == 3 and size[2] != 1):
        raise ValueError(f"{image_path}: expected a 2D or single-slice image, got ITK size {size}.")
    arr = np.asarray(mask, dtype=np.uint8)
    if arr.shape != (size[1], size[0]):
        raise ValueError(f"label shape {arr.shape} (rows, cols) does not match the image {image_path} of ITK size "
                         f"{size} (cols, rows[, 1]).")
    out = sitk.GetImageFromArray(arr[None] if len(size) == 3 else arr)
    out.SetSpacing(reader.GetSpacing())
    out.SetOrigin(reader.GetOrigin())
    out.SetDirection(reader.GetDirection())
    path = Path(output)
    sitk.WriteImage(out, str(path), useCompression=path.name.lower().endswith((".gz", ".nrrd")))
    return path


class JRSLungInferTask(BasicInferTask):
    """Lung mask of a follow-up chest X-ray by JRS registration to the patient's annotated reference visit.

    The request's image must be in the datastore (by id; the app passes its URI, which is mapped back to the id);
    :class:`ReferenceFinder` picks the labelled reference. The network is loaded on first use (or at construction
    with ``preload``) and shared by all requests.

    Args:
        datastore: the app's datastore (``MONAILabelApp.datastore()``).
        finder: the reference rule; default :class:`ReferenceFinder` (DICOM headers, earliest labelled visit).
        bundle_dir: monai_jrs bundle (``configs/inference.json`` + ``models/model.pt``); default: the shipped one.
        device: torch device of the network.
        size: network grid (default: the bundle's ``image_size``).
        result_extension: label file format, one of :data:`RESULT_EXTENSIONS` (a request may override it).
        description: shown in ``/info/``.
        preload: load the network now rather than on the first request.

    Raises:
        ValueError: for an unsupported ``result_extension``.
        FileNotFoundError: ``preload`` and the bundle lacks its config or weights.
    """

    def __init__(
        self,
        datastore: Any,
        finder: ReferenceFinder | None = None,
        bundle_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        size: int | None = None,
        result_extension: str = ".nii.gz",
        description: str = "Lung mask of a follow-up chest X-ray by JRS registration to the patient's labelled visit",
        preload: bool = False,
    ) -> None:
        if result_extension not in RESULT_EXTENSIONS:
            raise ValueError(f"`result_extension` must be one of {RESULT_EXTENSIONS}, got {result_extension!r}.")
        InferType = require("monailabel.interfaces.tasks.infer_v2", "the MONAI Label infer task jrs_lung").InferType

        self.bundle_dir = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
        choice = finder.choice if finder is not None else ReferenceFinder().choice
        super().__init__(
            path=str(self.bundle_dir / "models" / "model.pt"),
            network=None,
            type=InferType.SEGMENTATION,
            labels={"lung": 1},
            dimension=2,
            description=description,
            # lists are offered as choices by MONAI Label clients (Slicer), the first being the default
            config={
                "result_extension": [result_extension, *(e for e in RESULT_EXTENSIONS if e != result_extension)],
                "reference_choice": [choice, *(c for c in REFERENCE_CHOICES if c != choice)],
            },
        )
        self._config["device"] = device  # BasicInferTask lists every device; this task runs where it was built
        self.datastore = datastore
        self.result_extension = result_extension
        self.finder = finder if finder is not None else ReferenceFinder()
        self.device = device
        self.size = size
        self._registrar: JRSRegistrar | None = None
        self._lock = threading.Lock()
        if preload:
            self.registrar()

    def is_valid(self) -> bool:
        """True when the bundle has its inference config and weights."""
        return (self.bundle_dir / "configs" / "inference.json").is_file() and (
            self.bundle_dir / "models" / "model.pt"
        ).is_file()

    def registrar(self) -> JRSRegistrar:
        """The loaded network (loaded once, thread-safe)."""
        with self._lock:
            if self._registrar is None:
                t = time.perf_counter()
                self._registrar = JRSRegistrar(self.bundle_dir, device=self.device, size=self.size)
                logger.info("loaded JRS bundle %s on %s in %.2f s", self.bundle_dir, self.device,
                            time.perf_counter() - t)
            return self._registrar

    def pre_transforms(self, data: dict | None = None) -> Sequence[Callable]:
        """Find the reference of the requested image, then load the reference, its label and the requested image."""
        return [_FindReference(self), _LoadPair()]

    def inferer(self, data: dict | None = None) -> Callable:  # type: ignore[override]
        """Registration of the requested image to the reference (a callable applied by :meth:`run_inferer`)."""
        return self._register

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cpu") -> dict[str, Any]:
        """Run the registration; store the requested image's mask under ``pred`` and the QA values under ``result``."""
        return self.inferer(data)(data)

    def post_transforms(self, data: dict | None = None) -> Sequence[Callable]:
        """None: the mask is final (two largest components, full resolution) when the inferer returns it."""
        return []

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[str, dict]:
        """Write ``pred`` with the geometry of the requested image; return ``(file, result json)``."""
        ext = extension or _requested(data, "result_extension", self.result_extension)
        if ext not in RESULT_EXTENSIONS:
            raise InvalidInferRequestError(f"`result_extension` must be one of {RESULT_EXTENSIONS}, got {ext!r}.")
        fd, name = tempfile.mkstemp(suffix=ext, prefix="jrs_lung_")
        os.close(fd)
        write_label_like(data[self.output_label_key], data["image_path"], name)
        return name, dict(data.get(self.output_json_key, {}))

    @torch.no_grad()
    def _register(self, data: dict[str, Any]) -> dict[str, Any]:
        reg = self.registrar()
        t = time.perf_counter()
        ref_grid, mask_grid = reg.inferer.prepare_reference(
            data["reference_image"], data["reference_mask"], spacing=data["reference_meta"].get("spacing")
        )
        result = reg.inferer(ref_grid, mask_grid, data["floating_image"], reg.network,
                             floating_spacing=data["floating_meta"].get("spacing"))
        mask = result.floating_mask[0, 0].numpy().astype(np.uint8)
        ref: Reference = data["reference"]
        registered_mask = (result.network[JRSKeys.REGISTERED_MASK_PROB.value] > 0.5).float()
        mask_net = mask_grid.net
        data[self.output_label_key] = mask
        data[self.output_json_key] = {
            "image": ref.requested.image_id,
            "patient_id": ref.requested.patient_id,
            "reference_image": ref.image_id,
            "reference_label": ref.label_id,
            "reference_choice": _requested(data, "reference_choice", self.finder.choice),
            "reference_visit": ref.visit.time.isoformat() if ref.visit.time is not None else None,
            "labelled_visits": [v.image_id for v in ref.candidates],
            "dice_reference_vs_registered_mask": float(compute_dice_score(registered_mask, mask_net[None])[0]),
            "lung_fraction": float(mask.mean()),
            "shape": list(mask.shape),
            "quality": dict(result.quality),
            "register_s": round(time.perf_counter() - t, 4),
        }
        return data


class _FindReference:
    """Pre-transform: ``data["reference"]`` = the :class:`Reference` of the requested image."""

    def __init__(self, task: JRSLungInferTask) -> None:
        self.task = task

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        image = data.get("image_id") or data.get("image_path") or data.get("image")
        if not isinstance(image, str):
            raise ReferenceNotFoundError(f"jrs_lung needs a datastore image id, got {type(image).__name__}.")
        image_id = image_id_of(self.task.datastore, image)
        if image_id is None:
            raise ReferenceNotFoundError(
                f"image {image!r} is not in the datastore: jrs_lung needs the patient's visits, so the image must be "
                "a datastore image (upload it with PUT /datastore/image first)."
            )
        finder = self.task.finder
        choice = _requested(data, "reference_choice", finder.choice)
        if choice not in REFERENCE_CHOICES:
            raise InvalidInferRequestError(f"`reference_choice` must be one of {REFERENCE_CHOICES}, got {choice!r}.")
        if choice != finder.choice:
            finder = ReferenceFinder(finder.resolver, choice=choice, label_tag=finder.label_tag)
        data["reference"] = finder(self.task.datastore, image_id)
        data["image_path"] = self.task.datastore.get_image_uri(image_id)  # also when the request gave the id
        return data


class _LoadPair:
    """Pre-transform: load the reference image, its label and the requested image as ``(1, rows, cols)`` tensors."""

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        ref: Reference = data["reference"]
        data["reference_image"], data["reference_meta"] = load_xray(ref.image_uri, nifti_layout="cols_rows")
        try:
            data["reference_mask"], _ = load_mask(ref.label_uri, reference_meta=data["reference_meta"],
                                                  nifti_layout="cols_rows")
        except ValueError as e:
            raise ReferenceNotFoundError(f"the label {ref.label_id!r} of reference image {ref.image_id!r} is "
                                         f"unusable: {e}") from e
        data["floating_image"], data["floating_meta"] = load_xray(data["image_path"], nifti_layout="cols_rows")
        return data


def _requested(data: dict[str, Any], key: str, default: str) -> str:
    """A request parameter; the task config's list of choices (nothing chosen by the client) means the default."""
    value = data.get(key)
    return value if isinstance(value, str) and value else default
