"""Several hosts on one machine: network namespaces on a private bridge, made and removed by a test.

Each host is a namespace with one interface (``eth0``) on a bridge that lives in a namespace
of its own, an address in a private /24 that exists nowhere else, and an ``/etc/hosts`` of
its own (/etc/netns/<name>/hosts bind-mounted over /etc/hosts, as ``ip netns exec`` does), so the
hosts know one another by name (pool.test, ...).  Nothing is addressed outside these
namespaces: the machine's own namespace gets no address and no route into them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

NETNS_ETC = Path("/etc/netns")


def _ip(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)


@dataclass
class Host:
    """One namespace: its name, its address, how to run things in it."""

    namespace: str
    name: str  # its host name on the test network (e.g. pool.test)
    address: str

    def argv(self, *command: str, env: dict[str, str] | None = None) -> list[str]:
        """A command as run on this host (with these variables set, when given).

        Not ``ip netns exec``: it remounts /sys for the namespace, which hides the cgroup
        file systems that slurmd needs.  nsenter joins the network namespace only; a private
        mount namespace then puts the host's own /etc/hosts in place.
        """
        prefix = [
            "nsenter", f"--net=/run/netns/{self.namespace}", "--",
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(NETNS_ETC / self.namespace / "hosts"),
        ]  # fmt: skip
        if env:
            prefix += ["env", *(f"{key}={value}" for key, value in env.items())]
        return [*prefix, *command]

    def run(
        self, *command: str, env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 120)
        return subprocess.run(self.argv(*command, env=env), **kwargs)

    def popen(self, *command: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.argv(*command, env=env), **kwargs)

    def cut(self, other: Host) -> None:
        """No more packets from this host to ``other`` (the other way still works: an SSH login stays)."""
        done = self.run("ip", "route", "add", "blackhole", f"{other.address}/32")
        assert done.returncode == 0, done.stderr

    def mend(self, other: Host) -> None:
        self.run("ip", "route", "del", "blackhole", f"{other.address}/32")


@dataclass
class Network:
    """Hosts on one bridge; ``with Network(...) as net`` removes every namespace it made."""

    tag: str  # short and unique: namespace names are tag + host
    prefix: str = "10.77.0"
    hosts: dict[str, Host] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.tag}lan"

    def add(self, role: str, name: str) -> Host:
        host = Host(f"{self.tag}{role}", name, f"{self.prefix}.{len(self.hosts) + 1}")
        self.hosts[role] = host
        return host

    def build(self) -> Network:
        if os.geteuid() != 0:
            pytest.skip("network namespaces need root (CI runs as root)")
        if shutil.which("ip") is None:
            pytest.skip("iproute2's ip is not installed (scripts/bootstrap.sh --test installs it)")
        self._namespace(self.switch)
        self._check(_ip("-n", self.switch, "link", "add", "br0", "type", "bridge"))
        self._check(_ip("-n", self.switch, "link", "set", "br0", "up"))
        hosts_file = "".join(f"{h.address} {h.name} {h.name.split('.')[0]}\n" for h in self.hosts.values())
        machine = socket.gethostname()  # every host shares the machine's name: it stays on loopback
        for index, host in enumerate(self.hosts.values()):
            self._namespace(host.namespace)
            port = f"p{index}"
            self._check(
                _ip(
                    "-n",
                    self.switch,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    host.namespace,
                )
            )
            self._check(_ip("-n", self.switch, "link", "set", port, "master", "br0", "up"))
            self._check(_ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0"))
            self._check(_ip("-n", host.namespace, "link", "set", "eth0", "up"))
            self._check(_ip("-n", host.namespace, "link", "set", "lo", "up"))
            etc = NETNS_ETC / host.namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(f"127.0.0.1 localhost {machine}\n{hosts_file}")
        return self

    def _namespace(self, name: str) -> None:
        done = _ip("netns", "add", name)
        if done.returncode != 0:
            self.destroy()
            pytest.skip(f"cannot make a network namespace here: {done.stderr.strip()}")
        self.made.append(name)

    def _check(self, done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode != 0:
            self.destroy()
            raise RuntimeError(f"{' '.join(done.args)}: {done.stderr.strip()}")

    def destroy(self) -> None:
        for name in reversed(self.made):
            _ip("netns", "del", name)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        self.made.clear()
        try:
            NETNS_ETC.rmdir()  # only when no one else keeps files there
        except OSError:
            pass

    def __enter__(self) -> Network:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def processes_in(namespace: str) -> Sequence[int]:
    """Pids of every process still inside a namespace (to end what a host left running)."""
    done = _ip("netns", "pids", namespace)
    return [int(pid) for pid in done.stdout.split()] if done.returncode == 0 else []
