"""An SMTP server that misbehaves: slow (past the client's timeout), hanging up after a
message's data, 421 bursts, 550 and partial refusals, TLS required."""
from __future__ import annotations

import time

from tests.reliability.harness import scale, wait_until

N = scale(1000, 4000)


def _people(stack, every: int, offset: int = 0, limit: int = 10) -> list[str]:
    return [f"person{i}@example.org" for i in range(offset, N, every)][:limit]


def test_smtp_server_slower_than_the_timeout(stack):
    # given a client timeout of 2 s, a server that takes 4 s to answer RCPT for five
    # recipients (nothing sent yet) and 4 s to answer their data for five others
    stack.configure(smtp="timeout: 2")
    stack.sink.pipelining = False
    stack.add_people(N)
    slow_rcpt, slow_data = _people(stack, 97, 3, 5), _people(stack, 89, 5, 5)
    stack.sink.slow_rcpt = dict.fromkeys(slow_rcpt, 4.0)
    stack.sink.slow_data = dict.fromkeys(slow_data, 4.0)
    stack.services(workers=1)
    stack.send_now()
    # then a timeout before the data is retried and sent; one after it is `unknown` (the
    # ledger cannot know whether the server kept it: it never resends it)
    counts = stack.finish("client timeout 2 s; the server answers RCPT (5 recipients) or the end of DATA "
                          "(5 others) after 4 s", "design: a timeout after the data is `unknown`, before it a retry")
    assert counts.unknown == len(slow_data) and counts.sent == N - len(slow_data)


def test_smtp_connection_dropped_mid_data(stack):
    # given a server that hangs up after the data of ten messages without answering: five of
    # them it never kept, five it kept
    stack.configure()
    stack.add_people(N)
    unkept, kept = _people(stack, 83, 1, 5), _people(stack, 79, 2, 5)
    stack.sink.drop_unkept = set(unkept)
    stack.sink.drop_after_data = set(kept)
    stack.services(workers=1)
    stack.send_now()
    # then those ten are `unknown` (the client cannot tell which were kept), never resent
    counts = stack.finish("the server hangs up after the data of 10 messages, before its reply (5 not kept, 5 kept)",
                          "design: data sent without a reply is `unknown`")
    assert counts.unknown == 10 and counts.sent == N - 10
    assert counts.unknown_received == 5


def test_smtp_421_bursts(stack):
    # given a server that answers 421 and hangs up, for bursts of 40 MAIL commands
    stack.configure()
    stack.add_people(N)
    stack.sink.burst_421 = 40
    stack.services(workers=1)
    stack.send_now()
    stack.wait_received(N // 2)
    stack.sink.burst_421 = 40
    # then the refused messages were retried with backoff, and all went out once
    counts = stack.finish("two bursts of 40 MAIL commands answered `421` with a hang-up",
                          "design: 4xx is a retry with backoff")
    assert counts.sent == N and counts.unknown == 0 and counts.failed == 0


def test_smtp_550_for_some_recipients(stack):
    # given twenty addresses the server does not know
    stack.configure()
    stack.add_people(N)
    unknown_users = _people(stack, 47, 0, 20)
    stack.sink.rcpt_replies = dict.fromkeys(unknown_users, "550 5.1.1 No such user")
    stack.services(workers=1)
    stack.send_now()
    # then those failed once (and are suppressed), everyone else got one message
    counts = stack.finish("20 recipients refused with `550 5.1.1`", "design: 5.1.x fails and suppresses")
    assert counts.failed == 20 and counts.sent == N - 20
    from outreach import store

    assert all(store.is_suppressed(stack.engine, a) for a in unknown_users)


def test_smtp_partial_recipient_refusals(stack):
    # given some recipients refused for now (450) once, and others for good (553)
    stack.configure()
    stack.add_people(N)
    busy, bad = _people(stack, 41, 1, 20), _people(stack, 43, 2, 10)
    stack.sink.rcpt_once = dict.fromkeys(busy, "450 4.2.1 Mailbox busy, try later")
    stack.sink.rcpt_replies = dict.fromkeys(bad, "553 5.1.3 Bad recipient address syntax")
    stack.services(workers=1)
    stack.send_now()
    # then the 450s were retried and sent, the 553s failed, nothing twice
    counts = stack.finish("RCPT refused for 20 recipients once (`450`) and for 10 for good (`553`)",
                          "design: smtplib's partial refusals mapped per recipient")
    assert counts.failed == 10 and counts.sent == N - 10


def test_smtp_tls_required_but_not_used(stack):
    # given a server that refuses mail until STARTTLS, which this account does not use
    stack.configure()
    stack.add_people(N)
    stack.sink.tls_required = True
    stack.services(workers=1)
    stack.send_now()
    # when the first batch meets it
    wait_until(lambda: stack.pause_of("email:news") is not None, 30, "the account to be paused", stack.procs)
    time.sleep(2)  # the tick keeps queueing; every worker must hold back
    # then the account is paused for every worker, and `outreach status` says why
    pause = stack.pause_of("email:news")
    assert "STARTTLS" in pause.why and "security" in pause.why
    status = stack.cli("status", name="status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "account email:news is paused until" in status.stdout and "STARTTLS" in status.stdout
    # and no delivery spent an attempt on it
    assert set(stack.attempts()) == {0}, stack.attempts()
    assert stack.sink.count == 0
    # when the operator fixes the server side and lifts the pause
    stack.sink.tls_required = False
    stack.resume("email:news")
    stack.fast_forward()  # the rows were given back until the pause's end
    # then everything goes out once, each on its first attempt
    counts = stack.finish("the server requires STARTTLS; the account is paused, `outreach status` says why; fixed, "
                          "then resumed", "config-error pause (issue 12): no attempt spent while paused")
    assert counts.sent == N
    assert set(stack.attempts()) == {1}
