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
"""Generator and discriminator of the JRS-GAN (Mahapatra et al., "Joint Registration And Segmentation Of Xray
Images Using Generative Adversarial Networks", Fig. 1), with an added global alignment stage.

Convention:
    Images and masks are ``(B, C, H, W)``. The DDF is ``(B, 2, H, W)`` in pixels on the reference grid, channel 0
    along H (rows), channel 1 along W (columns), and ``registered(p) = floating(p + ddf(p))``
    (:mod:`monai_jrs.utils.conventions`, the convention of :class:`monai.networks.blocks.Warp`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Act, Pool
from monai.networks.layers.utils import get_act_layer
from monai.utils import look_up_option

from monai_jrs.networks.blocks.displacement import bound_displacement, compose_affine_and_local, integrate_velocity
from monai_jrs.networks.blocks.global_alignment import GlobalAlignment
from monai_jrs.networks.blocks.residual import ResidualBlock
from monai_jrs.networks.blocks.segmentation import FeatureFusionSegmentation, LearnedFeatureSegmentation
from monai_jrs.utils.conventions import _shape_str, affine_to_ddf, check_image, resize_ddf, warp
from monai_jrs.utils.enums import JRSKeys

__all__ = ["JRSGenerator", "JRSDiscriminator", "JRS_GENERATOR_PRESETS"]

logger = logging.getLogger(__name__)

_GLOBAL_ALIGNMENTS = ("search", "none")
_AFFINE_REFINEMENTS = ("learned", "none")
_SEG_HEADS = ("fusion", "learned")

#: Constructor presets of :class:`JRSGenerator`. ``paper``: the paper's generator (64 maps, 8 residual blocks =
#: 16 3x3 convolutions at full resolution). ``fast``: 32 maps, 4 residual blocks on a 4x coarser grid, for the
#: <= 0.12 s per 512 x 512 pair CPU budget.
JRS_GENERATOR_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"features": 64, "num_res_blocks": 8, "coarse_factor": 1},
    "fast": {"features": 32, "num_res_blocks": 4, "coarse_factor": 4},
}


class JRSGenerator(nn.Module):
    """JRS-GAN generator ``G(I_ref, I_flt, I_ref_seg) -> (I_trans, I_seg_trans, DDF)`` with a global stage.

    Stages:

    1. **Global alignment** (:class:`~monai_jrs.networks.blocks.GlobalAlignment`): exhaustive rotation search with
       FFT masked-NCC translation at ``search_size`` (``global_alignment="search"``), optionally refined by a small
       CNN regressing a residual affine (``affine_refinement="learned"``, starts at the identity). Gives a
       ``(B, 3, 3)`` matrix ``A`` and its DDF; the floating image is warped by it.
    2. **Deformable stage** (the paper's generator): ``cat[reference, globally warped floating, reference_mask]``,
       area-downsampled by ``coarse_factor`` (1 = the paper's full resolution), a 3x3 conv stem, ``num_res_blocks``
       :class:`~monai_jrs.networks.blocks.ResidualBlock` (``features`` maps, BN + ReLU) and a 3x3 DDF head
       initialised near zero (``Normal(0, 1e-5)`` weights, zero bias, as VoxelMorph). The output is a local DDF in
       coarse pixels, optionally bounded (``max_displacement``, full-resolution pixels, via ``tanh``) and
       optionally integrated as a stationary velocity (``integration_steps`` > 0, scaling and squaring) to keep
       the field diffeomorphic, then resized to ``(H, W)`` with
       :func:`~monai_jrs.utils.conventions.resize_ddf`.
    3. **Total field**: the exact composition ``ddf(p) = affine_ddf(p) + L @ local(p)``
       (:func:`~monai_jrs.networks.blocks.compose_affine_and_local`; ``L`` is the linear part of ``A``).
    4. **Registered image**: ``warp(floating, ddf)`` (bilinear, border padding); never synthesised.
    5. **Segmentation of the registered image** from the activations of every convolution layer of the
       deformable stage (stem + 2 per residual block): ``seg_head="fusion"`` is the paper's fusion + Otsu
       (:class:`~monai_jrs.networks.blocks.FeatureFusionSegmentation`, with a sigmoid surrogate of temperature
       ``seg_temperature`` as the soft mask); ``seg_head="learned"`` is a 1x1 convolution + sigmoid
       (:class:`~monai_jrs.networks.blocks.LearnedFeatureSegmentation`).

    The reverse generator ``F`` of the cycle (registering the reference onto the floating image) is another
    instance of this class called the other way round: ``F(floating, reference, floating_mask)``, where the mask
    is the (predicted or known) mask of the image playing the reference role.

    Args:
        in_channels: channels of each input image (the mask always has 1 channel).
        features: feature maps of the deformable stage (paper: 64).
        num_res_blocks: residual blocks of the deformable stage (paper: 8, i.e. 16 convolutions).
        coarse_factor: the deformable stage runs on a grid ``coarse_factor`` times smaller per axis (>= 1).
        global_alignment: ``{"search", "none"}``.
        affine_refinement: ``{"learned", "none"}``; the learned refinement also runs with
            ``global_alignment="none"`` (then it starts from the identity).
        search_size: longer side of the global search grid.
        num_rotations: candidate rotations of the global search (72 -> 5 degree steps over 360).
        max_rotation_deg: largest absolute rotation searched, degrees in ``(0, 180]``.
        seg_head: ``{"fusion", "learned"}``.
        seg_temperature: temperature of the fusion head's sigmoid surrogate.
        integration_steps: scaling-and-squaring steps (0: the head output is the displacement itself).
        max_displacement: optional bound of each local displacement component, in full-resolution pixels.
        norm: normalisation of the deformable stage (MONAI ``Norm`` factory name or tuple, or ``None``).
        act: activation of the deformable stage (MONAI ``Act`` factory name or tuple).
        global_stage: the global stage, injected: any module ``(reference, floating, reference_mask) -> (B, 3, 3)``
            affine matrices (MONAI ``RandAffine`` convention on centred ``(row, col)`` pixels, floating point =
            ``A @ reference point``), e.g. a :class:`~monai_jrs.networks.blocks.GlobalAlignment` with other settings
            or your own search. When given, ``global_alignment``, ``affine_refinement``, ``search_size``,
            ``num_rotations`` and ``max_rotation_deg`` are not used. A checkpoint of the default stage loads into an
            injected ``GlobalAlignment`` of the same settings (same parameter names).

    Raises:
        ValueError: for invalid options.

    Example::

        >>> net = JRSGenerator.from_preset("fast").eval()
        >>> ref, flt, mask = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64), torch.ones(1, 1, 64, 64)
        >>> [tuple(t.shape) for t in net(ref, flt, mask)]
        [(1, 1, 64, 64), (1, 1, 64, 64), (1, 1, 64, 64), (1, 2, 64, 64)]
    """

    def __init__(
        self,
        in_channels: int = 1,
        features: int = 64,
        num_res_blocks: int = 8,
        coarse_factor: int = 1,
        global_alignment: str = "search",
        affine_refinement: str = "learned",
        search_size: int = 64,
        num_rotations: int = 72,
        max_rotation_deg: float = 180.0,
        seg_head: str = "fusion",
        seg_temperature: float = 0.05,
        integration_steps: int = 0,
        max_displacement: float | None = None,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
        global_stage: nn.Module | None = None,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("features", features, 1),
            ("num_res_blocks", num_res_blocks, 0),
            ("coarse_factor", coarse_factor, 1),
            ("integration_steps", integration_steps, 0),
        ):
            if isinstance(value, bool) or int(value) != value or int(value) < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
        if max_displacement is not None and not float(max_displacement) > 0:
            raise ValueError(f"`max_displacement` must be None or > 0 (pixels), got {max_displacement!r}.")
        self.in_channels = int(in_channels)
        self.features = int(features)
        self.num_res_blocks = int(num_res_blocks)
        self.coarse_factor = int(coarse_factor)
        self.global_alignment = look_up_option(global_alignment, _GLOBAL_ALIGNMENTS)
        self.affine_refinement = look_up_option(affine_refinement, _AFFINE_REFINEMENTS)
        self.seg_head_type = look_up_option(seg_head, _SEG_HEADS)
        self.integration_steps = int(integration_steps)
        self.max_displacement = None if max_displacement is None else float(max_displacement)

        self.global_stage: nn.Module | None = global_stage
        if global_stage is not None:
            if not isinstance(global_stage, nn.Module):
                raise ValueError(f"`global_stage` must be an nn.Module mapping (reference, floating, reference_mask) "
                                 f"to (B, 3, 3) matrices, got {type(global_stage).__name__}.")
        elif self.global_alignment == "search" or self.affine_refinement == "learned":
            self.global_stage = GlobalAlignment(
                search_size=search_size,
                num_rotations=num_rotations,
                max_rotation_deg=max_rotation_deg,
                refinement=self.affine_refinement,
                exhaustive_search=self.global_alignment == "search",
            )
        self.stem = Convolution(
            2, 2 * self.in_channels + 1, self.features, kernel_size=3, act=act, norm=norm, adn_ordering="NA"
        )
        self.res_blocks = nn.ModuleList(
            [ResidualBlock(self.features, spatial_dims=2, norm=norm, act=act) for _ in range(self.num_res_blocks)]
        )
        self.ddf_head = nn.Conv2d(self.features, 2, kernel_size=3, padding=1)
        nn.init.normal_(self.ddf_head.weight, mean=0.0, std=1e-5)
        nn.init.zeros_(self.ddf_head.bias)
        self.num_feature_layers = 1 + 2 * self.num_res_blocks
        self.seg_head: nn.Module
        if self.seg_head_type == "fusion":
            self.seg_head = FeatureFusionSegmentation(temperature=seg_temperature)
        else:
            self.seg_head = LearnedFeatureSegmentation(self.num_feature_layers * self.features)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> JRSGenerator:
        """Build a generator from :data:`JRS_GENERATOR_PRESETS` (``"paper"`` or ``"fast"``), with overrides.

        Args:
            name: preset name.
            overrides: constructor arguments replacing the preset's.

        Returns:
            the generator.
        """
        preset = look_up_option(name, JRS_GENERATOR_PRESETS)
        return cls(**{**preset, **overrides})

    def coarse_shape(self, height: int, width: int) -> tuple[int, int]:
        """Grid ``(h, w)`` of the deformable stage for an ``(height, width)`` input."""
        if self.coarse_factor == 1:
            return int(height), int(width)
        return (
            max(2, int(round(height / self.coarse_factor))),
            max(2, int(round(width / self.coarse_factor))),
        )

    def forward(
        self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Register ``floating`` onto ``reference`` and segment the result.

        Args:
            reference: ``(B, C, H, W)`` reference image ``I_ref``.
            floating: ``(B, C, H, W)`` floating image ``I_flt``.
            reference_mask: ``(B, 1, H, W)`` reference lung mask ``I_ref_seg``, values in ``[0, 1]``.

        Returns:
            ``(registered, registered_mask_prob, registered_mask, ddf)`` of shapes ``(B, C, H, W)``,
            ``(B, 1, H, W)``, ``(B, 1, H, W)`` (``{0., 1.}``), ``(B, 2, H, W)``.

        Raises:
            ValueError: for inputs of the wrong shape, non-finite values or a mask outside ``[0, 1]``.
        """
        return self._register_and_segment(reference, floating, reference_mask)

    def _register_and_segment(
        self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward`, for subclasses whose ``forward`` takes other inputs.

        TorchScript compiles neither ``super().forward(...)`` nor ``JRSGenerator.forward(self, ...)``.
        """
        self._check_inputs(reference, floating, reference_mask)
        bsz, height, width = reference.shape[0], reference.shape[2], reference.shape[3]
        shape = (int(height), int(width))
        if self.global_stage is not None:
            matrix = self.global_stage(reference, floating, reference_mask)
        else:
            matrix = torch.eye(3, dtype=reference.dtype, device=reference.device).unsqueeze(0).repeat(bsz, 1, 1)
        affine_ddf = affine_to_ddf(matrix, shape)
        moved = warp(floating, affine_ddf, padding_mode="border")

        x = torch.cat([reference, moved, reference_mask.to(reference.dtype)], dim=1)
        coarse = self.coarse_shape(shape[0], shape[1])
        if coarse != shape:
            x = F.interpolate(x, size=[coarse[0], coarse[1]], mode="area")
        h = self.stem(x)
        layer_maps = [h]
        for block in self.res_blocks:
            h, first = block.forward_features(h)
            layer_maps.extend([first, h])
        local = self.ddf_head(h)
        if self.max_displacement is not None:
            bound = [
                self.max_displacement * (coarse[0] - 1) / max(shape[0] - 1, 1),
                self.max_displacement * (coarse[1] - 1) / max(shape[1] - 1, 1),
            ]
            local = bound_displacement(local, bound)
        if self.integration_steps > 0:
            local = integrate_velocity(local, self.integration_steps)
        local = resize_ddf(local, shape)
        ddf = compose_affine_and_local(matrix, local, affine_ddf)
        registered = warp(floating, ddf, padding_mode="border")
        prob, mask = self.seg_head(layer_maps, shape)
        return registered, prob, mask, ddf

    def forward_dict(
        self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """:meth:`forward`, returned as a dict keyed by :class:`~monai_jrs.utils.enums.JRSKeys`.

        Returns:
            ``{REGISTERED, REGISTERED_MASK_PROB, REGISTERED_MASK, DDF}``.
        """
        return self.outputs_to_dict(self.forward(reference, floating, reference_mask))

    @staticmethod
    def outputs_to_dict(outputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Key the ``(registered, registered_mask_prob, registered_mask, ddf)`` tuple by :class:`JRSKeys`.

        Args:
            outputs: the 4-tuple returned by :meth:`forward` (or by a traced generator).

        Returns:
            dict with keys ``JRSKeys.REGISTERED``, ``REGISTERED_MASK_PROB``, ``REGISTERED_MASK``, ``DDF``.
        """
        if isinstance(outputs, Mapping) or len(outputs) != 4:
            raise ValueError(
                "`outputs` must be the 4-tuple (registered, registered_mask_prob, registered_mask, ddf), "
                f"got {type(outputs).__name__} of length {len(outputs)}."
            )
        keys = (JRSKeys.REGISTERED, JRSKeys.REGISTERED_MASK_PROB, JRSKeys.REGISTERED_MASK, JRSKeys.DDF)
        return {k.value: v for k, v in zip(keys, outputs)}

    def _check_inputs(self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor) -> None:
        check_image(reference, "reference")
        check_image(floating, "floating")
        check_image(reference_mask, "reference_mask")
        if reference.shape[1] != self.in_channels or floating.shape[1] != self.in_channels:
            raise ValueError(
                f"`reference` and `floating` must have {self.in_channels} channel(s) (B, {self.in_channels}, H, W), "
                f"got {_shape_str(reference.shape)} and {_shape_str(floating.shape)}."
            )
        if reference_mask.shape[1] != 1:
            raise ValueError(f"`reference_mask` must have shape (B, 1, H, W), got {_shape_str(reference_mask.shape)}.")
        if floating.shape[0] != reference.shape[0] or floating.shape[2:] != reference.shape[2:]:
            raise ValueError(
                f"`floating` must match `reference` in batch and spatial size {_shape_str(reference.shape)}, "
                f"got {_shape_str(floating.shape)}."
            )
        if reference_mask.shape[0] != reference.shape[0] or reference_mask.shape[2:] != reference.shape[2:]:
            raise ValueError(
                f"`reference_mask` must have shape ({reference.shape[0]}, 1, {reference.shape[2]}, "
                f"{reference.shape[3]}), got {_shape_str(reference_mask.shape)}."
            )
        if min(reference.shape[2:]) < 8:
            raise ValueError(f"images must be at least 8 x 8 pixels, got {_shape_str(reference.shape[2:])}.")
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            return  # value checks would be frozen into a trace as constants, or be data-dependent for torch.export
        for name, t in (("reference", reference), ("floating", floating), ("reference_mask", reference_mask)):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"`{name}` must contain only finite values, got NaN or Inf.")
        lo, hi = float(reference_mask.min()), float(reference_mask.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"`reference_mask` values must lie in [0, 1], got range [{lo}, {hi}].")


class JRSDiscriminator(nn.Module):
    """JRS-GAN discriminator (paper Fig. 1(b), SRGAN-style).

    Eight 3x3 convolutions with ``channels`` (default 64, 64, 128, 128, 256, 256, 512, 512) and ``strides``
    (default stride 2 on the second of each pair), LeakyReLU(0.2), batch normalisation after every convolution
    but the first; adaptive average pooling (any input size), a dense layer of ``hidden_features`` (1024) with
    LeakyReLU, a dense layer to 1 output and a sigmoid.

    Args:
        in_channels: input channels.
        channels: output channels of each convolution.
        strides: stride of each convolution (same length as ``channels``).
        hidden_features: width of the first dense layer.
        act: activation (MONAI ``Act`` factory name or tuple).
        norm: normalisation after each convolution but the first (``None`` for none).
        sigmoid: if False, return logits (for ``BCEWithLogitsLoss``).
        spatial_dims: 2 (radiographs) or 3.

    Raises:
        ValueError: for inconsistent arguments.

    Example::

        >>> d = JRSDiscriminator().eval()
        >>> d(torch.rand(2, 1, 37, 50)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (64, 64, 128, 128, 256, 256, 512, 512),
        strides: Sequence[int] = (1, 2, 1, 2, 1, 2, 1, 2),
        hidden_features: int = 1024,
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.2}),
        norm: str | tuple | None = "batch",
        sigmoid: bool = True,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"`spatial_dims` must be 2 or 3, got {spatial_dims}.")
        if len(channels) == 0 or len(channels) != len(strides):
            raise ValueError(
                f"`channels` and `strides` must be non-empty and of equal length, got {len(channels)} and "
                f"{len(strides)}."
            )
        if any(int(c) < 1 for c in channels) or any(int(s) < 1 for s in strides) or int(hidden_features) < 1:
            raise ValueError(
                f"`channels`, `strides` and `hidden_features` must be positive, got {tuple(channels)}, "
                f"{tuple(strides)}, {hidden_features}."
            )
        if int(in_channels) < 1:
            raise ValueError(f"`in_channels` must be >= 1, got {in_channels}.")
        self.in_channels = int(in_channels)
        self.spatial_dims = int(spatial_dims)
        layers: list[nn.Module] = []
        c_in = self.in_channels
        for i, (c, s) in enumerate(zip(channels, strides)):
            layers.append(
                Convolution(
                    spatial_dims, c_in, int(c), strides=int(s), kernel_size=3, act=act,
                    norm=None if i == 0 else norm, adn_ordering="NA",
                )
            )
            c_in = int(c)
        self.features = nn.Sequential(*layers)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in, int(hidden_features)),
            get_act_layer(act),
            nn.Linear(int(hidden_features), 1),
        )
        self.sigmoid = bool(sigmoid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probability (or logit) that ``x`` is real.

        Args:
            x: ``(B, in_channels, H, W)`` (or ``(B, in_channels, H, W, D)`` for ``spatial_dims=3``), any size.

        Returns:
            ``(B, 1)``.

        Raises:
            ValueError: for a wrongly shaped input.
        """
        dims = "H, W" if self.spatial_dims == 2 else "H, W, D"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"`x` must be a tensor of shape (B, {self.in_channels}, {dims}), got {type(x).__name__}.")
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"`x` must have shape (B, {self.in_channels}, {dims}), got {list(x.shape)}.")
        out = self.classifier(self.pool(self.features(x)))
        return torch.sigmoid(out) if self.sigmoid else out
