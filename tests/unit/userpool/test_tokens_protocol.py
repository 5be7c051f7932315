import time

import pytest

from updraft.core import payloads, protocol
from updraft.core.errors import BadRequest, Unauthorized
from userpool.tokens import TokenSigner


def test_token_roundtrip_and_refusals() -> None:
    signer = TokenSigner(b"k" * 32)
    token, _ = signer.issue("alice", frozenset({protocol.Scope.USER}), 60, {"group": "g"})
    identity = signer.verify(token)
    assert identity.subject == "alice" and identity.bindings == {"group": "g"} and not identity.is_admin
    with pytest.raises(Unauthorized, match="signature"):
        TokenSigner(b"x" * 32).verify(token)
    with pytest.raises(Unauthorized, match="expired"):
        signer.verify(signer.issue("a", frozenset({protocol.Scope.USER}), 1, now=time.time() - 10)[0])
    with pytest.raises(Unauthorized, match="malformed"):
        signer.verify("garbage")
    signer.revoke(f"jti:{identity.token_id}")
    with pytest.raises(Unauthorized, match="revoked"):
        signer.verify(token)
    with pytest.raises(BadRequest):
        signer.issue("two words", frozenset({protocol.Scope.USER}))


def test_revocations_cover_tokens_issued_up_to_then_and_lifetimes_are_capped() -> None:
    signer = TokenSigner(b"k" * 32, max_lifetime_s=3600)
    old = signer.issue(
        "fe1/main", frozenset({protocol.Scope.PILOT}), 600, {"frontend": "fe1"}, now=time.time() - 60
    )[0]
    signer.revoke("bind:frontend=fe1", time.time() - 30)
    with pytest.raises(Unauthorized, match="revoked"):
        signer.verify(old)
    fresh = signer.issue("fe1/main", frozenset({protocol.Scope.PILOT}), 600, {"frontend": "fe1"})[0]
    assert signer.verify(fresh).subject == "fe1/main"  # minted after the revocation
    with pytest.raises(BadRequest, match="max_token_lifetime_s"):
        signer.issue("alice", frozenset({protocol.Scope.USER}), 7200)
    longer = TokenSigner(b"k" * 32, max_lifetime_s=10 * 3600).issue(
        "alice", frozenset({protocol.Scope.USER}), 7200
    )[0]
    with pytest.raises(Unauthorized, match="at most 3600 s"):
        signer.verify(longer)


def test_payloads_refuse_unknown_fields() -> None:
    with pytest.raises(protocol.ProtocolError, match="unknown field"):
        payloads.QueryRequest.from_dict({"constraint": "", "colour": 1})
    request = payloads.PollResult.from_dict(
        {"matches": [{"claim_id": "c", "job_id": "1.0", "job_ad": {}, "lease_s": 5}]}
    )
    assert isinstance(request.matches[0], payloads.Match)


@pytest.mark.parametrize("value", [None, True, 3, 1.5, 'a"b\\c\n', [1, "x"]])
def test_literals_roundtrip(value: object) -> None:
    from updraft.core import classads

    text = protocol.literal(value)
    assert classads.to_python(classads.value_of_text(text)) == value
    if not isinstance(value, list):
        assert protocol.parse_literal(text) == value


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "", "a\\b", "a\x00"])
def test_unsafe_paths(bad: str) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.safe_relative_path(bad)


def test_job_ids() -> None:
    assert protocol.parse_job_id("12.3") == (12, 3) and protocol.parse_job_id("12") == (12, None)
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_job_id("x.1")
