"""Channels, registered explicitly by name: what a campaign step's `channel:` may say.

`channel_class("email")` is the class (what a step of that channel is); `get_channel("email",
account)` builds a new channel; `shared_channel` keeps one per worker process and account so
SMTP connections are reused across batches (and never shared across a fork: the cache is
keyed by process id). A new channel is one module plus its line in CHANNELS.
"""
from __future__ import annotations

import os
import threading
from typing import Any

from ..errors import ChannelConfigurationError
from .base import Channel, OutgoingEmail, OutgoingTweet, SendResult
from .fake import FakeChannel
from .smtp import SmtpChannel
from .x import XChannel, tweet_length

__all__ = ["CHANNELS", "Channel", "FakeChannel", "OutgoingEmail", "OutgoingTweet", "SendResult", "SmtpChannel",
           "XChannel", "channel_class", "close_shared", "get_channel", "shared_channel", "step_channels",
           "tweet_length"]

# The channels a campaign step may name, by that name.
CHANNELS: dict[str, type[Channel]] = {cls.name: cls for cls in (SmtpChannel, XChannel)}

_shared: dict[tuple[int, str, str], Channel] = {}
_shared_lock = threading.Lock()


def step_channels() -> list[str]:
    return sorted(CHANNELS)


def channel_class(kind: str) -> type[Channel]:
    try:
        return CHANNELS[kind]
    except KeyError:
        raise ChannelConfigurationError(
            f"unknown channel {kind!r}; use one of: {', '.join(step_channels())}", channel=kind) from None


def get_channel(kind: str, account: Any = None, **options: Any) -> Channel:
    """A new channel of `kind` for `account` (its settings object: SmtpAccount, XAccount).
    "fake" is the recording fake (tests, dry runs)."""
    if kind == FakeChannel.name:
        return FakeChannel(account, **options)
    cls = channel_class(kind)
    if account is None:
        raise ChannelConfigurationError(f"channel {kind!r} needs an account", channel=kind)
    return cls(account, **options)  # type: ignore[call-arg]


def shared_channel(kind: str, account: Any = None) -> Channel:
    """This process's channel for (kind, account), created on first use. A changed account
    (settings reloaded) replaces it."""
    key = (os.getpid(), kind, getattr(account, "name", "") or "")
    with _shared_lock:
        channel = _shared.get(key)
        if channel is not None and channel.account != account:
            channel.close()
            channel = None
        if channel is None:
            channel = _shared[key] = get_channel(kind, account)
        return channel


def close_shared() -> None:
    """Close this process's shared channels (worker shutdown)."""
    pid = os.getpid()
    with _shared_lock:
        for key in [k for k in _shared if k[0] == pid]:
            _shared.pop(key).close()
