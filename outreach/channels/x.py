"""Posts and threads on X through tweepy's v2 Client.

A step of this channel is one post (or a thread: parts separated by a line holding only
`---`) made from the account, not one per recipient: `templates/x/NAME.txt`, with no
`subscriber` or `links`. Length is checked the way X counts it (URLs 23, CJK/Hangul 2).

tweepy hard-codes its API host, sleeps inside the worker when `wait_on_rate_limit` is on,
and hides response headers unless `return_type=requests.Response`. XClient sends every
request to `XAccount.api_base` (so tests and the demo can use a local stand-in) with a
timeout; the channel never waits on a limit itself: a 429 becomes RateLimited with the
provider's reset time and the dispatcher reschedules.
"""
from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import tweepy

from ..errors import (
    ChannelConfigurationError,
    DeliveryError,
    DuplicateContent,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TransientError,
)
from ..settings import Limit, XAccount, account_env_name
from .base import Channel, OutgoingTweet, SendResult

if TYPE_CHECKING:
    from ..authoring.campaigns import Campaign, Step
    from ..content.compose import Composer
    from ..models import Subscriber

__all__ = ["XChannel", "XClient", "tweet_length", "MAX_WEIGHTED_LENGTH"]

MAX_WEIGHTED_LENGTH = 280
THREAD_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)
DEFAULT_RETRY_SECONDS = 15 * 60  # a 429 without a reset header: X's window is 15 minutes
_CONFIG_403 = ("permission", "not configured", "client-not-enrolled", "client forbidden",
               "unsupported authentication", "suspended", "locked")


def tweet_length(text: str) -> int:
    """Length as X counts it: URLs (even a bare `config.py`) 23, CJK/Hangul/emoji 2."""
    # imported here: building its emoji regexps costs ~0.4 s, which every command paid at
    # start-up (`outreach status` included) although only tweets need it
    from twitter_text import parse_tweet

    length: int = parse_tweet(text).weightedLength  # twitter_text has no type hints
    return length


class _ApiSession(requests.Session):
    """Rewrites tweepy's hard-coded `https://api.twitter.com/...` to `api_base/...` and adds a
    timeout (tweepy passes none). OAuth 1.0a signs the rewritten URL: auth runs later, in
    `prepare_request`."""

    def __init__(self, api_base: str, timeout: float) -> None:
        super().__init__()
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout

    # narrower than Session.request (url: str | bytes): tweepy only ever passes a str
    def request(self, method: str | bytes, url: str,  # type: ignore[override]
                *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(url)
        url = self.api_base + parts.path + (f"?{parts.query}" if parts.query else "")
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


class XClient(tweepy.Client):  # type: ignore[misc]  # tweepy has no type hints: Client is Any
    """tweepy.Client talking to `api_base` instead of tweepy's fixed host."""

    def __init__(self, *args: Any, api_base: str, timeout: float = 30.0, **kwargs: Any) -> None:
        kwargs["return_type"] = requests.Response  # headers (rate limits) stay visible
        kwargs["wait_on_rate_limit"] = False
        super().__init__(*args, **kwargs)
        self.session = _ApiSession(api_base, timeout)


def split_thread(text: str) -> tuple[str, ...]:
    """The parts of a thread: the text between lines holding only `---`."""
    return tuple(part.strip() for part in THREAD_SEPARATOR.split(text) if part.strip())


class XChannel(Channel):
    name = "x"
    noun = "tweet"
    queue = "social"
    per_recipient = False
    template_dir = "x"
    payload_type = OutgoingTweet
    max_length = MAX_WEIGHTED_LENGTH
    length_hint = "shorten it or split it into a thread with a line holding only ---"
    default_limits = (Limit.parse("100/15m"), Limit.parse("2400/24h"))
    idempotent = False  # X refuses an identical repost (403), but a thread part would be lost

    def __init__(self, account: XAccount, *, timeout: float | None = None) -> None:
        self.account = account
        self.timeout = account.timeout if timeout is None else timeout
        self._client: XClient | None = None
        self._user_auth = True
        self._env = f"OUTREACH_X_{account_env_name(account.name or 'NAME')}_"

    # --- what a step of this channel is ------------------------------------------------

    @classmethod
    def template_files(cls, template: str) -> dict[str, str]:
        return {"text": f"x/{template}.txt"}

    @classmethod
    def compose(cls, composer: Composer, campaign: Campaign, step: Step, subscriber: Subscriber | None,
                progress: Mapping[str, Any] | None = None) -> OutgoingTweet:
        (text,) = composer.render(campaign, step, [cls.template_files(step.template)["text"]])
        posted = tuple((progress or {}).get("posted_ids", ()))
        return OutgoingTweet(parts=split_thread(text), posted_ids=posted)

    @classmethod
    def broadcast_recipient(cls, account: XAccount) -> str:
        return account.handle

    @classmethod
    def usable(cls, account: XAccount) -> bool:
        return account.has_credentials

    # --- capabilities -----------------------------------------------------------------

    @classmethod
    def display_name(cls) -> str:
        return "X"

    @classmethod
    def counting_note(cls) -> str:
        return "; links count 23, CJK/Hangul 2"

    @classmethod
    def measure(cls, text: str) -> int:
        return tweet_length(text)

    @classmethod
    def texts(cls, payload: OutgoingTweet) -> tuple[str, ...]:
        return tuple(payload.parts)

    @classmethod
    def validate(cls, payload: OutgoingTweet) -> None:
        super().validate(payload)
        if not payload.parts or any(not p.strip() for p in payload.parts):
            raise PermanentError("a post (and every part of a thread) needs text")
        if len(payload.posted_ids) > len(payload.parts):
            raise PermanentError("more posted ids than thread parts", posted_ids=payload.posted_ids)

    # --- hooks ------------------------------------------------------------------------

    def build(self, payload: OutgoingTweet) -> OutgoingTweet:
        return payload  # tweepy builds the request; validate() has checked the parts

    def transmit(self, thread: OutgoingTweet) -> tuple[list[str], tuple[int, float] | None]:
        """Post the parts not yet posted, each replying to the previous one. On failure the
        raised error carries `posted_ids` (all ids so far) so the next attempt resumes."""
        client = self._connect()
        posted = list(thread.posted_ids)
        hint = None
        for index in range(len(posted), len(thread.parts)):
            try:
                response = client.create_tweet(text=thread.parts[index],
                                               in_reply_to_tweet_id=posted[-1] if posted else None,
                                               user_auth=self._user_auth)
            except (tweepy.TweepyException, requests.RequestException) as exc:
                raise self._error(exc, posted, index) from None
            try:
                tweet_id = str(response.json()["data"]["id"])
            except (ValueError, KeyError, TypeError):  # requests' JSONDecodeError is a ValueError
                # 2xx without an id: the post may exist; a blind retry could post it twice
                raise OutcomeUnknown(f"X accepted part {index + 1} but returned no post id",
                                     posted_ids=tuple(posted), part=index) from None
            posted.append(tweet_id)
            hint = _limit_hint(response.headers) or hint
        return posted, hint

    def parse(self, thread: OutgoingTweet, response: tuple[list[str], tuple[int, float] | None]) -> SendResult:
        posted, hint = response
        return SendResult(provider_id=posted[0], progress=tuple(posted), limit_hint=hint)

    # --- for people -------------------------------------------------------------------

    def describe(self, payload: OutgoingTweet) -> str:
        head = f"(@{self.account.handle})"
        parts = [f"--- tweet {n}/{len(payload.parts)}: {tweet_length(part)}/{MAX_WEIGHTED_LENGTH} as X counts it "
                 f"---\n{part}" for n, part in enumerate(payload.parts, 1)]
        return "\n".join([head, *parts])

    def preview_files(self, payload: OutgoingTweet) -> dict[str, bytes]:
        return {".txt": (self.describe(payload) + "\n").encode("utf-8")}

    def summary(self, payload: OutgoingTweet) -> str:
        lengths = ", ".join(str(tweet_length(p)) for p in payload.parts)
        return f"{len(payload.parts)} part(s); weighted length {lengths}"

    # --- client -----------------------------------------------------------------------

    def open(self) -> None:
        self._connect()

    def close(self) -> None:
        if self._client is not None:
            self._client.session.close()
            self._client = None

    def _connect(self) -> XClient:
        if self._client is not None:
            return self._client
        a = self.account
        if all((a.consumer_key, a.consumer_secret, a.access_token, a.access_token_secret)):
            self._client = XClient(consumer_key=a.consumer_key, consumer_secret=a.consumer_secret,
                                   access_token=a.access_token, access_token_secret=a.access_token_secret,
                                   api_base=a.api_base, timeout=self.timeout)
            self._user_auth = True
        elif a.user_token:
            # An OAuth 2.0 *user* token travels as a Bearer token, with user_auth=False
            # (user_auth=True would mean OAuth 1.0a signing).
            self._client = XClient(bearer_token=a.user_token, api_base=a.api_base, timeout=self.timeout)
            self._user_auth = False
        else:
            raise ChannelConfigurationError(
                f"no credentials for X account {a.name or a.handle!r}: set {self._env}CONSUMER_KEY, "
                f"{self._env}CONSUMER_SECRET, {self._env}ACCESS_TOKEN and {self._env}ACCESS_TOKEN_SECRET "
                f"(OAuth 1.0a) or {self._env}USER_TOKEN (OAuth 2.0) in the environment or .env",
                variable=f"{self._env}USER_TOKEN")
        return self._client

    def _error(self, exc: Exception, posted: list[str], index: int) -> DeliveryError:
        ctx = {"posted_ids": tuple(posted), "part": index}
        where = f"part {index + 1} " if index else ""
        if isinstance(exc, tweepy.TooManyRequests):
            retry_after = _retry_after(exc.response.headers)
            return RateLimited(f"X rate limit reached; retry in {retry_after:.0f}s", retry_after,
                               reset_at=time.time() + retry_after, **ctx)
        if isinstance(exc, tweepy.HTTPException):
            status = exc.response.status_code
            detail = _detail(exc.response)
            if isinstance(exc, tweepy.Forbidden) and "duplicate" in detail.lower():
                return DuplicateContent(f"X refused {where}as duplicate content: {detail}", **ctx)
            if isinstance(exc, tweepy.Unauthorized) or (
                    isinstance(exc, tweepy.Forbidden) and any(s in detail.lower() for s in _CONFIG_403)):
                return ChannelConfigurationError(
                    f"X refused the credentials of account {self.account.name or self.account.handle!r} "
                    f"({status}: {detail}); check {self._env}* (keys, tokens, app write permission)",
                    http_status=status, **ctx)
            if isinstance(exc, tweepy.TwitterServerError):
                return TransientError(f"X server error {status} posting {where}: {detail}", http_status=status, **ctx)
            return PermanentError(f"X refused {where}({status}): {detail}", http_status=status, **ctx)
        if isinstance(exc, requests.ConnectionError):  # ConnectTimeout too: the request never left
            return TransientError(f"cannot reach X at {self.account.api_base}: {exc}", **ctx)
        if isinstance(exc, requests.Timeout):
            return OutcomeUnknown(f"X did not answer in {self.timeout}s; {where}may have been posted", **ctx)
        return TransientError(f"posting to X failed: {exc}", **ctx)


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason or ""
    if isinstance(body, dict):
        parts = [body.get("detail") or body.get("title") or ""]
        for err in body.get("errors") or ():
            if isinstance(err, dict) and err.get("message"):
                parts.append(err["message"])
        return " ".join(p for p in parts if p) or str(body)[:300]
    return str(body)[:300]


def _number(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, TypeError, ValueError):
        return None


def _retry_after(headers: Mapping[str, str]) -> float:
    """Seconds until X lifts the limit: the 15-minute reset, or a 24-hour one when that is
    the limit that ran out."""
    resets = [r for r in (_number(headers, "x-rate-limit-reset"),) if r is not None]
    for scope in ("x-user-limit-24hour", "x-app-limit-24hour"):
        if _number(headers, f"{scope}-remaining") == 0:
            reset = _number(headers, f"{scope}-reset")
            if reset is not None:
                resets.append(reset)
    if not resets:
        return float(DEFAULT_RETRY_SECONDS)
    return max(1.0, max(resets) - time.time())


def _limit_hint(headers: Mapping[str, str]) -> tuple[int, float] | None:
    remaining, reset = _number(headers, "x-rate-limit-remaining"), _number(headers, "x-rate-limit-reset")
    if remaining is None or reset is None:
        return None
    return int(remaining), reset
