"""What the pages reached through a link share: reading the token and finding its subscriber.

A token that does not verify (forged, altered, another kind, an unknown key) gets 400, a
verified one whose subscriber is gone gets 404; both say only that the link does not work,
and neither touches anything.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...content.links import LinkToken
from ...errors import DataError
from ...store import self_service
from ...store.self_service import Person
from ..i18n import Language
from ..pages import language, message, site_of


class Refused(Exception):
    """A link that leads nowhere: carries the page to answer with."""

    def __init__(self, response: Response) -> None:
        super().__init__("refused")
        self.response = response


def invalid(request: Request, lang: Language | None = None, status: int = 400) -> Refused:
    lang = lang or language(request)
    return Refused(message(request, lang, lang.gettext("This link does not work"),
                           lang.gettext("The link may be incomplete or may have been changed. Open it again from "
                                        "the email, or copy the whole address into your browser."),
                           status=status))


async def person_for(request: Request, kind: str) -> tuple[LinkToken, Person]:
    """The verified token in the path and its subscriber; Refused otherwise."""
    site = site_of(request)
    try:
        token = site.signer.read(kind, request.path_params["token"])
    except DataError:
        raise invalid(request) from None
    person = await run_in_threadpool(self_service.by_link_id, site.engine, token.link_id)
    if person is None:
        raise invalid(request, status=404)
    return token, person


def language_of(request: Request, person: Person) -> Language:
    return language(request, person.subscriber.language)
