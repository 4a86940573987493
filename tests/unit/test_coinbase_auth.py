"""CDP credentials from the environment and the per-request ES256 JWT."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.clock import SimulatedClock
from shared.coinbase import CdpCredentials, CredentialsError, credentials_from_env, request_uri
from shared.logging import configure_logging, get_logger

KEY_NAME = "organizations/org-1/apiKeys/key-1"
CLOCK = SimulatedClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


def _pem(key) -> str:  # type: ignore[no-untyped-def]
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_a_fresh_jwt_carries_exactly_the_claims_coinbase_checks(ec_key):
    credentials = CdpCredentials.parse(KEY_NAME, _pem(ec_key))
    token = credentials.jwt_for("get", "api.coinbase.com", "/api/v3/brokerage/accounts?limit=5",
                                CLOCK)  # fmt: skip
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token, ec_key.public_key(), algorithms=["ES256"],
        options={"verify_exp": False, "verify_nbf": False},
    )  # fmt: skip
    now = int(CLOCK.now().timestamp())
    assert header["alg"] == "ES256" and header["kid"] == KEY_NAME and len(header["nonce"]) == 32
    assert claims == {
        "sub": KEY_NAME, "iss": "cdp", "nbf": now, "exp": now + 120,
        "uri": "GET api.coinbase.com/api/v3/brokerage/accounts",
    }  # fmt: skip
    again = credentials.jwt_for("GET", "api.coinbase.com", "/api/v3/brokerage/accounts", CLOCK)
    assert jwt.get_unverified_header(again)["nonce"] != header["nonce"]


def test_a_pem_stored_with_literal_backslash_n_is_accepted(ec_key):
    one_line = _pem(ec_key).strip().replace("\n", "\\n")
    credentials = CdpCredentials.parse(KEY_NAME, one_line)
    token = credentials.jwt_for("POST", "api.coinbase.com", "/api/v3/brokerage/orders", CLOCK)
    claims = jwt.decode(token, ec_key.public_key(), algorithms=["ES256"],
                        options={"verify_exp": False, "verify_nbf": False})  # fmt: skip
    assert claims["uri"] == "POST api.coinbase.com/api/v3/brokerage/orders"


@pytest.mark.parametrize(
    ("key_name", "secret", "words"),
    [
        ("my-key", "ignored", "organizations/{org_id}/apiKeys/{key_id}"),
        (KEY_NAME, "-----BEGIN EC PRIVATE KEY-----\nnot-base64-at-all\n-----END", "not a PEM"),
        (KEY_NAME, "hmac-legacy-secret-0123456789", "not a PEM"),
    ],
)
def test_malformed_keys_are_refused_without_quoting_the_secret(key_name, secret, words):
    with pytest.raises(CredentialsError, match=words) as caught:
        CdpCredentials.parse(key_name, secret)
    assert secret not in str(caught.value)


def test_only_ecdsa_p256_keys_sign_es256():
    rsa_pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(CredentialsError, match="P-256"):
        CdpCredentials.parse(KEY_NAME, rsa_pem)
    p384 = _pem(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(CredentialsError, match="P-256"):
        CdpCredentials.parse(KEY_NAME, p384)


def test_paper_runs_without_keys_and_live_refuses_to(ec_key):
    assert credentials_from_env({}, required=False) is None
    with pytest.raises(CredentialsError, match="LIVE trading needs CB_API_KEY and CB_API_SECRET"):
        credentials_from_env({}, required=True)
    with pytest.raises(CredentialsError, match="CB_API_SECRET is missing"):
        credentials_from_env({"CB_API_KEY": KEY_NAME}, required=False)
    found = credentials_from_env(
        {"CB_API_KEY": KEY_NAME, "CB_API_SECRET": _pem(ec_key)}, required=True
    )
    assert found is not None and found.key_name == KEY_NAME


def test_the_secret_never_reaches_repr_str_or_logs(ec_key, capsys):
    pem = _pem(ec_key)
    body = pem.splitlines()[1]  # a line of the key's base64
    credentials = CdpCredentials.parse(KEY_NAME, pem)
    assert body not in repr(credentials) and body not in str(credentials)
    configure_logging("auth-test", "DEBUG", secrets=[pem])
    try:
        get_logger("t").info("loaded credentials", credentials=credentials, secret=pem)
        logging.getLogger("lib").warning("echo %s", pem)
        out = capsys.readouterr().out
    finally:
        logging.getLogger().handlers.clear()
    assert body not in out
    assert [orjson.loads(line)["event"] for line in out.splitlines()] == [
        "loaded credentials", f"echo {'***'}",
    ]  # fmt: skip


def test_the_uri_claim_never_includes_the_query_string():
    assert request_uri("get", "api.coinbase.com", "/api/v3/brokerage/market/products?limit=1") == (
        "GET api.coinbase.com/api/v3/brokerage/market/products"
    )
