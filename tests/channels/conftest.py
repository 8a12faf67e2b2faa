"""Real servers on loopback for the channel tests: an aiosmtpd SMTP server whose replies can
be scripted, and a small HTTP server that answers like X API v2 `POST /2/tweets`."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from outreach.settings import SmtpAccount, XAccount

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# --- SMTP -----------------------------------------------------------------------------------

@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # exactly what came over DATA (dot-unstuffed), CRLF line endings


class SmtpSink:
    """aiosmtpd handler: keeps what it receives; replies can be scripted per stage."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.sessions: list[object] = []   # one per connection that sent MAIL
        self._servers: list[object] = []
        self.next_mail: deque[str] = deque()   # replies to the next MAIL FROM commands
        self.next_rcpt: deque[str] = deque()   # replies to the next RCPT TO commands
        self.next_data: deque[str] = deque()   # replies to the next DATA contents
        self.rcpt_replies: dict[str, str] = {}  # a fixed reply for one recipient
        self.data_replies: dict[str, str] = {}  # a fixed reply to the data of a message to one recipient
        self.drop_after_data: set[str] = set()   # keep the message to one of these, then hang up unanswered
        self.loop = None

    @property
    def connections(self) -> int:
        return len(self.sessions)

    def drop_connections(self) -> None:
        """Close every client connection from the server side (like an idle timeout)."""
        done = threading.Event()

        def close() -> None:
            for server in self._servers:
                if server.transport is not None:
                    server.transport.close()
            done.set()

        self.loop.call_soon_threadsafe(close)
        done.wait(2)
        time.sleep(0.05)

    pipelining = False  # advertise RFC 2920 PIPELINING (the channel then pipelines MAIL/RCPT/DATA)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if session not in self.sessions:
            self.sessions.append(session)
            self._servers.append(server)
        if self.next_mail:
            return self.next_mail.popleft()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address) or (self.next_rcpt.popleft() if self.next_rcpt else None)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        problem = strict_problem(envelope.original_content, envelope.mail_options)
        if problem:
            return f"550 5.6.0 {problem}"
        if self.next_data:
            return self.next_data.popleft()
        first = envelope.rcpt_tos[0] if envelope.rcpt_tos else None
        if first in self.data_replies:
            return self.data_replies[first]
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        if first in self.drop_after_data:
            self.drop_after_data.discard(first)  # once: a resend would be a duplicate the test must see
            server.transport.close()  # the message is kept; its "250" never reaches the client
        return "250 2.0.0 Message accepted"


def strict_problem(data: bytes, mail_options: list[str]) -> str | None:
    """What a strict server (RFC 5321 2.3.8, 4.5.3.1.6; RFC 6152) refuses in message content,
    or None: every message any test sends is held to it."""
    if b"\n" in data.replace(b"\r\n", b"") or b"\r" in data.replace(b"\r\n", b""):
        return "bare CR or LF in message content"
    if any(len(line) > 998 for line in data.split(b"\r\n")):
        return "line longer than 998 octets"
    if not data.isascii() and not any(o.upper() == "BODY=8BITMIME" for o in mail_options):
        return "8-bit content without BODY=8BITMIME"
    if b"\x00" in data:
        return "NUL in message content"
    return None


def _start(handler: SmtpSink, **kwargs) -> Controller:
    controller = Controller(handler, hostname=LOOPBACK, port=free_port(), **kwargs)
    controller.start()
    handler.loop = controller.loop
    return controller


@pytest.fixture(params=[False, True], ids=["plain", "pipelining"])
def smtp_server(request: pytest.FixtureRequest) -> Iterator[tuple[SmtpSink, Controller]]:
    """Each SMTP test runs against a server without and with PIPELINING."""
    sink = SmtpSink()
    sink.pipelining = request.param
    controller = _start(sink)
    yield sink, controller
    controller.stop()


USERS = {"mailer": "s3cret"}


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and \
        USERS.get(auth_data.login.decode()) == auth_data.password.decode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_auth_server() -> Iterator[tuple[SmtpSink, Controller]]:
    sink = SmtpSink()
    controller = _start(sink, auth_require_tls=False, auth_required=True, authenticator=_authenticator)
    yield sink, controller
    controller.stop()


@pytest.fixture
def smtp_account() -> Callable[..., SmtpAccount]:
    """smtp_account(controller, **overrides): an account pointing at a test server."""
    return _smtp_account


def _smtp_account(controller: Controller, **overrides) -> SmtpAccount:
    values = {"name": "news", "from": "Rights Watch <news@example.org>", "host": LOOPBACK,
              "port": controller.port, "timeout": 5.0, "unsubscribe_mailto": "unsub@example.org"}
    values.update(overrides)
    return SmtpAccount.model_validate(values)


# --- X API stand-in -------------------------------------------------------------------------

@dataclass
class XRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class XApi:
    """Answers like X API v2: 201 with a new id; 403 for a repeated text, like X. `script`
    holds (status, headers, body) answers to give instead, one per request."""

    base: str = ""
    requests: list[XRequest] = field(default_factory=list)
    script: deque[tuple[int, dict[str, str], dict]] = field(default_factory=deque)
    texts: set[str] = field(default_factory=set)
    next_id: int = 1_800_000_000_000_000_000
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, path: str, headers: dict[str, str], body: dict):
        with self.lock:
            self.requests.append(XRequest(method, path, headers, body))
            if self.script:
                return self.script.popleft()
            if method != "POST" or path != "/2/tweets":
                return 404, {}, {"title": "Not Found", "status": 404}
            text = body.get("text", "")
            if text in self.texts:
                return 403, {}, {"detail": "You are not allowed to create a Tweet with duplicate content.",
                                 "type": "about:blank", "title": "Forbidden", "status": 403}
            self.texts.add(text)
            self.next_id += 1
            reset = str(int(time.time()) + 900)
            return 201, {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "99", "x-rate-limit-reset": reset}, \
                {"data": {"id": str(self.next_id), "text": text}}

    def posts(self) -> list[dict]:
        return [r.body for r in self.requests if r.path == "/2/tweets"]


def _handler_for(api: XApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            status, headers, payload = api.answer(self.command, self.path, dict(self.headers), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET = do_DELETE = _serve

        def log_message(self, *args) -> None:  # keep test output clean
            pass

    return Handler


@pytest.fixture
def x_api() -> Iterator[XApi]:
    api = XApi()
    server = ThreadingHTTPServer((LOOPBACK, 0), _handler_for(api))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    api.base = f"http://{LOOPBACK}:{server.server_address[1]}"
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture
def x_account() -> Callable[..., XAccount]:
    """x_account(api, **overrides): an OAuth 1.0a account pointing at the stand-in."""
    return _x_account


def _x_account(api: XApi, **overrides) -> XAccount:
    values = {"name": "main", "handle": "@rightswatch", "api_base": api.base, "consumer_key": "ck",
              "consumer_secret": "cs", "access_token": "at", "access_token_secret": "ats"}
    values.update(overrides)
    return XAccount.model_validate(values)

