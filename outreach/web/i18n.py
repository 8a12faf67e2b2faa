"""The pages' languages: gettext catalogs kept as .po files (outreach/web/locale/LANG/
LC_MESSAGES/messages.po, edited by translators and committed), compiled in memory when the
app starts, so there is no build step and no .mo file to forget.

English is the source language (the msgids); a page is shown in the subscriber's own
language when there is a catalog for it, else in the best one the browser asks for
(Accept-Language), else in English. `?lang=ko` chooses explicitly (an organization's
Korean site embeds the sign-up form that way).

Updating the catalogs after changing a page:
    pybabel extract -F outreach/web/babel.cfg -o outreach/web/locale/messages.pot outreach/web
    pybabel update -i outreach/web/locale/messages.pot -d outreach/web/locale
then translate the new entries (tests/web/test_i18n.py fails while one is missing).
"""
from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SOURCE = "en"
NAMES = {"en": "English", "ko": "한국어"}  # each language in itself, for the language chooser


def load_catalogs(locale_dir: Path = LOCALE_DIR) -> dict[str, gettext.NullTranslations]:
    """Every language with a catalog, plus the source language."""
    found: dict[str, gettext.NullTranslations] = {SOURCE: gettext.NullTranslations()}
    for po in sorted(locale_dir.glob("*/LC_MESSAGES/messages.po")):
        lang = po.parent.parent.name
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        mo = io.BytesIO()
        write_mo(mo, catalog)  # fuzzy entries are left out, like msgfmt does
        mo.seek(0)
        found[lang] = Translations(fp=mo)
    return found


def primary(tag: str | None) -> str | None:
    """`ko-KR` → `ko`; None for nothing."""
    if not tag:
        return None
    return tag.replace("_", "-").split("-")[0].strip().lower() or None


def accept_language(header: str | None) -> list[str]:
    """The primary languages of an Accept-Language header, most wanted first (q=0 left out)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")[:20]):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        code = primary(lang)
        if code and code != "*" and q > 0:
            ranked.append((-q, index, code))
    return [code for _, _, code in sorted(ranked)]


@dataclass(frozen=True)
class Language:
    code: str
    translations: gettext.NullTranslations

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def date(self, value: date) -> str:
        return format_date(value, format="long", locale=self.code)


class I18n:
    def __init__(self, locale_dir: Path = LOCALE_DIR) -> None:
        self.catalogs = load_catalogs(locale_dir)

    @property
    def codes(self) -> list[str]:
        return sorted(self.catalogs)

    def choose(self, explicit: str | None, own: str | None, header: str | None) -> Language:
        """The language of a page: `?lang=`, then the subscriber's, then the browser's."""
        for code in (primary(explicit), primary(own), *accept_language(header)):
            if code in self.catalogs:
                return Language(code, self.catalogs[code])
        return Language(SOURCE, self.catalogs[SOURCE])
