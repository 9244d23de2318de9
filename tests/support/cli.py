"""``python -m aitbc …`` as a subprocess, for tests outside the directory of a conftest that has one."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a clean ``AITBC_*`` environment and a wide terminal (rich does not wrap lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")} | {"COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aitbc", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
