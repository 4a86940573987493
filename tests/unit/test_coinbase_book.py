"""The level-2 book against a plain reference, and sequence-gap detection."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.coinbase import BookSide, L2Book, SequenceGap, SequenceTracker

prices = st.integers(1, 200).map(lambda cents: Decimal(cents) / 100)
sizes = st.sampled_from(["0", "0.001", "1", "2.5", "10"]).map(Decimal)
updates = st.lists(st.tuples(st.sampled_from(list(BookSide)), prices, sizes), max_size=200)


@given(snapshot=updates, later=updates, depth=st.integers(1, 10))
def test_the_book_matches_a_plain_reference_after_any_updates(snapshot, later, depth):
    book, reference = L2Book("BTC-USD"), {BookSide.BID: {}, BookSide.OFFER: {}}
    book.apply_snapshot(snapshot)
    for side, price, size in [*snapshot, *later]:
        if size == 0:
            reference[side].pop(price, None)
        else:
            reference[side][price] = size  # absolute size, not a delta
    for side, price, size in later:
        book.apply_update(side, price, size)
    bids = sorted(reference[BookSide.BID].items(), reverse=True)[:depth]
    asks = sorted(reference[BookSide.OFFER].items())[:depth]
    assert book.bids(depth) == bids and book.asks(depth) == asks
    assert all(size > 0 for _, size in book.bids(1000) + book.asks(1000))


def test_zero_removes_a_level_and_a_snapshot_replaces_the_book():
    book = L2Book("ETH-USD")
    assert not book.ready
    book.apply_snapshot([(BookSide.BID, Decimal("100"), Decimal("1")),
                         (BookSide.OFFER, Decimal("101"), Decimal("2"))])  # fmt: skip
    book.apply_update(BookSide.BID, Decimal("100"), Decimal("0"))
    assert book.ready and book.best_bid() is None and book.best_ask() == (Decimal(101), 2)
    book.apply_snapshot([(BookSide.BID, Decimal("99"), Decimal("3"))])
    assert book.best_ask() is None and book.best_bid() == (Decimal(99), 3)
    with pytest.raises(ValueError):
        book.apply_update(BookSide.BID, Decimal("99"), Decimal("-1"))


def test_a_jump_in_sequence_numbers_is_a_gap_and_a_late_duplicate_is_not():
    tracker = SequenceTracker()
    assert [tracker.observe(n) for n in (0, 1, 2)] == [None, None, None]
    assert tracker.observe(5) == SequenceGap(expected=3, received=5)
    assert tracker.observe(5) is None and tracker.observe(4) is None
    assert tracker.observe(6) is None
    tracker.reset()
    assert tracker.observe(100) is None  # a new connection numbers on its own


@given(st.lists(st.integers(0, 3), min_size=1, max_size=100))
def test_every_skip_is_reported_with_how_many_were_lost(steps):
    tracker, number, lost, reported = SequenceTracker(), 0, 0, 0
    tracker.observe(number)
    for step in steps:
        number += step
        if step >= 1:
            gap = tracker.observe(number)
            lost += step - 1
            reported += gap.missing if gap else 0
        else:
            assert tracker.observe(number) is None  # the same number again
    assert reported == lost
