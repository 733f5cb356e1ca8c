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
"""Global (rigid + optional learned affine) alignment stage of the JRS generator.

A residual stack at full resolution has a receptive field of a few dozen pixels and cannot recover the paper's
40 px shifts or 180 degree rotations, so the generator starts with this stage: an exhaustive rotation search with
translation by FFT masked normalised cross-correlation at a small size, optionally followed by a small CNN that
regresses a residual affine.

Convention:
    Returned matrices are ``(B, 3, 3)`` in the centred ``(row, col)`` convention of
    :mod:`monai_jrs.utils.conventions`: a reference-grid point ``p`` samples the floating image at
    ``A[:2, :2] @ (p - c) + A[:2, 2] + c``; :func:`~monai_jrs.utils.conventions.affine_to_ddf` turns it into a
    ``(B, 2, H, W)`` DDF (channel 0 along H, channel 1 along W).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.utils import look_up_option

from monai_jrs.networks.blocks.displacement import rescale_affine
from monai_jrs.utils.conventions import _rotation_matrix, _shape_str, affine_to_ddf, check_image, warp

__all__ = ["GlobalAlignment", "AffineRefinementNet"]

logger = logging.getLogger(__name__)

_REFINEMENTS = ("learned", "none")


class AffineRefinementNet(nn.Module):
    """Small CNN regressing a residual affine from ``[reference, globally warped floating]``.

    Four stride-2 convolutions, global average pooling and a linear layer whose weights and bias are zero, so the
    network starts at the identity. The output ``delta`` is added to the identity: ``A_res = I + [delta; 0]``;
    the translation column is in pixels of the input grid.

    Args:
        in_channels: number of input channels (2: reference and warped floating).
        features: width of the first convolution (then doubled twice).
        act: activation (MONAI ``Act`` factory name or tuple).
        norm: normalisation (MONAI ``Norm`` factory); default ``None`` so that batches of one tiny image train.
    """

    def __init__(
        self,
        in_channels: int = 2,
        features: int = 16,
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.2}),
        norm: str | tuple | None = None,
    ) -> None:
        super().__init__()
        if int(in_channels) < 1 or int(features) < 1:
            raise ValueError(f"`in_channels` and `features` must be >= 1, got {in_channels}, {features}.")
        chans = (int(features), 2 * int(features), 4 * int(features), 4 * int(features))
        layers: list[nn.Module] = []
        c_in = int(in_channels)
        for c in chans:
            layers.append(Convolution(2, c_in, c, strides=2, kernel_size=3, act=act, norm=norm, adn_ordering="NA"))
            c_in = c
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, 6)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual affine.

        Args:
            x: ``(B, in_channels, h, w)``.

        Returns:
            ``(B, 3, 3)`` residual matrix ``I + [delta; 0]``.
        """
        delta = self.head(self.encoder(x)).view(-1, 2, 3)
        eye = torch.eye(3, dtype=delta.dtype, device=delta.device).unsqueeze(0)
        return eye + F.pad(delta, (0, 0, 0, 1))


def square_dilation(mask: torch.Tensor, radius: int, outside: float = 0.0) -> torch.Tensor:
    """Dilation of a ``(B, C, H, W)`` mask in [0, 1] by a ``(2 radius + 1)`` square, separable (two thin max-pools).

    Args:
        mask: the mask.
        radius: half-width of the square in pixels (``<= 0``: the mask unchanged).
        outside: value of the pixels beyond the grid (1 makes ``1 - square_dilation(1 - m, r, 1)`` an erosion in
            which the outside counts as background).
    """
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    m = F.pad(mask, (radius,) * 4, value=float(outside))
    return F.max_pool2d(F.max_pool2d(m, (k, 1), stride=1), (1, k), stride=1)


def chest_window(
    mask: torch.Tensor, margin: float, shape: list[int] | None = None, min_radius: int = 0, fill_empty: bool = True
) -> torch.Tensor:
    """The chest window: a lung mask resized to ``shape``, binarised and dilated by ``margin`` of the grid.

    Registration scores are taken inside it so that collimator borders and burnt-in markers outside the chest do not
    pull the result (the global search and :class:`~monai_jrs.networks.blocks.InstanceOptimization` share it).

    Args:
        mask: ``(B, C, H, W)`` lung mask in [0, 1]; channels are merged by their maximum.
        margin: dilation radius as a fraction of the larger side of ``shape``.
        shape: ``(h, w)`` of the window (area resampling); default: the mask's own size.
        min_radius: smallest dilation radius in pixels.
        fill_empty: give a sample whose mask is empty the whole image (all ones) instead of an empty window.

    Returns:
        ``(B, 1, h, w)`` window in {0, 1}.

    Example::

        >>> m = torch.zeros(1, 1, 9, 9); m[..., 4, 4] = 1
        >>> int(chest_window(m, 0.12).sum())  # radius round(0.12 * 9) = 1: a 3 x 3 square
        9
    """
    m = mask.float().amax(dim=1, keepdim=True)
    size = [int(v) for v in (shape if shape is not None else m.shape[2:])]
    if [int(v) for v in m.shape[2:]] != size:
        m = F.interpolate(m, size=size, mode="area")
    m = (m > 0.25).to(m.dtype)
    r = max(int(min_radius), int(round(float(margin) * max(size))))
    m = square_dilation(m, r)
    if not fill_empty:
        return m
    empty = m.flatten(1).sum(dim=1) == 0
    return torch.where(empty.view(-1, 1, 1, 1), torch.ones_like(m), m)


class GlobalAlignment(nn.Module):
    """Exhaustive rotation search + FFT masked-NCC translation, with an optional learned affine refinement.

    Both images are reduced to one channel (channel mean), area-downsampled so that their longer side is
    ``search_size`` (aspect ratio kept; never upsampled) and normalised to zero mean and unit standard deviation.
    The floating image is rotated about the image centre to ``num_rotations`` candidate angles (zero padding,
    with a validity mask) and the masked normalised cross-correlation with the reference (Padfield, "Masked
    object registration in the Fourier domain", IEEE TIP 2012) is computed for all candidates and all shifts up
    to ``max_shift_fraction`` of the grid at once, by zero-padded (non-circular) FFTs. Shifts whose overlap covers
    less than ``min_overlap`` of the reference are rejected, so padding and small overlaps cannot win. A second
    pass evaluates ``num_fine_rotations`` angles spanning one coarse step around the winner; the angle and the
    shift are refined to sub-pixel / sub-step precision by parabolic peak interpolation. The search runs under
    ``torch.no_grad`` and is vectorised over the batch.

    With ``refinement="learned"`` an :class:`AffineRefinementNet` sees ``[reference, warped floating]`` at the
    search size and its residual affine is composed on the reference side: ``A = A_search @ A_res``. It starts at
    the identity (zero-initialised last layer) and is the only trainable part of this stage.

    The matrix found on the small grid is rescaled to the input grid with :func:`rescale_affine`
    (area geometry: centred coordinates scale by ``N / n`` per axis).

    Args:
        search_size: longer side of the search grid, in pixels (>= 8).
        num_rotations: number of candidate angles of the coarse pass (>= 1).
        max_rotation_deg: largest absolute rotation searched, in degrees, in ``(0, 180]``. With 180 the candidates
            cover the full circle with step ``360 / num_rotations`` (72 -> 5 degree steps, including 0 and -180);
            otherwise ``num_rotations`` angles evenly spaced in ``[-max_rotation_deg, max_rotation_deg]``.
        refinement: ``{"learned", "none"}``.
        exhaustive_search: if False, the search is skipped (identity start), e.g. to use only the learned stage.
        num_fine_rotations: angles of the second pass (``<= 1`` disables it).
        max_shift_fraction: largest shift searched, as a fraction of the search grid per axis, in ``(0, 1)``.
        min_overlap: smallest accepted overlap, as a fraction of the search window area (the grid, or the dilated
            reference mask when one is given), in ``(0, 1]``.
        refinement_features: width of the refinement CNN.
        act: activation of the refinement CNN.
        mask_margin: dilation of the reference mask that forms the search window, as a fraction of the search grid.
        scales: isotropic scale factors searched together with the angles of the last pass (the fine pass, or the
            coarse one when the fine pass is disabled), increasing and evenly spaced (e.g. ``(0.9, 0.95, 1.0, 1.05,
            1.1)``: magnification differs by several percent between visits); the winner is refined by parabolic
            interpolation like the angle. ``(1.0,)``: a rigid search (rotation and translation only).

    Raises:
        ValueError: for out-of-range arguments.

    Example::

        >>> stage = GlobalAlignment(search_size=32, num_rotations=36, refinement="none")
        >>> img = torch.rand(1, 1, 48, 48)
        >>> stage(img, img).shape
        torch.Size([1, 3, 3])
    """

    def __init__(
        self,
        search_size: int = 64,
        num_rotations: int = 72,
        max_rotation_deg: float = 180.0,
        refinement: str = "learned",
        exhaustive_search: bool = True,
        num_fine_rotations: int = 5,
        max_shift_fraction: float = 0.5,
        min_overlap: float = 0.3,
        refinement_features: int = 16,
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.2}),
        mask_margin: float = 0.1,
        scales: Sequence[float] = (1.0,),
    ) -> None:
        super().__init__()
        if int(search_size) < 8:
            raise ValueError(f"`search_size` must be >= 8, got {search_size}.")
        if int(num_rotations) < 1:
            raise ValueError(f"`num_rotations` must be >= 1, got {num_rotations}.")
        if not 0.0 < float(max_rotation_deg) <= 180.0:
            raise ValueError(f"`max_rotation_deg` must be in (0, 180], got {max_rotation_deg}.")
        if not 0.0 < float(max_shift_fraction) < 1.0:
            raise ValueError(f"`max_shift_fraction` must be in (0, 1), got {max_shift_fraction}.")
        if not 0.0 < float(min_overlap) <= 1.0:
            raise ValueError(f"`min_overlap` must be in (0, 1], got {min_overlap}.")
        self.refinement = look_up_option(refinement, _REFINEMENTS)
        self.search_size = int(search_size)
        self.num_rotations = int(num_rotations)
        self.max_rotation_deg = float(max_rotation_deg)
        self.exhaustive_search = bool(exhaustive_search)
        self.num_fine_rotations = int(num_fine_rotations)
        self.max_shift_fraction = float(max_shift_fraction)
        self.min_overlap = float(min_overlap)
        if not 0.0 <= float(mask_margin) < 0.5:
            raise ValueError(f"`mask_margin` must be in [0, 0.5), got {mask_margin}.")
        self.mask_margin = float(mask_margin)
        scale_list = [float(v) for v in scales]
        if not scale_list or min(scale_list) <= 0 or any(b <= a for a, b in zip(scale_list, scale_list[1:])):
            raise ValueError(f"`scales` must be increasing positive factors, got {tuple(scales)}.")
        self.num_scales = len(scale_list)
        # not persistent: weights saved without it load into a stage that searches scales, and vice versa
        self.register_buffer("scales", torch.tensor(scale_list, dtype=torch.float32), persistent=False)
        k = self.num_rotations
        if self.max_rotation_deg >= 180.0:
            self.circular = True
            step = 2.0 * math.pi / k
            angles = (torch.arange(k, dtype=torch.float64) - k // 2) * step
        else:
            self.circular = False
            max_rad = math.radians(self.max_rotation_deg)
            step = 2.0 * max_rad / (k - 1) if k > 1 else 2.0 * max_rad
            angles = torch.linspace(-max_rad, max_rad, k, dtype=torch.float64) if k > 1 else torch.zeros(1)
        self.angle_step = float(step)
        self.register_buffer("angles", angles.to(torch.float32), persistent=False)
        self.refinement_net: AffineRefinementNet | None = (
            AffineRefinementNet(2, refinement_features, act=act) if self.refinement == "learned" else None
        )

    def search_shape(self, height: int, width: int) -> tuple[int, int]:
        """Size ``(h, w)`` of the search grid for an ``(height, width)`` image (longer side ``search_size``)."""
        long_side = max(int(height), int(width))
        if long_side <= self.search_size:
            return int(height), int(width)
        scale = self.search_size / long_side
        return max(2, int(round(height * scale))), max(2, int(round(width * scale)))

    def prepare(self, image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """Channel-mean, area-downsample to ``shape`` and normalise each sample to zero mean, unit std.

        Args:
            image: ``(B, C, H, W)``.
            shape: ``(h, w)`` search grid.

        Returns:
            ``(B, 1, h, w)``.
        """
        x = image.mean(dim=1, keepdim=True)
        if x.shape[2] != shape[0] or x.shape[3] != shape[1]:
            x = F.interpolate(x, size=[shape[0], shape[1]], mode="area")
        flat = x.reshape(x.shape[0], -1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        std = flat.std(dim=1).view(-1, 1, 1, 1).clamp_min(1e-6)
        return (x - mean) / std

    def forward(
        self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Estimate the affine that maps reference-grid points to the floating image.

        Args:
            reference: ``(B, C, H, W)`` reference image.
            floating: ``(B, C, H, W)`` floating image.
            reference_mask: optional ``(B, 1, H, W)`` lung mask of the reference. When given, the search scores the
                correlation inside the mask dilated by ``mask_margin`` (the chest) only, so that collimator
                borders, burnt-in markers and the background, which differ between visits, cannot drive it.

        Returns:
            ``(B, 3, 3)`` matrix on the ``(H, W)`` grid; ``warp(floating, affine_to_ddf(A, (H, W)))`` is aligned
            with ``reference``.
        """
        self._check(reference, floating)
        h_big, w_big = int(reference.shape[2]), int(reference.shape[3])
        shape = self.search_shape(h_big, w_big)
        ref_s = self.prepare(reference, shape)
        flt_s = self.prepare(floating, shape)
        if self.exhaustive_search:
            with torch.no_grad():
                mat, _ = self._search(ref_s, flt_s, self.search_weight(reference_mask, shape))
        else:
            mat = torch.eye(3, dtype=ref_s.dtype, device=ref_s.device).unsqueeze(0).repeat(ref_s.shape[0], 1, 1)
        if self.refinement_net is not None:
            moved = warp(flt_s, affine_to_ddf(mat, shape), padding_mode="zeros")
            mat = torch.matmul(mat, self.refinement_net(torch.cat([ref_s, moved], dim=1)))
        return rescale_affine(mat, shape, (h_big, w_big), align_corners=False)

    @torch.no_grad()
    def search(
        self, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run only the exhaustive search (no learned refinement).

        Args:
            reference: ``(B, C, H, W)`` reference image.
            floating: ``(B, C, H, W)`` floating image.

        Returns:
            ``(matrix, score)``: ``(B, 3, 3)`` matrix on the ``(H, W)`` grid and ``(B,)`` best masked NCC in
            ``[-1, 1]`` (a confidence measure).
        """
        self._check(reference, floating)
        h_big, w_big = int(reference.shape[2]), int(reference.shape[3])
        shape = self.search_shape(h_big, w_big)
        weight = self.search_weight(reference_mask, shape)
        mat, score = self._search(self.prepare(reference, shape), self.prepare(floating, shape), weight)
        return rescale_affine(mat, shape, (h_big, w_big), align_corners=False), score

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _check(reference: torch.Tensor, floating: torch.Tensor) -> None:
        check_image(reference, "reference")
        check_image(floating, "floating")
        if reference.shape[0] != floating.shape[0] or reference.shape[2:] != floating.shape[2:]:
            raise ValueError(
                f"`reference` and `floating` must share batch and spatial size (B, C, H, W), got "
                f"{_shape_str(reference.shape)} and {_shape_str(floating.shape)}."
            )
        if min(reference.shape[2:]) < 4:
            raise ValueError(f"images must be at least 4 x 4 pixels, got {_shape_str(reference.shape[2:])}.")

    def search_weight(self, reference_mask: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor | None:
        """The reference window of the search: the mask at ``shape``, dilated by ``mask_margin`` of the grid.

        Returns ``None`` (the whole image) without a mask or when the mask is empty for every sample (under
        ``torch.export``, which cannot branch on values, an all-ones window then: the same search).
        """
        if reference_mask is None:
            return None
        window = chest_window(reference_mask, self.mask_margin, shape, min_radius=1, fill_empty=False)
        empty = window.flatten(1).sum(dim=1) == 0
        if not torch.compiler.is_compiling() and bool(empty.all()):  # torch.export (ONNX): no data-dependent branch
            return None
        return torch.where(empty.view(-1, 1, 1, 1), torch.ones_like(window), window)

    def _search(
        self, ref: torch.Tensor, flt: torch.Tensor, weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Search on the small grid. ``ref``, ``flt``: ``(B, 1, h, w)`` normalised. Returns ``(B, 3, 3)``, ``(B,)``."""
        bsz = ref.shape[0]
        coarse = self.angles.to(ref.dtype).unsqueeze(0).expand(bsz, -1)
        ncc, vals, idx = self._ncc_maps(ref, flt, coarse, weight)
        k_best = vals.argmax(dim=1)
        n_s = self.num_scales
        if self.num_fine_rotations > 1:
            centre = coarse.gather(1, k_best[:, None])
            offsets = torch.linspace(
                -0.5 * self.angle_step, 0.5 * self.angle_step, self.num_fine_rotations, dtype=ref.dtype,
                device=ref.device,
            )
            angles = centre + offsets.unsqueeze(0)
            step, circular = float(self.angle_step) / (self.num_fine_rotations - 1), False
            search_again = True
        else:
            angles, step, circular = coarse, self.angle_step, self.circular
            search_again = n_s > 1
        arange = torch.arange(bsz, device=ref.device)
        scale_grid = self.scales.to(ref.dtype)
        if search_again:  # the last pass: every angle x every scale (angle-major)
            cand_scales = scale_grid.repeat(angles.shape[1]).unsqueeze(0).expand(bsz, -1) if n_s > 1 else None
            ncc, vals, idx = self._ncc_maps(ref, flt, angles.repeat_interleave(n_s, dim=1), weight, cand_scales)
            k_best = vals.argmax(dim=1)
        else:
            n_s = 1
        grid = vals.view(bsz, -1, n_s)
        a_best = torch.div(k_best, n_s, rounding_mode="floor")
        s_best = k_best - a_best * n_s
        d_angle = _parabolic_offset(grid[arange, :, s_best], a_best, circular)
        theta_grid = angles[arange, a_best]
        theta = theta_grid + d_angle * step
        s_grid = scale_grid[s_best] if n_s > 1 else torch.ones_like(theta)
        scale = s_grid
        if n_s > 2:
            d_scale = _parabolic_offset(grid[arange, a_best, :], s_best, False)
            scale = s_grid + d_scale * (scale_grid[-1] - scale_grid[0]) / float(n_s - 1)
        score = vals[arange, k_best]
        # sub-pixel shift of the winning map
        best_map = ncc[arange, k_best]  # (B, Lh, Lw)
        len_h, len_w = best_map.shape[1], best_map.shape[2]
        flat_idx = idx[arange, k_best]
        i = torch.div(flat_idx, len_w, rounding_mode="floor")
        j = flat_idx - i * len_w
        rows_of_i = best_map[arange, :, j]  # (B, Lh)
        cols_of_j = best_map[arange, i, :]  # (B, Lw)
        d_r = _parabolic_offset(rows_of_i, i, True)
        d_c = _parabolic_offset(cols_of_j, j, True)
        lag_r = torch.where(i > len_h // 2, i - len_h, i).to(ref.dtype) + d_r
        lag_c = torch.where(j > len_w // 2, j - len_w, j).to(ref.dtype) + d_c
        # ref(p) ~ G(p + u) with G(q) = flt(s R (q - c) + c)  =>  A = [s R, s R u]
        u = torch.stack((lag_r, lag_c), dim=-1)
        rot = _rotation_matrix(theta_grid, None, s_grid)[:, :2, :2]
        t = torch.einsum("bij,bj->bi", rot, u)
        return _rotation_matrix(theta, t, scale), score

    def _ncc_maps(
        self, ref: torch.Tensor, flt: torch.Tensor, angles: torch.Tensor, weight: torch.Tensor | None = None,
        scales: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked NCC of ``ref`` with ``flt`` rotated by each of ``angles`` ``(B, K)`` (and scaled by ``scales``
        ``(B, K)`` when given), for every allowed shift.

        Returns ``(ncc, best_value, best_flat_index)`` of shapes ``(B, K, Lh, Lw)``, ``(B, K)``, ``(B, K)``;
        index ``(i, j)`` of a map is the shift ``u = (i, j)`` modulo ``(Lh, Lw)`` with
        ``ncc(u) = NCC_overlap(ref(p), G(p + u))``.
        """
        bsz, k = angles.shape
        h, w = int(ref.shape[2]), int(ref.shape[3])
        s_r = min(h - 1, max(1, int(round(self.max_shift_fraction * h))))
        s_c = min(w - 1, max(1, int(round(self.max_shift_fraction * w))))
        size = [h + s_r, w + s_c]  # non-circular for |lag| <= s: aliases of lag u land at |u +- L| >= h
        mats = _rotation_matrix(angles.reshape(-1), None, None if scales is None else scales.reshape(-1))
        ddf = affine_to_ddf(mats, (h, w))
        flt_rep = flt.repeat_interleave(k, dim=0)
        rotated = warp(flt_rep, ddf, padding_mode="zeros")
        valid_f = (warp(torch.ones_like(flt_rep), ddf, padding_mode="zeros") > 1.0 - 1e-3).to(ref.dtype)
        g = (rotated * valid_f).view(bsz, k, h, w)
        valid_f = valid_f.view(bsz, k, h, w)

        win = torch.ones_like(ref[:1]) if weight is None else weight.to(ref.dtype)  # reference window (0/1)
        ref_sp, ref2_sp = _spec(ref * win, size), _spec(ref * ref * win, size)
        ones_sp = _spec(win, size)
        g_sp, g2_sp, m_sp = _spec(g, size), _spec(g * g, size), _spec(valid_f, size)
        n = _corr(ones_sp, m_sp, size)
        s_ref = _corr(ref_sp, m_sp, size)
        s_ref2 = _corr(ref2_sp, m_sp, size)
        s_flt = _corr(ones_sp, g_sp, size)
        s_flt2 = _corr(ones_sp, g2_sp, size)
        s_cross = _corr(ref_sp, g_sp, size)
        n_safe = n.clamp_min(1.0)
        var_r = s_ref2 - s_ref * s_ref / n_safe
        var_f = s_flt2 - s_flt * s_flt / n_safe
        num = s_cross - s_ref * s_flt / n_safe
        ncc = num / torch.sqrt((var_r * var_f).clamp_min(1e-12))
        lag_r = torch.arange(size[0], device=ref.device)
        lag_c = torch.arange(size[1], device=ref.device)
        lag_r = torch.minimum(lag_r, size[0] - lag_r)
        lag_c = torch.minimum(lag_c, size[1] - lag_c)
        window = (lag_r[:, None] <= s_r) & (lag_c[None, :] <= s_c)
        area = win.flatten(1).sum(dim=1).view(-1, 1, 1, 1)
        valid = window & (n >= self.min_overlap * area) & (var_r > 1e-3 * n_safe) & (var_f > 1e-3 * n_safe)
        ncc = torch.where(valid, ncc.clamp(-1.0, 1.0), torch.full_like(ncc, -math.inf))
        best_val, best_idx = ncc.reshape(bsz, k, -1).max(dim=-1)
        return ncc, best_val, best_idx


def _spec(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Zero-padded 2-D real FFT of ``(..., h, w)`` at ``size``."""
    return torch.fft.rfft2(x, s=size)


def _corr(a: torch.Tensor, b: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Cross-correlation ``sum_p a(p) b(p + u)`` of two :func:`_spec` spectra, for every lag ``u``."""
    return torch.fft.irfft2(torch.conj(a) * b, s=size)


def _parabolic_offset(values: torch.Tensor, index: torch.Tensor, circular: bool) -> torch.Tensor:
    """Sub-sample peak offset in ``[-0.5, 0.5]`` from a parabola through ``values[index - 1 : index + 2]``.

    ``values``: ``(B, K)``; ``index``: ``(B,)``. Returns 0 where a neighbour is missing or not finite.
    """
    k = values.shape[1]
    arange = torch.arange(values.shape[0], device=values.device)
    if circular:
        lo_i, hi_i = (index - 1) % k, (index + 1) % k
        inside = torch.ones_like(index, dtype=torch.bool)
    else:
        lo_i, hi_i = (index - 1).clamp_min(0), (index + 1).clamp_max(k - 1)
        inside = (index > 0) & (index < k - 1)
    y0, ym, yp = values[arange, index], values[arange, lo_i], values[arange, hi_i]
    denom = ym - 2.0 * y0 + yp
    ok = inside & torch.isfinite(ym) & torch.isfinite(yp) & (denom < 0)
    offset = 0.5 * (ym - yp) / torch.where(ok, denom, torch.full_like(denom, -1.0))
    return torch.where(ok, offset.clamp(-0.5, 0.5), torch.zeros_like(offset))
