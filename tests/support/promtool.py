"""Prometheus's own binaries for the tests: ``promtool`` (checks config, rules, PromQL) and
``prometheus`` (the server), both from the Debian package ``prometheus``.

Found on PATH; when missing and this process may install packages (root, with apt-get),
the package is installed once. Otherwise the test fails with what to install: a check
that quietly does not run would pass for a config it never read.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

__all__ = ["PACKAGE", "prometheus", "prometheus_binary", "promtool"]

PACKAGE = "prometheus"
INSTALL_TIMEOUT_S = 600


def promtool() -> str:
    return prometheus_binary("promtool")


def prometheus() -> str:
    return prometheus_binary("prometheus")


def prometheus_binary(name: str) -> str:
    """The path of ``name`` (``promtool`` or ``prometheus``); fails the test without it."""
    found = shutil.which(name)
    if found is None and _may_install():
        _install()
        found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not on PATH: install the Debian package `{PACKAGE}` "
            f"(apt-get install --no-install-recommends {PACKAGE}), which provides "
            "promtool and prometheus",
            pytrace=False,
        )
    return found


def _may_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


@functools.cache
def _install() -> None:
    """apt-get install, with one ``apt-get update`` first when the package lists are stale."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]

    def run(command: list[str]) -> bool:
        done = subprocess.run(
            command, env=env, capture_output=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
        return done.returncode == 0

    if not run(install):
        run(["apt-get", "update"])
        run(install)
