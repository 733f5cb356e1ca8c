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
"""Batch preparation shared by the JRS trainer and evaluator."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from monai.engines.utils import PrepareBatch

from monai_jrs.utils.enums import JRSKeys

logger = logging.getLogger(__name__)

__all__ = ["JRSPrepareBatch", "REQUIRED_KEYS", "OPTIONAL_KEYS", "INPUT_KEYS"]

REQUIRED_KEYS: tuple[str, ...] = (JRSKeys.REFERENCE, JRSKeys.FLOATING, JRSKeys.REFERENCE_MASK)
OPTIONAL_KEYS: tuple[str, ...] = (JRSKeys.FLOATING_MASK, JRSKeys.DDF_APPLIED)
#: optional appearance-randomised network inputs (see :class:`~monai_jrs.engines.JRSTrainer`)
INPUT_KEYS: tuple[str, ...] = (JRSKeys.REFERENCE_INPUT, JRSKeys.FLOATING_INPUT)


class JRSPrepareBatch(PrepareBatch):
    """Move the JRS tensors of a collated batch to the device and return them as a plain dict.

    Required keys: ``reference``, ``floating``, ``reference_mask`` (each ``(B, 1, H, W)``).
    Optional keys: ``floating_mask`` ``(B, 1, H, W)`` and ``ddf_applied`` ``(B, 2, H, W)``; absent keys are
    simply not in the result, and the losses that need them are skipped. Optional input keys: ``reference_input``
    and ``floating_input`` ``(B, 1, H, W)``, appearance-randomised copies of the images that the trainer feeds to
    the generators (:class:`~monai_jrs.transforms.RandSynthAppearanced`); like the optional keys, moved when present.

    Args:
        keys: required keys (defaults to :data:`REQUIRED_KEYS`).
        optional_keys: optional keys (defaults to :data:`OPTIONAL_KEYS`).
        input_keys: optional network-input keys (defaults to :data:`INPUT_KEYS`).

    Raises:
        TypeError: ``batchdata`` is not a mapping, or one of its JRS values is not a tensor (``None`` is allowed
            for optional keys).
        ValueError: a required key is missing.
    """

    def __init__(
        self,
        keys: Sequence[str] = REQUIRED_KEYS,
        optional_keys: Sequence[str] = OPTIONAL_KEYS,
        input_keys: Sequence[str] = INPUT_KEYS,
    ) -> None:
        self.keys = tuple(str(k) for k in keys)
        self.optional_keys = tuple(str(k) for k in optional_keys)
        self.input_keys = tuple(str(k) for k in input_keys if str(k) not in self.keys + self.optional_keys)

    def __call__(
        self, batchdata: Mapping[str, torch.Tensor], device: str | torch.device | None = None,
        non_blocking: bool = False, **kwargs,
    ) -> dict[str, torch.Tensor]:
        if not isinstance(batchdata, Mapping):
            raise TypeError(f"JRS batches must be dictionaries keyed by {self.keys}, got {type(batchdata).__name__}.")
        missing = [k for k in self.keys if k not in batchdata]
        if missing:
            raise ValueError(f"batch is missing required keys {missing}; it has {sorted(batchdata)}.")
        out: dict[str, torch.Tensor] = {}
        for k in self.keys + self.optional_keys + self.input_keys:
            v = batchdata.get(k)
            if v is None and k not in self.keys:
                continue
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"batch[{k!r}] must be a torch.Tensor (collate first), got {type(v).__name__}.")
            v = v.as_tensor() if hasattr(v, "as_tensor") else v  # drop MetaTensor metadata
            out[k] = v.to(device=device, non_blocking=non_blocking, **kwargs).float()
        return out
