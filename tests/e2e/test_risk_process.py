"""``python -m services.risk`` as a process: ready over real Redis and Postgres, the control
API steers it, SIGTERM stops it cleanly, and the next process starts where it stopped."""

from __future__ import annotations

import ipaddress
import signal
from pathlib import Path

import httpx
import pytest

from services.risk.ctl import ControlAuth
from shared.db import upgrade
from tests.e2e.process import ServiceProcess
from tests.support.venue import CONFIG_DIR

TOKEN = "e2e-control-token-5b1d7a9c"
AUTH = ControlAuth(TOKEN, "e2e")


@pytest.fixture
def risk_env(redis_url, pg_url, bus_keys) -> dict[str, str]:
    upgrade(pg_url)
    return {
        "REDIS_URL": redis_url, "DATABASE_URL": pg_url, "BUS_PREFIX": bus_keys.prefix,
        "CONFIG_DIR": str(CONFIG_DIR), "CONTROL_API_TOKEN": TOKEN, "SHUTDOWN_GRACE_S": "5",
    }  # fmt: skip


async def test_a_pause_outlives_the_process_and_the_token_is_never_logged(risk_env, processes):
    first = ServiceProcess("services.risk", risk_env).start()
    processes.append(first)
    await first.wait_ready()
    assert _listening_addresses(first.port) == {"127.0.0.1"}  # not reachable from elsewhere
    async with httpx.AsyncClient(base_url=first.base_url, auth=AUTH, timeout=5) as client:
        paused = await client.post("/v1/pause", json={"reason": "maintenance window"})
        assert paused.status_code == 200 and paused.json()["state"] == "PAUSED"
        assert (
            await client.get("/v1/status", headers={"Authorization": "Bearer no"}, auth=None)
        ).status_code == 401
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == 0

    second = ServiceProcess("services.risk", risk_env).start()
    processes.append(second)
    await second.wait_ready()
    async with httpx.AsyncClient(base_url=second.base_url, auth=AUTH, timeout=5) as client:
        trading = (await client.get("/v1/status")).json()["trading"]
    assert trading["state"] == "PAUSED" and trading["reason"] == "maintenance window"
    assert trading["actor"].startswith("e2e")
    assert TOKEN not in first.log() + second.log()


def _listening_addresses(port: int) -> set[str]:
    """The addresses sockets listen on at ``port``, from the kernel's tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                packed = bytes.fromhex(address)
                if len(packed) == 4:
                    found.add(str(ipaddress.IPv4Address(packed[::-1])))
                else:  # four little-endian 32-bit words
                    words = b"".join(packed[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(str(ipaddress.IPv6Address(words)))
    return found
