"""The send path's counters: added in memory, written to Redis once per flush, kept when Redis
does not answer, bounded whatever the labels."""
from __future__ import annotations

import secrets

import redis as redis_lib

from outreach import telemetry
from outreach.errors import RecipientRejected, TransientError

REDIS_TEST_URL = "redis://127.0.0.1:6379/14"


def test_a_flush_adds_to_what_redis_holds_and_reads_back_as_series():
    client = redis_lib.Redis.from_url(REDIS_TEST_URL)
    key = f"outreach-test:metrics:{secrets.token_hex(4)}"
    try:
        # given two processes' tallies (two workers), each flushed once
        for _ in range(2):
            tally = telemetry.Tally()
            tally.send("email", 0.003)
            tally.send("email", 0.2, RecipientRejected("550 no such user", smtp_code=550))
            tally.outcomes("email", {"sent": 1, "failed": 1, "retried": 0})
            tally.wait("email:news", 5)
            assert telemetry.flush(client, tally, key) and tally.take() == ({}, {})
        # then Redis holds the sums of both
        series = {(name, tuple(sorted(labels.items()))): v for name, labels, v in telemetry.read(client, key)}
        assert series[("deliveries_total", (("channel", "email"), ("outcome", "sent")))] == 2
        assert ("deliveries_total", (("channel", "email"), ("outcome", "retried"))) not in series
        assert series[("send_seconds_bucket", (("channel", "email"), ("le", "0.005")))] == 2
        assert series[("send_seconds_bucket", (("channel", "email"), ("le", "0.25")))] == 2
        assert series[("send_seconds_count", (("channel", "email"),))] == 4
        assert abs(series[("send_seconds_sum", (("channel", "email"),))] - 0.406) < 1e-9
        assert series[("provider_errors_total", (("channel", "email"), ("code", "550"),
                                                 ("error", "RecipientRejected")))] == 2
        assert series[("ratelimit_waits_total", (("account", "email:news"),))] == 10
    finally:
        client.delete(key)
        client.close()


def test_redis_down_keeps_the_counts_for_the_next_flush():
    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    tally = telemetry.Tally()
    tally.send("x", 1.0, TransientError("busy", http_status=503))
    assert telemetry.flush(dead, tally, "unused") is False  # no exception: a message never pays for metrics
    counts, _ = tally.take()
    assert counts[telemetry.field("provider_errors_total", channel="x", error="TransientError", code="503")] == 1


def test_a_tally_stays_bounded_whatever_the_labels():
    tally = telemetry.Tally()
    for i in range(telemetry._MAX_SERIES + 500):
        tally.wait(f"account-{i}", 1)
    counts, sums = tally.take()
    assert len(counts) + len(sums) == telemetry._MAX_SERIES


def test_label_values_cannot_forge_another_series():
    name, labels = telemetry.parse_field(telemetry.field("deliveries_total", channel="email\x1foutcome=sent",
                                                         outcome="fa=iled"))
    assert name == "deliveries_total" and labels == {"channel": "email outcome:sent", "outcome": "fa:iled"}
