"""Commands about what comes back: `bounces ingest` (one message, for an MTA's pipe) and
`bounces serve` (an SMTP server for the bounce domain's MX).

`bounces ingest` exits with the codes of sysexits.h, which Postfix's pipe(8), Exim's pipe
transport and sendmail's prog mailer understand:

    0   EX_OK        recorded, or recognized and ignored (an auto-reply, not a report)
    65  EX_DATAERR   not an email message: the MTA returns it (nothing was changed)
    66  EX_NOINPUT   FILE cannot be read
    75  EX_TEMPFAIL  the database cannot be reached now: the MTA keeps the message, tries again
    78  EX_CONFIG    the settings are wrong (the message says which)
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click

from . import Context, explain

EX_OK, EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL, EX_CONFIG = 0, 65, 66, 75, 78


@click.group("bounces")
def bounces() -> None:
    """Bounce reports and complaints: read them, act on them."""


def _exit(code: int, message: str) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


@bounces.command("ingest")
@click.argument("file", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--recipient", "recipients", multiple=True, metavar="ADDRESS",
              help="The envelope recipient the MTA delivered it to (e.g. Postfix's ${recipient}); "
                   "a VERP address names the delivery. Also read from Delivered-To / X-Original-To.")
@click.pass_obj
def ingest(obj: Context, file: str, recipients: tuple[str, ...]) -> None:
    """Read one returned message (a bounce, a complaint) from FILE or stdin and act on it.

    \b
    A hard bounce suppresses the address at once; soft bounces after bounces.soft_limit
    within bounces.soft_window; a complaint unsubscribes and suppresses it for good.
    Out-of-office and challenge-response replies are recognized and ignored. Exit status
    follows sysexits.h (0 done, 65 not a message, 66 cannot read, 75 try again later, 78
    settings), so an MTA can pipe bounces here, e.g. in Postfix's master.cf:
    \b
      outreach unix - n n - - pipe flags=R user=outreach
        argv=/usr/local/bin/outreach bounces ingest --recipient ${recipient} -
    """
    import sqlalchemy as sa

    from ..bounces.apply import ingest as run
    from ..errors import ConfigurationError, DataError, ServiceUnavailable

    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        _exit(EX_NOINPUT, f"cannot read {file}: {exc.strerror or exc}")
    try:
        with obj.engine() as engine:
            report, outcomes = run(engine, obj.settings, raw, recipients)
    except DataError as exc:
        _exit(EX_DATAERR, f"{file if file != '-' else '<stdin>'}: {exc}; nothing was changed")
    except ServiceUnavailable as exc:
        _exit(EX_TEMPFAIL, str(exc))
    except ConfigurationError as exc:
        _exit(EX_CONFIG, str(exc))
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        _exit(EX_TEMPFAIL, explain(exc, obj) or type(exc).__name__)
    if not outcomes:
        click.echo(f"ignored: {report.why or report.type.value}")
        return
    for outcome in outcomes:
        click.echo(f"{report.type.value}: {outcome}")


@bounces.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for the bounce domain's MX).")
@click.option("--port", default=2525, show_default=True, type=click.IntRange(0, 65535),
              help="Port (25 for an MX; 0: any free port).")
@click.pass_obj
def serve(obj: Context, host: str, port: int) -> None:
    """An SMTP server taking the bounces and complaints sent to the bounce address
    (bounces.local_part, with or without a VERP token), acting on each before it answers."""
    from ..bounces.receiver import BounceServer, server_tls

    settings = obj.settings
    tls = server_tls(settings)  # a certificate that cannot be loaded stops it here, before listening
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with obj.engine() as engine:
        try:
            server = BounceServer(engine, settings, host, port, tls).start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        click.echo(f"bounce server on {host}:{server.port} for {settings.bounces.local_part}@"
                   f"{settings.bounces.domain or '<any domain>'}, {'with' if tls else 'without'} STARTTLS "
                   f"(pid {os.getpid()}; Ctrl-C stops)", err=True)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            server.stop()
        click.echo(f"stopped; {server.handler.received} message(s) taken", err=True)


COMMANDS = (bounces,)
