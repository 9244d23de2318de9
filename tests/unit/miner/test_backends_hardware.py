"""GPU detection (nvidia-smi output, NVML absent) and the honest CPU report."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aitbc.miner import hardware
from aitbc.miner.hardware import GpuInfo, detect_hardware, parse_cpuinfo, parse_meminfo, parse_nvidia_smi

H100 = "NVIDIA H100 80GB HBM3, 81559 MiB\n"


def test_parse_nvidia_smi_with_units() -> None:
    assert parse_nvidia_smi(H100) == [GpuInfo("NVIDIA H100 80GB HBM3", 79.6)]


def test_parse_nvidia_smi_nounits_several_gpus() -> None:
    out = "NVIDIA GeForce RTX 4090, 24564\nNVIDIA GeForce RTX 3060, 12288\n"
    assert parse_nvidia_smi(out) == [GpuInfo("NVIDIA GeForce RTX 4090", 24.0), GpuInfo("NVIDIA GeForce RTX 3060", 12.0)]


def test_parse_nvidia_smi_name_with_comma_and_bad_lines() -> None:
    out = "\n".join(
        [
            "Weird, Inc. Accelerator, 16384 MiB",
            "NVIDIA A100-SXM4-40GB, [N/A]",
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            "",
        ]
    )
    assert parse_nvidia_smi(out) == [GpuInfo("Weird, Inc. Accelerator", 16.0)]


def test_parse_cpuinfo_x86_and_arm() -> None:
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n"
    assert parse_cpuinfo(x86) == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n\nHardware\t: BCM2835\n"
    assert parse_cpuinfo(arm) == "BCM2835"
    assert parse_cpuinfo("processor\t: 0\n") is None


def test_parse_meminfo() -> None:
    assert parse_meminfo("MemTotal:       16318816 kB\nMemFree:  1 kB\n") == 15.6
    assert parse_meminfo("nothing") is None


def _script(tmp_path: Path, body: str) -> str:
    p = tmp_path / "nvidia-smi"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(p)


def test_detect_hardware_reports_the_largest_gpu(tmp_path: Path) -> None:
    fake = _script(tmp_path, 'printf "NVIDIA L4, 23034\\nNVIDIA H100 80GB HBM3, 81559\\n"\n')
    info = detect_hardware(nvidia_smi=fake)
    assert (info.kind, info.gpu_name, info.vram_gb, info.gpu_count, info.source) == (
        "gpu",
        "NVIDIA H100 80GB HBM3",
        79.6,
        2,
        "nvidia-smi",
    )
    assert info.cpu_cores >= 1


def test_detect_hardware_without_gpu_is_an_honest_cpu_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "query_nvml", list)
    info = detect_hardware(nvidia_smi="no-such-nvidia-smi-binary")
    assert info.kind == "cpu"
    assert info.gpu_name is None and info.vram_gb is None and info.gpu_count == 0
    assert info.cpu_model and info.cpu_model != "unknown CPU"
    assert info.cpu_cores == len(os.sched_getaffinity(0))
    assert info.ram_gb > 0


def test_failing_or_hanging_nvidia_smi_falls_back_to_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "query_nvml", list)
    failing = _script(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    assert detect_hardware(nvidia_smi=failing).kind == "cpu"
    (tmp_path / "slow").mkdir()
    hanging = _script(tmp_path / "slow", "sleep 10\n")
    info = detect_hardware(nvidia_smi=hanging, timeout=0.3)
    assert info.kind == "cpu"
