"""`updraft deploy ...`: what a site admin installs beside the wheel (docs/deploy.md).

``layout`` makes the FHS places (updraft/core/layout.py) with the owners the services need,
``systemd`` writes the three unit files with this installation's ``updraft`` in ExecStart,
``logrotate`` the rotation rule that ends with SIGUSR1.  Each prints what it did, one line
per file, and never overwrites a file that differs unless told (``--force``): a site's own
edits to a unit are not lost to a reinstall.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from updraft.core import layout
from updraft.core.errors import UpdraftError

UNITS = ("updraft-pool.service", "updraft-factory.service", "updraft-frontend.service")


def updraft_executable() -> str:
    """The ``updraft`` of this installation (beside the running interpreter), for ExecStart."""
    beside = Path(sys.executable).parent / "updraft"
    return str(beside) if beside.exists() else (shutil.which("updraft") or str(beside))


def render(name: str, user: str, executable: str) -> str:
    text = resources.files("updraft.systemd").joinpath(name).read_text()
    for key, value in {
        "@UPDRAFT@": executable,
        "@USER@": user,
        "@STATE@": str(layout.state_dir()),
        "@LOG@": str(layout.log_dir()),
        "@CONFIG@": str(layout.config_dir()),
    }.items():
        text = text.replace(key, value)
    if os.environ.get(layout.ROOT_ENV):  # a staged install: the services must look there too
        text = text.replace(
            "\nExecStart=", f"\nEnvironment={layout.ROOT_ENV}={os.environ[layout.ROOT_ENV]}\nExecStart=", 1
        )
    return text


def write(path: Path, text: str, force: bool, mode: int = 0o644) -> str:
    if path.exists() and path.read_text() != text and not force:
        return f"kept     {path} (it differs: --force replaces it)"
    verb = "same    " if path.exists() and path.read_text() == text else "wrote   "
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return f"{verb} {path}"


def cmd_layout(args: argparse.Namespace) -> int:
    """The directories (and, as root, the service account) of a system-wide install."""
    owner = _account(args.user) if os.geteuid() == 0 else None
    places = [
        (layout.config_dir(), 0o755, None),
        (layout.state_dir(), 0o755, None),
        (layout.state_dir() / "pool", 0o755, None),  # root's: clients of every account read pool.json
        (layout.state_dir() / "factory", 0o750, owner),
        (layout.state_dir() / "frontend", 0o750, owner),
        (layout.log_dir(), 0o750, owner),
    ]
    for path, mode, who in places:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        if who is not None:
            os.chown(path, *who)
        print(f"{oct(mode)[2:]:>4} {args.user if who else '-':<8} {path}")
    if owner is None:
        print(f"(not root: no account made, nothing given to {args.user})", file=sys.stderr)
    warn_if_htcondor_here()
    return 0


def warn_if_htcondor_here() -> None:
    """HTCondor's own condor_* on this host: say how not to shadow them (docs/deploy.md)."""
    ours = Path(updraft_executable()).parent
    theirs = shutil.which(
        "condor_q",
        path=os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != ours),
    )
    if theirs:
        print(
            f"note: HTCondor's commands are installed here ({theirs}): keep {ours} off PATH and use"
            " 'updraft q', 'updraft submit', ... (docs/deploy.md, HTCondor on the same host)",
            file=sys.stderr,
        )


def _account(user: str) -> tuple[int, int]:
    """The service account's uid and gid, made as a system account when missing."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--home-dir", str(layout.state_dir()), "--no-create-home",
             "--shell", "/usr/sbin/nologin", user],
            check=True,
        )  # fmt: skip
        entry = pwd.getpwnam(user)
    return entry.pw_uid, grp.getgrgid(entry.pw_gid).gr_gid


def cmd_systemd(args: argparse.Namespace) -> int:
    directory = Path(args.output)
    executable = args.updraft or updraft_executable()
    for name in args.unit or UNITS:
        if name not in UNITS:
            raise UpdraftError(f"no unit {name!r} (units: {', '.join(UNITS)})")
        print(write(directory / name, render(name, args.user, executable), args.force))
    print(
        f"next: systemctl daemon-reload && systemctl enable --now {' '.join(args.unit or UNITS)}",
        file=sys.stderr,
    )
    return 0


def cmd_logrotate(args: argparse.Namespace) -> int:
    print(write(Path(args.output), render("updraft.logrotate", "", ""), args.force))
    return 0


def add_commands(nouns: argparse._SubParsersAction) -> None:
    deploy = nouns.add_parser("deploy", help="a system-wide install: directories, systemd units, logrotate")
    verbs = deploy.add_subparsers(dest="verb", required=True)
    place = verbs.add_parser(
        "layout", help="/etc/updraft, /var/lib/updraft, /var/log/updraft (and the account)"
    )
    place.add_argument(
        "--user", default="updraft", help="the factory's and frontend's account (default updraft)"
    )
    place.set_defaults(func=cmd_layout)
    units = verbs.add_parser("systemd", help="the unit files for the pool, the factory and the frontend")
    units.add_argument(
        "--output", "-o", default="/etc/systemd/system", help="where (default /etc/systemd/system)"
    )
    units.add_argument("--user", default="updraft", help="the factory's and frontend's account")
    units.add_argument("--updraft", help="the updraft executable for ExecStart (default: this one)")
    units.add_argument("--unit", action="append", help=f"only this one (repeatable): {', '.join(UNITS)}")
    units.add_argument("--force", action="store_true", help="replace unit files that differ")
    units.set_defaults(func=cmd_systemd)
    rotate = verbs.add_parser("logrotate", help="the logrotate rule (rotate, then SIGUSR1)")
    rotate.add_argument("--output", "-o", default="/etc/logrotate.d/updraft")
    rotate.add_argument("--force", action="store_true")
    rotate.set_defaults(func=cmd_logrotate)
