"""Operator credentials: password hashes and tokens (the dashboard's login, /metrics).

A password is never stored, only its hash, written the way werkzeug writes one, so an
operator may make it with `outreach admin password` or with werkzeug's
`generate_password_hash`:

    scrypt:32768:8:1$<salt>$<hex>            (the default: memory-hard)
    pbkdf2:sha256:600000$<salt>$<hex>        (where scrypt is unavailable)

Checking costs about 50 ms of CPU and 32 MiB (scrypt n=2^15): enough to make guessing from
a leaked .env slow, and the login page is rate-limited in Redis on top of that.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

MIN_TOKEN = 32  # characters of a token: `outreach admin token` makes 43 (256 bits)
_SALT = 16
_SCRYPT = (2**15, 8, 1)
_MAX_SCRYPT_N = 2**20  # a hash asking for more memory than this is refused (1 GiB at r=8)


def hash_password(password: str) -> str:
    n, r, p = _SCRYPT
    salt = secrets.token_urlsafe(_SALT)[:_SALT]
    return f"scrypt:{n}:{r}:{p}${salt}${_scrypt(password, salt, n, r, p).hex()}"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _scrypt(password: str, salt: str, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt.encode("utf-8"), n=n, r=r, p=p,
                          maxmem=132 * n * r * p, dklen=64)


def _parse(stored: str) -> tuple[list[str], str, str]:
    method, salt, digest = stored.split("$")
    parts = method.split(":")
    bytes.fromhex(digest)
    return parts, salt, digest


def check_password_hash_format(stored: str) -> None:
    """ValueError saying how to make a hash, unless `stored` is one we can check."""
    try:
        parts, salt, digest = _parse(stored.strip())
        if parts[0] == "scrypt" and len(parts) == 4:
            n, r, p = (int(x) for x in parts[1:])
            ok = 1 < n <= _MAX_SCRYPT_N and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16
        elif parts[0] == "pbkdf2" and len(parts) == 3:
            ok = parts[1] in hashlib.algorithms_guaranteed and 10_000 <= int(parts[2]) <= 10_000_000
        else:
            ok = False
        ok = ok and bool(salt) and bool(digest)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("not a password hash; make one with `outreach admin password` "
                         "(it looks like scrypt:32768:8:1$salt$hex)")


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` is the one `stored` was made from (a malformed hash: False)."""
    try:
        parts, salt, digest = _parse(stored.strip())
        if parts[0] == "scrypt":
            n, r, p = (int(x) for x in parts[1:])
            if n > _MAX_SCRYPT_N:
                return False
            made = _scrypt(password, salt, n, r, p).hex()
        else:
            made = hashlib.pbkdf2_hmac(parts[1], password.encode("utf-8"), salt.encode("utf-8"), int(parts[2])).hex()
    except (ValueError, IndexError):
        return False
    return hmac.compare_digest(made, digest)


def same_secret(expected: str, given: str) -> bool:
    """Constant-time comparison of a token."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))
