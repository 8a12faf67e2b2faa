"""The ceiling: the same number of messages, pre-rendered, sent by plain smtplib over one
reused connection per process, with as many processes as the worker has, to the same sink.

Rendering: K distinct personalized messages (default 1,000, or N if smaller) are rendered
beforehand with the pipeline's own code (Composer + SmtpChannel.build: the exact bytes the
pipeline sends, for real subscribers of the benchmark's ledger). The N sends cycle through
them, each to its own subscriber's address; message sizes are the pipeline's, only the
rendering is taken out. Rendering is timed too and reported as CPU per message (render +
MIME), which with the send cost tells where a pipeline's time goes.
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import resource
import smtplib
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CeilingResult:
    n: int
    processes: int
    distinct: int
    bytes_avg: float
    render_us_per_msg: float
    seconds: float
    emails_per_s: float
    cpu_us_per_email: float
    sink_messages: int
    problems: list[str]


def render(settings_root: Path, env: dict[str, str], database_url: str, k: int, out: Path) -> tuple[int, float, float]:
    """Render k messages for the first k subscribers in the audience; pickle [(rcpt, bytes)]."""
    from outreach.channels.smtp.channel import SmtpChannel
    from outreach.delivery.runtime import Runtime
    from outreach.settings import load_settings
    from outreach.store import load_for_sending, make_engine
    from outreach.store.audience import audience_select

    settings = load_settings(settings_root, environ=env)
    rt = Runtime(settings, engine=make_engine(database_url))
    campaign = rt.campaigns()["mid-year-recap"]
    step = campaign.steps[0]
    select = audience_select(campaign.audience, rt.segments()).limit(k)
    with rt.engine.connect() as conn:
        ids = [r.id for r in conn.execute(select)]
    loaded = load_for_sending(rt.engine, ids, settings.subscribers.attributes)
    channel = SmtpChannel(SmtpChannel.account_for(settings, step.account))
    t0 = time.process_time()
    messages = []
    for sid in ids:
        built = channel.build(SmtpChannel.compose(rt.composer, campaign, step, loaded[sid].subscriber))
        messages.append((built.to_addr, built.data))
    cpu = time.process_time() - t0
    rt.engine.dispose()
    out.write_bytes(pickle.dumps((channel.server.envelope_from, messages)))
    return len(messages), cpu / max(len(messages), 1) * 1e6, sum(len(m) for _, m in messages) / max(len(messages), 1)


def _sender(port: int, path: str, start: int, count: int, barrier, results) -> None:
    envelope_from, messages = pickle.loads(Path(path).read_bytes())
    conn = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.localhost", timeout=60)
    conn.ehlo()
    refused_total = 0
    barrier.wait()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.time()
    k = len(messages)
    for j in range(start, start + count):
        rcpt, data = messages[j % k]
        refused = conn.sendmail(envelope_from, [rcpt], data)
        refused_total += len(refused)
    t1 = time.time()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    conn.quit()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    results.put((t0, t1, count, cpu, refused_total))


def run(n: int, processes: int, port: int, messages_file: Path, sink, distinct: int, render_us: float,
        bytes_avg: float) -> CeilingResult:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    share, rest = divmod(n, processes)
    sink0 = sink.messages
    procs, start = [], 0
    for i in range(processes):
        count = share + (1 if i < rest else 0)
        p = ctx.Process(target=_sender, args=(port, str(messages_file), start, count, barrier, results))
        p.start()
        procs.append(p)
        start += count
    got = [results.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
    t0 = min(r[0] for r in got)
    t1 = max(r[1] for r in got)
    sent = sum(r[2] for r in got)
    cpu = sum(r[3] for r in got)
    refused = sum(r[4] for r in got)
    problems = []
    sink_messages = sink.wait_settled(sink0 + sent, timeout=10) - sink0
    if sink_messages != sent:
        problems.append(f"smtp-sink counted {sink_messages:,} messages, the senders {sent:,}")
    if refused:
        problems.append(f"{refused:,} recipients refused")
    seconds = t1 - t0
    return CeilingResult(n, processes, distinct, bytes_avg, render_us, seconds, sent / seconds if seconds else 0.0,
                         cpu / sent * 1e6 if sent else 0.0, sink_messages, problems)
