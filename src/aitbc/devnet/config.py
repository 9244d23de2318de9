"""Writing the ``devnet.json`` that tells clients how to reach a devnet (its format: ``aitbc.client.devnet``)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from aitbc.client.devnet import DEVNET_ENV, DevnetInfo, default_devnet_dir, devnet_file, read_devnet_info
from aitbc.runtime.files import atomic_write

__all__ = ["DEVNET_ENV", "DevnetInfo", "default_devnet_dir", "devnet_file", "read_devnet_info", "write_devnet_info"]


def write_devnet_info(data_dir: Path, info: DevnetInfo) -> None:
    atomic_write(devnet_file(data_dir), msgspec.json.format(msgspec.json.encode(info), indent=2) + b"\n")
