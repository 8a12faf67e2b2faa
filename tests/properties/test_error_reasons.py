"""Error reasons as operators see them grouped (`outreach status`, the logs): whatever text a
provider answers, the reason is one short line, stable (grouping it again changes nothing) and
without the recipient's address."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outreach.store.overview import reason_of


@given(st.emails(), st.text(max_size=200), st.text(max_size=200))
def test_a_reason_never_carries_the_address_and_groups_alike(address, before, after):
    reason = reason_of(f"{before} <{address}> {after}")
    assert address not in reason
    assert "\n" not in reason and len(reason) <= 300
    assert reason_of(reason) == reason


@given(st.emails(), st.emails())
def test_one_cause_for_two_recipients_is_one_reason(first, second):
    template = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"
    assert reason_of(template.format(first)) == reason_of(template.format(second))
