"""gLExec (with a stand-in that really switches accounts), bubblewrap, and squid, each for real."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pilots_real import PilotLauncher
from tests.support.pools import RunningPool
from tests.support.services import (
    Glexec,
    install_glexec,
    public_tempdir,
    require_program,
    require_root,
    start_squid,
)


def tagged(tag: str, body: str) -> str:
    return f'+TestTag = "{tag}"\n{body}'


def only(tag: str) -> str:
    return f'TARGET.TestTag =?= "{tag}"'


@pytest.fixture(scope="module")
def glexec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Glexec]:
    require_root("gLExec tests")
    directory = public_tempdir("updraft-glexec-")
    yield install_glexec(directory, {"pilot": "updraft_pilot", "alice": "updraft_alice"})
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def public_work(pilots: PilotLauncher) -> Iterator[Path]:
    work = public_tempdir("updraft-wn-")
    yield work
    shutil.rmtree(work, ignore_errors=True)


def whoami_job(pool: RunningPool, workdir: Path, tag: str, proxy: Path | None) -> str:
    (workdir / "who.sh").write_text('#!/bin/sh\nid -un\ntest -r "$X509_USER_PROXY" && echo proxy-readable\n')
    (workdir / "who.sh").chmod(0o755)
    lines = ["executable = who.sh", "output = who.$(Cluster).out", "error = who.$(Cluster).err"]
    if proxy is not None:
        shutil.copy(proxy, workdir / "user.proxy")
        lines.append("x509userproxy = user.proxy")
    return pool.submit(tagged(tag, "\n".join([*lines, "queue"]) + "\n"), "alice", workdir)


def test_glexec_required_runs_jobs_as_their_owner(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path, glexec: Glexec, public_work: Path
) -> None:
    cluster = whoami_job(pool, workdir, "glx-req", glexec.user_proxies["alice"])
    pilot = pilots.start(
        start_expr=only("glx-req"), glexec_policy="REQUIRED", glexec=str(glexec.path), work_dir=str(public_work),
        tail_timeout_s=1, lifetime_s=3600, env={"X509_USER_PROXY": str(glexec.pilot_proxy)},
    )  # fmt: skip
    result = pilot.wait()
    glexec_check = next(c for c in result["checks"] if c["name"] == "glexec")
    assert glexec_check["ok"] and glexec_check["metrics"]["mapped_to"] == "updraft_pilot"
    assert result["jobs"]["exited"] == 1, pilot.log()
    output = (workdir / f"who.{cluster}.out").read_text().split()
    assert output == ["updraft_alice", "proxy-readable"]
    log = glexec.log.read_text()
    assert "CN=Alice Tester -> updraft_alice" in log and "CN=Pilot Tester -> updraft_pilot" in log


def test_glexec_optional_without_glexec_runs_as_pilot(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path
) -> None:
    require_root("comparing accounts")
    cluster = whoami_job(pool, workdir, "glx-opt", None)
    pilot = pilots.start(
        start_expr=only("glx-opt"), glexec_policy="OPTIONAL", glexec="none", tail_timeout_s=1
    )
    assert pilot.wait()["jobs"]["exited"] == 1
    assert (workdir / f"who.{cluster}.out").read_text().split()[0] == "root"


def test_glexec_never_ignores_an_installed_glexec(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path, glexec: Glexec
) -> None:
    cluster = whoami_job(pool, workdir, "glx-never", glexec.user_proxies["alice"])
    pilot = pilots.start(
        start_expr=only("glx-never"), glexec_policy="NEVER", glexec=str(glexec.path), tail_timeout_s=1
    )
    result = pilot.wait()
    assert "not used (NEVER" in next(c for c in result["checks"] if c["name"] == "glexec")["message"]
    assert (workdir / f"who.{cluster}.out").read_text().split()[0] == "root"


def test_broken_glexec_fails_validation(pilots: PilotLauncher, glexec: Glexec, tmp_path: Path) -> None:
    from tests.support.proxies import make_user_proxy

    stranger = tmp_path / "stranger.proxy"
    make_user_proxy(stranger, hours=48, common_name="Unknown Stranger")
    pilot = pilots.start(
        glexec_policy="OPTIONAL",
        glexec=str(glexec.path),
        lifetime_s=3600,
        env={"X509_USER_PROXY": str(stranger)},
    )
    failed = pilot.wait()["checks"][-1]
    assert (failed["name"], failed["code"], failed["failure_type"]) == ("glexec", 2502, "WN_Resource")
    assert "not authorized" in failed["message"]


def test_job_without_proxy_on_a_glexec_pilot_is_held(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path, glexec: Glexec, public_work: Path
) -> None:
    cluster = whoami_job(pool, workdir, "glx-noproxy", None)
    pilot = pilots.start(
        start_expr=only("glx-noproxy"), glexec_policy="REQUIRED", glexec=str(glexec.path), work_dir=str(public_work),
        tail_timeout_s=1, lifetime_s=3600, env={"X509_USER_PROXY": str(glexec.pilot_proxy)},
    )  # fmt: skip
    pilot.wait()
    assert pool.job(f"{cluster}.0", "JobStatus", "HoldReasonCode", user="alice") == "5 6", pilot.log()
    assert "proxy" in pool.job(f"{cluster}.0", "HoldReason", user="alice")


def test_bubblewrap_isolates_jobs(pool: RunningPool, pilots: PilotLauncher, workdir: Path) -> None:
    require_program("bwrap", "bubblewrap")
    marker = Path("/tmp/updraft-host-marker")
    marker.write_text("the host's /tmp")
    (workdir / "escape.sh").write_text(
        "#!/bin/sh\nif touch /etc/updraft-escape-test 2>/dev/null; then echo escaped; else echo contained; fi\n"
        "echo secret > /tmp/updraft-bwrap-private\nls /tmp | grep updraft-\n"
    )
    (workdir / "escape.sh").chmod(0o755)
    cluster = pool.submit(
        tagged("bwrap", "executable = escape.sh\noutput = escape.out\nqueue\n"), "alice", workdir
    )
    pilot = pilots.start(start_expr=only("bwrap"), isolation="bwrap", tail_timeout_s=1)
    result = pilot.wait()
    assert "bubblewrap" in next(c for c in result["checks"] if c["name"] == "glexec")["message"], pilot.log()
    assert result["jobs"]["exited"] == 1, pilot.log()
    assert (workdir / "escape.out").read_text().split() == [
        "contained",
        "updraft-bwrap-private",
    ]  # no host marker
    marker.unlink()
    assert not Path("/etc/updraft-escape-test").exists() and not Path("/tmp/updraft-bwrap-private").exists()
    assert pool.job(f"{cluster}.0", "ExitCode", user="alice", history=True) == "0"


def test_squid_is_found_verified_and_given_to_jobs(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path
) -> None:
    squid = start_squid()
    try:
        (workdir / "proxy.sh").write_text('#!/bin/sh\necho "$http_proxy"\n')
        (workdir / "proxy.sh").chmod(0o755)
        cluster = pool.submit(
            tagged("squid", "executable = proxy.sh\noutput = proxy.out\nqueue\n"), "alice", workdir
        )
        pilot = pilots.start(start_expr=only("squid"), tail_timeout_s=1, env={"GLIDEIN_Proxy_URL": squid.url})
        result = pilot.wait()
        check = next(c for c in result["checks"] if c["name"] == "squid")
        assert check["ok"] and check["metrics"]["proxy"] == squid.url, check
        assert "updraft-test-squid" in check["metrics"]["via"]
        assert "/v1/ping" in squid.access_log()
        assert (workdir / "proxy.out").read_text().strip() == squid.url
        ads = pool.client().query_ads("Machine", f'GLIDEIN_Proxy_URL == "{squid.url}"', ["Name"])
        assert ads == [] or all("Name" in ad for ad in ads)  # withdrawn at exit; shown while it ran
        assert pool.job(f"{cluster}.0", "JobStatus", user="alice", history=True) == "4"
    finally:
        squid.stop()
