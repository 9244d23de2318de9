"""The job event broker: per-job and coordinator-wide numbering, owners, listeners, the resume ring."""

from __future__ import annotations

from aitbc.coordinator.events import RING_LIMIT, JobEvent, JobEventBroker


def test_event_seq_is_global_and_job_seq_per_job() -> None:
    broker = JobEventBroker(first_event_seq=100)
    seen: list[JobEvent] = []
    broker.listeners.add(seen.append)
    broker.publish("a", "status", {"state": "queued"}, owner="k1")
    broker.publish("b", "status", {"state": "queued"}, owner="k2")
    broker.publish("a", "token", {"index": 0, "text": "x"})
    broker.publish("a", "status", {"state": "completed"}, final=True)
    broker.publish("a", "payment", {"state": "settled"})  # after the end: still numbered, still owned
    assert [(e.job_id, e.seq, e.event_seq, e.owner) for e in seen] == [
        ("a", 1, 100, "k1"),
        ("b", 1, 101, "k2"),
        ("a", 2, 102, "k1"),
        ("a", 3, 103, "k1"),
        ("a", 4, 104, "k1"),
    ]
    assert broker.last_event_seq == 104
    assert [e.seq for e in broker.history("a")] == [1, 2, 3, 4]
    assert list(broker.ring) == seen


def test_default_numbering_starts_from_the_clock_so_it_grows_across_restarts() -> None:
    first = JobEventBroker()
    first.publish("a", "status", {})
    second = JobEventBroker()
    second.publish("a", "status", {})
    assert second.last_event_seq > first.last_event_seq > 1_700_000_000_000_000


def test_ring_is_bounded() -> None:
    broker = JobEventBroker(first_event_seq=1)
    for i in range(RING_LIMIT + 10):
        broker.publish(f"j{i % 7}", "token", {"index": i})
    assert len(broker.ring) == RING_LIMIT and broker.ring[0].event_seq == 11
