"""The channel extension point: payload types and the one base class that owns the sequence.

`Channel.send` always runs validate → build → transmit → parse, and `Channel.send_many`
runs the same for a stream of payloads (the dispatcher's batches), yielding each outcome. A
channel fills in those hooks (and `transmit_many` when it can keep several messages in
flight, like SMTP with PIPELINING) and declares what it can do as class attributes, so
callers (dispatcher, templating, validation) branch on capabilities, never on channel
names. Every failure is a class from `outreach.errors`; the class alone tells the caller
what to do next.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from ..errors import DeliveryError, PermanentError
from ..settings import Limit

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
K = TypeVar("K")  # the caller's name for one payload of send_many (a ledger row)


@dataclass(frozen=True)
class OutgoingEmail:
    """One rendered email for one recipient. Fields may hold subscriber data: the MIME
    builder strips control characters from every header value, so none can add a header."""

    to_addr: str
    to_name: str | None
    subject: str
    html: str
    text: str
    list_unsubscribe_url: str | None = None      # HTTPS one-click URL, already signed by the caller
    list_unsubscribe_mailto: str | None = None   # "mailto:..." or a bare address
    message_id: str | None = None                # "<id@domain>"; the channel makes one when None
    headers: Mapping[str, str] = field(default_factory=lambda: _NO_HEADERS, hash=False)  # e.g. X-Campaign


@dataclass(frozen=True)
class OutgoingTweet:
    """A post or a thread: each part replies to the one before it."""

    parts: tuple[str, ...]
    posted_ids: tuple[str, ...] = ()  # parts already posted by an interrupted earlier attempt


@dataclass(frozen=True)
class SendResult:
    """What the provider accepted.

    provider_id: the email's Message-ID ("<...>") or the first post of a thread.
    progress: every provider id of a multi-part send, in order (X threads).
    limit_hint: (remaining, reset epoch seconds) when the provider reported its own limit,
        so the limiter can be tightened (see RateLimiter.observe).
    """

    provider_id: str
    progress: tuple[str, ...] = ()
    limit_hint: tuple[int, float] | None = None


class Channel:
    """Base class of every channel. Subclasses set the capability attributes and fill
    `build`, `transmit` and `parse` (and `open`/`close` when they hold a connection)."""

    name: ClassVar[str] = ""
    payload_type: ClassVar[type | tuple[type, ...]] = object
    max_length: ClassVar[int | None] = None      # per message (per part for threads), as `measure` counts
    supports_html: ClassVar[bool] = False
    default_limits: ClassVar[tuple[Limit, ...]] = ()
    # Whether sending again after an unknown outcome (timeout mid-send) is harmless. Neither
    # email nor X is: a resend may deliver twice, so callers record "maybe sent" instead.
    idempotent: ClassVar[bool] = False

    account: Any = None

    # --- the sequence -----------------------------------------------------------------

    def send(self, payload: Any) -> SendResult:
        """Send one payload; raise a DeliveryError subclass on failure."""
        self.validate(payload)
        built = self.build(payload)
        response = self.transmit(built)
        return self.parse(built, response)

    def send_many(self, items: Iterable[tuple[K, Any]]) -> Iterator[tuple[K, SendResult | DeliveryError]]:
        """Send (key, payload) pairs in order, yielding (key, SendResult or the DeliveryError
        that payload met) for each: the same sequence as `send`, one outcome per key.

        `items` is read lazily, so a caller can compose the next payload while a channel that
        pipelines (`transmit_many`) has earlier ones on the wire. A key comes back once its
        outcome is known, which for a payload that failed to build can be before the
        outcomes of payloads still in flight. A caller that stops feeding `items` (say,
        after a RateLimited) still gets an outcome for everything it fed: what a pipelining
        channel already had in flight (SMTP: up to two messages) is still sent."""
        def built() -> Iterator[tuple[K, Any, DeliveryError | None]]:
            for key, payload in items:
                try:
                    self.validate(payload)
                    yield key, self.build(payload), None
                except DeliveryError as exc:
                    yield key, None, exc

        for key, b, response in self.transmit_many(built()):
            if isinstance(response, DeliveryError):
                yield key, response
                continue
            try:
                yield key, self.parse(b, response)
            except DeliveryError as exc:
                yield key, exc

    def transmit_many(self, built: Iterator[tuple[K, Any, DeliveryError | None]]
                      ) -> Iterator[tuple[K, Any, Any]]:
        """(key, built, build error or None) in, (key, built, raw response or DeliveryError)
        out; a build error is passed through as the outcome. One `transmit` at a time unless
        the channel overrides this to have several messages in flight."""
        for key, b, error in built:
            if error is not None:
                yield key, b, error
                continue
            try:
                yield key, b, self.transmit(b)
            except DeliveryError as exc:
                yield key, b, exc

    # --- hooks ------------------------------------------------------------------------

    def validate(self, payload: Any) -> None:
        """Reject what can never be sent, before it is scheduled or transmitted. Subclasses
        extend this (call super) with checks such as X's weighted length."""
        if not isinstance(payload, self.payload_type):
            raise PermanentError(
                f"channel {self.name!r} cannot send a {type(payload).__name__}",
                channel=self.name)
        if self.max_length is not None:
            texts = self.texts(payload)
            for index, text in enumerate(texts):
                length = self.measure(text)
                if length > self.max_length:
                    which = f"part {index + 1} of {len(texts)}" if len(texts) > 1 else "the text"
                    raise PermanentError(
                        f"{which} is {length} characters as {self.name} counts them; the limit is "
                        f"{self.max_length}: shorten it", channel=self.name, length=length, part=index)

    def build(self, payload: Any) -> Any:
        """Turn the payload into what goes on the wire (bytes, request arguments)."""
        raise NotImplementedError

    def transmit(self, built: Any) -> Any:
        """Hand the built message to the provider; return its raw response."""
        raise NotImplementedError

    def parse(self, built: Any, response: Any) -> SendResult:
        """Turn the provider's response into a SendResult or raise."""
        raise NotImplementedError

    # --- capabilities -----------------------------------------------------------------

    @classmethod
    def measure(cls, text: str) -> int:
        """Length of `text` the way this channel's provider counts it."""
        return len(text)

    @classmethod
    def texts(cls, payload: Any) -> tuple[str, ...]:
        """The texts that `max_length` applies to."""
        return ()

    @property
    def limits(self) -> list[Limit]:
        """The account's configured limits, else the channel's defaults."""
        configured = getattr(self.account, "limits", None)
        return list(configured) if configured else list(self.default_limits)

    @property
    def limit_key(self) -> str:
        """The rate limiter key shared by every worker sending through this account."""
        return f"{self.name}:{getattr(self.account, 'name', '') or 'default'}"

    # --- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Connect eagerly (optional: send connects on demand)."""

    def close(self) -> None:
        """Release connections; the channel may be used again afterwards."""

    def __enter__(self) -> "Channel":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
