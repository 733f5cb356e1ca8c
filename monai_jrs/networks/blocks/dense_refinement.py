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
"""Dense refinement at full resolution: affine, then a coarse-to-fine control grid on MIND-SSC features.

The network predicts its field on a 256 grid after a short CPU training; on real radiographs at 512 px that leaves
errors of several pixels, most of them from magnification changes (the global search has no scale) and from the
body outside the lungs. :class:`DenseRefinement` corrects the network's full-resolution field per pair:

1. **features**: 2D MIND-SSC (Heinrich et al., MICCAI 2013): for the four neighbours at ``mind_dilation`` pixels,
   the six pairwise patch distances, normalised by their local mean, ``exp(-D / V)``. Local self-similarity does
   not change with exposure, contrast or gamma, so the data term is a plain sum of squared feature differences
   (one warp of a 6-channel image per step, no windowed statistics per step).
2. **affine**: a correction ``A x + b`` of the field (rotation, scale, shear and translation residuals) optimised
   with Adam on the two coarsest levels;
3. **dense**: a displacement on a control grid (``control_spacing`` pixels of each level, bilinear), optimised with
   the affine, coarse to fine (each level halves the spacing in original pixels), with a diffusion penalty.

The data term covers the whole image: pixels inside the reference lung mask dilated by ``mask_margin`` (the thorax)
weigh 1, the rest ``outside_weight``; pixels whose match falls outside the floating image weigh 0. Every level works
on the images resampled with anti-aliasing (``align_corners=False`` geometry, so that the levels and the full
resolution agree to a small fraction of a pixel); the largest working grid is ``max_size`` on the longer side, and the
final field is evaluated exactly at every full-resolution pixel. Few, large tensor operations per step (about 20):
on a CPU the per-operation overhead, not the arithmetic, sets the time.

Anchors for the method (not code): ConvexAdam (Siebert, Hansen, Heinrich, Learn2Reg 2021; MIND-SSC features, feature
SSD, Adam on a control grid with a diffusion term) and elastix (affine, then multi-level B-spline).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...utils.conventions import check_ddf, check_image, identity_grid
from .global_alignment import chest_window, square_dilation

logger = logging.getLogger(__name__)

__all__ = ["DenseRefinement", "DenseRefinementStats", "mind_ssc", "carry_mask_to_floating"]

#: the four neighbour directions of 2D MIND-SSC (row, col) and the six pairs of them compared.
_NEIGHBOURS = ((0, 1), (1, 0), (0, -1), (-1, 0))
_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def mind_ssc(image: torch.Tensor, radius: int = 1, dilation: int = 2, eps: float = 1e-6) -> torch.Tensor:
    """2D MIND-SSC descriptor: self-similarity of the four ``dilation`` neighbours of every pixel, six channels.

    Args:
        image: ``(B, 1, H, W)`` image (any intensity range).
        radius: patch radius of the patch distances (box filter of ``2 * radius + 1``).
        dilation: distance of the four neighbours in pixels.
        eps: floor of the local variance estimate.

    Returns:
        ``(B, 6, H, W)`` descriptor in ``[0, 1]`` (the largest channel of each pixel is 1).

    Raises:
        ValueError: ``image`` is not ``(B, 1, H, W)`` or ``radius``/``dilation`` are out of range.

    Example::

        >>> x = torch.rand(1, 1, 16, 16)
        >>> torch.allclose(mind_ssc(x), mind_ssc(3 * x + 0.5), atol=1e-4)  # invariant to linear intensity changes
        True
    """
    if image.ndim != 4 or image.shape[1] != 1:
        raise ValueError(f"`image` must have shape (B, 1, H, W), got {tuple(image.shape)}.")
    if int(radius) < 0 or int(dilation) < 1:
        raise ValueError(f"expected radius >= 0 and dilation >= 1, got {radius} and {dilation}.")
    d, r = int(dilation), int(radius)
    h, w = image.shape[2:]
    padded = F.pad(image, (d, d, d, d), mode="replicate")
    shifted = torch.cat([padded[..., d + dr * d:d + dr * d + h, d + dc * d:d + dc * d + w]
                         for dr, dc in _NEIGHBOURS], dim=1)
    a = torch.tensor([i for i, _ in _PAIRS], device=image.device)
    b = torch.tensor([j for _, j in _PAIRS], device=image.device)
    dist = (shifted.index_select(1, a) - shifted.index_select(1, b)).pow(2)
    if r > 0:  # box filter as a depthwise convolution (faster than avg_pool2d on CPU)
        k = 2 * r + 1
        box = torch.full((dist.shape[1], 1, k, k), 1.0 / (k * k), device=dist.device, dtype=dist.dtype)
        dist = F.conv2d(F.pad(dist, (r, r, r, r), mode="replicate"), box, groups=dist.shape[1])
    var = dist.mean(dim=1, keepdim=True)
    mean_var = var.mean(dim=(2, 3), keepdim=True)
    var = var.clamp(min=(mean_var * 1e-3).clamp_min(eps), max=mean_var * 1e3 + eps)
    mind = torch.exp(-dist / var)
    return mind / mind.amax(dim=1, keepdim=True).clamp_min(eps)


@dataclass
class DenseRefinementStats:
    """What one refinement did, per batch item.

    Attributes:
        ssd_before: feature SSD (weighted mean over the image) with the starting field (the input field, or its
            affine fit with ``start="affine"``), at the finest level.
        ssd_after: the same with the refined field.
        ncc_chest: normalised cross-correlation of the reference and the registered image inside the chest window
            at the finest level: about 0.9 for a registered follow-up, low for an image that is not the same chest.
        low_quality: ``ncc_chest < min_ncc``: the result should not be trusted.
        affine: ``(2, 3)`` affine correction found, in normalised coordinates.
        levels: working grid ``(h, w)`` of each level.
    """

    ssd_before: list[float] = field(default_factory=list)
    ssd_after: list[float] = field(default_factory=list)
    ncc_chest: list[float] = field(default_factory=list)
    low_quality: list[bool] = field(default_factory=list)
    affine: list[list[list[float]]] = field(default_factory=list)
    levels: list[tuple[int, int]] = field(default_factory=list)


class DenseRefinement(nn.Module):
    """Refine a full-resolution DDF for a pair: affine, then a coarse-to-fine control grid (see the module docstring).

    Args:
        max_size: longer side of the finest working grid (the full resolution when the image is smaller).
        levels: downsampling factors of the working levels, coarse to fine (``(4, 2, 1)``: 128, 256, 512 for a 512
            image).
        affine_iterations: Adam steps of the affine stage on the first ``len(affine_iterations)`` levels.
        iterations: Adam steps of the dense stage per level (one per entry of ``levels``).
        control_spacing: control-point spacing in pixels of each level (the finest level: ``control_spacing``
            pixels of the working grid).
        learning_rate: Adam step of the control grid, in pixels of the level.
        affine_learning_rate: Adam step of the affine, in pixels of the level at the image border.
        smooth_weight: weight of the diffusion penalty (mean squared difference of neighbouring control points, in
            pixels of the level).
        outside_weight: weight of the data term outside the thorax window (1 inside).
        mask_margin: dilation of the reference lung mask that forms the thorax window, as a fraction of the longer
            side.
        mind_radius: patch radius of :func:`mind_ssc`.
        mind_dilation: neighbour distance of :func:`mind_ssc` in pixels of each level.
        min_ncc: quality threshold of :attr:`DenseRefinementStats.low_quality`.

    Raises:
        ValueError: for out-of-range arguments.

    Example::

        >>> refine = DenseRefinement(max_size=32, levels=(2, 1), affine_iterations=(2,), iterations=(2, 2))
        >>> img = torch.rand(1, 1, 32, 32); mask = torch.zeros(1, 1, 32, 32); mask[..., 8:24, 8:24] = 1
        >>> refine(img, img, mask, torch.zeros(1, 2, 32, 32)).shape
        torch.Size([1, 2, 32, 32])
    """

    #: works on the full-resolution field (stage 5 of :class:`~monai_jrs.inferers.JRSInferer`), not the network grid.
    full_resolution = True

    def __init__(
        self,
        max_size: int = 512,
        levels: Sequence[int] = (4, 2, 1),
        affine_iterations: Sequence[int] = (30, 10),
        iterations: Sequence[int] = (30, 20, 10),
        control_spacing: int = 8,
        learning_rate: float = 0.5,
        affine_learning_rate: float = 0.5,
        smooth_weight: float = 0.02,
        outside_weight: float = 0.5,
        mask_margin: float = 0.08,
        mind_radius: int = 1,
        mind_dilation: int = 2,
        min_ncc: float = 0.5,
        regularization: str = "bending",
        samples: int = 16384,
        seed: int = 0,
        start: str = "affine",
    ) -> None:
        super().__init__()
        self.levels = [int(v) for v in levels]
        self.iterations = [int(v) for v in iterations]
        self.affine_iterations = [int(v) for v in affine_iterations]
        if not self.levels or min(self.levels) < 1 or any(a < b for a, b in zip(self.levels, self.levels[1:])):
            raise ValueError(f"`levels` must be non-increasing factors >= 1, coarse to fine, got {levels}.")
        if len(self.iterations) != len(self.levels) or min(self.iterations) < 0:
            raise ValueError(f"`iterations` must be one count >= 0 per level ({len(self.levels)}), got {iterations}.")
        if len(self.affine_iterations) > len(self.levels) or any(v < 0 for v in self.affine_iterations):
            raise ValueError(f"`affine_iterations` must be at most one count >= 0 per level, got {affine_iterations}.")
        if int(max_size) < 16 or int(control_spacing) < 2:
            raise ValueError(f"expected max_size >= 16 and control_spacing >= 2, got {max_size}, {control_spacing}.")
        if learning_rate <= 0 or affine_learning_rate <= 0 or smooth_weight < 0:
            raise ValueError("expected learning rates > 0 and smooth_weight >= 0, got "
                             f"{learning_rate}, {affine_learning_rate}, {smooth_weight}.")
        if not 0.0 <= outside_weight <= 1.0 or not 0.0 <= mask_margin < 0.5:
            raise ValueError(f"expected outside_weight in [0, 1] and mask_margin in [0, 0.5), got {outside_weight}, "
                             f"{mask_margin}.")
        self.max_size, self.control_spacing = int(max_size), int(control_spacing)
        self.learning_rate, self.affine_learning_rate = float(learning_rate), float(affine_learning_rate)
        self.smooth_weight, self.outside_weight, self.mask_margin = float(smooth_weight), float(outside_weight), float(
            mask_margin)
        self.mind_radius, self.mind_dilation, self.min_ncc = int(mind_radius), int(mind_dilation), float(min_ncc)
        if regularization not in _REGULARIZERS:
            raise ValueError(f"`regularization` must be one of {tuple(_REGULARIZERS)}, got {regularization!r}.")
        self.regularization = regularization
        self.samples, self.seed = int(samples), int(seed)
        if start not in ("field", "affine"):
            raise ValueError(f"`start` must be 'field' or 'affine', got {start!r}.")
        self.start = start
        self._penalty = _REGULARIZERS[regularization]

    def forward(
        self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor, ddf: torch.Tensor
    ) -> torch.Tensor:
        """Refined ``(B, 2, H, W)`` field (see :meth:`refine`)."""
        return self.refine(reference, floating, reference_mask, ddf)[0]

    def refine(
        self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor, ddf: torch.Tensor
    ) -> tuple[torch.Tensor, DenseRefinementStats]:
        """Refine ``ddf`` for the pair and say how well the result matches.

        Args:
            reference: ``(B, 1, H, W)`` reference image.
            floating: ``(B, 1, Hf, Wf)`` floating image on its own grid (any size).
            reference_mask: ``(B, 1, H, W)`` reference lung mask in [0, 1] (an empty mask: the whole image weighs 1).
            ddf: ``(B, 2, H, W)`` initial field, reference pixels to floating pixels
                (``registered(p) = floating(p + ddf(p))``, channel 0 along rows).

        Returns:
            ``(ddf, stats)``: the refined ``(B, 2, H, W)`` field (detached, the dtype of ``ddf``) and
            :class:`DenseRefinementStats`.

        Raises:
            ValueError: for mismatched shapes or non-finite inputs.
        """
        check_image(reference, "reference")
        check_image(floating, "floating")
        check_ddf(ddf, reference)
        if reference_mask.ndim != 4 or reference_mask.shape[2:] != reference.shape[2:] or (
                floating.shape[0] != reference.shape[0]):
            raise ValueError(
                "reference (B, 1, H, W), floating (B, 1, Hf, Wf) and reference_mask (B, 1, H, W) must agree; got "
                f"{tuple(reference.shape)}, {tuple(floating.shape)}, {tuple(reference_mask.shape)}."
            )
        for name, t in (("reference", reference), ("floating", floating), ("ddf", ddf)):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"`{name}` must be finite everywhere, got NaN or infinite values.")
        dtype, device = ddf.dtype, ddf.device
        ref, flt = reference.detach().float().mean(1, keepdim=True), floating.detach().float().mean(1, keepdim=True)
        (hr, wr), (hf, wf) = ref.shape[2:], flt.shape[2:]
        bsz = ref.shape[0]
        flt_size = torch.tensor([wf, hf], dtype=torch.float32, device=device)  # (x, y) order of grid_sample
        xn_full = _normalised_grid(hr, wr, device)
        dn_full = _normalised_displacement(ddf.detach(), (hf, wf))
        base_scale = min(1.0, self.max_size / max(hr, wr))
        # the thorax window, dilated on a small grid (a wide max-pool at full resolution costs tens of ms)
        coarse = (max(8, round(hr * base_scale / self.levels[0])), max(8, round(wr * base_scale / self.levels[0])))
        window_full = chest_window(_resample(reference_mask.detach().float(), coarse), self.mask_margin)
        if self.start == "affine":
            dn_full = _affine_fit(dn_full, xn_full, _resample(window_full, (hr, wr)) > 0.5)

        ranges = (_intensity_range(ref), _intensity_range(flt))
        affine = torch.zeros(bsz, 2, 3, device=device, requires_grad=True)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        ctrl: torch.Tensor | None = None
        stats = DenseRefinementStats()
        n_levels = len(self.levels)
        for li, factor in enumerate(self.levels):
            size = (max(8, round(hr * base_scale / factor)), max(8, round(wr * base_scale / factor)))
            fsize = (max(8, round(hf * base_scale / factor)), max(8, round(wf * base_scale / factor)))
            stats.levels.append(size)
            level = self._level(ref, flt, ranges, window_full, dn_full, size, fsize)
            cells = self._cells(hr, wr, base_scale, li)
            if ctrl is None:
                ctrl = torch.zeros(bsz, 2, cells[0] + 1, cells[1] + 1, device=device)
            else:  # exact: the finer grid halves every cell, so the bilinear field is unchanged
                ctrl = F.interpolate(ctrl.detach(), size=(cells[0] + 1, cells[1] + 1), mode="bilinear",
                                     align_corners=True)
            ctrl.requires_grad_(True)
            px = torch.tensor([2.0 / size[1], 2.0 / size[0]], device=device)  # one level pixel, normalised (x, y)
            if li == n_levels - 1:
                with torch.no_grad():
                    stats.ssd_before = self._data(level, torch.zeros_like(affine), None)[1].tolist()
            if li < len(self.affine_iterations) and self.affine_iterations[li] > 0:
                opt = torch.optim.Adam([affine], lr=self.affine_learning_rate * float(px.mean()))
                for _ in range(self.affine_iterations[li]):
                    opt.zero_grad(set_to_none=True)
                    loss = self._data(level, affine, None, self._samples(level, gen))[0]
                    loss.backward()
                    opt.step()
            if self.iterations[li] > 0:
                opt = torch.optim.Adam([
                    {"params": [ctrl], "lr": self.learning_rate * float(px.mean())},
                    {"params": [affine], "lr": 0.25 * self.affine_learning_rate * float(px.mean())},
                ])
                for _ in range(self.iterations[li]):
                    opt.zero_grad(set_to_none=True)
                    data, _ = self._data(level, affine, ctrl, self._samples(level, gen))
                    loss = data + self.smooth_weight * self._penalty(ctrl, px)
                    loss.backward()
                    opt.step()
            if li == n_levels - 1:
                with torch.no_grad():
                    ssd, ncc = self._data(level, affine, ctrl)[1], self._ncc(level, affine, ctrl)
                stats.ssd_after, stats.ncc_chest = ssd.tolist(), ncc.tolist()
        assert ctrl is not None
        with torch.no_grad():  # composition: q(p) = initial(p + correction(p))
            pn = xn_full + _affine_field(affine, xn_full) + _control_field(ctrl, xn_full)
            qn = pn + _sample_extrapolated(dn_full.permute(0, 3, 1, 2), pn).permute(0, 2, 3, 1)
            q = ((qn + 1.0) * flt_size - 1.0) / 2.0
            out = q.permute(0, 3, 1, 2).flip(1) - identity_grid([hr, wr], device=device)
        stats.low_quality = [v < self.min_ncc for v in stats.ncc_chest]
        stats.affine = affine.detach().tolist()
        if any(stats.low_quality):
            logger.warning("dense refinement: low similarity inside the chest window (NCC %s < %.2f); the floating "
                           "image may not be a radiograph of the same chest.",
                           ", ".join(f"{v:.2f}" for v in stats.ncc_chest), self.min_ncc)
        return out.to(dtype), stats

    # -- internals ---------------------------------------------------------------------------------------------------
    def _samples(self, level: dict[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor | None:
        """Random pixel indices of one step (stochastic gradient, as elastix's random sampler), or None for all."""
        n = level["xn"].shape[1]
        if self.samples <= 0 or n <= self.samples:
            return None
        return torch.randint(n, (self.samples,), generator=gen, device=level["xn"].device)

    def _cells(self, hr: int, wr: int, base_scale: float, level_index: int) -> tuple[int, int]:
        """Control cells per axis at a level: the finest has about ``size / control_spacing``, each coarser half."""
        finest_factor = self.levels[-1]
        k = 2 ** (len(self.levels) - 1)
        cells = []
        for n in (hr, wr):
            fine = n * base_scale / finest_factor / self.control_spacing
            coarse = max(1, math.ceil(fine / k))
            cells.append(coarse * 2**level_index)
        return cells[0], cells[1]

    def _level(self, ref, flt, ranges, window_full, dn_full, size, fsize) -> dict[str, torch.Tensor]:
        """Features, weights and the floating image through the initial field, at one level, flattened."""
        r = _normalise(_resample(ref, size), *ranges[0])
        f = _normalise(_resample(flt, fsize), *ranges[1])
        fr = mind_ssc(r, self.mind_radius, self.mind_dilation)
        win = (_resample(window_full, size) > 0.5).float()
        xn = _normalised_grid(size[0], size[1], ref.device)
        base = xn + _resample(dn_full.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)
        # the floating image through the initial field, on the reference grid: the features are then computed in
        # the reference frame (MIND is not rotation invariant) and the correction composes with the initial field
        moved = F.grid_sample(torch.cat([f, torch.ones_like(f)], 1), base, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        f, valid = moved[:, :1], (moved[:, 1:] > 0.999).float()
        # descriptors that see the floating image's edge (its zero padding) or the reference's edge (replicate
        # padding) describe the padding, not the anatomy: drop the band of the descriptor's footprint on both sides
        k = self.mind_dilation + self.mind_radius
        valid = _erode(valid, k)
        ref_inner = torch.zeros_like(r)
        ref_inner[..., k:-k, k:-k] = 1.0
        # the validity travels with the features: a match outside the floating image weighs 0
        ff = torch.cat([mind_ssc(f, self.mind_radius, self.mind_dilation) * valid, valid], dim=1)
        weight = (self.outside_weight + (1.0 - self.outside_weight) * win) * ref_inner
        return {"fr": fr.flatten(2), "ff": ff, "weight": weight.flatten(2), "xn": xn.flatten(1, 2), "ref": r,
                "flt": f, "win": win * valid}

    def _data(self, level, affine, ctrl, samples: torch.Tensor | None = None):
        """Weighted feature SSD: ``(loss, per-item SSD)``, at the pixels ``samples`` (all when None)."""
        xn, fr, wt = level["xn"], level["fr"], level["weight"]
        if samples is not None:
            xn, fr, wt = xn[:, samples], fr[..., samples], wt[..., samples]
        pos = _points(xn, affine, ctrl)
        moved = F.grid_sample(level["ff"], pos, mode="bilinear", padding_mode="zeros", align_corners=False).flatten(2)
        c = fr.shape[1]
        wt = wt * (moved[:, c:].detach() > 0.999).float()
        err = (moved[:, :c] - fr).pow(2).mean(dim=1, keepdim=True) * wt
        per_item = err.flatten(1).sum(1) / wt.flatten(1).sum(1).clamp_min(1.0)
        return per_item.sum(), per_item

    def _ncc(self, level, affine, ctrl) -> torch.Tensor:
        """NCC of the reference and the registered image inside the chest window at one level, ``(B,)``."""
        h, w = level["ref"].shape[2:]
        pos = _points(level["xn"], affine, ctrl).view(-1, h, w, 2)
        img = F.grid_sample(level["flt"], pos, mode="bilinear", padding_mode="zeros", align_corners=False)
        return _weighted_ncc(img, level["ref"], level["win"])


def carry_mask_to_floating(
    mask: torch.Tensor, ddf: torch.Tensor, floating_shape: Sequence[int], max_size: int = 512, num_iters: int = 6
) -> torch.Tensor:
    """A reference-grid mask carried onto the floating image's own grid through the inverse of a full-resolution DDF.

    The inverse is computed on a grid of at most ``max_size`` per side (the field is smooth) by
    :func:`~monai_jrs.utils.conventions.invert_ddf` (Newton, any rotation), then evaluated at every floating pixel.

    Args:
        mask: ``(B, 1, H, W)`` mask on the reference grid, in [0, 1].
        ddf: ``(B, 2, H, W)`` field from reference pixels to floating pixels.
        floating_shape: ``(Hf, Wf)`` of the floating image.
        max_size: largest side of the inversion grid.
        num_iters: Newton steps of the inversion.

    Returns:
        ``(B, 1, Hf, Wf)`` soft mask on the floating grid (0 where the preimage falls outside the reference).
    """
    from ...utils.conventions import invert_ddf

    (hr, wr), (hf, wf) = ddf.shape[2:], (int(floating_shape[0]), int(floating_shape[1]))
    device = ddf.device
    dn = _normalised_displacement(ddf, (hf, wf))
    n = (min(max_size, hr), min(max_size, wr))
    # nodes spanning the normalised square corner to corner (align_corners=True numbering of the inversion grid)
    nodes = torch.stack(torch.meshgrid(torch.linspace(-1, 1, n[0], device=device),
                                       torch.linspace(-1, 1, n[1], device=device), indexing="ij")[::-1], dim=-1)[None]
    nodes = nodes.expand(ddf.shape[0], -1, -1, -1)
    d_nodes = F.grid_sample(dn.permute(0, 3, 1, 2), nodes, mode="bilinear", padding_mode="border", align_corners=False)
    to_px = torch.tensor([(n[1] - 1) / 2.0, (n[0] - 1) / 2.0], device=device).view(1, 2, 1, 1)
    d_px = (d_nodes * to_px).flip(1)  # (B, 2 = rows, cols, n0, n1) in inversion-grid pixels
    inv_n = invert_ddf(d_px, num_iters=num_iters).flip(1) / to_px  # normalised, (x, y) channels
    yn = _normalised_grid(hf, wf, device).expand(ddf.shape[0], -1, -1, -1)
    e = F.grid_sample(inv_n, yn, mode="bilinear", padding_mode="border", align_corners=True)
    return F.grid_sample(mask.float(), yn + e.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def _normalised_displacement(ddf: torch.Tensor, floating_shape: Sequence[int]) -> torch.Tensor:
    """A pixel DDF ``(B, 2, H, W)`` as floating minus reference normalised positions, ``(B, H, W, 2)`` in ``(x, y)``.

    Both images in ``align_corners=False`` coordinates: resolution-free, so any level of either image is sampled at
    the same points.
    """
    hr, wr = ddf.shape[2:]
    flt_size = torch.tensor([floating_shape[1], floating_shape[0]], dtype=torch.float32, device=ddf.device)
    q = (identity_grid([hr, wr], device=ddf.device) + ddf.float()).flip(1).permute(0, 2, 3, 1)  # floating pixels
    return (2.0 * q + 1.0) / flt_size - 1.0 - _normalised_grid(hr, wr, ddf.device)


def _normalised_grid(h: int, w: int, device: torch.device | None) -> torch.Tensor:
    """``(1, h, w, 2)`` pixel centres in normalised ``(x, y)`` coordinates (``align_corners=False``)."""
    ys = (2.0 * torch.arange(h, device=device, dtype=torch.float32) + 1.0) / h - 1.0
    xs = (2.0 * torch.arange(w, device=device, dtype=torch.float32) + 1.0) / w - 1.0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1)[None]


def _sample_extrapolated(x: torch.Tensor, points: torch.Tensor, margin: float = 0.125) -> torch.Tensor:
    """Bilinear samples of a smooth field ``x`` ``(B, C, h, w)`` at normalised ``(x, y)`` points ``(B, H, W, 2)``.

    Points up to ``margin`` of the size outside the grid get a linear extrapolation (``2 x_edge - x_mirror``, exact
    for an affine field), not the border value: a corrected point that leaves the image near its border would
    otherwise see the initial field jump from its affine trend to a constant (a fold along the border).
    """
    h, w = x.shape[2:]
    m_r, m_c = min(h - 1, max(1, round(margin * h))), min(w - 1, max(1, round(margin * w)))
    pad = (m_c, m_c, m_r, m_r)
    ext = 2.0 * F.pad(x, pad, mode="replicate") - F.pad(x, pad, mode="reflect")
    scale = torch.tensor([w / (w + 2 * m_c), h / (h + 2 * m_r)], device=x.device, dtype=x.dtype)
    return F.grid_sample(ext, points * scale, mode="bilinear", padding_mode="border", align_corners=False)


def _affine_fit(dn: torch.Tensor, xn: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Least-squares affine ``A x + b`` of a normalised displacement ``(B, H, W, 2)`` over ``region`` ``(B, 1, H, W)``.

    Falls back to the whole image where ``region`` holds fewer than 3 pixels. Returns ``(B, H, W, 2)``.
    """
    b = dn.shape[0]
    design = torch.cat([xn, torch.ones_like(xn[..., :1])], dim=-1).expand(b, -1, -1, -1).reshape(b, -1, 3)
    w = region.reshape(b, -1, 1).float()
    w = torch.where(w.sum(1, keepdim=True) >= 3, w, torch.ones_like(w))
    lhs = design.transpose(1, 2) @ (design * w)
    rhs = design.transpose(1, 2) @ (dn.reshape(b, -1, 2) * w)
    coef = torch.linalg.solve(lhs.double(), rhs.double()).float()  # (B, 3, 2)
    return (design @ coef).reshape(dn.shape)


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion of a ``(B, 1, h, w)`` {0, 1} mask by a square of ``radius``; outside the grid counts as 0."""
    return 1.0 - square_dilation(1.0 - mask, radius, outside=1.0)


def _resample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Anti-aliased bilinear resampling to ``size`` (``align_corners=False`` geometry)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    down = size[0] < x.shape[2] or size[1] < x.shape[3]
    return F.interpolate(x, size=[int(size[0]), int(size[1])], mode="bilinear", align_corners=False, antialias=down)


def _intensity_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 and 99.5 percentiles of each item, ``(B, 1, 1, 1)`` each (robust to burnt-in text and dead pixels)."""
    flat = x.flatten(1)
    q = torch.quantile(flat[:, :: max(1, flat.shape[1] // 65536)],
                       torch.tensor([0.005, 0.995], device=x.device, dtype=x.dtype), dim=1)
    return q[0].view(-1, 1, 1, 1), q[1].view(-1, 1, 1, 1)


def _normalise(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``x`` scaled to [0, 1] between ``lo`` and ``hi`` (clamped)."""
    return ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp(0.0, 1.0)


def _points(xn: torch.Tensor, affine: torch.Tensor, ctrl: torch.Tensor | None) -> torch.Tensor:
    """Corrected positions ``xn + A xn + b + ctrl(xn)`` of flattened points ``(1, N, 2)``, as a ``(B, 1, N, 2)`` grid."""
    xn = xn[:, None]
    pos = xn + _affine_field(affine, xn)
    return pos if ctrl is None else pos + _control_field(ctrl, xn)


def _affine_field(affine: torch.Tensor, xn: torch.Tensor) -> torch.Tensor:
    """``A x + b`` at normalised points ``xn`` ``(1, h, w, 2)``; ``affine``: ``(B, 2, 3)``. Returns ``(B, h, w, 2)``."""
    return torch.einsum("bij,nhwj->bhwi", affine[:, :, :2], xn) + affine[:, None, None, :, 2]


def _control_field(ctrl: torch.Tensor, xn: torch.Tensor) -> torch.Tensor:
    """The bilinear control-grid displacement ``(B, 2, gh, gw)`` (normalised, x/y) at ``xn``; ``(B, h, w, 2)``."""
    grid = xn.expand(ctrl.shape[0], -1, -1, -1)
    return F.grid_sample(ctrl, grid, mode="bilinear", padding_mode="border", align_corners=True).permute(0, 2, 3, 1)


def _diffusion(ctrl: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring control points, in pixels of the level (summed over the batch)."""
    c = ctrl / px.view(1, 2, 1, 1)
    return ((c[:, :, 1:] - c[:, :, :-1]).pow(2).mean() + (c[:, :, :, 1:] - c[:, :, :, :-1]).pow(2).mean()) * ctrl.shape[0]


def _bending(ctrl: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Discrete bending energy of the control grid (squared second differences), in pixels of the level.

    Zero for any affine field: where the images carry no information (saturated abdomen, background, collimator)
    the correction continues the affine trend instead of flattening out. Summed over the batch.
    """
    c = ctrl / px.view(1, 2, 1, 1)
    d_rr = c[:, :, 2:] - 2.0 * c[:, :, 1:-1] + c[:, :, :-2]
    d_cc = c[..., 2:] - 2.0 * c[..., 1:-1] + c[..., :-2]
    d_rc = c[:, :, 1:, 1:] - c[:, :, 1:, :-1] - c[:, :, :-1, 1:] + c[:, :, :-1, :-1]
    return (d_rr.pow(2).mean() + d_cc.pow(2).mean() + 2.0 * d_rc.pow(2).mean()) * ctrl.shape[0]


_REGULARIZERS = {"diffusion": _diffusion, "bending": _bending}


def _weighted_ncc(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted normalised cross-correlation per batch item of ``(B, 1, h, w)`` images; ``(B,)``."""
    s = w.flatten(1).sum(1).clamp_min(1.0)
    xf, yf, wf = x.flatten(1), y.flatten(1), w.flatten(1)
    mx, my = (xf * wf).sum(1) / s, (yf * wf).sum(1) / s
    xc, yc = xf - mx[:, None], yf - my[:, None]
    cov = (wf * xc * yc).sum(1)
    return cov / ((wf * xc * xc).sum(1) * (wf * yc * yc).sum(1)).sqrt().clamp_min(1e-8)
