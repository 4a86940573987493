"""Positions at average cost, realized and unrealized PnL, fees, equity at the marks."""

from __future__ import annotations

from decimal import Decimal

from services.risk.portfolio import Portfolio, Position
from shared.money import Side
from tests.unit.risk_helpers import D, fill


def portfolio(capital: str = "10000") -> Portfolio:
    return Portfolio(D(capital))


def test_buys_average_their_cost() -> None:
    book = portfolio()
    book.apply(fill("BTC-USD", Side.BUY, "100", "1"))
    book.apply(fill("BTC-USD", Side.BUY, "200", "3"))
    position = book.positions["BTC-USD"]
    assert position.base == D(4)
    assert position.cost == D(700)
    assert position.average_cost == D("175")
    assert position.realized_pnl == 0


def test_a_partial_close_realizes_pnl_at_the_average_cost_and_keeps_the_average() -> None:
    book = portfolio()
    book.apply(fill("BTC-USD", Side.BUY, "100", "1"))
    book.apply(fill("BTC-USD", Side.BUY, "200", "3"))
    book.apply(fill("BTC-USD", Side.SELL, "250", "1"))
    position = book.positions["BTC-USD"]
    assert position.realized_pnl == D(75)  # (250 - 175) x 1
    assert position.base == D(3)
    assert position.average_cost == D(175)
    assert position.cost == D(525)


def test_a_full_close_realizes_everything_and_leaves_no_cost() -> None:
    book = portfolio()
    book.apply(fill("BTC-USD", Side.BUY, "100", "1"))
    book.apply(fill("BTC-USD", Side.BUY, "200", "3"))
    book.apply(fill("BTC-USD", Side.SELL, "250", "1"))
    book.apply(fill("BTC-USD", Side.SELL, "150", "3"))
    position = book.positions["BTC-USD"]
    assert position.realized_pnl == D(75) + D(-75)  # then (150 - 175) x 3
    assert position.base == 0
    assert position.cost == 0
    assert position.average_cost is None
    assert position.unrealized_pnl(D(999)) == 0


def test_a_fill_past_zero_closes_at_the_average_and_opens_the_rest_at_its_price() -> None:
    position = Position("ETH-USD")
    position.apply(Side.BUY, D(100), D(1), D(0))
    position.apply(Side.SELL, D(120), D(3), D(0))
    assert position.realized_pnl == D(20)
    assert position.base == D(-2)
    assert position.average_cost == D(120)
    position.apply(Side.BUY, D(110), D(2), D(0))  # the short gains 10 on each of 2
    assert position.realized_pnl == D(40)
    assert position.base == 0 and position.cost == 0


def test_fees_are_kept_apart_from_realized_pnl_and_come_out_of_cash() -> None:
    book = portfolio("1000")
    book.apply(fill("BTC-USD", Side.BUY, "100", "2", fee="1.20"))
    book.apply(fill("BTC-USD", Side.SELL, "110", "2", fee="1.32"))
    assert book.fees() == D("2.52")
    assert book.realized_pnl() == D(20)
    assert book.cash == D(-200) - D("1.20") + D(220) - D("1.32")
    assert book.equity() == D(1000) + D(20) - D("2.52")


def test_equity_is_capital_plus_realized_minus_fees_plus_unrealized() -> None:
    book = portfolio("5000")
    book.apply(fill("BTC-USD", Side.BUY, "100", "4", fee="0.5"))
    book.apply(fill("BTC-USD", Side.SELL, "130", "1", fee="0.25"))
    book.apply(fill("ETH-USD", Side.BUY, "20", "10", fee="0.1"))
    book.mark("BTC-USD", D("90"))
    book.mark("ETH-USD", D("25"))
    # realized: BTC (130 - 100) x 1 = 30; unrealized: BTC (90 - 100) x 3, ETH (25 - 20) x 10
    assert book.realized_pnl() == D(30)
    assert book.unrealized_pnl() == D(-30) + D(50)
    assert book.fees() == D("0.85")
    expected = D(5000) + D(30) - D("0.85") + D(20)
    assert book.equity() == expected
    assert book.equity() == (
        book.capital + book.realized_pnl() - book.fees() + book.unrealized_pnl()
    )
    # and from the cash the fills moved: capital + cash + positions at their marks
    cash = -D(400) - D("0.5") + D(130) - D("0.25") - D(200) - D("0.1")
    assert book.equity() == D(5000) + cash + 3 * D(90) + 10 * D(25)


def test_a_repeated_trade_id_is_applied_once() -> None:
    book = portfolio()
    first = fill("BTC-USD", Side.BUY, "100", "1", fee="0.6", trade_id="t-1")
    assert book.apply(first) is True
    equity, cash = book.equity(), book.cash
    assert book.apply(first) is False
    assert book.apply(fill("BTC-USD", Side.BUY, "50", "7", trade_id="t-1")) is False
    assert book.base("BTC-USD") == 1
    assert book.cash == cash and book.equity() == equity and book.fees() == D("0.6")
    book.apply_all([first, fill("BTC-USD", Side.BUY, "100", "1", trade_id="t-2")])
    assert book.base("BTC-USD") == 2


def test_marks_value_positions_and_the_last_fill_price_stands_in_until_a_mark_arrives() -> None:
    book = portfolio()
    book.apply(fill("BTC-USD", Side.BUY, "100", "2"))
    book.apply(fill("BTC-USD", Side.BUY, "110", "1"))
    assert book.value("BTC-USD") == D(330)  # 3 at the last fill price
    assert book.unrealized_pnl() == D(20)
    book.mark("BTC-USD", D("90"))
    assert book.value("BTC-USD") == D(270)
    assert book.unrealized_pnl() == D(270) - D(310)
    assert book.equity() == D(10000) - D(310) + D(270)
    book.mark("BTC-USD", D("120"))
    assert book.equity() == D(10000) - D(310) + D(360)
    assert book.value("ETH-USD") == 0 and book.base("ETH-USD") == 0


def test_held_lists_long_positions_worth_at_least_the_dust_threshold() -> None:
    book = portfolio()
    book.apply(fill("BTC-USD", Side.BUY, "100", "0.01"))  # worth exactly 1
    book.apply(fill("ETH-USD", Side.BUY, "100", "0.0099"))  # worth 0.99
    book.apply(fill("SOL-USD", Side.SELL, "100", "5"))  # short
    book.apply(fill("XRP-USD", Side.BUY, "1", "50"))
    assert book.held(D(1)) == ["BTC-USD", "XRP-USD"]
    book.mark("XRP-USD", D("0.01"))  # 50 x 0.01 = 0.5: now dust
    assert book.held(D(1)) == ["BTC-USD"]
    assert set(book.snapshot()) == {"BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD"}


def test_a_portfolio_without_fills_is_its_capital() -> None:
    book = portfolio("123.45")
    assert book.equity() == Decimal("123.45")
    assert book.realized_pnl() == book.unrealized_pnl() == book.fees() == 0
