"""Refresh the results table of docs/reliability.md from the counts the reliability suite
wrote (var/reliability/results.json by default):

    scripts/dev test tests/reliability          # writes the counts, prints where
    .venv/bin/python scripts/reliability_doc.py [RESULTS.json]

A run of the default sizes fills the table between the `results` markers of the document, a
run with OUTREACH_RELIABILITY_FULL=1 the one between the `results-full` markers; the rest is
left as written.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
MARKERS = {False: ("<!-- results:start -->", "<!-- results:end -->"),   # default sizes (CI)
           True: ("<!-- results-full:start -->", "<!-- results-full:end -->")}  # OUTREACH_RELIABILITY_FULL=1
COLUMNS = ("planned", "sent", "failed", "skipped", "unknown", "duplicates", "lost")


HEADER = ("| scenario | what was done | planned | sent | failed | skipped | unknown | duplicates | lost "
          "| unknown that arrived | database | s | what makes it pass |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
RATES = ("rate_at_server", "busiest_second_at_server", "limiter_rate", "limiter_busiest_second", "within_5_percent",
         "load_average")


def table(results: dict) -> str:
    lines = [f"Run of {results['updated']} ({'full variants' if results['full'] else 'default sizes'}).", "", HEADER]
    notes = []
    for r in results["scenarios"]:
        cells = [f"`{r['scenario']}`", r["what"].replace("|", "\\|"), *(str(r[c]) for c in COLUMNS),
                 str(r["unknown_received"]), r["database"], f"{r['seconds']:.0f}", r["fixed_by"].replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
        if any(k in r for k in RATES):
            notes.append(f"- `{r['scenario']}`: " + ", ".join(f"{k.replace('_', ' ')} {r[k]}" for k in RATES if k in r))
    if notes:
        lines += ["", "Rates measured by the load scenario (per second; the machine's load average as it ended):",
                  "", *notes]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else ROOT / "var" / "reliability" / "results.json"
    results = json.loads(source.read_text())
    start, end = MARKERS[bool(results["full"])]
    doc = DOC.read_text()
    head, _, rest = doc.partition(start)
    _, _, tail = rest.partition(end)
    DOC.write_text(f"{head}{start}\n{table(results)}\n{end}{tail}")
    print(f"{DOC.relative_to(ROOT)}: {len(results['scenarios'])} scenarios from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
