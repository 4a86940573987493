"""Running a service as a real OS process and talking to it over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from deploy.local.servers import free_port
from tests.support.polling import eventually

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    module: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="svc-", suffix=".log")[1])
    )
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        return self.start_args([])

    def start_args(self, args: list[str]) -> ServiceProcess:
        """Start ``python -m module *args`` with this object's environment and port."""
        env = {**os.environ, **self.env, "HTTP_PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *args], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        log.close()
        return self

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            return await client.get(path)

    async def wait_ready(self, within: float = 30) -> None:
        await self.wait_http("/readyz", within)

    async def wait_http(self, path: str, within: float = 30) -> None:
        """Until ``path`` answers 200 on this object's port."""

        async def ready() -> bool:
            self._fail_if_exited()
            try:
                return (await self.get(path)).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, within=within, what=f"{self.module} {path}; log:\n{self.log()}")

    def _fail_if_exited(self) -> None:
        if self.process and self.process.poll() is not None:
            raise AssertionError(f"{self.module} exited early:\n{self.log()}")

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = 20) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, object]]:
        return [orjson.loads(line) for line in self.log().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.log_path.unlink(missing_ok=True)
