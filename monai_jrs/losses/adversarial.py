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
"""Adversarial and consistency terms of the JRS objective (Mahapatra et al., Eq. 3-5).

Sign convention: every module here is a loss to **minimise**. The paper writes its adversarial objective as a
quantity the generator maximises (``log DM``, ``log(1 - MSE_norm)``); minimising the negated terms is the same
optimum: :class:`LogDiceLoss` is ``-log Dice`` and :class:`DDFConsistencyLoss` is ``-log(1 - MSE_norm)``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.utils import LossReduction, look_up_option

from monai_jrs.losses.image_dissimilarity import _reduce
from monai_jrs.utils.conventions import check_ddf, check_image

__all__ = [
    "GeneratorAdversarialLoss",
    "DiscriminatorAdversarialLoss",
    "LogDiceLoss",
    "DDFConsistencyLoss",
    "CycleConsistencyLoss",
]

logger = logging.getLogger(__name__)

_GENERATOR_MODES = ("non_saturating", "minimax")


def _bce(output: torch.Tensor, real: bool, logits: bool) -> torch.Tensor:
    """Per-sample binary cross-entropy of a discriminator output ``(B, 1)`` against the label real/fake."""
    target = torch.full_like(output, 1.0 if real else 0.0)
    if logits:
        loss = F.binary_cross_entropy_with_logits(output, target, reduction="none")
    else:
        loss = F.binary_cross_entropy(output.clamp(0.0, 1.0), target, reduction="none")  # log clamped at -100
    return loss.flatten(1).mean(dim=1)


def _check_disc_output(output: torch.Tensor, name: str, logits: bool) -> None:
    if not isinstance(output, torch.Tensor) or output.ndim < 1 or not torch.is_floating_point(output):
        raise ValueError(f"`{name}` must be a floating-point discriminator output (B, 1), got {output!r:.80}.")
    if not logits and not (torch.jit.is_tracing() or torch.jit.is_scripting()):
        lo, hi = float(output.detach().min()), float(output.detach().max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"`{name}` must be probabilities in [0, 1] (a sigmoid output; use logits=True for raw scores), "
                f"got range [{lo}, {hi}]."
            )


class GeneratorAdversarialLoss(nn.Module):
    """Generator side of the CycleGAN term ``L_cycGAN(G, D_Y)`` (paper Eq. 3).

    ``mode="non_saturating"`` (default, as CycleGAN and every GAN since Goodfellow et al. train it):
    ``-log D(G(x))`` = BCE(D(G(x)), real). ``mode="minimax"``: the literal ``log(1 - D(G(x)))`` of Eq. 3, which
    saturates when D is confident.

    Args:
        mode: ``{"non_saturating", "minimax"}``.
        logits: the discriminator returns logits (``JRSDiscriminator(sigmoid=False)``) instead of probabilities.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
    """

    def __init__(
        self, mode: str = "non_saturating", logits: bool = False, reduction: LossReduction | str = LossReduction.MEAN
    ) -> None:
        super().__init__()
        self.mode = look_up_option(mode, _GENERATOR_MODES)
        self.logits = bool(logits)
        self.reduction = LossReduction(reduction).value

    def forward(self, fake_output: torch.Tensor) -> torch.Tensor:
        """Loss of the generator given the discriminator's output on generated images.

        Args:
            fake_output: ``(B, 1)`` discriminator output on ``G(x)``.

        Returns:
            scalar (``"mean"``/``"sum"``) or ``(B,)``.
        """
        _check_disc_output(fake_output, "fake_output", self.logits)
        if self.mode == "non_saturating":
            loss = _bce(fake_output, real=True, logits=self.logits)
        else:
            loss = -_bce(fake_output, real=False, logits=self.logits)  # log(1 - D(G(x)))
        return _reduce(loss, self.reduction)


class DiscriminatorAdversarialLoss(nn.Module):
    """Discriminator side of ``L_cycGAN(G, D_Y)`` (paper Eq. 3): ``-[log D(y) + log(1 - D(G(x)))] / 2``.

    The halving follows CycleGAN's implementation (it slows D relative to G).

    Args:
        logits: the discriminator returns logits instead of probabilities.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
    """

    def __init__(self, logits: bool = False, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        super().__init__()
        self.logits = bool(logits)
        self.reduction = LossReduction(reduction).value

    def forward(self, real_output: torch.Tensor, fake_output: torch.Tensor) -> torch.Tensor:
        """Loss of the discriminator.

        Args:
            real_output: ``(B, 1)`` output on real images ``y``.
            fake_output: ``(B', 1)`` output on generated images ``G(x)`` (detached by the caller).

        Returns:
            scalar (``"mean"``/``"sum"``) or ``(B,)`` (``"none"``, needs ``B == B'``).
        """
        _check_disc_output(real_output, "real_output", self.logits)
        _check_disc_output(fake_output, "fake_output", self.logits)
        real = _bce(real_output, real=True, logits=self.logits)
        fake = _bce(fake_output, real=False, logits=self.logits)
        if self.reduction == LossReduction.NONE.value:
            if real.shape != fake.shape:
                raise ValueError(
                    f"reduction='none' needs real and fake batches of equal size, got {real.shape[0]} and "
                    f"{fake.shape[0]}."
                )
            return 0.5 * (real + fake)
        return 0.5 * (_reduce(real, self.reduction) + _reduce(fake, self.reduction))


class LogDiceLoss(nn.Module):
    """``-log Dice(pred, target)``: the segmentation term ``log DM(I_seg_ref, I_seg_trans)`` of paper Eq. 4.

    Soft Dice per sample over all channels and pixels: ``(2 sum(p t) + smooth) / (sum p + sum t + smooth)``.
    0 for a perfect match, ``+inf``-free thanks to ``smooth`` (an empty prediction against a non-empty target gives
    ``-log(smooth / (sum t + smooth))``, large but finite; two empty masks give 0).

    Args:
        smooth: additive constant of numerator and denominator.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
    """

    def __init__(self, smooth: float = 1e-5, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        super().__init__()
        if not float(smooth) > 0:
            raise ValueError(f"`smooth` must be > 0, got {smooth}.")
        self.smooth = float(smooth)
        self.reduction = LossReduction(reduction).value

    def dice(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample soft Dice ``(B,)`` of ``pred`` and ``target`` ``(B, C, H, W)`` in ``[0, 1]``."""
        check_image(pred, "pred")
        check_image(target, "target")
        if target.shape != pred.shape:
            raise ValueError(
                f"`target` must have the shape of `pred` {tuple(pred.shape)}, got {tuple(target.shape)}."
            )
        target = target.to(pred.dtype)
        inter = (pred * target).flatten(1).sum(dim=1)
        total = pred.flatten(1).sum(dim=1) + target.flatten(1).sum(dim=1)
        return (2.0 * inter + self.smooth) / (total + self.smooth)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``-log`` soft Dice.

        Args:
            pred: ``(B, 1, H, W)`` predicted (soft) mask in ``[0, 1]``.
            target: ``(B, 1, H, W)`` reference mask in ``{0, 1}`` (or soft).

        Returns:
            scalar (``"mean"``/``"sum"``) or ``(B,)``.
        """
        return _reduce(-torch.log(self.dice(pred, target)), self.reduction)


class DDFConsistencyLoss(nn.Module):
    """``-log(1 - MSE_norm(DDF_applied, DDF_recovered))``: the deformation term of paper Eq. 4.

    The paper normalises the MSE to ``[0, 1]`` without saying how. Here ``MSE_norm = MSE / (MSE + scale^2)``: 0 for
    identical fields, 1/2 when the root-mean-square error equals ``scale`` pixels, tending to 1 for large errors,
    and smooth everywhere. The loss then simplifies to ``log(1 + MSE / scale^2)``: quadratic for small errors (like
    the MSE) and logarithmic for large ones, so a few grossly wrong synthetic pairs cannot dominate a batch.

    Args:
        scale: error (pixels) at which ``MSE_norm`` is 1/2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
    """

    def __init__(self, scale: float = 4.0, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        super().__init__()
        if not float(scale) > 0:
            raise ValueError(f"`scale` must be > 0 (pixels), got {scale}.")
        self.scale = float(scale)
        self.reduction = LossReduction(reduction).value

    def normalized_mse(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample ``MSE_norm`` in ``[0, 1)``.

        Args:
            pred: ``(B, 2, H, W)`` recovered DDF.
            target: ``(B, 2, H, W)`` applied DDF.
            mask: optional ``(B, 1, H, W)`` weights (e.g. the field of view or the lungs).

        Returns:
            ``(B,)``.
        """
        check_ddf(pred, name="pred")
        check_ddf(target, pred, name="target")
        sq = (pred - target.to(pred.dtype)).pow(2).sum(dim=1, keepdim=True)  # (B, 1, H, W): squared error per pixel
        if mask is None:
            mse = sq.flatten(1).mean(dim=1)
        else:
            check_image(mask, "mask")
            if mask.shape[0] != pred.shape[0] or mask.shape[1] != 1 or mask.shape[2:] != pred.shape[2:]:
                raise ValueError(
                    f"`mask` must have shape ({pred.shape[0]}, 1, {pred.shape[2]}, {pred.shape[3]}), "
                    f"got {tuple(mask.shape)}."
                )
            w = mask.to(pred.dtype).flatten(1)
            mse = (sq.flatten(1) * w).sum(dim=1) / w.sum(dim=1).clamp_min(1e-6)
        mse = mse / 2.0  # mean over the two components
        return mse / (mse + self.scale**2)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``-log(1 - MSE_norm)`` = ``log(1 + MSE / scale^2)``.

        Args:
            pred: ``(B, 2, H, W)`` recovered DDF ``I_Def-Recv``.
            target: ``(B, 2, H, W)`` applied DDF ``I_Def-App``.
            mask: optional ``(B, 1, H, W)`` weights.

        Returns:
            scalar (``"mean"``/``"sum"``) or ``(B,)``.
        """
        return _reduce(-torch.log1p(-self.normalized_mse(pred, target, mask)), self.reduction)


class CycleConsistencyLoss(nn.Module):
    """``lambda * (||F(G(x)) - x||_1 + ||G(F(y)) - y||_1)`` (paper Eq. 5-6, ``lambda = 10``).

    Each L1 norm is the mean absolute difference over pixels and batch.

    Args:
        lambda_cycle: weight ``lambda``.
    """

    def __init__(self, lambda_cycle: float = 10.0) -> None:
        super().__init__()
        if float(lambda_cycle) < 0:
            raise ValueError(f"`lambda_cycle` must be >= 0, got {lambda_cycle}.")
        self.lambda_cycle = float(lambda_cycle)

    def forward(self, fgx: torch.Tensor, x: torch.Tensor, gfy: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Weighted cycle loss.

        Args:
            fgx: ``(B, C, H, W)`` ``F(G(x))``.
            x: ``(B, C, H, W)`` floating images.
            gfy: ``(B, C, H, W)`` ``G(F(y))``.
            y: ``(B, C, H, W)`` reference images.

        Returns:
            scalar.
        """
        for name, a, b in (("fgx", fgx, x), ("gfy", gfy, y)):
            check_image(a, name)
            if a.shape != b.shape:
                raise ValueError(f"`{name}` must have the shape of its target {tuple(b.shape)}, got {tuple(a.shape)}.")
        return self.lambda_cycle * (F.l1_loss(fgx, x) + F.l1_loss(gfy, y))
