"""The ticker's 24-hour statistics kept incrementally equal a rescan of the window, for any trade sequence."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.exchange.service import DAY_MS, RollingDay
from aitbc.market.ledger import Trade


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, DAY_MS // 2), st.integers(1, 50), st.integers(1, 9)), max_size=60))
def test_rolling_day_matches_a_rescan(steps: list[tuple[int, int, int]]) -> None:
    day = RollingDay()
    now = 0
    seen: list[tuple[int, int, int]] = []
    for i, (gap, price, qty) in enumerate(steps):
        now += gap
        day.add(now, Trade(i + 1, price, qty, price * qty, "buy", 1, 2, "a", "b", price * qty, 0, 0))
        seen.append((now, price, qty))
        window = [(t, p, q) for t, p, q in seen if t >= now - DAY_MS]
        assert [w[1] for w in day.window] == [p for _, p, _ in window]
        assert day.highs[0][1] == max(p for _, p, _ in window)
        assert day.lows[0][1] == min(p for _, p, _ in window)
        assert day.volume == sum(q for _, _, q in window)
        assert day.quote_volume == sum(p * q for _, p, q in window)
