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
"""Frozen VGG16 convolutional feature extractor in pure torch (no torchvision), loading torchvision's weights file.

The layer indices are exactly those of ``torchvision.models.vgg16().features`` so that the ImageNet state dict
``vgg16-397923af.pth`` (keys ``features.{i}.weight`` / ``features.{i}.bias``) loads with strict key checking.
Weights are never downloaded: they are read from a local file (see :class:`VGG16Features`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
import torch.nn as nn

__all__ = ["VGG16Features", "VGG16_WEIGHTS_ENV", "VGG16_WEIGHTS_FILENAME", "VGG16_CONV_INDICES", "find_vgg16_weights"]

logger = logging.getLogger(__name__)

#: environment variable that may point at a local copy of torchvision's VGG16 ImageNet weights.
VGG16_WEIGHTS_ENV = "MONAI_JRS_VGG16_WEIGHTS"
#: file name of torchvision's VGG16 ImageNet weights (as cached by ``torch.hub`` under ``<hub dir>/checkpoints``).
VGG16_WEIGHTS_FILENAME = "vgg16-397923af.pth"
#: torchvision's "D" configuration: ints are 3x3 conv widths, "M" is a 2x2 max-pool.
_VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
#: indices of the 13 conv layers inside ``features`` (each followed by its ReLU at index + 1).
VGG16_CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def find_vgg16_weights(weights_path: str | os.PathLike | None = None) -> str:
    """Locate a local copy of torchvision's VGG16 ImageNet weights; never downloads.

    Lookup order: ``weights_path`` (if given it must exist: a wrong explicit path is an error, it is never replaced
    by another file), then the environment variable ``MONAI_JRS_VGG16_WEIGHTS``, then
    ``torch.hub.get_dir()/checkpoints/vgg16-397923af.pth`` (torchvision's download cache).

    Args:
        weights_path: explicit path to the ``.pth`` state dict, or ``None``.

    Returns:
        the path of the first existing file.

    Raises:
        FileNotFoundError: when no file exists; the message lists every path tried and how to provide the file.
    """
    tried: list[str] = []
    if weights_path is not None:
        path = os.path.expanduser(os.fspath(weights_path))
        if os.path.isfile(path):
            return path
        raise FileNotFoundError(
            f"VGG16 weights file given as weights_path={path!r} does not exist. " + _how_to_provide_weights()
        )
    env_path = os.environ.get(VGG16_WEIGHTS_ENV, "")
    if env_path:
        env_path = os.path.expanduser(env_path)
        if os.path.isfile(env_path):
            return env_path
        tried.append(f"${VGG16_WEIGHTS_ENV}={env_path!r}")
        logger.warning(f"${VGG16_WEIGHTS_ENV} points at {env_path!r}, which does not exist; trying the torch hub cache.")
    hub_path = os.path.join(torch.hub.get_dir(), "checkpoints", VGG16_WEIGHTS_FILENAME)
    if os.path.isfile(hub_path):
        return hub_path
    tried.append(f"torch hub cache {hub_path!r}")
    if not env_path:
        tried.insert(0, f"${VGG16_WEIGHTS_ENV} (not set)")
    raise FileNotFoundError(
        "VGG16 ImageNet weights are needed (pretrained=True) but were not found; paths tried: "
        + "; ".join(tried)
        + ". "
        + _how_to_provide_weights()
    )


class VGG16Features(nn.Module):
    """The 13 convolutional layers of VGG16 (Simonyan & Zisserman), frozen, returning every post-ReLU feature map.

    The module tree mirrors ``torchvision.models.vgg16().features`` index for index (conv layers at
    ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}``, ReLU after each, max-pools at 4, 9, 16, 23, 30), so
    torchvision's ``vgg16-397923af.pth`` loads with strict key checking on ``features.*`` (``classifier.*`` keys are
    ignored). The network is frozen (``requires_grad=False``) and stays in eval mode even when ``.train()`` is
    called; gradients still flow to the *input*, so it can be used inside a loss.

    Weights are never downloaded. Lookup order: ``weights_path``, then ``$MONAI_JRS_VGG16_WEIGHTS``, then
    ``torch.hub.get_dir()/checkpoints/vgg16-397923af.pth``. With ``pretrained=True`` and no file, construction raises
    ``FileNotFoundError``; random weights are used only with ``pretrained=False`` (tests, ablations), with a warning.

    Args:
        weights_path: explicit path of a torchvision-layout VGG16 state dict (``features.{i}.weight/bias``; a dict of
            ``features`` keys without the prefix is accepted too). Implies ``pretrained=True`` semantics.
        pretrained: load ImageNet weights (required for a meaningful perceptual loss). ``False``: random init.
        in_channels: 1 (grey images, repeated to 3 channels) or 3.
        imagenet_normalize: subtract the ImageNet mean and divide by its std; inputs are assumed to be in [0, 1].

    Raises:
        FileNotFoundError: ``pretrained=True`` (or ``weights_path`` given) and no weights file exists.
        ValueError: ``in_channels`` not in {1, 3}, or the weights file does not match VGG16's layout.

    Example::

        vgg = VGG16Features(pretrained=False)
        feats = vgg(torch.rand(2, 1, 32, 32))  # 13 tensors, feats[0]: (2, 64, 32, 32), feats[-1]: (2, 512, 2, 2)
    """

    #: widths of the 13 returned maps.
    out_channels = tuple(int(c) for c in _VGG16_CFG if c != "M")
    __jit_ignored_attributes__ = ["weights_file", "out_channels"]

    def __init__(
        self,
        weights_path: str | None = None,
        pretrained: bool = True,
        in_channels: int = 1,
        imagenet_normalize: bool = True,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grey, repeated to RGB) or 3, got {in_channels}.")
        self.in_channels = int(in_channels)
        self.imagenet_normalize = bool(imagenet_normalize)
        layers: list[nn.Module] = []
        prev = 3
        for c in _VGG16_CFG:
            if c == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(prev, int(c), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                prev = int(c)
        self.features = nn.Sequential(*layers)
        # ReLU indices whose outputs are returned; buffers are non-persistent so state dicts only hold features.*
        self._relu_indices: list[int] = [i + 1 for i in VGG16_CONV_INDICES]
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        self.weights_file = None
        if pretrained or weights_path is not None:
            self.weights_file = find_vgg16_weights(weights_path)
            self.load_weights(self.weights_file)
        else:
            logger.warning(
                "VGG16Features built with pretrained=False: RANDOM weights. Use this only for tests/ablations; "
                "a perceptual (VGG) loss needs the ImageNet weights."
            )
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def load_weights(self, path: str) -> None:
        """Load a torchvision-layout VGG16 state dict from ``path`` (strict on ``features.*``, CPU, weights only).

        Raises:
            ValueError: the file's ``features`` keys or tensor shapes do not match VGG16.
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise ValueError(f"VGG16 weights file {path!r} must hold a state dict (mapping), got {type(state).__name__}.")
        if any(k.startswith("features.") for k in state):
            feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        else:
            feats = dict(state)
        try:
            self.features.load_state_dict(feats, strict=True)
        except RuntimeError as e:
            raise ValueError(
                f"VGG16 weights file {path!r} does not match torchvision's vgg16 'features' layout "
                f"(expected keys features.{{{','.join(map(str, VGG16_CONV_INDICES))}}}.weight/bias): {e}"
            ) from e
        logger.info(f"loaded VGG16 ImageNet weights from {path}")

    def train(self, mode: bool = True) -> VGG16Features:
        """Keep the frozen extractor in eval mode whatever ``mode`` is (so a parent's ``.train()`` cannot change it)."""
        return super().train(False)

    def forward(self, x: torch.Tensor, num_layers: int = 13) -> list[torch.Tensor]:
        """Compute the post-ReLU maps of the first ``num_layers`` conv layers.

        Args:
            x: images ``(B, in_channels, H, W)``, intensities in [0, 1] when ``imagenet_normalize``.
                H and W should be divisible by 16 for the deepest maps to cover the image exactly.
            num_layers: how many conv layers to evaluate (1..13); computation stops after the last one needed.

        Returns:
            list of ``num_layers`` tensors: ``(B, 64, H, W)``, ``(B, 64, H, W)``, ``(B, 128, H/2, W/2)``, ...,
            ``(B, 512, H/16, W/16)``.

        Raises:
            ValueError: ``x`` is not ``(B, in_channels, H, W)``, or ``num_layers`` is out of range.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {list(x.shape)}.")
        if num_layers < 1 or num_layers > 13:
            raise ValueError(f"num_layers must be in [1, 13], got {num_layers}.")
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.imagenet_normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        last = self._relu_indices[num_layers - 1]
        out: list[torch.Tensor] = []
        for i, layer in enumerate(self.features):
            if i <= last:
                x = layer(x)
                if i in self._relu_indices:
                    out.append(x)
        return out


def _how_to_provide_weights() -> str:
    return (
        f"Provide torchvision's ImageNet file '{VGG16_WEIGHTS_FILENAME}' (https://download.pytorch.org/models/"
        f"{VGG16_WEIGHTS_FILENAME}, copied by hand onto this machine) via weights_path=..., the environment variable "
        f"{VGG16_WEIGHTS_ENV}, or by placing it in torch.hub.get_dir()/checkpoints/. "
        "Nothing is downloaded at run time. To run without the VGG term set its weight to 0 "
        "(or pretrained=False for tests only)."
    )
