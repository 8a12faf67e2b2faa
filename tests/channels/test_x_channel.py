"""XChannel against a local HTTP server answering like X API v2."""
from __future__ import annotations

import time

import pytest

from outreach.channels import OutgoingTweet, XChannel, get_channel, tweet_length
from outreach.errors import (
    ChannelConfigurationError,
    DuplicateContent,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TransientError,
)

PART1 = "Write to your local embassy today: our template letter is at https://rights.example.org/act"
PART2 = "Every letter counts. Thank you."
PART3 = "Share this thread with one friend."


def test_single_post(x_api, x_account):
    # given a channel for the stand-in
    with XChannel(x_account(x_api)) as channel:
        # when one post is sent
        result = channel.send(OutgoingTweet(parts=("Hello from the speaking tour",)))
    # then X got it without a reply, and the id and limit headers come back
    assert x_api.posts() == [{"text": "Hello from the speaking tour"}]
    assert result.provider_id == result.progress[0] and result.provider_id.isdigit()
    remaining, reset = result.limit_hint
    assert remaining == 99 and reset > time.time()


def test_request_is_signed_with_oauth1(x_api, x_account):
    with XChannel(x_account(x_api)) as channel:
        channel.send(OutgoingTweet(parts=("signed",)))
    auth = x_api.requests[0].headers["Authorization"]
    assert auth.startswith("OAuth ") and 'oauth_consumer_key="ck"' in auth and 'oauth_token="at"' in auth


def test_oauth2_user_token_is_sent_as_bearer(x_api, x_account):
    account = x_account(x_api, consumer_key=None, consumer_secret=None, access_token=None,
                        access_token_secret=None, user_token="user-token-123")
    with XChannel(account) as channel:
        channel.send(OutgoingTweet(parts=("bearer",)))
    assert x_api.requests[0].headers["Authorization"] == "Bearer user-token-123"


def test_thread_posts_in_order_each_replying_to_the_previous(x_api, x_account):
    with XChannel(x_account(x_api)) as channel:
        result = channel.send(OutgoingTweet(parts=(PART1, PART2, PART3)))
    posts = x_api.posts()
    assert [p["text"] for p in posts] == [PART1, PART2, PART3]
    assert "reply" not in posts[0]
    assert posts[1]["reply"] == {"in_reply_to_tweet_id": result.progress[0]}
    assert posts[2]["reply"] == {"in_reply_to_tweet_id": result.progress[1]}
    assert result.provider_id == result.progress[0] and len(set(result.progress)) == 3


def test_interrupted_thread_resumes_with_the_remaining_parts(x_api, x_account):
    # given a thread whose second part hits a server error
    channel = XChannel(x_account(x_api))
    x_api.script.extend([(201, {}, {"data": {"id": "111", "text": PART1}}),
                         (503, {}, {"title": "Service Unavailable", "status": 503})])
    with pytest.raises(TransientError) as info:
        channel.send(OutgoingTweet(parts=(PART1, PART2, PART3)))
    # then the error carries what was posted so far
    posted = info.value.context["posted_ids"]
    assert posted == ("111",) and info.value.context["part"] == 1
    # when the dispatcher retries with that progress
    result = channel.send(OutgoingTweet(parts=(PART1, PART2, PART3), posted_ids=posted))
    # then only parts 2 and 3 are posted, part 2 replying to part 1
    posts = x_api.posts()
    assert [p["text"] for p in posts] == [PART1, PART2, PART2, PART3]
    assert posts[2]["reply"] == {"in_reply_to_tweet_id": "111"}
    assert result.provider_id == "111" and len(result.progress) == 3


def test_429_is_rate_limited_until_the_reset_header(x_api, x_account):
    reset = int(time.time()) + 120
    x_api.script.append((429, {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)},
                         {"title": "Too Many Requests", "status": 429}))
    with pytest.raises(RateLimited) as info:
        XChannel(x_account(x_api)).send(OutgoingTweet(parts=("too soon",)))
    assert 110 <= info.value.retry_after <= 121
    assert abs(info.value.context["reset_at"] - reset) < 2


def test_429_with_exhausted_24h_limit_waits_for_that_reset(x_api, x_account):
    now = int(time.time())
    x_api.script.append((429, {"x-rate-limit-reset": str(now + 60), "x-user-limit-24hour-remaining": "0",
                               "x-user-limit-24hour-reset": str(now + 7200)}, {"status": 429}))
    with pytest.raises(RateLimited) as info:
        XChannel(x_account(x_api)).send(OutgoingTweet(parts=("daily cap",)))
    assert info.value.retry_after > 7000


def test_429_without_headers_waits_fifteen_minutes(x_api, x_account):
    x_api.script.append((429, {}, {"status": 429}))
    with pytest.raises(RateLimited) as info:
        XChannel(x_account(x_api)).send(OutgoingTweet(parts=("no header",)))
    assert info.value.retry_after == 900


def test_duplicate_content_is_refused_permanently(x_api, x_account):
    with XChannel(x_account(x_api)) as channel:
        channel.send(OutgoingTweet(parts=("Same words twice",)))
        with pytest.raises(DuplicateContent):
            channel.send(OutgoingTweet(parts=("Same words twice",)))


def test_success_without_an_id_is_not_retried_blindly(x_api, x_account):
    # a 2xx we cannot read may still have created the post: retrying could post twice
    x_api.script.append((201, {}, {"unexpected": True}))
    with pytest.raises(OutcomeUnknown):
        XChannel(x_account(x_api)).send(OutgoingTweet(parts=("maybe posted",)))


def test_server_error_is_transient(x_api, x_account):
    x_api.script.append((503, {}, {"title": "Service Unavailable", "status": 503}))
    with pytest.raises(TransientError) as info:
        XChannel(x_account(x_api)).send(OutgoingTweet(parts=("later",)))
    assert info.value.context["http_status"] == 503 and info.value.context["posted_ids"] == ()


def test_bad_credentials_are_a_configuration_error(x_api, x_account):
    x_api.script.append((401, {}, {"title": "Unauthorized", "detail": "Unauthorized", "status": 401}))
    with pytest.raises(ChannelConfigurationError) as info:
        XChannel(x_account(x_api)).send(OutgoingTweet(parts=("who am I",)))
    assert "OUTREACH_X_MAIN_" in str(info.value)


def test_read_only_app_403_is_a_configuration_error(x_api, x_account):
    x_api.script.append((403, {}, {"title": "Forbidden", "status": 403, "detail":
        "Your client app is not configured with the appropriate oauth1 app permissions for this endpoint."}))
    with pytest.raises(ChannelConfigurationError):
        XChannel(x_account(x_api)).send(OutgoingTweet(parts=("read only",)))


def test_other_403_is_permanent(x_api, x_account):
    x_api.script.append((403, {}, {"title": "Forbidden", "status": 403,
                                   "detail": "You are not allowed to reply to this conversation."}))
    with pytest.raises(PermanentError) as info:
        XChannel(x_account(x_api)).send(OutgoingTweet(parts=("reply",)))
    assert type(info.value) is PermanentError


def test_missing_credentials_name_the_variables(x_api, x_account):
    account = x_account(x_api, consumer_key=None, access_token=None)
    with pytest.raises(ChannelConfigurationError) as info:
        XChannel(account).send(OutgoingTweet(parts=("no keys",)))
    assert "OUTREACH_X_MAIN_CONSUMER_KEY" in str(info.value) and "OUTREACH_X_MAIN_USER_TOKEN" in str(info.value)
    assert x_api.requests == []


def test_unreachable_api_is_transient(x_account):
    class Gone:
        base = "http://127.0.0.1:9"  # discard port: nothing listens on loopback
    with pytest.raises(TransientError):
        XChannel(x_account(Gone), timeout=2).send(OutgoingTweet(parts=("nobody home",)))


def test_weighted_length_counts_urls_and_hangul():
    # X counts any URL (even a bare file name like config.py) as 23, and CJK/Hangul as 2
    assert tweet_length("see config.py") == 4 + 23
    assert tweet_length("https://rights.example.org/" + "a" * 100) == 23
    assert tweet_length("안녕하세요") == 10
    assert XChannel.measure("abc") == 3


def test_overlong_part_is_refused_before_anything_is_posted(x_api, x_account):
    thread = OutgoingTweet(parts=("fine", "가" * 141))  # 282 weighted
    with pytest.raises(PermanentError) as info:
        XChannel(x_account(x_api)).send(thread)
    assert "280" in str(info.value)
    assert x_api.requests == []


def test_registry_builds_the_x_channel(x_api, x_account):
    channel = get_channel("x", x_account(x_api))
    assert isinstance(channel, XChannel) and channel.max_length == 280 and not channel.per_recipient
    assert [str(limit) for limit in channel.limits] == ["100/900s", "2400/86400s"]
