"""Checks of the node itself: Python, blacklist, drain flag, disk, /tmp, cores and memory."""

from __future__ import annotations

import fnmatch
import os
import socket
import sys
import tempfile
from typing import Optional

from pilot import resources
from pilot.checks.base import CheckContext, metrics
from pilot.errors import CONFIG, WN_RESOURCE, CheckFailed


def check_python(context: CheckContext) -> Optional[str]:
    wanted = tuple(int(part) for part in context.config.min_python.split("."))
    have = sys.version_info[: len(wanted)]
    metrics(context, python=".".join(str(p) for p in sys.version_info[:3]))
    if have < wanted:
        raise CheckFailed(
            "python",
            2701,
            CONFIG,
            f"Python {sys.version.split()[0]} is older than the {context.config.min_python} the pilot needs",
        )
    return f"Python {sys.version.split()[0]}"


def host_names() -> list:
    names = {socket.gethostname(), socket.getfqdn()}
    return sorted(n for n in names if n)


def check_blacklist(context: CheckContext) -> Optional[str]:
    for name in host_names():
        for pattern in context.config.blacklist:
            if fnmatch.fnmatch(name, pattern):
                raise CheckFailed(
                    "blacklist",
                    2601,
                    WN_RESOURCE,
                    f"node {name} is blacklisted (pattern {pattern!r})",
                    {"host": name},
                )
    return "not blacklisted"


def check_drain(context: CheckContext) -> Optional[str]:
    flag = context.config.drain_file
    if (flag and os.path.exists(flag)) or context.environ.get("UPDRAFT_SITE_DRAIN", "").lower() in (
        "1",
        "true",
        "yes",
    ):
        raise CheckFailed(
            "drain",
            2602,
            WN_RESOURCE,
            f"the site is draining ({flag or 'UPDRAFT_SITE_DRAIN'}): taking no jobs",
        )
    return "site not draining"


def check_disk(context: CheckContext) -> Optional[str]:
    import shutil

    free_gb = shutil.disk_usage(context.work_dir).free / (1 << 30)
    metrics(context, free_gb=round(free_gb, 2), work_dir=str(context.work_dir))
    if free_gb < context.config.min_disk_gb:
        raise CheckFailed(
            "disk", 2101, WN_RESOURCE, f"only {free_gb:.2f} GB free in {context.work_dir}; at least {context.config.min_disk_gb} GB needed",
            {"free_gb": round(free_gb, 2)},
        )  # fmt: skip
    return f"{free_gb:.1f} GB free in {context.work_dir}"


def check_tmp(context: CheckContext) -> Optional[str]:
    directory = context.environ.get("TMPDIR") or "/tmp"
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix="updraft-check-") as handle:
            handle.write(b"x")
            handle.flush()
    except OSError as exc:
        raise CheckFailed("tmp", 2102, WN_RESOURCE, f"{directory} is not writable: {exc.strerror}") from None
    return f"{directory} writable"


def check_resources(context: CheckContext) -> Optional[str]:
    config = context.config
    found = resources.detect(config.cpus, config.memory_mb, config.disk_gb, context.work_dir, context.environ)
    context.facts["resources"] = found
    metrics(
        context,
        cpus=found.cpus,
        memory_mb=found.memory_mb,
        disk_kb=found.disk_kb,
        cpus_source=found.cpus_source,
    )
    if found.cpus < config.min_cpus:
        raise CheckFailed(
            "resources",
            2103,
            WN_RESOURCE,
            f"{found.cpus} core(s) ({found.cpus_source}); {config.min_cpus} needed",
        )
    if found.memory_mb < config.min_memory_mb:
        raise CheckFailed(
            "resources",
            2104,
            WN_RESOURCE,
            f"{found.memory_mb} MB ({found.memory_source}); {config.min_memory_mb} MB needed",
        )
    return f"{found.cpus} core(s) ({found.cpus_source}), {found.memory_mb} MB ({found.memory_source})"
