"""What a benchmark says about the machine it ran on: the CPU, and how much time the hypervisor took."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_ticks() -> tuple[int, int]:
    """(all, stolen) CPU ticks of this machine so far (/proc/stat): on a VM, time the hypervisor gave away."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def stolen_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time the hypervisor took between two ``cpu_ticks`` readings."""
    all_ticks = after[0] - before[0]
    return (after[1] - before[1]) / all_ticks if all_ticks else 0.0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}"
