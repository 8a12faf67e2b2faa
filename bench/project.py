"""The benchmark's own project directory: a copy of the repo's config/ and templates/ with
only the mid-year-recap campaign, settings that point at the sink, and limits that do not bind.

Two variants:
- `pipeline`: the campaign WITHOUT `local_time: true`. With it, `outreach send --now` gives
  each recipient the same wall-clock time in their own zone, so recipients west of the
  schedule's zone (Honolulu, Anchorage, ...) would be due hours later and the run could not
  finish; the benchmark measures sending, so every delivery is due at once.
- `planning`: the campaign as written (local_time: true), so planning builds the per-zone
  CASE the real run needs.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CAMPAIGN = "mid-year-recap"
LIMIT = "1000000/1s"


def make_project(dest: Path, variant: str, smtp_port: int | None = None, batch_size: int = 500,
                 lease: str | None = None) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(REPO / "config", dest / "config")
    shutil.copytree(REPO / "templates", dest / "templates")
    (dest / "var").mkdir()
    for path in (dest / "config" / "campaigns").glob("*.yaml"):
        if path.stem != CAMPAIGN:
            path.unlink()
    campaign = dest / "config" / "campaigns" / f"{CAMPAIGN}.yaml"
    if variant == "pipeline":
        text = campaign.read_text(encoding="utf-8")
        lines = [line for line in text.splitlines(keepends=True) if not line.strip().startswith("local_time:")]
        if len(lines) == len(text.splitlines()):
            raise RuntimeError(f"{campaign}: expected a `local_time:` line to remove for the pipeline copy")
        campaign.write_text("# outreach bench: a copy WITHOUT local_time, so `send --now` makes every delivery "
                            "due at once\n" + "".join(lines), encoding="utf-8")
    elif variant != "planning":
        raise ValueError(variant)

    settings_path = dest / "config" / "outreach.yaml"
    data = yaml.safe_load(settings_path.read_text(encoding="utf-8")) or {}
    for account in (data.get("email") or {}).get("accounts", {}).values():
        account["limits"] = [LIMIT]
        account["security"] = "none"
        account["host"] = "127.0.0.1"
        if smtp_port:
            account["port"] = smtp_port
    for account in (data.get("x") or {}).get("accounts", {}).values():
        account["limits"] = [LIMIT]
    dispatch = dict(data.get("dispatch") or {})
    dispatch.update({"batch_size": batch_size, "tick_seconds": 1})
    if lease:
        dispatch["lease"] = lease
    data["dispatch"] = dispatch
    settings_path.write_text("# written by outreach bench (bench/project.py); limits set so they do not bind\n"
                             + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return dest


def child_env(root: Path, database_url: str, redis_url: str, secret: str,
              smtp_port: int | None = None) -> dict[str, str]:
    """The environment of every outreach process the benchmark starts (no OUTREACH_* leaks in
    from the caller's shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH")}
    env.update({
        "OUTREACH_ROOT": str(root),
        "OUTREACH_DATABASE_URL": database_url,
        "OUTREACH_REDIS_URL": redis_url,
        "OUTREACH_BROKER_URL": redis_url,
        "OUTREACH_SECRET_KEY": secret,
        "OUTREACH__DISPATCH__TICK_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    if smtp_port:
        env["OUTREACH__EMAIL__ACCOUNTS__NEWS__HOST"] = "127.0.0.1"
        env["OUTREACH__EMAIL__ACCOUNTS__NEWS__PORT"] = str(smtp_port)
        env["OUTREACH__EMAIL__ACCOUNTS__NEWS__SECURITY"] = "none"
    return env
