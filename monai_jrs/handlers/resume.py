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
"""Resume an interrupted training run from the newest checkpoint in a folder."""

from __future__ import annotations

import glob
import logging
import os
from typing import TYPE_CHECKING, Any

from monai.handlers import CheckpointLoader
from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

logger = logging.getLogger(__name__)

__all__ = ["ResumeFromCheckpoint", "latest_checkpoint"]


def latest_checkpoint(checkpoint_dir: str, pattern: str = "checkpoint*.pt") -> str | None:
    """The most recently modified file matching ``pattern`` in ``checkpoint_dir``, or ``None``."""
    files = [f for f in glob.glob(os.path.join(checkpoint_dir, pattern)) if os.path.isfile(f)]
    return max(files, key=os.path.getmtime) if files else None


class ResumeFromCheckpoint:
    """At ``Events.STARTED``, load the newest ``checkpoint*.pt`` of ``checkpoint_dir`` into ``load_dict``.

    MONAI's :class:`~monai.handlers.CheckpointLoader` needs a fixed path; after a crash the newest file of a
    :class:`~monai.handlers.CheckpointSaver` folder has a name that depends on the iteration reached, so this handler
    finds it and delegates the loading (including the trainer state: epoch, iteration) to ``CheckpointLoader``.
    When the folder holds no checkpoint, training starts from scratch. A run that had already reached
    ``max_epochs`` is not repeated (Ignite ends it at once); raise ``max_epochs`` to train further.

    Args:
        checkpoint_dir: folder written by the trainer's ``CheckpointSaver``.
        load_dict: objects to restore, keyed as in the saver's ``save_dict`` (include ``"trainer"`` to resume the
            epoch and iteration counters).
        pattern: glob pattern of the checkpoint files.
        enabled: False makes the handler a no-op (config switch).
        map_location: ``torch.load`` map location.
    """

    def __init__(
        self,
        checkpoint_dir: str,
        load_dict: dict[str, Any],
        pattern: str = "checkpoint*.pt",
        enabled: bool = True,
        map_location: Any = "cpu",
    ) -> None:
        if not load_dict:
            raise ValueError("`load_dict` must name at least one object to restore, got an empty dict.")
        self.checkpoint_dir = checkpoint_dir
        self.load_dict = load_dict
        self.pattern = pattern
        self.enabled = bool(enabled)
        self.map_location = map_location
        self.loaded_path: str | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.enabled:
            return
        path = latest_checkpoint(self.checkpoint_dir, self.pattern)
        if path is None:
            logger.info("no checkpoint in %s; training from scratch", self.checkpoint_dir)
            return
        CheckpointLoader(load_path=path, load_dict=self.load_dict, map_location=self.map_location)(engine)
        self.loaded_path = path
        logger.info("resumed from %s at epoch %d, iteration %d", path, engine.state.epoch, engine.state.iteration)
