#!/usr/bin/env bash
# Everything Updraft needs on a fresh Debian 12 with Python 3.11: the system packages (installed
# with apt-get when run as root), a virtual environment in .venv and the project in it.
# With --test, also what the test suite runs for real (bubblewrap, squid, ...).
# Safe to run again; each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
packages=()
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
"$PYTHON" -c 'import sqlite3' 2>/dev/null || packages+=(libsqlite3-0)
command -v git >/dev/null || packages+=(git)
if [ "${1:-}" = "--test" ]; then
    # the tests run these for real: a pilot isolating jobs, a site squid
    command -v bwrap >/dev/null || packages+=(bubblewrap)
    [ -x /usr/sbin/squid ] || packages+=(squid)
    [ -x /usr/bin/python3 ] || packages+=(python3)  # the pilot bundle is tested on the bare system interpreter
    command -v setpriv >/dev/null || packages+=(util-linux)
    # the factory's real sites (scripts/sites/*.sh start them; the tests skip them when not root)
    command -v slurmctld >/dev/null || packages+=(slurm-wlm)
    command -v munged >/dev/null || packages+=(munge)
    # hosts of their own (network namespaces) and batch sites reached over SSH; openssh-server
    # comes from scripts/sites/sshd.sh, which keeps the package's own sshd from starting
    command -v ip >/dev/null || packages+=(iproute2)
    command -v ssh >/dev/null || packages+=(openssh-client)
    command -v nsenter >/dev/null || packages+=(util-linux)
    # the system-wide install (docs/deploy.md): its unit files and logrotate rule are checked
    command -v systemd-analyze >/dev/null || packages+=(systemd)
    command -v logrotate >/dev/null || packages+=(logrotate)
    # overflowed jobs read from a home site's xrootd; the monitor is checked in a real browser
    command -v xrootd >/dev/null || packages+=(xrootd-server)
    command -v xrdcp >/dev/null || packages+=(xrootd-client)
    command -v chromium >/dev/null || packages+=(chromium)
fi

if ((${#packages[@]})); then
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing ${packages[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${packages[@]}" >/dev/null
    elif [ "${1:-}" = "--test" ]; then
        echo "bootstrap: not root: tests needing ${packages[*]} will skip with the reason" >&2
    else
        echo "bootstrap: please install (as root): apt-get install ${packages[*]}" >&2
        exit 1
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$PYTHON" -m venv .venv
fi
if [ "${1:-}" = "--test" ]; then
    echo "bootstrap: installing updraft, its test tools and the lint into .venv"
    extras="test,dev"
else
    echo "bootstrap: installing updraft (pool, factory, frontend) into .venv"
    extras="all"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
