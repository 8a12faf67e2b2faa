"""Running the web app under uvicorn (`outreach web`, the demo).

One process, one event loop; pages call the database in worker threads. Scale by running
more processes (or containers) behind the TLS proxy: they share nothing but the database and
Redis. uvicorn's access log is off (it would write tokens; see access_log.py), and the
client address comes from X-Forwarded-For only when the proxy is in `web.trusted_proxies`.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import uvicorn

from ..logs import configure
from ..settings import Settings
from .app import create_app


def default_port(base_url: str) -> int:
    """The port of the public address (base_url), which is where the demo serves it; 8025
    when it names none."""
    parts = urlsplit(base_url)
    return parts.port or 8025


def serve(settings: Settings, host: str = "127.0.0.1", port: int | None = None, *, log_level: str = "info") -> None:
    app = create_app(settings)
    configure(log_level)
    # log_config=None: uvicorn's loggers go through the JSON lines configured above
    uvicorn.run(app, host=host, port=port or default_port(settings.base_url), access_log=False,
                proxy_headers=True, forwarded_allow_ips=",".join(settings.web.trusted_proxies),
                server_header=False, log_level=log_level.lower(), log_config=None, timeout_graceful_shutdown=10)
