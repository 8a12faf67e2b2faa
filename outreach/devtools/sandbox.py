"""Process-wide options that the demo passes to worker processes through the environment.

OUTREACH_X_SANDBOX=DIR records tweets of X accounts without credentials under DIR instead
of failing; the demo sets it so a fresh machine shows the whole pipeline.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def runtime_options() -> dict[str, Any]:
    sandbox = os.environ.get("OUTREACH_X_SANDBOX")
    return {"x_sandbox": Path(sandbox) if sandbox else None}
