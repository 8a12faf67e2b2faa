"""One exception tree for the whole product.

The branches map to behaviour, not to modules: a caller decides what to do from the class
alone. Every exception carries its context (`.context`) and pickles with it, because Celery
ships them between processes.

    OutreachError
    ├── ConfigurationError          stop and say what to set (a key, a variable, a command)
    │   ├── ValidationFailed        a file a person wrote has problems; all are listed
    │   ├── ServiceUnavailable      the database or Redis cannot be reached or used now
    │   └── ChannelConfigurationError   (also a DeliveryError) the account cannot send at all
    ├── DataError                   input data is malformed (a CSV row, an argument, a token)
    ├── TemplateRenderError         a template failed for one recipient
    └── DeliveryError               sending one message failed; what next depends on the class:
        ├── TransientError          nothing left the building: try again later
        │   └── RateLimited         ... after `retry_after` seconds (the whole account waits)
        ├── OutcomeUnknown          it may have reached the provider: never retried by itself
        └── PermanentError          refused for good: do not retry
            ├── RecipientRejected   this address; `hard_bounce` means suppress it
            └── DuplicateContent    the provider refuses the same content twice
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# What __reduce__ returns: how to rebuild the exception, and with what arguments.
_Reduced = tuple[Callable[..., "OutreachError"], tuple[Any, ...]]


class OutreachError(Exception):
    """Root of every error this package raises on purpose."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        # whatever the raiser attached; a reader knows what type the key it asks for holds
        self.context: dict[str, Any] = context

    def __reduce__(self) -> _Reduced:  # keep context across pickling (Celery results, multiprocessing)
        return (_rebuild, (type(self), self.message, self.context))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[OutreachError], message: str, context: dict[str, object]) -> OutreachError:
    return cls(message, **context)


# --- configuration: stop, say what to set -----------------------------------------------

class ConfigurationError(OutreachError):
    """A setting is missing or wrong; the message names the key or variable to set."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file a person wrote, located precisely enough to fix it."""

    file: str
    line: int | None
    field: str | None
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" [{self.field}]" if self.field else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}:{field} {self.message}{hint}"


class ValidationFailed(ConfigurationError):
    """A campaign, template or settings file has one or more problems; all are listed."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...], **context: object) -> None:
        problems = tuple(problems)
        summary = "\n".join(str(p) for p in problems)
        super().__init__(summary, problems=problems, **context)
        self.problems = problems

    def __reduce__(self) -> _Reduced:
        return (ValidationFailed, (self.problems,))


class TemplateRenderError(OutreachError):
    """A template failed while rendering for one recipient (e.g. a missing variable)."""


# --- delivery outcomes: what the sender should do next ------------------------------------

class DeliveryError(OutreachError):
    """Sending one message failed."""


class TransientError(DeliveryError):
    """Try again later: the message certainly did not reach the provider (no connection, a
    4xx reply, a provider 5xx before accepting it)."""


class RateLimited(TransientError):
    """The provider or our own limiter says wait; `retry_after` is seconds from now."""

    def __init__(self, message: str, retry_after: float, **context: object) -> None:
        super().__init__(message, retry_after=retry_after, **context)
        self.retry_after = retry_after

    def __reduce__(self) -> _Reduced:
        ctx = dict(self.context)
        retry_after = ctx.pop("retry_after")
        return (_rebuild_rate_limited, (type(self), self.message, retry_after, ctx))


def _rebuild_rate_limited(cls: type[RateLimited], message: str, retry_after: float,
                          ctx: dict[str, object]) -> RateLimited:
    return cls(message, retry_after, **ctx)


class OutcomeUnknown(DeliveryError):
    """The message may have reached the provider: the connection dropped after its data, a
    request timed out, or the provider accepted it without saying under which id. Sending
    it again could deliver it twice, so it is recorded `unknown` for an operator to decide,
    unless the channel is idempotent (a resend is harmless there)."""


class PermanentError(DeliveryError):
    """Do not retry: the message or recipient is rejected for good."""


class RecipientRejected(PermanentError):
    """The recipient address is refused; `hard_bounce` means suppress it."""

    def __init__(self, message: str, hard_bounce: bool = False, **context: object) -> None:
        super().__init__(message, hard_bounce=hard_bounce, **context)
        self.hard_bounce = hard_bounce

    def __reduce__(self) -> _Reduced:
        ctx = dict(self.context)
        hard = ctx.pop("hard_bounce")
        return (_rebuild_rejected, (type(self), self.message, hard, ctx))


def _rebuild_rejected(cls: type[RecipientRejected], message: str, hard: bool,
                      ctx: dict[str, object]) -> RecipientRejected:
    return cls(message, hard, **ctx)


class DuplicateContent(PermanentError):
    """The provider refuses the content as a duplicate (X 403)."""


class ChannelConfigurationError(ConfigurationError, DeliveryError):
    """A channel cannot send at all until a setting is fixed (bad credentials, no host)."""


# --- data --------------------------------------------------------------------------------

class ServiceUnavailable(ConfigurationError):
    """A service the command needs (the database, Redis) is unreachable, refuses us, or is not
    set up (tables not migrated); the message says which, and what to run or set."""


class DataError(OutreachError):
    """Input data (a subscriber file, a CLI argument, a link's token) is malformed."""
