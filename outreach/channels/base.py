"""The channel extension point: payload types and the one base class that owns the sequence.

Everything that differs between channels lives in the channel's class, never in an
`if channel == ...` elsewhere: what a step of it is (one message per recipient, or one post
per step), where its templates are and what they may use, how a step's content becomes a
payload (`compose`), what a payload may be (`validate`: length as the provider counts it),
how a person sees it (`describe`, `preview_files`), its default limits, its Celery queue,
and whether sending again after an unknown outcome is harmless (`idempotent`).

Sending: `Channel.send` always runs validate → build → transmit → parse, and
`Channel.send_many` runs the same for a stream of payloads (the dispatcher's batches),
yielding each outcome. A channel fills in those hooks (and `transmit_many` when it can keep
several messages in flight, like SMTP with PIPELINING). Every failure is a class from
`outreach.errors`; the class alone tells the caller what to do next.

A new channel is one module with a subclass, plus its line in `channels/__init__.py`.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..errors import DeliveryError, PermanentError
from ..settings import Limit

if TYPE_CHECKING:
    from ..authoring.campaigns import Campaign, Step
    from ..content.compose import Composer
    from ..models import Subscriber
    from ..settings import Settings

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
K = TypeVar("K")  # the caller's name for one payload of send_many (a ledger row)
# What every template may use, and what only a message made for one subscriber has.
SHARED_CONTEXT = frozenset({"campaign", "step", "organization"})
# (target, letter, actions, event, events: an advocacy campaign's, see content/advocacy.py; None otherwise)
RECIPIENT_CONTEXT = frozenset({"subscriber", "links", "target", "letter", "actions", "event", "events"})


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
    """Base class of every channel. Subclasses set the capability attributes, fill `build`,
    `transmit` and `parse` (and `open`/`close` when they hold a connection), and the
    class-level hooks that say what a campaign step of this channel is."""

    name: ClassVar[str] = ""                     # what a step's `channel:` says
    noun: ClassVar[str] = "message"              # one payload, in messages to people ("email", "tweet")
    queue: ClassVar[str] = "email"               # the Celery queue its batches travel on
    # True: one message per audience member (an email); False: one post per step, made from
    # the account (a tweet), so there is no `subscriber` and no local time.
    per_recipient: ClassVar[bool] = True
    template_dir: ClassVar[str] = ""             # its folder under templates/
    optional_templates: ClassVar[frozenset[str]] = frozenset()  # roles of template_files that may be absent
    payload_type: ClassVar[type | tuple[type, ...]] = object
    max_length: ClassVar[int | None] = None      # per message (per part for threads), as `measure` counts
    length_hint: ClassVar[str] = "shorten it"    # how to fix a text over max_length
    default_limits: ClassVar[tuple[Limit, ...]] = ()
    # Whether sending again after an unknown outcome (a timeout mid-send, a worker killed) is
    # harmless: then such a delivery is simply sent again; otherwise it is recorded `unknown`
    # for an operator, since a resend may deliver twice (true of email and X).
    idempotent: ClassVar[bool] = False

    account: Any = None

    # --- what a campaign step of this channel is ---------------------------------------

    @classmethod
    def account_for(cls, settings: Settings, name: str | None) -> Any:
        """The settings of the account a step names (or the default one); ConfigurationError
        naming the key to set when there is none."""
        return settings.account(cls.name, name)

    @classmethod
    def template_files(cls, template: str) -> dict[str, str]:
        """The template files of a step's `template:`, by role, relative to templates/."""
        raise NotImplementedError

    @classmethod
    def context_names(cls) -> frozenset[str]:
        """The variables its templates may use."""
        return SHARED_CONTEXT | RECIPIENT_CONTEXT if cls.per_recipient else SHARED_CONTEXT

    @classmethod
    def compose(cls, composer: Composer, campaign: Campaign, step: Step, subscriber: Subscriber | None,
                progress: Mapping[str, Any] | None = None) -> Any:
        """The payload of `step` for `subscriber` (None for a channel that is not
        per_recipient); `progress` is what an interrupted earlier attempt recorded."""
        raise NotImplementedError

    @classmethod
    def broadcast_recipient(cls, account: Any) -> str:
        """For a channel that is not per_recipient: who the one delivery of a step goes to in
        the ledger (the account's own handle), its idempotency key."""
        raise NotImplementedError

    @classmethod
    def usable(cls, account: Any) -> bool:
        """Whether the account has what it needs to send for real (credentials); the demo
        records what an unusable one would send in a sandbox instead."""
        return True

    @classmethod
    def sandbox_record(cls, sandbox: Path) -> Path:
        """Where an account of this channel that is not `usable` records what it would send,
        under the sandbox directory (settings.sandbox_dir)."""
        return sandbox / cls.name / f"{cls.noun}s.jsonl"

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

    @classmethod
    def validate(cls, payload: Any) -> None:
        """Reject what can never be sent, before it is scheduled or transmitted: `validate`
        (the command) calls it on every sample payload, the sender on every payload.
        Subclasses extend it (call super)."""
        if not isinstance(payload, cls.payload_type):
            raise PermanentError(f"channel {cls.name!r} cannot send a {type(payload).__name__}",
                                 channel=cls.name)
        if cls.max_length is not None:
            texts = cls.texts(payload)
            for index, text in enumerate(texts):
                length = cls.measure(text)
                if length > cls.max_length:
                    raise PermanentError(
                        f"{cls.noun} {index + 1} is {length} characters as {cls.display_name()} counts them "
                        f"(limit {cls.max_length}{cls.counting_note()})", channel=cls.name, length=length,
                        part=index, hint=cls.length_hint)

    def build(self, payload: Any) -> Any:
        """Turn the payload into what goes on the wire (bytes, request arguments)."""
        raise NotImplementedError

    def transmit(self, built: Any) -> Any:
        """Hand the built message to the provider; return its raw response."""
        raise NotImplementedError

    def parse(self, built: Any, response: Any) -> SendResult:
        """Turn the provider's response into a SendResult or raise."""
        raise NotImplementedError

    # --- for people: preview and dry run --------------------------------------------------

    def describe(self, payload: Any) -> str:
        """The payload as a person should read it in `outreach preview`."""
        raise NotImplementedError

    def preview_files(self, payload: Any) -> dict[str, bytes]:
        """Files `outreach preview --out` writes, by suffix; the first is the wire form."""
        raise NotImplementedError

    def summary(self, payload: Any) -> str:
        """One line about a payload for `outreach send --dry-run`."""
        first = next(iter(self.preview_files(payload).values()))
        return f"{len(first)} bytes"

    # --- capabilities -----------------------------------------------------------------

    @classmethod
    def display_name(cls) -> str:
        return cls.name

    @classmethod
    def counting_note(cls) -> str:
        """How the provider's counting differs from characters (appended to length errors)."""
        return ""

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
        return self.limits_of(self.account)

    @classmethod
    def limits_of(cls, account: Any) -> list[Limit]:
        """`limits` of an account without building its channel (`outreach status`)."""
        configured = getattr(account, "limits", None)
        return list(configured) if configured else list(cls.default_limits)

    @property
    def limit_key(self) -> str:
        """The rate limiter key shared by every worker sending through this account."""
        return self.limit_key_of(self.account)

    @classmethod
    def limit_key_of(cls, account: Any) -> str:
        """`limit_key` of an account whose channel could not be built (to pause it)."""
        return f"{cls.name}:{getattr(account, 'name', '') or 'default'}"

    # --- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Connect eagerly (optional: send connects on demand)."""

    def close(self) -> None:
        """Release connections; the channel may be used again afterwards."""

    def __enter__(self) -> Channel:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
