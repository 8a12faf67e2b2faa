"""`outreach admin password|token`: the dashboard's credentials, made for .env.

Nothing is stored: each prints a line to put in .env (or the environment). The password
itself is asked for without echo and never printed; the token is printed once, to be kept
in the operator's password manager and in Prometheus' credentials file.
"""
from __future__ import annotations

import click


@click.group("admin")
def admin() -> None:
    """Credentials of the dashboard (/admin) and of /metrics."""


@admin.command("password")
@click.option("--user", default="admin", show_default=True, help="The name to sign in with.")
@click.password_option("--password", prompt="Password for the dashboard",
                       help="Asked for without echo when not given (prefer that: a flag stays in shell history).")
def password(user: str, password: str) -> None:
    """Print OUTREACH_ADMIN_USER and OUTREACH_ADMIN_PASSWORD_HASH for .env."""
    from ..passwords import hash_password

    if len(password) < 12:
        raise click.BadParameter("use at least 12 characters", param_hint="password")
    if not user.strip() or not user.isprintable() or len(user) > 100:
        raise click.BadParameter("a printable name of at most 100 characters", param_hint="--user")
    click.echo(f"OUTREACH_ADMIN_USER={user}")
    # single quotes: the hash holds `$`, which a shell or docker compose would expand
    click.echo(f"OUTREACH_ADMIN_PASSWORD_HASH='{hash_password(password)}'")


@admin.command("token")
@click.option("--for", "purpose", type=click.Choice(["admin", "metrics"]), default="admin", show_default=True,
              help="admin: signs in to the dashboard and its API; metrics: only reads /metrics.")
def token(purpose: str) -> None:
    """Print a new random token as OUTREACH_ADMIN_TOKEN or OUTREACH_METRICS_TOKEN for .env."""
    from ..passwords import new_token

    click.echo(f"OUTREACH_{purpose.upper()}_TOKEN={new_token()}")


COMMANDS = (admin,)
