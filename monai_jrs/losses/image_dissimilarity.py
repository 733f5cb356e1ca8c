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
"""Image dissimilarity losses of the JRS content loss (Mahapatra et al., Eq. 2): normalised mutual information and
the VGG16 feature-map L2 distance. ``1 - SSIM`` is MONAI's :class:`monai.losses.SSIMLoss`, used as it is.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
from monai.losses import GlobalMutualInformationLoss
from monai.utils import LossReduction

from monai_jrs.networks.nets.vgg import VGG16Features
from monai_jrs.utils.conventions import check_image

__all__ = ["NormalizedMutualInformationLoss", "VGGFeatureLoss", "normalize_feature_maps"]

logger = logging.getLogger(__name__)


class NormalizedMutualInformationLoss(GlobalMutualInformationLoss):
    """``2 - NMI`` with ``NMI = (H(A) + H(B)) / H(A, B)`` (Studholme et al.), from Parzen-window histograms.

    The histograms are MONAI's (:meth:`monai.losses.GlobalMutualInformationLoss.parzen_windowing`, Gaussian or
    B-spline kernel, ``num_bins`` bins); only the final statistic differs: NMI lies in ``[1, 2]`` (2 when one image
    is a bijective function of the other, 1 when they are independent), so the loss lies in ``[0, 1]`` and is 0 for
    a perfect (hard-histogram) match. With soft Parzen windows the joint histogram of two identical images is not
    exactly diagonal, so the loss of identical images is small but positive; it is still the minimum over all
    images ``B``.

    Args:
        kernel_type: ``"gaussian"`` (intensities clamped to ``[0, 1]``) or ``"b-spline"``.
        num_bins: number of histogram bins.
        sigma_ratio: Gaussian kernel width as a ratio of the bin spacing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
        smooth_nr: small constant added to the entropy numerator.
        smooth_dr: small constant added to the probabilities inside ``log`` and to the joint entropy.

    Example::

        >>> loss = NormalizedMutualInformationLoss()
        >>> x = torch.rand(2, 1, 16, 16)
        >>> bool(loss(x, x) < loss(x, torch.rand(2, 1, 16, 16)))
        True
    """

    def __init__(
        self,
        kernel_type: str = "gaussian",
        num_bins: int = 23,
        sigma_ratio: float = 0.5,
        reduction: LossReduction | str = LossReduction.MEAN,
        smooth_nr: float = 1e-7,
        smooth_dr: float = 1e-7,
    ) -> None:
        super().__init__(
            kernel_type=kernel_type,
            num_bins=num_bins,
            sigma_ratio=sigma_ratio,
            reduction=reduction,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
        )

    def normalized_mutual_information(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample NMI.

        Args:
            pred: ``(B, C, H, W)`` (any ``(B, ...)`` shape).
            target: same shape as ``pred``.

        Returns:
            ``(B,)`` values in ``[1, 2]``.
        """
        if target.shape != pred.shape:
            raise ValueError(
                f"`target` must have the shape of `pred` {tuple(pred.shape)}, got {tuple(target.shape)}."
            )
        if pred.ndim < 2:
            raise ValueError(f"`pred` must have shape (B, ...) with spatial dimensions, got {tuple(pred.shape)}.")
        wa, pa, wb, pb = self.parzen_windowing(pred, target)  # (B, N, bins), (B, 1, bins)
        pab = torch.bmm(wa.permute(0, 2, 1), wb.to(wa)) / wa.shape[1]  # (B, bins, bins)
        eps = self.smooth_dr
        h_a = -torch.sum(pa * torch.log(pa + eps), dim=(1, 2))
        h_b = -torch.sum(pb * torch.log(pb + eps), dim=(1, 2))
        h_ab = -torch.sum(pab * torch.log(pab + eps), dim=(1, 2))
        return (h_a + h_b + self.smooth_nr) / (h_ab + eps)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``2 - NMI(pred, target)``, reduced over the batch.

        Args:
            pred: ``(B, C, H, W)`` image, intensities in ``[0, 1]`` for the Gaussian kernel.
            target: same shape as ``pred``.

        Returns:
            scalar (``"mean"``/``"sum"``) or ``(B,)`` (``"none"``).
        """
        loss = 2.0 - self.normalized_mutual_information(pred, target)
        return _reduce(loss, self.reduction)


def normalize_feature_maps(feature: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale every feature map of every sample to ``[0, 1]`` by its own minimum and maximum.

    Args:
        feature: ``(B, C, H, W)``.
        eps: floor of the range ``max - min`` (a constant map becomes 0).

    Returns:
        ``(B, C, H, W)`` with values in ``[0, 1]``.
    """
    flat = feature.flatten(2)
    lo = flat.amin(dim=2, keepdim=True)
    hi = flat.amax(dim=2, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(feature)


class VGGFeatureLoss(nn.Module):
    """L2 distance between the VGG16 feature maps of two images, over all 13 convolution layers (paper Eq. 2).

    Every feature map (3968 maps over the 13 layers) is normalised to ``[0, 1]`` per sample and channel
    (:func:`normalize_feature_maps`); the loss is the mean over the selected layers of the mean squared difference
    of the normalised maps, so each layer counts equally whatever its resolution and width.

    The extractor is :class:`~monai_jrs.networks.nets.VGG16Features` (frozen; ImageNet weights read from a local
    file, never downloaded). With ``pretrained=True`` and no weights file, construction raises
    ``FileNotFoundError`` naming the paths tried: the loss is never silently changed.

    Args:
        weights_path: local torchvision-layout VGG16 state dict (see :class:`VGG16Features` for the lookup order).
        pretrained: load ImageNet weights; ``False`` uses random weights (tests and ablations only).
        layers: indices (0..12) of the convolution layers used; ``None`` = all 13 (paper).
        extractor: an existing extractor to share between losses (then ``weights_path``/``pretrained`` are unused).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Raises:
        FileNotFoundError: ImageNet weights requested and absent.
        ValueError: invalid ``layers``.
    """

    def __init__(
        self,
        weights_path: str | None = None,
        pretrained: bool = True,
        layers: tuple[int, ...] | list[int] | None = None,
        extractor: VGG16Features | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__()
        selected = tuple(range(13)) if layers is None else tuple(int(i) for i in layers)
        if len(selected) == 0 or any(i < 0 or i > 12 for i in selected) or len(set(selected)) != len(selected):
            raise ValueError(f"`layers` must be distinct conv-layer indices in [0, 12], got {layers!r}.")
        self.layers = selected
        self.reduction = LossReduction(reduction).value
        self.extractor = extractor if extractor is not None else VGG16Features(weights_path, pretrained=pretrained)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Feature-map L2 distance.

        Args:
            pred: ``(B, C, H, W)`` image in ``[0, 1]`` (C = the extractor's ``in_channels``).
            target: same shape as ``pred``.

        Returns:
            scalar (``"mean"``/``"sum"``) or ``(B,)`` (``"none"``).
        """
        check_image(pred, "pred")
        check_image(target, "target")
        if target.shape != pred.shape:
            raise ValueError(
                f"`target` must have the shape of `pred` {tuple(pred.shape)}, got {tuple(target.shape)}."
            )
        depth = max(self.layers) + 1
        both = self.extractor(torch.cat([pred, target], dim=0), num_layers=depth)
        bsz = pred.shape[0]
        per_layer = []
        for i in self.layers:
            f = normalize_feature_maps(both[i])
            per_layer.append((f[:bsz] - f[bsz:]).pow(2).flatten(1).mean(dim=1))
        loss = torch.stack(per_layer, dim=1).mean(dim=1)
        return _reduce(loss, self.reduction)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce a ``(B,)`` loss with MONAI's ``LossReduction`` vocabulary."""
    reduction = LossReduction(reduction).value
    if reduction == LossReduction.MEAN.value:
        return loss.mean()
    if reduction == LossReduction.SUM.value:
        return loss.sum()
    return loss
