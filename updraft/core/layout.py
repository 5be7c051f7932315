"""Where Updraft keeps things: a user's own ~/.updraft, or the FHS places when installed system-wide.

A site admin who installs Updraft for a host (docs/deploy.md) makes ``/etc/updraft``; from
then on the host's services and clients agree without being told:

=================  ==============================  =====================================
what               system-wide                     a user's own (no /etc/updraft)
=================  ==============================  =====================================
configs            /etc/updraft/<component>.yaml   --config / $UPDRAFT_<COMPONENT>_CONFIG
the pool's home    /var/lib/updraft/pool           ~/.updraft
logs               /var/log/updraft                the config's log_dir (the pool: its home)
=================  ==============================  =====================================

``UPDRAFT_HOME`` and ``--config`` always win, and a user who runs a pool of their own in
~/.updraft keeps finding it there.  ``UPDRAFT_SYSTEM_ROOT`` puts the three system places
under another root (the tests; a staged install).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "UPDRAFT_SYSTEM_ROOT"


def _root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or "/")


def config_dir() -> Path:
    return _root() / "etc" / "updraft"


def state_dir() -> Path:
    return _root() / "var" / "lib" / "updraft"


def log_dir() -> Path:
    return _root() / "var" / "log" / "updraft"


def system_wide() -> bool:
    """Installed for the whole host: /etc/updraft exists."""
    return config_dir().is_dir()


def pool_home() -> Path:
    """The pool's home when no UPDRAFT_HOME says otherwise."""
    given = os.environ.get("UPDRAFT_HOME")
    if given:
        return Path(given)
    own = Path.home() / ".updraft"
    if system_wide() and not (own / "pool.json").exists():
        return state_dir() / "pool"
    return own


def config_file(component: str, given: str | None) -> Path | None:
    """A component's config: --config, else $UPDRAFT_<COMPONENT>_CONFIG, else /etc/updraft/<component>.yaml."""
    chosen = given or os.environ.get(config_env(component))
    if chosen:
        return Path(chosen)
    system = config_dir() / f"{component}.yaml"
    return system if system_wide() and system.exists() else None


def config_env(component: str) -> str:
    return f"UPDRAFT_{component.upper()}_CONFIG"
