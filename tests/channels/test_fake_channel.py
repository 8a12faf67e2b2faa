"""FakeChannel: records sends in memory and on disk, and fails on request."""
from __future__ import annotations

import email
import email.policy
import json

import pytest

from outreach.channels import FakeChannel, OutgoingEmail, OutgoingTweet, get_channel
from outreach.errors import PermanentError, RateLimited, TransientError


def letter(to: str = "ana@example.net") -> OutgoingEmail:
    return OutgoingEmail(to_addr=to, to_name="Ana", subject="Hello", html="<p>Hi</p>", text="Hi",
                         list_unsubscribe_url="https://x.example.org/u/1")


def test_records_emails_in_memory_as_jsonl_and_as_eml(tmp_path):
    # given a fake channel writing a record file and .eml files
    channel = get_channel("fake", None, record_path=tmp_path / "sent.jsonl", eml_dir=tmp_path / "eml")
    # when two emails are sent
    first = channel.send(letter("a@example.net"))
    channel.send(letter("b@example.net"))
    # then both are remembered, with the real MIME bytes and their Message-IDs
    assert [s.payload.to_addr for s in channel.sent] == ["a@example.net", "b@example.net"]
    msg = email.message_from_bytes(channel.sent[0].data, policy=email.policy.default)
    assert msg["Message-ID"] == first.provider_id and msg["List-Unsubscribe-Post"]
    lines = [json.loads(line) for line in (tmp_path / "sent.jsonl").read_text().splitlines()]
    assert [(line["kind"], line["to"]) for line in lines] == [("email", "a@example.net"), ("email", "b@example.net")]
    assert len(list((tmp_path / "eml").glob("*.eml"))) == 2


def test_fails_the_next_n_sends_then_recovers():
    channel = FakeChannel()
    channel.fail_next(2, lambda: RateLimited("slow down", 30))
    for _ in range(2):
        with pytest.raises(RateLimited):
            channel.send(letter())
    channel.fail_next(1, TransientError("connection dropped"))
    with pytest.raises(TransientError):
        channel.send(letter())
    channel.send(letter())
    assert len(channel.sent) == 1


def test_threads_resume_after_posted_ids():
    channel = FakeChannel()
    result = channel.send(OutgoingTweet(parts=("one", "two", "three"), posted_ids=("111",)))
    assert result.provider_id == "111" and len(result.progress) == 3 and result.progress[0] == "111"


def test_overlong_post_is_refused_like_x_would():
    with pytest.raises(PermanentError):
        FakeChannel().send(OutgoingTweet(parts=("한" * 141,)))


def test_refuses_payloads_it_cannot_send():
    with pytest.raises(PermanentError):
        FakeChannel().send("not a payload")


def test_shared_channel_is_one_instance_per_process_and_account():
    from outreach.channels import close_shared, shared_channel

    first = shared_channel("fake")
    assert shared_channel("fake") is first
    close_shared()
    assert shared_channel("fake") is not first
    close_shared()
