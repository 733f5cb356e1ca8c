# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""Small file helpers shared by the data sources and the applications."""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_sha256"]


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file as hex, read in 1 MiB blocks (archives, model weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
