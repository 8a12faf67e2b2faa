"""Signed links: what a token says can be read back, and nothing else is accepted."""
from __future__ import annotations

import pytest

from outreach.content.links import LinkSigner
from outreach.errors import DataError

SIGNER = LinkSigner("a-secret-key-for-tests-only", "https://rights.example.org/")


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_unsubscribe_and_view_tokens_read_back():
    # given the links of one recipient
    links = SIGNER.links("zoë@example.net", "mid-year-recap", "recap", "unsubscribe@rights.example.org")
    # when their tokens are read
    # then they name that recipient, campaign and step
    assert links.unsubscribe.startswith("https://rights.example.org/unsubscribe/")
    assert SIGNER.read_unsubscribe(_token(links.unsubscribe)) == ("zoë@example.net", "mid-year-recap")
    assert SIGNER.read_view(_token(links.view_in_browser)) == ("zoë@example.net", "mid-year-recap", "recap")
    # and the mailto subject carries the same unsubscribe token
    assert links.unsubscribe_mailto == ("mailto:unsubscribe@rights.example.org?subject=unsubscribe%20"
                                        + _token(links.unsubscribe))


def test_tokens_are_url_safe():
    links = SIGNER.links("a+b/c=d@example.net", "c", "s")
    for url in (links.unsubscribe, links.view_in_browser):
        assert all(ch.isalnum() or ch in "-_." for ch in _token(url)), url


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),            # signature changed
    lambda t: "x" + t[1:],                                           # payload changed
    lambda t: t.split(".")[0],                                       # signature removed
    lambda t: "",
    lambda t: "not a token at all",
])
def test_altered_tokens_are_refused(mangle):
    token = _token(SIGNER.links("ana@example.net", "c", "s").unsubscribe)
    with pytest.raises(DataError, match="invalid or was altered"):
        SIGNER.read_unsubscribe(mangle(token))


def test_a_view_token_is_not_an_unsubscribe_token_nor_another_keys_token():
    links = SIGNER.links("ana@example.net", "c", "s")
    with pytest.raises(DataError):
        SIGNER.read_unsubscribe(_token(links.view_in_browser))
    other = LinkSigner("another-key", "https://rights.example.org")
    with pytest.raises(DataError):
        other.read_unsubscribe(_token(links.unsubscribe))
