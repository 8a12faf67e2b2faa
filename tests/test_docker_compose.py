"""docker-compose.yml and the Dockerfile, checked by reading (there is no Docker engine here):
the services the design names exist, every command is one the real CLI accepts, every OUTREACH_
variable lands where load_settings puts it, no secret is written down, start-up order is explicit."""
from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from outreach.cli import cli
from outreach.settings import _ENV_KEYS, ENV_PREFIX, load_settings
from outreach.worker import app as celery_app

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INFRA = {"redis", "postgres", "mailpit", "prometheus"}
APP = sorted(set(SERVICES) - INFRA)
EXPECTED = {"redis", "postgres", "migrate", "worker-email", "worker-social", "worker-control",
            "beat", "web", "bounces", "flower", "mailpit", "prometheus"}
# What an operator's .env supplies for the required ${VAR:?...} of the file.
DOTENV = {"POSTGRES_PASSWORD": "pw-from-dotenv"}
# OUTREACH_ variables read by the processes themselves rather than by load_settings.
PROCESS_VARS = {"OUTREACH_ROOT"}  # celery_app.make_app: where config/ lives for `celery -A`

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}."""
    def one(m: re.Match) -> str:
        name, colon, op, arg = m.groups()
        present = name in env and (env[name] != "" or not colon)
        if op == "-":
            return env[name] if present else arg
        if op == "?":
            if not present:
                raise LookupError(f"{name}: {arg}")
            return env[name]
        return env.get(name, "")
    return _VAR.sub(one, str(value)).replace("$$", "$")


def command(service: str) -> list[str]:
    cmd = SERVICES[service].get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def environment(service: str, env: dict[str, str] = DOTENV) -> dict[str, str]:
    raw = SERVICES[service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(v, env) for k, v in raw.items()}


def dockerfile_final_stage() -> list[str]:
    """Instructions of the last stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    last_from = max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    return lines[last_from:]


def instructions(name: str) -> list[str]:
    return [ln.split(None, 1)[1] for ln in dockerfile_final_stage() if ln.split(None, 1)[0].upper() == name]


# --- services and commands ------------------------------------------------------------------

def test_the_designed_services_exist():
    assert EXPECTED <= set(SERVICES), f"missing: {sorted(EXPECTED - set(SERVICES))}"
    assert set(APP) == EXPECTED - INFRA, f"unexpected services: {sorted(set(APP) - (EXPECTED - INFRA))}"


def test_exactly_one_beat():
    beats = [s for s in APP if command(s)[:2] == ["outreach", "beat"]]
    assert beats == ["beat"]
    spec = SERVICES["beat"]
    assert (spec.get("deploy") or {}).get("replicas", 1) == 1
    assert spec.get("scale", 1) == 1


@pytest.mark.parametrize("service", APP)
def test_app_commands_are_outreach_or_celery_on_our_app(service):
    cmd = command(service)
    assert cmd[:1] == ["outreach"] or cmd[:3] == ["celery", "-A", "outreach.worker.app"], cmd


OUTREACH_COMMANDS = [(s, command(s)) for s in APP if command(s)[:1] == ["outreach"]]


@pytest.mark.parametrize("service,cmd", OUTREACH_COMMANDS, ids=[s for s, _ in OUTREACH_COMMANDS])
def test_every_outreach_command_exists_with_these_options(service, cmd):
    # given the exact arguments of the service, plus --help (options are parsed before help
    # is shown, so an unknown command or option fails here)
    result = CliRunner().invoke(cli, cmd[1:] + ["--help"])
    # then the real CLI accepts them
    assert result.exit_code == 0 and result.output.startswith("Usage:"), (
        f"service {service!r} runs `{shlex.join(cmd)}`, which the CLI rejects "
        f"(exit {result.exit_code}):\n{result.output}")


def test_worker_queues_are_the_apps_queues_and_all_are_consumed():
    consumed: list[str] = []
    for service, cmd in OUTREACH_COMMANDS:
        if cmd[1] == "worker":
            queues = cmd[cmd.index("--queues") + 1].split(",")
            assert set(queues) <= set(celery_app.QUEUES), f"{service}: unknown queue in {queues}"
            consumed += queues
    assert sorted(consumed) == sorted(celery_app.QUEUES), "each queue needs exactly one worker service"


def test_flower_targets_our_celery_app(monkeypatch):
    # given the settings the container would have
    cmd = command("flower")
    assert cmd[:4] == ["celery", "-A", "outreach.worker.app", "flower"]
    monkeypatch.setenv("OUTREACH_ROOT", str(ROOT))
    monkeypatch.setattr(celery_app, "_app", None)
    # when celery resolves `-A outreach.worker.app` the way the CLI does
    from celery import Celery
    from celery.app.utils import find_app

    app = find_app("outreach.worker.app")
    # then it is our app, and flower's port is the one published
    assert isinstance(app, Celery) and app.main == "outreach"
    port = next(a.split("=", 1)[1] for a in cmd if a.startswith("--port="))
    assert any(str(p).endswith(f":{port}") for p in SERVICES["flower"].get("ports", []))


# --- environment ----------------------------------------------------------------------------

def _settings_path(name: str) -> tuple[str, ...] | None:
    if name.startswith(ENV_PREFIX + "_"):
        return tuple(p.lower() for p in name[len(ENV_PREFIX) + 1:].split("__"))
    key = name[len(ENV_PREFIX):].lower()
    return (key,) if key in _ENV_KEYS else None


def _lookup(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


@pytest.mark.parametrize("service", APP)
def test_every_outreach_variable_is_one_load_settings_understands(service, tmp_path):
    # given the service's environment as compose would resolve it
    env = {k: v for k, v in environment(service).items() if k.startswith(ENV_PREFIX)}
    assert env, f"{service} sets no OUTREACH_ variables"
    paths = {}
    for name in env:
        if name in PROCESS_VARS:
            continue
        path = _settings_path(name)
        assert path is not None, (
            f"{service}: {name} is not read by load_settings (use OUTREACH_<{'|'.join(_ENV_KEYS).upper()}> "
            "or OUTREACH__SECTION__KEY)")
        paths[name] = path
    # when the settings are loaded from the image's config/ with that environment
    shutil.copytree(ROOT / "config", tmp_path / "config")
    settings = load_settings(tmp_path, environ={**env, "OUTREACH_SECRET_KEY": "dummy-secret"})
    # then every value lands where the variable says
    for name, path in paths.items():
        assert str(_lookup(settings, path)) == env[name], f"{service}: {name} did not set {'.'.join(path)}"
    assert env.get("OUTREACH_ROOT") == instructions("WORKDIR")[-1]


def test_urls_point_at_the_stack():
    env = environment("worker-email")
    db = sa.make_url(env["OUTREACH_DATABASE_URL"])
    pg = environment("postgres")
    assert db.get_backend_name() == "postgresql" and db.host == "postgres" and db.port == 5432
    assert (db.username, db.password, db.database) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    assert env["OUTREACH_REDIS_URL"].startswith("redis://redis:6379/")
    assert env["OUTREACH__EMAIL__ACCOUNTS__NEWS__HOST"] == "mailpit"
    assert env["OUTREACH__EMAIL__ACCOUNTS__NEWS__PORT"] == "1025"
    # and an operator's .env can point the account at a real provider
    prod = environment("worker-email", {**DOTENV, "OUTREACH__EMAIL__ACCOUNTS__NEWS__HOST": "smtp.example.net"})
    assert prod["OUTREACH__EMAIL__ACCOUNTS__NEWS__HOST"] == "smtp.example.net"


_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$|BASIC_AUTH", re.I)
_REQUIRED = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_no_secret_is_written_in_the_file(service):
    raw = SERVICES[service].get("environment") or {}
    for name, value in raw.items():
        # the link-signing key and channel credentials come only from .env
        assert name != "OUTREACH_SECRET_KEY", f"{service}: OUTREACH_SECRET_KEY belongs in .env"
        assert not name.startswith((ENV_PREFIX + "SMTP_", ENV_PREFIX + "X_")), f"{service}: {name} belongs in .env"
        # any other secret is a ${VAR} without a default, so compose takes it from .env
        if _SECRET_NAME.search(name):
            assert _REQUIRED.match(str(value)), f"{service}: {name} has a literal value or default"
        # and a URL's password too
        for password in re.findall(r"://[^:/@\s]+:(\$\{[^}]*\}|[^@\s]+)@", str(value)):
            assert _REQUIRED.match(password), f"{service}: {name} embeds a literal password"
    # without .env compose refuses to start rather than use a made-up password
    if service in ("postgres", *APP):
        with pytest.raises(LookupError, match="POSTGRES_PASSWORD"):
            environment(service, {})


@pytest.mark.parametrize("service", APP)
def test_app_services_share_image_env_file_and_read_only_campaigns(service):
    spec = SERVICES[service]
    assert spec.get("build") == "." and spec.get("image") == SERVICES["beat"]["image"]
    assert spec.get("env_file") == [{"path": ".env", "required": False}]
    volumes = spec.get("volumes", [])
    assert "./config:/app/config:ro" in volumes and "./templates:/app/templates:ro" in volumes
    expected_restart = "no" if service == "migrate" else "unless-stopped"
    assert spec.get("restart") == expected_restart


# --- start-up order -------------------------------------------------------------------------

def test_depends_on_uses_conditions_that_can_be_met():
    for service, spec in SERVICES.items():
        deps = spec.get("depends_on") or {}
        assert isinstance(deps, dict), f"{service}: depends_on needs conditions (long form)"
        for target, how in deps.items():
            condition = how.get("condition")
            assert condition in ("service_healthy", "service_completed_successfully", "service_started"), \
                f"{service} -> {target}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck to wait for"
            if condition == "service_completed_successfully":
                assert SERVICES[target].get("restart") == "no", f"{target} must be one-shot"
    conditions = {s: {t: h["condition"] for t, h in (SERVICES[s].get("depends_on") or {}).items()} for s in APP}
    assert conditions["migrate"] == {"postgres": "service_healthy"}
    for service in ("worker-email", "worker-social", "worker-control", "beat", "web", "bounces"):
        assert conditions[service] == {"redis": "service_healthy", "postgres": "service_healthy",
                                       "migrate": "service_completed_successfully"}, service
    assert conditions["flower"].get("redis") == "service_healthy"


def test_web_is_published_on_loopback_for_a_tls_proxy_and_checked_by_healthz():
    spec = SERVICES["web"]
    assert spec["ports"] == ["127.0.0.1:8025:8025"]
    cmd = command("web")
    assert cmd[:2] == ["outreach", "web"] and cmd[cmd.index("--port") + 1] == "8025"
    assert "/healthz" in " ".join(spec["healthcheck"]["test"])


def test_the_bounce_mx_starts_only_with_its_profile_on_port_25():
    # an MX is public by nature: it never starts with a plain `up`, only where asked for
    spec = SERVICES["bounces"]
    assert spec["profiles"] == ["bounces"]
    cmd = command("bounces")
    assert cmd[:3] == ["outreach", "bounces", "serve"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert spec["ports"] == [f"25:{cmd[cmd.index('--port') + 1]}"]  # the container's user cannot bind 25
    assert "2525" in " ".join(spec["healthcheck"]["test"])


def test_redis_and_postgres_have_healthchecks_and_volumes():
    assert "pg_isready" in str(SERVICES["postgres"]["healthcheck"]["test"])
    assert "ping" in str(SERVICES["redis"]["healthcheck"]["test"])
    assert SERVICES["postgres"]["image"].startswith("postgres:16")
    assert SERVICES["redis"]["image"].startswith("redis:7")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in SERVICES["postgres"]["volumes"])
    assert set(COMPOSE.get("volumes") or {}) >= {"postgres-data", "redis-data"}


# --- Dockerfile -----------------------------------------------------------------------------

def test_dockerfile_runs_as_a_non_root_user_with_an_outreach_default():
    stage = dockerfile_final_stage()
    assert stage[0].split()[1] == "python:3.11-slim"
    assert instructions("WORKDIR")[-1] == "/app"
    users = instructions("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # USER comes before the command, after the last RUN that needs root
    index = {ln.split(None, 1)[0].upper(): i for i, ln in enumerate(stage)}
    assert index["USER"] > index["RUN"] and index["USER"] < index["CMD"]
    # compose's commands are whole command lines: no ENTRYPOINT may prefix them
    assert not instructions("ENTRYPOINT")
    cmd = json.loads(instructions("CMD")[-1])  # exec form: signals reach the process
    assert cmd[0] == "outreach"


def test_dockerfile_installs_the_package_with_flower_and_ships_campaigns():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip (install|wheel)[^\n]*\s\.\s[^\n]*flower", text), "pip must install . and flower"
    copies = instructions("COPY")
    assert any(c.split()[:2] == ["config", "./config"] for c in copies)
    assert any(c.split()[:2] == ["templates", "./templates"] for c in copies)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored and "var" in ignored


# --- healthchecks, monitoring, .env.example -------------------------------------------------

ONE_SHOT = {"migrate"}  # waited for by its exit status (service_completed_successfully), not by health


@pytest.mark.parametrize("service", sorted(set(SERVICES) - ONE_SHOT))
def test_every_long_running_service_has_a_healthcheck(service):
    check = SERVICES[service].get("healthcheck")
    assert check and not check.get("disable"), f"{service} has no healthcheck"
    test = check["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) >= 2, test
    assert SERVICES[service].get("restart") == "unless-stopped"


def _health_commands() -> list[tuple[str, list[str]]]:
    """Each healthcheck's command line(s) that run our CLI or Celery on our app."""
    found = []
    for service in APP:
        test = (SERVICES[service].get("healthcheck") or {}).get("test") or []
        parts = test[1].split("|") if test[:1] == ["CMD-SHELL"] else [shlex.join(test[1:])]
        lines = [shlex.split(part) for part in parts]
        found += [(service, argv) for argv in lines if argv[:1] in (["outreach"], ["celery"])]
    return found


@pytest.mark.parametrize("service,argv", _health_commands(), ids=[s for s, _ in _health_commands()])
def test_healthcheck_commands_are_real(service, argv):
    if argv[0] == "outreach":
        result = CliRunner().invoke(cli, argv[1:] + ["--help"])
        assert result.exit_code == 0, result.output
        return
    # celery -A outreach.worker.app inspect ping --timeout N: our app, a real remote-control
    # command, options the inspect command takes
    from celery.bin.celery import celery as celery_cli
    from celery.worker.control import Panel

    assert argv[1:3] == ["-A", "outreach.worker.app"] and argv[3] == "inspect"
    assert argv[4] in Panel.meta, f"{service}: celery has no remote command {argv[4]!r}"
    inspect = celery_cli.commands["inspect"]
    options = {o for p in inspect.params for o in p.opts}
    assert {a for a in argv[5:] if a.startswith("-")} <= options, argv
    assert "worker" in command(service), f"{service}: only workers answer a ping"


def test_worker_healthcheck_finds_the_node_name_the_worker_command_gives():
    # the healthcheck greps "@<hostname>:"; the worker names itself outreach-<queues>-<pid>@%h
    from outreach.cli.services import worker

    source = __import__("inspect").getsource(worker.callback)
    assert '@%h"' in source
    test = SERVICES["worker-email"]["healthcheck"]["test"][1]
    assert '"@$${HOSTNAME}:"' in test  # $$: compose passes a literal $ to the shell


def test_every_variable_the_file_uses_is_documented_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = {m.group(1) for m in _VAR.finditer(text.replace("$$", ""))}
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used, "no variables found: the pattern is wrong"
    assert used <= documented, f"add to .env.example: {sorted(used - documented)}"
    # and every OUTREACH_ setting the processes read from .env as well
    for name in ("OUTREACH_SECRET_KEY", "OUTREACH_ADMIN_USER", "OUTREACH_ADMIN_PASSWORD_HASH", "OUTREACH_ADMIN_TOKEN",
                 "OUTREACH_METRICS_TOKEN"):
        assert name in documented, name


def test_prometheus_runs_only_with_its_profile_and_scrapes_web_with_the_metrics_token():
    spec = SERVICES["prometheus"]
    assert spec["profiles"] == ["monitoring"]
    assert all("profiles" not in SERVICES[s] for s in set(SERVICES) - {"prometheus", "bounces"})
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    web_port = command("web")[command("web").index("--port") + 1]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == [f"web:{web_port}"]
    # the token file the config reads is the one the entrypoint writes, from the documented variable
    token_file = job["authorization"]["credentials_file"]
    script = " ".join(spec["command"])
    assert f"> {token_file}" in script and "$$OUTREACH_METRICS_TOKEN" in script
    assert spec["environment"]["OUTREACH_METRICS_TOKEN"] == "${OUTREACH_METRICS_TOKEN}"
    # the rules it loads are the repository's, mounted read-only where the config says
    assert "./deploy/prometheus:/etc/prometheus:ro" in spec["volumes"]
    for rule_file in config["rule_files"]:
        assert (ROOT / "deploy" / "prometheus" / Path(rule_file).name).is_file()
    assert spec["depends_on"] == {"web": {"condition": "service_healthy"}}
    assert all(p.startswith("127.0.0.1:") for p in spec["ports"])
