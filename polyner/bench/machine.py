"""A description of the machine a benchmark ran on: CPU, cores, threads, library versions, load."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` where that file is absent)."""
    path = Path(cpuinfo)
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def physical_cores(cpuinfo: str | Path = "/proc/cpuinfo") -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None when it does not say."""
    path = Path(cpuinfo)
    if not path.exists():
        return None
    cores, physical = set(), "0"
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            cores.add((physical, value.strip()))
    return len(cores) or None


def version(package: str) -> str:
    """The installed version of a distribution, or "not installed"."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe_machine(threads: int) -> dict[str, str]:
    """CPU, cores, memory, threads used, Python and library versions, load average, date."""
    logical = os.cpu_count() or 0
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 ** 2:.1f} GB"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "CPU": cpu_model(),
        "cores": f"{logical} logical ({physical_cores() or '?'} physical), {available} available to this process",
        "memory": memory or "n/a",
        "threads per model": str(threads),
        "OS": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "Python": platform.python_version(),
        "torch": version("torch"),
        "onnxruntime": version("onnxruntime"),
        "transformers": version("transformers"),
        "load average at start (1, 5, 15 min)": load,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
