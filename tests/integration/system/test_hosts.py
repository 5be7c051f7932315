"""Beyond one host: the pool, the factory and two sites on hosts of their own (network namespaces).

pool.test   the pool (HTTPS, a certificate for the name pool.test) and the frontend
factory.test the factory, its staging server on its own address
slurm.test  a Slurm cluster with no CE: sshd on its login node, the factory runs sbatch there
arc.test    an ARC CE (A-REX) over a Slurm cluster of its own

Every pilot reaches the pool by name and verifies its certificate with the CA the factory
shipped in the glidein.  Then the link from the Slurm site to the pool is cut: its pilots end
with exit 3 ("lost the pool") and their jobs come back to the queue.  Then the factory is
restarted while a glidein waits in Slurm's queue, and that glidein still starts (the staging
server is where it was).  Real daemons only (Debian's openssh-server, slurm-wlm, A-REX).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.accounts import IDENTITY_MAP, give_to_job_account
from tests.support.factories import QUICK_PILOT
from tests.support.factories import wait_for as waited
from tests.support.frontends import group
from tests.support.netns import Host, Network, processes_in
from tests.support.sites import SCRIPTS
from updraft.core.protocol import Scope
from userpool.tokens import TokenSigner

BIN = Path(sys.executable).parent
SITES_DIR = Path("/var/lib/updraft-hosts-test")  # not under /tmp: sshd refuses keys below a 1777 directory
POOL_PORT = 9618


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    pause: float = 1.0,
    then: Callable[[], str] | None = None,
) -> Any:
    """tests.support's wait_for, polling once a second: every look here is a command on a host.

    ``then`` says what things looked like when the wait ran out (a log read at that moment, not
    when the wait began)."""
    try:
        return waited(condition, timeout, pause, what)
    except AssertionError as exc:
        if then is None:
            raise
        raise AssertionError(f"{exc}\n{then()}") from None


@dataclass
class Deployment:
    """What the test started, on which host, and how to talk to it."""

    net: Network
    work: Path
    processes: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    sites: dict[str, dict[str, str]] = field(default_factory=dict)
    pool_url: str = ""
    pool_ca: str = ""

    def host(self, role: str) -> Host:
        return self.net.hosts[role]

    # -- sites: the project's own scripts, run on the site's host -----------------------------
    def site_script(self, role: str, script: str, *argv: str, env: dict[str, str]) -> dict[str, str]:
        done = self.host(role).run(str(SCRIPTS / f"{script}.sh"), *argv, env=env, timeout=900)
        if done.returncode == 77:
            pytest.skip(done.stderr.strip())
        assert done.returncode == 0, f"{script}.sh {argv} on {role}: {done.stdout}\n{done.stderr}"
        return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)

    # -- the pool's home and tokens ---------------------------------------------------------
    @property
    def pool_home(self) -> Path:
        return self.work / "pool"

    def token(self, subject: str, scope: Scope, **bindings: str) -> str:
        signer = TokenSigner((self.pool_home / "keys" / "signing.key").read_bytes())
        return signer.issue(subject, frozenset({scope}), 86400, bindings or None)[0]

    def client_env(self, user: str = "") -> dict[str, str]:
        env = {
            "UPDRAFT_POOL": self.pool_url,
            "UPDRAFT_CA": self.pool_ca,
            "UPDRAFT_HOME": str(self.work / "nohome"),
        }
        if user:
            env["UPDRAFT_TOKEN"] = self.token(user, Scope.USER)
        return env

    def condor(
        self, *argv: str, user: str = "uma", cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A user command on the pool's host, against https://pool.test."""
        return self.host("pool").run(str(BIN / argv[0]), *argv[1:], env=self.client_env(user), cwd=cwd)

    def job(self, job_id: str, *attrs: str) -> str:
        done = self.condor("condor_q", job_id, "-af", *attrs)
        if done.stdout.strip():
            return done.stdout.strip()
        return self.condor("condor_history", job_id, "-af", *attrs).stdout.strip()

    def submit(self, text: str, name: str) -> str:
        directory = give_to_job_account(self.work / "jobs")
        (directory / f"{name}.sub").write_text(text)
        done = self.condor("condor_submit", f"{name}.sub", cwd=directory)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[-1].split()[-1].rstrip(".")

    # -- services ------------------------------------------------------------------------------
    def spawn(self, name: str, role: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.work / f"{name}.log", "a")  # noqa: SIM115 - lives with the process
        self.processes[name] = self.host(role).popen(
            *argv, env={"PYTHONUNBUFFERED": "1", **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )

    def stop(self, name: str, timeout: float = 30) -> None:
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)

    def stop_all(self, timeout: float = 10) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
        self.processes.clear()

    def cycled(self, name: str, directory: Path) -> bool:
        """The service's current process has finished a cycle (its status.json says so)."""
        try:
            status = json.loads((directory / "state" / "status.json").read_text())
        except (OSError, ValueError):
            return False
        return status.get("cycles", 0) >= 1 and status.get("pid") == self.processes[name].pid

    def log(self, name: str) -> str:
        """The end of a service's log, as it is now."""
        try:
            return (self.work / f"{name}.log").read_text()[-4000:]
        except OSError:
            return ""

    # -- the factory's journal, read from outside as an operator would ------------------------
    def glideins(self, entry: str) -> list[dict[str, Any]]:
        done = subprocess.run(
            [str(BIN / "updraft"), "factory", "glideins", "--entry", entry, "--json",
             "--config", str(self.work / "factory" / "factory.yaml")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stdout))

    def pilot_of(self, job_id: str, attribute: str = "RemoteHost") -> str:
        """The pilot a job runs (or ran, LastRemoteHost) on, as the pool knows it: a glidein can
        start and take a job between two of the factory's looks at its site, so the factory's
        journal may not say "running" yet."""
        return self.job(job_id, attribute).split("@", 1)[-1]  # slot1@<pilot>@<host>

    def ended(self, entry: str, pilots: set[str]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(glidein, final record) of these pilots' glideins, once every one has ended."""
        pairs = [(g, self.record(g["glidein_id"])) for g in self.glideins(entry) if g.get("cleaned")]
        mine = [(g, r) for g, r in pairs if r and str(r.get("glidein", "")).split("@", 1)[-1] in pilots]
        return mine if len(mine) == len(pilots) else []

    def record(self, glidein_id: str) -> dict[str, Any] | None:
        with sqlite3.connect(self.work / "factory" / "state" / "journal.sqlite") as db:
            row = db.execute("SELECT record FROM glideins WHERE glidein_id = ?", (glidein_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None


def factory_config(
    deployment: Deployment, slurm: dict[str, str], ssh: dict[str, str], arc: dict[str, str]
) -> dict[str, Any]:
    def entry(
        name: str, gridtype: str, gatekeeper: str, site: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "name": name, "gridtype": gridtype, "gatekeeper": gatekeeper,
            "attributes": {"GLIDEIN_Site": site, "GLIDEIN_CPUS": 1, "GLIDEIN_MaxMemMBs": 500, "GLIDEIN_Max_Walltime": 900},
            "allowed_frontends": ["fe1"], "limits": {"max_glideins": 4, "max_idle": 2},
            "pilot": dict(QUICK_PILOT), "options": options,
        }  # fmt: skip

    return {
        "name": "hostsfac",
        "pool": {"url": deployment.pool_url, "token_file": "factory.token", "ca_file": deployment.pool_ca},
        "state_dir": "state",
        "staging": {"dir": "staging", "host": deployment.host("factory").address, "port": 0},
        "cycle_s": 2,
        "status_timeout_s": 30,
        "submit_grace_s": 5,
        "entries": [
            entry("SSH_Slurm", "slurm", "debug", "SiteSSH", {
                "ssh": ssh["SSH_TARGET"], "ssh_port": int(ssh["SSH_PORT"]), "ssh_key": ssh["SSH_KEY"],
                "ssh_known_hosts": ssh["SSH_KNOWN_HOSTS"], "slurm_conf": slurm["SLURM_CONF"],
                "remote_dir": "updraft-hosts-test",
            }),
            entry("ARC_CE", "arc", arc["ARC_URL"], "SiteARC", {
                "proxy": arc["X509_USER_PROXY"], "ca": arc["ARC_CA"], "queue": arc["ARC_QUEUE"],
            }),
        ],
    }  # fmt: skip


def end_everything_in(net: Network) -> None:
    """SIGTERM every process on the test's hosts, SIGKILL what is left after a few seconds."""
    for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.5)):
        pids = [pid for host in net.hosts.values() for pid in processes_in(host.namespace)]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + pause
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
            time.sleep(0.1)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    net = Network(f"ud{os.getpid() % 100000}")
    for role, name in (
        ("pool", "pool.test"),
        ("factory", "factory.test"),
        ("slurm", "slurm.test"),
        ("arc", "arc.test"),
    ):
        net.add(role, name)
    work = tmp_path
    work.chmod(0o755)  # the job account reaches its submit directory below it
    with net:
        made = Deployment(net, work)
        try:
            yield made
        finally:
            made.stop_all()  # the services together: the hosts go next, whatever they were doing
            # every site daemon (sshd, slurmctld, slurmd, A-REX and what they started) lives in
            # the hosts' namespaces and its files under SITES_DIR: end them all, then remove the files
            end_everything_in(net)
    subprocess.run(["rm", "-rf", str(SITES_DIR), "/home/glidein/updraft-hosts-test"], check=False)


@pytest.mark.timeout(1200)
def test_pool_factory_and_sites_on_hosts_of_their_own(deployment: Deployment) -> None:
    d = deployment
    slurm_host, arc_host = d.host("slurm"), d.host("arc")
    for script in ("slurm", "sshd", "arc"):  # from this host: the sites' hosts reach no package mirror
        done = subprocess.run(
            [str(SCRIPTS / f"{script}.sh"), "install"], capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stderr
    # -- the sites, each on its own host ------------------------------------------------------
    slurm = d.site_script("slurm", "slurm", "start", env={"UPDRAFT_SLURM_DIR": str(SITES_DIR / "slurm")})
    ssh = d.site_script("slurm", "sshd", "start", env={
        "UPDRAFT_SSHD_DIR": str(SITES_DIR / "sshd"), "UPDRAFT_SSHD_LISTEN": slurm_host.address,
        "UPDRAFT_SSHD_PORT": "22", "UPDRAFT_SSHD_NAME": slurm_host.name,
    })  # fmt: skip
    arc = d.site_script("arc", "arc", "start", env={
        "UPDRAFT_SLURM_DIR": str(SITES_DIR / "arc-slurm"), "UPDRAFT_ARC_DIR": str(SITES_DIR / "arc"),
        "UPDRAFT_ARC_HOST": arc_host.name, "UPDRAFT_ARC_LISTEN": arc_host.address,
    })  # fmt: skip
    assert arc["ARC_URL"].startswith("https://arc.test:")

    # -- the pool on pool.test, HTTPS with a certificate for that name -----------------------
    d.pool_home.mkdir()
    (d.pool_home / "identity.map").write_text(IDENTITY_MAP)
    d.spawn("pool", "pool", [
        sys.executable, "-m", "updraft", "pool", "--home", str(d.pool_home), "--host", d.host("pool").address,
        "--port", str(POOL_PORT), "--tls", "--tls-name", "pool.test", "--allow-remote", "--periodic-interval", "1",
    ])  # fmt: skip
    info = wait_for(
        lambda: (d.pool_home / "pool.json").exists() and json.loads((d.pool_home / "pool.json").read_text()),
        60,
        "pool.json",
    )
    d.pool_url, d.pool_ca = info["url"], info["ca"]
    assert d.pool_url == f"https://pool.test:{POOL_PORT}"
    wait_for(lambda: d.condor("condor_status").returncode == 0, 60, "the pool to answer over TLS by name")
    assert (
        d.host("slurm")
        .run(sys.executable, "-c", f"import urllib.request; urllib.request.urlopen('{d.pool_url}/v1/ping')")
        .returncode
        != 0
    ), "a client without the pool's CA must not verify it"

    # -- the frontend beside the pool, the factory on its own host ---------------------------
    frontend_dir = d.work / "frontend"
    frontend_dir.mkdir()
    (frontend_dir / "frontend.token").write_text(d.token("fe1", Scope.FRONTEND))
    (frontend_dir / "frontend.yaml").write_text(yaml.safe_dump({
        "name": "fe1", "pool": {"url": d.pool_url, "token_file": "frontend.token", "ca_file": d.pool_ca},
        "state_dir": "state", "cycle_s": 2, "query_timeout_s": 10, "groups": [group(start_expr="stringListMember(MY.GLIDEIN_Site, TARGET.DESIRED_Sites)")],
    }))  # fmt: skip
    d.spawn(
        "frontend",
        "pool",
        [str(BIN / "updraft"), "frontend", "run", "--config", str(frontend_dir / "frontend.yaml")],
    )
    factory_dir = d.work / "factory"
    factory_dir.mkdir()
    (factory_dir / "factory.token").write_text(d.token("hostsfac", Scope.FACTORY))
    (factory_dir / "factory.yaml").write_text(
        yaml.safe_dump(factory_config(d, slurm, ssh, arc), sort_keys=False)
    )
    factory_argv = [str(BIN / "updraft"), "factory", "run", "--config", str(factory_dir / "factory.yaml")]
    d.spawn("factory", "factory", factory_argv)

    # -- 1. jobs at both sites run through pilots that verified pool.test -------------------
    (d.work / "jobs").mkdir()
    give_to_job_account(d.work / "jobs")
    (d.work / "jobs" / "where.sh").write_text("#!/bin/sh\necho ran at $1 on $(hostname -s)\nsleep ${2:-0}\n")
    (d.work / "jobs" / "where.sh").chmod(0o755)
    first = {
        site: d.submit(
            f'executable = where.sh\narguments = $$(GLIDEIN_Site)\noutput = {site}.$(Process).out\n'
            f'+DESIRED_Sites = "{site}"\nqueue 2\n', site,
        )
        for site in ("SiteSSH", "SiteARC")
    }  # fmt: skip
    for site, cluster in first.items():
        for proc in (0, 1):
            wait_for(
                lambda c=cluster, p=proc: d.job(f"{c}.{p}", "JobStatus") == "4",
                480,
                f"job {cluster}.{proc} at {site}",
                then=lambda: d.log("factory"),
            )
            assert (d.work / "jobs" / f"{site}.{proc}.out").read_text().startswith(f"ran at {site}")
    ran = {d.pilot_of(f"{first['SiteSSH']}.{proc}", "LastRemoteHost") for proc in (0, 1)}
    served = wait_for(
        lambda: d.ended("SSH_Slurm", ran), 120, f"the final records of the pilots {sorted(ran)}"
    )
    assert sum(record["jobs"]["started"] for _, record in served) >= 2, served  # both jobs, by these pilots

    # -- 2. the Slurm site loses the pool: its pilots end with exit 3, the jobs come back -----
    long_jobs = d.submit(
        'executable = where.sh\narguments = $$(GLIDEIN_Site) 600\noutput = long.$(Process).out\n'
        '+DESIRED_Sites = "SiteSSH"\n+JobLeaseDuration = 20\nqueue 2\n', "long",
    )  # fmt: skip
    for proc in (0, 1):
        wait_for(
            lambda p=proc: d.job(f"{long_jobs}.{p}", "JobStatus") == "2", 300, f"long job {proc} running"
        )
    # the pilots that run them, as the pool knows them: a glidein can start and take a job
    # between two of the factory's looks at Slurm, so its journal may still say "queued" here
    pilots = {d.pilot_of(f"{long_jobs}.{p}") for p in (0, 1)}
    slurm_host.cut(d.host("pool"))
    for proc in (0, 1):  # the pool's claim lease ends: idle again, to run elsewhere
        wait_for(
            lambda p=proc: d.job(f"{long_jobs}.{p}", "JobStatus") == "1", 180, f"long job {proc} back to idle"
        )

    lost = wait_for(
        lambda: d.ended("SSH_Slurm", pilots), 240, f"the pilots {sorted(pilots)} at SiteSSH to end",
        then=lambda: f"glideins: {d.glideins('SSH_Slurm')}\nfactory log:\n{d.log('factory')}",
    )  # fmt: skip
    assert all(record.get("exit_status") == 3 for _, record in lost), lost  # "lost the pool"
    assert all("pool" in str(record.get("reason")) for _, record in lost), lost
    assert all(glidein["state"] == "failed" for glidein, _ in lost), lost  # a failure, never "no work"
    d.condor("condor_rm", long_jobs)
    slurm_host.mend(d.host("pool"))

    # -- 3. a glidein waiting in Slurm's queue survives a factory restart -------------------
    slurm_env = {"SLURM_CONF": slurm["SLURM_CONF"]}
    node = slurm_host.run("sinfo", "-h", "-N", "-o", "%N", env=slurm_env).stdout.split()[0]
    assert (
        slurm_host.run(
            "scontrol", "update", f"nodename={node}", "state=drain", "reason=test", env=slurm_env
        ).returncode
        == 0
    )
    last = d.submit(
        'executable = where.sh\narguments = $$(GLIDEIN_Site)\noutput = last.out\n+DESIRED_Sites = "SiteSSH"\nqueue\n', "last"
    )  # fmt: skip

    def pending() -> list[dict[str, Any]]:
        return [g for g in d.glideins("SSH_Slurm") if g["state"] == "queued" and g.get("site_id")]

    # a glidein the journal last saw queued may have started just before the drain (and, asked for
    # while the link was cut, never reached the pool), and another may be submitted meanwhile:
    # follow those that have stayed queued for two factory cycles, which can start only after the
    # resume, with the link mended
    pending_since: dict[str, float] = {}

    def settled() -> list[dict[str, Any]]:
        now, current = time.monotonic(), pending()
        ids = {g["glidein_id"] for g in current}
        for glidein_id in list(pending_since):
            if glidein_id not in ids:
                del pending_since[glidein_id]
        return [g for g in current if now - pending_since.setdefault(g["glidein_id"], now) >= 5]

    queued = wait_for(settled, 120, "a glidein that stays pending in the drained cluster")
    port_before = (factory_dir / "state" / "staging.port").read_text()
    d.stop("factory")
    d.spawn("factory", "factory", factory_argv)
    wait_for(lambda: d.cycled("factory", factory_dir), 60, "the restarted factory's first cycle", pause=0.5)
    assert (factory_dir / "state" / "staging.port").read_text() == port_before
    assert (
        slurm_host.run("scontrol", "update", f"nodename={node}", "state=resume", env=slurm_env).returncode
        == 0
    )
    wait_for(
        lambda: d.job(f"{last}.0", "JobStatus") == "4", 300, "the last job", then=lambda: d.log("factory")
    )
    assert (d.work / "jobs" / "last.out").read_text().startswith("ran at SiteSSH")
    started = wait_for(
        lambda: [d.record(g["glidein_id"]) for g in queued if d.record(g["glidein_id"])],
        180,
        "the record of the glidein queued before the restart",
    )
    assert all(r.get("exit_status") == 0 for r in started), started
