"""`outreach validate`: every check that can be made without sending anything.

Shape errors come from loading (campaigns.py); this module adds what needs the settings,
the segments, the templates and sample subscribers: unknown accounts and segments,
missing templates, template syntax, variables nobody provides, and payloads the channel
would refuse (a tweet over 280 as X counts it). Each problem names a file and line a
campaign manager can open.
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from jinja2 import TemplateSyntaxError, meta, nodes

from ..channels.base import RECIPIENT_CONTEXT, Channel
from ..content.advocacy import EVENT_FIELDS, LETTER_FIELDS
from ..content.compose import Composer
from ..content.links import LINK_FIELDS as _LINKS
from ..content.links import LinkSigner
from ..content.templating import Renderer, TemplateFileError
from ..errors import (
    ConfigurationError,
    PermanentError,
    Problem,
    TemplateRenderError,
    ValidationFailed,
)
from ..models import TEMPLATE_FIELDS, Subscriber
from ..settings import Settings
from ..subscribers.samples import sample_subscribers
from .audience import Filter, segments_for
from .campaigns import Campaign, CampaignSet, Step, campaign_files, load_campaigns
from .events import outside_step
from .targets import TARGET_FIELDS

LINK_FIELDS = frozenset(_LINKS)  # content/links.py is the one list
ORGANIZATION_FIELDS = frozenset({"name", "postal_address", "website"})
STEP_FIELDS = frozenset({"id", "channel"})
CAMPAIGN_FIELDS = frozenset({"name", "title", "data"})


@dataclass
class Report:
    campaigns: CampaignSet
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(settings: Settings, paths: list[Path] | None = None,
             segments: dict[str, Filter] | None = None, place_samples: bool = True) -> Report:
    problems: list[Problem] = []
    if segments is None:
        try:
            segments = segments_for(settings)
        except ValidationFailed as exc:
            segments = {}
            problems.extend(exc.problems)
    problems.extend(_check_project(settings, paths))
    campaigns = load_campaigns(settings, paths)
    problems.extend(campaigns.problems)
    if settings.source_file is None:
        # accounts, attributes and the organization all live there: checking templates and
        # accounts against none would bury the one problem under many
        return Report(campaigns, list(dict.fromkeys(problems)))
    # one composer for every step: the dynamic pass composes exactly as the sender would
    composer = Composer(settings, LinkSigner(settings.secret_key or "validation-only", settings.base_url))
    recipients = sample_subscribers(settings, place=place_samples)
    checked_templates: set[str] = set()
    problems.extend(_check_organization(settings, campaigns))
    for campaign in campaigns.campaigns.values():
        problems.extend(_check_audience(campaign, segments))
        for i, step in enumerate(campaign.steps):
            problems.extend(_check_account(settings, campaign, i, step))
            problems.extend(_check_templates(settings, composer, campaign, i, step, recipients,
                                             checked_templates))
    # the same partial used by several steps is reported once
    return Report(campaigns, list(dict.fromkeys(problems)))


def _check_project(settings: Settings, paths: list[Path] | None) -> Iterator[Problem]:
    """A project where there is nothing to check is a mistake (a wrong --root, a typo in a
    path), not "ok: 0 campaigns"."""
    if settings.source_file is None:
        where = _rel(settings.root / "config" / "outreach.yaml")
        yield Problem(where, None, None, "settings file not found",
                      f"create {where} (organization, base_url, email and x accounts), or give --root "
                      "the project directory")
    if paths:
        for path in paths:
            if path.is_dir() and not campaign_files(settings, [path]):
                yield Problem(_rel(path), None, None, "no campaign files (*.yaml) here",
                              "give a campaign file or the folder that holds them")
    elif not settings.path(settings.campaigns_dir).is_dir():
        yield Problem(str(settings.campaigns_dir), None, None, "no campaigns folder",
                      f"put each campaign in a YAML file under {settings.campaigns_dir}/")


def _check_organization(settings: Settings, campaigns: CampaignSet) -> Iterator[Problem]:
    """Messages sent to each subscriber's inbox say who sends them, and where (CAN-SPAM wants a
    postal address in every commercial email; GDPR an identifiable sender)."""
    if not any(step.channel_class.per_recipient for c in campaigns.campaigns.values() for step in c.steps):
        return
    org = settings.organization
    for key, value, example in (("name", org.name, "Rights Watch"),
                                ("postal_address", org.postal_address, "1 Main St, Springfield, IL 62701, USA")):
        if not value.strip():
            yield settings.problem(("organization", key), f"organization.{key} is required to send email "
                                   "(it is shown in every footer)", f"set it in config/outreach.yaml, e.g. {example}")


def _check_audience(campaign: Campaign, segments: dict[str, Filter]) -> Iterator[Problem]:
    name = campaign.audience.segment
    if name is not None and name not in segments:
        close = difflib.get_close_matches(name, list(segments), n=1)
        yield Problem(campaign.source, campaign.line(("audience", "segment")), "audience.segment",
                      f"unknown segment {name!r}",
                      f"did you mean {close[0]!r}?" if close else
                      "define it in config/segments.yaml" + (f" (defined: {', '.join(segments)})" if segments else ""))


def _check_account(settings: Settings, campaign: Campaign, i: int, step: Step) -> Iterator[Problem]:
    try:
        step.channel_class.account_for(settings, step.account)
    except ConfigurationError as exc:
        yield Problem(campaign.source, campaign.line(("steps", i, "account")), f"steps[{i}].account", str(exc))


def _check_templates(settings: Settings, composer: Composer, campaign: Campaign, i: int, step: Step,
                     recipients: list[Subscriber], checked: set[str]) -> Iterator[Problem]:
    channel = step.channel_class
    renderer = composer.renderer
    loc = ("steps", i, "template")
    field = f"steps[{i}].template"
    templates_dir = renderer.templates_dir
    files = channel.template_files(step.template)
    required = [name for role, name in files.items() if role not in channel.optional_templates]
    names = required + [name for role, name in files.items()
                        if role in channel.optional_templates and renderer.exists(name)]
    missing = [n for n in required if not renderer.exists(n)]
    if missing:
        folder = templates_dir / channel.template_dir
        known = sorted(p.name if p.is_dir() else p.stem for p in folder.glob("*")) if folder.is_dir() else []
        # a folder that is there but lacks a file must not suggest its own name
        close = difflib.get_close_matches(step.template, [k for k in known if k != step.template], n=1)
        yield Problem(campaign.source, campaign.line(loc), field,
                      f"unknown template {step.template!r}: "
                      f"{', '.join(_rel(templates_dir / m) for m in missing)} not found",
                      f"did you mean {close[0]!r}?" if close else f"create {_rel(templates_dir / missing[0])}")
        return

    # static pass: syntax and variables, for the template and everything it extends/includes
    allowed = set(channel.context_names())
    closure = _closure(renderer, names)
    # A partial may use what its includer `{% set %}`s before including it.
    assigned = {n.name for name in closure for n in _parse(renderer, name).find_all(nodes.Name)
                if n.ctx in ("store", "param")} if len(closure) > 1 else set()
    broken = False
    for name in closure:
        key = f"{campaign.name}:{step.channel}:{name}"
        if key in checked:
            continue
        checked.add(key)
        try:
            source, filename, _ = renderer.loader.get_source(renderer.env, name)
        except TemplateFileError as exc:
            broken = True
            yield Problem(exc.filename, exc.lineno, None, str(exc.message), None)
            continue
        display = _rel(Path(filename))
        try:
            ast = renderer.env.parse(source, name, filename)
            found = list(_variable_problems(ast, allowed, assigned, campaign, settings, channel))
        except TemplateSyntaxError as exc:  # also TemplateAssertionError: an unknown filter or test
            broken = True
            yield Problem(display, exc.lineno, None, f"template syntax error: {exc.message}",
                          _syntax_hint(renderer, exc.message or ""))
            continue
        found.extend(_missing_references(renderer, ast))
        for lineno, message, hint in found:
            broken = True
            yield Problem(display, lineno, None, message, hint)
    if broken:
        return

    # dynamic pass: compose for each sample recipient exactly as the sender would, and check
    # each payload as the channel will; this catches lookups that fail only for some data (a
    # country with no entry, say) and texts too long as the provider counts them
    current: str | None = None
    try:
        for recipient in (recipients if channel.per_recipient else [None]):
            if recipient is not None and outside_step(campaign, step, recipient):
                continue  # not in this step's audience: the step never renders for them
            current = recipient.email if recipient is not None else None
            payload = channel.compose(composer, campaign, step, recipient)
            try:
                channel.validate(payload)
            except PermanentError as exc:
                who = f" (for sample subscriber {current})" if current else ""
                yield Problem(_rel(templates_dir / names[-1]), None, field, f"{exc}{who}", exc.context.get("hint"))
                break
    except ConfigurationError:
        return  # the step's account is missing or wrong: _check_account (or the settings check) says so
    except TemplateRenderError as exc:
        who = f" (rendering for sample subscriber {current})" if current else ""
        reason = str(exc.context.get("reason", exc))
        yield Problem(_rel(Path(exc.context.get("file") or templates_dir)), exc.context.get("line"), None,
                      f"{reason}{who}", "guard optional values, e.g. {{ subscriber.city or 'your city' }}"
                      if reason.startswith("undefined variable") else None)


def _syntax_hint(renderer: Renderer, message: str) -> str:
    match = re.search(r"No (filter|test) named '([^']*)'", message)
    if match:
        kind, name = match.groups()
        known = renderer.env.filters if kind == "filter" else renderer.env.tests
        close = difflib.get_close_matches(name, [k for k in known if k != name], n=1)
        return f"did you mean {close[0]!r}?" if close else f"see the {kind}s of Jinja2's template documentation"
    return "check the {{ }} and {% %} tags on this line"


def _missing_references(renderer: Renderer, ast: nodes.Template) -> Iterator[tuple[int, str, str | None]]:
    """An include, extends or import of a template that does not exist, at its line."""
    for node in ast.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        target = getattr(node, "template", None)
        if isinstance(target, nodes.Const) and isinstance(target.value, str) and not renderer.exists(target.value):
            if isinstance(node, nodes.Include) and node.ignore_missing:
                continue
            yield (node.lineno, f"template {target.value!r} not found under {_rel(renderer.templates_dir)}/",
                   "check the name: it is a path under templates/, e.g. partials/button.html")


def _closure(renderer: Renderer, names: Iterable[str]) -> list[str]:
    """The templates plus every template they extend, include or import."""
    seen: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop(0)
        if name in seen or not renderer.exists(name):
            continue
        seen.append(name)
        todo.extend(r for r in meta.find_referenced_templates(_parse(renderer, name)) if r)
    return seen


def _parse(renderer: Renderer, name: str) -> nodes.Template:
    try:
        return renderer.env.parse(renderer.loader.get_source(renderer.env, name)[0])
    except (TemplateSyntaxError, TemplateFileError, RecursionError):  # each is reported by the static pass
        return nodes.Template([])


def _variable_problems(ast: nodes.Template, allowed: set[str], assigned: set[str], campaign: Campaign,
                       settings: Settings, channel: type[Channel]) -> Iterator[tuple[int, str, str | None]]:
    undeclared = meta.find_undeclared_variables(ast) - assigned
    # `x | default(...)` and `x is defined` are the template saying "x is optional"
    guarded = {id(n.node) for n in ast.find_all((nodes.Filter, nodes.Test))
               if n.name in ("default", "d", "defined", "undefined") and isinstance(n.node, nodes.Name)}
    for node in ast.find_all(nodes.Name):
        if id(node) in guarded:
            continue
        if node.ctx == "load" and node.name in undeclared and node.name not in allowed:
            if node.name in RECIPIENT_CONTEXT and not channel.per_recipient:
                yield (node.lineno, f"{node.name!r} is not available in a {channel.noun}",
                       f"a {channel.noun} is sent once from the account, not per subscriber")
            else:
                close = difflib.get_close_matches(node.name, sorted(allowed), n=1)
                yield (node.lineno, f"variable {node.name!r} is not provided by the subscriber or the campaign",
                       f"did you mean {close[0]!r}?" if close else f"available: {', '.join(sorted(allowed))}")
            undeclared.discard(node.name)  # report each unknown name once
    attrs = set(settings.subscribers.attributes)
    fields = {
        ("subscriber",): (TEMPLATE_FIELDS, "subscriber fields"),
        ("subscriber", "attrs"): (attrs, "custom attributes declared under subscribers.attributes in "
                                         "config/outreach.yaml"),
        ("campaign",): (CAMPAIGN_FIELDS, "campaign fields"),
        ("campaign", "data"): (set(campaign.data), f"keys of data/data_files in {campaign.source}"),
        ("links",): (LINK_FIELDS, "links"),
        ("organization",): (ORGANIZATION_FIELDS, "organization fields"),
        ("step",): (STEP_FIELDS, "step fields"),
        ("target",): (frozenset(TARGET_FIELDS), "target fields"),
        ("letter",): (LETTER_FIELDS, "letter fields"),
        ("event",): (EVENT_FIELDS, "event fields"),
        ("actions",): (frozenset(campaign.actions), f"actions declared in {campaign.source}"),
    }
    for lookup in ast.find_all(nodes.Getattr):
        path = _attr_path(lookup.node)
        if path is None or path[0] not in undeclared | allowed or path not in fields:
            continue
        known, what = fields[path]
        if lookup.attr not in known:
            dotted = ".".join(path + (lookup.attr,))
            close = difflib.get_close_matches(lookup.attr, sorted(known), n=1)
            yield (lookup.lineno, f"{dotted!r} is not provided: not one of the {what}",
                   f"did you mean {'.'.join(path + (close[0],))!r}?" if close else
                   (f"available: {', '.join(sorted(known))}" if known else None))


def _attr_path(node: nodes.Node) -> tuple[str, ...] | None:
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        inner = _attr_path(node.node)
        return inner + (node.attr,) if inner else None
    return None


def _rel(path: Path) -> str:
    return os.path.relpath(path)
