"""outreach.channels.smtp.mime: the bytes must parse back (email policy.default) to exactly what was meant."""
from __future__ import annotations

import email
import email.policy
import html as html_module
import random
import re
import shutil
import subprocess
from datetime import UTC, datetime
from email.header import decode_header, make_header

import pytest

from outreach.channels.base import OutgoingEmail
from outreach.channels.smtp.mime import build_email, clean_header_text, sign_dkim
from outreach.errors import ChannelConfigurationError, PermanentError, RecipientRejected

FROM = "Rights Watch <news@rights.example.org>"
LONG_URL = "https://rights.example.org/unsubscribe/" + "Ab3_-" * 30 + "?sig=" + "f" * 64

KOREAN = "인권을 위한 편지를 오늘 보내 주세요. 대사관 주소는 아래에 있습니다."
TEXT = "\n".join([
    "Dear friend,",
    "",
    ".",
    ". a line starting with a dot",
    "From the coordinators: thank you.",
    "From ",
    "trailing spaces   ",
    "tab\tinside and trailing\t",
    "equals = sign and =3D literal",
    "x" * 1200,                                  # one very long line without spaces
    "Emoji 🌍✊🏽 and Korean " + KOREAN,
    "Ünïcödé latin text",
    "",
])
HTML = "<html><body>" + "<p>" + "Read the recap &mdash; " * 200 + "</p><p>✊🏽 " + KOREAN + "</p></body></html>"


def make(**kw) -> OutgoingEmail:
    values = {"to_addr": "ana@example.net", "to_name": "Ana Lima", "subject": "Mid-year recap",
                  "html": HTML, "text": TEXT, "list_unsubscribe_url": LONG_URL,
                  "list_unsubscribe_mailto": "unsub@rights.example.org",
                  "headers": {"X-Campaign": "recap-2025", "X-Outreach-Delivery": "d-42"}}
    values.update(kw)
    return OutgoingEmail(**values)


def roundtrip(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def assert_wire_format(data: bytes) -> None:
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR"
    assert data.endswith(b"\r\n")
    lines = data.split(b"\r\n")
    assert max(map(len, lines)) <= 998
    head, _, body = data.partition(b"\r\n\r\n")
    for part in roundtrip(data).walk():
        if part.is_multipart():
            continue
        cte = part["Content-Transfer-Encoding"]
        raw = part.get_payload()
        if cte == "7bit":
            assert raw.isascii() and "\x00" not in raw
            assert not re.search(r"(^|\n)From ", raw), "an unencoded line starting with 'From '"
        else:
            assert cte in ("quoted-printable", "base64"), cte
            for line in raw.splitlines():
                assert len(line) <= 76, line  # RFC 2045: encoded lines at most 76
    for line in head.split(b"\r\n"):
        if not line.startswith(b"List-Unsubscribe:"):
            assert len(line) <= 78, line


def text_of(part) -> str:
    return part.get_content().replace("\r\n", "\n")


def test_every_header_round_trips():
    # given an email with every header the builder writes
    date = datetime(2025, 7, 1, 9, 30, tzinfo=UTC)
    data = build_email(make(message_id="<abc.123@rights.example.org>"), FROM, "Team <team@rights.example.org>",
                       "rights.example.org", date)
    # when parsed back
    msg = roundtrip(data)
    # then each header says exactly what was meant
    assert_wire_format(data)
    assert msg["From"].addresses[0].display_name == "Rights Watch"
    assert msg["From"].addresses[0].addr_spec == "news@rights.example.org"
    assert msg["To"].addresses[0].display_name == "Ana Lima"
    assert msg["To"].addresses[0].addr_spec == "ana@example.net"
    assert msg["Reply-To"].addresses[0].addr_spec == "team@rights.example.org"
    assert msg["Subject"] == "Mid-year recap"
    assert msg["Date"].datetime == date
    assert msg["Message-ID"] == "<abc.123@rights.example.org>"
    assert msg["MIME-Version"] == "1.0"
    assert msg["X-Campaign"] == "recap-2025" and msg["X-Outreach-Delivery"] == "d-42"
    assert msg["List-Unsubscribe"] == f"<{LONG_URL}>, <mailto:unsub@rights.example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not msg.defects


def test_list_unsubscribe_is_folded_only_at_the_comma_and_never_encoded():
    data = build_email(make(), FROM, None, "rights.example.org")
    raw = re.search(rb"\r\nList-Unsubscribe: (.*?)\r\n(?! )", data, re.S).group(1)
    assert raw == f"<{LONG_URL}>,\r\n <mailto:unsub@rights.example.org>".encode()
    assert b"=?" not in raw


def test_both_parts_decode_to_the_originals():
    msg = roundtrip(build_email(make(), FROM, None, "rights.example.org"))
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    assert text_of(plain) == TEXT
    # (a 4,600-character line: too long for 7bit, so quoted-printable, characters as they are)
    assert html["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(html) == HTML


def test_ascii_parts_go_unencoded_and_other_text_quoted_printable():
    # given an ASCII text part with dot lines, and an HTML part with a non-ASCII name
    text = "Dear Ana,\n.\n. a dot line\nequals = sign\ntrailing   \n" + "x" * 900 + "\n"
    html = '<style>p { color: red }</style><p class="x">Dear Zoë 🌍 &amp; friends</p>'
    data = build_email(make(text=text, html=html), FROM, None, "x.org")
    # when parsed back
    plain, part = roundtrip(data).iter_parts()
    # then both are 7bit and decode to what was meant
    assert_wire_format(data)
    assert plain["Content-Transfer-Encoding"] == part["Content-Transfer-Encoding"] == "7bit"
    assert text_of(plain) == text
    assert text_of(part) == '<style>p { color: red }</style><p class="x">Dear Zo&#235; &#127757; &amp; friends</p>'
    assert html_module.unescape(text_of(part)) == html_module.unescape(html)
    # and latin text is quoted-printable
    latin = roundtrip(build_email(make(text="Dear Zoë, thank you for standing with us.\n", html=html), FROM, None,
                                  "x.org"))
    assert next(latin.iter_parts())["Content-Transfer-Encoding"] == "quoted-printable"


@pytest.mark.parametrize("html", [
    "<style>p::before { content: '→' }</style><p>Zoë</p>",     # CSS does not read &#...;
    "<p>x</p><STYLE media=all>p { content: 'é' }</Style ><p>Zoë</p>",
    "<p>Zoë</p><style>/* never closed: é */",
    "<script type='application/ld+json'>{\"name\": \"Zoë\"}</script><p>x</p>",
    "<p>" + "y" * 999 + "</p>",                                 # longer than a 7bit line may be
    "From the coordinators\n<p>hi</p>",                         # mbox readers would add '>'
])
def test_html_that_character_references_cannot_carry_is_encoded_exactly(html):
    data = build_email(make(html=html), FROM, None, "x.org")
    assert_wire_format(data)
    part = list(roundtrip(data).iter_parts())[1]
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(part) == html


def test_lines_starting_with_from_are_protected_on_the_wire():
    data = build_email(make(text="From here\nFrom " + "y" * 200 + "\nnot From"), FROM, None, "x.org")
    assert_wire_format(data)
    assert b"\r\nFrom " not in data.partition(b"\r\n\r\n")[2]
    plain = next(roundtrip(data).iter_parts())
    assert text_of(plain) == "From here\nFrom " + "y" * 200 + "\nnot From"


def test_mostly_korean_text_is_base64_and_latin_text_quoted_printable():
    data = build_email(make(text=KOREAN * 20, html="<p>Hello</p>"), FROM, None, "x.org")
    plain, html = roundtrip(data).iter_parts()
    assert plain["Content-Transfer-Encoding"] == "base64"
    assert html["Content-Transfer-Encoding"] == "7bit"
    assert text_of(plain) == KOREAN * 20
    assert_wire_format(data)


def test_line_endings_in_bodies_are_normalised_to_crlf():
    data = build_email(make(text="a\r\nb\rc\nd", html="<p>\r\n</p>"), FROM, None, "x.org")
    assert_wire_format(data)
    plain, html = roundtrip(data).iter_parts()
    assert text_of(plain) == "a\nb\nc\nd" and text_of(html) == "<p>\n</p>"


def test_text_only_email_when_there_is_no_html():
    msg = roundtrip(build_email(make(html=""), FROM, None, "x.org"))
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()
    assert text_of(msg) == TEXT


def test_non_ascii_names_and_subjects_are_encoded_words_that_round_trip():
    # given a long subject and names in Korean, with emoji
    subject = "✊🏽 " + KOREAN + " — Mid-year recap 🌍 " * 3
    data = build_email(make(to_name="김민지 🌸", subject=subject), "국제 인권 <news@rights.example.org>", None, "x.org")
    assert_wire_format(data)
    head = data.partition(b"\r\n\r\n")[0].decode("ascii")  # the header block is pure ASCII
    for word in re.findall(r"=\?[^?]+\?[bB]\?[^?]*\?=", head):
        assert len(word) <= 75
    msg = roundtrip(data)
    assert msg["Subject"] == subject.strip()
    assert msg["To"].addresses[0].display_name == "김민지 🌸"
    assert msg["From"].addresses[0].display_name == "국제 인권"


def test_long_ascii_subject_is_folded_at_spaces():
    subject = " ".join(f"word{i}" for i in range(60))
    data = build_email(make(subject=subject), FROM, None, "x.org")
    assert_wire_format(data)
    assert b"=?" not in data.partition(b"\r\n\r\n")[0]
    assert roundtrip(data)["Subject"] == subject


def test_ascii_that_looks_like_an_encoded_word_stays_literal():
    subject = "literally =?utf-8?b?SGk=?= here"
    assert roundtrip(build_email(make(subject=subject), FROM, None, "x.org"))["Subject"] == subject


def test_names_with_quotes_and_backslashes_round_trip():
    name = 'Ana "the \\ Bold" Lima, Jr.'
    msg = roundtrip(build_email(make(to_name=name), FROM, None, "x.org"))
    assert msg["To"].addresses[0].display_name == name


@pytest.mark.parametrize("bad", ["\r\n", "\n", "\r", "\x00", "\x0b", "\x85", "\u2028", "\r\n\t"])
def test_control_characters_cannot_inject_a_header(bad):
    # given subscriber-supplied fields carrying a line break and a header
    email_ = make(to_name=f"Eve{bad}Bcc: x@evil.example", subject=f"Hi{bad}Bcc: y@evil.example",
                  headers={"X-Campaign": f"c{bad}Bcc: z@evil.example"})
    data = build_email(email_, FROM, None, "x.org")
    # then nothing but the builder's own headers exists
    assert_wire_format(data)
    msg = roundtrip(data)
    assert msg["Bcc"] is None
    assert sorted(msg.keys()) == sorted(["From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe",
                                         "List-Unsubscribe-Post", "X-Campaign", "MIME-Version",
                                         "Content-Type"])
    assert msg["Subject"] == "Hi Bcc: y@evil.example"


def test_fuzzed_names_and_subjects_round_trip():
    # given many random strings mixing ASCII, specials, control characters, Hangul and emoji
    rng = random.Random(1234)
    alphabet = list("abc XYZ019 \"\\(),:;<>@[]=?_.'\t\r\n\x00\x7f") + list("éßñ한국어✊🏽🌍\u2028")
    for _ in range(400):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        subject = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        data = build_email(make(to_name=name, subject=subject), FROM, None, "x.org")
        assert_wire_format(data)
        msg = roundtrip(data)
        # then each field reads back as its cleaned value: control characters became spaces
        assert msg["Subject"] == clean_header_text(subject), repr(subject)
        assert msg["To"].addresses[0].addr_spec == "ana@example.net"
        assert_name_round_trips(data, msg, " ".join(clean_header_text(name).split()))


def assert_name_round_trips(data: bytes, msg, name: str) -> None:
    if not name:
        return
    parsed = msg["To"].addresses[0].display_name
    if name.isascii() or len(name.encode()) <= 45:  # a quoted-string or one encoded-word
        assert parsed == name, repr(name)
    else:
        # several encoded-words: Python's address parser adds a space between adjacent
        # words (against RFC 2047 6.2); an RFC decoder, as mail clients use, reads it exactly
        raw = re.search(rb"\r\nTo: (.*?) <ana@example.net>\r\n", data, re.S).group(1).decode("ascii")
        assert str(make_header(decode_header(raw.replace("\r\n", "")))) == name, repr(name)


def test_long_non_ascii_name_is_split_into_valid_encoded_words():
    name = "김민지 " * 20 + "✊🏽"
    data = build_email(make(to_name=name), FROM, None, "x.org")
    assert_wire_format(data)
    assert_name_round_trips(data, roundtrip(data), name.strip())


def test_long_ascii_name_is_a_folded_quoted_string():
    name = "Ana Maria " * 15 + "Lima"
    data = build_email(make(to_name=name), FROM, None, "x.org")
    assert_wire_format(data)
    assert b"=?" not in data.partition(b"\r\n\r\n")[0]
    assert roundtrip(data)["To"].addresses[0].display_name == name


@pytest.mark.parametrize("to", ["ana@example.net\r\nBcc: x@evil.example", "ana", "a b@example.net",
                                "<ana@example.net>", "ana@exa_mple.net", "ana@@example.net", ""])
def test_invalid_recipient_addresses_are_rejected(to):
    with pytest.raises(RecipientRejected) as info:
        build_email(make(to_addr=to), FROM, None, "x.org")
    assert info.value.hard_bounce is False


def test_idn_domain_is_written_in_ascii():
    msg = roundtrip(build_email(make(to_addr="ana@bücher.example"), FROM, None, "x.org"))
    assert msg["To"].addresses[0].addr_spec == "ana@xn--bcher-kva.example"


def test_invalid_from_is_a_configuration_error():
    with pytest.raises(ChannelConfigurationError):
        build_email(make(), "Rights Watch <not an address>", None, "x.org")


@pytest.mark.parametrize("headers", [{"Bcc": "x@evil.example"}, {"Subject": "again"}, {"X Bad": "1"},
                                     {"X-Bad:": "1"}, {"Content-Type": "text/plain"}])
def test_extra_headers_cannot_replace_or_break_the_builder_headers(headers):
    with pytest.raises(PermanentError):
        build_email(make(headers=headers), FROM, None, "x.org")


@pytest.mark.parametrize("url", ["https://x.org/u?a=1\r\nBcc: x@evil.example", "https://x.org/a b",
                                 "javascript:alert(1)", "https://x.org/<u>"])
def test_bad_unsubscribe_urls_are_refused(url):
    with pytest.raises(PermanentError):
        build_email(make(list_unsubscribe_url=url), FROM, None, "x.org")


def test_without_one_click_url_there_is_no_list_unsubscribe_post():
    msg = roundtrip(build_email(make(list_unsubscribe_url=None), FROM, None, "x.org"))
    assert msg["List-Unsubscribe"] == "<mailto:unsub@rights.example.org>"
    assert msg["List-Unsubscribe-Post"] is None


def test_message_id_is_made_when_missing_and_unique():
    ids = {roundtrip(build_email(make(), FROM, None, "rights.example.org"))["Message-ID"] for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"<[0-9a-f]{32}@rights\.example\.org>", i) for i in ids)


# --- DKIM -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to generate a test RSA key")
    d = tmp_path_factory.mktemp("dkim")
    key = d / "private.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "1024"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    import base64
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    return key, record


def test_dkim_signature_verifies_and_breaks_when_a_signed_header_changes(dkim_key):
    import dkim

    from outreach.settings import Dkim

    key, record = dkim_key
    settings = Dkim(domain="rights.example.org", selector="s2025", private_key_file=key)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s2025._domainkey.rights.example.org."
        return record

    # given a signed message
    signed = sign_dkim(build_email(make(), FROM, None, "rights.example.org"), settings)
    assert signed.startswith(b"DKIM-Signature: ")
    header = roundtrip(signed)["DKIM-Signature"]
    for name in ("from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"):
        assert name in header.lower()
    # then it verifies, and it no longer does once the unsubscribe header is altered
    assert dkim.verify(signed, dnsfunc=dns)
    tampered = signed.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                              b"List-Unsubscribe-Post: List-Unsubscribe=One-Clack")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_dkim_with_a_missing_key_names_the_setting(tmp_path):
    from outreach.settings import Dkim

    settings = Dkim(domain="x.org", selector="s", private_key_file=tmp_path / "nope.pem")
    with pytest.raises(ChannelConfigurationError) as info:
        sign_dkim(build_email(make(), FROM, None, "x.org"), settings)
    assert "private_key_file" in str(info.value)
