"""The Coinbase Advanced Trade REST client: signed requests through the rate limiter.

Every request leaves through :class:`shared.ratelimit.RateLimitedTransport` (see
:func:`create_rest_client`), so it takes a token on the public or private channel first.
Market data uses the authenticated endpoints when a key is configured (the larger
private budget) and the unauthenticated ``/market/`` twins otherwise. Without a key a
private call is never sent: it raises :class:`CredentialsError`.

Reads are retried on 429, 5xx, timeouts and refused connections. Writes are retried only
where that is safe: a cancel can be repeated, and a create-order whose outcome is
unknown is resolved by looking the order up by its ``client_order_id`` and, only if it
is not there, sending the *same* request again (Coinbase deduplicates by that id).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx

from shared.clock import Clock
from shared.coinbase import models
from shared.coinbase.auth import CdpCredentials
from shared.coinbase.errors import (
    CoinbaseError,
    CredentialsError,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    VenueUnreachable,
)
from shared.coinbase.granularity import Granularity
from shared.coinbase.orders import order_body
from shared.coinbase.transport import RequestSender
from shared.logging import get_logger
from shared.matching.types import OrderRequest

__all__ = ["CANDLES_PER_REQUEST", "CoinbaseRest"]

CANDLES_PER_REQUEST = 350
CANCEL_BATCH = 100
_log = get_logger("shared.coinbase.rest")
T = TypeVar("T")


class CoinbaseRest:
    """Typed calls on Coinbase Advanced Trade (or exchange-sim, which speaks the same)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        credentials: CdpCredentials | None,
        clock: Clock,
        read_attempts: int = 3,
        resolve_attempts: int = 4,
        resolve_delay_s: float = 0.25,
        page_size: int = 250,
    ) -> None:
        self._send = RequestSender(http, credentials, clock)
        self._clock = clock
        self._authenticated = credentials is not None
        self._read_attempts = read_attempts
        self._resolve_attempts = resolve_attempts
        self._resolve_delay_s = resolve_delay_s
        self._page_size = page_size

    @property
    def authenticated(self) -> bool:
        return self._authenticated

    # -- market data -------------------------------------------------------------------

    async def products(self) -> list[models.Product]:
        body = await self._read("GET", self._market("/products"))
        return [models.Product.model_validate(p) for p in body.get("products", [])]

    async def product(self, product_id: str) -> models.Product:
        body = await self._read("GET", self._market(f"/products/{product_id}"))
        return models.Product.model_validate(body)

    async def best_bid_ask(self, product_ids: Sequence[str]) -> models.BestBidAsk:
        """Top of book per product (an authenticated endpoint: it has no public twin)."""
        body = await self._read(
            "GET", "/best_bid_ask", params={"product_ids": list(product_ids)}, private=True
        )
        return models.BestBidAsk.model_validate(body)

    async def product_book(self, product_id: str, limit: int | None = None) -> models.ProductBook:
        params: dict[str, Any] = {"product_id": product_id}
        if limit is not None:
            params["limit"] = limit
        body = await self._read("GET", self._market("/product_book"), params=params)
        return models.ProductBook.model_validate(body)

    async def market_trades(self, product_id: str, limit: int = 100) -> models.MarketTrades:
        path = self._market(f"/products/{product_id}/ticker")
        body = await self._read("GET", path, params={"limit": limit})
        return models.MarketTrades.model_validate(body)

    async def candles(
        self, product_id: str, start: datetime, end: datetime, granularity: Granularity | str
    ) -> list[models.Candle]:
        """Candles whose bucket starts in ``[start, end)``, oldest first, paging past 350."""
        pages = [page async for page in self.candle_pages(product_id, start, end, granularity)]
        return [candle for page in pages for candle in page]

    async def candle_pages(
        self, product_id: str, start: datetime, end: datetime, granularity: Granularity | str
    ) -> AsyncIterator[list[models.Candle]]:
        """The same candles, one request's worth at a time (for long downloads)."""
        seconds = _granularity_seconds(granularity)
        first, stop = _ceil_to(int(start.timestamp()), seconds), int(end.timestamp())
        path = self._market(f"/products/{product_id}/candles")
        for window_start in range(first, stop, seconds * CANDLES_PER_REQUEST):
            # Coinbase's ``end`` is inclusive: the last bucket of this window starts there.
            window_end = min(window_start + seconds * (CANDLES_PER_REQUEST - 1), stop - 1)
            params = {"start": window_start, "end": window_end, "granularity": granularity}
            body = await self._read("GET", path, params=params)
            page = [models.Candle.model_validate(c) for c in body.get("candles", [])]
            yield sorted((c for c in page if window_start <= c.start <= window_end),
                         key=lambda c: c.start)  # fmt: skip

    # -- orders ------------------------------------------------------------------------

    async def create_order(self, request: OrderRequest) -> models.CreateOrderResult:
        """Place one order; exactly once, even when the first answer never arrives.

        Once an attempt's outcome is unknown, every later failure (of the lookup or of the
        resend) ends in :class:`OutcomeUnknown`, never in an error that could read as
        "not placed": the caller must reconcile, not retry with a new id.
        """
        body = order_body(request)
        submitted_at = self._clock.now()
        uncertain = False
        last: CoinbaseError | None = None
        for attempt in range(self._resolve_attempts):
            try:
                if uncertain:
                    found = await self._find_by_client_id(request, submitted_at)
                    if found is not None:
                        return found
                answer = await self._send.request("POST", "/orders", json=body, private=True)
                return await self._accepted_or_raise(request, answer, submitted_at)
            except (CredentialsError, OrderRejected):
                raise
            except CoinbaseError as exc:
                if not uncertain and not isinstance(
                    exc, RateLimited | VenueUnreachable | OutcomeUnknown
                ):
                    raise  # refused outright (401, 400, ...): nothing was placed
                uncertain = uncertain or isinstance(exc, OutcomeUnknown)
                last = exc
                _log.warning(
                    "create order not confirmed; will look it up and resend the same request",
                    client_order_id=request.client_order_id,
                    attempt=attempt + 1,
                    error=str(exc),
                )
                await self._wait_after(exc, attempt)
        message = (
            f"order {request.client_order_id}: not confirmed after {self._resolve_attempts} "
            f"attempts (last: {last}); reconcile before trading this product"
        )
        if uncertain:
            raise OutcomeUnknown(message)
        assert last is not None
        raise last

    async def _accepted_or_raise(
        self,
        request: OrderRequest,
        answer: dict[str, Any],
        submitted_at: datetime,
    ) -> models.CreateOrderResult:
        if answer.get("success"):
            success = answer.get("success_response") or {}
            return models.CreateOrderResult(
                order_id=str(success.get("order_id") or answer.get("order_id")),
                client_order_id=request.client_order_id,
                product_id=request.product_id,
                side=request.side.value,
            )
        error = answer.get("error_response") or {}
        reason = _failure_reason(answer, error)
        if reason == "DUPLICATE_CLIENT_ORDER_ID":
            found = await self._find_by_client_id(request, submitted_at)
            if found is not None:
                return found
            # The venue has an order with this id that we cannot see: it is not refused.
            raise OutcomeUnknown(
                f"order {request.client_order_id}: the venue holds it as a duplicate but "
                "it is not in the recent order list; reconcile"
            )
        message = str(error.get("message") or error.get("error_details") or reason)
        raise OrderRejected(f"order {request.client_order_id} rejected: {message}", reason)

    async def _find_by_client_id(
        self, request: OrderRequest, submitted_at: datetime
    ) -> models.CreateOrderResult | None:
        # A margin before submission covers clock skew between us and the venue.
        since = submitted_at - timedelta(minutes=5)
        async for order in self._order_stream(product_ids=[request.product_id], start=since):
            if order.client_order_id == request.client_order_id:
                return models.CreateOrderResult(
                    order_id=order.order_id,
                    client_order_id=order.client_order_id,
                    product_id=order.product_id,
                    side=order.side,
                    resolved_by_lookup=True,
                )
        return None

    async def _wait_after(self, exc: CoinbaseError, attempt: int) -> None:
        """A 429's reset time; otherwise a doubling delay that lets a slow venue list it."""
        if isinstance(exc, RateLimited):
            delay = exc.reset_after_s
        else:
            delay = self._resolve_delay_s * 2**attempt
        await self._clock.sleep(min(delay, 10.0))

    async def cancel_orders(self, order_ids: Sequence[str]) -> list[models.CancelResult]:
        """Batch cancel (100 ids per request); repeating a cancel is harmless, so it retries."""
        results: list[models.CancelResult] = []
        for offset in range(0, len(order_ids), CANCEL_BATCH):
            chunk = list(order_ids[offset : offset + CANCEL_BATCH])
            body = await self._read(
                "POST", "/orders/batch_cancel", json={"order_ids": chunk}, private=True
            )
            results += [models.CancelResult.model_validate(r) for r in body.get("results", [])]
        return results

    async def order(self, order_id: str) -> models.Order:
        body = await self._read("GET", f"/orders/historical/{order_id}", private=True)
        return models.Order.model_validate(body.get("order", {}))

    async def list_orders(
        self,
        *,
        product_ids: Sequence[str] = (),
        order_ids: Sequence[str] = (),
        order_status: Sequence[str] = (),
        start: datetime | None = None,
    ) -> list[models.Order]:
        """Every matching order, following the cursor through all pages."""
        stream = self._order_stream(
            product_ids=product_ids, order_ids=order_ids, order_status=order_status, start=start
        )
        return [order async for order in stream]

    async def _order_stream(
        self,
        *,
        product_ids: Sequence[str] = (),
        order_ids: Sequence[str] = (),
        order_status: Sequence[str] = (),
        start: datetime | None = None,
    ) -> AsyncIterator[models.Order]:
        params: dict[str, Any] = {"limit": self._page_size}
        _add_list(params, "product_ids", product_ids)
        _add_list(params, "order_ids", order_ids)
        _add_list(params, "order_status", order_status)
        if start is not None:
            params["start_date"] = _rfc3339(start)
        async for page in self._pages("/orders/historical/batch", params, models.OrdersPage):
            for order in page.orders:
                yield order

    async def list_fills(
        self,
        *,
        order_ids: Sequence[str] = (),
        trade_ids: Sequence[str] = (),
        product_ids: Sequence[str] = (),
        start: datetime | None = None,
    ) -> list[models.Fill]:
        """Every matching fill, following the cursor through all pages."""
        params: dict[str, Any] = {"limit": self._page_size}
        _add_list(params, "order_ids", order_ids)
        _add_list(params, "trade_ids", trade_ids)
        _add_list(params, "product_ids", product_ids)
        if start is not None:
            params["start_sequence_timestamp"] = _rfc3339(start)
        return [
            fill
            async for page in self._pages("/orders/historical/fills", params, models.FillsPage)
            for fill in page.fills
        ]

    # -- account -----------------------------------------------------------------------

    async def accounts(self) -> list[models.Account]:
        return [
            account
            async for page in self._pages(
                "/accounts", {"limit": self._page_size}, models.AccountsPage
            )
            for account in page.accounts
        ]

    async def transaction_summary(self) -> models.TransactionSummary:
        body = await self._read("GET", "/transaction_summary", private=True)
        return models.TransactionSummary.model_validate(body)

    # -- plumbing ----------------------------------------------------------------------

    def _market(self, path: str) -> str:
        return path if self._authenticated else f"/market{path}"

    async def _pages(
        self, path: str, params: dict[str, Any], model: type[Any]
    ) -> AsyncIterator[Any]:
        cursor = ""
        seen: set[str] = set()
        while True:
            page_params = {**params, **({"cursor": cursor} if cursor else {})}
            page = model.model_validate(
                await self._read("GET", path, params=page_params, private=True)
            )
            yield page
            cursor = page.cursor
            more = getattr(page, "has_next", bool(cursor))
            empty = not any(getattr(page, name, None) for name in ("orders", "fills", "accounts"))
            if empty or not more or not cursor or cursor in seen:  # never loop on a cursor
                return
            seen.add(cursor)

    async def _read(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        private: bool | None = None,
    ) -> dict[str, Any]:
        """A request that is safe to repeat: retried on 429, 5xx, timeouts and refusals."""
        needs_key = private if private is not None else not path.startswith("/market/")

        def attempt() -> Awaitable[dict[str, Any]]:
            return self._send.request(method, path, params=params, json=json, private=needs_key)

        return await _retrying(attempt, self._read_attempts, self._clock)


async def _retrying(attempt: Callable[[], Awaitable[T]], attempts: int, clock: Clock) -> T:
    for number in range(1, attempts + 1):
        try:
            return await attempt()
        except CredentialsError:
            raise
        except (RateLimited, OutcomeUnknown, VenueUnreachable) as exc:
            if number == attempts:
                raise
            if isinstance(exc, RateLimited):
                delay = exc.reset_after_s
            else:
                delay = 0.2 * 2 ** (number - 1)
            await clock.sleep(min(delay, 10.0))
    raise AssertionError("unreachable")  # pragma: no cover


def _failure_reason(answer: dict[str, Any], error: dict[str, Any]) -> str:
    """Coinbase's most specific reason: it spreads it over several fields, some "UNKNOWN_"."""
    for candidate in (
        error.get("new_order_failure_reason"),
        error.get("preview_failure_reason"),
        error.get("error"),
        answer.get("failure_reason"),
    ):
        if isinstance(candidate, str) and candidate and not candidate.startswith("UNKNOWN_"):
            return candidate
    return "UNKNOWN_FAILURE_REASON"


def _granularity_seconds(granularity: str) -> int:
    try:
        return Granularity(granularity).seconds
    except ValueError:
        choices = ", ".join(Granularity)
        raise ValueError(f"unknown granularity {granularity!r}; one of {choices}") from None


def _ceil_to(value: int, step: int) -> int:
    return -(-value // step) * step


def _add_list(params: dict[str, Any], name: str, values: Sequence[str]) -> None:
    if values:
        params[name] = list(values)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
