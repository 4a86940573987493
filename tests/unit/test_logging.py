import logging

import orjson
import pytest
from pydantic import SecretStr

from shared.logging import REDACTED, configure_logging, get_logger, redact_text

SECRET = "-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIBsecretsecret\\n-----END EC PRIVATE KEY-----"


@pytest.fixture
def lines(capsys):
    configure_logging("unit-test", "DEBUG", secrets=[SecretStr(SECRET), "control-token-123"])
    yield lambda: [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    logging.getLogger().handlers.clear()


def test_logs_are_one_json_object_per_line_with_service_and_level(lines):
    get_logger("t").info("order placed", product_id="BTC-USD", size="0.1")
    (line,) = lines()
    assert line["event"] == "order placed" and line["product_id"] == "BTC-USD"
    assert line["service"] == "unit-test" and line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_secrets_never_reach_the_output(lines, capsys):
    log = get_logger("t")
    log.info("by key", api_secret="whatever-it-is", authorization="Bearer abc.def")
    log.info("by value", note=f"the key is {SECRET} and the token control-token-123")
    log.info("pem with real newlines", note=SECRET.replace("\\n", "\n"))
    log.info("url", dsn="postgresql://trader:hunter22@db:5432/trading")
    log.info("secretstr", value=SecretStr("another-secret-value"))
    try:
        raise RuntimeError(f"auth failed for {SECRET}")
    except RuntimeError:
        log.exception("failure")
    logging.getLogger("library").warning("library says control-token-123")
    log.info("objects", error=RuntimeError("bad token control-token-123"), raw=b"control-token-123")
    log.info("more keys", secret_key="sk-1", access_key="ak-1", passphrase="pp-1", cookie="c-1")
    log.info("kv dsn", dsn="host=db user=trader password=hunter22 dbname=trading")
    records = lines()
    text = orjson.dumps(records).decode()
    for leaked in ("whatever-it-is", "abc.def", "MHcCAQEEIBsecretsecret", "control-token-123",
                   "hunter22", "another-secret-value", "sk-1", "ak-1", "pp-1", "c-1"):  # fmt: skip
        assert leaked not in text
    assert records[0]["api_secret"] == REDACTED
    assert "postgresql://trader:***@db:5432/trading" == records[3]["dsn"]
    assert "RuntimeError" in records[5]["exception"]


def test_keys_that_merely_mention_a_secret_word_are_not_redacted(lines):
    get_logger("t").info("granted", tokens_granted=5, token_bucket="public", control_token="x" * 8)
    (line,) = lines()
    assert line["tokens_granted"] == 5 and line["token_bucket"] == "public"
    assert line["control_token"] == REDACTED


def test_redact_text_leaves_ordinary_text_alone():
    assert redact_text("BTC-USD filled 0.1 at 64000") == "BTC-USD filled 0.1 at 64000"
