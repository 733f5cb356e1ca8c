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
"""The combined losses of the JRS-GAN generator (Mahapatra et al., Eq. 2, 4 and 6), each weight configurable."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
import torch.nn as nn
from monai.losses import BendingEnergyLoss, SSIMLoss

from monai_jrs.losses.adversarial import DDFConsistencyLoss, GeneratorAdversarialLoss, LogDiceLoss
from monai_jrs.losses.image_dissimilarity import NormalizedMutualInformationLoss, VGGFeatureLoss
from monai_jrs.utils.conventions import check_image
from monai_jrs.utils.enums import JRSKeys

__all__ = ["JRSContentLoss", "JRSGeneratorLoss"]

logger = logging.getLogger(__name__)


def _check_weights(**weights: float) -> dict[str, float]:
    out = {}
    for name, w in weights.items():
        if not float(w) >= 0:
            raise ValueError(f"`{name}` must be a weight >= 0, got {w!r}.")
        out[name] = float(w)
    return out


class JRSContentLoss(nn.Module):
    """Content loss ``l_content = sum_k w_k * term_k(I_trans, I_ref)``; by default the paper's Eq. 2.

    The default terms are ``nmi`` (``2 - NMI``, :class:`~monai_jrs.losses.NormalizedMutualInformationLoss`),
    ``ssim`` (``1 - SSIM``, MONAI's :class:`~monai.losses.SSIMLoss`, 2-D, data range 1) and ``vgg``
    (:class:`~monai_jrs.losses.VGGFeatureLoss`, all 13 VGG16 conv layers), each of weight 1. Any other similarity
    term is injected, not named: ``terms`` maps a name to a loss ``(pred, target) -> scalar`` (a MONAI loss such as
    :class:`~monai.losses.LocalNormalizedCrossCorrelationLoss`, or your own module), and ``weights`` gives its
    weight; in a bundle config::

        "content_loss": {"_target_": "monai_jrs.losses.JRSContentLoss",
                         "terms": {"lncc": {"_target_": "monai.losses.LocalNormalizedCrossCorrelationLoss",
                                            "spatial_dims": 2, "kernel_size": 7},
                                   "ssim": {"_target_": "monai.losses.SSIMLoss", "spatial_dims": 2}},
                         "weights": {"lncc": 1.0, "ssim": 0.5}}

    Terms whose weight is 0 are not built (a zero ``vgg_weight`` needs no VGG16 weights file) and not computed.

    Args:
        nmi_weight, ssim_weight, vgg_weight: weights of the default terms (ignored when ``terms`` is given).
        num_bins: histogram bins of NMI (default terms).
        ssim_win_size: SSIM Gaussian window size (default terms; images must be at least this large).
        vgg_weights_path: local VGG16 weights (see :class:`~monai_jrs.networks.nets.VGG16Features`).
        vgg_pretrained: ``False`` builds a random VGG16 (tests only).
        terms: ``{name: loss}``, replacing the default terms.
        weights: ``{name: weight >= 0}`` for ``terms`` (missing names weigh 1; unknown names are an error).

    Raises:
        ValueError: a negative weight, a weight for an unknown term, or a term that is not callable.
        FileNotFoundError: ``vgg_weight > 0`` with ``vgg_pretrained`` and no local weights file.

    Example::

        >>> loss = JRSContentLoss(vgg_weight=0.0)
        >>> x = torch.rand(1, 1, 32, 32)
        >>> sorted(loss.compute_terms(x, x))
        ['nmi', 'ssim']
        >>> from monai.losses import LocalNormalizedCrossCorrelationLoss
        >>> custom = JRSContentLoss(terms={"lncc": LocalNormalizedCrossCorrelationLoss(spatial_dims=2)},
        ...                         weights={"lncc": 2.0})
        >>> sorted(custom.compute_terms(x, x)), custom.weights
        (['lncc'], {'lncc': 2.0})
    """

    def __init__(
        self,
        nmi_weight: float = 1.0,
        ssim_weight: float = 1.0,
        vgg_weight: float = 1.0,
        num_bins: int = 23,
        ssim_win_size: int = 11,
        vgg_weights_path: str | None = None,
        vgg_pretrained: bool = True,
        terms: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if terms is None:
            if weights is not None:
                raise ValueError("`weights` needs `terms`; for the default terms use nmi_weight/ssim_weight/vgg_weight.")
            checked = _check_weights(nmi_weight=nmi_weight, ssim_weight=ssim_weight, vgg_weight=vgg_weight)
            default = {k.removesuffix("_weight"): w for k, w in checked.items()}
            builders: dict[str, Callable[[], Callable]] = {
                "nmi": lambda: NormalizedMutualInformationLoss(num_bins=num_bins),
                "ssim": lambda: SSIMLoss(spatial_dims=2, data_range=1.0, win_size=ssim_win_size),
                "vgg": lambda: VGGFeatureLoss(vgg_weights_path, pretrained=vgg_pretrained),
            }
            terms = {k: builders[k]() for k, w in default.items() if w > 0}
            weights = {k: w for k, w in default.items() if w > 0}
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(terms))
        if unknown:
            raise ValueError(f"`weights` names terms {unknown} that are not in `terms` {sorted(terms)}.")
        for name, term in terms.items():
            if not callable(term):
                raise ValueError(f"each term must be a loss (pred, target) -> scalar, got {type(term).__name__} for "
                                 f"{name!r}.")
        self.weights: dict[str, float] = _check_weights(**{k: weights.get(k, 1.0) for k in terms})
        active = {k: t for k, t in terms.items() if self.weights[k] > 0}
        self.terms = nn.ModuleDict({k: t for k, t in active.items() if isinstance(t, nn.Module)})
        self._functional_terms = {k: t for k, t in active.items() if not isinstance(t, nn.Module)}
        self._order = list(active)

    @property
    def nmi(self) -> nn.Module | None:
        """The ``nmi`` term (None when inactive)."""
        return self.terms["nmi"] if "nmi" in self.terms else None

    @property
    def ssim(self) -> nn.Module | None:
        """The ``ssim`` term (None when inactive)."""
        return self.terms["ssim"] if "ssim" in self.terms else None

    @property
    def vgg(self) -> nn.Module | None:
        """The ``vgg`` term (None when inactive)."""
        return self.terms["vgg"] if "vgg" in self.terms else None

    def compute_terms(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms that have a non-zero weight.

        Args:
            pred: ``(B, C, H, W)`` registered image ``I_trans`` in ``[0, 1]``.
            target: ``(B, C, H, W)`` reference image ``I_ref`` in ``[0, 1]``.

        Returns:
            ``{name: scalar}`` for the active terms (default: ``nmi`` = 2 - NMI, ``ssim`` = 1 - SSIM, ``vgg``).
        """
        check_image(pred, "pred")
        check_image(target, "target")
        if pred.shape != target.shape:
            raise ValueError(f"`target` must have the shape of `pred` {tuple(pred.shape)}, got {tuple(target.shape)}.")
        out: dict[str, torch.Tensor] = {}
        for name in self._order:
            term = self.terms[name] if name in self.terms else self._functional_terms[name]
            out[name] = term(pred, target)
        return out

    def weighted_sum(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``sum_k w_k * terms[k]`` over the content terms present in ``terms``."""
        parts = [self.weights[k] * v for k, v in terms.items() if k in self.weights]
        if not parts:
            raise ValueError(f"the content loss has no active term: the weights are {self.weights or 'all 0'}.")
        return torch.stack(parts).sum()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted content loss (scalar) of ``pred`` ``(B, C, H, W)`` against ``target`` ``(B, C, H, W)``."""
        return self.weighted_sum(self.compute_terms(pred, target))


class JRSGeneratorLoss(nn.Module):
    """Loss of one JRS generator (G or F): content + adversarial + segmentation + DDF + smoothness.

    ``total = l_content(I_trans, I_ref)                                      (Eq. 2)
            + w_adv   * L_adv^G(D(I_trans))          if a discriminator output is given   (Eq. 3)
            + w_dice  * (-log Dice(I_seg_trans, I_seg_ref))                                (Eq. 4)
            + w_ddf   * (-log(1 - MSE_norm(DDF_app, DDF_recv)))  if DDF_app is given       (Eq. 4)
            + w_bend  * BendingEnergy(DDF_recv)                                            (regulariser)``

    The cycle term (Eq. 5) couples G and F and lives in :class:`~monai_jrs.losses.CycleConsistencyLoss`.

    Call signature (what :class:`monai_jrs.engines.JRSTrainer` passes): ``loss(outputs, d_output)`` with
    ``outputs`` a dict keyed by :class:`~monai_jrs.utils.enums.JRSKeys` holding ``reference`` ``(B, C, H, W)``,
    ``reference_mask`` ``(B, 1, H, W)``, ``registered`` ``(B, C, H, W)``, ``registered_mask_prob``
    ``(B, 1, H, W)``, ``ddf`` ``(B, 2, H, W)`` and optionally ``ddf_applied`` ``(B, 2, H, W)``; ``d_output`` is the
    discriminator's ``(B, 1)`` output on ``registered`` or ``None``. Returns ``(total, terms)`` where ``terms``
    maps each active term's name (``nmi``, ``ssim``, ``vgg``, ``adversarial``, ``log_dice``, ``ddf``,
    ``bending``) to its unweighted detached value, plus ``total``.

    Args:
        nmi_weight, ssim_weight, vgg_weight, num_bins, ssim_win_size, vgg_weights_path, vgg_pretrained: see
            :class:`JRSContentLoss` (ignored when ``content`` is given).
        adversarial_weight: weight of the generator adversarial term.
        dice_weight: weight of ``-log Dice``.
        ddf_weight: weight of the DDF consistency term.
        bending_weight: weight of MONAI's :class:`~monai.losses.BendingEnergyLoss` on the recovered DDF (pixels).
        ddf_scale: ``scale`` of :class:`~monai_jrs.losses.DDFConsistencyLoss` (pixels).
        adversarial_mode: ``mode`` of :class:`~monai_jrs.losses.GeneratorAdversarialLoss`.
        logits: the discriminator returns logits.
        content: the content loss, injected (e.g. a :class:`JRSContentLoss` with other ``terms``, or any
            ``(pred, target) -> scalar`` module); default: :class:`JRSContentLoss` of the weights above.

    Raises:
        ValueError: a negative weight, or missing keys in ``outputs``.
    """

    def __init__(
        self,
        nmi_weight: float = 1.0,
        ssim_weight: float = 1.0,
        vgg_weight: float = 1.0,
        adversarial_weight: float = 1.0,
        dice_weight: float = 1.0,
        ddf_weight: float = 1.0,
        bending_weight: float = 0.0,
        num_bins: int = 23,
        ssim_win_size: int = 11,
        vgg_weights_path: str | None = None,
        vgg_pretrained: bool = True,
        ddf_scale: float = 4.0,
        adversarial_mode: str = "non_saturating",
        logits: bool = False,
        content: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if content is None:
            content = JRSContentLoss(
                nmi_weight=nmi_weight,
                ssim_weight=ssim_weight,
                vgg_weight=vgg_weight,
                num_bins=num_bins,
                ssim_win_size=ssim_win_size,
                vgg_weights_path=vgg_weights_path,
                vgg_pretrained=vgg_pretrained,
            )
        self.content = content
        self.weights = _check_weights(
            adversarial_weight=adversarial_weight,
            dice_weight=dice_weight,
            ddf_weight=ddf_weight,
            bending_weight=bending_weight,
        )
        self.adversarial = GeneratorAdversarialLoss(mode=adversarial_mode, logits=logits)
        self.log_dice = LogDiceLoss()
        self.ddf_consistency = DDFConsistencyLoss(scale=ddf_scale)
        self.bending = BendingEnergyLoss()

    def forward(
        self, outputs: Mapping[str, torch.Tensor], d_output: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total generator loss and its terms (see the class docstring).

        Args:
            outputs: generator outputs and targets keyed by :class:`JRSKeys`.
            d_output: ``(B, 1)`` discriminator output on ``outputs["registered"]``, or ``None``.

        Returns:
            ``(total, terms)``: scalar tensor with gradient, and ``{name: float}``.
        """
        required = (JRSKeys.REFERENCE, JRSKeys.REFERENCE_MASK, JRSKeys.REGISTERED, JRSKeys.REGISTERED_MASK_PROB)
        required += (JRSKeys.DDF,)
        missing = [str(k) for k in required if k not in outputs]
        if missing:
            raise ValueError(f"`outputs` must hold the keys {[str(k) for k in required]}, missing {missing}.")
        registered, reference = outputs[JRSKeys.REGISTERED], outputs[JRSKeys.REFERENCE]
        ddf = outputs[JRSKeys.DDF]
        if isinstance(self.content, JRSContentLoss):
            terms = self.content.compute_terms(registered, reference)
            total = self.content.weighted_sum(terms)
        else:  # any other injected content loss is one term
            terms = {"content": self.content(registered, reference)}
            total = terms["content"]
        w = self.weights
        if d_output is not None and w["adversarial_weight"] > 0:
            terms["adversarial"] = self.adversarial(d_output)
            total = total + w["adversarial_weight"] * terms["adversarial"]
        if w["dice_weight"] > 0:
            terms["log_dice"] = self.log_dice(outputs[JRSKeys.REGISTERED_MASK_PROB], outputs[JRSKeys.REFERENCE_MASK])
            total = total + w["dice_weight"] * terms["log_dice"]
        ddf_applied = outputs.get(JRSKeys.DDF_APPLIED)
        if ddf_applied is not None and w["ddf_weight"] > 0:
            terms["ddf"] = self.ddf_consistency(ddf, ddf_applied)
            total = total + w["ddf_weight"] * terms["ddf"]
        if w["bending_weight"] > 0:
            terms["bending"] = self.bending(ddf)
            total = total + w["bending_weight"] * terms["bending"]
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["total"] = float(total.detach())
        return total, values
