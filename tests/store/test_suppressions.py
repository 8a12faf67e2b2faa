from __future__ import annotations

import pytest

from outreach.errors import DataError
from outreach.store import is_suppressed, suppress, suppressed_among, unsuppress
from outreach.store.suppressions import get_suppression


def test_suppression_covers_every_spelling_and_keeps_the_first_reason(engine):
    # given an address suppressed once
    assert suppress(engine, "John.Doe@Example.ORG", "unsubscribed", source="link") is True
    # when suppressed again with another reason and spelling
    assert suppress(engine, "john.doe@example.org", "hard bounce") is False
    # then one suppression exists, matching any case, with the first reason
    assert is_suppressed(engine, "JOHN.DOE@example.org")
    assert get_suppression(engine, "john.doe@EXAMPLE.org").reason == "unsubscribed"
    assert suppressed_among(engine, ["John.Doe@example.org", "other@example.org"]) == {"John.Doe@example.org"}


def test_unsuppress(engine):
    suppress(engine, "a@example.org", "manual")
    assert unsuppress(engine, "A@example.org") is True
    assert unsuppress(engine, "a@example.org") is False
    assert not is_suppressed(engine, "a@example.org")


def test_invalid_address_is_refused(engine):
    with pytest.raises(DataError, match="invalid email address"):
        suppress(engine, "not an address", "manual")
