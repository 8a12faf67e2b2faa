"""X misbehaving while an email run goes on: 429 with and without reset headers, 5xx,
timeouts, 403 duplicate, 401 bad credentials, a post accepted without an id."""
from __future__ import annotations

import time

from tests.reliability.harness import scale, wait_until

N = scale(300, 2000)     # emails alongside
POSTS = scale(8, 20)     # X campaigns, one thread of two posts each


def _start(stack, **configure):
    stack.configure(x_posts=POSTS, **configure)
    stack.add_people(N)
    stack.services(workers=1)
    stack.send_now()


def _x_attempts(stack) -> set[int]:
    import sqlalchemy as sa

    from outreach.store.schema import deliveries

    with stack.engine.connect() as conn:
        return set(conn.execute(sa.select(deliveries.c.attempts).where(deliveries.c.channel == "x")).scalars())


def test_x_429_with_reset_headers(stack):
    # given X answering the first post with 429, its window resetting in 3 s
    reset = int(time.time()) + 3
    stack.x.script.append((429, {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0",
                                 "x-rate-limit-reset": str(reset)}, {"title": "Too Many Requests", "status": 429}))
    _start(stack)
    # then the account waited for the reset (every worker), and every thread was posted once,
    # no attempt spent on the 429
    counts = stack.finish("X answers `429` with `x-rate-limit-reset` 3 s ahead",
                          "design: pause until the reset; issue 12: the 429 spends no attempt")
    assert counts.sent == N + POSTS and counts.unknown == 0
    assert _x_attempts(stack) == {1}


def test_x_429_without_reset_headers(stack):
    # given X answering 429 with no header saying when to come back
    stack.x.script.append((429, {}, {"title": "Too Many Requests", "status": 429}))
    _start(stack)
    # then the account is paused for X's 15-minute window, for every worker
    wait_until(lambda: stack.pause_of("x:org") is not None, 30, "the X account to be paused", stack.procs)
    pause = stack.pause_of("x:org")
    assert 800 < pause.until - time.time() <= 900 and "rate limit" in pause.why
    assert len(stack.x.requests) == 1
    # when those 15 minutes have passed (the clock is moved on, the pause lifted)
    stack.resume("x:org")
    stack.fast_forward()
    # then every thread was posted once
    counts = stack.finish("X answers `429` without reset headers: the account waits 15 min (time moved on)",
                          "design: a 429 without headers waits X's 15-minute window")
    assert counts.sent == N + POSTS and counts.unknown == 0


def test_x_server_errors(stack):
    # given X answering 503 three times
    for _ in range(3):
        stack.x.script.append((503, {}, {"title": "Service Unavailable", "status": 503}))
    _start(stack)
    # then those posts were retried with backoff and posted once
    counts = stack.finish("X answers `503` to three requests", "design: X 5xx is a retry with backoff")
    assert counts.sent == N + POSTS and counts.unknown == 0 and counts.failed == 0


def test_x_timeouts(stack):
    # given a client timeout of 1.5 s and X answering two requests after 3 s (the posts are made)
    stack.x.slow.extend([3.0, 3.0])
    _start(stack, x_timeout=1.5)
    # then those two threads are `unknown` (posted, but nobody heard), never posted again
    counts = stack.finish("X answers two requests after 3 s, past the client's 1.5 s timeout (the posts exist)",
                          "design: a timeout after the request left is `unknown`")
    assert counts.unknown == 2 and counts.sent == N + POSTS - 2
    assert counts.duplicates == 0


def test_x_403_duplicate_content(stack):
    # given X already holding the text of one thread's first post
    stack.x.texts.add("Post 03: part one")
    _start(stack)
    # then that thread fails for good (X refuses the same content twice), the rest are posted
    counts = stack.finish("X refuses one thread's first post as duplicate content (`403`)",
                          "design: 403 duplicate is permanent")
    assert counts.failed == 1 and counts.sent == N + POSTS - 1


def test_x_401_bad_credentials(stack):
    # given X refusing this account's credentials
    stack.x.script.append((401, {}, {"title": "Unauthorized", "detail": "Unauthorized", "status": 401}))
    _start(stack)
    wait_until(lambda: stack.pause_of("x:org") is not None, 30, "the X account to be paused", stack.procs)
    time.sleep(2)  # ticks keep coming: nothing may ask X again while it is paused
    # then it is paused for every worker, `outreach status` says why, and X was asked once
    pause = stack.pause_of("x:org")
    assert "refused the credentials" in pause.why
    status = stack.cli("status", name="status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "account x:org is paused until" in status.stdout and "refused the credentials" in status.stdout
    assert len(stack.x.requests) == 1
    assert _x_attempts(stack) == {0}
    # when the credentials are fixed and the pause lifted
    stack.resume("x:org")
    stack.fast_forward()
    # then every thread is posted once, each on its first attempt
    counts = stack.finish("X answers `401`: the account is paused, `outreach status` says why; fixed, then resumed",
                          "issue 12: a configuration error pauses the account and spends no attempt")
    assert counts.sent == N + POSTS
    assert _x_attempts(stack) == {1}


def test_x_accepts_a_post_without_an_id(stack):
    # given X accepting one post (201) without saying its id
    stack.x.no_id = 1
    _start(stack)
    # then that thread is `unknown` (the post exists), not `failed`, and is never posted again
    counts = stack.finish("X answers `201` without a post id once",
                          "bug 3: recorded `unknown` (it was `failed`), never posted again")
    assert counts.unknown == 1 and counts.failed == 0 and counts.sent == N + POSTS - 1
    assert counts.unknown_received == 1 and counts.duplicates == 0
