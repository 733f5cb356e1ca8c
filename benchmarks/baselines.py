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
"""Learned baselines of the Table-1 report, trained with the same data and budget as the shipped JRS model.

Both baselines read their training batches from the bundle's own ``train#dataloader`` (``bundle/configs/train.json``:
same patients, same synthetic deformations of both protocols, same appearance changes, same batch size) and train for
the same number of epochs and iterations as ``train#trainer`` (30 x 20 iterations of 2 pairs by default):

- ``voxelmorph``: MONAI's :class:`~monai.networks.nets.VoxelMorph` (2D, diffeomorphic, 7 scaling-and-squaring
  steps) on ``(floating, reference)``, trained semi-supervised as in Balakrishnan et al. (TMI 2019): local normalised
  cross-correlation + diffusion regulariser + Dice of the warped floating mask. It has no affine stage, as in the
  original.
- ``unet``: MONAI's :class:`~monai.networks.nets.UNet` segmenting the lung fields of the floating image (Dice + BCE),
  the segmentation baseline of the floating-mask Dice row.

JRS-NoSeg (the ablation) is the bundle itself with the segmentation term switched off; its command is in
``docs/evaluation.md``. Run::

    python benchmarks/baselines.py --dataset_dir DIR --output benchmarks/weights [--models voxelmorph unet]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
import torch.nn as nn

from monai_jrs.utils.conventions import warp

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = REPO / "bundle" / "configs" / "train.json"


def voxelmorph_network() -> nn.Module:
    """VoxelMorph-2 (``vxm`` encoder 16-32-32-32, decoder 32-32-32-32-32-16-16) as a 2D MONAI network.

    Returns:
        ``VoxelMorph`` taking ``(moving, fixed)`` ``(B, 1, H, W)`` images and returning ``(warped, ddf)`` with a
        ``(B, 2, H, W)`` DDF in pixels, channel 0 along rows: the same convention as ``monai_jrs``.
    """
    from monai.networks.nets import VoxelMorph, VoxelMorphUNet

    backbone = VoxelMorphUNet(
        spatial_dims=2,
        in_channels=2,
        unet_out_channels=32,
        channels=(16, 32, 32, 32, 32, 32),
        final_conv_channels=(16, 16),
    )
    return VoxelMorph(backbone=backbone, integration_steps=7, half_res=False, spatial_dims=2)


def unet_network() -> nn.Module:
    """Lung-field segmentation UNet (MONAI ``UNet``, 5 levels 16-256, 2 residual units per level).

    Returns:
        network mapping a ``(B, 1, H, W)`` radiograph to ``(B, 1, H, W)`` logits.
    """
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
                num_res_units=2)


def _training_setup(dataset_dir: str, device: torch.device, seed: int, paper_protocol_weight: float | None = None,
                    image_size: int | None = None) -> tuple[object, int, float]:
    """The bundle's training dataloader, epoch count and learning rate (optionally another protocol mix or size)."""
    from monai.bundle import ConfigParser
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    parser = ConfigParser()
    parser.read_config(str(TRAIN_CONFIG))
    parser["dataset_dir"] = str(dataset_dir)
    parser["device"] = f"$torch.device('{device}')"
    if paper_protocol_weight is not None:
        parser["paper_protocol_weight"] = float(paper_protocol_weight)
    if image_size is not None:
        parser["image_size"] = int(image_size)
    loader = parser.get_parsed_content("train#dataloader")
    return loader, int(parser["train"]["trainer"]["max_epochs"]), float(parser["learning_rate"])


def train_voxelmorph(dataset_dir: str, output: Path, device: torch.device, seed: int = 0,
                     max_epochs: int | None = None, paper_protocol_weight: float | None = None,
                     tag: str = "", image_size: int | None = None) -> Path:
    """Train the VoxelMorph baseline; save ``output/voxelmorph{tag}.pt`` (``{"model": state_dict}``)."""
    from monai.losses import DiceLoss, DiffusionLoss, LocalNormalizedCrossCorrelationLoss

    loader, epochs, lr = _training_setup(dataset_dir, device, seed, paper_protocol_weight, image_size)
    epochs = max_epochs or epochs
    net = voxelmorph_network().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    lncc = LocalNormalizedCrossCorrelationLoss(spatial_dims=2, kernel_size=9)
    smooth, dice = DiffusionLoss(), DiceLoss()
    return _train(net, opt, loader, epochs, output / f"voxelmorph{tag}.pt", device, lambda b: _vxm_loss(net, b, lncc, smooth, dice))


def _vxm_loss(net, batch, lncc, smooth, dice) -> torch.Tensor:
    ref, flt = batch["reference"], batch["floating"]
    warped, ddf = net(flt, ref)
    warped_mask = warp(batch["floating_mask"].float(), ddf, padding_mode="zeros")
    return lncc(warped, ref) + 1.0 * smooth(ddf) + 1.0 * dice(warped_mask, batch["reference_mask"].float())


def train_unet(dataset_dir: str, output: Path, device: torch.device, seed: int = 0,
               max_epochs: int | None = None, paper_protocol_weight: float | None = None, tag: str = "",
               image_size: int | None = None) -> Path:
    """Train the UNet segmentation baseline on the floating images; save ``output/unet{tag}.pt``."""
    from monai.losses import DiceCELoss

    loader, epochs, lr = _training_setup(dataset_dir, device, seed, paper_protocol_weight, image_size)
    epochs = max_epochs or epochs
    net = unet_network().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss = DiceCELoss(sigmoid=True)

    def step(batch):
        # both images of each pair: the floating one carries the appearance changes, the reference one does not
        x = torch.cat([batch["floating"], batch["reference"]])
        y = torch.cat([batch["floating_mask"], batch["reference_mask"]]).float()
        return loss(net(x), y)

    return _train(net, opt, loader, epochs, output / f"unet{tag}.pt", device, step)


def _train(net, opt, loader, epochs: int, path: Path, device: torch.device, loss_fn) -> Path:
    t0 = time.perf_counter()
    net.train()
    for epoch in range(epochs):
        total, n = 0.0, 0
        for batch in loader:
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        logger.info("%s epoch %d/%d loss %.4f (%.0f s)", path.stem, epoch + 1, epochs, total / max(n, 1),
                    time.perf_counter() - t0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict(), "epochs": epochs, "train_seconds": time.perf_counter() - t0}, path)
    logger.info("saved %s after %.0f s", path, time.perf_counter() - t0)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset_dir", required=True, help="embedded dataset folder (python -m monai_jrs.data.embedded)")
    ap.add_argument("--output", default=str(REPO / "benchmarks" / "weights"))
    ap.add_argument("--models", nargs="+", default=["voxelmorph", "unet"], choices=["voxelmorph", "unet"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max_epochs", type=int, default=None, help="default: the bundle's train#trainer#max_epochs")
    ap.add_argument("--paper_protocol_weight", type=float, default=None,
                    help="share of paper-protocol pairs (default: the bundle's, 0.5); 0 trains on follow-ups only")
    ap.add_argument("--tag", default="", help="suffix of the saved file names")
    ap.add_argument("--image_size", type=int, default=None, help="network grid (default: the bundle's, 256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for name in args.models:
        fn = {"voxelmorph": train_voxelmorph, "unet": train_unet}[name]
        fn(args.dataset_dir, Path(args.output), device, seed=args.seed, max_epochs=args.max_epochs,
           paper_protocol_weight=args.paper_protocol_weight, tag=args.tag, image_size=args.image_size)


if __name__ == "__main__":
    main()
