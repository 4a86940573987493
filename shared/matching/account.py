"""One trading account at a matching venue: the books, the matching engine and the balances.

exchange-sim and execution's paper venue both trade through it, so an order placed on the
simulator and one placed in a PAPER rehearsal meet the same rules: Coinbase's validation,
funds checked before the order is taken (``INSUFFICIENT_FUND``), a resting order's hold,
book walks that use up the levels they took, and maker fills only when the market trades
or quotes through the limit. Pure: ``now`` and ids come in from the caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal

from shared.coinbase.book import L2Book
from shared.matching.engine import MatchingEngine
from shared.matching.ledger import InsufficientFunds, Ledger
from shared.matching.types import (
    FeeRates,
    Fill,
    Order,
    OrderKind,
    OrderRejected,
    OrderRequest,
    ProductRules,
)
from shared.matching.walk import walk_book
from shared.money import Rounding, Side, quantize

__all__ = ["TradingAccount", "currencies"]

FILL_LOG = 100_000


def currencies(product_id: str) -> tuple[str, str]:
    """``BTC-USD`` -> ``("BTC", "USD")``."""
    base, _, quote = product_id.partition("-")
    return base, quote


class TradingAccount:
    """Places, fills and cancels one account's orders against per-product L2 books."""

    def __init__(
        self,
        rules: Mapping[str, ProductRules],
        *,
        fees: FeeRates,
        balances: Mapping[str, Decimal],
        order_ids: Callable[[], str],
        trade_ids: Callable[[], str],
        fill_log: int = FILL_LOG,
    ) -> None:
        """``fill_log``: how many of the latest fills :attr:`fills` keeps, newest first."""
        self.rules = dict(rules)
        self.fees = fees
        self.books = {product_id: L2Book(product_id) for product_id in rules}
        self.ledger = Ledger(dict(balances))
        self.engine = MatchingEngine(self.rules, fees, order_ids=order_ids, trade_ids=trade_ids)
        self.fills: deque[Fill] = deque(maxlen=fill_log)
        self.traded_volume = Decimal(0)
        self.paid_fees = Decimal(0)
        self._by_client_id: dict[str, str] = {}
        self._order_ids: dict[str, None] = {}  # in arrival order
        self._changed: dict[str, Order] = {}

    def set_fees(self, fees: FeeRates) -> None:
        self.fees = fees
        self.engine.set_fees(fees)

    def set_rules(self, rules: Mapping[str, ProductRules]) -> None:
        """Trade these products too (or by their new rules); their books start empty."""
        self.rules.update(rules)
        self.engine.set_rules(rules)
        for product_id in rules:
            self.books.setdefault(product_id, L2Book(product_id))

    def place(self, request: OrderRequest, now: datetime) -> tuple[Order, bool]:
        """Accept or refuse one order; a known ``client_order_id`` returns the existing one.

        Raises :class:`OrderRejected` with Coinbase's reason when the venue would refuse it.
        """
        existing = self._by_client_id.get(request.client_order_id)
        if existing is not None:
            return self.engine.order(existing), False
        self.engine.validate(request, now)
        hold = self._check_funds(request)
        order = self.engine.submit(request, self.books[request.product_id], now, consume=True)
        if hold is not None:
            self.ledger.hold(order.order_id, *hold)
        self._by_client_id[request.client_order_id] = order.order_id
        self._order_ids[order.order_id] = None
        self._apply(list(order.fills))
        if order.status.is_terminal:
            self._changed[order.order_id] = order
        return order, True

    def cancel(self, order_id: str, now: datetime) -> str:
        """Cancel one order; the failure reason, or ``""`` on success."""
        try:
            order = self.engine.cancel(order_id, now)
        except KeyError:
            return "UNKNOWN_CANCEL_ORDER"
        except OrderRejected as exc:
            return exc.failure_reason
        self.ledger.release(order.order_id)
        self._changed[order.order_id] = order
        return ""

    def on_trade(self, product_id: str, price: Decimal, size: Decimal, now: datetime) -> list[Fill]:
        """A print in the market: fills resting orders it traded through."""
        fills = self.engine.on_trade(product_id, price, size, now)
        self._apply(fills)
        return fills

    def on_book(self, product_id: str, now: datetime) -> list[Fill]:
        """The book moved: fills resting orders it now quotes through."""
        fills = self.engine.on_book(self.books[product_id], now)
        self._apply(fills)
        return fills

    def expire(self, now: datetime) -> list[Order]:
        """Expire GTD orders whose end time has come, releasing their holds."""
        expired = self.engine.expire(now)
        for order in expired:
            self.ledger.release(order.order_id)
            self._changed[order.order_id] = order
        return expired

    def order_by_client_id(self, client_order_id: str) -> Order | None:
        order_id = self._by_client_id.get(client_order_id)
        return None if order_id is None else self.engine.order(order_id)

    def order(self, order_id: str) -> Order:
        return self.engine.order(order_id)

    def forget(self, order_id: str) -> None:
        """Stop remembering a finished order (``ValueError`` if it is still open): it is no
        longer found, by either id, and its client order id could be placed again."""
        order = self.engine.order(order_id)
        self.engine.forget(order_id)
        del self._order_ids[order_id]
        self._by_client_id.pop(order.request.client_order_id, None)

    def orders(self) -> list[Order]:
        """Every order, newest first."""
        return [self.engine.order(order_id) for order_id in reversed(self._order_ids)]

    def take_changed(self) -> list[Order]:
        """Orders that filled or ended since the last call, each once, in order of change."""
        changed, self._changed = list(self._changed.values()), {}
        return changed

    def _check_funds(self, request: OrderRequest) -> tuple[str, Decimal] | None:
        """Refuse what the account cannot pay; the hold a resting order needs, if any."""
        base, quote = currencies(request.product_id)
        rules = self.rules[request.product_id]
        try:
            if request.kind is OrderKind.MARKET_IOC:
                self._check_market_funds(request, base, quote)
                return None
            assert request.base_size is not None and request.limit_price is not None
            if request.side is Side.SELL:
                self.ledger.require(base, request.base_size)
                return base, request.base_size
            notional = request.base_size * request.limit_price * (1 + self.fees.taker)
            amount = quantize(notional, rules.quote_increment, Rounding.CEILING)
            self.ledger.require(quote, amount)
            return quote, amount
        except InsufficientFunds as exc:
            raise OrderRejected("INSUFFICIENT_FUND", f"Insufficient balance: {exc}") from None

    def _check_market_funds(self, request: OrderRequest, base: str, quote: str) -> None:
        if request.side is Side.SELL:
            if request.base_size is None:
                raise OrderRejected(
                    "UNSUPPORTED_ORDER_CONFIGURATION", "market sells are sized in base here"
                )
            self.ledger.require(base, request.base_size)
        elif request.quote_size is not None:
            self.ledger.require(quote, request.quote_size)
        else:
            rules = self.rules[request.product_id]
            walk = walk_book(
                self.books[request.product_id].asks(10_000),
                base_size=request.base_size,
                base_increment=rules.base_increment,
            )
            # Fees are rounded per fill, as the engine charges them.
            cost = sum(
                (p * s + quantize(p * s * self.fees.taker, rules.quote_increment,
                                  Rounding.HALF_EVEN) for p, s in walk),
                Decimal(0),
            )  # fmt: skip
            self.ledger.require(quote, cost)

    def _apply(self, fills: list[Fill]) -> None:
        for fill in fills:
            order = self.engine.order(fill.order_id)
            base, quote = currencies(fill.product_id)
            if order.request.kind is not OrderKind.MARKET_IOC:
                # Give back exactly what this fill costs; the rest stays held for the rest.
                cost = fill.size if fill.side is Side.SELL else fill.value + fill.commission
                self.ledger.release(order.order_id, cost)
            self.ledger.settle(fill, base, quote)
            self.fills.appendleft(fill)
            self.traded_volume += fill.value
            self.paid_fees += fill.commission
            if order.status.is_terminal:
                self.ledger.release(order.order_id)
            self._changed[order.order_id] = order
