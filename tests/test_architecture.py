"""Guards on the layout the code grows into (see README: Architecture)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "outreach"


def test_nothing_outside_the_channels_branches_on_a_channel_name():
    # what differs between channels belongs to the channel's class (channels/base.py)
    pattern = re.compile(r'''[!=]= *["'](email|x)["']''')
    offenders = [f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
                 for path in PACKAGE.rglob("*.py") if "channels" not in path.relative_to(PACKAGE).parts
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_models_is_a_leaf():
    # models.py imports nothing of ours, so every part can import it
    tree = ast.parse((PACKAGE / "models.py").read_text(encoding="utf-8"))
    ours = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and (node.level > 0 or (node.module or "").startswith("outreach"))]
    assert ours == []


def test_the_store_and_the_authoring_packages_do_not_reach_up():
    # authoring (what managers write) never needs SQL; the store never needs delivery or the CLI
    def imports(package: str) -> set[str]:
        found = set()
        for path in (PACKAGE / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
                    found.add(node.module.split(".")[0])
        return found
    assert "store" not in imports("authoring")
    assert not {"delivery", "cli", "worker", "devtools"} & imports("store")
    assert not {"delivery", "cli", "worker", "devtools", "store"} & imports("channels")


def test_checking_campaigns_needs_no_database_code():
    # `outreach validate` and loading campaigns work where no database driver is importable
    import subprocess
    import sys

    code = ("import sys, outreach.authoring.validation, outreach.authoring.catalog; "
            "print(sorted(m for m in sys.modules if m == 'sqlalchemy' or m.startswith('outreach.store')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
