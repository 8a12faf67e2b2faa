"""Signed links: a token reveals nothing, reads back what it says, and nothing else is accepted."""
from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.content.links import CONFIRM, PREFERENCES, UNSUBSCRIBE, VIEW, LinkSigner
from outreach.errors import DataError

KEY = "a-secret-key-for-tests-only"
SIGNER = LinkSigner(KEY, "https://rights.example.org/")
LINK_ID = "0123456789abcdef0123456789abcdef"


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_every_link_reads_back_what_it_was_made_for():
    # given the links of one recipient
    links = SIGNER.links(LINK_ID, "mid-year-recap", "recap", "unsubscribe@rights.example.org")
    # when their tokens are read
    # then they name that recipient's link id, the campaign and the step
    assert links.unsubscribe.startswith("https://rights.example.org/unsubscribe/")
    unsub = SIGNER.read(UNSUBSCRIBE, _token(links.unsubscribe))
    assert (unsub.link_id, unsub.campaign) == (LINK_ID, "mid-year-recap")
    view = SIGNER.read(VIEW, _token(links.view_in_browser))
    assert (view.link_id, view.campaign, view.step) == (LINK_ID, "mid-year-recap", "recap")
    assert links.preferences is not None
    assert SIGNER.read(PREFERENCES, _token(links.preferences)).link_id == LINK_ID
    # and the mailto subject carries the same unsubscribe token; no confirm link unless asked
    assert links.unsubscribe_mailto == ("mailto:unsubscribe@rights.example.org?subject=unsubscribe%20"
                                        + _token(links.unsubscribe))
    assert links.confirm is None


def test_a_confirm_link_carries_when_it_was_made():
    links = SIGNER.links(LINK_ID, "_system", "confirm", confirm=True)
    assert links.confirm is not None
    token = SIGNER.read(CONFIRM, _token(links.confirm))
    assert token.link_id == LINK_ID and token.issued_at is not None
    assert SIGNER.read(CONFIRM, SIGNER.token(CONFIRM, LINK_ID, issued_at=1_700_000_000)).issued_at == 1_700_000_000


def test_tokens_reveal_neither_the_address_nor_the_row_and_are_url_safe():
    # given links made for a subscriber whose address is known
    links = SIGNER.links(LINK_ID, "c", "s")
    for url in (links.unsubscribe, links.view_in_browser, links.preferences):
        token = _token(url)
        # then the token is URL-safe and its bytes hold no address: only the random link id
        assert all(ch.isalnum() or ch in "-_" for ch in token), url
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert b"@" not in raw and bytes.fromhex(LINK_ID) in raw


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),            # tag changed
    lambda t: t[:2] + ("A" if t[2] != "A" else "B") + t[3:],       # link id changed
    lambda t: t[:-22],                                               # tag removed
    lambda t: "",
    lambda t: "not a token at all",
    lambda t: t + "=",
    lambda t: "A" * 5000,
    lambda t: "é" + t,
])
def test_altered_tokens_are_refused(mangle):
    token = _token(SIGNER.links(LINK_ID, "c", "s").unsubscribe)
    with pytest.raises(DataError, match="invalid or was altered"):
        SIGNER.read(UNSUBSCRIBE, mangle(token))


def test_a_token_of_one_kind_is_not_a_token_of_another():
    links = SIGNER.links(LINK_ID, "c", "s", confirm=True)
    for kind, url in ((UNSUBSCRIBE, links.view_in_browser), (UNSUBSCRIBE, links.preferences),
                      (CONFIRM, links.preferences), (PREFERENCES, links.unsubscribe), (VIEW, links.confirm)):
        with pytest.raises(DataError):
            SIGNER.read(kind, _token(url))


def test_key_rotation_keeps_old_links_working_and_refuses_unknown_keys():
    # given a link signed before the key was replaced
    old = _token(LinkSigner("old-key", "https://x.example").links(LINK_ID, "c", "s").unsubscribe)
    # when the new signer lists the old key as a previous one, the link still verifies
    rotated = LinkSigner("new-key", "https://x.example", previous_keys=["old-key"])
    assert rotated.read(UNSUBSCRIBE, old).link_id == LINK_ID
    # and new links are made with the new key only
    new = _token(rotated.links(LINK_ID, "c", "s").unsubscribe)
    assert LinkSigner("new-key", "https://x.example").read(UNSUBSCRIBE, new).link_id == LINK_ID
    with pytest.raises(DataError):
        LinkSigner("old-key", "https://x.example").read(UNSUBSCRIBE, new)
    # once the old key is dropped, its links stop verifying
    with pytest.raises(DataError):
        LinkSigner("new-key", "https://x.example").read(UNSUBSCRIBE, old)


@given(st.text(max_size=300))
def test_reading_any_text_either_refuses_it_or_returns_a_valid_token(text):
    for kind in (UNSUBSCRIBE, VIEW, PREFERENCES, CONFIRM):
        try:
            token = SIGNER.read(kind, text)
        except DataError:
            continue
        assert len(token.link_id) == 32  # only reachable with a real tag: practically never


@given(st.text(min_size=1, max_size=60).filter(lambda s: "\0" not in s),
       st.text(min_size=1, max_size=60).filter(lambda s: "\0" not in s))
def test_any_campaign_and_step_names_round_trip(campaign, step):
    links = SIGNER.links(LINK_ID, campaign, step)
    view = SIGNER.read(VIEW, _token(links.view_in_browser))
    assert (view.campaign, view.step) == (campaign, step)
    assert SIGNER.read(UNSUBSCRIBE, _token(links.unsubscribe)).campaign == campaign
