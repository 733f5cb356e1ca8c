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
"""Residual block of the JRS generator (Mahapatra et al., Fig. 1(a)): conv-BN-ReLU, conv-BN, skip, ReLU."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.utils import get_act_layer

__all__ = ["ResidualBlock"]

logger = logging.getLogger(__name__)


class ResidualBlock(nn.Module):
    """Two ``kernel_size`` convolutions with normalisation and activation, plus an identity skip connection.

    ``out = act(x + norm(conv(act(norm(conv(x))))))``. The number of feature maps is kept (the paper uses 64).
    Normalisation and activation are built by MONAI's layer factories, so ``norm`` / ``act`` accept strings or
    ``(name, kwargs)`` tuples such as ``("leakyrelu", {"negative_slope": 0.2})``.

    Args:
        features: number of input and output feature maps.
        spatial_dims: number of spatial dimensions (2 for radiographs).
        kernel_size: convolution kernel size (odd).
        norm: normalisation (MONAI ``Norm`` factory name or tuple), ``None`` for none.
        act: activation (MONAI ``Act`` factory name or tuple).

    Raises:
        ValueError: when ``features`` < 1 or ``kernel_size`` is not a positive odd integer.

    Example::

        >>> block = ResidualBlock(features=8)
        >>> block(torch.zeros(2, 8, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(
        self,
        features: int = 64,
        spatial_dims: int = 2,
        kernel_size: int = 3,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        if int(features) < 1:
            raise ValueError(f"`features` must be a positive integer, got {features}.")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"`kernel_size` must be a positive odd integer, got {kernel_size}.")
        self.features = int(features)
        self.conv1 = Convolution(
            spatial_dims, self.features, self.features, kernel_size=kernel_size, act=act, norm=norm, adn_ordering="NA"
        )
        self.conv2 = Convolution(
            spatial_dims, self.features, self.features, kernel_size=kernel_size, act=None, norm=norm, adn_ordering="N"
        )
        self.act = get_act_layer(act)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the block and also return the (activated) output of its first convolution.

        Args:
            x: ``(B, features, H, W)``.

        Returns:
            ``(out, first)``: the block output and the first layer's activation map, both ``(B, features, H, W)``.
            ``out`` is the activation map of the second convolution layer (after the skip connection).
        """
        if x.ndim < 3 or x.shape[1] != self.features:
            raise ValueError(
                f"`x` must have shape (B, {self.features}, H, W), got {list(x.shape)}."
            )
        first = self.conv1(x)
        out = self.act(x + self.conv2(first))
        return out, first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, features, H, W)``.

        Returns:
            ``(B, features, H, W)``.
        """
        return self.forward_features(x)[0]
