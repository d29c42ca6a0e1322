"""JWT verification: pinned algorithm, required claims, leeway, key rotation; no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from digitaltwin.security.errors import AuthenticationError
from digitaltwin.security.secret_key import SigningKeys
from digitaltwin.security.tokens import TokenCodec

OLD, NEW = "o" * 40, "n" * 40


def _now() -> datetime:
    return datetime.now(UTC)  # PyJWT checks exp/iat against the real clock, so tests use it too


def _codec(keys: SigningKeys, *, leeway_s: int = 30) -> TokenCodec:
    return TokenCodec(keys, algorithm="HS256", access_ttl=timedelta(minutes=30), leeway_s=leeway_s, clock=_now)


def _token(key: str, **claims: object) -> str:
    now = _now()
    base = {"sub": "u1", "iat": now, "exp": now + timedelta(minutes=30), "use": "access", "sid": "s1"}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, key, algorithm="HS256")


def test_issued_access_token_has_the_claims() -> None:
    codec = _codec(SigningKeys(NEW))
    claims = codec.decode(codec.issue_access(user_id="u1", role="viewer", session_id="s1", amr="pwd").token, purpose="access")
    assert claims["sub"] == "u1" and claims["role"] == "viewer" and claims["sid"] == "s1"
    assert claims["exp"] - claims["iat"] == 1800 and len(claims["jti"]) == 32
    assert jwt.get_unverified_header(codec.issue_access(user_id="u", role="r", session_id="s", amr="pwd").token)["alg"] == "HS256"


@pytest.mark.parametrize("missing", ["sub", "exp", "iat"])
def test_required_claims(missing: str) -> None:
    with pytest.raises(AuthenticationError):
        _codec(SigningKeys(NEW)).decode(_token(NEW, **{missing: None}), purpose="access")


def test_leeway_for_clock_skew() -> None:
    NOW = _now()  # noqa: N806
    codec = _codec(SigningKeys(NEW))
    expired_20s_ago = _token(NEW, iat=NOW - timedelta(minutes=30), exp=NOW - timedelta(seconds=20))
    assert codec.decode(expired_20s_ago, purpose="access")["sub"] == "u1"
    with pytest.raises(AuthenticationError, match="expired"):
        codec.decode(_token(NEW, iat=NOW - timedelta(minutes=31), exp=NOW - timedelta(seconds=60)), purpose="access")
    # issued "in the future" by a server whose clock is 20 s ahead: accepted; 2 minutes ahead: refused
    assert codec.decode(_token(NEW, iat=NOW + timedelta(seconds=20)), purpose="access")
    with pytest.raises(AuthenticationError):
        codec.decode(_token(NEW, iat=NOW + timedelta(minutes=2)), purpose="access")


def test_previous_key_verifies_during_its_grace_period_only() -> None:
    NOW = _now()  # noqa: N806
    old_token = _token(OLD)
    rotated = SigningKeys(NEW, previous=OLD, previous_until=NOW + timedelta(minutes=10))
    assert _codec(rotated).decode(old_token, purpose="access")["sub"] == "u1"
    assert _codec(rotated).decode(_token(NEW), purpose="access")["sub"] == "u1"
    over = SigningKeys(NEW, previous=OLD, previous_until=NOW - timedelta(seconds=1))
    with pytest.raises(AuthenticationError):  # grace period over
        _codec(over).decode(old_token, purpose="access")
    with pytest.raises(AuthenticationError):  # no previous key configured
        _codec(SigningKeys(NEW)).decode(old_token, purpose="access")
    # the previous key never signs
    assert _codec(rotated).decode(_codec(rotated).issue_mfa_challenge(user_id="u").token, purpose="mfa")
    issued = _codec(rotated).issue_access(user_id="u", role="r", session_id="s", amr="pwd").token
    jwt.decode(issued, NEW, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})


def test_purpose_is_checked() -> None:
    codec = _codec(SigningKeys(NEW))
    with pytest.raises(AuthenticationError):
        codec.decode(codec.issue_mfa_challenge(user_id="u1").token, purpose="access")
    with pytest.raises(AuthenticationError):
        codec.decode(_token(NEW), purpose="mfa", field="mfa_token")


def test_a_remembered_token_still_expires_and_keeps_its_purpose(monkeypatch: pytest.MonkeyPatch) -> None:
    import digitaltwin.security.tokens as tokens

    codec = _codec(SigningKeys(NEW), leeway_s=5)
    token = _token(NEW, exp=_now() + timedelta(seconds=60))
    assert codec.decode(token, purpose="access")["sub"] == "u1"
    assert token in codec._verified  # verified once, with the current key
    with pytest.raises(AuthenticationError, match="not an MFA token"):
        codec.decode(token, purpose="mfa")
    later = tokens.time.time() + 64  # past exp, within the leeway: still valid
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    assert codec.decode(token, purpose="access")["sub"] == "u1"
    monkeypatch.setattr(tokens.time, "time", lambda: later + 2)  # past exp + leeway: checked again, and refused
    monkeypatch.setattr(jwt.api_jwt, "datetime", type("D", (), {"now": staticmethod(lambda tz=None: datetime.fromtimestamp(later + 2, tz))}))
    with pytest.raises(AuthenticationError, match="expired"):
        codec.decode(token, purpose="access")


def test_tokens_of_the_previous_key_are_not_remembered() -> None:
    codec = _codec(SigningKeys(NEW, previous=OLD, previous_until=_now() + timedelta(hours=1)))
    token = _token(OLD)
    assert codec.decode(token, purpose="access")["sub"] == "u1"
    assert token not in codec._verified  # so the grace period's end stops it
