"""Format the results as Markdown and add them to bench/RESULTS.md (newest first)."""
from __future__ import annotations

from pathlib import Path

from bench.ceiling import CeilingResult
from bench.pipeline import PipelineResult
from bench.planning import PlanningResult

HEADER = """# Benchmark results

Written by `scripts/dev bench` (`python -m bench`), newest first; earlier sections are kept for
comparison. What each number means and how it is measured: `bench/README.md`.
"""


def _mb(kb: int | None) -> str:
    return "?" if kb is None else f"{kb / 1024:,.0f}"


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "—" if value is None else format(value, fmt)


def section(command: str, machine: dict[str, str], pipelines: list[tuple[PipelineResult, CeilingResult | None]],
            plans: list[PlanningResult], note: str | None = None) -> str:
    lines = [f"## {machine['date']}", "", f"`{command}`", ""]
    if note:
        lines += [note, ""]
    lines += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in machine.items() if k != "date"] + [""]
    if pipelines:
        p0 = pipelines[0][0]
        lines += [f"### Pipeline: {p0.n:,} personalized mid-year-recap emails, batch_size {p0.batch_size}, "
                  "1 worker × 2 pool processes, Redis broker, smtp-sink", "",
                  "| ledger | emails/s | run created → last sent | planned by `send` | first sent after "
                  "| worker CPU µs/email | worker RSS MB (start → end, peak VmHWM) | sent / planned / sink "
                  "| `queued` events | ceiling emails/s | pipeline / ceiling |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for p, c in pipelines:
            rss = "; ".join(f"{m.role} {_mb(m.first_kb)} → {_mb(m.last_kb)}, peak {_mb(m.hwm_kb)}"
                            for m in p.mem.values())
            ratio = (f"**{p.emails_per_s / c.emails_per_s:.3f}**" if c and p.emails_per_s and c.emails_per_s
                     else "—")
            lines.append(
                f"| {p.db} | **{_num(p.emails_per_s)}** | {_num(p.window_seconds, ',.1f')} s "
                f"| {_num(p.plan_seconds, ',.1f')} s (command {p.send_cmd_seconds:,.1f} s) "
                f"| {_num(p.first_sent_s, ',.1f')} s | {_num(p.cpu_us_per_email)} | {rss} "
                f"| {p.sent:,} / {p.planned:,} / {p.sink_messages:,} | {p.queued_events:,} "
                f"| {_num(c.emails_per_s) if c else '—'} | {ratio} |")
        lines.append("")
        lines += ["emails/s in each quarter of the window (is the rate flat over the run?): "
                  + "; ".join(f"{p.db} " + " / ".join(f"{q:,.0f}" for q in p.quarters) for p, _ in pipelines)
                  + ".", ""]
        lines += ["Code each run used (when the worker started): "
                  + "; ".join(f"{p.db} {p.code}" for p, _ in pipelines) + ".", ""]
        extra = [f"{p.db}: beat CPU {p.beat_cpu:.1f} s, `send` command CPU {p.send_cmd_cpu:.1f} s, "
                 f"subscriber bulk load {p.load_seconds:.1f} s (not counted)" for p, _ in pipelines]
        lines += ["Other processes: " + "; ".join(extra) + ".", ""]
        ceilings = [(p.db, c) for p, c in pipelines if c]
        if ceilings:
            lines += ["Ceiling (same N and sink, plain smtplib, one reused connection per process, "
                      f"{ceilings[0][1].processes} processes, {ceilings[0][1].distinct:,} distinct pre-rendered "
                      "messages cycled):", "",
                      "| after the run on | emails/s | seconds | sender CPU µs/email | render + MIME µs/msg "
                      "(pipeline code, 1 process) | avg message bytes | sink |",
                      "|---|---|---|---|---|---|---|"]
            for db, c in ceilings:
                lines.append(f"| {db} | {c.emails_per_s:,.0f} | {c.seconds:,.1f} | {c.cpu_us_per_email:,.0f} "
                             f"| {c.render_us_per_msg:,.0f} | {c.bytes_avg:,.0f} | {c.sink_messages:,} |")
            lines.append("")
    if plans:
        lines += [f"### Planning: one run over {plans[0].subscribers:,} subscribers "
                  f"({plans[0].audience:,} in the audience), `dispatch.plan_run` in a fresh process", "",
                  "| ledger | plan_run seconds | deliveries | planner CPU s | planner peak RSS MB (before → after "
                  "plan_run) | time zones | bulk load s (not counted) |",
                  "|---|---|---|---|---|---|---|"]
        for r in plans:
            lines.append(f"| {r.db} | **{r.plan_seconds:,.1f}** | {r.planned:,} | {r.cpu_seconds:,.1f} "
                         f"| {_mb(r.hwm_before_kb)} → **{_mb(r.hwm_after_kb)}** | {r.zones} | {r.load_seconds:,.1f} |")
        lines += ["", "Code each run used: " + "; ".join(f"{r.db} {r.code}" for r in plans) + ".", ""]
    problems = [f"{p.db} pipeline: {x}" for p, _ in pipelines for x in p.problems]
    problems += [f"{p.db} ceiling: {x}" for p, c in pipelines if c for x in c.problems]
    problems += [f"{r.db} planning: {x}" for r in plans for x in r.problems]
    lines += ["Problems: " + ("none" if not problems else ""), *[f"- {x}" for x in problems], ""]
    return "\n".join(lines) + "\n"


def append(path: Path, text: str) -> None:
    """Insert `text` above the earlier sections, keeping them."""
    old = path.read_text(encoding="utf-8") if path.exists() else HEADER
    head, sep, rest = old.partition("\n## ")
    body = (sep.lstrip("\n") + rest) if sep else ""
    path.write_text(head.rstrip("\n") + "\n\n" + text + ("\n" + body if body else ""), encoding="utf-8")
