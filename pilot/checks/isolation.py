"""gLExec (the frontend's policy against the entry's location), or bubblewrap as the modern alternative.

NEVER: jobs run as the pilot.  OPTIONAL: gLExec when the entry has it, tested live.
REQUIRED: no gLExec, no pilot.  When gLExec is used the pilot runs ``id`` through it with
its own credential first; a gLExec that is there but does not work fails the node, as the
seeds' validation does.  Without gLExec, ``isolation: auto|bwrap`` wraps jobs in bubblewrap.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from pilot.checks.base import CheckContext, metrics
from pilot.errors import VO_CONFIG, VO_PROXY, WN_RESOURCE, CheckFailed
from pilot.launch import BubblewrapLauncher, DirectLauncher, GlexecLauncher, find_bwrap, find_glexec


def check_glexec(context: CheckContext) -> Optional[str]:
    config = context.config
    policy = config.glexec_policy
    context.facts["launcher"] = DirectLauncher()
    glexec = find_glexec(config.glexec, context.environ) if policy != "NEVER" else None
    if policy == "REQUIRED" and glexec is None:
        raise CheckFailed(
            "glexec",
            2501,
            VO_CONFIG,
            f"the frontend requires gLExec and this entry has none (glexec: {config.glexec})",
        )
    if glexec is not None:
        credential = context.environ.get("X509_USER_PROXY", "")
        if not credential:
            raise CheckFailed(
                "glexec",
                2504,
                VO_PROXY,
                "gLExec is to be used but the pilot has no X509_USER_PROXY to test it with",
            )
        launcher = GlexecLauncher(glexec)
        probe = Path(context.work_dir) / "glexec-test"
        probe.mkdir(exist_ok=True)
        launcher.prepare(probe)
        env = launcher.environment(dict(context.environ), probe, credential)
        try:
            test = subprocess.run(
                [glexec, "/usr/bin/id", "-un"],
                env=env,
                capture_output=True,
                text=True,
                timeout=context.config.check_timeout_s,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CheckFailed("glexec", 2502, WN_RESOURCE, f"gLExec {glexec} cannot run: {exc}") from None
        if test.returncode != 0:
            why = (test.stderr.strip().splitlines() or [f"exit {test.returncode}"])[-1]
            raise CheckFailed(
                "glexec",
                2502,
                WN_RESOURCE,
                f"gLExec {glexec} does not work with the pilot's credential: {why}",
                {"exit": test.returncode},
            )
        mapped = test.stdout.strip()
        metrics(context, glexec=glexec, mapped_to=mapped)
        context.facts["launcher"] = launcher
        return f"gLExec {glexec} works (pilot maps to {mapped})"
    if config.isolation.lower() in ("auto", "bwrap"):
        bwrap = find_bwrap()
        if bwrap is not None:
            launcher_b = BubblewrapLauncher(bwrap)
            try:
                test = subprocess.run(
                    [*launcher_b.command(Path(context.work_dir)), "--", "/bin/true"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                works = test.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                works = False
            if works:
                context.facts["launcher"] = launcher_b
                metrics(context, isolation="bubblewrap")
                return f"no gLExec ({policy}); jobs isolated with bubblewrap ({bwrap})"
        if config.isolation.lower() == "bwrap":
            raise CheckFailed(
                "glexec", 2503, VO_CONFIG, "bubblewrap isolation was asked for and does not work on this node"
            )
    return f"gLExec not used ({policy}, entry: {config.glexec}); jobs run as the pilot"
