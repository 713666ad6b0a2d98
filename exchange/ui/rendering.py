"""Pages from Jinja2 templates, in the reader's language.

One Jinja2 environment per language, built on first use: gettext is installed into an
environment, so sharing one between requests in different languages would race. Autoescape
is on for every template, and undefined names fail loudly instead of printing nothing.
Numbers and dates are formatted by Babel for the page's locale; numbers and P-codes keep
their left-to-right order inside Arabic text because templates wrap them in ``<bdi>``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, format_percent
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from exchange import i18n
from exchange.ui import navigation
from schemas.labels import LANGUAGES, RIGHT_TO_LEFT, Language

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

#: The name of each language in itself, for the language switch.
LANGUAGE_NAMES: Mapping[Language, str] = {
    "en": "English",
    "fr": "Français",
    "es": "Español",
    "ar": "العربية",
}


def _number(language: Language) -> Any:
    def number(value: float | int | None, digits: int | None = None) -> str:
        if value is None:
            return ""
        pattern = None if digits is None else "#,##0." + "0" * digits if digits else "#,##0"
        return format_decimal(value, format=pattern, locale=language)

    return number


def _percent(language: Language) -> Any:
    def percent(value: float) -> str:
        return format_percent(value, locale=language)

    return percent


def _datetime(language: Language) -> Any:
    def when(value: dt.datetime | None, style: str = "medium") -> str:
        if value is None:
            return ""
        return format_datetime(value, style, tzinfo=dt.UTC, locale=language) + " UTC"

    return when


def _date(language: Language) -> Any:
    def day(value: dt.date | dt.datetime | None, style: str = "medium") -> str:
        return "" if value is None else format_date(value, style, locale=language)

    return day


@lru_cache(maxsize=len(LANGUAGES))
def environment(language: Language) -> Environment:
    """The Jinja2 environment that writes pages in ``language``."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(
        number=_number(language),
        percent=_percent(language),
        datetime=_datetime(language),
        date=_date(language),
    )
    env.globals.update(
        language=language,
        direction="rtl" if language in RIGHT_TO_LEFT else "ltr",
        languages=LANGUAGE_NAMES,
        menu=lambda role: navigation.MENU[role],
        current_page=navigation.current,
    )
    return env


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """``template`` rendered for this request: its language, its viewer, its path."""
    language: Language = request.state.language
    page = environment(language).get_template(template)
    values = {
        "request": request,
        "viewer": getattr(request.state, "viewer", None),
        "csrf": getattr(request.state, "csrf", ""),
        "path": request.url.path,
        **(context or {}),
    }
    response = HTMLResponse(page.render(values), status_code=status_code, headers=headers)
    response.headers["Content-Language"] = language
    return response
