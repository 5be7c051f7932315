"""What this worker node gives the pilot: cores, memory, disk, honouring cgroups and the batch slot.

psutil when importable, /proc and /sys otherwise.  Discovering resources is kept apart
from launching jobs (RADICAL-Pilot's resource_manager vs launch_method).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from updraft.core import protocol

try:
    import psutil
except ImportError:  # pragma: no cover - bare nodes
    psutil = None

CGROUP = Path("/sys/fs/cgroup")


@dataclass
class Resources:
    cpus: int
    memory_mb: int
    disk_kb: int
    node_cpus: int
    node_memory_mb: int
    cpus_source: str
    memory_source: str


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def own_cgroup() -> Optional[Path]:
    """The cgroup v2 directory of this process, if there is one."""
    text = _read(Path("/proc/self/cgroup"))
    if not text:
        return None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0":
            candidate = CGROUP / parts[2].lstrip("/")
            return candidate if candidate.is_dir() else CGROUP
    return None


def cgroup_cpus() -> Optional[float]:
    group = own_cgroup()
    if group is not None:
        text = _read(group / "cpu.max")
        if text and not text.startswith("max"):
            quota, period = text.split()[:2]
            return int(quota) / int(period)
    quota_text, period_text = (
        _read(CGROUP / "cpu" / "cpu.cfs_quota_us"),
        _read(CGROUP / "cpu" / "cpu.cfs_period_us"),
    )
    if quota_text and period_text and int(quota_text) > 0:
        return int(quota_text) / int(period_text)
    return None


def cgroup_memory_mb() -> Optional[int]:
    group = own_cgroup()
    if group is not None:
        text = _read(group / "memory.max")
        if text and text != "max":
            return int(text) // (1 << 20)
    text = _read(CGROUP / "memory" / "memory.limit_in_bytes")
    if text and int(text) < (1 << 60):
        return int(text) // (1 << 20)
    return None


def node_cpus() -> int:
    if psutil is not None:
        return int(psutil.cpu_count() or 1)
    return os.cpu_count() or 1


def usable_cpus() -> int:
    """Cores this process may run on: affinity, then the cgroup quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        count = node_cpus()
    quota = cgroup_cpus()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def node_memory_mb() -> int:
    if psutil is not None:
        return int(psutil.virtual_memory().total // (1 << 20))
    text = _read(Path("/proc/meminfo")) or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def slot_cpus(environ: Mapping[str, str]) -> Optional[int]:
    """What the batch system gave this job, when it says."""
    for name in (
        "SLURM_CPUS_ON_NODE",
        "SLURM_CPUS_PER_TASK",
        "NSLOTS",
        "PBS_NP",
        "OMP_NUM_THREADS",
        protocol.ATTR_GLIDEIN_CPUS,
    ):
        value = environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def slot_memory_mb(environ: Mapping[str, str]) -> Optional[int]:
    for name in ("SLURM_MEM_PER_NODE", protocol.ATTR_GLIDEIN_MAX_MEMORY):
        value = environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def detect(
    cpus_setting: str, memory_mb: int, disk_gb: float, work_dir: Path, environ: Mapping[str, str]
) -> Resources:
    node = node_cpus()
    usable = usable_cpus()
    setting = (cpus_setting or "auto").strip().lower()
    if setting.isdigit():
        cpus, cpus_source = int(setting), "configured"
    elif setting == "node":
        cpus, cpus_source = node, "node"
    elif setting == "slot":
        slot = slot_cpus(environ)
        cpus, cpus_source = (slot, "batch slot") if slot else (usable, "usable (no slot size known)")
    else:
        slot = slot_cpus(environ)
        cpus, cpus_source = (min(slot, usable), "batch slot") if slot else (usable, "usable")
    total_memory = node_memory_mb()
    limit = cgroup_memory_mb()
    if memory_mb > 0:
        memory, memory_source = memory_mb, "configured"
    elif slot_memory_mb(environ):
        memory, memory_source = int(slot_memory_mb(environ) or 0), "batch slot"
    elif limit is not None and limit < total_memory:
        memory, memory_source = limit, "cgroup"
    else:
        memory, memory_source = total_memory, "node"
    free_kb = shutil.disk_usage(work_dir).free // 1024
    disk_kb = min(free_kb, int(disk_gb * 1024 * 1024)) if disk_gb > 0 else free_kb
    return Resources(max(1, cpus), memory, disk_kb, node, total_memory, cpus_source, memory_source)
