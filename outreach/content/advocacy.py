"""What an advocacy campaign's templates read for one supporter: `target` (the office that
serves where they live), `letter` (their own letter, its `mailto:` link and copy-ready text),
`actions` (the signed "I sent it" links), `event` (the nearest stop of a tour within the
radius, its time in the venue's zone and in theirs) and `events` (every stop).

The same function feeds the email, the preview, validate and the /act/{token} page, so the
letter a supporter reads in the email is the one on the page.

Alternative sentences: a paragraph written as a list of versions gets one version per
supporter, chosen by a hash of the campaign and the supporter's link_id (or address): the
same supporter always gets the same letter, and two supporters usually different ones, so
offices that discard identical copies keep most of them.

The `mailto:` link: RFC 6068 (percent-encoded UTF-8, %20 for spaces, CRLF as %0D%0A). Mail
clients and browsers cut or refuse longer URLs (Outlook and older browsers at about 2,000
characters), so a link that would be longer carries a shorter body: the first paragraph and
a link to the page with the full text.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from ..models import Subscriber
from .links import ACT, LinkSigner

MAILTO_LIMIT = 2000
# What templates may read on each (validate checks templates against these).
LETTER_FIELDS = frozenset({"subject", "salutation", "paragraphs", "closing", "signature", "text", "mailto",
                           "mailto_shortened", "to", "page", "personal_prompt"})
EVENT_FIELDS = frozenset({"id", "venue", "city", "region", "country", "address", "rsvp_url", "livestream_url",
                          "parking", "starts_local", "starts_yours", "zone", "your_zone", "distance_km",
                          "distance_mi", "date", "latitude", "longitude"})
ADVOCACY_CONTEXT = frozenset({"target", "letter", "actions", "event", "events"})


def choose(versions: str | Sequence[str], *seed: str) -> str:
    """One of `versions`, the same for the same seed every time."""
    if isinstance(versions, str):
        return versions
    digest = hashlib.blake2b("\0".join(seed).encode("utf-8"), digest_size=8).digest()
    return versions[int.from_bytes(digest, "big") % len(versions)]


def mailto(to: Sequence[str], subject: str, body: str) -> str:
    """A mailto: URL (RFC 6068): addresses as they are (an @ and the usual characters need no
    quoting), subject and body percent-encoded as UTF-8 with CRLF line breaks."""
    def enc(text: str) -> str:
        return quote(text.replace("\r\n", "\n").replace("\n", "\r\n"), safe="")
    return f"mailto:{','.join(quote(a, safe='@.+-_') for a in to)}?subject={enc(subject)}&body={enc(body)}"


@dataclass(frozen=True)
class LetterView:
    subject: str
    salutation: str
    paragraphs: tuple[str, ...]
    closing: str
    signature: tuple[str, ...]
    text: str
    to: tuple[str, ...]
    mailto: str
    mailto_shortened: bool
    page: str | None
    personal_prompt: str

    @property
    def view(self) -> MappingProxyType[str, Any]:
        return MappingProxyType({k: getattr(self, k) for k in LETTER_FIELDS})


def make_letter(campaign: Any, who: Subscriber, target: Mapping[str, Any] | None, page: str | None) -> LetterView:
    spec = campaign.letter
    seed = (campaign.name, who.link_id or who.email.lower())
    subject = choose(spec.subject, *seed, "subject")
    salutation = spec.salutation or (target or {}).get("salutation") or "To whom it may concern,"
    paragraphs = tuple(choose(p, *seed, str(i)) for i, p in enumerate(spec.paragraphs))
    place = ", ".join(x for x in (who.city, who.region if who.country == "US" else None) if x) \
        or who.country_name or ""
    signature = tuple(x for x in (who.name, place) if x)
    text = "\n\n".join([salutation, *paragraphs, "\n".join((spec.closing, *signature))])
    to: list[str] = []
    for address in ([(target or {}).get("email")] +
                    [t.email for t in (campaign.target_set.always if campaign.target_set else ())]):
        if address and address not in to:
            to.append(address)
    link = mailto(to, subject, text)
    shortened = False
    if len(link) > MAILTO_LIMIT and page:
        shortened = True
        short = "\n\n".join([salutation, paragraphs[0], f"(The full letter: {page})",
                             "\n".join((spec.closing, *signature))])
        link = mailto(to, subject, short)
        if len(link) > MAILTO_LIMIT:  # even the first paragraph is too long: the page has it all
            link = mailto(to, subject, f"{salutation}\n\n{page}\n\n" + "\n".join((spec.closing, *signature)))
    return LetterView(subject, salutation, paragraphs, spec.closing, signature, text, tuple(to), link, shortened,
                      page, spec.personal_prompt)


def _when(instant: datetime, zone: ZoneInfo) -> str:
    local = instant.astimezone(zone)
    hour = local.strftime("%I").lstrip("0")
    return f"{local:%A, %B} {local.day}, {hour}:{local:%M} {local:%p} {local.tzname()}"


def event_view(stop: Any, who: Subscriber | None, distance: float | None) -> MappingProxyType[str, Any]:
    ev = stop.event
    try:
        theirs = ZoneInfo(who.timezone) if who is not None and who.timezone else stop.zone
    except (ValueError, KeyError, IsADirectoryError):
        theirs = stop.zone
    return MappingProxyType({
        "id": ev.id, "venue": ev.venue, "city": ev.city, "region": ev.region, "country": ev.country,
        "address": ev.address, "rsvp_url": ev.rsvp_url, "livestream_url": ev.livestream_url, "parking": ev.parking,
        "starts_local": _when(stop.start, stop.zone), "starts_yours": _when(stop.start, theirs),
        "zone": str(stop.zone), "your_zone": str(theirs), "date": stop.start.astimezone(stop.zone).date().isoformat(),
        "distance_km": round(distance) if distance is not None else None,
        "distance_mi": round(distance / 1.609344) if distance is not None else None,
        "latitude": stop.latitude, "longitude": stop.longitude,
    })


def context(campaign: Any, who: Subscriber | None, signer: LinkSigner | None) -> dict[str, Any]:
    """The advocacy variables for `who` (all None for a campaign that has none of it)."""
    out: dict[str, Any] = dict.fromkeys(ADVOCACY_CONTEXT)
    if who is None:
        return out
    target = campaign.target_set.view(who) if campaign.target_set is not None else None
    out["target"] = target
    page = None
    if signer is not None and (campaign.letter is not None or campaign.actions):
        token = signer.token(ACT, who.link_id or "0" * 32, campaign.name)
        page = f"{signer.base_url}/act/{token}"
        out["actions"] = MappingProxyType({a: f"{page}/{a}" for a in campaign.actions})
    if campaign.letter is not None:
        out["letter"] = make_letter(campaign, who, target, page).view
    events = campaign.placed_events
    if events is not None:
        out["events"] = tuple(event_view(s, who, None) for s in events.stops)
        found = events.nearest(who)
        if found is not None:
            out["event"] = event_view(found[0], who, found[1])
    return out



def active(campaign: Any) -> bool:
    """Whether the campaign uses any of it (built-in campaigns have none of these fields)."""
    return any(getattr(campaign, k, None) for k in ("target_set", "letter", "actions", "placed_events"))
