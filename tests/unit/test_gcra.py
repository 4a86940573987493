"""The reservation algorithm's invariants, over random request sequences."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
from hypothesis import given
from hypothesis import strategies as st

from shared.ratelimit import LocalLimiter, coinbase_channel, reserve, retry_after_seconds
from shared.ratelimit.gcra import interval_us

requests = st.lists(
    st.tuples(
        st.integers(0, 400_000),  # microseconds since the previous request
        st.integers(1, 5),  # cost
        st.sampled_from([0, 50_000, 500_000, 5_000_000]),  # max wait, us
    ),
    min_size=1,
    max_size=300,
)


@given(requests, st.sampled_from([(10, 10), (15, 15), (8, 8), (30, 5), (2, 5)]))
def test_no_window_of_a_second_ever_holds_more_than_rate_plus_burst(sequence, budget):
    rate, burst = budget
    interval = interval_us(rate)  # rounded up, as the limiters use it
    tat, now, sends = 0, 1_000_000_000, []
    for gap, cost, max_wait in sequence:
        now += gap
        cost = min(cost, burst)
        granted, wait, new_tat = reserve(tat, now, cost, interval, burst, max_wait)
        if granted:
            sends.append((now + wait, cost))
            tat = new_tat
        else:
            assert new_tat == tat and wait > max_wait  # a refusal consumes nothing
    sends.sort()
    for index, (start, _cost) in enumerate(sends):
        in_window = sum(cost for at, cost in sends[index:] if at < start + 1_000_000)
        assert in_window <= rate + burst - 1  # exact: a full bucket, then one per interval


@given(requests)
def test_reservations_are_served_in_the_order_they_were_made(sequence):
    tat, now, last_send = 0, 1_000_000_000, 0
    for gap, cost, _max_wait in sequence:
        now += gap
        granted, wait, tat = reserve(tat, now, min(cost, 10), 100_000, 10, 10**12)
        assert granted
        assert now + wait >= last_send
        last_send = now + wait


def test_a_full_bucket_grants_burst_at_once_then_paces_at_the_rate():
    limiter = LocalLimiter(rate_per_s=10, burst=10)
    waits = [limiter.reserve(0, 1, 10).wait_s for _ in range(13)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == [0.1, 0.2, 0.3]


def test_a_429_empties_the_bucket_until_the_reset():
    limiter = LocalLimiter(rate_per_s=10, burst=10)
    limiter.hold_until(2_000_000)
    decision = limiter.reserve(0, 1, 10)
    assert decision.granted and decision.wait_s == 2.1


def test_the_coinbase_channel_follows_the_path():
    public = httpx.Request("GET", "https://api.coinbase.com/api/v3/brokerage/market/products")
    private = httpx.Request("GET", "https://api.coinbase.com/api/v3/brokerage/accounts")
    assert coinbase_channel(public) == "public" and coinbase_channel(private) == "private"


def test_retry_after_is_read_from_the_headers_never_the_body():
    now = time.time()
    in_ten = format_datetime(datetime.fromtimestamp(now + 10, UTC), usegmt=True)
    assert retry_after_seconds(httpx.Headers({"retry-after": "3"})) == 3.0
    assert 8 <= retry_after_seconds(httpx.Headers({"retry-after": in_ten})) <= 10
    assert retry_after_seconds(httpx.Headers({"x-ratelimit-reset": "2.5"})) == 2.5
    unix_s = httpx.Headers({"x-ratelimit-reset": str(int(now) + 5)})
    unix_ms = httpx.Headers({"x-ratelimit-reset": str(int(now * 1000) + 5000)})
    assert 3.5 <= retry_after_seconds(unix_s) <= 5 and 3.5 <= retry_after_seconds(unix_ms) <= 5
    assert retry_after_seconds(httpx.Headers({"retry-after": "99999999"})) == 3600
    assert retry_after_seconds(httpx.Headers({"retry-after": "soon"})) == 1.0
    assert retry_after_seconds(httpx.Headers({})) == 1.0
