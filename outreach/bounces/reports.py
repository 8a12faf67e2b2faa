"""What a message that came back says: a delivery status notification (RFC 3464), a complaint
(ARF, RFC 5965), a bounce in one of the many non-standard shapes mail servers still send
(through flufl.bounce, the detectors GNU Mailman has kept up for two decades), an
out-of-office or challenge-response reply (ignored), or nothing we act on.

Read in that order: a multipart/report is authoritative and is read field by field; only a
message that is not one goes to the heuristics, and an auto-reply is recognized before them
so a vacation notice that quotes our message is never mistaken for a bounce.

Which delivery a report answers is not decided here (see `apply.py`): the report only says
where it points, the addresses it was sent to (a VERP envelope sender of ours) and the
Message-ID of the original message when it quotes it.
"""
from __future__ import annotations

import dataclasses
import email
import email.errors
import email.header
import email.policy
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from enum import StrEnum

from flufl.bounce import all_failures

from ..errors import DataError
from ..models import FeedbackKind

# flufl.bounce logs every detector it runs, and a detector that trips over an odd message as
# an ERROR before raising; that case is handled here (the message is no known shape).
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

MAX_REPORT = 10 * 1024 * 1024  # bytes: a bounce quoting a large newsletter stays far below
_TEXT = 500                    # characters of a provider's text kept per finding


class ReportType(StrEnum):
    DSN = "dsn"                # RFC 3464 delivery status notification
    ARF = "arf"                # RFC 5965 abuse feedback report (a complaint)
    HEURISTIC = "heuristic"    # a non-standard bounce flufl.bounce recognized
    AUTO_REPLY = "auto_reply"  # out of office, vacation, challenge-response: ignored
    OTHER = "other"            # a message, but nothing we act on (a person's reply, a delay warning)


@dataclass(frozen=True)
class Finding:
    """What a report says about one address."""

    kind: FeedbackKind
    address: str
    code: str | None = None   # enhanced status (5.1.1), else the reply code, else a provider's word
    text: str | None = None   # the remote server's or provider's words

    @property
    def detail(self) -> str:
        return " ".join(p for p in (self.code, self.text) if p) or self.kind.value


@dataclass(frozen=True)
class Report:
    type: ReportType
    findings: tuple[Finding, ...]
    key: str                           # identifies this report: the same report twice has the same key
    at: datetime                       # when it was written (Date), else when it was read
    addressed_to: tuple[str, ...] = ()  # where it was sent (a VERP address of ours), best first
    original_message_id: str | None = None
    why: str = ""                      # for AUTO_REPLY and OTHER: why nothing is done
    subject: str = field(default="", compare=False)


def parse(raw: bytes, recipients: Iterable[str] = ()) -> Report:
    """Read one message; `recipients` are its envelope recipients when known (the bounce
    server's RCPT TO, an MTA pipe's ${recipient}). DataError when `raw` is not a message."""
    if len(raw) > MAX_REPORT:
        raise DataError(f"the message is {len(raw)} bytes; a bounce report is at most {MAX_REPORT}")
    if not raw.strip():
        raise DataError("the input is empty; expected one email message (a bounce report)")
    if b"\0" in raw[:4096]:
        raise DataError("the input is binary data, not an email message")
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if not msg.keys() or not any(k.lower() in ("from", "date", "subject", "message-id", "to", "received",
                                               "return-path", "content-type") for k in msg.keys()):
        raise DataError("the input has no mail headers (From, Date, Subject ...); expected one email message")
    report_id = _header(msg, "message-id")
    key = hashlib.sha256((report_id or "").encode("utf-8", "replace") if report_id else raw).hexdigest()
    at = _date(msg) or datetime.now(UTC)
    addressed = _addressed_to(msg, recipients)
    subject = _header(msg, "subject") or ""

    def made(type_: ReportType, findings: Iterable[Finding] = (), original: Message | None = None,
             quoted: str | None = None, why: str = "") -> Report:
        return Report(type_, tuple(findings), key, at, addressed + _return_paths(original),
                      quoted or (_header(original, "message-id") if original is not None else None), why, subject)

    kind = msg.get_content_type()
    report_type = str(msg.get_param("report-type") or "").lower() if kind == "multipart/report" else ""
    if report_type == "feedback-report" or _part(msg, "message/feedback-report") is not None:
        original = _original(msg)
        fields = _arf_fields(msg)
        made_report = made(ReportType.ARF, _arf(fields, original), original)
        # the envelope sender the complaining provider saw: our VERP address
        mail_from = tuple(a for v in (fields.get_all("original-mail-from", []) if fields else []) if (a := _bare(v)))
        return dataclasses.replace(made_report, addressed_to=made_report.addressed_to + mail_from)
    if report_type == "delivery-status" or _part(msg, "message/delivery-status") is not None:
        findings = tuple(_dsn(msg))
        return made(ReportType.DSN, findings, _original(msg), why="" if findings else (
            "a delivery status notification without a failure (delayed, delivered or relayed)"))
    auto = _auto_reply(msg)
    if auto and not _from_mailer_daemon(msg):
        return made(ReportType.AUTO_REPLY, why=auto)
    findings = tuple(_heuristic(msg))
    if findings:
        original = _original(msg)
        return made(ReportType.HEURISTIC, findings, original,
                    quoted=None if original is not None else _quoted_message_id(msg, report_id))
    if auto:
        return made(ReportType.AUTO_REPLY, why=auto)
    return made(ReportType.OTHER, why="not a bounce or complaint report (no delivery status, feedback report or "
                "known bounce text)")


# --- RFC 3464 -------------------------------------------------------------------------------

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"\b([45]\d\d)\b")
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such user|does(?: not|n't) exist|invalid recipient|recipient not found|"
    r"mailbox (?:not found|unavailable)|unknown (?:mailbox|recipient)|no mailbox|address rejected|"
    r"account (?:has been )?disabled|no longer (?:active|available)|(?:does not|doesn't) have an? [\w.-]+ account",
    re.I)


def bounce_kind(status: str | None, text: str | None) -> FeedbackKind:
    """Hard or soft, from an enhanced status code (RFC 3463) and the server's text.

    Only what says the address itself is bad is hard (suppressed at once): 5.1.x (bad
    mailbox, domain or syntax), 5.2.1 (mailbox disabled), 5.4.4 (no route to the domain), or a
    plain 5xx whose text says the user is unknown. Everything else that failed (a full
    mailbox, a message refused for its content or the sender's reputation, a 4.x.x) is soft:
    it suppresses only when it keeps happening (bounces.soft_limit in bounces.soft_window)."""
    m = _ENHANCED.search(status or "") or _ENHANCED.search(text or "")
    if m:
        klass, subject, detail = m.groups()
        if klass == "5" and (subject == "1" or (subject, detail) in (("2", "1"), ("4", "4"))):
            return FeedbackKind.HARD_BOUNCE
        if klass == "5" and (subject, detail) == ("0", "0") and _UNKNOWN_USER.search(text or ""):
            return FeedbackKind.HARD_BOUNCE
        return FeedbackKind.SOFT_BOUNCE
    reply = _REPLY.search(status or "") or _REPLY.search(text or "")
    if reply and reply.group(1).startswith("5") and _UNKNOWN_USER.search(text or ""):
        return FeedbackKind.HARD_BOUNCE
    return FeedbackKind.SOFT_BOUNCE


def _dsn(msg: Message) -> Iterator[Finding]:
    part = _part(msg, "message/delivery-status")
    if part is None:
        return
    blocks = _status_blocks(part)
    for block in blocks[1:]:  # the first is the per-message block
        action = _clean(block.get("action") or "").lower()
        if action != "failed":
            continue  # delayed, delivered, relayed, expanded: not a failure (yet)
        address = _typed_address(block.get("original-recipient")) or _typed_address(block.get("final-recipient"))
        if not address:
            continue
        status = _clean(block.get("status") or "")
        text = _clean(block.get("diagnostic-code") or "")
        text = re.sub(r"^\s*smtp\s*;\s*", "", text, flags=re.I)
        code = m.group(0) if (m := _ENHANCED.search(status) or _ENHANCED.search(text)) else status or None
        yield Finding(bounce_kind(status, text), address, code, text[:_TEXT] or None)


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    # a delivery-status the parser left as text (e.g. base64 encoded): read its blocks
    text = _decoded(part)
    return [HeaderParser().parsestr(block.strip() + "\n") for block in re.split(r"\r?\n\s*\r?\n", text)
            if block.strip()]


def _typed_address(value: str | None) -> str | None:
    if not value:
        return None
    _, _, address = _clean(value).partition(";")
    address = address.strip().strip("<>").strip()
    return address.lower() if "@" in address else None


# --- RFC 5965 -------------------------------------------------------------------------------

def _arf_fields(msg: Message) -> Message | None:
    part = _part(msg, "message/feedback-report")
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return HeaderParser().parsestr(_decoded(part))


def _arf(fields: Message | None, original: Message | None) -> Iterator[Finding]:
    feedback_type = _clean((fields.get("feedback-type") if fields else None) or "abuse").lower()
    if feedback_type not in ("abuse", "fraud", "virus", "other", "not-spam"):
        feedback_type = "abuse"
    if feedback_type == "not-spam":
        return
    addresses: list[str] = []
    if fields is not None:
        addresses = [a for v in fields.get_all("original-rcpt-to", []) if (a := _bare(v))]
    if not addresses and original is not None:
        addresses = [a.lower() for _, a in getaddresses([_clean(v) for v in original.get_all("to", [])]) if "@" in a]
    agent = _clean((fields.get("user-agent") if fields else None) or "")
    for address in dict.fromkeys(addresses):
        yield Finding(FeedbackKind.COMPLAINT, address, feedback_type,
                      f"complaint reported by {agent}"[:_TEXT] if agent else "complaint (feedback loop)")


# --- everything else --------------------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|out of (?:the )?office|vacation|away from|"
    r"autoreply|auto:|absence|abwesen|r[ée]ponse automatique|부재중|자동\s*응답)", re.I)
_CHALLENGE = re.compile(r"(?:please )?(?:confirm|verify) (?:that )?(?:you are|you're) (?:a )?human|"
                        r"challenge[- ]response|sender verification|anti[- ]?spam (?:verification|challenge)|"
                        r"whitelist (?:request|confirmation)|please confirm your (?:e-?mail|message)", re.I)
_CHALLENGE_HEADERS = ("x-cr-hashedpuzzle", "x-cr-puzzleid", "x-boxtrapper", "x-spamarrest-noauth",
                      "x-challenge", "x-tmda-confirm")
_DAEMON = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|mailerdaemon|mail-delivery)", re.I)
_FAILURE_SUBJECT = re.compile(
    r"undeliver|delivery (?:status notification|failure|failed|has failed|problem)|returned mail|failure notice|"
    r"mail delivery (?:failed|system)|non[- ]?delivery|could not be delivered|delivery unsuccessful", re.I)


def _auto_reply(msg: Message) -> str:
    """Why `msg` is an automatic reply (RFC 3834 and the de facto markers), or ""."""
    auto = (_header(msg, "auto-submitted") or "").lower()
    subject = _header(msg, "subject") or ""
    if any(h in (k.lower() for k in msg.keys()) for h in _CHALLENGE_HEADERS) or _CHALLENGE.search(subject):
        return "a challenge-response (sender verification) request"
    if _AUTO_SUBJECT.search(subject):
        return "an out-of-office or automatic reply"
    if any(_header(msg, h) for h in ("x-autoreply", "x-autorespond", "x-auto-response-suppress")):
        return "an automatic reply (X-Autoreply, X-Autorespond or X-Auto-Response-Suppress)"
    if (_header(msg, "precedence") or "").lower() == "auto_reply":
        return "an automatic reply (Precedence: auto_reply)"
    if auto and auto != "no":
        return f"an automatic message (Auto-Submitted: {auto})"
    return ""


def _from_mailer_daemon(msg: Message) -> bool:
    _, sender = parseaddr(_header(msg, "from") or "")
    return bool(_DAEMON.match(sender)) or bool(_FAILURE_SUBJECT.search(_header(msg, "subject") or ""))


def _heuristic(msg: Message) -> Iterator[Finding]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector that trips over an odd message: that message is not a known shape
        return
    body = _body_text(msg)
    for raw, kind in [*((a, FeedbackKind.HARD_BOUNCE) for a in sorted(permanent)),
                      *((a, FeedbackKind.SOFT_BOUNCE) for a in sorted(temporary - permanent))]:
        address = _bare(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
        if not address:
            continue
        code, text = _diagnostic(body, address)
        if kind is FeedbackKind.HARD_BOUNCE and code:
            kind = bounce_kind(code, text)  # flufl's "permanent" includes refusals that are not the address's
        yield Finding(kind, address, code, text)


def _diagnostic(body: str, address: str) -> tuple[str | None, str | None]:
    """The code and words about `address` in a free-text bounce: the lines from the one
    naming it up to the next blank line."""
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if address.lower() in line.lower():
            chunk: list[str] = []
            for following in lines[i:i + 6]:
                if chunk and not following.strip():
                    break
                chunk.append(following.strip())
            text = _clean(" ".join(chunk))[:_TEXT]
            m = _ENHANCED.search(text) or _REPLY.search(text)
            if m is None:
                continue
            return m.group(0), text
    return None, None


# --- helpers ---------------------------------------------------------------------------------

def _part(msg: Message, content_type: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _original(msg: Message) -> Message | None:
    """The returned message (or its headers) a report carries, if any."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind in ("text/rfc822-headers", "text/global-headers"):
            return HeaderParser().parsestr(_decoded(part))
    return None


def _return_paths(original: Message | None) -> tuple[str, ...]:
    """The envelope sender the original was delivered with (kept by the receiver as Return-Path),
    and its sender headers: where a complaint's or a quoted bounce's VERP address is."""
    if original is None:
        return ()
    found = [a for h in ("return-path", "x-original-return-path", "errors-to", "sender")
             for v in original.get_all(h, []) if (a := _bare(v))]
    return tuple(dict.fromkeys(found))


def _addressed_to(msg: Message, recipients: Iterable[str]) -> tuple[str, ...]:
    found = [a for r in recipients if (a := _bare(r))]
    for h in ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to", "cc"):
        found += [a.lower() for _, a in getaddresses([_clean(v) for v in msg.get_all(h, [])]) if "@" in a]
    return tuple(dict.fromkeys(found))


def _quoted_message_id(msg: Message, own: str | None) -> str | None:
    for m in re.finditer(r"^message-id:\s*(<[^>\s]{1,250}>)", _body_text(msg), re.I | re.M):
        if m.group(1) != own:
            return m.group(1)
    return None


def _body_text(msg: Message) -> str:
    texts = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            texts.append(_decoded(part))
    return "\n".join(texts)


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _header(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    try:
        text = str(email.header.make_header(email.header.decode_header(str(value))))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        text = str(value)
    return _clean(text) or None


def _date(msg: Message) -> datetime | None:
    try:
        value = parsedate_to_datetime(_header(msg, "date") or "")
    except (TypeError, ValueError, IndexError, AttributeError):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _bare(value: str) -> str | None:
    _, address = parseaddr(_clean(value))
    address = address.strip().strip("<>").lower()
    return address if "@" in address and len(address) <= 320 else None


def _clean(value: object) -> str:
    """One line: folded headers unfolded, control characters gone (nothing can reach a log
    or a header as a second line)."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", str(value)).strip()

