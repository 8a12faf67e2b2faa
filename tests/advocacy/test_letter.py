"""The letter: personalized, alternative sentences chosen per supporter, a mailto: link that
opens it pre-filled and stays within what mail clients accept."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.authoring.campaigns import load_campaigns
from outreach.content.advocacy import MAILTO_LIMIT, choose, context, mailto, make_letter
from outreach.content.links import ACT, LinkSigner
from outreach.models import Subscriber
from outreach.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SIGNER = LinkSigner("test-secret", "https://outreach.test")


def campaign():
    found = load_campaigns(load_settings(ROOT, environ={"OUTREACH_SECRET_KEY": "k"}))
    return found.campaigns["forced-repatriation"]


def person(n: int = 0, **fields) -> Subscriber:
    base = {"email": f"p{n}@example.org", "name": "Olivia Martinez", "city": "Dallas", "region": "TX",
            "country": "US", "latitude": 32.78, "longitude": -96.8, "link_id": f"{n:032x}"}
    return Subscriber(**{**base, **fields})


def decode(link: str) -> tuple[list[str], str, str]:
    parts = urlsplit(link)
    assert parts.scheme == "mailto"
    query = parse_qs(parts.query, keep_blank_values=True)
    return unquote(parts.path).split(","), query["subject"][0], query["body"][0]


def test_the_letter_is_signed_addressed_and_opens_prefilled():
    # given a supporter in Dallas
    ctx = context(campaign(), person(), SIGNER)
    letter = ctx["letter"]
    # then it is addressed to Washington (Texas) and both UN missions, and to no other US office
    assert letter["to"] == ("chinaembpress_us@mfa.gov.cn", "chinesemission@yahoo.com", "chinamission_gva@mfa.gov.cn")
    assert letter["salutation"] == "Dear Minister Wang Yi,"
    assert letter["signature"] == ("Olivia Martinez", "Dallas, TX")
    # and the mailto: link decodes to exactly the letter, with CRLF line breaks
    to, subject, body = decode(letter["mailto"])
    assert to == list(letter["to"]) and subject == letter["subject"]
    assert body == letter["text"].replace("\n", "\r\n")
    assert len(letter["mailto"]) <= MAILTO_LIMIT and " " not in letter["mailto"] and "+" not in letter["mailto"]
    # and the page is the supporter's signed /act link
    token = letter["page"].rsplit("/", 1)[1]
    assert SIGNER.read(ACT, token).campaign == "forced-repatriation"
    assert ctx["actions"]["sent_letter"] == letter["page"] + "/sent_letter"


def test_alternatives_are_the_same_for_one_supporter_and_vary_across_supporters():
    c = campaign()
    first = make_letter(c, person(1), None, None)
    assert make_letter(c, person(1), None, None) == first
    texts = {make_letter(c, person(n), None, None).text for n in range(40)}
    assert len(texts) >= 5
    assert choose(["a", "b", "c"], "x", "1") == choose(["a", "b", "c"], "x", "1")


def test_a_letter_too_long_for_a_mailto_link_carries_a_shorter_body_and_the_page():
    c = campaign()
    long = person(name="N" * 150, city="C" * 150)
    paragraphs = [p * 3 if isinstance(p, str) else [v * 3 for v in p] for p in c.letter.paragraphs]
    bigger = c.model_copy(update={"letter": c.letter.model_copy(update={"paragraphs": paragraphs})})
    bigger._targets = c.target_set
    letter = make_letter(bigger, long, None, "https://outreach.test/act/TOKEN")
    assert letter.mailto_shortened and len(letter.mailto) <= MAILTO_LIMIT
    _, _, body = decode(letter.mailto)
    assert "https://outreach.test/act/TOKEN" in body and "N" * 150 in body
    assert len(letter.text) > MAILTO_LIMIT  # the page still has the whole letter


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=300), st.text(min_size=0, max_size=300))
def test_any_subject_and_body_round_trip_through_mailto(subject, body):
    subject = subject.replace("\r", "")
    body = body.replace("\r", "")
    try:
        subject.encode("utf-8"), body.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates never reach here (the YAML reader and the importer refuse them)
    link = mailto(["a@example.org"], subject, body)
    _, got_subject, got_body = decode(link)
    assert got_subject == subject.replace("\n", "\r\n") and got_body == body.replace("\n", "\r\n")
    assert "\n" not in link and "&" not in link.split("?", 1)[1].replace("&body=", "")
