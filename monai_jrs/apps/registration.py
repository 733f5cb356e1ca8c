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
"""Register follow-up chest X-rays onto an annotated reference and segment their lungs, from files to files.

:class:`JRSRegistrar` loads a bundle (configs + ``models/model.pt``) once; :meth:`JRSRegistrar.register` reads a
reference radiograph, its lung mask and any number of floating (follow-up) radiographs (DICOM file or folder,
PNG/JPEG/TIFF, NIfTI, NumPy), runs the generator on the network grid and maps every result back to the full
resolution of the input images. :func:`register` is the one-call form, used by the ``monai-jrs register`` command.

The outputs (``OUT_DIR/<floating file stem>/``: registered image, DDF in pixels, registered and floating lung masks,
overlay, temporal subtraction, ``metrics.json``, a DICOM SEG for DICOM inputs) are written by
:func:`monai_jrs.data.writers.save_registration_result`; its module documents each file.

Nothing is ever written inside an input folder (a DICOM folder given as input, or the folder holding an input file
itself; a new sub-folder next to the input files is fine), and existing outputs are never replaced unless ``overwrite``.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import deprecated

from monai_jrs._version import __version__
from monai_jrs.data import writers
from monai_jrs.data.dicom import list_dicom_images
from monai_jrs.data.io import load_mask, load_xray
from monai_jrs.inferers import JRSInferer, NetworkGridImage, carry_mask_back, stacked_to_dict
from monai_jrs.transforms import GridInfo, keep_largest_components, restore_to_original
from monai_jrs.utils.deprecate_utils import moved_names
from monai_jrs.utils.enums import JRSKeys

__all__ = [
    "JRSRegistrar",
    "register",
    "write_registration_outputs",
    "followup_items",
    "floating_mask_from_output",
    "default_bundle_dir",
    "expand_inputs",
]

logger = logging.getLogger(__name__)

#: moved to monai_jrs.data.writers and monai_jrs.transforms.io (old paths deprecated, removed in 0.2.0).
__getattr__ = moved_names(
    __name__,
    {
        "monai_jrs.data.writers": ["OUTPUT_FILES", "save_registration_result"],
        "monai_jrs.transforms.io": ["SaveRegistrationOutputsd"],
    },
)


def default_bundle_dir() -> Path:
    """The MONAI bundle shipped with monai_jrs (configs, ``models/model.pt``, docs), as a folder.

    Found with :mod:`importlib.resources` as package data ``monai_jrs/bundle``: inside an installed wheel it is a
    folder of the package; in a source checkout (plain or editable install) it is a link to ``bundle/`` at the
    repository root, the one copy of the bundle.

    Raises:
        FileNotFoundError: the installation lacks the bundle (e.g. a wheel built without its package data).
    """
    root = Path(str(importlib.resources.files("monai_jrs").joinpath("bundle")))
    for rel in ("configs/inference.json", "models/model.pt"):
        if not (root / rel).is_file():
            raise FileNotFoundError(
                f"the bundle shipped with monai_jrs must hold {rel} under {root}, but it does not: the installation "
                "is incomplete (reinstall monai_jrs) or pass a bundle folder explicitly (--bundle DIR)."
            )
    return root


def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Floating inputs as files: a DICOM folder becomes its images (one per file, sorted); files stay.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a folder holds no DICOM image.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"floating input {p} does not exist.")
        if p.is_dir():
            files = list_dicom_images(p)
            if not files:
                raise ValueError(f"floating input folder {p} holds no DICOM image.")
            out.extend(files)
        else:
            out.append(p)
    return out


class JRSRegistrar:
    """A loaded JRS generator that registers full-resolution radiographs.

    Args:
        bundle_dir: bundle folder (``configs/inference.json`` + ``models/model.pt``); default: the shipped bundle.
        device: ``"cpu"``, ``"cuda"`` or a :class:`torch.device`.
        size: network grid size (default: the bundle's ``image_size``).
        config_overrides: overrides of ``configs/inference.json`` ids (e.g. ``{"preset": "paper"}`` for the paper
            preset).
        refine: refine each field after the network. ``True`` (the default): the full-resolution dense refinement
            over the whole image, :class:`~monai_jrs.networks.blocks.DenseRefinement` with its defaults (affine, then
            a coarse-to-fine control grid on MIND-SSC features; ``docs/evaluation.md`` gives its accuracy and time on
            real radiographs). An instance of it (or any object with ``full_resolution = True`` and the same
            ``refine`` method) is used as given; any other callable ``refine(reference, floating, reference_mask,
            ddf) -> ddf`` refines on the network grid (e.g. :class:`~monai_jrs.networks.blocks.InstanceOptimization`).
            ``False``: the network alone. With a refinement the registered mask is the reference mask and the
            floating mask is the reference mask carried back through the refined field (the segmentation head saw
            the unrefined image).
        overlay: write ``overlay.png`` for every pair (a preview; about 60 ms of a pair's time at 512 px).
        subtraction: write the temporal subtraction ``subtraction.nii.gz`` / ``subtraction.png`` (registered
            follow-up minus reference after intensity matching; about 60 ms at 512 px).

    Raises:
        FileNotFoundError: the bundle has no ``configs/inference.json`` or ``models/model.pt``.
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        size: int | None = None,
        config_overrides: dict[str, Any] | None = None,
        refine: bool | Callable[..., torch.Tensor] = True,
        overlay: bool = True,
        subtraction: bool = True,
    ) -> None:
        from monai.bundle import ConfigParser

        from monai_jrs.networks.blocks import DenseRefinement

        root = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
        config, weights = root / "configs" / "inference.json", root / "models" / "model.pt"
        for f in (config, weights):
            if not f.is_file():
                raise FileNotFoundError(f"bundle {root} has no {f.relative_to(root)}; expected a monai_jrs bundle.")
        parser = ConfigParser()
        parser.read_config(str(config))
        for k, v in (config_overrides or {}).items():
            parser[k] = v
        self.size = int(size if size is not None else parser["image_size"])
        if self.size < 32:
            raise ValueError(f"`size` must be >= 32 pixels, got {self.size}.")
        self.device = torch.device(device)
        net = parser.get_parsed_content("network_def")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        self.network = net.to(self.device).eval()
        self.bundle_dir = root
        self.overlay = bool(overlay)
        self.subtraction = bool(subtraction)
        self.refine = DenseRefinement() if refine is True else (refine or None)
        full_res = bool(getattr(self.refine, "full_resolution", False))
        #: the one pipeline (network grid, network, refinement, exact mapping back) that every entry point uses.
        self.inferer = JRSInferer(self.size, refine=None if full_res else self.refine, device=self.device,
                                  dense=self.refine if full_res else None)

    @torch.no_grad()
    def register(
        self,
        reference: str | os.PathLike,
        reference_mask: str | os.PathLike,
        floating: Sequence[str | os.PathLike],
        output_dir: str | os.PathLike,
        overwrite: bool = False,
        progress: bool = True,
    ) -> list[dict[str, Any]]:
        """Register every floating image onto the reference; write the outputs (see the module docstring).

        Args:
            reference: reference radiograph (file or a folder with one DICOM image).
            reference_mask: its lung mask (PNG/NIfTI/NumPy/DICOM SEG) on the reference grid.
            floating: follow-up radiographs: files and/or DICOM folders (every image in a folder is one follow-up).
            output_dir: output root; ``<output_dir>/<floating stem>/`` per floating image.
            overwrite: replace existing output files.
            progress: show a progress bar over the floating images.

        Returns:
            one ``metrics.json`` dict per floating image (with ``output_dir``).

        Raises:
            FileNotFoundError, ValueError: unreadable inputs (the message names the file).
            FileExistsError: an output exists and ``overwrite`` is False (checked before anything is written).
        """
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        ref_img, ref_meta = load_xray(reference)
        ref_mask, _ = load_mask(reference_mask, reference_meta=ref_meta)
        flt_paths = expand_inputs(floating)
        out_root = Path(output_dir).absolute()
        given = [Path(reference), Path(reference_mask), *map(Path, floating)]
        for src in (p.absolute() for p in given):
            # never inside an input folder (a DICOM folder), never the very folder that holds an input file
            if (src.is_dir() and (out_root == src or src in out_root.parents)) or (src.is_file() and out_root == src.parent):
                raise ValueError(f"output folder {out_root} lies inside the input folder {src if src.is_dir() else src.parent}; "
                                 "choose another.")
        folders = [out_root / writers.image_stem(p) for p in flt_paths]
        if len(set(folders)) != len(folders):
            raise ValueError(f"two floating inputs share a file stem; outputs would collide: {[str(p) for p in flt_paths]}.")
        if not overwrite:
            existing = [str(f / n) for f in folders for n in writers.OUTPUT_FILES if (f / n).exists()]
            if existing:
                raise FileExistsError(f"outputs exist (pass overwrite=True / --overwrite to replace): {existing[:3]}.")
        reference_net = self.inferer.prepare_reference(ref_img, ref_mask, spacing=ref_meta.get("spacing"))
        load_ref_s = time.perf_counter() - t0
        results = []
        for path, folder in tqdm(list(zip(flt_paths, folders)), desc="registering", unit="image", disable=not progress):
            results.append(self._one(path, folder, ref_img, ref_mask, ref_meta, reference_net, overwrite, load_ref_s))
        return results

    def _one(
        self,
        path: Path,
        folder: Path,
        ref_img: torch.Tensor,
        ref_mask: torch.Tensor,
        ref_meta: dict[str, Any],
        reference_net: tuple[NetworkGridImage, NetworkGridImage],
        overwrite: bool,
        load_ref_s: float,
    ) -> dict[str, Any]:
        t = time.perf_counter()
        flt_img, flt_meta = load_xray(path)
        load_floating_s = time.perf_counter() - t
        result = self.inferer(*reference_net, flt_img, self.network, floating_spacing=flt_meta.get("spacing"))
        timings = {"load_reference_s": load_ref_s, "load_floating_s": load_floating_s, **result.timings}
        metrics = writers.save_registration_result(
            result, path, folder, ref_img, ref_mask, ref_meta, flt_img, flt_meta, overwrite, timings, self.overlay,
            self.subtraction,
        )
        logger.info("registered %s -> %s (Dice %.3f)", path, folder, metrics["dice_reference_vs_registered_mask"])
        return metrics


@deprecated(since="0.1.0", removed="0.2.0", version_val=__version__,
            msg_suffix="use monai_jrs.inferers.JRSInferer(...).to_full_resolution(...).floating_mask instead.")
def floating_mask_from_output(out_net: torch.Tensor, flt_info: GridInfo | dict[str, Any]) -> torch.Tensor:
    """Deprecated: the floating image's lung mask from a stacked ``(1, 5, h, w)`` output; ``(1, Hf, Wf)`` {0, 1}."""
    outputs = stacked_to_dict(out_net)
    mask_net = carry_mask_back(outputs[JRSKeys.REGISTERED_MASK_PROB.value], outputs[JRSKeys.DDF.value])
    mask = restore_to_original(mask_net, GridInfo.from_dict(flt_info))[0] > 0.5
    return torch.from_numpy(keep_largest_components(mask[0].numpy(), 2).astype(np.float32))[None]


@deprecated(since="0.1.0", removed="0.2.0", version_val=__version__,
            msg_suffix="use monai_jrs.inferers.JRSInferer(...).to_full_resolution(...) and "
                       "monai_jrs.data.writers.save_registration_result.")
def write_registration_outputs(
    out_net: torch.Tensor,
    floating_path: str | os.PathLike,
    folder: str | os.PathLike,
    ref_img: torch.Tensor,
    ref_mask: torch.Tensor,
    ref_meta: dict[str, Any],
    ref_info: GridInfo | dict[str, Any],
    flt_img: torch.Tensor,
    flt_meta: dict[str, Any],
    flt_info: GridInfo | dict[str, Any],
    overwrite: bool = False,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Deprecated: :func:`~monai_jrs.data.writers.save_registration_result` of a stacked ``(1, 5, h, w)`` output."""
    ref_info = GridInfo.from_dict(ref_info)
    result = JRSInferer(ref_info.network_shape).to_full_resolution(
        stacked_to_dict(out_net), flt_img, ref_info, flt_info, timings=dict(timings or {})
    )
    return writers.save_registration_result(result, floating_path, folder, ref_img, ref_mask, ref_meta, flt_img,
                                            flt_meta, overwrite)


def register(
    reference: str | os.PathLike,
    reference_mask: str | os.PathLike,
    floating: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    bundle_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    refine: bool = True,
    overlay: bool = True,
    subtraction: bool = True,
) -> list[dict[str, Any]]:
    """One-call registration of follow-ups onto an annotated reference (see :class:`JRSRegistrar`).

    Example::

        from monai_jrs.apps import register
        results = register("ref.dcm", "ref_lungs.png", ["followups/"], "out/")
        print(results[0]["dice_reference_vs_registered_mask"])
    """
    registrar = JRSRegistrar(bundle_dir=bundle_dir, device=device, size=size, refine=refine, overlay=overlay,
                             subtraction=subtraction)
    return registrar.register(reference, reference_mask, floating, output_dir, overwrite=overwrite, progress=progress)


def followup_items(
    reference: str | os.PathLike, reference_mask: str | os.PathLike, floating: Sequence[str | os.PathLike]
) -> list[dict[str, str]]:
    """Datalist pair items for the bundle's ``inference.json``: one per floating image, DICOM folders expanded.

    Example (bundle override): ``--data "$monai_jrs.apps.registration.followup_items('ref.dcm', 'ref_lungs.png',
    ['followups/'])"``.
    """
    return [
        {"reference": str(reference), "reference_mask": str(reference_mask), "floating": str(p)}
        for p in expand_inputs(floating)
    ]
