"""Built-in steps the product sends on its own: the double opt-in confirmation.

A confirmation goes through the same ledger, dispatcher, rate limits and channel as every
campaign email, so it is retried, counted and shown in `outreach status` like one. It is a
step of the campaign `_system` (a name no campaign file can take: names start with a letter
or digit), with its own templates under templates/email/system/confirm/ that managers restyle
like any other, and it differs from a campaign's steps in two ways only:

- nothing plans it from an audience: the sign-up page adds one delivery to the day's run
  (`schedule_confirmation`), and the beat's tick never sees the campaign (it is not in the
  catalog);
- it `reaches` pending subscribers, and only them (the sender's last check before sending
  uses the step's `reaches`), while every campaign step reaches confirmed ones only: the
  one email an unconfirmed address can get is the one that asks it to confirm.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from .. import store
from ..authoring.audience import Audience
from ..authoring.campaigns import Campaign, Schedule, Step
from ..channels.smtp import SmtpChannel
from ..models import SubscriberStatus
from ..settings import Settings
from .scheduling import now_utc

if TYPE_CHECKING:
    from .runtime import Runtime

SYSTEM_CAMPAIGN = "_system"
CONFIRM_STEP = "confirm"
CONFIRM_TEMPLATE = "system/confirm"


class ConfirmStep(Step):
    reaches: ClassVar[frozenset[SubscriberStatus]] = frozenset({SubscriberStatus.PENDING})
    confirms: ClassVar[bool] = True


def system_campaigns(settings: Settings) -> dict[str, Campaign]:
    """The built-in campaigns, by name (built, not loaded: there is no file to get wrong)."""
    step = ConfirmStep.model_construct(
        id=CONFIRM_STEP, channel=SmtpChannel.name, template=CONFIRM_TEMPLATE, account=settings.web.confirm_account,
        schedule=Schedule.model_construct(), expires=None)
    campaign = Campaign.model_construct(name=SYSTEM_CAMPAIGN, title=f"{settings.organization.name}: confirm",
                                        audience=Audience(), data={}, data_files={}, steps=[step])
    return {campaign.name: campaign}


def confirm_step(rt: Runtime) -> Step:
    campaign = rt.campaign(SYSTEM_CAMPAIGN)
    assert campaign is not None  # built in
    return campaign.step(CONFIRM_STEP)


def schedule_confirmation(rt: Runtime, subscriber_id: int, email: str, now: datetime | None = None) -> int | None:
    """Ask the dispatcher to send the confirmation email to a pending subscriber at its next
    tick. One a day per address at most (the day's run holds one delivery per recipient):
    returns the delivery id, or None when today's was already asked for."""
    now = now or now_utc()
    step = confirm_step(rt)
    cls = step.channel_class
    account = cls.account_for(rt.settings, step.account)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return store.add_system_delivery(rt.engine, SYSTEM_CAMPAIGN, CONFIRM_STEP, day, cls.name, account.name,
                                     email, subscriber_id, now)
