"""One factory, many VOs (glideinWMS's WMS collector): a second frontend with a user pool of its own.

The factory reads requests and advertises its entries in one pool (here also the first
frontend's user pool, the default on one machine).  The second frontend has its own user
pool: it reads the entries and advertises its requests in the factory's pool, with a token
that pool gave it, and each request names the pool its pilots must join.  The factory's
per-entry limits hold over both frontends at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.glideins import GlideinState
from factory.requests import check_user_pool
from tests.support.factories import FactorySetup, local_entry, wait_for
from tests.support.frontends import FrontendSetup, group
from tests.support.pools import RunningPool, start_pool
from updraft.core import protocol
from updraft.core.protocol import Scope

MAX_GLIDEINS = 2


@pytest.fixture
def second_pool(tmp_path: Path) -> Iterator[RunningPool]:
    running = start_pool(tmp_path / "pool2")
    yield running
    running.stop()


def job_file(site: str, count: int, output: str) -> str:
    return (
        f'executable = job.sh\narguments = $$(GLIDEIN_Site)\noutput = {output}.$(Process)\n+DESIRED_Sites = "{site}"\n'
        f"queue {count}\n"
    )


def test_two_frontends_with_their_own_pools_share_one_factory_and_its_limits(
    pool: RunningPool, second_pool: RunningPool, tmp_path: Path, names: tuple[str, str], workdir: Path
) -> None:
    factory_name, first_name = names
    second_name = first_name + "-vo2"
    site = f"{factory_name}-shared"
    factory_setup = FactorySetup(pool, tmp_path / "factory", name=factory_name)
    factory_setup.entries = [
        local_entry(
            "Shared_local", site, allowed_frontends=[first_name, second_name],
            limits={"max_glideins": MAX_GLIDEINS, "max_idle": MAX_GLIDEINS},
        )
    ]  # fmt: skip
    starts = "stringListMember(MY.GLIDEIN_Site, TARGET.DESIRED_Sites)"
    first = FrontendSetup(pool, tmp_path / "fe1", name=first_name, groups=[group(start_expr=starts)])
    second = FrontendSetup(second_pool, tmp_path / "fe2", name=second_name, groups=[group(start_expr=starts)])
    (tmp_path / "fe2").mkdir()
    (tmp_path / "fe2" / "factory-pool.token").write_text(
        pool.token(second_name, Scope.FRONTEND, lifetime_s=86400)
    )
    try:
        factory = factory_setup.factory()
        factory.cycle()
        fe1 = first.frontend()
        fe2 = second.frontend(factory_pool={"url": pool.url, "token_file": "factory-pool.token"})
        assert fe2.factory_client.url == pool.url and fe2.client.url == second_pool.url

        one = pool.submit(job_file(site, 3, "vo1"), "uma", workdir)
        two = second_pool.submit(job_file(site, 3, "vo2"), "vic", workdir, name="vo2.sub")
        most = 0

        def all_done() -> bool:
            nonlocal most
            fe1.cycle()
            fe2.cycle()
            factory.cycle()
            factory.wait_idle()
            live = factory.journal.live("Shared_local")
            most = max(most, len(live))
            return all(
                target.job(f"{cluster}.{proc}", "JobStatus", user=user, history=True) == "4"
                for target, cluster, user in ((pool, one, "uma"), (second_pool, two, "vic"))
                for proc in range(3)
            )

        wait_for(all_done, 240, pause=0.5, what=f"every job in both pools; factory: {factory.status()}")
        assert 0 < most <= MAX_GLIDEINS  # the entry's limit held over both frontends together
        clients = {g.client for g in factory.journal.recent(0, "Shared_local")}
        assert {f"{first_name}.main", f"{second_name}.main"} <= clients
        # the second frontend's pilots joined its own pool: its jobs ran there, and the request said so
        assert all(
            (workdir / f"vo{n}.{proc}").read_text().strip() == f"job {site}"
            for n in (1, 2)
            for proc in range(3)
        )
        ads = pool.client(second_name, Scope.FRONTEND).query_ads(
            protocol.AdType.GlideClient.value, f'{protocol.ATTR_FRONTEND_NAME} == "{second_name}"'
        )
        assert (
            ads
            and protocol.ad_value(ads[0], protocol.PARAM_PREFIX + protocol.PARAM_USER_POOL) == second_pool.url
        )
        assert not second_pool.client(second_name, Scope.FRONTEND).query_ads(
            protocol.AdType.GlideClient.value
        )
        assert all(g.state != GlideinState.FAILED for g in factory.journal.recent(0, "Shared_local"))
    finally:
        first.stop()
        second.stop()
        factory_setup.stop()


@pytest.mark.parametrize(
    ("url", "ca", "words"),
    [
        ("https://pool.example:9618", "", ""),
        ("http://127.0.0.1:9618", "", ""),
        ("file:///etc/passwd", "", "not an http(s) URL"),
        ("https://user:pw@pool.example", "", "not an http(s) URL"),
        ("https://pool.example/?x=1", "", "not an http(s) URL"),
        (
            "https://pool.example",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not PEM certificates",
        ),
        ("", "something", "CA without its URL"),
    ],
)
def test_a_request_s_user_pool_is_checked_before_pilots_get_it(url: str, ca: str, words: str) -> None:
    problem = check_user_pool(url, ca)
    assert (words in problem) if words else problem == ""
