"""Running a :class:`~deploy.local.compose.Plan` as local processes, as compose would.

Init services run to completion first and must exit 0 (compose's
``service_completed_successfully``); a long-running service starts once what it depends
on is healthy (its healthcheck URL answers 200). Every process's output goes to one
stream, each line prefixed with the service's name. A long-running service that exits
while the stack is up is started again after a back-off, as ``restart: unless-stopped``
does. ``stop`` sends SIGTERM to everything in reverse order, and SIGKILL to what is still
running after the grace period.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import httpx

from deploy.local.compose import LocalService, Plan

__all__ = ["Stack", "StackError"]

_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
_STEADY_S = 30.0  # a run this long resets the back-off


class StackError(RuntimeError):
    """The stack could not be brought up; the message says which service and why."""


@dataclass
class _Running:
    service: LocalService
    process: subprocess.Popen[bytes]
    started: float
    reader: threading.Thread
    restarts: int = 0
    due: float | None = None  # when to start it again after it exited


@dataclass
class Stack:
    plan: Plan
    write: Callable[[str], None]  # one line of the combined log, without its newline
    ready_timeout_s: float = 90.0
    grace_s: float = 15.0
    _running: dict[str, _Running] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    # --- up -----------------------------------------------------------------------------

    def start(self) -> None:
        """Every service in order; raises :class:`StackError` (after stopping what started)
        when an init service fails or a service does not become healthy in time."""
        try:
            for service in self.plan.services:
                self._wait_for_dependencies(service)
                if service.one_shot:
                    self._run_to_completion(service)
                else:
                    self._launch(service)
        except BaseException:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervisor.start()

    def _wait_for_dependencies(self, service: LocalService) -> None:
        for target, condition in service.depends_on.items():
            if condition == "service_healthy":
                self.wait_healthy(target)

    def wait_healthy(self, name: str) -> None:
        target = self.plan.get(name)
        if target.url is None or target.health_path is None:
            return
        url = target.url + target.health_path
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            running = self._running.get(name)
            if running is not None and running.process.poll() is not None:
                code = running.process.returncode
                raise StackError(f"{name} exited with status {code} before it was healthy")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise StackError(f"{name} not healthy within {self.ready_timeout_s:.0f}s ({url})")

    def _run_to_completion(self, service: LocalService) -> None:
        self._log(service.name, f"running {' '.join(service.argv[1:])}")
        running = self._spawn(service)
        code = running.process.wait()
        running.reader.join()
        if code != 0:
            raise StackError(f"{service.name} failed with exit status {code}: see its lines above")
        self._log(service.name, "completed")

    def _launch(self, service: LocalService) -> None:
        self._log(service.name, f"starting {' '.join(service.argv[1:])} on {service.url}")
        with self._lock:
            self._running[service.name] = self._spawn(service)

    def _spawn(self, service: LocalService) -> _Running:
        process = subprocess.Popen(
            service.argv, env=service.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # Ctrl-C reaches us, not them
        )  # fmt: skip
        assert process.stdout is not None
        reader = threading.Thread(
            target=self._relay, args=(service.name, process.stdout), daemon=True
        )
        reader.start()
        return _Running(service, process, time.monotonic(), reader)

    def _relay(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._log(name, raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    def _log(self, name: str, line: str) -> None:
        with self._lock:
            self.write(f"{name:<16}| {line}")

    # --- staying up ---------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            with self._lock:
                entries = list(self._running.values())
            for running in entries:
                if self._stopping.is_set():
                    return
                self._restart_if_exited(running, now)

    def _restart_if_exited(self, running: _Running, now: float) -> None:
        code = running.process.poll()
        if code is None:
            return
        name = running.service.name
        if running.due is None:
            steady = now - running.started >= _STEADY_S
            running.restarts = 0 if steady else running.restarts + 1
            delay = _BACKOFF_S[min(running.restarts, len(_BACKOFF_S) - 1)]
            running.due = now + delay
            self._log(name, f"exited with status {code}; starting it again in {delay:.0f}s")
            return
        if now >= running.due:
            fresh = self._spawn(running.service)
            fresh.restarts = running.restarts
            with self._lock:
                self._running[name] = fresh
            self._log(name, f"started again (pid {fresh.process.pid})")

    def pid(self, name: str) -> int:
        """The running process of a long-running service (it changes when restarted)."""
        return self._running[name].process.pid

    # --- down ---------------------------------------------------------------------------

    def stop(self) -> dict[str, int | None]:
        """SIGTERM in reverse order, SIGKILL after the grace period; each exit status."""
        self._stopping.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=5)
        with self._lock:
            entries = list(reversed(self._running.values()))
        for running in entries:
            if running.process.poll() is None:
                running.process.terminate()
        deadline = time.monotonic() + self.grace_s
        for running in entries:
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            if running.process.poll() is None:
                self._log(running.service.name, f"still running after {self.grace_s:.0f}s: SIGKILL")
                running.process.kill()
                running.process.wait()
            running.reader.join(timeout=5)
        statuses = {r.service.name: r.process.returncode for r in entries}
        for name, code in statuses.items():
            self._log(name, f"stopped (exit status {code})")
        return statuses
