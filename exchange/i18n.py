"""Sentences in the reader's language, from the gettext catalogs in ``exchange/locales``.

One set of catalogs serves the API and the web dashboard: row errors, problem titles, the
coded ``Message`` of every other error (``schemas.errors.MESSAGES``) and every sentence of
the dashboard's templates (``{{ _("...") }}``, with ``%(name)s`` placeholders). They are kept as
``.po`` text and compiled in memory with Babel on first use, so a fresh ``pip install -e .``
needs no build step. Labels of schemas, fields and codes are not here: they live with the schemas
(``schemas.labels``); a sentence names a field by its label in the same language.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from schemas.errors import ROW_MESSAGES, Message, RowError, render
from schemas.labels import LANGUAGES, Language, negotiate_language
from schemas.model import ReportSchema

__all__ = [
    "DOMAIN",
    "LOCALES",
    "Language",
    "negotiate",
    "row_detail",
    "sentence",
    "summary",
    "translated",
    "translations",
]

LOCALES = Path(__file__).parent / "locales"
DOMAIN = "messages"
#: Where ``extract`` looks for marked sentences, and the keywords that mark them.
SOURCES = ("schemas", "exchange")
KEYWORDS = {"N_": None, "_": None, "gettext": None, "ngettext": (1, 2)}
#: The dashboard's templates (``exchange/ui/templates``) mark sentences with ``_()`` too.
TEMPLATE_EXTRACTOR = "jinja2.ext:babel_extract"

#: The problem's ``detail`` repeats this many row errors; all are in its ``errors`` member.
SUMMARY_ROWS = 3

negotiate = negotiate_language  # one Accept-Language parser for labels and sentences


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: Language) -> gettext.NullTranslations:
    """The compiled catalog of ``language``; English is the source text, so it needs none."""
    if language == "en":
        return gettext.NullTranslations()
    with (LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def sentence(message: Message, language: Language) -> str:
    """``message`` in ``language``. English keeps integers as plain digits, as ``str(exc)``
    always wrote them (logs and clients grep for them); other languages group them."""
    if language == "en":
        return message.english()
    template = translations(language).gettext(message.template)
    return message.render(template, lambda n: format_decimal(n, locale=language))


def translated(text: str, language: Language) -> str:
    """A fixed sentence (a problem's title, a marked static detail) in ``language``; text the
    catalogs do not hold comes back as it is."""
    return translations(language).gettext(text) if text else text  # "" is the header's id


def row_detail(error: RowError, language: Language, schema: ReportSchema | None) -> str:
    """``error``'s sentence in ``language``, naming fields by the schema's labels."""
    template = translations(language).gettext(ROW_MESSAGES[error.code])

    def label(name: str) -> str:
        parts = name.split("+")
        fields = schema.field_by_name if schema is not None else {}
        return " + ".join(fields[p].label.get(language) if p in fields else p for p in parts)

    return render(error, template, label, lambda n: format_decimal(n, locale=language))


def summary(
    errors: Sequence[RowError], total: int, language: Language, schema: ReportSchema | None
) -> str:
    """The problem's ``detail`` for a refused report: how many errors, and the first few."""
    catalog = translations(language)
    sentence = catalog.ngettext(
        "{count} value of the report is invalid; nothing was stored",
        "{count} values of the report are invalid; nothing was stored",
        total,
    ).format(count=format_decimal(total, locale=language))
    first = [
        catalog.gettext("row {row}: {detail}").format(
            row=format_decimal(e.row, locale=language), detail=row_detail(e, language, schema)
        )
        for e in errors[:SUMMARY_ROWS]
    ]
    return ". ".join([sentence, "; ".join(first)]) if first else sentence


def extract(root: Path) -> Catalog:
    """The template catalog (``messages.pot``) of every marked sentence under ``root``."""
    from babel.messages.extract import extract_from_dir

    catalog = Catalog(project="crisis-exchange", domain=DOMAIN, fuzzy=False)
    for source in SOURCES:
        for filename, line, message, comments, context in extract_from_dir(
            root / source,
            method_map=[("**.py", "python"), ("ui/templates/**.html", TEMPLATE_EXTRACTOR)],
            options_map={"ui/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
            keywords=KEYWORDS,
        ):
            catalog.add(
                message,
                locations=[(f"{source}/{filename}", line)],
                auto_comments=comments,
                context=context,
            )
    return catalog


def update_catalogs(root: Path) -> dict[str, int]:
    """Rewrite ``messages.pot`` from the sources under ``root`` and bring each language's
    ``.po`` up to it: new sentences come in untranslated, gone ones leave. Returns how many
    sentences each language still lacks (what ``tests/test_translations.py`` would refuse)."""
    from babel.messages.pofile import write_po

    template = extract(root)
    with (LOCALES / "messages.pot").open("wb") as pot:
        write_po(pot, template, width=100, sort_output=True, include_lineno=False)
    missing: dict[str, int] = {}
    for language in LANGUAGES:
        if language == "en":
            continue
        path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        with path.open("rb") as po:
            catalog = read_po(po, locale=language, domain=DOMAIN)
        catalog.update(template, no_fuzzy_matching=True)
        with path.open("wb") as po:
            write_po(
                po, catalog, width=100, ignore_obsolete=True, sort_output=True, include_lineno=False
            )
        missing[language] = sum(1 for m in catalog if m.id and not all(_strings(m.string)))
    return missing


def _strings(value: object) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (str(value or ""),)


if __name__ == "__main__":  # python -m exchange.i18n: after marking or changing a sentence
    for language, count in update_catalogs(Path(__file__).resolve().parent.parent).items():
        print(f"{language}: {count} sentence(s) to translate")
