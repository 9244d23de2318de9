"""What the miner runs on, reported honestly: the GPU(s) if there are any, else the CPU.

GPU detection tries ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits``
(with a timeout), then NVML through ``pynvml`` when that is importable. No GPU found → a CPU
report: model name from ``/proc/cpuinfo``, the cores this process may use, total RAM. Sizes are
GiB (2^30 bytes), rounded to 0.1, as ``nvidia-smi`` and ``/proc/meminfo`` count them.

With several GPUs, ``gpu_name`` / ``vram_gb`` describe the one with the most memory (a job runs
on one card) and ``gpu_count`` says how many there are.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

HardwareKind = Literal["gpu", "cpu"]


@dataclass(frozen=True, slots=True)
class HardwareInfo:
    kind: HardwareKind
    gpu_name: str | None
    vram_gb: float | None
    cpu_model: str
    cpu_cores: int
    ram_gb: float
    gpu_count: int = 0
    source: str = "cpu"
    """How the GPU was found: ``nvidia-smi``, ``nvml``, or ``cpu`` when there is none."""


@dataclass(frozen=True, slots=True)
class GpuInfo:
    name: str
    vram_gb: float


def _gib(n_bytes: float) -> float:
    return round(n_bytes / 2**30, 1)


_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(MiB|GiB|MB|GB)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {"mib": 2**20, "gib": 2**30, "mb": 10**6, "gb": 10**9}


def parse_nvidia_smi(output: str) -> list[GpuInfo]:
    """Parse ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader[,nounits]``.

    Lines look like ``NVIDIA H100 80GB HBM3, 81559 MiB`` (or ``…, 81559`` with ``nounits``,
    where the unit is MiB). Names may contain commas, so the size is taken after the LAST comma.
    Lines that do not parse (e.g. ``[N/A]`` memory, or an error message) are skipped.
    """
    gpus: list[GpuInfo] = []
    for raw in output.splitlines():
        line = raw.strip()
        if not line or "," not in line:
            continue
        name, _, size = line.rpartition(",")
        m = _SIZE_RE.match(size)
        if not m or not name.strip():
            continue
        unit = (m.group(2) or "MiB").lower()
        gpus.append(GpuInfo(name=name.strip(), vram_gb=_gib(float(m.group(1)) * _UNIT_BYTES[unit])))
    return gpus


def parse_cpuinfo(text: str) -> str | None:
    """The CPU model from ``/proc/cpuinfo`` (``model name`` on x86, other keys on ARM/POWER)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "hardware", "cpu model", "cpu", "processor"):
        found = fields.get(key)
        if found and not found.isdigit():
            return found
    return None


def parse_meminfo(text: str) -> float | None:
    """Total RAM in GiB from ``/proc/meminfo`` (``MemTotal:  16318816 kB``)."""
    m = re.search(r"^MemTotal:\s+([0-9]+)\s*kB", text, re.MULTILINE)
    return _gib(int(m.group(1)) * 1024) if m else None


def query_nvidia_smi(executable: str = "nvidia-smi", timeout: float = 5.0) -> list[GpuInfo]:
    """GPUs as ``nvidia-smi`` lists them; ``[]`` when it is absent, fails or hangs."""
    path = shutil.which(executable)
    if path is None:
        return []
    try:
        proc = subprocess.run(
            [path, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("nvidia-smi failed: %s", e)
        return []
    if proc.returncode != 0:
        log.warning("nvidia-smi exited %d: %s", proc.returncode, proc.stderr.strip()[:200])
        return []
    return parse_nvidia_smi(proc.stdout)


def query_nvml() -> list[GpuInfo]:
    """GPUs through NVML (``pynvml``, package ``nvidia-ml-py``) when importable; else ``[]``."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return []
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError: no driver, no device
        log.info("NVML unavailable: %s", e)
        return []
    try:
        gpus: list[GpuInfo] = []
        for i in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode()
            total = float(nvml.nvmlDeviceGetMemoryInfo(handle).total)
            gpus.append(GpuInfo(name=str(name), vram_gb=_gib(total)))
        return gpus
    except Exception as e:
        log.warning("NVML query failed: %s", e)
        return []
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception as e:
            log.debug("nvmlShutdown: %s", e)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def cpu_cores() -> int:
    """Cores this process may run on (affinity mask), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def ram_gb() -> float:
    total = parse_meminfo(_read("/proc/meminfo"))
    if total is not None:
        return total
    try:
        return _gib(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0.0


def cpu_model() -> str:
    return parse_cpuinfo(_read("/proc/cpuinfo")) or platform.processor() or platform.machine() or "unknown CPU"


def detect_hardware(*, use_gpu: bool = True, nvidia_smi: str = "nvidia-smi", timeout: float = 5.0) -> HardwareInfo:
    """Detect the GPU(s), or report the CPU honestly; never raises."""
    gpus: list[GpuInfo] = []
    source = "cpu"
    if use_gpu:
        gpus = query_nvidia_smi(nvidia_smi, timeout)
        source = "nvidia-smi"
        if not gpus:
            gpus = query_nvml()
            source = "nvml"
    cpu, cores, ram = cpu_model(), cpu_cores(), ram_gb()
    if not gpus:
        return HardwareInfo("cpu", None, None, cpu, cores, ram, gpu_count=0, source="cpu")
    best = max(gpus, key=lambda g: g.vram_gb)
    return HardwareInfo("gpu", best.name, best.vram_gb, cpu, cores, ram, gpu_count=len(gpus), source=source)
