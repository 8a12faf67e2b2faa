"""The local SMTP sink: a real aiosmtpd server on loopback, fed by smtplib."""
from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from outreach.devtools.sink import SmtpSink

SENDER = "news@example.org"


def message(subject: str, to: str = "ada@example.org") -> bytes:
    # CRLF throughout, a line that needs dot-stuffing and one that starts with two dots.
    return (f"From: News <{SENDER}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Hello,\r\n.a line starting with a dot\r\n..and one with two\r\n"
            "caf\u00e9 \u4eba\u6b0a\r\n").encode()


RETURN_PATH = f"Return-Path: <{SENDER}>\r\n".encode()


def send(sink: SmtpSink, recipients: list[str], data: bytes, sender: str = SENDER) -> dict:
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        return client.sendmail(sender, recipients, data)


@pytest.fixture
def sink(tmp_path: Path):
    with SmtpSink(tmp_path / "outbox") as server:
        yield server


def test_one_recipient_gives_one_file_with_the_exact_bytes(sink):
    # given one CRLF message to one recipient
    data = message("one")
    # when it is sent over SMTP
    refused = send(sink, ["ada@example.org"], data)
    # then one .eml holds the envelope sender as Return-Path, then exactly the bytes sent
    # (dot-stuffing undone, CRLF kept)
    assert refused == {}
    files = sink.files()
    assert len(files) == 1 and sink.count() == 1
    assert files[0].read_bytes() == RETURN_PATH + data
    assert files[0].name.endswith("-ada@example.org.eml")
    assert sink.host == "127.0.0.1" and sink.port > 0


def test_one_file_per_recipient(sink):
    # given a message with three envelope recipients
    data = message("many")
    recipients = ["a@example.org", "b@example.org", "c@example.org"]
    # when it is sent once
    send(sink, recipients, data)
    # then each recipient has its own identical file
    files = sink.files()
    assert sink.count() == 3
    assert sorted(f.name.rsplit("-", 1)[1] for f in files) == [f"{r}.eml" for r in recipients]
    assert all(f.read_bytes() == RETURN_PATH + data for f in files)


def test_three_messages_give_three_files_and_no_temporary_files(sink):
    # when three messages are sent on separate connections
    sent = [message(f"n{i}") for i in range(3)]
    for data in sent:
        send(sink, ["ada@example.org"], data)
    # then there are three files, in the order received, and nothing half-written is left
    files = sink.files()
    assert [f.read_bytes() for f in files] == [RETURN_PATH + d for d in sent]
    assert sorted(p.name for p in sink.outbox.iterdir()) == sorted(f.name for f in files)


def test_the_envelope_sender_is_the_return_path_of_each_saved_message(sink):
    # given a VERP envelope sender, and a bounce (null sender, MAIL FROM:<>)
    send(sink, ["ada@example.org"], message("verp"), sender="bounces+abc234@bounces.example.org")
    send(sink, ["bob@example.org"], message("bounce"), sender="")
    # then each file starts with the Return-Path a final mail server would write
    first, second = (f.read_bytes() for f in sink.files())
    assert first.startswith(b"Return-Path: <bounces+abc234@bounces.example.org>\r\nFrom: ")
    assert second.startswith(b"Return-Path: <>\r\nFrom: ")


def test_recipient_cannot_escape_the_outbox(sink):
    # given a legal but hostile local part
    send(sink, ['"../../etc/x"@example.org'], message("escape"))
    # then the file is inside the outbox with a sanitized name
    (file,) = sink.files()
    assert file.parent == sink.outbox
    assert "/" not in file.name and ".." not in file.name


def test_stop_releases_the_port(tmp_path):
    # given a sink that ran and was stopped (twice: stop is idempotent)
    sink = SmtpSink(tmp_path / "outbox").start()
    port = sink.port
    send(sink, ["ada@example.org"], message("before stop"))
    sink.stop()
    sink.stop()
    # then nothing answers on the port and a new server can listen on it (SO_REUSEADDR, as
    # servers do, only forgives TIME_WAIT connections, never another listener)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
    assert not sink.running and sink.count() == 1


def test_module_runs_in_the_foreground_until_interrupted(tmp_path):
    # given `python -m outreach.devtools.sink` on a free port
    outbox = tmp_path / "outbox"
    proc = subprocess.Popen([sys.executable, "-m", "outreach.devtools.sink", "--port", "0", "--outbox", str(outbox)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()
        assert "SMTP sink on 127.0.0.1:" in banner, proc.stderr.read()
        port = int(banner.split("127.0.0.1:")[1].split(",")[0])
        # when a message arrives and Ctrl-C is pressed
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.sendmail(SENDER, ["ada@example.org"], message("cli"))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # then it kept the message and exited cleanly
    assert proc.returncode == 0, err
    assert "1 file(s) saved" in out
    assert len(list(outbox.glob("*.eml"))) == 1
