"""Tokens and scopes: who may do what, refused with a clear error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.pilots import ProtocolPilot, slot_ad
from tests.support.pools import RunningPool
from updraft.core.client import Client, ClientError
from updraft.core.payloads import ClaimReport, RevokeRequest, SubmitRequest, TokenRequest
from updraft.core.protocol import AdType, Scope
from userpool.tokens import TokenSigner


def refused(call, status: int) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    return caught.value


def test_no_token_forged_token_expired_token(pool: RunningPool) -> None:
    anonymous = Client(pool.url, None)
    assert "no token" in refused(anonymous.reserve_cluster, 401).message
    forged_signer = TokenSigner(b"not the pool's key but long enough")
    forged = Client(pool.url, forged_signer.issue("root", frozenset({Scope.ADMIN}))[0])
    assert "signature" in refused(forged.reserve_cluster, 401).message
    expired_token = pool.signer().issue("olga", frozenset({Scope.USER}), 1, now=time.time() - 100)[0]
    assert "expired" in refused(Client(pool.url, expired_token).reserve_cluster, 401).message
    assert pool.client().ping().service == "updraft-pool"  # ping needs no token


def test_scopes_limit_actions(pool: RunningPool) -> None:
    pilot_client = pool.client("p1", Scope.PILOT)
    assert "scope user" in refused(pilot_client.reserve_cluster, 403).message
    user = pool.client("olga")
    assert (
        "may not write glidefactory"
        in refused(lambda: user.advertise("glidefactory", [{"Name": '"e1"'}]), 403).message
    )
    frontend = pool.client("fe1", Scope.FRONTEND)
    assert refused(lambda: frontend.advertise("glidefactory", [{"Name": '"e1"'}]), 403)
    assert frontend.advertise("glideclient", [{"Name": '"e1@fe1"'}]) == 1
    factory = pool.client("fa1", Scope.FACTORY)
    assert factory.advertise("glidefactory", [{"Name": '"e1"'}]) == 1
    other_factory = pool.client("fa2", Scope.FACTORY)
    assert (
        "belongs to factory:fa1"
        in refused(lambda: other_factory.advertise("glidefactory", [{"Name": '"e1"'}]), 403).message
    )
    ads = factory.query_ads("glideclient", "", ["Name", "AuthenticatedIdentity"])
    assert ads == [{"Name": '"e1@fe1"', "AuthenticatedIdentity": '"frontend:fe1"'}]


def test_submit_needs_own_reservation(pool: RunningPool) -> None:
    alice, bob = pool.client("olga"), pool.client("pete")
    cluster = alice.reserve_cluster()
    request = SubmitRequest(cluster, {"Cmd": '"/bin/true"'}, [{}])
    assert "reserved by olga" in refused(lambda: bob.submit(request), 403).message
    assert alice.submit(request).count == 1
    assert "not reserved" in refused(lambda: alice.submit(request), 409).message


def test_pilot_cannot_touch_other_claims(pool: RunningPool, workdir: Path) -> None:
    (workdir / "a.sub").write_text('executable = job.sh\n+AuthTag = "claims"\nqueue\n')
    assert pool.run("condor_submit", "a.sub", user="olga", cwd=workdir).returncode == 0
    honest = ProtocolPilot(
        pool.client("honest", Scope.PILOT), slot_ad("slot@honest", START='TARGET.AuthTag =?= "claims"')
    )
    thief = ProtocolPilot(pool.client("thief", Scope.PILOT), slot_ad("slot@thief", START="false"))
    match = honest.take()
    assert (
        "another pilot"
        in refused(
            lambda: thief.client.report(match.claim_id, ClaimReport("exited", exit_code=0)), 403
        ).message
    )
    assert (
        "not known"
        in refused(lambda: thief.client.report("made-up-claim", ClaimReport("started")), 409).message
    )
    # a slot ad name belongs to the pilot that first advertised it
    assert refused(lambda: thief.client.advertise("Machine", [slot_ad("slot@honest")]), 403)
    assert pool.run("condor_q", match.job_id, "-af", "JobStatus", user="olga").stdout.strip() == "2"


def test_token_minting_rules(pool: RunningPool) -> None:
    frontend = pool.client("fe9", Scope.FRONTEND)
    minted = frontend.mint_token(TokenRequest("glidein-x", ["pilot"], 600, {"group": "main"}))
    identity = pool.signer().verify(minted.token)
    assert identity.scopes == {Scope.PILOT} and identity.bindings == {"group": "main", "frontend": "fe9"}
    assert identity.subject == minted.subject == "fe9/glidein-x"  # the frontend's own namespace
    assert refused(lambda: frontend.mint_token(TokenRequest("root", ["admin"], 600)), 403)
    user = pool.client("olga")
    assert refused(lambda: user.mint_token(TokenRequest("pete", ["user"], 600)), 403)
    assert user.mint_token(TokenRequest("olga", ["user"], 600)).subject == "olga"
    renewed = Client(pool.url, minted.token).renew_token()
    assert pool.signer().verify(renewed.token).bindings["frontend"] == "fe9"


def test_cli_token_create(pool: RunningPool) -> None:
    result = pool.run(
        "updraft",
        "token",
        "create",
        "--home",
        str(pool.home),
        "--user",
        "quinn",
        "--scope",
        "user",
        "--lifetime",
        "120",
    )
    assert result.returncode == 0, result.stderr
    token = result.lines[-1]
    identity = pool.signer().verify(token)
    assert identity.subject == "quinn" and identity.scopes == {Scope.USER}
    assert Client(pool.url, token).reserve_cluster() > 0
    bad = pool.run("updraft", "token", "create", "--home", str(pool.home), "--user", "x", "--scope", "wizard")
    assert bad.returncode != 0 and "unknown scope" in bad.stderr


def test_ad_types_and_lifetimes(pool: RunningPool) -> None:
    factory = pool.client("fa-life", Scope.FACTORY)
    factory.advertise(
        AdType.GlideFactory.value, [{"Name": '"short@fa-life"', "GLIDEIN_Site": '"X"'}], lifetime_s=1
    )
    assert factory.query_ads("glidefactory", 'Name == "short@fa-life"')
    time.sleep(1.5)
    assert factory.query_ads("glidefactory", 'Name == "short@fa-life"') == []
    factory.advertise("glidefactory", [{"Name": '"keep@fa-life"', "Weight": "3"}])
    assert factory.invalidate("glidefactory", ["keep@fa-life"]) == 1
    assert "Name" in refused(lambda: factory.advertise("glidefactory", [{"Weight": "3"}]), 400).message
    assert (
        "not a valid"
        in refused(lambda: factory.advertise("glidefactory", [{"Name": '"bad"', "X": "(1 +"}]), 400).message
    )


def test_revoking_a_frontend_stops_its_pilots_renewals(pool: RunningPool) -> None:
    frontend = pool.client("fe-revoked", Scope.FRONTEND)
    pilot_token = frontend.mint_token(TokenRequest("glidein-r", ["pilot"], 600)).token
    pilot = Client(pool.url, pilot_token)
    assert pilot.renew_token().subject == "fe-revoked/glidein-r"
    assert (
        "may revoke only"
        in refused(lambda: frontend.revoke_tokens(RevokeRequest(subject="someone")), 403).message
    )
    assert frontend.revoke_tokens(RevokeRequest(binding="frontend=fe-revoked")) == [
        "bind:frontend=fe-revoked"
    ]
    assert "revoked" in refused(pilot.renew_token, 401).message
    assert "revoked" in refused(Client(pool.url, pilot_token).reserve_cluster, 401).message
    pool.restart()  # revocations are durable
    assert "revoked" in refused(Client(pool.url, pilot_token).renew_token, 401).message
    cli = pool.run("updraft", "token", "revoke", "--subject", "nobody-in-particular")
    assert cli.returncode == 0 and "revoked sub:nobody-in-particular" in cli.stdout
