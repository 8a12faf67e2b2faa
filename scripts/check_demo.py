"""CI smoke check after `scripts/dev demo --fresh`: the outbox holds exactly one valid email
per eligible sample subscriber per email step, and one sandbox post per X step.

Eligibility is recomputed here from the database with the audience query, independently of
what the demo reported.

With --web (while the demo still serves its links): the links of one email work. Its
view-online and preferences pages open, and its List-Unsubscribe URL, POSTed as a mailbox
provider does (RFC 8058), unsubscribes that subscriber in the database. A call to action's
/act page opens and its "I sent it" button records the action once.
"""
from __future__ import annotations

import collections
import email
import email.policy
import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from outreach.authoring.audience import segments_for
from outreach.authoring.campaigns import load_campaigns
from outreach.delivery.planner import step_audience
from outreach.settings import load_settings
from outreach.store import engine_for, get_subscriber
from outreach.store.audience import audience_count

args = [a for a in sys.argv[1:] if not a.startswith("--")]
check_web = "--web" in sys.argv[1:]
root = Path(args[0] if args else ".").resolve()
settings = load_settings(root)
engine = engine_for(settings)
outbox = root / "var" / "outbox"
campaigns = load_campaigns(settings).campaigns
segments = segments_for(settings)

expected: dict[str, int] = {}
posts_expected = 0
for c in campaigns.values():
    for step in c.steps:
        if step.channel == "email":
            # the step's own audience (who acted, who lives near a stop), as the planner asks it
            count = audience_count(engine, step_audience(segments, c, step))
            if count:
                expected[f"{c.name}/{step.id}"] = count
        else:
            posts_expected += 1

found: collections.Counter[str] = collections.Counter()
recipients: collections.Counter[tuple[str, str]] = collections.Counter()
errors: list[str] = []
for path in sorted((outbox / "email").glob("*.eml")):
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    key = str(msg["X-Outreach-Campaign"])
    found[key] += 1
    recipients[(key, msg["To"].addresses[0].addr_spec)] += 1
    kinds = [p.get_content_type() for p in msg.iter_parts()] if msg.is_multipart() else []
    if msg.get_content_type() != "multipart/alternative" or kinds != ["text/plain", "text/html"]:
        errors.append(f"{path.name}: not multipart/alternative text+html ({msg.get_content_type()} {kinds})")
    for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"):
        if not msg[header]:
            errors.append(f"{path.name}: missing {header}")
    if msg.defects:
        errors.append(f"{path.name}: MIME defects {msg.defects}")

if dict(found) != expected:
    errors.append(f"emails per step: expected {expected}, outbox has {dict(found)}")
dupes = [k for k, n in recipients.items() if n > 1]
if dupes:
    errors.append(f"duplicate emails: {dupes[:5]}")
posts = [json.loads(line) for line in (outbox / "x" / "tweets.jsonl").read_text().splitlines() if line.strip()]
if len(posts) != posts_expected:
    errors.append(f"X sandbox: expected {posts_expected} posts, found {len(posts)}")



def web_check(path: Path) -> str:
    """Open one email's links and unsubscribe its recipient with one click."""
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    to = msg["To"].addresses[0].addr_spec
    url = re.search(r"<(https?://[^>]+)>", str(msg["List-Unsubscribe"])).group(1)
    html = msg.get_body(("html",)).get_content()
    for kind in ("view", "preferences"):
        link = re.search(rf'href="({re.escape(settings.base_url)}/{kind}/[^"]+)"', html)
        if link is None:
            errors.append(f"{path.name}: no {kind} link")
            continue
        with urllib.request.urlopen(link.group(1), timeout=10) as page:
            if page.status != 200:
                errors.append(f"{path.name}: {kind} link answered {page.status}")
    body = urllib.parse.urlencode({"List-Unsubscribe": "One-Click"}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        if answer.status != 200:
            errors.append(f"one-click unsubscribe answered {answer.status}")
    found = get_subscriber(engine, to)
    if found is None or found.status != "unsubscribed":
        errors.append(f"one-click unsubscribe of {to} did not take (status {found and found.status})")
    return f"; links work, one-click unsubscribe of {to[0]}•••: " + ("FAILED" if errors else "ok")


def act_check(emails: list[Path]) -> str:
    """From a call to action: its /act page opens, and its "I sent it" link records the action
    (the confirm page's button, POSTed with its CSRF cookie) once."""
    import http.cookiejar

    import sqlalchemy as sa

    from outreach.store.schema import actions

    for path in emails:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        html = msg.get_body(("html",)).get_content()
        link = re.search(rf'href="({re.escape(settings.base_url)}/act/[A-Za-z0-9_-]+/sent_letter)"', html)
        if link is not None:
            break
    else:
        errors.append("no call to action with an \"I sent it\" link in the outbox")
        return ""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(link.group(1).rsplit("/", 1)[0], timeout=10) as page:
        if page.status != 200 or "Your letter" not in page.read().decode():
            errors.append("the /act page did not show the letter")
    with opener.open(link.group(1), timeout=10) as page:
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.read().decode())
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(actions)).scalar_one()
    for _ in range(2):  # twice: recorded once
        body = urllib.parse.urlencode({"csrf": csrf.group(1) if csrf else ""}).encode()
        with opener.open(urllib.request.Request(link.group(1), data=body, method="POST"), timeout=10) as answer:
            if answer.status != 200:
                errors.append(f"\"I sent it\" answered {answer.status}")
    with engine.connect() as conn:
        after = conn.execute(sa.select(sa.func.count()).select_from(actions)).scalar_one()
    if after != before + 1:
        errors.append(f"\"I sent it\" recorded {after - before} action(s), not 1")
    return "; /act page and \"I sent it\": " + ("FAILED" if errors else "ok")


web_note = ""
emails = sorted((outbox / "email").glob("*.eml"))
if check_web and not errors:
    if not emails:
        errors.append("no email to check the links of")
    else:
        try:
            web_note = act_check(emails) + web_check(emails[0])
        except OSError as exc:
            errors.append(f"the demo's web process did not answer: {exc}")

for e in errors:
    print("demo check:", e, file=sys.stderr)
print(f"demo check: {sum(found.values())} emails over {len(expected)} email steps, {len(posts)} posts: "
      + ("FAILED" if errors else "ok") + web_note)
sys.exit(1 if errors else 0)
