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
"""Single-tensor interface of the JRS generator, for MONAI bundle tooling and MONAI Label.

MONAI's ``verify_net_in_out``, ``ckpt_export`` (script or trace) and MONAI Label's ``BundleInferTask`` feed a
network one tensor and expect one tensor back. :class:`JRSStackedGenerator` is a
:class:`~monai_jrs.networks.nets.JRSGenerator` (same parameters, so a generator checkpoint loads into it unchanged)
whose ``forward`` takes the three inputs stacked along channels and returns the outputs stacked along channels.
"""

from __future__ import annotations

import torch

from monai_jrs.networks.nets.jrs_gan import JRSGenerator
from monai_jrs.utils.conventions import _shape_str

__all__ = ["JRSStackedGenerator", "STACKED_INPUT_CHANNELS", "STACKED_OUTPUT_CHANNELS"]

#: channel meaning of the stacked input.
STACKED_INPUT_CHANNELS = ("reference", "floating", "reference_mask")
#: channel meaning of the stacked output (DDF in pixels, channel 0 along H, channel 1 along W).
STACKED_OUTPUT_CHANNELS = ("registered", "registered_mask_prob", "registered_mask", "ddf_rows", "ddf_cols")


class JRSStackedGenerator(JRSGenerator):
    """:class:`JRSGenerator` with a ``(B, 3, H, W) -> (B, 5, H, W)`` forward (single-channel images only).

    Input channels: reference, floating, reference lung mask. Output channels: registered image, registered mask
    probability, binary registered mask, DDF rows, DDF columns (:data:`STACKED_OUTPUT_CHANNELS`).

    ``torch.jit.script`` compiles it (``ckpt_export`` without ``--use_trace``); the scripted module runs at any input
    size and matches eager mode. The value checks of the inputs (finite values, mask in ``[0, 1]``) run in eager mode
    only; the shape checks also run in the scripted module.

    Args:
        kwargs: the arguments of :class:`JRSGenerator` (``in_channels`` is fixed to 1).

    Example::

        >>> net = JRSStackedGenerator(features=8, num_res_blocks=1, coarse_factor=4).eval()
        >>> net(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 5, 32, 32])
    """

    def __init__(self, **kwargs) -> None:
        if kwargs.get("in_channels", 1) != 1:
            raise ValueError(f"JRSStackedGenerator works on single-channel images, got in_channels={kwargs['in_channels']}.")
        super().__init__(**kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Register and segment.

        Args:
            x: ``(B, 3, H, W)``: reference, floating, reference mask.

        Returns:
            ``(B, 5, H, W)``: registered, mask probability, binary mask, DDF (2 channels).
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                "`x` must have shape (B, 3, H, W) with channels (reference, floating, reference_mask), "
                f"got {_shape_str(x.shape if torch.jit.is_scripting() else getattr(x, 'shape', ()))}."
            )
        registered, prob, mask, ddf = self._register_and_segment(x[:, 0:1], x[:, 1:2], x[:, 2:3])
        return torch.cat([registered, prob, mask, ddf], dim=1)
