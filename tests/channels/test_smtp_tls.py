"""SmtpChannel over TLS against a real aiosmtpd server: STARTTLS and implicit TLS (SMTPS),
with a certificate made for the test and trusted through SSL_CERT_FILE, the way OpenSSL
finds trusted certificates when no CA bundle is configured."""
from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from outreach.channels import SendResult, SmtpChannel
from outreach.errors import ChannelConfigurationError
from tests.channels.conftest import SmtpSink, _start
from tests.channels.test_smtp_channel import letter

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), and its key."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate (Debian package openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=outreach test server", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture(params=[False, True], ids=["plain", "pipelining"])
def starttls_server(request, certificate) -> Iterator[tuple[SmtpSink, Controller]]:
    """Refuses MAIL until the client has switched to TLS."""
    sink = SmtpSink()
    sink.pipelining = request.param
    controller = _start(sink, tls_context=_server_context(certificate), require_starttls=True)
    yield sink, controller
    controller.stop()


@pytest.fixture
def smtps_server(certificate) -> Iterator[tuple[SmtpSink, Controller]]:
    """TLS from the first byte (port 465 style)."""
    sink = SmtpSink()
    sink.pipelining = True
    controller = _start(sink, ssl_context=_server_context(certificate))
    yield sink, controller
    controller.stop()


@pytest.fixture
def trusted(certificate, monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))


def test_starttls_sends_a_stream_over_an_encrypted_connection(starttls_server, smtp_account, trusted):
    # given a server that accepts mail only after STARTTLS, and an account that asks for it
    sink, controller = starttls_server
    to = [f"reader{i}@example.net" for i in range(5)]
    # when one email and then a stream are sent
    with SmtpChannel(smtp_account(controller, security="starttls")) as channel:
        first = channel.send(letter(to="first@example.net"))
        outcomes = dict(channel.send_many((a, letter(to=a)) for a in to))
    # then all arrived (the server would have refused MAIL without TLS), over one connection
    assert isinstance(first, SendResult) and all(isinstance(o, SendResult) for o in outcomes.values())
    assert [m.rcpt_tos[0] for m in sink.received] == ["first@example.net", *to]
    assert sink.connections == 1


def test_implicit_tls_sends(smtps_server, smtp_account, trusted):
    sink, controller = smtps_server
    with SmtpChannel(smtp_account(controller, security="ssl")) as channel:
        outcomes = dict(channel.send_many((a, letter(to=a)) for a in ["a@example.net", "b@example.net"]))
    assert all(isinstance(o, SendResult) for o in outcomes.values())
    assert [m.rcpt_tos[0] for m in sink.received] == ["a@example.net", "b@example.net"]


def test_an_untrusted_certificate_is_a_configuration_error(starttls_server, smtp_account, monkeypatch, tmp_path):
    # given a server whose certificate nobody trusts here
    sink, controller = starttls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))
    channel = SmtpChannel(smtp_account(controller, security="starttls"))
    # when sending: then it stops with what to check, and nothing was sent
    with pytest.raises(ChannelConfigurationError, match="certificate .* not trusted"):
        channel.send(letter())
    assert sink.received == []


def test_a_server_that_requires_starttls_says_which_setting_to_change(starttls_server, smtp_account):
    # given an account without TLS against a server that requires it
    sink, controller = starttls_server
    channel = SmtpChannel(smtp_account(controller, security="none"))
    # when sending: then the error names the setting, not a password
    with pytest.raises(ChannelConfigurationError, match="security: starttls") as info:
        channel.send(letter())
    assert "PASSWORD" not in str(info.value)
    assert sink.received == []
