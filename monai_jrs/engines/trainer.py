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
"""Ignite trainer for the JRS GAN: generators G and F, discriminators D_ref and D_flt (paper Eq. 6-7)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from monai.engines import Trainer
from monai.engines.utils import default_metric_cmp_fn
from monai.utils import IgniteInfo, min_version, optional_import

from monai_jrs.engines.utils import JRSPrepareBatch
from monai_jrs.utils.conventions import invert_ddf, warp
from monai_jrs.utils.enums import JRSKeys

if TYPE_CHECKING:
    from ignite.engine import EventEnum
    from ignite.metrics import Metric
else:
    EventEnum, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "EventEnum", as_type="base"
    )
    Metric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Metric", as_type="base")

logger = logging.getLogger(__name__)

__all__ = ["JRSTrainer", "JRSIterationEvents", "GeneratorOutput", "run_generator", "run_generator_on_inputs"]


class JRSIterationEvents(EventEnum):
    """Events fired inside one :class:`JRSTrainer` iteration (like MONAI's ``AdversarialIterationEvents``)."""

    GENERATOR_COMPLETED = "jrs_generator_completed"
    DISCRIMINATOR_COMPLETED = "jrs_discriminator_completed"


GeneratorOutput = dict  # keys: JRSKeys.REGISTERED, REGISTERED_MASK_PROB, REGISTERED_MASK, DDF

#: padding of the warp that gives the clean registered image with randomised inputs (as JRSGenerator's own warp)
REGISTERED_PADDING_MODE = "border"


def run_generator(
    net: torch.nn.Module, reference: torch.Tensor, floating: torch.Tensor, reference_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Run a JRS generator and name its outputs.

    Args:
        net: generator returning ``(registered, registered_mask_prob, registered_mask, ddf)``.
        reference: ``(B, 1, H, W)`` reference image.
        floating: ``(B, 1, H, W)`` floating image.
        reference_mask: ``(B, 1, H, W)`` lung mask of the reference.

    Returns:
        dict keyed by :class:`~monai_jrs.utils.enums.JRSKeys` (``registered``, ``registered_mask_prob``,
        ``registered_mask``, ``ddf``).
    """
    from monai_jrs.networks.nets import JRSGenerator

    out = net(reference, floating, reference_mask)
    if isinstance(out, dict):
        return out
    if not isinstance(out, (tuple, list)):
        raise ValueError(f"a JRS generator must return a 4-tuple or a dict of named outputs, got {type(out).__name__}.")
    try:
        return JRSGenerator.outputs_to_dict(out)
    except ValueError as e:
        raise ValueError(f"a JRS generator must return its named outputs: {e}") from e


def run_generator_on_inputs(
    net: torch.nn.Module,
    reference: torch.Tensor,
    floating: torch.Tensor,
    reference_mask: torch.Tensor,
    reference_input: torch.Tensor | None = None,
    floating_input: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Run a JRS generator on (appearance-randomised) inputs and warp the clean floating image with its DDF.

    Without inputs (both None) this is :func:`run_generator` on the clean images.

    Args:
        net: generator, see :func:`run_generator`.
        reference: ``(B, 1, H, W)`` clean reference image.
        floating: ``(B, 1, H, W)`` clean floating image.
        reference_mask: ``(B, 1, H, W)`` lung mask of the reference.
        reference_input: ``(B, 1, H, W)`` image the network sees instead of ``reference``, or None (``reference``).
        floating_input: ``(B, 1, H, W)`` image the network sees instead of ``floating``, or None (``floating``).

    Returns:
        the outputs of :func:`run_generator`, where ``registered`` is ``warp(floating, ddf)`` (border padding, as
        :class:`~monai_jrs.networks.nets.JRSGenerator`) and ``registered_input`` the network's own warped input.

    Raises:
        ValueError: when an input does not have the shape of its clean image.
    """
    if reference_input is None and floating_input is None:
        return run_generator(net, reference, floating, reference_mask)
    for name, clean, given in (("reference", reference, reference_input), ("floating", floating, floating_input)):
        if given is not None and given.shape != clean.shape:
            raise ValueError(f"`{name}_input` must have the shape of `{name}` {tuple(clean.shape)}, "
                             f"got {tuple(given.shape)}.")
    out = run_generator(
        net,
        reference if reference_input is None else reference_input,
        floating if floating_input is None else floating_input,
        reference_mask,
    )
    out[JRSKeys.REGISTERED_INPUT] = out[JRSKeys.REGISTERED]
    out[JRSKeys.REGISTERED] = warp(floating, out[JRSKeys.DDF], padding_mode=REGISTERED_PADDING_MODE)
    return out


class JRSTrainer(Trainer):
    """Joint registration and segmentation GAN trainer (Mahapatra et al., Eq. 6-7).

    One iteration:

    1. **Generators** (one optimizer step for G and F together):
       ``G(I_ref, I_flt, I_ref_seg)`` registers the floating image onto the reference grid and
       ``F(I_flt, I_ref, I_flt_seg)`` registers the reference onto the floating grid. Each direction is scored by
       ``generator_loss`` (content + adversarial + log Dice + smoothness) against its discriminator; the DDF
       consistency term scores G only, whose applied field ``ddf_applied`` is known on the reference grid (F would
       need its inverse). ``cycle_loss`` scores ``F(G(x)) ~ x`` and ``G(F(y)) ~ y`` (lambda inside the loss).
       During the first ``warmup_iterations`` only G is trained, with ``warmup_loss`` (the paper initialises G with
       MSE): by default MSE(registered, reference) + MSE(ddf, ddf_applied) / ddf_scale**2.
    2. **Discriminators** (``d_train_steps`` steps): ``D_ref`` separates real references from G's registered
       images and ``D_flt`` separates real floating images from F's outputs.

    ``reverse_generator=None`` disables F and the cycle term; ``disc_reference=None`` disables the adversarial
    terms (the generator loss then receives ``None`` as discriminator output).

    **Appearance-randomised inputs** (SynthMorph-style training, e.g. by
    :class:`~monai_jrs.transforms.RandSynthAppearanced`): when the batch holds ``reference_input`` and/or
    ``floating_input`` (``(B, 1, H, W)``, :attr:`JRSKeys.REFERENCE_INPUT` / :attr:`JRSKeys.FLOATING_INPUT`), the
    generators run on them (a missing one is replaced by its clean image): ``G(reference_input, floating_input,
    reference_mask)`` and ``F(floating_input, reference_input, floating_mask)``, while every loss, the warm-up loss
    and the discriminators see the **clean** images: the registered image they score is the clean floating image
    warped by the predicted DDF, ``warp(floating, ddf, padding_mode="border")`` (the warp
    :class:`~monai_jrs.networks.nets.JRSGenerator` applies to its own input,
    :func:`~monai_jrs.utils.conventions.warp`), and the references are the clean ones. The registered masks are the
    generators' own (predicted on the reference grid of that same DDF), so they stay consistent with the clean
    registered image; the floating mask carried from the reference mask (when the batch has none) uses G's DDF as
    before. In the cycle, F and G get the randomised images too: ``F(floating_input, G's warped floating_input)`` and
    ``G(reference_input, F's warped reference_input)``, and the cycle loss compares the clean images warped by the
    composed fields with the clean ``floating`` / ``reference``. The generator's warped input is kept as
    ``registered_input`` (:attr:`JRSKeys.REGISTERED_INPUT`) in the outputs. Without these keys nothing changes
    (the iteration is the same computation as before they existed).

    Args:
        device: device to run on.
        max_epochs: number of epochs.
        train_data_loader: loader of dictionaries with ``reference``, ``floating``, ``reference_mask``
            (``(B, 1, H, W)``) and optionally ``floating_mask``, ``ddf_applied`` (``(B, 2, H, W)``),
            ``reference_input`` and ``floating_input`` (appearance-randomised network inputs, see above).
        generator: G.
        g_optimizer: optimizer over the parameters of G (and F when given).
        generator_loss: callable ``(outputs: dict, d_output: Tensor | None) -> (total, terms)`` where ``outputs``
            holds ``reference``, ``reference_mask``, ``registered``, ``registered_mask_prob``, ``ddf`` and
            optionally ``ddf_applied``; e.g. :class:`monai_jrs.losses.JRSGeneratorLoss`.
        reverse_generator: F, or None.
        disc_reference: D_ref, or None.
        disc_floating: D_flt, or None (ignored without F or without D_ref).
        d_optimizer: optimizer over the discriminators' parameters (required with discriminators).
        d_loss_function: callable ``(real_output, fake_output) -> Tensor``.
        cycle_loss: callable ``(fgx, x, gfy, y) -> Tensor`` (e.g. :class:`monai_jrs.losses.CycleConsistencyLoss`).
        warmup_iterations: iterations at the start trained with ``warmup_loss`` only (G only).
        warmup_loss: callable ``(outputs: dict) -> Tensor``; default: see above.
        ddf_scale: pixel scale of the default warm-up DDF term.
        clip_grad_norm: max gradient norm for generator and discriminator steps; None disables clipping.
        d_train_steps: discriminator steps per iteration.
        epoch_length, non_blocking, postprocessing, key_train_metric, additional_metrics, metric_cmp_fn,
        train_handlers, amp, event_names, event_to_attr, decollate, to_kwargs, amp_kwargs: as in
            :class:`monai.engines.Trainer` / ``SupervisedTrainer``. With ``amp=True`` the forward passes run
            under ``torch.autocast`` (float16 + GradScaler on CUDA, bfloat16 on CPU).
        prepare_batch: defaults to :class:`~monai_jrs.engines.utils.JRSPrepareBatch`.

    The iteration output (``engine.state.output``) holds ``loss`` (generator total), ``g_loss``, ``d_loss``,
    every named loss term as a float (for StatsHandler/TensorBoard), and the tensors of the last batch
    (``reference``, ``floating``, ``registered``, masks, ``ddf``; with randomised inputs also ``reference_input``,
    ``floating_input`` and ``registered_input``).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Any,
        generator: torch.nn.Module,
        g_optimizer: torch.optim.Optimizer,
        generator_loss: Callable,
        reverse_generator: torch.nn.Module | None = None,
        disc_reference: torch.nn.Module | None = None,
        disc_floating: torch.nn.Module | None = None,
        d_optimizer: torch.optim.Optimizer | None = None,
        d_loss_function: Callable | None = None,
        cycle_loss: Callable | None = None,
        warmup_iterations: int = 0,
        warmup_loss: Callable | None = None,
        ddf_scale: float = 4.0,
        clip_grad_norm: float | None = 10.0,
        d_train_steps: int = 1,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = JRSPrepareBatch(),
        postprocessing: Callable | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
    ) -> None:
        if disc_reference is not None and (d_optimizer is None or d_loss_function is None):
            raise ValueError("with discriminators, `d_optimizer` and `d_loss_function` are required, got None.")
        if warmup_iterations < 0:
            raise ValueError(f"`warmup_iterations` must be >= 0, got {warmup_iterations}.")
        if d_train_steps < 1:
            raise ValueError(f"`d_train_steps` must be >= 1, got {d_train_steps}.")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            handlers=train_handlers,
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.register_events(*JRSIterationEvents)
        self.generator = generator
        self.reverse_generator = reverse_generator
        self.disc_reference = disc_reference
        # D_flt needs F to score and D_ref to be trained with (``use_d``): without either it is ignored
        self.disc_floating = disc_floating if (reverse_generator is not None and disc_reference is not None) else None
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.generator_loss = generator_loss
        self.d_loss_function = d_loss_function
        self.cycle_loss = cycle_loss
        self.warmup_iterations = int(warmup_iterations)
        self.warmup_loss = warmup_loss
        self.ddf_scale = float(ddf_scale)
        self.clip_grad_norm = clip_grad_norm
        self.d_train_steps = int(d_train_steps)
        dev = torch.device(device)
        self._autocast_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
        self.g_scaler = torch.amp.GradScaler("cuda") if (amp and dev.type == "cuda") else None
        self.d_scaler = torch.amp.GradScaler("cuda") if (amp and dev.type == "cuda") else None

    # ----------------------------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.state.device.type, dtype=self._autocast_dtype, enabled=bool(self.amp))

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list, scaler) -> None:
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

    def _default_warmup_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = F.mse_loss(out[JRSKeys.REGISTERED], out[JRSKeys.REFERENCE])
        if JRSKeys.DDF_APPLIED in out:
            loss = loss + F.mse_loss(out[JRSKeys.DDF], out[JRSKeys.DDF_APPLIED]) / self.ddf_scale**2
        return loss

    @staticmethod
    def _networks(*nets: torch.nn.Module | None) -> list[torch.nn.Module]:
        return [n for n in nets if n is not None]

    def _iteration(self, engine: JRSTrainer, batchdata: dict[str, torch.Tensor]) -> dict[str, Any]:
        """One GAN iteration (see class docstring); returns the dict stored in ``engine.state.output``."""
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        ref, flt, ref_mask = batch[JRSKeys.REFERENCE], batch[JRSKeys.FLOATING], batch[JRSKeys.REFERENCE_MASK]
        flt_mask = batch.get(JRSKeys.FLOATING_MASK)
        ddf_applied = batch.get(JRSKeys.DDF_APPLIED)
        # appearance-randomised network inputs (None: the clean images); the losses always see the clean images
        ref_in, flt_in = batch.get(JRSKeys.REFERENCE_INPUT), batch.get(JRSKeys.FLOATING_INPUT)
        with_inputs = ref_in is not None or flt_in is not None
        if with_inputs:
            ref_in = ref if ref_in is None else ref_in
            flt_in = flt if flt_in is None else flt_in
        warming_up = engine.state.iteration <= engine.warmup_iterations
        use_f = engine.reverse_generator is not None and not warming_up
        use_d = engine.disc_reference is not None and not warming_up

        for net in engine._networks(engine.generator, engine.reverse_generator):
            net.train()
        terms: dict[str, float] = {}
        with engine._autocast():
            g_out = run_generator_on_inputs(engine.generator, ref, flt, ref_mask, ref_in, flt_in)
            g_out.update({JRSKeys.REFERENCE: ref, JRSKeys.REFERENCE_MASK: ref_mask})
            if ddf_applied is not None:
                g_out[JRSKeys.DDF_APPLIED] = ddf_applied
            if warming_up:
                g_total = (engine.warmup_loss or engine._default_warmup_loss)(g_out)
                terms["warmup_mse"] = float(g_total.detach())
            else:
                d_fake = engine.disc_reference(g_out[JRSKeys.REGISTERED]) if use_d else None
                g_total, g_terms = engine.generator_loss(g_out, d_fake)
                terms.update({f"g_{k}": _as_float(v) for k, v in g_terms.items()})
            f_out = None
            if use_f:
                if flt_mask is None:  # no ground truth: carry the reference mask onto the floating grid
                    flt_mask = (warp(ref_mask, invert_ddf(g_out[JRSKeys.DDF].detach()), mode="bilinear") > 0.5).float()
                f_out = run_generator_on_inputs(engine.reverse_generator, flt, ref, flt_mask, flt_in, ref_in)
                f_out.update({JRSKeys.REFERENCE: flt, JRSKeys.REFERENCE_MASK: flt_mask})
                d_fake_f = engine.disc_floating(f_out[JRSKeys.REGISTERED]) if engine.disc_floating is not None else None
                f_total, f_terms = engine.generator_loss(f_out, d_fake_f)
                terms.update({f"f_{k}": _as_float(v) for k, v in f_terms.items()})
                g_total = g_total + f_total
                if engine.cycle_loss is not None:
                    # x -> G(x) -> F(G(x)) ~ x   and   y -> F(y) -> G(F(y)) ~ y
                    # with randomised inputs the networks see G's / F's warped inputs, the loss the clean warps
                    fgx = run_generator_on_inputs(
                        engine.reverse_generator, flt, g_out[JRSKeys.REGISTERED], flt_mask,
                        flt_in, g_out.get(JRSKeys.REGISTERED_INPUT),
                    )
                    gfy = run_generator_on_inputs(
                        engine.generator, ref, f_out[JRSKeys.REGISTERED], ref_mask,
                        ref_in, f_out.get(JRSKeys.REGISTERED_INPUT),
                    )
                    cyc = engine.cycle_loss(fgx[JRSKeys.REGISTERED], flt, gfy[JRSKeys.REGISTERED], ref)
                    terms["cycle"] = float(cyc.detach())
                    g_total = g_total + cyc
        g_params = [p for n in engine._networks(engine.generator, engine.reverse_generator) for p in n.parameters()]
        engine._step(g_total, engine.g_optimizer, g_params, engine.g_scaler)
        engine.fire_event(JRSIterationEvents.GENERATOR_COMPLETED)

        d_total = torch.zeros((), device=ref.device)
        if use_d:
            discs = engine._networks(engine.disc_reference, engine.disc_floating)
            d_params = [p for d in discs for p in d.parameters()]
            for d in discs:
                d.train()
            for _ in range(engine.d_train_steps):
                with engine._autocast():
                    d_total = engine.d_loss_function(
                        engine.disc_reference(ref), engine.disc_reference(g_out[JRSKeys.REGISTERED].detach())
                    )
                    if f_out is not None and engine.disc_floating is not None:
                        d_total = d_total + engine.d_loss_function(
                            engine.disc_floating(flt), engine.disc_floating(f_out[JRSKeys.REGISTERED].detach())
                        )
                engine._step(d_total, engine.d_optimizer, d_params, engine.d_scaler)
            engine.fire_event(JRSIterationEvents.DISCRIMINATOR_COMPLETED)

        output: dict[str, Any] = {
            "loss": float(g_total.detach()),
            "g_loss": float(g_total.detach()),
            "d_loss": float(d_total.detach()),
            "warmup": warming_up,
            **terms,
            JRSKeys.REFERENCE: ref,
            JRSKeys.FLOATING: flt,
            JRSKeys.REFERENCE_MASK: ref_mask,
        }
        output.update({k: v.detach() for k, v in g_out.items() if isinstance(v, torch.Tensor)})
        if flt_mask is not None:
            output[JRSKeys.FLOATING_MASK] = flt_mask
        if with_inputs:
            output[JRSKeys.REFERENCE_INPUT] = ref_in
            output[JRSKeys.FLOATING_INPUT] = flt_in
        return output


def _as_float(v: Any) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
