"""The local account test jobs belong to when the suite runs as root.

A root pool writes a job's output as the account its owner maps to and never as root, so
the suite's pools map every test subject to ``nobody`` (identity.map) and give the submit
directories to that account, the way a user's own directory belongs to the user.
Unprivileged, the pool's own account is the job account and nothing needs doing.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

IS_ROOT = os.geteuid() == 0
JOB_ACCOUNT = "nobody" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
#: what the suite's pools map every subject to, when root
IDENTITY_MAP = (
    f"# the test suite: every token subject is the local account {JOB_ACCOUNT}\nTOKEN /.*/ {JOB_ACCOUNT}\n"
)


def give_to_job_account(path: Path) -> Path:
    """Make ``path`` the job account's own directory, reachable through its parents."""
    if IS_ROOT:
        entry = pwd.getpwnam(JOB_ACCOUNT)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, (mode & 0o7777) | 0o001)  # others may pass through, not list
    return path
