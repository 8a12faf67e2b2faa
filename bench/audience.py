"""A synthetic audience: N subscribers in the mid-year-recap audience, plus a few who must
not be reached, bulk-loaded straight into the store's tables.

The audience is deterministic (seeded) and varied: names in many scripts, cities with their
country and IANA time zone, languages, tags of the `supporters` segment, and the
`donor_tier` / `chapter` attributes the template branches on. For every 50 audience members
one extra subscriber is written who must NOT be planned (unsubscribed, pending, staff-only
tags, or suppressed), so a planner that forgets a filter shows up as a wrong count.

Loading bypasses `outreach subscribers import` on purpose (it validates every row and is
measured elsewhere): PostgreSQL gets COPY, SQLite `executemany` in large transactions. The
values are written exactly as the store writes them (normalized addresses, UTC timestamps
in SQLAlchemy's SQLite text format, JSON attributes).
"""
from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

SEED = 20240730
EXTRA_EVERY = 50  # one out-of-audience subscriber per this many audience members

FIRST = ["Olivia", "Caleb", "Priya", "Marcus", "José", "Zoë", "Søren", "Łukasz", "Chloé", "Björn", "Ngozi",
         "Aarav", "Mei", "Hyun-woo", "Ji-yeon", "Nguyễn", "Thảo", "Ömer", "Ayşe", "François", "Siobhán",
         "Maximilian", "Inés", "João", "Mateo", "Fatima", "Yusuf", "Анна", "Дмитрий", "Αλέξανδρος",
         "민준", "서연", "伟", "芳", "さくら", "太郎", "محمد", "נועה", "Kwame", "Aroha", "Emily", "Daniel",
         "Sophia", "Liam", "Grace", "Noah", "Hannah", "Ethan", "Sarah", "Lucas"]
LAST = ["Martinez", "Johnson", "Raman", "Lee", "Álvarez", "Brontë", "Kierkegaard", "Wałęsa", "Dubois",
        "Müller", "Okafor", "Sharma", "Chen", "Kim", "Park", "Văn An", "Yılmaz", "Öztürk", "Lefèvre",
        "Ní Bhriain", "Schröder", "García", "Gonçalves", "Fernández", "Haddad", "Иванова", "Петров",
        "Παπαδόπουλος", "이", "김", "王", "李", "佐藤", "山田", "الأحمد", "כהן", "Mensah", "Ngata", "Smith",
        "Nguyen", "Brown", "Wilson", "Taylor", "O'Connor", "van der Berg", "Kowalski", "Rossi", "Silva"]
# (city, country, time zone, language)
PLACES = [
    ("Los Angeles", "US", "America/Los_Angeles", "en"), ("Dallas", "US", "America/Chicago", "en"),
    ("New York", "US", "America/New_York", "en"), ("Honolulu", "US", "Pacific/Honolulu", "en"),
    ("Anchorage", "US", "America/Anchorage", "en"), ("Toronto", "CA", "America/Toronto", "en"),
    ("Montréal", "CA", "America/Toronto", "fr"), ("Vancouver", "CA", "America/Vancouver", "en"),
    ("México", "MX", "America/Mexico_City", "es"), ("São Paulo", "BR", "America/Sao_Paulo", "pt-BR"),
    ("Buenos Aires", "AR", "America/Argentina/Buenos_Aires", "es"), ("London", "GB", "Europe/London", "en"),
    ("Dublin", "IE", "Europe/Dublin", "en"), ("Paris", "FR", "Europe/Paris", "fr"),
    ("Berlin", "DE", "Europe/Berlin", "de"), ("München", "DE", "Europe/Berlin", "de"),
    ("Kraków", "PL", "Europe/Warsaw", "pl"), ("Zürich", "CH", "Europe/Zurich", "de"),
    ("İstanbul", "TR", "Europe/Istanbul", "tr"), ("Athens", "GR", "Europe/Athens", "el"),
    ("Kyiv", "UA", "Europe/Kyiv", "uk"), ("Lagos", "NG", "Africa/Lagos", "en"),
    ("Nairobi", "KE", "Africa/Nairobi", "en"), ("Johannesburg", "ZA", "Africa/Johannesburg", "en"),
    ("Dubai", "AE", "Asia/Dubai", "ar"), ("Tel Aviv", "IL", "Asia/Jerusalem", "he"),
    ("Mumbai", "IN", "Asia/Kolkata", "hi"), ("Kathmandu", "NP", "Asia/Kathmandu", "ne"),
    ("Bangkok", "TH", "Asia/Bangkok", "th"), ("Hà Nội", "VN", "Asia/Ho_Chi_Minh", "vi"),
    ("Singapore", "SG", "Asia/Singapore", "en"), ("Taipei", "TW", "Asia/Taipei", "zh-TW"),
    ("Seoul", "KR", "Asia/Seoul", "ko"), ("부산", "KR", "Asia/Seoul", "ko"), ("Tokyo", "JP", "Asia/Tokyo", "ja"),
    ("Sydney", "AU", "Australia/Sydney", "en"), ("Adelaide", "AU", "Australia/Adelaide", "en"),
    ("Auckland", "NZ", "Pacific/Auckland", "en"), ("Chatham", "NZ", "Pacific/Chatham", "en"),
    ("Apia", "WS", "Pacific/Apia", "en"), ("Reykjavík", "IS", "Atlantic/Reykjavik", "is"),
]
DOMAINS = ["example.org", "example.com", "example.net", "mail.example.org", "post.example.com"]
AUDIENCE_TAGS = [("supporter",), ("advocacy",), ("donor",), ("supporter", "advocacy"), ("supporter", "donor"),
                 ("advocacy", "donor", "volunteer"), ("supporter", "newsletter")]
TIERS = ["", "", "", "one-time", "monthly", "major"]
CHAPTERS = ["", "", "", "SMU Rescue Team", "Baylor Rescue Team", "Northwestern Rescue Team", "Seoul Chapter"]
EXCLUDED = ("unsubscribed", "pending", "staff-only", "suppressed")
CONSENT_SOURCES = ["web form", "event sign-up", "petition", "import 2023"]
_ASCII = {"José": "jose", "Zoë": "zoe", "Søren": "soren", "Łukasz": "lukasz", "Chloé": "chloe", "Björn": "bjorn",
          "Nguyễn": "nguyen", "Thảo": "thao", "Ömer": "omer", "Ayşe": "ayse", "François": "francois",
          "Siobhán": "siobhan", "Inés": "ines", "João": "joao"}


@dataclass(frozen=True)
class Row:
    id: int
    email: str
    name: str
    city: str
    country: str
    timezone: str
    language: str
    status: str
    consent_source: str
    consent_at: datetime
    attrs: dict
    tags: tuple[str, ...]
    suppressed: bool = False


def _local(first: str, i: int) -> str:
    base = _ASCII.get(first) or (first.lower() if first.isascii() else "friend")
    return f"{base}.{i:07d}"


def rows(n: int, seed: int = SEED) -> Iterator[Row]:
    """`n` audience members and n // EXTRA_EVERY excluded subscribers, ids 1.. in order."""
    rnd = random.Random(seed)
    total = n + n // EXTRA_EVERY
    extra_at = set(range(EXTRA_EVERY + 1, total + 1, EXTRA_EVERY + 1)) if n >= EXTRA_EVERY else set()
    k = 0
    base = datetime(2023, 1, 1, tzinfo=UTC).timestamp()
    for i in range(1, total + 1):
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        city, country, tz, lang = rnd.choice(PLACES)
        attrs = {}
        tier, chapter = rnd.choice(TIERS), rnd.choice(CHAPTERS)
        if tier:
            attrs["donor_tier"] = tier
        if chapter:
            attrs["chapter"] = chapter
        status, tags, suppressed = "confirmed", rnd.choice(AUDIENCE_TAGS), False
        if i in extra_at:
            kind = EXCLUDED[k % len(EXCLUDED)]
            k += 1
            if kind in ("unsubscribed", "pending"):
                status = kind
            elif kind == "staff-only":
                tags = ("staff",)
            else:
                suppressed = True
        yield Row(i, f"{_local(first, i)}@{DOMAINS[i % len(DOMAINS)]}", f"{first} {last}", city, country, tz,
                  lang, status, rnd.choice(CONSENT_SOURCES),
                  datetime.fromtimestamp(base + rnd.randrange(0, 86400 * 900), UTC), attrs, tags,
                  suppressed)


# --- loading -------------------------------------------------------------------------------

_COLUMNS = ("id", "email", "name", "city", "country", "timezone", "language", "status", "consent_source",
            "consent_at", "attrs", "created_at", "updated_at")


def _sqlite_ts(value: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME storage format; UTCDateTime stores naive UTC
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def load(engine: sa.Engine, n: int, chunk: int = 100_000) -> dict[str, int]:
    """Write the synthetic audience into an empty, migrated store; return counts."""
    now = datetime.now(UTC)
    if engine.dialect.name == "postgresql":
        return _load_pg(engine, n, now)
    return _load_sqlite(engine, n, now, chunk)


def _load_sqlite(engine: sa.Engine, n: int, now: datetime, chunk: int) -> dict[str, int]:
    path = engine.url.database
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    ts_now = _sqlite_ts(now)
    counts = {"subscribers": 0, "tags": 0, "suppressions": 0}
    subs, tags, supp = [], [], []

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO subscribers ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                         subs)
        conn.executemany("INSERT INTO subscriber_tags (subscriber_id, tag) VALUES (?, ?)", tags)
        conn.executemany("INSERT INTO suppressions (address, reason, source, created_at) VALUES (?, ?, ?, ?)", supp)
        conn.execute("COMMIT")
        counts["subscribers"] += len(subs)
        counts["tags"] += len(tags)
        counts["suppressions"] += len(supp)
        subs.clear(), tags.clear(), supp.clear()

    for r in rows(n):
        subs.append((r.id, r.email, r.name, r.city, r.country, r.timezone, r.language, r.status, r.consent_source,
                     _sqlite_ts(r.consent_at), json.dumps(r.attrs, ensure_ascii=False), ts_now, ts_now))
        tags.extend((r.id, t) for t in r.tags)
        if r.suppressed:
            supp.append((r.email.lower(), "hard bounce", "bench", ts_now))
        if len(subs) >= chunk:
            flush()
    flush()
    conn.close()
    return counts


def _copy_text(value: object) -> str:
    s = str(value)
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _load_pg(engine: sa.Engine, n: int, now: datetime) -> dict[str, int]:
    import psycopg

    url = engine.url.set(drivername="postgresql")
    counts = {"subscribers": 0, "tags": 0, "suppressions": 0}
    ts_now = now.isoformat()
    suppressed: list[tuple[str, str]] = []
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY subscribers ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                buf: list[str] = []
                for r in rows(n):
                    buf.append("\t".join(_copy_text(v) for v in (
                        r.id, r.email, r.name, r.city, r.country, r.timezone, r.language, r.status,
                        r.consent_source, r.consent_at.isoformat(), json.dumps(r.attrs, ensure_ascii=False),
                        ts_now, ts_now)) + "\n")
                    if r.suppressed:
                        suppressed.append((r.email.lower(), ts_now))
                    counts["subscribers"] += 1
                    if len(buf) >= 10_000:
                        copy.write("".join(buf))
                        buf.clear()
                copy.write("".join(buf))
            with cur.copy("COPY subscriber_tags (subscriber_id, tag) FROM STDIN") as copy:
                buf = []
                for r in rows(n):
                    for t in r.tags:
                        buf.append(f"{r.id}\t{t}\n")
                        counts["tags"] += 1
                    if len(buf) >= 10_000:
                        copy.write("".join(buf))
                        buf.clear()
                copy.write("".join(buf))
            with cur.copy("COPY suppressions (address, reason, source, created_at) FROM STDIN") as copy:
                for address, ts in suppressed:
                    copy.write(f"{_copy_text(address)}\thard bounce\tbench\t{ts}\n")
                    counts["suppressions"] += 1
            cur.execute("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), (SELECT max(id) FROM subscribers))")
        conn.commit()
        # What autovacuum would soon do for a freshly loaded table; without statistics the
        # planner guesses row counts and the numbers say more about the guess than the code.
        conn.autocommit = True
        conn.execute("ANALYZE subscribers")
        conn.execute("ANALYZE subscriber_tags")
        conn.execute("ANALYZE suppressions")
    return counts
