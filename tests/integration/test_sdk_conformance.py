"""Coinbase's own Python SDK, unmodified, against exchange-sim over TLS.

If exchange-sim's paths, JWT checks or JSON shapes drifted from Coinbase's, the official
client would fail here: it signs with its own code, and parses every answer into its own
response types.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from coinbase.rest import RESTClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.venue import CdpTestKey, SimHandle, running_sim

pytestmark = pytest.mark.slow


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exchange-sim test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_sim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[SimHandle, CdpTestKey, Path]]:
    key = CdpTestKey.generate("sdk")
    cert, private = _self_signed(tmp_path)
    # How any requests-based client is told to trust a CA: the SDK itself is untouched.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    context = ssl.create_default_context(cafile=str(cert))
    async with running_sim(
        key, scheme="https", ssl_context=context, ssl_certfile=cert, ssl_keyfile=private
    ) as sim:
        yield sim, key, cert


def _sdk(sim: SimHandle, key: CdpTestKey) -> RESTClient:
    client = RESTClient(
        api_key=key.name, api_secret=key.private_pem, base_url=sim.base_url.split("//")[1],
        timeout=10,
    )  # fmt: skip
    return client


def _conversation(client: RESTClient) -> dict[str, object]:
    """What a user of the SDK would do, every answer parsed by the SDK's own types."""
    products = client.get_products()
    now = int(datetime.now(UTC).timestamp())
    candles = client.get_candles("BTC-USD", str(now - 3600), str(now), "ONE_MINUTE")
    best = client.get_best_bid_ask(product_ids=["BTC-USD"])
    bought = client.market_order_buy(str(uuid.uuid4()), "BTC-USD", quote_size="25")
    bid = Decimal(best.pricebooks[0].bids[0].price)
    rested = client.limit_order_gtc_buy(
        str(uuid.uuid4()), "BTC-USD", base_size="0.0001",
        limit_price=str((bid * Decimal("0.95")).quantize(Decimal("0.01"))), post_only=True,
    )  # fmt: skip
    listed = client.list_orders(product_ids=["BTC-USD"], order_status=["OPEN"])
    cancelled = client.cancel_orders(order_ids=[rested.success_response["order_id"]])
    fills = client.get_fills(order_ids=[bought.success_response["order_id"]])
    accounts = client.get_accounts()
    return {
        "products": products, "candles": candles, "best": best, "bought": bought,
        "rested": rested, "listed": listed, "cancelled": cancelled, "fills": fills,
        "accounts": accounts,
    }  # fmt: skip


async def test_the_official_sdk_trades_against_exchange_sim_over_tls(tls_sim):
    sim, key, _ = tls_sim
    result = await asyncio.to_thread(_conversation, _sdk(sim, key))
    products = result["products"]
    assert {p.product_id for p in products.products} == {"BTC-USD", "ETH-USD"}  # type: ignore[attr-defined]
    assert products.products[0].base_increment == "0.00000001"  # type: ignore[attr-defined]
    candles = result["candles"].candles  # type: ignore[attr-defined]
    assert 50 <= len(candles) <= 61 and int(candles[0].start) > int(candles[-1].start)
    best = result["best"].pricebooks[0]  # type: ignore[attr-defined]
    assert Decimal(best.bids[0].price) < Decimal(best.asks[0].price)
    assert result["bought"].success is True  # type: ignore[attr-defined]
    rested = result["rested"]
    assert rested.success is True  # type: ignore[attr-defined]
    rested_id = rested.success_response["order_id"]  # type: ignore[attr-defined]
    assert [o.order_id for o in result["listed"].orders] == [rested_id]  # type: ignore[attr-defined]
    assert result["listed"].orders[0].status == "OPEN"  # type: ignore[attr-defined]
    assert [r.success for r in result["cancelled"].results] == [True]  # type: ignore[attr-defined]
    fills = result["fills"].fills  # type: ignore[attr-defined]
    assert fills and all(f.liquidity_indicator == "TAKER" for f in fills)
    assert sum(Decimal(f.size) for f in fills) > 0
    currencies = {a.currency for a in result["accounts"].accounts}  # type: ignore[attr-defined]
    assert {"USD", "BTC"} <= currencies


async def test_the_sdk_is_refused_with_a_key_the_venue_does_not_know(tls_sim):
    sim, _, _ = tls_sim
    stranger = _sdk(sim, CdpTestKey.generate("stranger"))
    with pytest.raises(Exception, match="401"):
        await asyncio.to_thread(stranger.get_accounts)
