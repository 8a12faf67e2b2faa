"""`outreach bounces ingest` on a real database: a bounce maps to its delivery through the VERP
envelope sender, the rules suppress, a complaint unsubscribes for good, a report recorded
twice counts once, and an MTA gets the exit codes of sysexits.h."""
from __future__ import annotations

import pytest

from outreach.bounces.apply import ingest
from outreach.content.verp import Verp
from outreach.models import FeedbackKind
from outreach.store import delivery_events_of, get_subscriber, is_suppressed
from outreach.store.feedback import feedback_of, run_rates

from . import corpus
from .conftest import person


def test_the_envelope_sender_of_each_email_names_its_delivery(world):
    # given two subscribers and a sent letter
    person(world.engine, "ana@example.org")
    person(world.engine, "ben@example.org", name="Ben Park")
    run = world.send()
    verp = Verp("bounce-secret", "bounces.example.org")
    for address in ("ana@example.org", "ben@example.org"):
        ((return_path, _),) = world.received(address)
        # then each message's Return-Path is a short signed VERP address of its own delivery
        assert return_path.startswith("bounces+") and return_path.endswith("@bounces.example.org")
        assert len(return_path.partition("@")[0]) <= 64
        assert verp.read(return_path) == world.delivery(run, address).id
        # and it reads the same whatever case a mail server writes it in
        assert verp.read(return_path.upper()) == world.delivery(run, address).id


def test_a_forged_or_altered_verp_address_names_nothing():
    verp = Verp("bounce-secret", "bounces.example.org")
    good = verp.address(12345)
    token = good.partition("+")[2].partition("@")[0]
    altered = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert verp.read(f"bounces+{altered}@bounces.example.org") is None
    assert Verp("other-secret", "bounces.example.org").read(good) is None
    assert Verp("new-secret", "bounces.example.org", previous_keys=["bounce-secret"]).read(good) == 12345
    for junk in ("", "bounces@bounces.example.org", "bounces+@x", "bounces+!!!!@x", "someone+" + token + "@x",
                 "bounces+" + "a" * 200 + "@x"):
        assert verp.read(junk) is None


MAKERS = [corpus.postfix_user_unknown, corpus.exim_failed, corpus.exchange_online_not_found,
          corpus.exchange_2003_ndr, corpus.gmail_no_such_account, corpus.yahoo_failure_notice, corpus.ses_bounce]


@pytest.mark.parametrize("make", MAKERS, ids=[m.__name__ for m in MAKERS])
def test_a_hard_bounce_suppresses_the_delivery_s_subscriber_at_once(world, make):
    person(world.engine, "ana@example.org")
    person(world.engine, "ben@example.org", name="Ben Park")
    run = world.send()
    ((return_path, _),) = world.received("ana@example.org")
    # when the remote server's bounce comes back to the VERP address; it names the address as
    # the remote server knows it (upper case), which must not matter
    report, outcomes = ingest(world.engine, world.rt.settings, make(return_path, "ANA@example.org"),
                              [return_path])
    # then exactly that delivery and subscriber are hit, and only them
    (outcome,) = outcomes
    ana = world.delivery(run, "ana@example.org")
    assert outcome.delivery_id == ana.id and outcome.recorded.new
    assert is_suppressed(world.engine, "ana@example.org")
    assert get_subscriber(world.engine, "ana@example.org").status == "bounced"
    assert not is_suppressed(world.engine, "ben@example.org")
    # and the delivery's history says so with the remote server's code
    events = [e for e in delivery_events_of(world.engine, ana.id) if e.kind == "bounced"]
    assert len(events) == 1 and "hard bounce" in events[0].detail
    (row,) = feedback_of(world.engine, "ana@example.org")
    assert (row.kind, row.run_id, row.source) == (FeedbackKind.HARD_BOUNCE, run, report.type.value)
    assert row.code and row.text


def test_without_a_verp_address_the_message_id_then_the_address_find_the_delivery(world):
    person(world.engine, "ana@example.org")
    run = world.send()
    ((_, message),) = world.received("ana@example.org")
    ana = world.delivery(run, "ana@example.org")
    # given a bounce that went to the plain bounce address and quotes our Message-ID
    raw = corpus.postfix_user_unknown("bounces@bounces.example.org", "ana@example.org").replace(
        corpus.ORIGINAL_ID.encode(), str(message["Message-ID"]).encode())
    _, (outcome,) = ingest(world.engine, world.rt.settings, raw)
    assert outcome.delivery_id == ana.id
    # and one that quotes nothing of ours is matched by the address
    person(world.engine, "cy@example.org")
    run2 = world.send("followup")
    _, (outcome,) = ingest(world.engine, world.rt.settings,
                           corpus.exim_failed("bounces@bounces.example.org", "cy@example.org"))
    assert outcome.delivery_id == world.delivery(run2, "cy@example.org").id


def test_soft_bounces_suppress_only_at_the_limit_and_a_retried_report_counts_once(world):
    person(world.engine, "ana@example.org")
    world.send()
    ((return_path, _),) = world.received("ana@example.org")
    # when the same "mailbox full" report arrives twice (an MTA retried after a lost reply)
    for _ in range(2):
        ingest(world.engine, world.rt.settings, corpus.postfix_mailbox_full(return_path, "ana@example.org", 1))
    # then it is recorded once, and one soft bounce suppresses nothing (soft_limit: 2)
    assert len(feedback_of(world.engine, "ana@example.org")) == 1
    assert not is_suppressed(world.engine, "ana@example.org")
    assert get_subscriber(world.engine, "ana@example.org").status == "confirmed"
    # when a second, different soft bounce comes within the window
    _, (outcome,) = ingest(world.engine, world.rt.settings,
                           corpus.postfix_mailbox_full(return_path, "ana@example.org", 2))
    # then the address is suppressed, saying why
    assert outcome.recorded.suppressed
    from outreach.store.suppressions import get_suppression
    assert get_suppression(world.engine, "ana@example.org").reason == "2 soft bounces within 7 days"


def test_a_complaint_unsubscribes_and_suppresses_for_good(world):
    person(world.engine, "ana@example.org")
    run = world.send()
    ((return_path, _),) = world.received("ana@example.org")
    # when Yahoo's feedback loop reports a complaint (sent to the FBL address, not the VERP one)
    _, (outcome,) = ingest(world.engine, world.rt.settings, corpus.arf_complaint(return_path, "ana@example.org"))
    # then the Return-Path of the quoted message names the delivery
    assert outcome.delivery_id == world.delivery(run, "ana@example.org").id
    assert get_subscriber(world.engine, "ana@example.org").status == "complained"
    assert is_suppressed(world.engine, "ana@example.org")
    events = [e.kind for e in delivery_events_of(world.engine, outcome.delivery_id)]
    assert "complained" in events
    assert run_rates(world.engine, [run])[run].complaints == 1


@pytest.mark.parametrize("make", [corpus.out_of_office, corpus.vacation_no_headers, corpus.challenge_response,
                                  corpus.postfix_delayed])
def test_auto_replies_and_delay_warnings_change_nothing(world, make):
    person(world.engine, "ana@example.org")
    world.send()
    ((return_path, _),) = world.received("ana@example.org")
    _, outcomes = ingest(world.engine, world.rt.settings, make(return_path, "ana@example.org"))
    assert outcomes == []
    assert not is_suppressed(world.engine, "ana@example.org")
    assert feedback_of(world.engine, "ana@example.org") == []


def test_the_cli_for_an_mta_pipe_speaks_sysexits(world, tmp_path):
    person(world.engine, "ana@example.org")
    world.send()
    ((return_path, _),) = world.received("ana@example.org")
    # a bounce on stdin, with the recipient as Postfix's pipe passes it: 0 and what was done
    done = world.cli("bounces", "ingest", "--recipient", return_path, "-",
                     input=corpus.postfix_user_unknown(return_path, "ana@example.org"))
    assert done.returncode == 0, done.stderr
    assert b"hard bounce ana@example.org" in done.stdout and b"suppressed" in done.stdout
    # the same again: 0, already recorded
    again = world.cli("bounces", "ingest", "-", input=corpus.postfix_user_unknown(return_path, "ana@example.org"))
    assert again.returncode == 0 and b"already recorded" in again.stdout
    # an out-of-office: 0, ignored
    ooo = world.cli("bounces", "ingest", "-", input=corpus.out_of_office(return_path, "ana@example.org"))
    assert ooo.returncode == 0 and b"ignored" in ooo.stdout
    # garbage: EX_DATAERR with one clear line, nothing changed
    junk = world.cli("bounces", "ingest", "-", input=b"\x00\x01garbage")
    assert junk.returncode == 65 and b"not an email message" in junk.stderr and b"Traceback" not in junk.stderr
    # a file that is not there: EX_NOINPUT
    missing = world.cli("bounces", "ingest", str(tmp_path / "nope.eml"))
    assert missing.returncode == 66 and b"cannot read" in missing.stderr
    # settings that do not load: EX_CONFIG
    broken = world.cli("--config", str(tmp_path / "nope.yaml"), "bounces", "ingest", "-", input=b"From: a\r\n\r\n")
    assert broken.returncode == 78, broken.stderr


def test_a_database_that_is_down_asks_the_mta_to_try_again(world, tmp_path):
    env = dict(world.env, OUTREACH_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    import subprocess
    import sys

    from .conftest import _base_env
    done = subprocess.run([sys.executable, "-m", "outreach", "--root", str(world.project.root), "bounces", "ingest",
                           "-"], input=corpus.postfix_user_unknown("bounces@bounces.example.org", "a@example.org"),
                          capture_output=True, timeout=60, env={**_base_env(), **env})
    assert done.returncode == 75, done.stderr
    assert b"Traceback" not in done.stderr
