"""Campaign models: YAML files in config/campaigns/ become typed, checked objects once.

Loading only checks the shape of each file (keys, types, schedules, step references);
`validation.py` adds the checks that need templates, settings and sample data.
"""
from __future__ import annotations

import os
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter
from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..channels import CHANNELS, Channel
from ..errors import Problem
from ..formats import parse_duration, zone_name
from ..models import SubscriberStatus
from ..settings import Settings, Strict
from . import yamlfile
from .advocacy import ACTION_PATTERN, Events, Letter, QuietHours, StepAudience
from .audience import Audience
from .events import PlacedEvents, place_events
from .targets import TargetSet, load_targets

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
# A template name is a path under templates/<channel>/ whose parts start with a letter or
# digit: no `..`, no absolute path, nothing hidden.
TEMPLATE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$"

# Standard five-field cron: numbers (names for month and weekday), `*`, ranges, lists and
# steps. croniter also takes seconds and years (six or seven fields: a run every second), and
# `R` (random: a different time each time it is read, so every tick would see new
# occurrences), `H`, `L`, `W`, `#` and `?`: refused, so a schedule means the same everywhere.
_CRON_NUMBER = r"(\*|\d+(-\d+)?)(/\d+)?"
_CRON_NAMED = r"(\*|(\d+|[A-Za-z]{3})(-(\d+|[A-Za-z]{3}))?)(/\d+)?"
_CRON_FIELDS = [re.compile(rf"^{pattern}(,{pattern})*$")
                for pattern in (_CRON_NUMBER, _CRON_NUMBER, _CRON_NUMBER, _CRON_NAMED, _CRON_NAMED)]
_CRON_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
CRON_HELP = ("five fields: minute hour day-of-month month day-of-week, e.g. \"0 9 1 * *\" for 09:00 on the 1st; "
             "each field is *, a number, a range a-b, a list a,b or a step */n")


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, (str, int, float)) else value


def _quiet_hours(value: Any) -> Any:
    return QuietHours.parse(value)


def _wall_time(value: Any) -> Any:
    """'2026-12-01 09:00' (YAML leaves it a string) → naive datetime; the zone is separate.
    Only a date and time is one: a number would be read as seconds since 1970, and a date
    alone leaves the hour to chance."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a date and time; write YYYY-MM-DD HH:MM") from None
    if not isinstance(value, datetime):
        what = "a date without a time" if isinstance(value, date) else repr(value)
        raise ValueError(f"{what} is not a date and time; write YYYY-MM-DD HH:MM, e.g. 2030-01-15 09:00")
    if value.tzinfo is not None:
        raise ValueError("write the time without an offset and give the zone in `timezone:`")
    return value


def check_cron(expression: str) -> str:
    """The expression if it is standard five-field cron, else ValueError saying how to write it."""
    fields = expression.split()
    if expression.strip() in _CRON_MACROS:
        raise ValueError(f"write {expression.strip()!r} as five fields: \"{_CRON_MACROS[expression.strip()]}\"")
    if len(fields) != 5:
        raise ValueError(f"cron expression {expression!r} has {len(fields)} field(s); {CRON_HELP}")
    bad = [f for f, pattern in zip(fields, _CRON_FIELDS, strict=True) if not pattern.match(f)]
    if bad or not croniter.is_valid(expression):
        raise ValueError(f"invalid cron expression {expression!r}; {CRON_HELP}")
    return expression


def _check_occurs(cron: str, zone: ZoneInfo, start: datetime | None, end: datetime | None) -> None:
    """A cron whose dates never come (`0 9 31 2 *`: February 31) or never fall between
    `start` and `end` is a mistake; croniter would raise on every tick instead."""
    window = (f" between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}" if start and end
              else f" after {start:%Y-%m-%d %H:%M}" if start
              else f" before {end:%Y-%m-%d %H:%M}" if end else "")
    try:
        if start is not None or end is None:
            base = (start - timedelta(seconds=1)) if start else datetime.now(zone).replace(tzinfo=None)
            found: datetime = croniter(cron, base.replace(tzinfo=zone)).get_next(datetime)
            in_window = end is None or found.replace(tzinfo=None) <= end
        else:
            croniter(cron, end.replace(tzinfo=zone) + timedelta(seconds=1)).get_prev(datetime)
            in_window = True
    except CroniterBadDateError:
        raise ValueError(f"cron {cron!r} never occurs: there is no such date "
                         "(e.g. February 30 or April 31)") from None
    except (OverflowError, ValueError):  # a start or end at the edge of the calendar
        in_window = False
    if not in_window:
        raise ValueError(f"cron {cron!r} never occurs{window}; widen start/end or change the expression")


class Schedule(Strict):
    # pydantic validates fields in this order: `cron` comes after the zone and the window it
    # is checked against
    at: datetime | None = None
    timezone: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    cron: str | None = None
    after: str | None = None
    delay: timedelta = timedelta(0)
    local_time: bool = False
    # This long before each stop of the campaign's `events`: one run per stop, to the people
    # invited to that stop (the reminder the day before).
    before_event: timedelta | None = None

    _times = field_validator("at", "start", "end", mode="before")(_wall_time)
    _delay = field_validator("delay", "before_event", mode="before")(_duration)

    _tz = field_validator("timezone")(zone_name)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        check_cron(v)
        start, end = info.data.get("start"), info.data.get("end")
        if info.data.get("timezone") and not (start and end and end <= start):  # that one is said below
            _check_occurs(v, ZoneInfo(info.data["timezone"]), start, end)
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        kinds = [k for k in ("at", "cron", "after", "before_event") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a schedule needs exactly one of `at`, `cron`, `after` or `before_event`"
                             + (f" (found {', '.join(kinds)})" if kinds else ""))
        if kinds[0] in ("at", "cron") and self.timezone is None:
            raise ValueError(f"`{kinds[0]}` needs a `timezone:` (an IANA name such as America/New_York)")
        if self.delay and self.after is None:
            raise ValueError("`delay` only applies to a schedule with `after: STEP`")
        if (self.start or self.end) and self.cron is None:
            raise ValueError("`start`/`end` only apply to a `cron` schedule")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"`end` ({self.end:%Y-%m-%d %H:%M}) is not after `start` ({self.start:%Y-%m-%d %H:%M})")
        return self

    @property
    def zone(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None


class Step(Strict):
    id: str = Field(pattern=NAME_PATTERN)
    channel: str
    template: str
    account: str | None = None
    schedule: Schedule
    expires: timedelta | None = None
    audience: StepAudience | None = None
    # Sent at once whatever the recipient's quiet hours (the campaign's `quiet_hours`).
    urgent: bool = False

    _expires = field_validator("expires", mode="before")(_duration)

    # Set only by the built-in steps (delivery/system.py), never by a YAML file: whom the last
    # check before sending lets through, and whether its links include `links.confirm`.
    reaches: ClassVar[frozenset[SubscriberStatus]] = frozenset({SubscriberStatus.CONFIRMED})
    confirms: ClassVar[bool] = False

    @field_validator("template")
    @classmethod
    def _template_name(cls, v: str) -> str:
        if not re.match(TEMPLATE_PATTERN, v):
            raise ValueError(f"{v!r} is not a template name; write the name of a template under templates/, "
                             "e.g. newsletter (no leading /, no ..)")
        return v

    @field_validator("expires")
    @classmethod
    def _positive_expiry(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v <= timedelta(0):
            raise ValueError("`expires` must be longer than 0 (an occurrence found later than this is skipped)")
        return v

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, v: str) -> str:
        if v not in CHANNELS:
            raise ValueError(f"unknown channel {v!r}; use one of: {', '.join(sorted(CHANNELS))}")
        return v

    @property
    def channel_class(self) -> type[Channel]:
        return CHANNELS[self.channel]

    @property
    def view(self) -> MappingProxyType[str, Any]:
        return MappingProxyType({"id": self.id, "channel": self.channel})


class Campaign(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    title: str | None = None
    audience: Audience = Audience()
    data: dict[str, Any] = Field(default_factory=dict)
    data_files: dict[str, str] = Field(default_factory=dict)
    # Advocacy (docs/campaigns.md): the target file whose office each supporter writes to,
    # the letter, what supporters can record having done, a tour's events, quiet hours.
    targets: str | None = None
    letter: Letter | None = None
    actions: list[str] = Field(default_factory=list)
    events: Events | None = None
    quiet_hours: QuietHours | None = None
    steps: list[Step] = Field(min_length=1)

    _source: str = PrivateAttr(default="")
    _doc: Any = PrivateAttr(default=None)
    _targets: TargetSet | None = PrivateAttr(default=None)   # `targets:` loaded, every office placed
    _places: PlacedEvents | None = PrivateAttr(default=None)  # `events:` placed on the map and in time

    _quiet = field_validator("quiet_hours", mode="before")(_quiet_hours)

    @field_validator("actions")
    @classmethod
    def _action_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.match(ACTION_PATTERN, name):
                raise ValueError(f"{name!r} is not an action name; write lower-case words joined by _, "
                                 "e.g. sent_letter")
        if len(set(v)) != len(v):
            raise ValueError("an action is listed twice")
        return v

    @property
    def target_set(self) -> TargetSet | None:
        return self._targets

    @property
    def placed_events(self) -> PlacedEvents | None:
        return self._places

    @property
    def source(self) -> str:
        return self._source

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def view(self) -> MappingProxyType[str, Any]:
        """What templates see as `campaign` (read-only)."""
        return MappingProxyType({"name": self.name, "title": self.title or self.name, "data": self.data})

    def line(self, loc: yamlfile.Loc) -> int | None:
        return self._doc.line(loc) if self._doc else None


class CampaignSet:
    """Every campaign that loaded, plus every problem found while loading."""

    def __init__(self) -> None:
        self.campaigns: dict[str, Campaign] = {}
        self.problems: list[Problem] = []


def campaign_files(settings: Settings, paths: list[Path] | None = None) -> list[Path]:
    """The campaign files under the given paths (a file, a campaigns dir, or config/)."""
    roots = paths or [settings.path(settings.campaigns_dir)]
    found: list[Path] = []
    for p in roots:
        p = Path(p)
        if p.is_dir():
            # `validate config/` means the campaigns inside it
            base = p / "campaigns" if (p / "campaigns").is_dir() else p
            found.extend(sorted(base.glob("*.yaml")) + sorted(base.glob("*.yml")))
        elif p.is_file():
            found.append(p)
    return found


def load_campaigns(settings: Settings, paths: list[Path] | None = None) -> CampaignSet:
    result = CampaignSet()
    for path in campaign_files(settings, paths):
        campaign = load_campaign_file(settings, path, result.problems)
        if campaign is None:
            continue
        if campaign.name in result.campaigns:
            other = result.campaigns[campaign.name].source
            result.problems.append(Problem(campaign.source, campaign.line(("name",)), "name",
                                           f"campaign name {campaign.name!r} is already used by {other}",
                                           "give each campaign a unique name"))
            continue
        result.campaigns[campaign.name] = campaign
    return result


def load_campaign_file(settings: Settings, path: Path, problems: list[Problem]) -> Campaign | None:
    display = os.path.relpath(path)
    try:
        doc = yamlfile.load(path, display)
    except yamlfile.YamlSyntaxError as exc:
        problems.append(exc.problem)
        return None
    if not isinstance(doc.data, dict):
        problems.append(Problem(display, 1, None, "a campaign file must be a mapping with name, audience and steps"))
        return None
    try:
        campaign = Campaign.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(yamlfile.problems_from(exc, doc, Campaign))
        return None
    campaign._source = display
    campaign._doc = doc
    problems.extend(_check_steps(campaign, doc))
    _load_data_files(settings, campaign, doc, problems)
    _load_advocacy(settings, campaign, doc, problems)
    return campaign


def _check_steps(campaign: Campaign, doc: yamlfile.Located) -> list[Problem]:
    out: list[Problem] = []
    ids: dict[str, int] = {}
    for i, step in enumerate(campaign.steps):
        if step.schedule.local_time and not step.channel_class.per_recipient:
            out.append(doc.problem(("steps", i, "schedule", "local_time"),
                                   f"local_time applies to steps sent per recipient: a {step.channel_class.noun} "
                                   "goes out once, from the account", "remove it, or give it its own time"))
        if step.id in ids:
            out.append(doc.problem(("steps", i, "id"), f"step id {step.id!r} is used twice",
                                   "give each step a unique id"))
        ids.setdefault(step.id, i)
    for i, step in enumerate(campaign.steps):
        after = step.schedule.after
        if after is None:
            continue
        if after not in ids:
            close = [s for s in ids if s != step.id]
            out.append(doc.problem(("steps", i, "schedule", "after"),
                                   f"step {step.id!r} runs after step {after!r}, which does not exist",
                                   f"use one of: {', '.join(close)}" if close else "add that step"))
            continue
        # follow the chain to find cycles (a → b → a never runs)
        seen = {step.id}
        cur: str | None = after
        while cur is not None:
            if cur in seen:
                out.append(doc.problem(("steps", i, "schedule", "after"),
                                       f"steps {' → '.join(sorted(seen))} wait for each other in a cycle",
                                       "one step must have `at` or `cron`"))
                break
            seen.add(cur)
            cur = campaign.steps[ids[cur]].schedule.after if cur in ids else None
    return out


def _load_data_files(settings: Settings, campaign: Campaign, doc: yamlfile.Located,
                     problems: list[Problem]) -> None:
    for key, rel in campaign.data_files.items():
        loc = ("data_files", key)
        if key in campaign.data:
            problems.append(doc.problem(loc, f"{key!r} is defined both in data and data_files",
                                        "keep one of them"))
            continue
        try:
            path = data_file_path(settings, rel)
        except ValueError as exc:
            problems.append(doc.problem(loc, str(exc), f"write a path relative to {settings.data_dir}/, "
                                                       "e.g. targets/list.yaml"))
            continue
        if not path.is_file():
            problems.append(doc.problem(loc, f"data file {rel} not found under {settings.data_dir}",
                                        "the path is relative to the config directory"))
            continue
        try:
            campaign.data[key] = yamlfile.load(path, os.path.relpath(path)).data
        except yamlfile.YamlSyntaxError as exc:
            problems.append(exc.problem)


def _load_advocacy(settings: Settings, campaign: Campaign, doc: yamlfile.Located, problems: list[Problem]) -> None:
    if campaign.targets is not None:
        try:
            path = data_file_path(settings, campaign.targets)
        except ValueError as exc:
            problems.append(doc.problem(("targets",), str(exc), "e.g. targets/chinese-missions.yaml"))
            path = None
        if path is not None and not path.is_file():
            problems.append(doc.problem(("targets",), f"target file {campaign.targets} not found under "
                                        f"{settings.data_dir}", "the path is relative to the config directory"))
        elif path is not None:
            campaign._targets = load_targets(path, problems)
    if campaign.events is not None:
        campaign._places = place_events(campaign.events, doc, problems)
    for i, step in enumerate(campaign.steps):
        aud = step.audience
        for key, ref in (("acted", aud.acted if aud else None), ("not_acted", aud.not_acted if aud else None)):
            if ref is not None and (ref.campaign in (None, campaign.name)) and ref.action not in campaign.actions:
                declared = ", ".join(campaign.actions) or "none"
                problems.append(doc.problem(("steps", i, "audience", key, "action"),
                                            f"action {ref.action!r} is not one of this campaign's `actions`",
                                            f"declare it under `actions:` (declared: {declared})"))
        if ((aud is not None and aud.near_event is not None) or step.schedule.before_event) and campaign.events is None:
            problems.append(doc.problem(("steps", i), "this step depends on events, and the campaign has none",
                                        "add `events:` with a radius and stops"))
        if aud is not None and (aud.acted or aud.not_acted or aud.near_event is not None) \
                and not step.channel_class.per_recipient:
            problems.append(doc.problem(("steps", i, "audience"), f"a {step.channel_class.noun} goes out once, "
                                        "from the account: it has no audience of its own", "remove it"))


def data_file_path(settings: Settings, rel: str) -> Path:
    """Where data file `rel` is: a YAML file inside the config directory, links resolved.
    ValueError for anything else: templates render whatever a data file holds, so a path
    out of config/ (`../.env`, an absolute path, a link pointing away) would let a campaign
    print secrets into a tweet."""
    base = settings.path(settings.data_dir).resolve()
    if Path(rel).is_absolute() or rel.startswith(("/", "\\")) or ".." in Path(rel).parts or "\\" in rel:
        raise ValueError(f"data file {rel!r} is outside {settings.data_dir}/")
    if Path(rel).suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"data file {rel!r} is not a YAML file (.yaml or .yml)")
    path = (base / rel).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"data file {rel!r} is a link to a file outside {settings.data_dir}/")
    return path


def root_step(campaign: Campaign, step: Step) -> tuple[Step, timedelta]:
    """The step whose own schedule anchors `step`, and the total delay after it."""
    delay = timedelta(0)
    while step.schedule.after is not None:
        delay += step.schedule.delay
        step = campaign.step(step.schedule.after)
    return step, delay
