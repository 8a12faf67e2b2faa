"""Addresses that must never receive anything again (unsubscribes, hard bounces, complaints,
manual blocks). Suppressions win over every audience filter and every subscriber status.

Addresses are stored lower-cased after normalization, and compared against
lower(subscribers.email): a person who unsubscribed as John@example.org is not mailed again as
john@example.org, even though the subscriber table keeps the local part as it was written.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa

from ..subscribers.fields import normalize_email
from .db import AnyRow, Bind, dialect_insert
from .schema import suppressions, utcnow

T = TypeVar("T")


def suppression_key(address: str) -> str:
    """The form an address is stored and matched in (raises DataError when it is not one)."""
    return normalize_email(address).lower()


def _run(bind: Bind, fn: Callable[[sa.Connection], T]) -> T:
    if isinstance(bind, sa.Connection):
        return fn(bind)
    with bind.begin() as conn:
        return fn(conn)


def suppress(bind: Bind, address: str, reason: str, source: str | None = None,
             at: datetime | None = None) -> bool:
    """Suppress `address`; True when it was not suppressed before. A repeated suppression keeps
    the first reason: that is when and why the address stopped receiving mail."""
    key = suppression_key(address)
    stmt = dialect_insert(bind, suppressions).values(
        address=key, reason=reason, source=source, created_at=at or utcnow(),
    ).on_conflict_do_nothing(index_elements=["address"]).returning(suppressions.c.address)
    return _run(bind, lambda conn: conn.execute(stmt).scalar() is not None)


def unsuppress(bind: Bind, address: str) -> bool:
    """Lift a suppression; True when there was one."""
    stmt = sa.delete(suppressions).where(suppressions.c.address == suppression_key(address))
    return _run(bind, lambda conn: conn.execute(stmt).rowcount > 0)


def is_suppressed(bind: Bind, address: str) -> bool:
    return bool(suppressed_among(bind, [address]))


def suppressed_among(bind: Bind, addresses: Iterable[str]) -> set[str]:
    """Which of `addresses` (as given) are suppressed: a last check right before sending."""
    keys: dict[str, list[str]] = {}
    for a in addresses:
        keys.setdefault(a.strip().lower(), []).append(a)
    if not keys:
        return set()
    stmt = sa.select(suppressions.c.address).where(suppressions.c.address.in_(list(keys)))
    found = _run(bind, lambda conn: conn.execute(stmt).scalars().all())
    return {a for key in found for a in keys[key]}


def get_suppression(bind: Bind, address: str) -> AnyRow | None:
    stmt = sa.select(suppressions).where(suppressions.c.address == suppression_key(address))
    return _run(bind, lambda conn: conn.execute(stmt).first())


def not_suppressed(email_column: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """SQL condition: the address in `email_column` is not suppressed (for audience queries)."""
    return ~sa.exists().where(suppressions.c.address == sa.func.lower(email_column))
