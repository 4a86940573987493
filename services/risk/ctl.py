"""``python -m services.risk.ctl``: steer a running stack from the command line.

Each request is signed with a fresh, single-use token made from ``CONTROL_API_TOKEN``
(read from the environment, or from ``--token-file``; never from the command line, where
other users of the machine could read it). Answers are printed as JSON.

    python -m services.risk.ctl status
    python -m services.risk.ctl --actor alice pause "news at 14:00"
    python -m services.risk.ctl resume "calm again" [--reset-high-water-mark]
    python -m services.risk.ctl flatten "incident" [--products BTC-USD ETH-USD]
    python -m services.risk.ctl flatten-status flt-0123456789ab
    python -m services.risk.ctl positions | decisions [--limit 20] [--outcome REJECTED]
    python -m services.risk.ctl token POST /v1/pause     # one token, for curl

Exit status: 0 on a 2xx answer, 1 on any other answer, 2 on a usage or connection error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import SecretStr

from services.risk.control_auth import ACTOR, DEFAULT_ACTOR, mint_token

DEFAULT_URL = "http://127.0.0.1:8030"


class ControlAuth(httpx.Auth):
    """Signs every request an httpx client sends with a fresh token."""

    def __init__(self, secret: str | SecretStr, actor: str = DEFAULT_ACTOR) -> None:
        self._secret = secret
        self._actor = actor

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = mint_token(self._secret, request.method, request.url.path, actor=self._actor)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.risk.ctl", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--url", default=os.environ.get("RISK_URL", DEFAULT_URL),
                        help=f"risk's address (RISK_URL, default {DEFAULT_URL})")  # fmt: skip
    parser.add_argument("--token-file", type=Path,
                        help="read CONTROL_API_TOKEN from this file instead")  # fmt: skip
    parser.add_argument("--actor", default=_default_actor(),
                        help="who acts, for the audit trail (default: your user name)")  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="trading state, equity, exposure, PnL")
    commands.add_parser("positions", help="every position")
    decisions = commands.add_parser("decisions", help="risk's decisions, newest first")
    decisions.add_argument("--limit", type=int, default=20)
    decisions.add_argument("--product")
    decisions.add_argument("--outcome", choices=["APPROVED", "RESIZED", "REJECTED"])
    pause = commands.add_parser("pause", help="no new entries")
    pause.add_argument("reason")
    resume = commands.add_parser("resume", help="entries may open again")
    resume.add_argument("reason")
    resume.add_argument("--reset-high-water-mark", action="store_true")
    flatten = commands.add_parser("flatten", help="sell every position (or --products)")
    flatten.add_argument("reason")
    flatten.add_argument("--products", nargs="+")
    progress = commands.add_parser("flatten-status", help="a flatten's progress")
    progress.add_argument("flatten_id")
    token = commands.add_parser("token", help="print one token for METHOD PATH")
    token.add_argument("method", choices=["GET", "POST"])
    token.add_argument("path")
    args = parser.parse_args(argv)
    if not ACTOR.fullmatch(args.actor):
        parser.error("--actor: 1 to 64 letters, digits, spaces or . @ _ -")
    return args


def _default_actor() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return "operator"
    return name if ACTOR.fullmatch(name) else "operator"


def _secret(args: argparse.Namespace) -> str:
    token_file: Path | None = args.token_file
    if token_file is not None:
        try:
            value = token_file.read_text().strip()
        except OSError as exc:
            raise SystemExit(f"ctl: cannot read {token_file}: {exc.strerror}") from None
    else:
        value = os.environ.get("CONTROL_API_TOKEN", "").strip()
    if not value:
        raise SystemExit("ctl: set CONTROL_API_TOKEN or pass --token-file")
    return value


def request_of(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None, dict[str, Any]]:
    """Method, path, JSON body and query of the command."""
    match args.command:
        case "status" | "positions":
            return "GET", f"/v1/{args.command}", None, {}
        case "decisions":
            query = {"limit": args.limit, "product_id": args.product, "outcome": args.outcome}
            return "GET", "/v1/decisions", None, {k: v for k, v in query.items() if v}
        case "pause":
            return "POST", "/v1/pause", {"reason": args.reason}, {}
        case "resume":
            body = {"reason": args.reason, "reset_high_water_mark": args.reset_high_water_mark}
            return "POST", "/v1/resume", body, {}
        case "flatten":
            body = {"reason": args.reason, **({"products": args.products} if args.products else {})}
            return "POST", "/v1/flatten", body, {}
        case "flatten-status":
            return "GET", f"/v1/flatten/{args.flatten_id}", None, {}
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    secret = _secret(args)
    if args.command == "token":
        path = unquote(urlsplit(args.path).path)  # signed decoded, without a query
        print(mint_token(secret, args.method, path, actor=args.actor))
        return 0
    method, path, body, query = request_of(args)
    try:
        with httpx.Client(
            base_url=args.url, auth=ControlAuth(secret, args.actor), timeout=10
        ) as client:
            answer = client.request(method, path, json=body, params=query)
    except httpx.HTTPError as exc:
        print(f"ctl: {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        shown: Any = answer.json()
    except ValueError:
        shown = answer.text
    print(json.dumps(shown, indent=2) if not isinstance(shown, str) else shown)
    return 0 if answer.is_success else 1


if __name__ == "__main__":
    sys.exit(main())
