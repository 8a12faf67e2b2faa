"""Generated and mutated bounce reports, and mangled VERP addresses: whatever arrives at the
bounce address is read into a Report or refused with a DataError, within the time bound;
never another exception. A VERP address reads back to its delivery whatever case a server
writes it in, and no altered token names a delivery."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.bounces.reports import Report, parse
from outreach.content.verp import Verp
from outreach.errors import DataError
from tests.bounces import corpus
from tests.properties.conftest import bounded

SENDER = "bounces+agrpgh67umc6bri@bounces.example.org"
SEEDS = [make(SENDER, "ana@example.com") for make in (
    corpus.postfix_user_unknown, corpus.exim_failed, corpus.exchange_online_not_found, corpus.exchange_2003_ndr,
    corpus.gmail_no_such_account, corpus.yahoo_failure_notice, corpus.ses_bounce, corpus.arf_complaint,
    corpus.out_of_office, corpus.challenge_response, corpus.postfix_delayed)]
NASTY = [b"\r\n", b"\n\n", b"--=_bnd\r\n", b"Content-Type: message/delivery-status\r\n", b"Status: 5.1.1\r\n",
         b"Action: failed\r\n", b"Final-Recipient: rfc822;\r\n", b"Content-Transfer-Encoding: base64\r\n",
         b"\x00", b"\xff\xfe", "\u4eba\u6b0a".encode(), b"=?utf-8?b?////?=", b"boundary=\"\"", b"<>", b"@",
         b"Content-Type: multipart/report; report-type=feedback-report; boundary=x\r\n", b"\tfolded\r\n"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "truncate"]))
        if action == "insert":
            data[at:at] = draw(st.sampled_from(NASTY) | st.binary(max_size=12))
        elif action == "delete":
            del data[at:at + draw(st.integers(1, 80))]
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=150)
@given(mutated())
def test_any_mutation_of_a_report_is_read_or_refused_cleanly(raw):
    with bounded(5):
        try:
            report = parse(raw, ["bounces@bounces.example.org"])
        except DataError as exc:
            assert "\n" not in str(exc)
            return
    assert isinstance(report, Report)
    for finding in report.findings:
        assert "@" in finding.address and "\n" not in (finding.text or "") and len(finding.text or "") <= 500


@settings(max_examples=100)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_read_or_refused_cleanly(raw):
    with bounded(5):
        try:
            parse(raw)
        except DataError:
            pass


VERP = Verp("property-secret", "bounces.example.org")


@settings(max_examples=200)
@given(st.integers(1, 2 ** 63 - 1))
def test_a_verp_address_reads_back_in_any_case(delivery_id):
    address = VERP.address(delivery_id)
    assert len(address.partition("@")[0]) <= 64
    assert VERP.read(address) == delivery_id == VERP.read(address.upper())


@settings(max_examples=200)
@given(st.integers(1, 2 ** 40), st.data())
def test_an_altered_token_names_nothing(delivery_id, data):
    token = VERP.token(delivery_id)
    at = data.draw(st.integers(0, len(token) - 1))
    letter = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz234567").filter(lambda c: c != token[at]))
    altered = token[:at] + letter + token[at + 1:]
    found = VERP.read_token(altered)
    # a changed last character may only touch base32's unused low bits: then it is the same bytes
    assert found is None or (found == delivery_id and at == len(token) - 1)


@settings(max_examples=200)
@given(st.text(max_size=120))
def test_any_text_as_an_address_is_none_or_a_delivery(text):
    found = VERP.read(text)
    assert found is None or isinstance(found, int)
