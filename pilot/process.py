"""Process trees of running jobs: who belongs to a job, what it uses, how to stop all of it.

psutil when importable; otherwise /proc, read directly.  A job is its process group (the
pilot starts it in a new session) plus any descendant that left the group with setsid.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

try:
    import psutil
except ImportError:  # pragma: no cover - bare nodes
    psutil = None

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    rss_kb: int = 0
    user_s: float = 0.0
    system_s: float = 0.0
    processes: int = 0


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        text = handle.read()
    return text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) "


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    return children


def tree(root: int) -> set[int]:
    """The root process and every descendant still alive."""
    if psutil is not None:
        try:
            process = psutil.Process(root)
            return {root, *(child.pid for child in process.children(recursive=True))}
        except psutil.Error:
            return set()
    children = _children_map()
    found: set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        if pid == root and not os.path.exists(f"/proc/{pid}"):
            return set()
        found.add(pid)
        stack.extend(children.get(pid, []))
    return found


def usage(root: int) -> Usage:
    """Memory and CPU of the live tree now (zombies and exited processes do not count)."""
    total = Usage()
    for pid in tree(root):
        try:
            if psutil is not None:
                process = psutil.Process(pid)
                total.rss_kb += process.memory_info().rss // 1024
                times = process.cpu_times()
                total.user_s += times.user
                total.system_s += times.system
            else:
                with open(f"/proc/{pid}/statm") as handle:
                    total.rss_kb += int(handle.read().split()[1]) * PAGE_KB
                fields = _stat_fields(pid)
                total.user_s += int(fields[11]) / TICKS
                total.system_s += int(fields[12]) / TICKS
            total.processes += 1
        except (OSError, ValueError, IndexError):
            continue
        except Exception:  # psutil.NoSuchProcess and friends: the process went away meanwhile
            continue
    return total


TAG_VARIABLE = "UPDRAFT_JOB_TAG"


def tagged(tag: str) -> set[int]:
    """Processes whose environment carries the job's tag: how HTCondor's procd finds a job's
    processes that left its tree (setsid, double fork), since they keep the environment."""
    marker = f"{TAG_VARIABLE}={tag}".encode()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if marker in handle.read().split(b"\0"):
                    found.add(int(entry))
        except OSError:
            continue
    return found


def signal_tree(root: int, group: int, signum: int, tag: str = "") -> set[int]:
    """Send ``signum`` to the job's process group, every descendant, and every process with its tag."""
    members = tree(root) | (tagged(tag) if tag else set())
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass
    for pid in members:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    return members


def kill_tree(root: int, group: int, tag: str = "") -> set[int]:
    return signal_tree(root, group, signal.SIGKILL, tag)
