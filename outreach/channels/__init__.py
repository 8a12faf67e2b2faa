"""Channels, registered explicitly by name.

`get_channel("email", account)` builds a new channel; `shared_channel` keeps one per worker
process and account so SMTP connections are reused across batches (and never shared across
a fork: the cache is keyed by process id).
"""
from __future__ import annotations

import os
import threading
from typing import Any

from ..errors import ChannelConfigurationError
from .base import Channel, OutgoingEmail, OutgoingTweet, SendResult
from .fake import FakeChannel
from .smtp.channel import SmtpChannel
from .x import XChannel, tweet_length

__all__ = ["CHANNELS", "Channel", "FakeChannel", "OutgoingEmail", "OutgoingTweet", "SendResult",
           "SmtpChannel", "XChannel", "close_shared", "get_channel", "shared_channel", "tweet_length"]

CHANNELS: dict[str, type[Channel]] = {"email": SmtpChannel, "x": XChannel, "fake": FakeChannel}

_shared: dict[tuple[int, str, str], Channel] = {}
_shared_lock = threading.Lock()


def get_channel(kind: str, account: Any = None, **options: Any) -> Channel:
    """A new channel of `kind` for `account` (its settings object: SmtpAccount, XAccount)."""
    try:
        cls = CHANNELS[kind]
    except KeyError:
        raise ChannelConfigurationError(
            f"unknown channel {kind!r}; use one of: {', '.join(sorted(CHANNELS))}", channel=kind) from None
    if account is None and cls is not FakeChannel:
        raise ChannelConfigurationError(f"channel {kind!r} needs an account", channel=kind)
    return cls(account, **options)


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
