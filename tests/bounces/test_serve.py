"""End to end: a campaign goes out through the demo's SMTP sink with VERP envelope senders,
one message's bounce comes back over SMTP to a real `outreach bounces serve` process, and
the campaign's next step skips that address. Then the bounce server's refusals."""
from __future__ import annotations

import ipaddress
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from outreach.store import get_subscriber, is_suppressed, run_progress
from tests.channels.conftest import free_port

from . import corpus
from .conftest import _base_env, person


@contextmanager
def serving(world, **env: str) -> Iterator[tuple[int, bytes]]:
    """A real `outreach bounces serve` process: its port and what it said on starting."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "outreach", "--root", str(world.project.root), "bounces", "serve",
                             "--port", str(port)], stderr=subprocess.PIPE, env={**_base_env(), **world.env, **env})
    try:
        seen = b""
        while b"bounce server on 127.0.0.1:" not in seen:  # warnings may come first
            line = proc.stderr.readline()
            assert line, seen  # it ended without listening
            seen += line
        yield port, seen
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()


@pytest.fixture
def bounce_server(world):
    with serving(world) as (port, _):
        yield port


def self_signed(where: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.bounces.example.org")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (where / "mx.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (where / "mx.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return where / "mx.crt", where / "mx.key"


def test_a_bounce_through_the_bounce_server_suppresses_and_the_next_step_skips(world, bounce_server):
    person(world.engine, "ana@example.org")
    person(world.engine, "ben@example.org", name="Ben Park")
    # given the letter sent to both through the sink, and its follow-up already planned for both
    letter = world.send("letter")
    followup = world.plan("followup")
    assert run_progress(world.engine, letter)["sent"] == 2
    ((return_path, _),) = world.received("ana@example.org")
    # when Ana's mail server bounces it, over SMTP, to the VERP address (null sender)
    with smtplib.SMTP("127.0.0.1", bounce_server, timeout=30) as mx:
        refused = mx.sendmail("", [return_path], corpus.postfix_user_unknown(return_path, "ana@example.org"))
    # then the server took it, and it was recorded before the reply
    assert refused == {}
    assert is_suppressed(world.engine, "ana@example.org")
    assert get_subscriber(world.engine, "ana@example.org").status == "bounced"
    # and the follow-up goes to Ben only: Ana's delivery is skipped at the last check
    world.send(run_id=followup)
    counts = run_progress(world.engine, followup)
    assert (counts["sent"], counts["skipped"]) == (1, 1)
    assert len(world.received("ana@example.org")) == 1 and len(world.received("ben@example.org")) == 2
    # and `outreach subscribers show` tells the operator why, with the remote server's words
    shown = world.cli("subscribers", "show", "ana@example.org")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert "ana@example.org: bounced" in text and "suppressed since" in text and "hard bounce" in text
    assert "5.1.1" in text and "User unknown in virtual mailbox table" in text


def test_the_bounce_server_is_no_relay_and_refuses_garbage(world, bounce_server):
    with smtplib.SMTP("127.0.0.1", bounce_server, timeout=30) as mx:
        # another recipient: refused at RCPT
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            mx.sendmail("", ["ceo@example.org"], b"Subject: hi\r\n\r\nhi\r\n")
        assert refused.value.recipients["ceo@example.org"][0] == 550
        mx.rset()
        # something that is no message: 554, nothing changed
        mx.mail("")
        mx.rcpt("bounces@bounces.example.org")
        code, reply = mx.data(b"\x00\x01\x02 not mail")
        assert code == 554 and b"binary" in reply
        mx.rset()
        # an out-of-office: taken and ignored
        mx.mail("")
        mx.rcpt("bounces@bounces.example.org")
        code, reply = mx.data(corpus.out_of_office("bounces@bounces.example.org", "ana@example.org"))
        assert code == 250 and b"ignored" in reply


def test_the_bounce_server_answers_451_while_the_database_is_down(world, tmp_path):
    # given a server whose database has gone away after it started (its file is removed)
    from outreach.bounces.receiver import BounceServer
    from outreach.store import make_engine, upgrade

    path = tmp_path / "gone.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with BounceServer(engine, world.rt.settings, port=0) as server:
        engine.dispose()
        path.unlink()
        path.mkdir()  # no database can be opened here now
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as mx:
            mx.ehlo()
            mx.mail("")
            mx.rcpt("bounces@bounces.example.org")
            code, _ = mx.data(corpus.postfix_user_unknown("bounces@bounces.example.org", "a@example.org"))
        # then the sending server is asked to keep it and try again later
        assert code == 451 and time.monotonic() - started < 30


def test_with_a_certificate_the_bounce_server_offers_starttls(world):
    # given a certificate and key in the project, named by relative paths in the environment
    person(world.engine, "ana@example.org")
    world.send("letter")
    ((return_path, _),) = world.received("ana@example.org")
    cert, _ = self_signed(world.project.root)
    tls = {"OUTREACH__BOUNCES__TLS_CERT": "mx.crt", "OUTREACH__BOUNCES__TLS_KEY": "mx.key"}
    with serving(world, **tls) as (port, said):
        assert b"with STARTTLS" in said
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as mx:
            # when a mail server sees STARTTLS offered, upgrades (checking the certificate) and bounces
            mx.ehlo()
            assert mx.has_extn("starttls")
            mx.starttls(context=ssl.create_default_context(cafile=str(cert)))
            refused = mx.sendmail("", [return_path], corpus.postfix_user_unknown(return_path, "ana@example.org"))
    # then the bounce came over TLS and was recorded before the reply
    assert refused == {}
    assert is_suppressed(world.engine, "ana@example.org")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_certificate_that_cannot_be_loaded_stops_the_server_before_it_listens(world):
    # given a key that is not the certificate's
    self_signed(world.project.root)
    (world.project.root / "other").mkdir()
    self_signed(world.project.root / "other")
    env = {**_base_env(), **world.env, "OUTREACH__BOUNCES__TLS_CERT": "mx.crt",
           "OUTREACH__BOUNCES__TLS_KEY": "other/mx.key"}
    # when the bounce server starts
    result = subprocess.run([sys.executable, "-m", "outreach", "--root", str(world.project.root), "bounces", "serve",
                             "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    # then one line names the two settings and what they must be, and it never listened
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot load bounces.tls_cert mx.crt with bounces.tls_key other/mx.key: ")
    assert "PEM certificate" in line and "bounce server on" not in result.stderr
