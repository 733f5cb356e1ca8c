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
"""Validation / inference engine for JRS generators."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from monai.engines import Evaluator
from monai.engines.utils import default_metric_cmp_fn
from monai.utils import IgniteInfo, min_version, optional_import

from monai_jrs.engines.trainer import run_generator
from monai_jrs.engines.utils import JRSPrepareBatch
from monai_jrs.utils.conventions import warp
from monai_jrs.utils.enums import JRSKeys

if TYPE_CHECKING:
    from ignite.metrics import Metric
else:
    Metric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Metric", as_type="base")

logger = logging.getLogger(__name__)

__all__ = ["JRSEvaluator", "WARPED_FLOATING_MASK"]

#: output key of the ground-truth floating mask carried onto the reference grid by the predicted DDF.
WARPED_FLOATING_MASK = "warped_floating_mask"


class JRSEvaluator(Evaluator):
    """Run a JRS generator over a validation set and expose everything the metrics need.

    The iteration output (``engine.state.output``, batched, not decollated) holds the inputs (``reference``,
    ``floating``, ``reference_mask``, optional ``floating_mask`` and ``ddf_applied``), the generator outputs
    (``registered``, ``registered_mask_prob``, ``registered_mask``, ``ddf``) and, when the floating mask is
    known, ``warped_floating_mask``: the ground-truth floating mask warped onto the reference grid by the predicted
    DDF (nearest neighbour). Typical metrics (built in the bundle's ``validate`` section):

    - registration Dice: ``warped_floating_mask`` vs ``reference_mask`` (the paper's DM after registration);
    - segmentation Dice: ``registered_mask`` vs ``warped_floating_mask``;
    - TRE: ``ddf`` vs ``ddf_applied``; folding: ``ddf``.

    Args:
        device: device to run on.
        val_data_loader: loader of JRS dictionaries (see :class:`~monai_jrs.engines.utils.JRSPrepareBatch`).
        network: the generator G.
        epoch_length, non_blocking, postprocessing, key_val_metric, additional_metrics, metric_cmp_fn, val_handlers,
        amp, mode, event_names, event_to_attr, decollate, to_kwargs, amp_kwargs: as in
            :class:`monai.engines.SupervisedEvaluator`.
        prepare_batch: defaults to :class:`~monai_jrs.engines.utils.JRSPrepareBatch`.
    """

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader: Any,
        network: torch.nn.Module,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = JRSPrepareBatch(),
        postprocessing: Callable | None = None,
        key_val_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        val_handlers: Sequence | None = None,
        amp: bool = False,
        mode: str = "eval",
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
    ) -> None:
        super().__init__(
            device=device,
            val_data_loader=val_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            postprocessing=postprocessing,
            key_val_metric=key_val_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            val_handlers=val_handlers,
            amp=amp,
            mode=mode,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.network = network

    def _iteration(self, engine: JRSEvaluator, batchdata: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        amp_ctx = torch.autocast(engine.state.device.type, **engine.amp_kwargs) if engine.amp else nullcontext()
        with engine.mode(engine.network), amp_ctx:
            out = run_generator(
                engine.network, batch[JRSKeys.REFERENCE], batch[JRSKeys.FLOATING], batch[JRSKeys.REFERENCE_MASK]
            )
        output: dict[str, torch.Tensor] = dict(batch)
        output.update(out)
        if JRSKeys.FLOATING_MASK in batch:
            output[WARPED_FLOATING_MASK] = warp(batch[JRSKeys.FLOATING_MASK], out[JRSKeys.DDF], mode="nearest")
        return output
